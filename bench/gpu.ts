/**
 * `npm run bench -- gpu`: the GPU check of the training path (STACK.md). On the first GPU backend
 * that initialises (tfjs-node-gpu with CUDA, else WebGPU on Dawn with a hardware adapter):
 *   - one training step's gradients on the MF reference config (6,000 x 32 users, 4,000 x 32 items,
 *     batch 1,024) compared with the cpu backend from the same initial model and batch
 *     (max relative error per parameter group);
 *   - a few hundred training steps: samples/s and the loss going down;
 *   - the adapter that ran it.
 * Without a GPU backend it says why and records nothing (it never reports a CPU figure as GPU).
 * FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1 accepts a software adapter (lavapipe) to exercise the code path;
 * such figures say nothing about a GPU and are labelled `software: true`.
 * The WebGPU packages are not in `npm ci`: `npm install --no-save webgpu@0.6.2 @tensorflow/tfjs-backend-webgpu@4.22.0`.
 */
import * as tf from '@tensorflow/tfjs';
import type { BenchContext } from './lib';
import { defaultBackendDeps, selectBackend, type BackendSelection } from '../participant-node/model/backend';
import { TwoTowerModel, type BatchGradients } from '../participant-node/model/twotower';
import { Xoshiro128 } from '../shared/util/prng';

const SHAPE = { numUsers: 6000, numItems: 4000, embeddingDim: 32, hiddenDim: 0, userFeatureDim: 1, itemFeatureDim: 1, towers: false };
const B = 1024;

function batch(rng: Xoshiro128) {
  const users = new Uint32Array(B);
  const items = new Uint32Array(B);
  const labels = new Float32Array(B);
  for (let j = 0; j < B; j++) {
    users[j] = rng.nextInt(SHAPE.numUsers);
    items[j] = rng.nextInt(SHAPE.numItems);
    labels[j] = j % 5 === 0 ? 1 : 0;
  }
  return { users, items, labels };
}

function gradsOn(b: ReturnType<typeof batch>): BatchGradients {
  const m = new TwoTowerModel(SHAPE, { learningRate: 0.01, initSeed: 7 });
  try {
    return m.computeGradients(b.users, b.items, b.labels);
  } finally {
    m.dispose();
  }
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

export async function run(ctx: BenchContext): Promise<void> {
  const allowSoftware = process.env.FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU === '1';
  const deps = { ...defaultBackendDeps, log: ctx.log, allowSoftwareAdapter: allowSoftware };
  let sel: BackendSelection | null = null;
  const reasons: string[] = [];
  for (const b of ['gpu', 'webgpu'] as const) {
    try {
      sel = await selectBackend(tf, b, deps);
      break;
    } catch (e) {
      reasons.push((e as Error).message);
    }
  }
  if (!sel) {
    ctx.log(`no GPU backend on this machine, nothing measured: ${reasons.join(' | ')}`);
    return;
  }
  const software = /llvmpipe|lavapipe|swiftshader|software/i.test(sel.adapter ?? '');
  const rng = new Xoshiro128(3);
  const b = batch(rng);
  const onGpu = gradsOn(b);
  await selectBackend(tf, 'cpu', deps);
  const onCpu = gradsOn(b);
  await selectBackend(tf, sel.backend, deps);
  const params = { backend: sel.backend, adapter: sel.adapter, software, batch: B, users: SHAPE.numUsers, items: SHAPE.numItems, dim: SHAPE.embeddingDim };
  ctx.record('grad_rel_err_item_embedding', maxRelErr(onGpu.itemEmbedding.values, onCpu.itemEmbedding.values), 'ratio', params);
  ctx.record('grad_rel_err_user_embedding', maxRelErr(onGpu.userEmbedding.values, onCpu.userEmbedding.values), 'ratio', params);
  ctx.record('grad_rel_err_item_bias', maxRelErr(onGpu.itemBias.values, onCpu.itemBias.values), 'ratio', params);
  const m = new TwoTowerModel(SHAPE, { learningRate: 0.01, initSeed: 7 });
  const steps = 300;
  const batches = Array.from({ length: 20 }, () => batch(rng));
  const first = m.trainBatch(batches[0].users, batches[0].items, batches[0].labels);
  const t0 = process.hrtime.bigint();
  let last = first;
  for (let s = 0; s < steps; s++) {
    const x = batches[s % batches.length];
    last = m.trainBatch(x.users, x.items, x.labels);
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  m.dispose();
  ctx.record('mf_samples_per_s', Math.round((steps * B) / secs), 'samples/s', { ...params, steps });
  ctx.record('mf_loss_first', first, 'bce', params);
  ctx.record('mf_loss_last', last, 'bce', { ...params, steps });
}
