/**
 * The encoding parameters of one round, derived from the policy and public values only. Every party
 * (participant-node/privacy/round.ts) and the coordinator (coordinator/rounds/secagg-protocol.ts)
 * call this one function, so the encoder and the decoder cannot drift apart.
 * Requires `await sodiumReady()` (the rotation seed is a BLAKE2b derivation).
 */
import type { Policy } from '../policy/schema';
import { contributionCapacity, DEFAULT_BETA, type WrapCheckParams } from '../dp/encode';
import { layoutSize, sharedParameterLayout } from '../model/layout';
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
