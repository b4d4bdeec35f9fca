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
 *   round-noise  one gradient per user at the global model (DP-FedSGD over users): users are
 *                Poisson-sampled at rate q (CSPRNG); each sampled user's gradient over the shared
 *                parameters (mean loss over at most maxInteractionsPerUser positives + negatives)
 *                is one contribution c_u = -g_u. The encoder clips each contribution to
 *                privacy.clipNorm, rotates, scales and conditionally rounds it ON ITS OWN, sums the
 *                integer vectors and adds ONE discrete Gaussian draw per coordinate (per-party:
 *                variance (gamma sigma C)^2; distributed: divided by n_min), then reduces mod 2^b.
 *                The coordinator's server learning rate scales the decoded average. Private
 *                embeddings of the sampled users take one local step on their own gradient.
 * The ledger charge of either mechanism comes from `roundCharge`, built from the same parameters
 * the encoder and trainer use.
 *
 * The whole update is one reads.ts computation: synchronous tensor reads where the backend allows
 * them, asynchronous ones on webgpu in Node.
 */
import type { Policy } from '../../shared/policy/schema';
import { encodeUpdate, ContributionEncoder, assertNoWrapAround, contributionCapacity } from '../../shared/dp/encode';
import { roundCharge, roundEncodeParams, roundNoiseEncodeParams } from '../privacy/round';
import { roundNoiseWrapParams } from '../../shared/fl/round-params';

export { roundCharge, roundEncodeParams, roundNoiseEncodeParams };
import { perUserGradientsReads, poissonSample } from '../model/dpsgd';
import type { ExampleKey } from '../model/coins';
import { DpSgdTrainer, clippedUserGradientSumReads, type OfferScope } from '../model/dpsgd';
import { run, type Reads } from '../model/reads';
import type { TwoTowerModel } from '../model/twotower';
import type { domainIndex, Positives } from '../model/train';

export interface RoundInput {
  policy: Policy;
  runId: string;
  round: number;
  /** the global shared parameters this round starts from */
  global: Float32Array;
  /** this party's offers when the policy's training.offerScope is `own` (see model/dpsgd.ts) */
  scope?: OfferScope | null;
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
  /** the real-domain delta before encoding (stays on the node; for tests); empty for round-noise */
  delta: Float32Array;
  privacy: RoundPrivacy;
  meanLoss: number;
  sampledUsers: number;
}

function roundPrivacy(policy: Policy, enc: { gamma: number; bits: number }, dimension: number, steps: number): RoundPrivacy {
  const p = policy.privacy;
  return { mechanism: p.mechanism, noiseMultiplier: p.noiseMultiplier, samplingRate: p.samplingRate, steps, clipNorm: p.clipNorm, delta: p.delta, gamma: enc.gamma, bits: enc.bits, dimension, noiseMode: p.noiseMode, nMin: p.nMin };
}

/** The DP trainer with the policy's privacy and training parameters. */
function policyTrainer(model: TwoTowerModel, positives: Positives, domains: ReturnType<typeof domainIndex>, policy: Policy, key: ExampleKey, scope: OfferScope | null | undefined): DpSgdTrainer {
  const p = policy.privacy;
  if (policy.training.offerScope === 'own' && !scope) throw new Error(`the policy's training.offerScope is "own" but no offer scope was given`);
  return new DpSgdTrainer(
    model,
    positives,
    domains,
    { clipNorm: p.clipNorm, noiseMultiplier: p.noiseMultiplier, samplingRate: p.samplingRate, maxInteractionsPerUser: p.maxInteractionsPerUser, negatives: policy.training.negativesPerPositive, learningRate: policy.training.learningRate, scope: policy.training.offerScope === 'own' ? scope : null },
    key,
  );
}

/** The example key of one round: a sub-key per (run, round), so step indices restarting at 0 never reuse coins. */
export function roundExampleKey(key: ExampleKey, runId: string, round: number): ExampleKey {
  return key.derive(JSON.stringify([runId, round]));
}

/**
 * How many sampled users' contributions one party's round-noise sum can carry with the deterministic
 * no-wrap guarantee (shared/dp/encode.ts checkWrapAround), from the policy alone: the same number at
 * every party, whatever its data. Throws when the policy's encoding cannot carry even one
 * contribution (a policy error: every party refuses alike). A party never refuses because of its
 * own user count or sample size — that refusal would be a data-dependent dropout the coordinator
 * sees; a round in which a party samples more users than this capacity (with the defaults about
 * 16,000) is encoded all the same, and the guarantee then rests on the rotation spreading the sum
 * (README, Known gaps), unless the policy sets privacy.maxUsersPerParty: its validation checked the
 * capacity carries that many, and a party above the cap refuses (`userCapProblem`).
 */
export function roundNoiseCapacity(policy: Policy): number {
  const w = roundNoiseWrapParams(policy); // the same parameters the policy's validation checks
  const k = contributionCapacity(w);
  if (k < 1) assertNoWrapAround({ ...w, contributionsPerParty: 1 }); // throws with the failing bound's sentence
  return k;
}

