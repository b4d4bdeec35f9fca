/**
 * The per-round encoding parameters and the privacy charge of a round, derived from the policy and
 * public values only. Pure (no tfjs), so the ledger tools (participant-node/privacy) and the node's
 * training path share one definition.
 */
import type { Policy } from '../../shared/policy/schema';
import type { EncodeParams } from '../../shared/dp/encode';
import { roundEncodeParams } from '../../shared/fl/round-params';
import { localDpsgdCharge, roundNoiseCharge } from './charge';
import type { RoundCharge } from './ledger';

export { roundEncodeParams };

/** The encoder parameters of a round-noise round (noise included). */
export function roundNoiseEncodeParams(policy: Policy, runId: string, round: number): EncodeParams {
  const p = policy.privacy;
  return {
    ...roundEncodeParams(policy, runId, round),
    clip: p.clipNorm,
    noise: { sigma: p.noiseMultiplier * p.clipNorm, mode: p.noiseMode, nMin: p.nMin },
  };
}

/** What this round costs this party, exactly as the trainer and encoder run it. */
export function roundCharge(policy: Policy, runId: string, round: number, dimension: number): RoundCharge {
  const p = policy.privacy;
  if (p.mechanism === 'round-noise') {
    return roundNoiseCharge({ round, encode: roundNoiseEncodeParams(policy, runId, round), dimension, q: p.samplingRate, steps: 1, delta: p.delta, federationId: policy.federationId, runId });
  }
  return localDpsgdCharge({ round, federationId: policy.federationId, runId, noiseMultiplier: p.noiseMultiplier, q: p.samplingRate, steps: p.stepsPerRound, clip: p.clipNorm, delta: p.delta, gamma: policy.secagg.scale, dimension });
}

