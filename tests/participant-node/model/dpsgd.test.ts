/**
 * User-level clipping: the vectorised per-user gradients (hand-written backward pass) must equal a
 * naive loop of per-user autodiff, and removing any one user must change the clipped sum by <= C.
 */
import * as tf from '@tensorflow/tfjs';
import { TwoTowerModel } from '../../../participant-node/model/twotower';
import { clippedUserGradientSum, dpChunkUsers, DpSgdTrainer, offerScope, perUserGradients, poissonSample, scopeSupport, type UserExamples } from '../../../participant-node/model/dpsgd';
import { DEFAULT_VOCABULARIES, itemFeatureDim, userFeatureDim } from '../../../shared/data/vocab';
import { layoutSize } from '../../../shared/model/layout';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { Xoshiro128 } from '../../../shared/util/prng';
import { ExampleKey } from '../../../participant-node/model/coins';

const testKey = (b: number) => ExampleKey.forTesting(new Uint8Array(32).fill(b));

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

  test("the chunk a user is computed in changes no user's norm, and the sum only by rounding (webgpu's 1,024-user chunks vs 256)", async () => {
    expect(dpChunkUsers('webgpu')).toBe(1024);
    for (const b of ['cpu', 'wasm', 'tensorflow']) expect(dpChunkUsers(b)).toBe(256);
    const m = model(6);
    const rng = new Xoshiro128(13);
    const batch = randomBatch(rng, Array.from({ length: 30 }, (_, k) => k));
    const whole = await clippedUserGradientSum(m, batch, 0.5);
    const parts = [batch.slice(0, 7), batch.slice(7, 19), batch.slice(19)];
    const sum = new Float32Array(whole.sum.length);
    const norms: number[] = [];
    for (const part of parts) {
      const r = await clippedUserGradientSum(m, part, 0.5);
      r.sum.forEach((x, i) => (sum[i] += x));
      norms.push(...r.norms);
    }
    expect(norms).toEqual(Array.from(whole.norms));
    expect(relErr(sum, whole.sum)).toBeLessThan(1e-6);
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
    const tr = new DpSgdTrainer(m, { user: users, item: items }, domains, { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.5, maxInteractionsPerUser: 3, negatives: 2, learningRate: 0.01 }, testKey(2));
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
    const tr = new DpSgdTrainer(m, { user: users, item: items }, { byDomain, domainOf }, { clipNorm: 1, noiseMultiplier: 1, samplingRate: 0.7, maxInteractionsPerUser: 8, negatives: 3, learningRate: 0.01, scope }, testKey(3));
    expect(tr.droppedOutOfScope).toBe(40);
    for (const u of tr.population) {
      const ex = tr.examplesOf(u, 0);
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

describe('per-user example coins (neighbouring data sets)', () => {
  const domains = { byDomain: new Map([['course', Uint32Array.from({ length: NI }, (_, i) => i)]]), domainOf: Array(NI).fill('course') };
  const cfg = { clipNorm: 0.1, noiseMultiplier: 1, samplingRate: 0.5, maxInteractionsPerUser: 3, negatives: 4, learningRate: 0.01 };
  /** D: every user 5 interactions (more than the cap: a random subset is drawn); D' = D without user w */
  function neighbours(w: number) {
    const rng = new Xoshiro128(21);
    const users: number[] = [];
    const items: number[] = [];
    for (let u = 0; u < NU; u++) for (let j = 0; j < 5; j++) (users.push(u), items.push(rng.nextInt(NI)));
    const D = { user: Uint32Array.from(users), item: Uint32Array.from(items) };
    const keep = users.map((u) => u !== w);
    return { D, Dp: { user: D.user.filter((_, j) => keep[j]), item: D.item.filter((_, j) => keep[j]) } };
  }

  test("removing user w changes no other user's examples or clipped gradient, in w's steps and in later ones; ||S(D) - S(D')|| <= C", async () => {
    const m = model(9);
    for (let i = 0; i < m.itemEmbedding.length; i++) m.itemEmbedding[i] *= 20; // large gradients: clipping is active
    const w = 0;
    const { D, Dp } = neighbours(w);
    const key = testKey(7);
    const tD = new DpSgdTrainer(m, D, domains, cfg, key);
    const tDp = new DpSgdTrainer(m, Dp, domains, cfg, key);
    expect(tD.population.length).toBe(NU);
    expect(tDp.population.length).toBe(NU - 1);
    // fixed Poisson coins (identical for the users both data sets share); w is sampled in steps 0 and 2
    const coins = new Xoshiro128(5);
    const C = cfg.clipNorm;
    let clippedUsers = 0;
    for (const [step, wSampled] of [[0, true], [1, false], [2, true], [3, false]] as const) {
      const others = Array.from(tDp.population).filter(() => coins.nextFloat() < cfg.samplingRate);
      expect(others.length).toBeGreaterThan(3);
      const bD = [...(wSampled ? [w] : []), ...others].map((u) => tD.examplesOf(u, step));
      const bDp = others.map((u) => tDp.examplesOf(u, step));
      const off = wSampled ? 1 : 0;
      others.forEach((u, k) => {
        expect(bD[k + off].user).toBe(u);
        expect(bD[k + off].items).toEqual(bDp[k].items); // bit-identical examples
        expect(bD[k + off].labels).toEqual(bDp[k].labels);
      });
      const sD = await clippedUserGradientSum(m, bD, C);
      const sDp = await clippedUserGradientSum(m, bDp, C);
      expect(sD.norms.subarray(off)).toEqual(sDp.norms); // the same per-user gradients before clipping
      for (const n of sDp.norms) if (n > C) clippedUsers++;
      let d2 = 0;
      for (let i = 0; i < sD.sum.length; i++) d2 += (sD.sum[i] - sDp.sum[i]) ** 2;
      if (wSampled) expect(Math.sqrt(d2)).toBeLessThanOrEqual(C * (1 + 1e-6));
      else expect(d2).toBe(0);
    }
    expect(clippedUsers).toBeGreaterThan(0);
    m.dispose();
  });

  test('examples are drawn from the coins of (key, step, user): fixed by them, different across steps and keys', () => {
    const m = model(10);
    const { D } = neighbours(-1);
    const a = new DpSgdTrainer(m, D, domains, cfg, testKey(1));
    const b = new DpSgdTrainer(m, D, domains, cfg, testKey(1));
    const c = new DpSgdTrainer(m, D, domains, cfg, testKey(2));
    const items = (t: DpSgdTrainer, step: number) => Array.from(t.population, (u) => Array.from(t.examplesOf(u, step).items).join(',')).join(';');
    expect(items(a, 0)).toBe(items(b, 0));
    expect(items(a, 0)).not.toBe(items(a, 1));
    expect(items(a, 0)).not.toBe(items(c, 0));
    // the order in which users are asked for does not matter
    const rev = Array.from(a.population).reverse().map((u) => Array.from(a.examplesOf(u, 0).items).join(','));
    expect(rev.reverse().join(';')).toBe(items(a, 0));
    m.dispose();
  });

  test("a step uses the examples of its own step index (noise 0, q = 1: the step's gradient is the clipped sum of examplesOf(u, step), not divided by the private user count)", async () => {
    const m = model(11);
    const { D } = neighbours(-1);
    const tr = new DpSgdTrainer(m, D, domains, { ...cfg, noiseMultiplier: 0, samplingRate: 1 }, testKey(4));
    for (const step of [0, 1]) {
      expect(tr.stepsTaken).toBe(step);
      const want = await clippedUserGradientSum(m, Array.from(tr.population, (u) => tr.examplesOf(u, step)), cfg.clipNorm);
      const { grad } = await tr.noisyGradient();
      expect(relErr(grad, want.sum)).toBeLessThan(1e-6);
    }
    m.dispose();
  });
});
