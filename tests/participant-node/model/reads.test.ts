/**
 * One implementation, two ways of reading (participant-node/model/reads.ts): the asynchronous driver
 * that the webgpu backend needs must give exactly what the synchronous driver computes, a failed
 * read must still release the generator's tensors, and `run` must pick the asynchronous driver on a
 * backend whose synchronous reads fail. That last part runs the product's training, DP-SGD,
 * federated update, evaluation and serving paths on a stand-in backend (the cpu backend and its
 * kernels, with the synchronous read throwing the way tfjs-backend-webgpu 4.22 does in Node) and
 * compares every number with the same calls on cpu.
 */
import * as tf from '@tensorflow/tfjs';
import { readMode, run, runAsync, runSync, runSyncSliced, type Reads } from '../../../participant-node/model/reads';
import { TwoTowerModel } from '../../../participant-node/model/twotower';
import { clippedUserGradientSumReads, DpSgdTrainer, type UserExamples } from '../../../participant-node/model/dpsgd';
import { domainIndex, encodeFeatures, leaveOneOutSplit, trainEpochs, type TrainResult } from '../../../participant-node/model/train';
import { evaluateCrossDomain, evaluateModel } from '../../../participant-node/model/evaluate';
import { evaluateUsers } from '../../../participant-node/model/pooled';
import { computeLocalUpdate } from '../../../participant-node/federation/update';
import { ExampleKey } from '../../../participant-node/model/coins';
import { Recommender } from '../../../participant-node/serve/recommend';
import type { NodeDataset } from '../../../participant-node/data/dataset';
import { DEFAULT_VOCABULARIES, DOMAINS, itemFeatureDim, userFeatureDim } from '../../../shared/data/vocab';
import { defaultPolicy } from '../../../shared/policy/defaults';
import { initSharedParams } from '../../../shared/model/init';
import { sodiumReady } from '../../../shared/crypto/sodium';
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
  await sodiumReady();
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

describe('the synchronous driver of run() lets the event loop turn', () => {
  /** `n` reads, each after `busyMs` of computation that holds the thread (as a training step does) */
  function* busy(n: number, busyMs: number, seen: () => boolean, log: boolean[]): Reads<number> {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const until = Date.now() + busyMs;
      while (Date.now() < until) sum += 0; // holds the thread
      const t = tf.scalar(i);
      try {
        const [v] = yield [t];
        sum += v[0];
      } finally {
        t.dispose();
      }
      log.push(seen());
    }
    return sum;
  }

  test("runSyncSliced gives runSync's result, and an I/O callback queued before it runs while it computes", async () => {
    let ran = false;
    setImmediate(() => (ran = true));
    const log: boolean[] = [];
    // 6 reads, 30 ms of computation before each: 180 ms in all, several 50 ms slices
    expect(await runSyncSliced(busy(6, 30, () => ran, log), 50)).toBe(15);
    expect(log[log.length - 1]).toBe(true); // the callback ran before the computation ended
    expect(log[0]).toBe(false); // ... and not before the first slice was used up

    // runSync holds the loop for the whole computation: the callback waits
    let ran2 = false;
    setImmediate(() => (ran2 = true));
    const log2: boolean[] = [];
    expect(runSync(busy(6, 30, () => ran2, log2))).toBe(15);
    expect(log2.every((x) => !x)).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(ran2).toBe(true);
  });

  test('run() on a backend with synchronous reads uses the sliced driver', async () => {
    expect(readMode()).toBe('sync');
    let ran = false;
    setImmediate(() => (ran = true));
    const log: boolean[] = [];
    expect(await run(busy(4, 30, () => ran, log))).toBe(6);
    expect(log[log.length - 1]).toBe(true);
  });
});

