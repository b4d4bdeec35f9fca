/**
 * `npm run bench -- gpu-latency`: where a training step's time goes on the GPU backend
 * (bench/gpu.ts checks the numbers, this the time; what it found is in README "GPU").
 * On the first GPU backend that initialises (as bench/gpu.ts selects it), with the default two-tower
 * model of bench/gpu.ts:
 *   1. the round trip of one read: `await t.data()` of a freshly computed 4,096-element tensor
 *      (median of 50): the floor of any step that reads back once;
 *   2. the cost of one kernel (a chain of 200 element-wise adds, then one read), with the backend's
 *      deferred-submit batch and with one submit per chain;
 *   3. reading the 12 tensors one step of TwoTowerModel reads (loss, the three gathered embedding
 *      gradients, 8 tower gradients; their sizes at batch 1,024) as 12 concurrent `data()` calls
 *      (`readEach`) against one concatenated read (`readPacked`), median of 30 each;
 *   4. the product's step at batch 1,024, 4,096 and 16,384: the gradients (forward, backward,
 *      read-back; with each reader) and applyGradients (Adam on the CPU, then the tower weights
 *      uploaded), median ms of 10 after 3 warm-ups, and samples/s; the same on the wasm backend as
 *      the product runs it there, for comparison (labelled backend: wasm);
 *   5. one DP-SGD chunk's clipped per-user gradient sum (256 users) with each reader, and one step's
 *      (1,000 sampled users) in chunks of 256 and of 1,024 users.
 * Without a GPU backend it says why and records nothing. FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1 accepts a
 * software adapter; its records carry `software: true` and say nothing about a GPU.
 */
import * as tf from '@tensorflow/tfjs';
import { median, type BenchContext } from './lib';
import { TwoTowerModel, type BatchGradients } from '../participant-node/model/twotower';
import { readEach, runAsync, runAsyncWith } from '../participant-node/model/reads';
import { clippedUserGradientSumReads } from '../participant-node/model/dpsgd';
import { B, TT_MODEL, TT_USERS, batchOf, dpBatch, features, selectGpu, twoTower } from './gpu';
import { Xoshiro128 } from '../shared/util/prng';

/**
 * The values of `ts` by ONE asynchronous read: the float32 tensors are flattened and concatenated on
 * the backend (an exact copy), read with one `data()`, and split into separate arrays (copies, each
 * with its own buffer, as separate reads return). On WebGPU each `data()` is a GPU round trip (copy
 * to a staging buffer, submit, map, wait); a training step reads 12 tensors and a DP-SGD chunk 8, so
 * one read per yield instead of one per tensor is what the step's time is made of there
 * (measured here against `readEach`, the product's: not faster). A single tensor, or any
 * non-float32 one, is read as it is.
 */
async function readPacked(ts: tf.Tensor[]): Promise<Float32Array[]> {
  if (ts.some((t) => t.isDisposed)) throw new Error('Tensor is disposed.'); // tfjs's own message for a read of one
  if (ts.length <= 1 || ts.some((t) => t.dtype !== 'float32')) return readEach(ts);
  const flat = tf.tidy(() => tf.concat(ts.map((t) => tf.reshape(t, [-1]))));
  let all: Float32Array;
  try {
    all = (await flat.data()) as Float32Array;
  } finally {
    flat.dispose();
  }
  const out: Float32Array[] = [];
  let o = 0;
  for (const t of ts) {
    out.push(all.slice(o, o + t.size));
    o += t.size;
  }
  if (o !== all.length) throw new Error(`packed read returned ${all.length} values for ${o} elements`);
  return out;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function timeMany(n: number, fn: () => Promise<void>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    xs.push(ms(t0));
  }
  return median(xs);
}

