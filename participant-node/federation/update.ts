/**
 * One round on the node side, without transport (DESIGN §4 steps 1-3): start from the global
 * shared parameters, train on this party's users under the policy's privacy mechanism, take the
 * delta over the shared parameters only, and encode it into the integer vector that secure
 * aggregation sums. The private user embeddings stay in the model and never enter the delta.
 *
 * Mechanisms:
 *   local-dpsgd  `stepsPerRound` DP-SGD steps (participant-node/model/dpsgd.ts): Poisson rate q,
 *                per-user clip C, noise multiplier sigma; the delta is DP by post-processing and is
 *                encoded with no further noise (clip to secagg.updateClip, rotation, gamma,
 *                conditional stochastic rounding, mod 2^b).
 *   round-noise  not wired to training yet: refused with a clear error (see README status).
 */
import type { Policy } from '../../shared/policy/schema';
import { DEFAULT_BETA, encodeUpdate, assertNoWrapAround } from '../../shared/dp/encode';
import { publicRoundSeed } from '../../shared/fl/seeds';
import type { Xoshiro128 } from '../../shared/util/prng';
import { DpSgdTrainer } from '../model/dpsgd';
import type { TwoTowerModel } from '../model/twotower';
import type { domainIndex, Positives } from '../model/train';
import { UserError } from '../../shared/cli/errors';

export interface RoundInput {
  policy: Policy;
  runId: string;
  round: number;
  /** the global shared parameters this round starts from */
  global: Float32Array;
}

/** What the accountant and the audit log need to know about this party's round. */
export interface RoundPrivacy {
  mechanism: Policy['privacy']['mechanism'];
  noiseMultiplier: number;
  samplingRate: number;
  steps: number;
  clipNorm: number;
  delta: number;
  gamma: number;
  bits: number;
  dimension: number;
  noiseMode: Policy['privacy']['noiseMode'];
  nMin: number;
}

export interface LocalUpdate {
  /** the secure-aggregation input, integers mod 2^bits */
  encoded: Uint32Array;
  /** the real-domain delta before encoding (stays on the node; for tests) */
  delta: Float32Array;
  privacy: RoundPrivacy;
  meanLoss: number;
  sampledUsers: number;
}

/** Encoder parameters of a round, identical on every party and the coordinator. */
export function roundEncodeParams(policy: Policy, runId: string, round: number) {
  return {
    clip: policy.secagg.updateClip,
    gamma: policy.secagg.scale,
    bits: policy.secagg.bitWidth,
    rotationSeed: policy.secagg.rotation === 'hadamard' ? publicRoundSeed('rotation', policy.federationId, runId, round) : null,
    beta: DEFAULT_BETA,
  };
}

export function computeLocalUpdate(
  model: TwoTowerModel,
  positives: Positives,
  domains: ReturnType<typeof domainIndex>,
  input: RoundInput,
  rng: Xoshiro128,
): LocalUpdate {
  const { policy } = input;
  if (policy.privacy.mechanism !== 'local-dpsgd') {
    throw new UserError(`privacy mechanism "${policy.privacy.mechanism}" is not supported by this node yet; use local-dpsgd`, 1);
  }
  const dimension = input.global.length;
  const enc = roundEncodeParams(policy, input.runId, input.round);
  assertNoWrapAround({ bits: enc.bits, parties: policy.parties.length, dimension, rotated: enc.rotationSeed !== null, clip: enc.clip, gamma: enc.gamma, beta: enc.beta, noise: null, maxProbability: policy.secagg.maxWrapProbability });
  model.setSharedFlat(input.global);
  model.resetOptimizer();
  const p = policy.privacy;
  const trainer = new DpSgdTrainer(
    model,
    positives,
    domains,
    { clipNorm: p.clipNorm, noiseMultiplier: p.noiseMultiplier, samplingRate: p.samplingRate, maxInteractionsPerUser: p.maxInteractionsPerUser, negatives: policy.training.negativesPerPositive, learningRate: policy.training.learningRate },
    rng,
  );
  let lossSum = 0;
  let lossN = 0;
  let sampled = 0;
  for (let s = 0; s < p.stepsPerRound; s++) {
    const info = trainer.step();
    sampled += info.sampledUsers;
    if (!Number.isNaN(info.loss)) {
      lossSum += info.loss;
      lossN++;
    }
  }
  const local = model.getSharedFlat();
  const delta = new Float32Array(dimension);
  for (let i = 0; i < dimension; i++) delta[i] = local[i] - input.global[i];
  const encoded = encodeUpdate(delta, { ...enc, noise: null });
  return {
    encoded: encoded.data,
    delta,
    privacy: {
      mechanism: p.mechanism,
      noiseMultiplier: p.noiseMultiplier,
      samplingRate: p.samplingRate,
      steps: p.stepsPerRound,
      clipNorm: p.clipNorm,
      delta: p.delta,
      gamma: enc.gamma,
      bits: enc.bits,
      dimension,
      noiseMode: p.noiseMode,
      nMin: p.nMin,
    },
    meanLoss: lossN ? lossSum / lossN : NaN,
    sampledUsers: sampled,
  };
}
