/**
 * A node's round update: DP-SGD from the global model, the delta covers shared parameters only,
 * and encode -> modular sum -> decode gives back the average delta (up to quantization).
 */
import * as tf from '@tensorflow/tfjs';
import { TwoTowerModel } from '../../../participant-node/model/twotower';
import { computeLocalUpdate, roundCharge, roundEncodeParams, roundExampleKey, roundNoiseCapacity, userCapProblem } from '../../../participant-node/federation/update';
import { roundNoiseCapacityOf } from '../../../shared/fl/round-params';
import { validatePolicy } from '../../../shared/policy/schema';
import { ExampleKey } from '../../../participant-node/model/coins';
import { DpSgdTrainer, perUserGradients } from '../../../participant-node/model/dpsgd';
import { defaultPolicy } from '../../../shared/policy/defaults';
import { initSharedParams } from '../../../shared/model/init';
import { sharedParameterLayout } from '../../../shared/model/layout';
import { modularSum, nextGlobalModel } from '../../../shared/fl/aggregate';
import { newServerState } from '../../../shared/fl/server';
import { checkWrapAround, decodeAggregate } from '../../../shared/dp/encode';
import { DEFAULT_VOCABULARIES, itemFeatureDim, userFeatureDim } from '../../../shared/data/vocab';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { Xoshiro128 } from '../../../shared/util/prng';

const key = (c: string) => c.repeat(43) + '=';
const NI = 50;
const NU = 60;

function policy() {
  const p = defaultPolicy({
    federationId: 'fb-test',
    coordinator: { name: 'coordinator', publicKey: key('C') },
    parties: [
      { name: 'platform', publicKey: key('P') },
      { name: 'insurer', publicKey: key('I') },
    ],
    catalogue: { hash: 'ab'.repeat(32), numItems: NI },
  });
  return { ...p, model: { ...p.model, embeddingDim: 8, hiddenDim: 8 }, privacy: { ...p.privacy, samplingRate: 0.3, stepsPerRound: 3, maxInteractionsPerUser: 4 } };
}

function party(seed: number, pol: ReturnType<typeof policy>) {
  const m = TwoTowerModel.forPolicy(pol.model, DEFAULT_VOCABULARIES, NU, { learningRate: 0.01, initSeed: seed });
  const rng = new Xoshiro128(seed);
  m.setFeatures(
    Float32Array.from({ length: NU * userFeatureDim(DEFAULT_VOCABULARIES) }, () => rng.nextInt(2)),
    Float32Array.from({ length: NI * itemFeatureDim(DEFAULT_VOCABULARIES) }, () => rng.nextInt(2)),
  );
  const user = Uint32Array.from({ length: 300 }, (_, j) => j % NU);
  const item = Uint32Array.from({ length: 300 }, () => rng.nextInt(NI));
  const domains = { byDomain: new Map([['course', Uint32Array.from({ length: NI }, (_, i) => i)]]), domainOf: Array(NI).fill('course') };
  return { m, positives: { user, item }, domains, key: ExampleKey.forTesting(new Uint8Array(32).fill(seed)) };
}

beforeAll(async () => {
  await sodiumReady();
  await tf.setBackend('cpu');
});

test('encode -> modular sum -> decode returns the average delta; private embeddings stay out', async () => {
  const pol = policy();
  const layout = sharedParameterLayout(pol.model, pol.vocabularies);
  const global = initSharedParams(layout, 7);
  const parties = [party(1, pol), party(2, pol)];
  const userEmbBefore = parties.map((p) => Float32Array.from(p.m.userEmbedding));
  const ups = await Promise.all(parties.map((p) => computeLocalUpdate(p.m, p.positives, p.domains, { policy: pol, runId: 'r1', round: 1, global }, p.key)));
  for (const u of ups) {
    expect(u.delta.length).toBe(global.length); // shared parameters only: no user rows
    expect(u.privacy).toMatchObject({ mechanism: 'local-dpsgd', steps: 3, samplingRate: 0.3, gamma: pol.secagg.scale, bits: 32 });
    expect(u.encoded.length).toBeGreaterThanOrEqual(global.length); // padded to a power of two by the rotation
  }
  // the private embeddings were trained locally (they moved) but are not in any released vector
  parties.forEach((p, k) => expect(p.m.userEmbedding).not.toEqual(userEmbBefore[k]));
  const enc = roundEncodeParams(pol, 'r1', 1);
  const avg = decodeAggregate(modularSum(ups.map((u) => u.encoded), 32), enc, global.length, 2);
  let maxErr = 0;
  for (let i = 0; i < global.length; i++) maxErr = Math.max(maxErr, Math.abs(avg[i] - (ups[0].delta[i] + ups[1].delta[i]) / 2));
  // stochastic rounding error of 2 parties' vectors at gamma = 65536, after the inverse rotation
  expect(maxErr).toBeLessThan(1e-3);
  expect(maxErr).toBeGreaterThan(0);
  const next = nextGlobalModel(global, modularSum(ups.map((u) => u.encoded), 32), 2, enc, { type: 'fedavg', learningRate: 1 }, newServerState());
  for (let i = 0; i < global.length; i++) expect(Math.abs(next[i] - (global[i] + avg[i]))).toBeLessThan(1e-5);
  parties.forEach((p) => p.m.dispose());
});

