/**
 * The encoding parameters of one round, derived from the policy and public values only. Every party
 * (participant-node/privacy/round.ts) and the coordinator (coordinator/rounds/secagg-protocol.ts)
 * call this one function, so the encoder and the decoder cannot drift apart.
 * Requires `await sodiumReady()` (the rotation seed is a BLAKE2b derivation).
 */
import type { Policy } from '../policy/schema';
import { contributionCapacity, DEFAULT_BETA, encodedDimension, type WrapCheckParams } from '../dp/encode';
import { sodium } from '../crypto/sodium';
import { layoutSize, sharedParameterLayout } from '../model/layout';
import { nextGlobalModel } from './aggregate';
import { averagingDivisors } from './offers';
import { publicRoundSeed } from './seeds';
import type { ServerOptimizerConfig, ServerOptimizerState } from './server';
import type { RoundInfo } from '../secagg/round';

export function roundEncodeParams(policy: Policy, runId: string, round: number) {
  return {
    clip: policy.secagg.updateClip,
    gamma: policy.secagg.scale,
    bits: policy.secagg.bitWidth,
    rotationSeed: policy.secagg.rotation === 'hadamard' ? publicRoundSeed('rotation', policy.federationId, runId, round) : null,
    beta: DEFAULT_BETA,
  };
}

/**
 * The public structure of a round's secure aggregation (shared/secagg RoundInfo), from the policy:
 * the policy's parties and their pinned Ed25519 keys, threshold t, neighbour degree, bit width,
 * the public graph seed publicRoundSeed('graph', federation, run, round) and the vector length
 * encodedDimension(shared parameters, rotated). The coordinator's SecAggServer, every node's
 * SecAggClient and the auditor's replay (shared/audit/replay.ts) all take it from here.
 */
export function roundSecAggInfo(policy: Policy, runId: string, round: number): RoundInfo {
  const peers: Record<string, Uint8Array> = {};
  for (const p of policy.parties) peers[p.name] = sodium().from_base64(p.publicKey, sodium().base64_variants.ORIGINAL);
  return {
    federationId: policy.federationId,
    runId,
    round,
    params: { threshold: policy.secagg.threshold, degree: policy.secagg.neighbourDegree, bits: policy.secagg.bitWidth },
    roundSeed: publicRoundSeed('graph', policy.federationId, runId, round),
    vectorLength: encodedDimension(layoutSize(sharedParameterLayout(policy.model, policy.vocabularies)), policy.secagg.rotation === 'hadamard'),
    peers,
  };
}

/** The policy's server optimizer as applyServerUpdate takes it. */
export function serverOptimizerOf(policy: Policy): ServerOptimizerConfig {
  const opt = policy.training.serverOptimizer;
  return opt.type === 'fedavg' ? { type: 'fedavg', learningRate: opt.learningRate } : { type: 'fedadam', learningRate: opt.learningRate, beta1: opt.beta1, beta2: opt.beta2, tau: opt.tau };
}

/**
 * DESIGN §4 step 5 for one round of a run: the next global model from the round's base model and
 * the unmasked sum (mod 2^bits) of the survivors' encoded updates, with the policy's encoding
 * (roundEncodeParams), averaging (uniform over the survivors, or under offer scope `own` each item's
 * rows over its provider alone) and server optimizer; updates `state` in place. A function of the
 * policy and public values only: the coordinator (coordinator/rounds/secagg-protocol.ts) computes
 * each model with it, and `audit verify --replay` (shared/audit/replay.ts) recomputes the chain
 * with it, so the two cannot drift apart. Requires `await sodiumReady()` (the rotation seed).
 */
export function roundNextModel(
  policy: Policy,
  runId: string,
  round: number,
  global: Float32Array,
  sum: Uint32Array,
  survivors: readonly string[],
  state: ServerOptimizerState,
): Float32Array {
  return nextGlobalModel(
    global,
    sum,
    survivors.length,
    roundEncodeParams(policy, runId, round),
    serverOptimizerOf(policy),
    state,
    policy.training.offerScope === 'own' ? averagingDivisors(sharedParameterLayout(policy.model, policy.vocabularies), policy.catalogue.offers!, [...survivors]) : undefined,
  );
}

/**
 * The public parameters of the round-noise no-wrap check (shared/dp/encode.ts checkWrapAround), from
 * the policy alone: the round's rotation seed does not enter, only whether there is a rotation, so no
 * sodium is needed and every party (and the policy's validation) gets the same values.
 */
export function roundNoiseWrapParams(policy: Policy): Omit<WrapCheckParams, 'contributionsPerParty'> {
  const p = policy.privacy;
  return {
    bits: policy.secagg.bitWidth,
    parties: policy.parties.length,
    dimension: layoutSize(sharedParameterLayout(policy.model, policy.vocabularies)),
    rotated: policy.secagg.rotation === 'hadamard',
    clip: p.clipNorm,
    gamma: policy.secagg.scale,
    beta: DEFAULT_BETA,
    noise: { sigma: p.noiseMultiplier * p.clipNorm, mode: p.noiseMode, nMin: p.nMin },
    maxProbability: policy.secagg.maxWrapProbability,
  };
}

/**
 * How many sampled users' contributions one party's round-noise sum carries with the deterministic
 * no-wrap guarantee (contributionCapacity of roundNoiseWrapParams); 0 when not even one fits.
 */
export function roundNoiseCapacityOf(policy: Policy): number {
  return contributionCapacity(roundNoiseWrapParams(policy));
}
