/**
 * One implementation, two ways of reading (participant-node/model/reads.ts): the asynchronous forms
 * that the webgpu backend needs must give exactly what the synchronous training path computes, and
 * a failed read must still release the generator's tensors.
 */
import * as tf from '@tensorflow/tfjs';
import { runAsync, runSync, type Reads } from '../../../participant-node/model/reads';
import { TwoTowerModel } from '../../../participant-node/model/twotower';
import { clippedUserGradientSum, clippedUserGradientSumAsync, type UserExamples } from '../../../participant-node/model/dpsgd';
import { DEFAULT_VOCABULARIES, itemFeatureDim, userFeatureDim } from '../../../shared/data/vocab';
import { Xoshiro128 } from '../../../shared/util/prng';

const NU = 25;
const NI = 30;

function model(): TwoTowerModel {
  const m = TwoTowerModel.forPolicy({ architecture: 'two-tower-v1', embeddingDim: 6, hiddenDim: 5, numItems: NI }, DEFAULT_VOCABULARIES, NU, { learningRate: 0.01, initSeed: 5 });
  const rng = new Xoshiro128(5);
  m.setFeatures(
    Float32Array.from({ length: NU * userFeatureDim(DEFAULT_VOCABULARIES) }, () => (rng.nextInt(3) === 0 ? 1 : 0)),
    Float32Array.from({ length: NI * itemFeatureDim(DEFAULT_VOCABULARIES) }, () => (rng.nextInt(3) === 0 ? 1 : 0)),
  );
  return m;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('reads: sync and async drivers of one computation', () => {
  function* twoReads(log: string[]): Reads<number> {
    const a = tf.tensor1d([1, 2, 3]);
    const b = tf.tensor1d([10, 20]);
    try {
      const [va, vb] = yield [a, b];
      log.push(`first ${va.length} ${vb.length}`);
      const c = tf.mul(a, 2);
      try {
        const [vc] = yield [c];
        return va[2] + vb[1] + vc[0];
      } finally {
        c.dispose();
      }
    } finally {
      tf.dispose([a, b]);
      log.push('disposed');
    }
  }

  test('both drivers feed the values back in order and the generator cleans up', async () => {
    const before = tf.memory().numTensors;
    const l1: string[] = [];
    const l2: string[] = [];
    expect(runSync(twoReads(l1))).toBe(3 + 20 + 2);
    expect(await runAsync(twoReads(l2))).toBe(3 + 20 + 2);
    expect(l1).toEqual(['first 3 2', 'disposed']);
    expect(l2).toEqual(l1);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('a failed read is thrown into the generator: its finally blocks run, the error reaches the caller', async () => {
    function* badRead(log: string[]): Reads<number> {
      const keep = tf.tensor1d([1, 2]);
      const gone = tf.tensor1d([3]);
      gone.dispose(); // reading a disposed tensor fails
      try {
        yield [gone];
        return 1;
      } finally {
        keep.dispose();
        log.push('cleaned');
      }
    }
    const before = tf.memory().numTensors;
    const l1: string[] = [];
    const l2: string[] = [];
    expect(() => runSync(badRead(l1))).toThrow(/disposed/);
    await expect(runAsync(badRead(l2))).rejects.toThrow(/disposed/);
    expect(l1).toEqual(['cleaned']);
    expect(l2).toEqual(['cleaned']);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('asynchronous forms of the training computations', () => {
  test('computeGradientsAsync equals computeGradients exactly (towers, sparse rows, loss), with and without weights', async () => {
    const m = model();
    const rng = new Xoshiro128(8);
    const B = 40;
    const users = Uint32Array.from({ length: B }, () => rng.nextInt(NU));
    const items = Uint32Array.from({ length: B }, () => rng.nextInt(NI));
    const labels = Float32Array.from({ length: B }, (_, j) => (j % 3 === 0 ? 1 : 0));
    const weights = Float32Array.from({ length: B }, () => rng.nextFloat());
    for (const w of [undefined, weights]) {
      const before = tf.memory().numTensors;
      const s = m.computeGradients(users, items, labels, w);
      const a = await m.computeGradientsAsync(users, items, labels, w);
      expect(tf.memory().numTensors).toBe(before);
      expect(a.loss).toBe(s.loss);
      expect([...a.tower.keys()]).toEqual([...s.tower.keys()]);
      expect(a.tower.size).toBe(8);
      for (const [k, v] of s.tower) expect(a.tower.get(k)).toEqual(v);
      for (const k of ['itemEmbedding', 'itemBias', 'userEmbedding'] as const) {
        expect(a[k].rows).toEqual(s[k].rows);
        expect(a[k].values).toEqual(s[k].values);
      }
      expect(s.itemEmbedding.values.some((x) => x !== 0)).toBe(true);
    }
    await expect(m.computeGradientsAsync(users, items.subarray(1), labels)).rejects.toThrow(/batch arrays differ in length/);
    m.dispose();
  });

  test('clippedUserGradientSumAsync equals clippedUserGradientSum exactly (sum, norms, private rows, loss)', async () => {
    const m = model();
    const rng = new Xoshiro128(12);
    const batch: UserExamples[] = [0, 4, 9, 13, 24].map((user) => {
      const n = 1 + rng.nextInt(6);
      return { user, items: Uint32Array.from({ length: n }, () => rng.nextInt(NI)), labels: Float32Array.from({ length: n }, () => rng.nextInt(2)) };
    });
    const ref = clippedUserGradientSum(m, batch, Infinity);
    const C = 0.5 * (Math.min(...ref.norms) + Math.max(...ref.norms)); // some users clipped, some not
    const before = tf.memory().numTensors;
    const s = clippedUserGradientSum(m, batch, C);
    const a = await clippedUserGradientSumAsync(m, batch, C);
    expect(tf.memory().numTensors).toBe(before);
    expect(a.sum).toEqual(s.sum);
    expect(a.norms).toEqual(s.norms);
    expect(a.userGrads.rows).toEqual(s.userGrads.rows);
    expect(a.userGrads.values).toEqual(s.userGrads.values);
    expect(a.loss).toBe(s.loss);
    expect(s.sum).not.toEqual(ref.sum); // clipping took effect
    await expect(clippedUserGradientSumAsync(m, batch, 0)).rejects.toThrow(/"clip" expected > 0/);
    m.dispose();
  });
});
