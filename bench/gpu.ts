/**
 * `npm run bench -- gpu`: the GPU check of the training path (STACK.md). On the first GPU backend
 * that initialises (tfjs-node-gpu with CUDA, else WebGPU on Dawn with a hardware adapter), against
 * the cpu backend from the same initial model and the same batch:
 *   1. MF reference config (6,000 x 32 users, 4,000 x 32 items, batch 1,024): one batch's gradients
 *      per parameter group, then a few hundred training steps (samples/s, loss going down);
 *   2. the DEFAULT two-tower model as the demo trains it (TwoTowerModel.forPolicy with the policy
 *      defaults embeddingDim 32, hiddenDim 64, the default vocabularies' feature widths, 6,000 items =
 *      3 parties x 2,000, 20,000 users per party): one batch's gradients for every parameter group,
 *      then training steps (samples/s, loss, tensors left over);
 *   3. one DP-SGD chunk (256 sampled users, up to 4 positives x (1 + 4 negatives) each, C = 1): the
 *      clipped per-user gradient sum per parameter group, the per-user norms and clipping decisions
 *      (clippedUserGradientSum), and users/s over a q*N = 1,000-user step (median of 3).
 * Errors: maxRel = max_i |gpu_i - cpu_i| / max_i |cpu_i| per group (bench/parity.ts), relL2 alongside.
 *
 * The calls are the product's own (computeGradients, trainBatch, clippedUserGradientSum): they read
 * with the driver the backend allows (participant-node/model/reads.ts), asynchronously on webgpu in
 * Node (tfjs's webgpu backend cannot read synchronously there), synchronously on cpu.
 *
 * Without a GPU backend it says why and records nothing (it never reports a CPU figure as GPU).
 * FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1 accepts a software adapter (lavapipe: bench/setup-lavapipe.sh) to
 * exercise the code path; every record then carries `software: true` and the adapter string, and its
 * speeds say nothing about a GPU. The cpu- and wasm-backend speeds recorded alongside are labelled
 * `backend: cpu` / `backend: wasm`, `reference: true` (wasm is what `auto` picks without a GPU).
 * The WebGPU packages are not in `npm ci`: `npm install --no-save webgpu@0.6.2 @tensorflow/tfjs-backend-webgpu@4.22.0`.
 */
import * as tf from '@tensorflow/tfjs';
import { median, type BenchContext } from './lib';
import { parityError, maxElementRelError } from './parity';
import { defaultBackendDeps, selectBackend, type BackendSelection } from '../participant-node/model/backend';
import { TwoTowerModel, type BatchGradients, type TwoTowerShape } from '../participant-node/model/twotower';
import { clippedUserGradientSum, type ClippedSum, type UserExamples } from '../participant-node/model/dpsgd';
import { DEFAULT_VOCABULARIES, DOMAINS, encodeItemFeatures, encodeUserFeatures, itemFeatureDim, userFeatureDim } from '../shared/data/vocab';
import type { ModelConfig } from '../shared/model/layout';
import { Xoshiro128 } from '../shared/util/prng';

export const B = 1024;
const MF: TwoTowerShape = { numUsers: 6000, numItems: 4000, embeddingDim: 32, hiddenDim: 0, userFeatureDim: 1, itemFeatureDim: 1, towers: false };
/** the demo's model: policy defaults (shared/policy/defaults.ts, bin/demo.ts DEMO_PARAMS) at the default data scale */
export const TT_MODEL: ModelConfig = { architecture: 'two-tower-v1', embeddingDim: 32, hiddenDim: 64, numItems: 3 * 2000 };
export const TT_USERS = 20_000;
const DP = { chunk: 256, stepUsers: 1000, maxPositives: 4, negatives: 4, clip: 1 };
const OPTS = { learningRate: 0.01, initSeed: 7 };

interface Batch {
  users: Uint32Array;
  items: Uint32Array;
  labels: Float32Array;
}

function batch(rng: Xoshiro128, numUsers: number, numItems: number): Batch {
  return batchOf(rng, numUsers, numItems, B);
}

/** `size` random (user, item) pairs, one in five labelled positive. */
export function batchOf(rng: Xoshiro128, numUsers: number, numItems: number, size: number): Batch {
  const users = new Uint32Array(size);
  const items = new Uint32Array(size);
  const labels = new Float32Array(size);
  for (let j = 0; j < size; j++) {
    users[j] = rng.nextInt(numUsers);
    items[j] = rng.nextInt(numItems);
    labels[j] = j % 5 === 0 ? 1 : 0;
  }
  return { users, items, labels };
}

