/**
 * The encoding parameters of one round, derived from the policy and public values only. Every party
 * (participant-node/privacy/round.ts) and the coordinator (coordinator/rounds/secagg-protocol.ts)
 * call this one function, so the encoder and the decoder cannot drift apart.
 * Requires `await sodiumReady()` (the rotation seed is a BLAKE2b derivation).
 */
import type { Policy } from '../policy/schema';
import { DEFAULT_BETA } from '../dp/encode';
import { publicRoundSeed } from './seeds';

export function roundEncodeParams(policy: Policy, runId: string, round: number) {
  return {
    clip: policy.secagg.updateClip,
    gamma: policy.secagg.scale,
    bits: policy.secagg.bitWidth,
    rotationSeed: policy.secagg.rotation === 'hadamard' ? publicRoundSeed('rotation', policy.federationId, runId, round) : null,
    beta: DEFAULT_BETA,
  };
}
