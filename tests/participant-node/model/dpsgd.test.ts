/**
 * User-level clipping: the vectorised per-user gradients (hand-written backward pass) must equal a
 * naive loop of per-user autodiff, and removing any one user must change the clipped sum by <= C.
 */
import * as tf from '@tensorflow/tfjs';
import { TwoTowerModel } from '../../../participant-node/model/twotower';
import { clippedUserGradientSum, DpSgdTrainer, offerScope, perUserGradients, poissonSample, scopeSupport, type UserExamples } from '../../../participant-node/model/dpsgd';
import { DEFAULT_VOCABULARIES, itemFeatureDim, userFeatureDim } from '../../../shared/data/vocab';
import { layoutSize } from '../../../shared/model/layout';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { Xoshiro128 } from '../../../shared/util/prng';

const NU = 30;
const NI = 40;

function model(seed = 4): TwoTowerModel {
  const m = TwoTowerModel.forPolicy({ architecture: 'two-tower-v1', embeddingDim: 6, hiddenDim: 5, numItems: NI }, DEFAULT_VOCABULARIES, NU, { learningRate: 0.01, initSeed: seed });
  const rng = new Xoshiro128(seed);
  const uf = Float32Array.from({ length: NU * userFeatureDim(DEFAULT_VOCABULARIES) }, () => (rng.nextInt(3) === 0 ? 1 : 0));
  const itf = Float32Array.from({ length: NI * itemFeatureDim(DEFAULT_VOCABULARIES) }, () => (rng.nextInt(3) === 0 ? 1 : 0));
  m.setFeatures(uf, itf);
  // non-zero towers biases so relu gates vary
  return m;
}

function randomBatch(rng: Xoshiro128, users: number[]): UserExamples[] {
  return users.map((u) => {
    const n = 1 + rng.nextInt(7);
    const items = Uint32Array.from({ length: n }, (_, j) => (j === 1 ? 0 : rng.nextInt(NI))); // item 0 repeats across users
    if (n > 2) items[2] = items[0]; // a repeated item within one user
    const labels = Float32Array.from({ length: n }, () => rng.nextInt(2));
    return { user: u, items, labels };
  });
}

/** naive: per-user autodiff through TwoTowerModel.computeGradients, flattened in layout order */
async function naivePerUser(m: TwoTowerModel, ex: UserExamples): Promise<Float32Array> {
  const g = await m.computeGradients(new Uint32Array(ex.items.length).fill(ex.user), ex.items, ex.labels);
  const flat = new Float32Array(layoutSize(m.layout!));
  for (const p of m.layout!) {
    if (p.name === 'item_embedding') g.itemEmbedding.rows.forEach((r, k) => flat.set(g.itemEmbedding.values.subarray(k * 6, k * 6 + 6), p.offset + r * 6));
    else if (p.name === 'item_bias') g.itemBias.rows.forEach((r, k) => (flat[p.offset + r] = g.itemBias.values[k]));
    else flat.set(g.tower.get(p.name)!, p.offset);
  }
  return flat;
}

const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, x) => s + x * x, 0));
function relErr(a: Float32Array, b: Float32Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += (a[i] - b[i]) ** 2;
  return Math.sqrt(n) / Math.max(norm(b), 1e-30);
}

beforeAll(async () => {
  await sodiumReady();
  await tf.setBackend('cpu');
});