function pick<T>(rng: Xoshiro128, xs: readonly T[]): T {
  return xs[rng.nextInt(xs.length)];
}

/** Encoded features drawn from the default vocabularies (one-hot bands, 1-3 topics). */
export function features(seed: number): { users: Float32Array; items: Float32Array } {
  const v = DEFAULT_VOCABULARIES;
  const rng = new Xoshiro128(seed);
  const topics = () => Array.from(new Set(Array.from({ length: 1 + rng.nextInt(3) }, () => pick(rng, v.topics))));
  const du = userFeatureDim(v);
  const di = itemFeatureDim(v);
  const users = new Float32Array(TT_USERS * du);
  for (let u = 0; u < TT_USERS; u++) {
    encodeUserFeatures(v, { ageBand: pick(rng, v.ageBand), region: pick(rng, v.region), lifeStage: pick(rng, v.lifeStage), interests: topics() }, users, u * du);
  }
  const items = new Float32Array(TT_MODEL.numItems * di);
  for (let i = 0; i < TT_MODEL.numItems; i++) {
    encodeItemFeatures(v, { domain: pick(rng, DOMAINS), priceBand: pick(rng, v.priceBand), topics: topics() }, items, i * di);
  }
  return { users, items };
}

export function twoTower(feats: { users: Float32Array; items: Float32Array }): TwoTowerModel {
  const m = TwoTowerModel.forPolicy(TT_MODEL, DEFAULT_VOCABULARIES, TT_USERS, OPTS);
  m.setFeatures(feats.users, feats.items);
  return m;
}

/** The gradient groups of one batch, flat, by name. */
function groups(g: BatchGradients): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of g.tower) out.set(name, v);
  out.set('item_embedding', g.itemEmbedding.values);
  out.set('item_bias', g.itemBias.values);
  out.set('user_embedding (private)', g.userEmbedding.values);
  return out;
}

export function dpBatch(rng: Xoshiro128, numUsers: number, numItems: number, n: number): UserExamples[] {
  const seen = new Set<number>();
  const out: UserExamples[] = [];
  while (out.length < n) {
    const user = rng.nextInt(numUsers);
    if (seen.has(user)) continue;
    seen.add(user);
    const pos = 1 + rng.nextInt(DP.maxPositives);
    const items = new Uint32Array(pos * (1 + DP.negatives));
    const labels = new Float32Array(items.length);
    for (let j = 0; j < items.length; j++) {
      items[j] = rng.nextInt(numItems);
      labels[j] = j % (1 + DP.negatives) === 0 ? 1 : 0;
    }
    out.push({ user, items, labels });
  }
  return out;
}

/**
 * Selects the first GPU backend that initialises (tfjs-node-gpu with CUDA, else WebGPU with a
 * hardware adapter; a software one only with FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1), or logs why there is
 * none and returns null. `base`: the parameters every GPU record carries.
 */
export async function selectGpu(ctx: BenchContext): Promise<{ gpu: string; base: { backend: string; adapter?: string; software: boolean }; deps: typeof defaultBackendDeps } | null> {
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
    return null;
  }
  const software = /llvmpipe|lavapipe|swiftshader|software|softpipe/i.test(sel.adapter ?? '');
  return { gpu: sel.tfBackend, base: { backend: sel.backend, adapter: sel.adapter, software }, deps };
}