export async function run(ctx: BenchContext): Promise<void> {
  const selected = await selectGpu(ctx);
  if (!selected) return;
  const { gpu, base } = selected;

  // 1. one read's round trip (4,096 elements: above the webgpu backend's CPU-forwarding threshold)
  const a = tf.ones([4096]);
  const oneRead = await timeMany(50, async () => {
    const t = tf.add(a, 1);
    await t.data();
    t.dispose();
  });
  ctx.record('read_roundtrip_ms', oneRead, 'ms', { ...base, elements: 4096, runs: 50 });

  // 2. the cost of one kernel: a chain of 200 adds on 4,096 elements, then one read; with the
  //    backend's default deferred-submit batch and with one submit per chain
  const chain = async () => {
    let t = tf.add(a, 1);
    for (let k = 1; k < 200; k++) {
      const n = tf.add(t, 1);
      t.dispose();
      t = n;
    }
    await t.data();
    t.dispose();
  };
  const submitFlag = 'WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE';
  const flagKnown = gpu === 'webgpu' && tf.env().getFlags()[submitFlag] !== undefined;
  const submitDefault = flagKnown ? tf.env().get(submitFlag) : null;
  await chain();
  ctx.record('kernel_us', (1000 * (await timeMany(10, chain))) / 200, 'us', { ...base, kernels: 200, elements: 4096, deferredSubmitBatch: submitDefault });
  if (flagKnown) {
    tf.env().set(submitFlag, 1000);
    ctx.record('kernel_us', (1000 * (await timeMany(10, chain))) / 200, 'us', { ...base, kernels: 200, elements: 4096, deferredSubmitBatch: 1000 });
    tf.env().set(submitFlag, submitDefault as number);
  }
  a.dispose();

  // 3. 12 reads of one step's sizes: concurrent vs concatenated
  const { embeddingDim: d, hiddenDim: h } = TT_MODEL;
  const feats = features(11);
  const probe = twoTower(feats);
  const du = probe.shape.userFeatureDim;
  const di = probe.shape.itemFeatureDim;
  probe.dispose();
  const sizes = [1, B * d, B * d, B, du * h, h, h * d, d, di * h, h, h * d, d];
  const srcs = sizes.map((n) => tf.randomUniform([n], -1, 1, 'float32', 5));
  const fresh = () => srcs.map((x) => tf.mul(x, 1.5));
  const readsOf = (read: (ts: tf.Tensor[]) => Promise<Float32Array[]>) =>
    timeMany(30, async () => {
      const ts = fresh();
      await read(ts);
      tf.dispose(ts);
    });
  const sizeParams = { ...base, tensors: sizes.length, elements: sizes.reduce((x, y) => x + y, 0), runs: 30 };
  ctx.record('read_12_ms', await readsOf(readEach), 'ms', { ...sizeParams, read: 'each' });
  ctx.record('read_12_ms', await readsOf(readPacked), 'ms', { ...sizeParams, read: 'packed' });
  tf.dispose(srcs);

  // 4. the product's step by batch size: on the GPU with both asynchronous readers, on wasm as the product runs it
  const readers = { each: readEach, packed: readPacked };
  const stepOn = async (params: Record<string, unknown>, gradients: (m: TwoTowerModel, b: ReturnType<typeof batchOf>) => Promise<BatchGradients>) => {
    for (const size of [1024, 4096, 16384]) {
      const rng = new Xoshiro128(size);
      const batches = Array.from({ length: 4 }, () => batchOf(rng, TT_USERS, TT_MODEL.numItems, size));
      const m = twoTower(feats);
      const grad: number[] = [];
      const apply: number[] = [];
      for (let s = 0; s < 13; s++) {
        const b = batches[s % batches.length];
        const t0 = process.hrtime.bigint();
        const g = await gradients(m, b);
        const t1 = process.hrtime.bigint();
        m.applyGradients(g);
        const t2 = process.hrtime.bigint();
        if (s >= 3) {
          grad.push(Number(t1 - t0) / 1e6);
          apply.push(Number(t2 - t1) / 1e6);
        }
      }
      m.dispose();
      const p = { ...params, batch: size, model: 'two-tower', steps: grad.length };
      const gMs = median(grad);
      const aMs = median(apply);
      ctx.record('step_gradients_ms', gMs, 'ms', p);
      ctx.record('step_apply_ms', aMs, 'ms', p);
      ctx.record('step_samples_per_s', Math.round((size * 1000) / (gMs + aMs)), 'samples/s', p);
    }
  };
  for (const [name, read] of Object.entries(readers)) {
    await stepOn({ ...base, read: name }, (m, b) => runAsyncWith(m.gradientReads(b.users, b.items, b.labels), read));
  }

  // 5. one DP-SGD chunk (256 sampled users) with both readers
  {
    const rng = new Xoshiro128(4);
    const chunk = dpBatch(rng, TT_USERS, TT_MODEL.numItems, 256);
    const m = twoTower(feats);
    for (const [name, read] of Object.entries(readers)) {
      await runAsyncWith(clippedUserGradientSumReads(m, chunk, 1), read); // warm-up
      const t = await timeMany(7, async () => {
        await runAsyncWith(clippedUserGradientSumReads(m, chunk, 1), read);
      });
      ctx.record('dp_chunk_ms', t, 'ms', { ...base, read: name, sampledUsers: chunk.length, runs: 7 });
    }
    // one DP-SGD step's clipped sum over 1,000 sampled users, as noisyGradientReads chunks it
    const users = dpBatch(rng, TT_USERS, TT_MODEL.numItems, 1000);
    for (const size of [256, 1024]) {
      const step = async () => {
        for (let s = 0; s < users.length; s += size) await runAsync(clippedUserGradientSumReads(m, users.slice(s, s + size), 1));
      };
      await step(); // warm-up (new shapes compile new shaders)
      ctx.record('dp_step_ms', await timeMany(5, step), 'ms', { ...base, read: 'each', sampledUsers: users.length, chunkUsers: size, runs: 5 });
    }
    m.dispose();
  }

  // the wasm reference (as the product runs it there: synchronous reads)
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) throw new Error("the 'wasm' backend failed to initialise");
  } catch (e) {
    ctx.log(`wasm reference skipped: ${(e as Error).message}`);
    return;
  }
  await stepOn({ backend: 'wasm', adapter: 'CPU (wasm)', reference: true }, (m, b) => m.computeGradients(b.users, b.items, b.labels));
}