describe('per-user clipped gradient sum', () => {
  test('norms and clipped sum equal a naive per-user autodiff loop', async () => {
    const m = model();
    const rng = new Xoshiro128(9);
    const batch = randomBatch(rng, [0, 3, 7, 8, 15, 29]);
    const naive = await Promise.all(batch.map((ex) => naivePerUser(m, ex)));
    const C = 0.5 * Math.min(...naive.map(norm)) + 0.5 * Math.max(...naive.map(norm)); // some clipped, some not
    const r = await clippedUserGradientSum(m, batch, C);
    naive.forEach((g, k) => expect(Math.abs(r.norms[k] - norm(g)) / norm(g)).toBeLessThan(1e-5));
    const expected = new Float32Array(g0len(m));
    naive.forEach((g) => {
      const c = Math.min(1, C / norm(g));
      for (let i = 0; i < g.length; i++) expected[i] += c * g[i];
    });
    expect(relErr(r.sum, expected)).toBeLessThan(1e-5);
    expect([...r.norms].some((n) => n > C)).toBe(true);
    expect([...r.norms].some((n) => n <= C)).toBe(true);
    m.dispose();
  });

  test('per-user gradient vectors (round-noise contributions) equal per-user autodiff', async () => {
    const m = model(8);
    const batch = randomBatch(new Xoshiro128(4), [1, 4, 9, 10, 22]);
    const got: Float32Array[] = [];
    await perUserGradients(m, batch, (v) => got.push(Float32Array.from(v)), 2);
    expect(got).toHaveLength(5);
    for (const [k, ex] of batch.entries()) expect(relErr(got[k], await naivePerUser(m, ex))).toBeLessThan(1e-5);
    m.dispose();
  });

  test('removing any one user changes the clipped sum by at most C (sensitivity)', async () => {
    const m = model(5);
    const rng = new Xoshiro128(3);
    for (const C of [0.01, 0.1, 10]) {
      const batch = randomBatch(rng, Array.from({ length: 12 }, (_, k) => k * 2));
      const full = (await clippedUserGradientSum(m, batch, C)).sum;
      for (let k = 0; k < batch.length; k++) {
        const without = (await clippedUserGradientSum(m, batch.filter((_, j) => j !== k), C)).sum;
        const diff = Float32Array.from(full, (x, i) => x - without[i]);
        expect(norm(diff)).toBeLessThanOrEqual(C * (1 + 1e-4));
      }
    }
    m.dispose();
  });

  test('the private user embedding is not part of the shared gradient', async () => {
    const m = model(6);
    const batch = randomBatch(new Xoshiro128(1), [2]);
    const a = await clippedUserGradientSum(m, batch, Infinity);
    m.userEmbedding.fill(0, 2 * 6, 3 * 6); // change e_u of user 2: its own gradient rows change ...
    const b = await clippedUserGradientSum(m, batch, Infinity);
    expect(a.userGrads.rows).toEqual(Uint32Array.of(2));
    expect(a.sum.length).toBe(layoutSize(m.layout!)); // ... but no coordinate of the shared vector is e_u
    expect(relErr(a.userGrads.values, b.userGrads.values)).toBeGreaterThan(0);
    m.dispose();
  });

  test('a DP-SGD step samples users with the CSPRNG, noises every shared coordinate, keeps tensors flat', async () => {
    const m = model(7);
    const rng = new Xoshiro128(2);
    const users = Uint32Array.from({ length: 200 }, (_, j) => j % NU);
    const items = Uint32Array.from({ length: 200 }, () => rng.nextInt(NI));
    const domains = { byDomain: new Map([['course', Uint32Array.from({ length: NI }, (_, i) => i)]]), domainOf: Array(NI).fill('course') };
    const tr = new DpSgdTrainer(m, { user: users, item: items }, domains, { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.5, maxInteractionsPerUser: 3, negatives: 2, learningRate: 0.01 }, rng);
    const before = await m.getSharedFlat();
    await tr.step();
    const t0 = tf.memory().numTensors;
    const info = await tr.step();
    expect(tf.memory().numTensors).toBe(t0);
    expect(info.sampledUsers).toBeGreaterThan(0);
    const after = await m.getSharedFlat();
    // dense noise: every shared coordinate moved, including item rows no user touched
    let unchanged = 0;
    for (let i = 0; i < after.length; i++) if (after[i] === before[i]) unchanged++;
    expect(unchanged).toBe(0);
    m.dispose();
  });

  test('offer scope: examples only from own offers, noise exactly on towers + own rows, zero elsewhere', async () => {
    const m = model(8);
    const rng = new Xoshiro128(3);
    // items 0-14 offered by "insurer", 15-39 by "platform"; two domains, each mixing both providers
    const catalogue = Array.from({ length: NI }, (_, i) => ({ id: `it${i}`, provider: i < 15 ? 'insurer' : 'platform' }));
    const domainOf = Array.from({ length: NI }, (_, i) => (i % 2 ? 'insurance' : 'finance'));
    const byDomain = new Map(['insurance', 'finance'].map((d) => [d, Uint32Array.from(domainOf.flatMap((x, i) => (x === d ? [i] : [])))]));
    const scope = offerScope('insurer', { insurer: [[0, 15]], platform: [[15, 40]] }, catalogue);
    // positives: mostly own offers, some of another provider (must be dropped before sampling)
    const users = Uint32Array.from({ length: 240 }, (_, j) => j % NU);
    const items = Uint32Array.from({ length: 240 }, (_, j) => (j % 6 === 5 ? 15 + rng.nextInt(25) : rng.nextInt(15)));
    const tr = new DpSgdTrainer(m, { user: users, item: items }, { byDomain, domainOf }, { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.7, maxInteractionsPerUser: 8, negatives: 3, learningRate: 0.01, scope }, rng);
    expect(tr.droppedOutOfScope).toBe(40);
    for (const u of tr.population) {
      const ex = tr.examplesOf(u);
      for (const it of ex.items) expect(scope.own[it]).toBe(1);
    }
    const support = scopeSupport(m.layout!, scope);
    const { grad } = await tr.noisyGradient();
    let inside = 0;
    for (let i = 0; i < grad.length; i++) {
      if (support[i]) {
        if (grad[i] !== 0) inside++;
      } else expect(grad[i]).toBe(0);
    }
    let supportSize = 0;
    for (const x of support) supportSize += x;
    expect(inside).toBe(supportSize); // noise lands on every coordinate of the support
    expect(supportSize).toBe(grad.length - 25 * 7); // 25 foreign items x (6 embedding + 1 bias)
    // a policy whose offers disagree with the catalogue's provider column is refused
    expect(() => offerScope('insurer', { insurer: [[0, 16]], platform: [[16, 40]] }, catalogue)).toThrow(/disagree with the catalogue at item 15 \(it15\)/);
    expect(() => offerScope('insurer2', { insurer: [[0, 15]] }, catalogue)).toThrow(/no offers for party "insurer2"/);
    m.dispose();
  });

  test('Poisson sampling rate is q (CSPRNG) and does not touch Math.random', () => {
    const spy = jest.spyOn(Math, 'random').mockImplementation(() => {
      throw new Error('Math.random used');
    });
    try {
      const cand = Uint32Array.from({ length: 100_000 }, (_, i) => i);
      const s = poissonSample(cand, 0.05);
      // binomial(1e5, 0.05): sd ~ 69
      expect(Math.abs(s.length - 5000)).toBeLessThan(400);
      expect(new Set(s).size).toBe(s.length);
    } finally {
      spy.mockRestore();
    }
  });
});

function g0len(m: TwoTowerModel): number {
  return layoutSize(m.layout!);
}