export async function run(ctx: BenchContext): Promise<void> {
  const selected = await selectGpu(ctx);
  if (!selected) return;
  const { gpu, base, deps } = selected;
  const on = async <T>(backend: string, fn: () => Promise<T>): Promise<T> => {
    if (!(await tf.setBackend(backend))) throw new Error(`could not switch to the ${backend} backend`);
    return fn();
  };
  const recordParity = (model: string, gGpu: Map<string, Float32Array>, gCpu: Map<string, Float32Array>, params: Record<string, unknown>) => {
    let worst = 0;
    for (const [group, ref] of gCpu) {
      const got = gGpu.get(group);
      if (!got) throw new Error(`${model}: group ${group} missing on ${gpu}`);
      const e = parityError(got, ref);
      worst = Number.isNaN(e.maxRel) ? NaN : Math.max(worst, e.maxRel);
      ctx.record('grad_max_rel_err', e.maxRel, 'ratio', { ...params, model, group, relL2: e.relL2, maxAbs: e.maxAbs, n: e.n });
    }
    ctx.record('grad_max_rel_err_all_groups', worst, 'ratio', { ...params, model, groups: gCpu.size });
  };
  const rng = new Xoshiro128(3);
  // one batch's gradients of a fresh model, by parameter group (run on the backend `on` selects)
  const gradGroups = (make: () => TwoTowerModel, b0: ReturnType<typeof batch>) => async () => {
    const m = make();
    try {
      return groups(await m.computeGradients(b0.users, b0.items, b0.labels));
    } finally {
      m.dispose();
    }
  };

  // 1. MF reference config
  {
    const b0 = batch(rng, MF.numUsers, MF.numItems);
    const grads = gradGroups(() => new TwoTowerModel(MF, OPTS), b0);
    const gGpu = await on(gpu, grads);
    const gCpu = await on('cpu', grads);
    recordParity('mf', gGpu, gCpu, { ...base, batch: B, users: MF.numUsers, items: MF.numItems, dim: MF.embeddingDim });
    await on(gpu, async () => {
      const m = new TwoTowerModel(MF, OPTS);
      const steps = 300;
      const batches = Array.from({ length: 20 }, () => batch(rng, MF.numUsers, MF.numItems));
      const first = await trainStep(m, batches[0]);
      const t0 = process.hrtime.bigint();
      let last = first;
      for (let s = 0; s < steps; s++) last = await trainStep(m, batches[s % batches.length]);
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      m.dispose();
      const params = { ...base, model: 'mf', batch: B, users: MF.numUsers, items: MF.numItems, dim: MF.embeddingDim };
      ctx.record('train_samples_per_s', Math.round((steps * B) / secs), 'samples/s', { ...params, steps });
      ctx.record('train_loss_first', first, 'bce', params);
      ctx.record('train_loss_last', last, 'bce', { ...params, steps });
    });
  }

  // 2. the default two-tower model
  const feats = features(11);
  const ttDims = {
    users: TT_USERS,
    items: TT_MODEL.numItems,
    dim: TT_MODEL.embeddingDim,
    hidden: TT_MODEL.hiddenDim,
    userFeatureDim: userFeatureDim(DEFAULT_VOCABULARIES),
    itemFeatureDim: itemFeatureDim(DEFAULT_VOCABULARIES),
  };
  const ttParams = { ...base, ...ttDims, batch: B };
  const cpuRef = { backend: 'cpu', adapter: 'CPU (plain JavaScript)', reference: true };
  // wasm: what `auto` would pick without a GPU (speeds only; single-threaded SIMD in Node)
  const wasmRef = { backend: 'wasm', adapter: 'CPU (WebAssembly SIMD)', reference: true };
  let wasm = false;
  try {
    await selectBackend(tf, 'wasm', deps);
    wasm = true;
  } catch (e) {
    ctx.log(`no wasm reference: ${(e as Error).message}`);
  }
  {
    const b0 = batch(rng, TT_USERS, TT_MODEL.numItems);
    const grads = gradGroups(() => twoTower(feats), b0);
    const gGpu = await on(gpu, grads);
    const gCpu = await on('cpu', grads);
    recordParity('two-tower', gGpu, gCpu, ttParams);
    const batches = Array.from({ length: 20 }, () => batch(rng, TT_USERS, TT_MODEL.numItems));
    const train = async (backend: string, steps: number) =>
      on(backend, async () => {
        const m = twoTower(feats);
        const first = await trainStep(m, batches[0]);
        const tensors0 = tf.memory().numTensors;
        const t0 = process.hrtime.bigint();
        let last = first;
        for (let s = 0; s < steps; s++) last = await trainStep(m, batches[s % batches.length]);
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        const leaked = tf.memory().numTensors - tensors0;
        m.dispose();
        return { samplesPerS: Math.round((steps * B) / secs), first, last, leaked, steps };
      });
    const g = await train(gpu, 100);
    ctx.record('train_samples_per_s', g.samplesPerS, 'samples/s', { ...ttParams, model: 'two-tower', steps: g.steps });
    ctx.record('train_loss_first', g.first, 'bce', { ...ttParams, model: 'two-tower' });
    ctx.record('train_loss_last', g.last, 'bce', { ...ttParams, model: 'two-tower', steps: g.steps });
    ctx.record('train_tensors_left_over', g.leaked, 'tensors', { ...ttParams, model: 'two-tower', steps: g.steps });
    const c = await train('cpu', 20);
    ctx.record('train_samples_per_s', c.samplesPerS, 'samples/s', { ...cpuRef, ...ttDims, batch: B, model: 'two-tower', steps: c.steps });
    if (wasm) {
      const w = await train('wasm', 100);
      ctx.record('train_samples_per_s', w.samplesPerS, 'samples/s', { ...wasmRef, ...ttDims, batch: B, model: 'two-tower', steps: w.steps });
    }
  }

  // 3. one DP-SGD chunk on the two-tower model
  {
    const users = dpBatch(rng, TT_USERS, TT_MODEL.numItems, DP.stepUsers);
    const chunk = users.slice(0, DP.chunk);
    const dp = async (): Promise<ClippedSum> => {
      const m = twoTower(feats);
      try {
        return await clippedUserGradientSum(m, chunk, DP.clip);
      } finally {
        m.dispose();
      }
    };
    const rGpu = await on(gpu, dp);
    const rCpu = await on('cpu', dp);
    const dpDims = { ...ttDims, sampledUsers: DP.chunk, examples: chunk.reduce((a, u) => a + u.items.length, 0), clip: DP.clip };
    const dpParams = { ...base, ...dpDims };
    const m = twoTower(feats);
    const layout = m.layout!;
    m.dispose();
    const split = (flat: Float32Array) => new Map(layout.map((p) => [p.name, flat.subarray(p.offset, p.offset + p.size)] as const));
    recordParity('dp-sgd clipped sum', split(rGpu.sum), split(rCpu.sum), dpParams);
    ctx.record('dp_norm_max_rel_err', maxElementRelError(rGpu.norms, rCpu.norms, 1e-12), 'ratio', dpParams);
    let flips = 0;
    let clippedCpu = 0;
    for (let k = 0; k < rCpu.norms.length; k++) {
      if (rCpu.norms[k] > DP.clip) clippedCpu++;
      if (rGpu.norms[k] > DP.clip !== rCpu.norms[k] > DP.clip) flips++;
    }
    ctx.record('dp_clip_decisions_differing', flips, 'users', { ...dpParams, clippedOnCpu: clippedCpu });
    ctx.record('dp_private_user_grad_max_rel_err', parityError(rGpu.userGrads.values, rCpu.userGrads.values).maxRel, 'ratio', dpParams);
    ctx.record('dp_loss_abs_diff', Math.abs(rGpu.loss - rCpu.loss), 'bce', { ...dpParams, lossCpu: rCpu.loss });
    // one step of 1,000 sampled users in chunks, as DpSgdTrainer.noisyGradient computes it
    const stepDims = { ...dpDims, sampledUsers: users.length, chunk: DP.chunk, examples: users.reduce((a, u) => a + u.items.length, 0) };
    const usersPerS = (backend: string) =>
      on(backend, async () => {
        const model = twoTower(feats);
        const sumOf = (part: UserExamples[]) => clippedUserGradientSum(model, part, DP.clip);
        await sumOf(chunk); // warm-up (shader compilation on a GPU)
        const runs: number[] = [];
        for (let r = 0; r < 3; r++) {
          const t0 = process.hrtime.bigint();
          for (let s = 0; s < users.length; s += DP.chunk) await sumOf(users.slice(s, s + DP.chunk));
          runs.push(Math.round(users.length / (Number(process.hrtime.bigint() - t0) / 1e9)));
        }
        model.dispose();
        return runs;
      });
    const g = await usersPerS(gpu);
    ctx.record('dp_clipped_sum_users_per_s', median(g), 'users/s', { ...base, ...stepDims, runs: g });
    const c = await usersPerS('cpu');
    ctx.record('dp_clipped_sum_users_per_s', median(c), 'users/s', { ...cpuRef, ...stepDims, runs: c });
    if (wasm) {
      const w = await usersPerS('wasm');
      ctx.record('dp_clipped_sum_users_per_s', median(w), 'users/s', { ...wasmRef, ...stepDims, runs: w });
    }
  }
}

/** One training step of the product (TwoTowerModel.trainBatch). */
function trainStep(m: TwoTowerModel, b: Batch): Promise<number> {
  return m.trainBatch(b.users, b.items, b.labels);
}
