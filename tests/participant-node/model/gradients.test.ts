/**
 * The sparse embedding gradient (JS gather + per-row scatter-add) must equal the dense tfjs gradient
 * of a reference model that keeps the tables as variables and uses tf.gather (cpu backend, where
 * UnsortedSegmentSum exists). Relative error < 1e-5 on every parameter.
 */
import * as tf from '@tensorflow/tfjs';
import { DenseAdam, TwoTowerModel, segmentSumRows } from '../../../participant-node/model/twotower';
import { Xoshiro128 } from '../../../shared/util/prng';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

function makeBatch(rng: Xoshiro128, B: number, nu: number, ni: number) {
  const users = new Uint32Array(B);
  const items = new Uint32Array(B);
  const labels = new Float32Array(B);
  for (let j = 0; j < B; j++) {
    users[j] = rng.nextInt(nu);
    items[j] = rng.nextInt(ni);
    labels[j] = rng.nextInt(2);
  }
  return { users, items, labels };
}

describe('sparse embedding gradients', () => {
  test.each([true, false])('match the dense tf.gather reference (towers=%s)', async (towers) => {
    const shape = { numUsers: 40, numItems: 30, embeddingDim: 8, hiddenDim: 6, userFeatureDim: 5, itemFeatureDim: 4, towers };
    const m = new TwoTowerModel(shape, { learningRate: 0.01, initSeed: 7 });
    const rng = new Xoshiro128(11);
    const uf = Float32Array.from({ length: 40 * 5 }, () => rng.nextInt(2));
    const itf = Float32Array.from({ length: 30 * 4 }, () => rng.nextInt(2));
    m.setFeatures(uf, itf);
    // repeated users and items in one batch exercise the scatter-add
    const { users, items, labels } = makeBatch(rng, 64, 40, 30);
    const sparse = await m.computeGradients(users, items, labels);

    const towerVals = await m.towerValues();
    const E_u = tf.variable(tf.tensor2d(m.userEmbedding, [40, 8]));
    const E_i = tf.variable(tf.tensor2d(m.itemEmbedding, [30, 8]));
    const b_i = tf.variable(tf.tensor1d(m.itemBias));
    const shapes: Record<string, number[]> = {
      'user_tower/dense1/kernel': [5, 6], 'user_tower/dense1/bias': [6], 'user_tower/dense2/kernel': [6, 8], 'user_tower/dense2/bias': [8],
      'item_tower/dense1/kernel': [4, 6], 'item_tower/dense1/bias': [6], 'item_tower/dense2/kernel': [6, 8], 'item_tower/dense2/bias': [8],
    };
    const tv = new Map([...towerVals].map(([k, v]) => [k, tf.variable(tf.tensor(v, shapes[k]))]));
    const ui = tf.tensor1d(Int32Array.from(users), 'int32');
    const ii = tf.tensor1d(Int32Array.from(items), 'int32');
    const Xu = tf.tensor2d(uf, [40, 5]);
    const Xi = tf.tensor2d(itf, [30, 4]);
    const y = tf.tensor1d(labels);
    const tower = (p: string, x: tf.Tensor2D) =>
      tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, tv.get(`${p}/dense1/kernel`) as tf.Tensor2D), tv.get(`${p}/dense1/bias`)!)), tv.get(`${p}/dense2/kernel`) as tf.Tensor2D), tv.get(`${p}/dense2/bias`)!);
    const vars = [E_u, E_i, b_i, ...tv.values()];
    const { grads } = tf.variableGrads(() => {
      const U = tf.add(towers ? tower('user_tower', tf.gather(Xu, ui) as tf.Tensor2D) : tf.zeros([64, 8]), tf.gather(E_u, ui));
      const I = tf.add(towers ? tower('item_tower', tf.gather(Xi, ii) as tf.Tensor2D) : tf.zeros([64, 8]), tf.gather(E_i, ii));
      const logit = tf.add(tf.sum(tf.mul(U, I), 1), tf.gather(b_i, ii));
      return tf.losses.sigmoidCrossEntropy(y, logit) as tf.Scalar;
    }, vars);

    const denseOf = (s: { rows: Uint32Array; values: Float32Array; width: number }, nRows: number) => {
      const out = new Float32Array(nRows * s.width);
      s.rows.forEach((r, k) => out.set(s.values.subarray(k * s.width, (k + 1) * s.width), r * s.width));
      return out;
    };
    const gEu = grads[E_u.name].dataSync() as Float32Array;
    const gEi = grads[E_i.name].dataSync() as Float32Array;
    const gBi = grads[b_i.name].dataSync() as Float32Array;
    expect(relErr(denseOf(sparse.userEmbedding, 40), gEu)).toBeLessThan(1e-5);
    expect(relErr(denseOf(sparse.itemEmbedding, 30), gEi)).toBeLessThan(1e-5);
    expect(relErr(denseOf(sparse.itemBias, 30), gBi)).toBeLessThan(1e-5);
    // untouched rows get exactly zero gradient in the reference and are absent from the sparse form
    const touched = new Set(items);
    for (let r = 0; r < 30; r++) if (!touched.has(r)) expect(gBi[r]).toBe(0);
    expect(sparse.itemBias.rows.length).toBe(touched.size);
    if (towers) {
      for (const [name, v] of tv) expect(relErr(sparse.tower.get(name)!, grads[v.name].dataSync() as Float32Array)).toBeLessThan(1e-5);
    } else {
      expect(sparse.tower.size).toBe(0);
    }
    tf.dispose([E_u, E_i, b_i, ...tv.values(), ui, ii, Xu, Xi, y, ...Object.values(grads)]);
    m.dispose();
  });

  test('only touched rows change in a training step', async () => {
    const shape = { numUsers: 20, numItems: 50, embeddingDim: 4, hiddenDim: 4, userFeatureDim: 3, itemFeatureDim: 3, towers: true };
    const m = new TwoTowerModel(shape, { learningRate: 0.05, initSeed: 1 });
    m.setFeatures(new Float32Array(60).fill(1), new Float32Array(150).fill(1));
    const beforeI = Float32Array.from(m.itemEmbedding);
    const beforeU = Float32Array.from(m.userEmbedding);
    const users = Uint32Array.from([1, 2, 2]);
    const items = Uint32Array.from([3, 7, 3]);
    await m.trainBatch(users, items, Float32Array.from([1, 0, 1]));
    for (let r = 0; r < 50; r++) {
      const changed = beforeI.subarray(r * 4, r * 4 + 4).some((x, k) => x !== m.itemEmbedding[r * 4 + k]);
      expect(changed).toBe(r === 3 || r === 7);
    }
    for (let r = 0; r < 20; r++) {
      const changed = beforeU.subarray(r * 4, r * 4 + 4).some((x, k) => x !== m.userEmbedding[r * 4 + k]);
      expect(changed).toBe(r === 1 || r === 2);
    }
    m.dispose();
  });

  test('constructing and disposing a model leaves no tensor behind (towers included)', async () => {
    const before = tf.memory().numTensors;
    for (let k = 0; k < 3; k++) {
      const m = new TwoTowerModel({ numUsers: 10, numItems: 20, embeddingDim: 8, hiddenDim: 6, userFeatureDim: 5, itemFeatureDim: 4, towers: true }, { learningRate: 0.01, initSeed: k });
      expect(tf.memory().numTensors).toBe(before + 8); // the 8 tower variables (their Adam state is on the CPU)
      for (const [name, w] of await m.towerValues()) expect(m.towerVariable(name).dataSync()).toEqual(w); // their data survived
      m.resetOptimizer();
      m.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  test('segmentSumRows sums repeated rows exactly', () => {
    const s = segmentSumRows(Uint32Array.from([5, 2, 5]), Float32Array.from([1, 2, 10, 20, 100, 200]), 2);
    expect(Array.from(s.rows)).toEqual([2, 5]);
    expect(Array.from(s.values)).toEqual([10, 20, 101, 202]);
  });
});

describe('DenseAdam: the tower optimizer on the CPU gives the bits of tf.train.adam', () => {
  const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength)));

  /** gradients with zeros, signs, tiny and large magnitudes (float32) */
  function grad(rng: Xoshiro128, n: number): Float32Array {
    return Float32Array.from({ length: n }, (_, j) => {
      const k = rng.nextInt(10);
      if (k === 0) return 0;
      const x = (rng.nextFloat() * 2 - 1) * (k === 1 ? 1e-30 : k === 2 ? 1e3 : k === 3 ? 1e-6 : 1);
      return x;
    });
  }

  test.each([
    { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-7 },
    { lr: 0.3, b1: 0.5, b2: 0.9, eps: 1e-3 },
  ])('every weight, every step, over 60 steps and a reset (%o)', ({ lr, b1, b2, eps }) => {
    const rng = new Xoshiro128(21);
    const sizes = { a: 37 * 5, b: 5, c: 1 };
    const w: Record<string, Float32Array> = {};
    const vars: Record<string, tf.Variable> = {};
    for (const [name, n] of Object.entries(sizes)) {
      w[name] = Float32Array.from({ length: n }, () => rng.nextFloat() * 2 - 1);
      vars[name] = tf.variable(tf.tensor1d(w[name].slice()), true, `dense-adam-${lr}-${name}`);
    }
    const ours = new DenseAdam(lr, b1, b2, eps);
    let ref: tf.Optimizer = tf.train.adam(lr, b1, b2, eps);
    for (let step = 0; step < 60; step++) {
      if (step === 40) {
        ours.reset();
        ref.dispose();
        ref = tf.train.adam(lr, b1, b2, eps);
      }
      const g: Record<string, Float32Array> = {};
      for (const [name, n] of Object.entries(sizes)) g[name] = grad(rng, n);
      ours.apply(Object.keys(sizes).map((name) => ({ name, w: w[name], g: g[name] })));
      const named: Record<string, tf.Tensor> = {};
      for (const name of Object.keys(sizes)) named[vars[name].name] = tf.tensor1d(g[name]);
      ref.applyGradients(named);
      tf.dispose(Object.values(named));
      for (const name of Object.keys(sizes)) expect(bits(w[name])).toEqual(bits(vars[name].dataSync() as Float32Array));
    }
    ref.dispose();
    tf.dispose(Object.values(vars));
  });

  test('a gradient of the wrong length is refused before any weight changes', () => {
    const a = new DenseAdam(0.01);
    const w1 = Float32Array.from([1, 2]);
    const w2 = Float32Array.from([3]);
    expect(() => a.apply([{ name: 'x', w: w1, g: Float32Array.from([1, 1]) }, { name: 'y', w: w2, g: Float32Array.from([1, 1]) }])).toThrow(/gradient of "y" has length 2, the weights 1/);
    expect(Array.from(w1)).toEqual([1, 2]);
    expect(Array.from(w2)).toEqual([3]);
  });

  test("a model's training steps keep its tfjs variables equal to the master copies and to tf.train.adam's weights", async () => {
    const shape = { numUsers: 30, numItems: 25, embeddingDim: 6, hiddenDim: 5, userFeatureDim: 4, itemFeatureDim: 3, towers: true };
    const m = new TwoTowerModel(shape, { learningRate: 0.02, initSeed: 3 });
    const rng = new Xoshiro128(8);
    m.setFeatures(Float32Array.from({ length: 30 * 4 }, () => rng.nextFloat()), Float32Array.from({ length: 25 * 3 }, () => rng.nextFloat()));
    const init = await m.towerValues();
    const ref = new Map([...init].map(([name, w]) => [name, tf.variable(tf.tensor1d(w), true, `ref-${name}`)]));
    const opt: tf.Optimizer = tf.train.adam(0.02, 0.9, 0.999, 1e-7);
    for (let step = 0; step < 8; step++) {
      const b = makeBatch(rng, 64, 30, 25);
      const g = await m.computeGradients(b.users, b.items, b.labels);
      m.applyGradients(g);
      const named: Record<string, tf.Tensor> = {};
      for (const [name, v] of ref) named[v.name] = tf.tensor1d(g.tower.get(name)!);
      opt.applyGradients(named);
      tf.dispose(Object.values(named));
      const master = await m.towerValues();
      for (const [name, v] of ref) {
        expect(bits(master.get(name)!)).toEqual(bits(v.dataSync() as Float32Array));
        expect(bits(m.towerVariable(name).dataSync() as Float32Array)).toEqual(bits(master.get(name)!));
      }
    }
    // setSharedFlat-style writes reach both too: resetOptimizer then one more step still matches a fresh tf.train.adam
    m.resetOptimizer();
    const opt2: tf.Optimizer = tf.train.adam(0.02, 0.9, 0.999, 1e-7);
    const b = makeBatch(rng, 64, 30, 25);
    const g = await m.computeGradients(b.users, b.items, b.labels);
    m.applyGradients(g);
    const named: Record<string, tf.Tensor> = {};
    for (const [name, v] of ref) named[v.name] = tf.tensor1d(g.tower.get(name)!);
    opt2.applyGradients(named);
    tf.dispose(Object.values(named));
    const master = await m.towerValues();
    for (const [name, v] of ref) expect(bits(master.get(name)!)).toEqual(bits(v.dataSync() as Float32Array));
    opt.dispose();
    opt2.dispose();
    tf.dispose([...ref.values()]);
    m.dispose();
  });
});
