/**
 * `npm run bench -- training`: training throughput (samples/s) of the node's trainer per available
 * tfjs backend, on
 *   - the STACK.md reference MF config: 6,000 users x 32, 4,000 items x 32, batch 1,024, Adam
 *     (sparse rows: JS gather, tfjs loss/grad on the batch, lazy Adam on touched rows);
 *   - the default two-tower model (embedding 32, hidden 64, DEFAULT_VOCABULARIES features).
 * Each figure is the median of 5 timed repetitions of STEPS steps after a warm-up. Each step is one
 * `await model.trainBatch(...)`: the product's step, with the reads the backend allows (synchronous
 * on cpu/wasm/tfjs-node; asynchronous on webgpu, with FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1 for lavapipe).
 */
import * as tf from '@tensorflow/tfjs';
import type { BenchContext } from './lib';
import { median } from './lib';
import { selectBackend, AUTO_ORDER, type ConcreteBackend } from '../participant-node/model/backend';
import { TwoTowerModel } from '../participant-node/model/twotower';
import { DEFAULT_VOCABULARIES, itemFeatureDim, userFeatureDim } from '../shared/data/vocab';
import { Xoshiro128 } from '../shared/util/prng';

const B = 1024;

function randomBatches(rng: Xoshiro128, n: number, nu: number, ni: number) {
  return Array.from({ length: n }, () => {
    const users = new Uint32Array(B);
    const items = new Uint32Array(B);
    const labels = new Float32Array(B);
    for (let j = 0; j < B; j++) {
      users[j] = rng.nextInt(nu);
      items[j] = rng.nextInt(ni);
      labels[j] = j % 5 === 0 ? 1 : 0;
    }
    return { users, items, labels };
  });
}

async function measure(ctx: BenchContext, backend: ConcreteBackend, adapter: string | undefined, config: 'mf' | 'two-tower'): Promise<void> {
  const towers = config === 'two-tower';
  const shape = towers
    ? { numUsers: 20_000, numItems: 5_000, embeddingDim: 32, hiddenDim: 64, userFeatureDim: userFeatureDim(DEFAULT_VOCABULARIES), itemFeatureDim: itemFeatureDim(DEFAULT_VOCABULARIES), towers }
    : { numUsers: 6_000, numItems: 4_000, embeddingDim: 32, hiddenDim: 0, userFeatureDim: 1, itemFeatureDim: 1, towers };
  const model = new TwoTowerModel(shape, { learningRate: 0.01, initSeed: 1 });
  const rng = new Xoshiro128(42);
  const uf = new Float32Array(shape.numUsers * shape.userFeatureDim);
  for (let i = 0; i < uf.length; i++) uf[i] = rng.nextInt(4) === 0 ? 1 : 0;
  const itf = new Float32Array(shape.numItems * shape.itemFeatureDim);
  for (let i = 0; i < itf.length; i++) itf[i] = rng.nextInt(4) === 0 ? 1 : 0;
  model.setFeatures(uf, itf);
  const steps = backend === 'cpu' ? 10 : 50;
  const batches = randomBatches(rng, steps, shape.numUsers, shape.numItems);
  for (let w = 0; w < 3; w++) await model.trainBatch(batches[w].users, batches[w].items, batches[w].labels);
  const tensorsBefore = tf.memory().numTensors;
  const rates: number[] = [];
  for (let rep = 0; rep < 5; rep++) {
    const t0 = process.hrtime.bigint();
    for (const b of batches) await model.trainBatch(b.users, b.items, b.labels);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push((steps * B) / secs);
  }
  const leaked = tf.memory().numTensors - tensorsBefore;
  model.dispose();
  ctx.record(`${config}_samples_per_s`, Math.round(median(rates)), 'samples/s', {
    backend,
    adapter,
    batch: B,
    users: shape.numUsers,
    items: shape.numItems,
    dim: 32,
    hidden: towers ? 64 : 0,
    steps,
    reps: 5,
    min: Math.round(Math.min(...rates)),
    max: Math.round(Math.max(...rates)),
    tensorsLeaked: leaked,
  });
}

export async function run(ctx: BenchContext): Promise<void> {
  const only = process.env.BENCH_BACKENDS?.split(',') as ConcreteBackend[] | undefined;
  for (const backend of only ?? [...AUTO_ORDER].reverse()) {
    let sel;
    try {
      sel = await selectBackend(tf, backend, { ...(await import('../participant-node/model/backend')).defaultBackendDeps, log: ctx.log });
    } catch (e) {
      ctx.log(`${backend}: not available (${(e as Error).message})`);
      continue;
    }
    for (const config of ['mf', 'two-tower'] as const) await measure(ctx, backend, sel.adapter, config);
  }
}