describe('both drivers of the training computations give identical numbers', () => {
  test('gradients of a batch (towers, sparse rows, loss), with and without weights', async () => {
    const m = model();
    const rng = new Xoshiro128(8);
    const B = 40;
    const users = Uint32Array.from({ length: B }, () => rng.nextInt(NU));
    const items = Uint32Array.from({ length: B }, () => rng.nextInt(NI));
    const labels = Float32Array.from({ length: B }, (_, j) => (j % 3 === 0 ? 1 : 0));
    const weights = Float32Array.from({ length: B }, () => rng.nextFloat());
    for (const w of [undefined, weights]) {
      const before = tf.memory().numTensors;
      const s = runSync(m.gradientReads(users, items, labels, w));
      const a = await runAsync(m.gradientReads(users, items, labels, w));
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
      expect(await m.computeGradients(users, items, labels, w)).toEqual(s); // run(): the sync driver on cpu
    }
    await expect(runAsync(m.gradientReads(users, items.subarray(1), labels))).rejects.toThrow(/batch arrays differ in length/);
    await expect(m.computeGradients(users, items.subarray(1), labels)).rejects.toThrow(/batch arrays differ in length/);
    m.dispose();
  });

  test('the per-user clipped gradient sum (sum, norms, private rows, loss)', async () => {
    const m = model();
    const rng = new Xoshiro128(12);
    const batch: UserExamples[] = [0, 4, 9, 13, 24].map((user) => {
      const n = 1 + rng.nextInt(6);
      return { user, items: Uint32Array.from({ length: n }, () => rng.nextInt(NI)), labels: Float32Array.from({ length: n }, () => rng.nextInt(2)) };
    });
    const ref = runSync(clippedUserGradientSumReads(m, batch, Infinity));
    const C = 0.5 * (Math.min(...ref.norms) + Math.max(...ref.norms)); // some users clipped, some not
    const before = tf.memory().numTensors;
    const s = runSync(clippedUserGradientSumReads(m, batch, C));
    const a = await runAsync(clippedUserGradientSumReads(m, batch, C));
    expect(tf.memory().numTensors).toBe(before);
    expect(a.sum).toEqual(s.sum);
    expect(a.norms).toEqual(s.norms);
    expect(a.userGrads.rows).toEqual(s.userGrads.rows);
    expect(a.userGrads.values).toEqual(s.userGrads.values);
    expect(a.loss).toBe(s.loss);
    expect(s.sum).not.toEqual(ref.sum); // clipping took effect
    await expect(runAsync(clippedUserGradientSumReads(m, batch, 0))).rejects.toThrow(/"clip" expected > 0/);
    m.dispose();
  });
});

/** A small two-party-free dataset: 3 domains, users with 3-6 interactions sorted by time. */
function dataset(): NodeDataset {
  const v = DEFAULT_VOCABULARIES;
  const rng = new Xoshiro128(21);
  const pick = <T>(xs: readonly T[]) => xs[rng.nextInt(xs.length)];
  const items = Array.from({ length: DS_ITEMS }, (_, i) => ({ id: `i${i}`, domain: DOMAINS[i % 3], priceBand: pick(v.priceBand), topics: [pick(v.topics)], provider: 'p' }));
  const users = Array.from({ length: DS_USERS }, (_, u) => ({ id: `u${u}`, ageBand: pick(v.ageBand), region: pick(v.region), lifeStage: pick(v.lifeStage), interests: [pick(v.topics)] }));
  const us: number[] = [];
  const is: number[] = [];
  const ts: number[] = [];
  for (let u = 0; u < DS_USERS; u++) {
    const n = 3 + rng.nextInt(4);
    for (let k = 0; k < n; k++) {
      us.push(u);
      is.push(rng.nextInt(DS_ITEMS));
      ts.push(k);
    }
  }
  return { party: 'p', items, catalogueHash: 'ab'.repeat(32), users, interactions: { user: Uint32Array.from(us), item: Uint32Array.from(is), timestamp: Float64Array.from(ts) } };
}
const DS_USERS = 40;
const DS_ITEMS = 60;

/** a training result without its timings */
const numbersOf = (r: TrainResult) => ({ epochs: r.epochs, steps: r.steps, samples: r.samples, finalLoss: r.finalLoss, epochLosses: r.epochLosses });

/**
 * The product's calls, as the node makes them, on the ACTIVE backend (same seeds every time). DP
 * noise and Poisson sampling come from the CSPRNG, so the DP trainer runs with q = 1 and sigma = 0
 * here (every user, no noise: deterministic) to compare numbers; the federated update runs with the
 * policy's noise and is compared on what is deterministic.
 */