/**
 * Why this party may not take part in a round-noise round with `users` users (users with a training
 * interaction: the sampling population), or null. The policy's public `privacy.maxUsersPerParty`
 * bounds every party's population, and its validation checked that the encoding carries that many
 * contributions, so a party within it can never wrap the sum; one above it has broken the bound it
 * signed, and refuses (at join, before any round, and at each round) instead of encoding past it.
 */
export function userCapProblem(policy: Policy, users: number): string | null {
  const cap = policy.privacy.maxUsersPerParty;
  if (cap === undefined || policy.privacy.mechanism !== 'round-noise' || users <= cap) return null;
  return `this party has ${users} users with training data, more than the policy's privacy.maxUsersPerParty (${cap}), which bounds the round-noise encoding against wrap-around: remove users, or sign a policy with a larger cap`;
}

function* roundNoiseUpdate(model: TwoTowerModel, positives: Positives, domains: ReturnType<typeof domainIndex>, input: RoundInput, key: ExampleKey): Reads<LocalUpdate> {
  const { policy } = input;
  const p = policy.privacy;
  const dimension = input.global.length;
  const enc = roundNoiseEncodeParams(policy, input.runId, input.round);
  model.setSharedFlat(input.global);
  model.resetOptimizer();
  // wrap-around check from PUBLIC values only (roundNoiseCapacity): it once assumed that every user
  // of the party could be sampled, so whether a party refused depended on its private user count
  roundNoiseCapacity(policy);
  const trainer = policyTrainer(model, positives, domains, policy, roundExampleKey(key, input.runId, input.round), input.scope);
  const overCap = userCapProblem(policy, trainer.population.length);
  if (overCap) throw new RangeError(`refusing the round: ${overCap}`);
  const sampled = poissonSample(trainer.population, p.samplingRate);
  const batch = Array.from(sampled, (u) => trainer.examplesOf(u, 0));
  // each user's contribution c_u = -g_u clipped, rotated, scaled and rounded on its own, summed
  // (shared/dp/encode.ts ContributionEncoder: encodeContributions fed one user at a time as the gradients are read)
  const encoder = new ContributionEncoder(dimension, enc);
  yield* perUserGradientsReads(model, batch, (g) => {
    for (let i = 0; i < g.length; i++) g[i] = -g[i];
    encoder.add(g);
  });
  const encoded = encoder.finish();
  // private embeddings: one local step for the sampled users (never released)
  const r = batch.length ? yield* clippedUserGradientSumReads(model, batch, Infinity) : null;
  if (r) model.applyUserEmbeddingGradient(r.userGrads);
  return {
    encoded: encoded.data,
    delta: new Float32Array(0),
    privacy: roundPrivacy(policy, enc, dimension, 1),
    meanLoss: r ? r.loss : NaN,
    sampledUsers: batch.length,
  };
}

export function computeLocalUpdate(
  model: TwoTowerModel,
  positives: Positives,
  domains: ReturnType<typeof domainIndex>,
  input: RoundInput,
  /** the secret key of the per-user example coins (model/coins.ts): ExampleKey.fresh() once per node */
  key: ExampleKey,
): Promise<LocalUpdate> {
  return run(computeLocalUpdateReads(model, positives, domains, input, key));
}

export function* computeLocalUpdateReads(
  model: TwoTowerModel,
  positives: Positives,
  domains: ReturnType<typeof domainIndex>,
  input: RoundInput,
  /** the secret key of the per-user example coins (model/coins.ts): ExampleKey.fresh() once per node */
  key: ExampleKey,
): Reads<LocalUpdate> {
  const { policy } = input;
  if (policy.privacy.mechanism === 'round-noise') return yield* roundNoiseUpdate(model, positives, domains, input, key);
  const dimension = input.global.length;
  const enc = roundEncodeParams(policy, input.runId, input.round);
  assertNoWrapAround({ bits: enc.bits, parties: policy.parties.length, dimension, rotated: enc.rotationSeed !== null, clip: enc.clip, gamma: enc.gamma, beta: enc.beta, noise: null, maxProbability: policy.secagg.maxWrapProbability });
  model.setSharedFlat(input.global);
  model.resetOptimizer();
  const p = policy.privacy;
  const trainer = policyTrainer(model, positives, domains, policy, roundExampleKey(key, input.runId, input.round), input.scope);
  let lossSum = 0;
  let lossN = 0;
  let sampled = 0;
  for (let s = 0; s < p.stepsPerRound; s++) {
    const info = yield* trainer.stepReads();
    sampled += info.sampledUsers;
    if (!Number.isNaN(info.loss)) {
      lossSum += info.loss;
      lossN++;
    }
  }
  const local = yield* model.sharedFlatReads();
  const delta = new Float32Array(dimension);
  for (let i = 0; i < dimension; i++) delta[i] = local[i] - input.global[i];
  const encoded = encodeUpdate(delta, { ...enc, noise: null });
  return {
    encoded: encoded.data,
    delta,
    privacy: roundPrivacy(policy, enc, dimension, p.stepsPerRound),
    meanLoss: lossN ? lossSum / lossN : NaN,
    sampledUsers: sampled,
  };
}