test('round-noise: per-user contributions clipped, summed, ONE discrete Gaussian draw; noise variance as charged', async () => {
  const base = policy();
  const pol = {
    ...base,
    model: { ...base.model, embeddingDim: 32, hiddenDim: 32 },
    secagg: { ...base.secagg, scale: 4096 },
    privacy: { ...base.privacy, mechanism: 'round-noise' as const, samplingRate: 1, clipNorm: 0.5, noiseMultiplier: 2, noiseMode: 'per-party' as const },
  };
  const global = initSharedParams(sharedParameterLayout(pol.model, pol.vocabularies), 1);
  const parties = [party(5, pol), party(6, pol)];
  // the contributions each party will submit, recomputed here with the same examples (same key)
  const expected = new Float64Array(global.length);
  for (const [k, p] of parties.entries()) {
    p.m.setSharedFlat(global);
    const tr = new DpSgdTrainer(p.m, p.positives, p.domains, { clipNorm: 0.5, noiseMultiplier: 2, samplingRate: 1, maxInteractionsPerUser: 4, negatives: pol.training.negativesPerPositive, learningRate: 0.01 }, roundExampleKey(p.key, 'rn', 1));
    const batch = Array.from(tr.population, (u) => tr.examplesOf(u, 0));
    await perUserGradients(p.m, batch, (g) => {
      let n = 0;
      for (const x of g) n += x * x;
      const c = Math.min(1, 0.5 / Math.sqrt(n));
      for (let i = 0; i < g.length; i++) expected[i] += -g[i] * c;
    });
  }
  const ups = await Promise.all(parties.map((p, k) => computeLocalUpdate(p.m, p.positives, p.domains, { policy: pol, runId: 'rn', round: 1, global }, p.key)));
  for (const u of ups) expect(u.privacy).toMatchObject({ mechanism: 'round-noise', steps: 1, samplingRate: 1, gamma: 4096 });
  const enc = roundEncodeParams(pol, 'rn', 1);
  const avg = decodeAggregate(modularSum(ups.map((u) => u.encoded), 32), enc, global.length, 2);
  // n * avg - expected = the two parties' noise (+ negligible rounding): variance 2 (sigma C)^2 per
  // coordinate; ~6k coordinates give the estimate a relative standard error of ~2%
  let s2 = 0;
  for (let i = 0; i < global.length; i++) s2 += (2 * avg[i] - expected[i]) ** 2;
  const variance = s2 / global.length;
  expect(variance / (2 * (2 * 0.5) ** 2)).toBeGreaterThan(0.9);
  expect(variance / (2 * (2 * 0.5) ** 2)).toBeLessThan(1.1);
  const ch = roundCharge(pol, 'rn', 1, global.length);
  expect(ch.mechanism).toBe('round-noise');
  if (ch.mechanism === 'round-noise') expect(ch.localVariance / (4096 * 2 * 0.5) ** 2).toBeCloseTo(1, 4);
  parties.forEach((p) => p.m.dispose());
});