async function scenario() {
  const ds = dataset();
  const split = leaveOneOutSplit(ds);
  const pol = defaultPolicy({
    federationId: 'fb-test',
    coordinator: { name: 'coordinator', publicKey: 'C'.repeat(43) + '=' },
    parties: [
      { name: 'p', publicKey: 'P'.repeat(43) + '=' },
      { name: 'q', publicKey: 'Q'.repeat(43) + '=' },
    ],
    catalogue: { hash: ds.catalogueHash, numItems: DS_ITEMS },
  });
  const policy = { ...pol, model: { ...pol.model, embeddingDim: 6, hiddenDim: 5 }, privacy: { ...pol.privacy, samplingRate: 0.5, stepsPerRound: 2, maxInteractionsPerUser: 3 } };
  const m = TwoTowerModel.forPolicy(policy.model, DEFAULT_VOCABULARIES, DS_USERS, { learningRate: 0.02, initSeed: 3 });
  try {
    const f = encodeFeatures(ds, DEFAULT_VOCABULARIES);
    m.setFeatures(f.users, f.items);
    const dom = domainIndex(ds);
    const opts = { epochs: 1, batchSize: 24, negatives: 2, rng: new Xoshiro128(5) };
    const burnIn = await trainEpochs(m, split.train, dom, opts); // optimizer slots are created here
    const tensors = tf.memory().numTensors;
    const train = await trainEpochs(m, split.train, dom, { ...opts, epochs: 3 });
    const dp = new DpSgdTrainer(m, split.train, dom, { clipNorm: 0.5, noiseMultiplier: 0, samplingRate: 1, maxInteractionsPerUser: 3, negatives: 2, learningRate: 0.01 }, ExampleKey.forTesting(new Uint8Array(32).fill(6)));
    const dpSteps = [await dp.step(), await dp.step()];
    const shared = await m.getSharedFlat();
    const userEmbedding = Float32Array.from(m.userEmbedding);
    const towers = await m.towerValues();
    const loo = await evaluateModel(m, ds, split, 7);
    const truth = { user: Uint32Array.from([0, 1, 2, 3]), item: Uint32Array.from([5, 6, 7, 8]) };
    const cross = await evaluateCrossDomain(m, ds, split, truth, 8);
    const sample = await evaluateUsers(m, ds, split, Uint32Array.from([1, 3, 5, 7, 9, 11]), { seed: 9, truth });
    const rec = await Recommender.open(m, ds, DEFAULT_VOCABULARIES);
    const known = await rec.recommend({ userId: 'u4', k: 5 });
    const cold = await rec.recommend({ features: { ageBand: DEFAULT_VOCABULARIES.ageBand[0], region: DEFAULT_VOCABULARIES.region[0], lifeStage: DEFAULT_VOCABULARIES.lifeStage[0], interests: [] }, k: 3, domain: 'finance' });
    const leftOver = tf.memory().numTensors - tensors;
    // the federated round update, both mechanisms, from a global model (noise: CSPRNG); each
    // starts by dropping the tower optimizer's slots (resetOptimizer)
    const global = initSharedParams(m.layout!, 4);
    const dpsgd = await computeLocalUpdate(m, split.train, dom, { policy, runId: 'r', round: 1, global }, ExampleKey.forTesting(new Uint8Array(32).fill(10)));
    const afterRound = tf.memory().numTensors;
    const roundNoise = await computeLocalUpdate(m, split.train, dom, { policy: { ...policy, privacy: { ...policy.privacy, mechanism: 'round-noise' as const, samplingRate: 1 } }, runId: 'r', round: 2, global }, ExampleKey.forTesting(new Uint8Array(32).fill(11)));
    const leftOverRound = tf.memory().numTensors - afterRound;
    return { burnIn, train, dpSteps, shared, userEmbedding, towers, loo, cross, sample, known, cold, dpsgd, roundNoise, leftOver, leftOverRound, dim: global.length };
  } finally {
    m.dispose();
  }
}

