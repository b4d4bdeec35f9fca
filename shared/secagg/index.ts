/**
 * Secure aggregation (Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving
 * Machine Learning", §4 / Fig. 4; with the sparse neighbour graph of SecAgg+, Bell et al. 2020)
 * as a library with no I/O: `SecAggClient` (one per party and round) and `SecAggServer` (the
 * coordinator's side) exchange the typed, signed messages of messages.ts. A transport carries them
 * (proto/fedbridge/v1/secagg.proto). Inputs and the output are Uint32Array vectors mod 2^b
 * (8 <= b <= 32); encoding floats into them (clipping, scaling, rounding, noise) is shared/dp's job.
 *
 * What is hidden from whom (honest-but-curious coordinator, DESIGN §4):
 * - The coordinator learns the sum mod 2^b of the inputs of the parties that sent a masked input
 *   (U3), the sets U1..U5, and nothing else about any single input: each y_u is masked by PRG(b_u)
 *   and by pair masks, and it never gets both the self-mask share and the key share of one party
 *   (clients refuse such a request; honest parties reveal one kind per peer, once).
 * - A party learns the public keys of its neighbours and t-of-|N[u]| shares of their secrets,
 *   nothing about their inputs. It does not see the sum (the coordinator publishes it, or a
 *   model derived from it, as the federation decides).
 * - Dropouts: the round completes while the threshold rule holds (server.ts, R1..R5), else aborts
 *   with the failing rule in the reason. A party whose masked input was sent is in the sum even if
 *   it drops later; a party that dropped before is not (its pair masks are removed).
 * - Malicious coordinator: messages are signed and bound to (federation, run, round, phase); clients
 *   check the consistency-round signatures and refuse inconsistent or over-asking requests. The
 *   strict-majority threshold (2t > |N[u]|) keeps two disjoint groups from both reaching t.
 *   Not covered: colluding parties + coordinator beyond t - 1 share holders of one party; parties
 *   that submit wrong inputs (the sum is only as good as the inputs; no input validity proofs).
 *
 * n = 2 (the basic deployment: one platform, one insurer). Only t = 2 is valid, so no dropout is
 * tolerated: if either party drops at any phase the round aborts. SecAgg still hides each party's
 * input from the coordinator, which sees only masked vectors and the sum. It hides nothing between
 * the two parties once the sum is known: each party can subtract its own input from the sum and
 * obtain the other's input exactly. Protection between the two parties must therefore come from
 * the update itself being differentially private on its own (DESIGN §4 step 3, noise mode
 * `per-party`); secure aggregation adds nothing there. Likewise, with n = 3 any two colluding
 * parties learn the third's input from the sum; in general the sum reveals the input of a party
 * if all other survivors collude. For the same reason `distributed` noise counts only the shares a
 * party cannot remove from the sum: its own is excluded (shared/fl/noise-floor.ts).
 */
export { SecAggClient, type ClientPhase, type ClientIdentity, type SecAggClientOptions } from './client';
export { SecAggServer, type ServerPhase, type ServerStep, type Clock, type SecAggServerOptions } from './server';
export { SecAggError, type SecAggCode } from './errors';
export { neighbourGraph, validateParams, isFullGraph, neighbourhoodSize, MAX_PARTIES, type SecAggParams } from './graph';
export { RoundContext, type RoundInfo } from './round';
export * from './messages';
export { encodeClientMessage, decodeClientMessage, encodeServerMessage, decodeServerMessage, VECTOR_CHUNK_BYTES } from './wire';