test("round-noise: whether a party takes part depends on the policy alone, not on its private user count", async () => {
  const base = policy();
  const rn = (bitWidth: number) => ({
    ...base,
    secagg: { ...base.secagg, scale: 4096, bitWidth },
    privacy: { ...base.privacy, mechanism: 'round-noise' as const, samplingRate: 0.05, clipNorm: 0.5, noiseMultiplier: 2, noiseMode: 'per-party' as const },
  });
  const pol = rn(18);
  const global = initSharedParams(sharedParameterLayout(pol.model, pol.vocabularies), 2);
  // the public capacity: the largest per-party contribution count the wrap check accepts
  const cap = roundNoiseCapacity(pol);
  const enc = roundEncodeParams(pol, 'cap', 1);
  const w = { bits: 18, parties: 2, dimension: global.length, rotated: true, clip: 0.5, gamma: 4096, beta: enc.beta, noise: { sigma: 1, mode: 'per-party' as const, nMin: pol.privacy.nMin }, maxProbability: pol.secagg.maxWrapProbability };
  expect(checkWrapAround({ ...w, contributionsPerParty: cap }).ok).toBe(true);
  expect(checkWrapAround({ ...w, contributionsPerParty: cap + 1 }).ok).toBe(false);
  expect(cap).toBeGreaterThan(3);
  expect(cap).toBeLessThan(NU); // a party with NU users has more users than the capacity ...
  const big = party(7, pol); // NU = 60 users
  const small = party(8, pol);
  const few = (p: ReturnType<typeof party>) => ({ user: p.positives.user.filter((u) => u < 3), item: p.positives.item.filter((_, j) => p.positives.user[j] < 3) });
  // ... and still takes part, as does a party with 3 users (the old check refused the first only)
  const a = await computeLocalUpdate(big.m, big.positives, big.domains, { policy: pol, runId: 'cap', round: 1, global }, big.key);
  const b = await computeLocalUpdate(small.m, few(small), small.domains, { policy: pol, runId: 'cap', round: 1, global }, small.key);
  for (const u of [a, b]) expect(u.privacy).toMatchObject({ mechanism: 'round-noise', bits: 18 });
  // a policy whose encoding cannot carry one contribution is refused alike by both
  const bad = rn(8);
  expect(() => roundNoiseCapacity(bad)).toThrow(/signal bound/);
  const refuse = (p: ReturnType<typeof party>, pos: ReturnType<typeof party>['positives']) => computeLocalUpdate(p.m, pos, p.domains, { policy: bad, runId: 'cap', round: 2, global }, p.key);
  await expect(refuse(big, big.positives)).rejects.toThrow(/refusing quantization parameters: signal bound: 2 parties x 1 contribution/);
  await expect(refuse(small, few(small))).rejects.toThrow(/refusing quantization parameters: signal bound: 2 parties x 1 contribution/);
  [big, small].forEach((p) => p.m.dispose());
});

test("round-noise with the policy's maxUsersPerParty: validated against the encoding's capacity; a party above it refuses, one at it takes part", async () => {
  const base = policy();
  const rn = (cap?: number) => ({
    ...base,
    secagg: { ...base.secagg, scale: 4096, bitWidth: 18 },
    privacy: { ...base.privacy, mechanism: 'round-noise' as const, samplingRate: 0.05, clipNorm: 0.5, noiseMultiplier: 2, noiseMode: 'per-party' as const, ...(cap === undefined ? {} : { maxUsersPerParty: cap }) },
  });
  const pol = rn();
  const global = initSharedParams(sharedParameterLayout(pol.model, pol.vocabularies), 2);
  const capacity = roundNoiseCapacity(pol);
  expect(roundNoiseCapacityOf(pol)).toBe(capacity); // the policy-only count is the node's count
  expect(capacity).toBeLessThan(NU);
  // validation: a cap the encoding cannot carry is a policy error naming the numbers; at the capacity it passes
  expect(() => validatePolicy(rn(capacity + 1))).toThrow(new RegExp(`privacy.maxUsersPerParty: ${capacity + 1} users per party is more than the encoding carries without wrap-around \\(${capacity} contributions per party`));
  const capped = validatePolicy(rn(capacity));
  // ... and for local-dpsgd (whose update is clipped as a whole) the cap is not an encoding bound
  expect(validatePolicy({ ...rn(capacity + 1), privacy: { ...rn(capacity + 1).privacy, mechanism: 'local-dpsgd' as const } }).privacy.maxUsersPerParty).toBe(capacity + 1);
  expect(userCapProblem(capped, capacity)).toBeNull();
  expect(userCapProblem(capped, capacity + 1)).toMatch(/has \d+ users with training data, more than the policy's privacy.maxUsersPerParty/);
  expect(userCapProblem(pol, 10 ** 9)).toBeNull(); // no cap: nothing to refuse
  const big = party(9, capped); // NU = 60 users with training data, above the cap
  await expect(computeLocalUpdate(big.m, big.positives, big.domains, { policy: capped, runId: 'capped', round: 1, global }, big.key)).rejects.toThrow(
    `refusing the round: this party has ${NU} users with training data, more than the policy's privacy.maxUsersPerParty (${capacity})`,
  );
  // a party with exactly `capacity` users takes part
  const fit = { user: big.positives.user.filter((u) => u < capacity), item: big.positives.item.filter((_, j) => big.positives.user[j] < capacity) };
  const u = await computeLocalUpdate(big.m, fit, big.domains, { policy: capped, runId: 'capped', round: 1, global }, big.key);
  expect(u.privacy).toMatchObject({ mechanism: 'round-noise', bits: 18 });
  big.m.dispose();
});