describe('run() picks the driver from the backend: a backend without synchronous reads trains, evaluates and serves', () => {
  // stand-in for tfjs-backend-webgpu in Node: the cpu backend and its kernels under another name,
  // whose synchronous read throws as webgpu's does ("OffscreenCanvas is not defined")
  const NAME = 'cpu-async-only';
  const copied: string[] = [];
  let syncReads = 0;
  beforeAll(() => {
    const cpuFactory = tf.findBackendFactory('cpu')!;
    tf.registerBackend(NAME, () => {
      const b = cpuFactory() as tf.KernelBackend;
      const readSync = b.readSync.bind(b);
      b.read = async (dataId: object) => readSync(dataId); // the cpu backend's read() goes through readSync
      b.readSync = () => {
        syncReads++;
        throw new ReferenceError('OffscreenCanvas is not defined');
      };
      return b;
    });
    for (const k of tf.getKernelsForBackend('cpu')) {
      tf.registerKernel({ ...k, backendName: NAME });
      copied.push(k.kernelName);
    }
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
    tf.removeBackend(NAME);
    for (const name of copied) tf.unregisterKernel(name, NAME);
  });

  test('every number equals the cpu run with synchronous reads; tensors stay flat', async () => {
    await tf.setBackend('cpu');
    expect(readMode()).toBe('sync');
    const ref = await scenario();

    expect(await tf.setBackend(NAME)).toBe(true);
    const t = tf.tensor1d([1, 2, 3]);
    expect(() => t.dataSync()).toThrow(/OffscreenCanvas is not defined/); // no synchronous read here
    t.dispose();
    expect(readMode()).toBe('async');
    const probeReads = syncReads;
    const got = await scenario();
    expect(syncReads).toBe(probeReads); // no path fell back to a synchronous read
    expect(tf.getBackend()).toBe(NAME);

    expect([got.leftOver, got.leftOverRound, ref.leftOver, ref.leftOverRound]).toEqual([0, 0, 0, 0]);
    expect(got.train.steps).toBeGreaterThan(0);
    expect(got.train.epochLosses[2]).toBeLessThan(got.burnIn.epochLosses[0]); // it learns
    expect(numbersOf(got.burnIn)).toEqual(numbersOf(ref.burnIn));
    expect(numbersOf(got.train)).toEqual(numbersOf(ref.train));
    expect(got.dpSteps).toEqual(ref.dpSteps);
    expect(got.dpSteps[0].sampledUsers).toBe(DS_USERS);
    expect(got.shared).toEqual(ref.shared);
    expect(got.userEmbedding).toEqual(ref.userEmbedding);
    expect(got.towers).toEqual(ref.towers);
    expect(got.loo).toEqual(ref.loo);
    expect(got.loo.metrics.count).toBeGreaterThan(30);
    expect(got.cross).toEqual(ref.cross);
    expect(got.sample).toEqual(ref.sample);
    expect(got.known).toEqual(ref.known);
    expect(got.known.items).toHaveLength(5);
    expect(got.cold).toEqual(ref.cold);
    expect(got.cold.items.every((i) => i.domain === 'finance')).toBe(true);
    // federated update: the DP-SGD delta carries CSPRNG noise (and the private embeddings it trains
    // feed the round-noise loss); what is deterministic must match
    for (const u of [got.dpsgd, got.roundNoise]) {
      expect(u.encoded.length).toBeGreaterThanOrEqual(got.dim);
      expect(u.meanLoss).toBeGreaterThan(0);
    }
    expect(got.dpsgd.delta.length).toBe(got.dim);
    expect(got.dpsgd.delta.some((x) => x !== 0)).toBe(true);
    expect(got.dpsgd.sampledUsers).toBeGreaterThan(0);
    expect(got.roundNoise.sampledUsers).toBe(ref.roundNoise.sampledUsers);
    expect(got.roundNoise.privacy).toEqual(ref.roundNoise.privacy);
  });

  test('a read that fails on the asynchronous driver reaches the caller and frees the tensors', async () => {
    expect(await tf.setBackend(NAME)).toBe(true);
    const m = model();
    const before = tf.memory().numTensors;
    const users = Uint32Array.of(0, 1);
    const items = Uint32Array.of(2, 3);
    const labels = Float32Array.of(1, 0);
    const original = tf.Tensor.prototype.data;
    tf.Tensor.prototype.data = function () {
      return Promise.reject(new Error('device lost'));
    };
    try {
      await expect(m.trainBatch(users, items, labels)).rejects.toThrow(/device lost/);
      await expect(run(m.itemVectorsReads())).rejects.toThrow(/device lost/);
    } finally {
      tf.Tensor.prototype.data = original;
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(await m.trainBatch(users, items, labels)).toBeGreaterThan(0);
    m.dispose();
    await tf.setBackend('cpu');
  });
});
