/**
 * Builds a round's ledger charge from the parameters the node will actually use, so that the
 * accountant is told exactly what the encoder does: for `round-noise`, the integer sensitivities
 * come from the same contributionSensitivity() the encoder enforces, and the noise variance is the
 * exact rational the discrete Gaussian sampler will use (DiscreteGaussian(...).variance).
 */
import { DiscreteGaussian } from '../../shared/dp/discrete';
import { contributionSensitivity, noiseVariance, checkEncodeParams, type EncodeParams } from '../../shared/dp/encode';
import type { RoundCharge } from './ledger';

export function roundNoiseCharge(a: {
  round: number;
  encode: EncodeParams;
  /** input dimension d (before padding) */
  dimension: number;
  /** Poisson sampling rate of users (1 if every user contributes) */
  q: number;
  steps?: number;
  delta: number;
  federationId?: string;
  runId?: string;
}): RoundCharge {
  checkEncodeParams(a.encode);
  const noise = a.encode.noise;
  if (!noise) throw new RangeError('"encode.noise" is required for the round-noise mechanism');
  const { l2, l1, encodedDimension } = contributionSensitivity(a.encode, a.dimension);
  const localVariance = new DiscreteGaussian(noiseVariance(a.encode)).variance;
  return {
    mechanism: 'round-noise',
    round: a.round,
    ...(a.federationId ? { federationId: a.federationId } : {}),
    ...(a.runId ? { runId: a.runId } : {}),
    sigma: noise.sigma,
    mode: noise.mode,
    nMin: noise.mode === 'distributed' ? noise.nMin : null,
    localVariance,
    shares: noise.mode === 'distributed' ? noise.nMin : 1,
    l2,
    l1,
    q: a.q,
    steps: a.steps ?? 1,
    clip: a.encode.clip,
    delta: a.delta,
    gamma: a.encode.gamma,
    dimension: encodedDimension,
  };
}

export function localDpsgdCharge(a: {
  round: number;
  /** noise multiplier (noise std / clip) */
  noiseMultiplier: number;
  q: number;
  steps: number;
  clip: number;
  delta: number;
  gamma?: number;
  dimension?: number;
  federationId?: string;
  runId?: string;
}): RoundCharge {
  return {
    mechanism: 'local-dpsgd',
    round: a.round,
    ...(a.federationId ? { federationId: a.federationId } : {}),
    ...(a.runId ? { runId: a.runId } : {}),
    sigma: a.noiseMultiplier,
    mode: 'per-party',
    nMin: null,
    q: a.q,
    steps: a.steps,
    clip: a.clip,
    delta: a.delta,
    gamma: a.gamma ?? null,
    dimension: a.dimension ?? null,
  };
}
