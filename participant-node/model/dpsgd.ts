/**
 * User-level DP-SGD for the two-tower model (DESIGN §4 step 2, mechanism `local-dpsgd`), and the
 * per-user clipped gradient sum that the `round-noise` mechanism reuses.
 *
 * ## Privacy unit and sensitivity (the argument the tests check)
 * The unit is one end user of this party, with ALL of that user's interactions. At each step:
 *   1. every user is included independently with probability q (Poisson sampling, bits from
 *      libsodium's CSPRNG — never the JS engine's non-cryptographic RNG);
 *   2. a sampled user u contributes at most `maxInteractionsPerUser` positives (contribution
 *      bounding), each with K sampled negatives; its loss is the mean over those examples. Which
 *      positives (when capped) and which negatives u gets at step t are drawn from u's OWN coins,
 *      a keyed PRF of (t, u) under a secret per-training key (model/coins.ts: BLAKE2b keyed with a
 *      fresh 256-bit CSPRNG key). They are a function of (key, t, u, u's own interactions) and of
 *      nothing else — not of which other users exist, were sampled, or how many interactions they
 *      have (one sequential stream shared by all users would shift with every earlier user);
 *   3. g_u = gradient of u's loss with respect to the SHARED parameters only (towers f, g, item
 *      embedding rows e_i, item biases b_i). It is clipped: c_u = min(1, C / ||g_u||_2);
 *   4. the released quantity is S = sum_u c_u g_u + N(0, sigma^2 C^2 I) over every shared coordinate
 *      (dense: every row of e_i and b_i gets noise, touched or not). It is handed to Adam as is,
 *      not divided by an expected batch size q·N: N, the party's number of users, is PRIVATE (it
 *      changes by one with the user), so dividing by it would not be post-processing, while Adam's
 *      update is invariant to a constant rescaling of its gradients (up to its eps) — a public
 *      constant divisor would change nothing either.
 * Adding or removing user w changes sum_u c_u g_u by exactly c_w g_w, whose L2 norm is <= C, and
 * changes no other user's term at this step: each g_v depends only on v's examples — by step 2 a
 * function of (key, t, v, v's data), identical with or without w — and on parameters fixed before
 * the step. In a step where w is not sampled the sum is unchanged. This holds for EVERY fixed key;
 * the user index v is the position of the user in the node's users, so for a neighbour that keeps
 * the other users' positions (w's interactions removed) it is exact, and for one that removes w's
 * row (shifting later indices) it holds because the key is secret and fresh: the PRF outputs on
 * distinct inputs are indistinguishable from independent uniform coins, which are exchangeable
 * between users. So each step is the Poisson-subsampled Gaussian mechanism with sensitivity C and
 * noise multiplier sigma; the RDP accountant composes steps (and rounds) adaptively.
 *
 * ## Offer scope (public sparsity of the update)
 * Items are product offers, and the catalogue says which party offers each one (items.csv
 * `provider`). With an offer scope (`offerScope`, policy `training.offerScope: own`), a party trains
 * only on its own offers: positives with another provider's item are dropped before sampling (the
 * count is reported), and every negative is drawn from the party's own offers (the positive's
 * domain, and the one catalogue-wide negative from all its offers). Every example of every user then
 * lies in the party's own offers, so any user's g_u is zero outside the fixed coordinate set
 *   S_p = towers ∪ rows (e_i, b_i) of the party's own offers,
 * which the public catalogue determines, not the data. The noise is added on exactly S_p; outside
 * S_p the released vector is identically zero for EVERY dataset, so it reveals nothing, and on S_p
 * the step is the same Poisson-subsampled Gaussian mechanism (sensitivity C, multiplier sigma): the
 * accountant's charge is unchanged. What changes is the utility: a party no longer adds noise to
 * (and no longer perturbs) the other parties' item rows, on which it has no signal.
 *
 * ## Private embeddings
 * e_u is updated from u's own (unclipped, un-noised) gradient and is never released: it leaves the
 * node neither in an update nor anywhere else. It influences only u's own future g_u, which is clipped
 * like any other, so the released sequence stays DP (adaptive composition). The per-user gradient
 * norm deliberately excludes e_u.
 *
 * ## How per-user gradients are computed
 * No per-example autodiff: the model's last layers are simple, so the backward pass is written out
 * (the "ghost" structure of Goodfellow 2015 / Lee & Kifer 2021): with e_j = w_j (sigmoid(z_j) - y_j),
 *   dL/dI_j = e_j U_u,  dL/dU_u = sum_j e_j I_j,  dL/db_j = e_j,
 * and each tower gradient is an outer product of the layer input with the back-propagated error.
 * The user tower sees one input per user, so its per-user gradient is a single outer product; the
 * item tower's per-user gradient is a batched matMul over the user's padded examples. Embedding rows
 * of one user that hit the same item are summed before squaring. A test checks norms and the clipped
 * sum against a naive loop of per-user autodiff (TwoTowerModel.computeGradients).
 *
 * Reading tensors: every computation here is a reads.ts generator (`xReads`), run with the driver the
 * backend allows (synchronous on cpu/wasm/tfjs-node, asynchronous on webgpu in Node); the public
 * forms return promises. The numbers are the same either way.
 */
import * as tf from '@tensorflow/tfjs';
import { randomBytes } from '../../shared/crypto/sodium';
import { gaussianNoise } from '../../shared/dp/gaussian';
import { layoutSize, type ParamSpec } from '../../shared/model/layout';
import { ownOfferMask, type OfferRanges } from '../../shared/fl/offers';
import type { ExampleKey } from './coins';
import { DenseAdam, segmentSumRows, type SparseRows, type TwoTowerModel } from './twotower';
import { ownOfferPools } from './train';
import { run, type Reads } from './reads';

export interface UserExamples {
  user: number;
  items: Uint32Array;
  labels: Float32Array;
}

export interface ClippedSum {
  /** sum_u min(1, C/||g_u||) g_u over the shared parameters, flat in layout order */
  sum: Float32Array;
  /** per-user gradient norms before clipping (shared parameters only) */
  norms: Float32Array;
  /** gradient of the private user embeddings (unclipped; never released) */
  userGrads: SparseRows;
  /** mean over users of the per-user mean loss */
  loss: number;
}

function spec(layout: ParamSpec[], name: string): ParamSpec {
  const p = layout.find((x) => x.name === name);
  if (!p) throw new Error(`layout has no "${name}"`);
  return p;
}

/**
 * Per-user clipped gradient sum over the shared parameters (see the module comment). `clip` = C;
 * `Infinity` gives the unclipped sum (used by tests).
 */
/** One user's gradient over the shared parameters, in parts (views valid during the callback only). */
export interface UserGradientParts {
  /** user tower: W1 = x (x) d1, b1 = d1, W2 = a1 (x) dU, b2 = dU */
  x: Float32Array;
  d1: Float32Array;
  a1: Float32Array;
  dU: Float32Array;
  /** item tower, summed over the user's examples */
  gV1: Float64Array;
  gb1: Float64Array;
  gV2: Float64Array;
  gb2: Float64Array;
  /** item embedding / bias rows touched by the user (sorted), with their summed gradients */
  rows: Uint32Array;
  rowVals: Float32Array;
  biasVals: Float32Array;
}

/** Writes one user's gradient as a flat vector in layout order (zero elsewhere). */
export function writeUserGradient(layout: ParamSpec[], g: UserGradientParts, out: Float32Array): void {
  out.fill(0);
  const at = (n: string) => spec(layout, n).offset;
  const outer = (o: number, a: ArrayLike<number>, b: ArrayLike<number>) => {
    for (let i = 0; i < a.length; i++) {
      const ai = a[i];
      if (ai === 0) continue;
      const row = o + i * b.length;
      for (let j = 0; j < b.length; j++) out[row + j] = ai * b[j];
    }
  };
  outer(at('user_tower/dense1/kernel'), g.x, g.d1);
  out.set(g.d1, at('user_tower/dense1/bias'));
  outer(at('user_tower/dense2/kernel'), g.a1, g.dU);
  out.set(g.dU, at('user_tower/dense2/bias'));
  out.set(g.gV1, at('item_tower/dense1/kernel'));
  out.set(g.gb1, at('item_tower/dense1/bias'));
  out.set(g.gV2, at('item_tower/dense2/kernel'));
  out.set(g.gb2, at('item_tower/dense2/bias'));
  const pe = at('item_embedding');
  const pb = at('item_bias');
  const d = g.dU.length;
  g.rows.forEach((r, t) => {
    out.set(g.rowVals.subarray(t * d, (t + 1) * d), pe + r * d);
    out[pb + r] = g.biasVals[t];
  });
}

export function clippedUserGradientSum(model: TwoTowerModel, batch: UserExamples[], clip: number, onUser?: (k: number, g: UserGradientParts) => void): Promise<ClippedSum> {
  return run(clippedUserGradientSumReads(model, batch, clip, onUser));
}

export function* clippedUserGradientSumReads(model: TwoTowerModel, batch: UserExamples[], clip: number, onUser?: (k: number, g: UserGradientParts) => void): Reads<ClippedSum> {
  const layout = model.layout;
  if (!layout) throw new Error('clippedUserGradientSum needs a model with the shared layout (TwoTowerModel.forPolicy)');
  if (!(clip > 0)) throw new RangeError(`"clip" expected > 0, got ${clip}`);
  const { embeddingDim: d, hiddenDim: h, userFeatureDim: du, itemFeatureDim: di } = model.shape;
  const U = batch.length;
  const D = layoutSize(layout);
  const sum = new Float32Array(D);
  if (U === 0) return { sum, norms: new Float32Array(0), userGrads: { rows: new Uint32Array(0), values: new Float32Array(0), width: d }, loss: 0 };
  const seenUsers = new Set<number>();
  for (const b of batch) {
    if (seenUsers.has(b.user)) throw new RangeError(`user ${b.user} appears twice in one DP batch`);
    seenUsers.add(b.user);
    if (b.items.length === 0 || b.items.length !== b.labels.length) throw new RangeError(`user ${b.user}: items/labels must be non-empty and of equal length`);
  }
  const m = Math.max(...batch.map((b) => b.items.length));
  const feats = model.features();
  const xu = new Float32Array(U * du);
  const eu = new Float32Array(U * d);
  const xi = new Float32Array(U * m * di);
  const ei = new Float32Array(U * m * d);
  const bi = new Float32Array(U * m);
  const y = new Float32Array(U * m);
  const w = new Float32Array(U * m);
  batch.forEach((b, k) => {
    xu.set(feats.users.subarray(b.user * du, (b.user + 1) * du), k * du);
    eu.set(model.userEmbedding.subarray(b.user * d, (b.user + 1) * d), k * d);
    const inv = 1 / b.items.length;
    for (let j = 0; j < b.items.length; j++) {
      const it = b.items[j];
      const r = k * m + j;
      xi.set(feats.items.subarray(it * di, (it + 1) * di), r * di);
      ei.set(model.itemEmbedding.subarray(it * d, (it + 1) * d), r * d);
      bi[r] = model.itemBias[it];
      y[r] = b.labels[j];
      w[r] = inv;
    }
  });

  const v = (n: string) => model.towerVariable(n);
  const W2 = v('user_tower/dense2/kernel') as tf.Tensor2D;
  const V2 = v('item_tower/dense2/kernel') as tf.Tensor2D;
  // Forward and the per-example errors, all as 2D ops (tfjs-wasm's batched matMul is slow).
  const fwd = tf.tidy(() => {
    const Xu = tf.tensor2d(xu, [U, du]);
    const Xi = tf.tensor2d(xi, [U * m, di]);
    const Zu1 = tf.add(tf.matMul(Xu, v('user_tower/dense1/kernel') as tf.Tensor2D), v('user_tower/dense1/bias')) as tf.Tensor2D;
    const Au1 = tf.relu(Zu1);
    const Uv = tf.add(tf.add(tf.matMul(Au1, W2), v('user_tower/dense2/bias')), tf.tensor2d(eu, [U, d])) as tf.Tensor2D; // [U,d]
    const Zi1 = tf.add(tf.matMul(Xi, v('item_tower/dense1/kernel') as tf.Tensor2D), v('item_tower/dense1/bias')) as tf.Tensor2D; // [U*m,h]
    const Ai1 = tf.relu(Zi1);
    const Iv3 = tf.reshape(tf.add(tf.add(tf.matMul(Ai1, V2), v('item_tower/dense2/bias')), tf.tensor2d(ei, [U * m, d])), [U, m, d]);
    const Y = tf.tensor2d(y, [U, m]);
    const Wt = tf.tensor2d(w, [U, m]);
    const logit = tf.add(tf.sum(tf.mul(Iv3, tf.expandDims(Uv, 1)), 2), tf.tensor2d(bi, [U, m])); // [U,m]
    const bce = tf.add(tf.sub(tf.relu(logit), tf.mul(logit, Y)), tf.log1p(tf.exp(tf.neg(tf.abs(logit)))));
    const lossPerUser = tf.sum(tf.mul(bce, Wt), 1);
    const E = tf.mul(tf.sub(tf.sigmoid(logit), Y), Wt); // [U,m]  e_j = w_j (sigmoid(z_j) - y_j)
    const dI = tf.reshape(tf.mul(tf.expandDims(E, 2), tf.expandDims(Uv, 1)), [U * m, d]); // dL/dI_j
    const dU = tf.sum(tf.mul(tf.expandDims(E, 2), Iv3), 1) as tf.Tensor2D; // dL/dU_u  [U,d]
    const d1u = tf.mul(tf.matMul(dU, W2, false, true), tf.step(Zu1)) as tf.Tensor2D; // [U,h]
    const d1i = tf.mul(tf.matMul(dI as tf.Tensor2D, V2, false, true), tf.step(Zi1)) as tf.Tensor2D; // [U*m,h]
    return { Xu, Xi, Au1, Ai1, dI: dI as tf.Tensor2D, dU, d1u, d1i, E, lossPerUser };
  });

  try {
    const [au1, ai1, dIArr, dUArr, d1uArr, d1iArr, eArr, lossArr] = yield [fwd.Au1, fwd.Ai1, fwd.dI, fwd.dU, fwd.d1u, fwd.d1i, fwd.E, fwd.lossPerUser];
    // Per-user squared norms over the shared parameters.
    //  user tower: one input per user, so each gradient is an outer product a (x) b with norm |a||b|;
    //  item tower: sum over the user's examples of x_j (x) d1_j and b1_j (x) d2_j, materialised in JS
    //  (x_j is multi-hot: only its non-zero features are visited);
    //  embedding rows: summed per item within the user before squaring.
    const norms = new Float32Array(U);
    const rowSums: Array<{ rows: Uint32Array; vals: Float32Array; bias: Float32Array }> = [];
    const gV1 = new Float64Array(di * h);
    const gV2 = new Float64Array(h * d);
    const gb1 = new Float64Array(h);
    const gb2 = new Float64Array(d);
    const sq = (a: Float32Array, o: number, n: number) => {
      let t = 0;
      for (let k = 0; k < n; k++) t += a[o + k] * a[o + k];
      return t;
    };
    batch.forEach((b, k) => {
      const xn = sq(xu, k * du, du);
      const an = sq(au1, k * h, h);
      const dun = sq(dUArr, k * d, d);
      const d1n = sq(d1uArr, k * h, h);
      let total = an * dun + dun + xn * d1n + d1n;
      gV1.fill(0);
      gV2.fill(0);
      gb1.fill(0);
      gb2.fill(0);
      for (let j = 0; j < b.items.length; j++) {
        const r = k * m + j;
        const xo = r * di;
        const d1o = r * h;
        const d2o = r * d;
        for (let a = 0; a < di; a++) {
          const xa = xi[xo + a];
          if (xa === 0) continue;
          const row = a * h;
          for (let c = 0; c < h; c++) gV1[row + c] += xa * d1iArr[d1o + c];
        }
        for (let c = 0; c < h; c++) {
          gb1[c] += d1iArr[d1o + c];
          const bc = ai1[d1o + c];
          if (bc === 0) continue;
          const row = c * d;
          for (let e = 0; e < d; e++) gV2[row + e] += bc * dIArr[d2o + e];
        }
        for (let e = 0; e < d; e++) gb2[e] += dIArr[d2o + e];
      }
      for (const arr of [gV1, gV2, gb1, gb2]) for (let t = 0; t < arr.length; t++) total += arr[t] * arr[t];
      const idx = b.items;
      const s = segmentSumRows(idx, dIArr.subarray(k * m * d, (k * m + idx.length) * d), d);
      const sb = segmentSumRows(idx, eArr.subarray(k * m, k * m + idx.length), 1);
      for (let t = 0; t < s.values.length; t++) total += s.values[t] * s.values[t];
      for (let t = 0; t < sb.values.length; t++) total += sb.values[t] * sb.values[t];
      norms[k] = Math.sqrt(total);
      rowSums.push({ rows: s.rows, vals: s.values, bias: sb.values });
      onUser?.(k, {
        x: xu.subarray(k * du, (k + 1) * du),
        d1: d1uArr.subarray(k * h, (k + 1) * h),
        a1: au1.subarray(k * h, (k + 1) * h),
        dU: dUArr.subarray(k * d, (k + 1) * d),
        gV1,
        gb1,
        gV2,
        gb2,
        rows: s.rows,
        rowVals: s.values,
        biasVals: sb.values,
      });
    });
    const scale = new Float32Array(U);
    for (let k = 0; k < U; k++) scale[k] = norms[k] > clip ? clip / norms[k] : 1;
    const rowScale = new Float32Array(U * m);
    for (let k = 0; k < U; k++) rowScale.fill(scale[k], k * m, (k + 1) * m);
    // Clipped tower sums: sum_u c_u G_u = A^T diag(c) Delta, one 2D matMul per parameter.
    const sums = tf.tidy(() => {
      const c = tf.tensor2d(scale, [U, 1]);
      const cr = tf.tensor2d(rowScale, [U * m, 1]);
      const cdU = tf.mul(fwd.dU, c);
      const cd1u = tf.mul(fwd.d1u, c);
      const cdI = tf.mul(fwd.dI, cr);
      const cd1i = tf.mul(fwd.d1i, cr);
      const out: Record<string, tf.Tensor> = {
        'user_tower/dense1/kernel': tf.matMul(fwd.Xu, cd1u, true, false),
        'user_tower/dense1/bias': tf.sum(cd1u, 0),
        'user_tower/dense2/kernel': tf.matMul(fwd.Au1, cdU, true, false),
        'user_tower/dense2/bias': tf.sum(cdU, 0),
        'item_tower/dense1/kernel': tf.matMul(fwd.Xi, cd1i, true, false),
        'item_tower/dense1/bias': tf.sum(cd1i, 0),
        'item_tower/dense2/kernel': tf.matMul(fwd.Ai1, cdI, true, false),
        'item_tower/dense2/bias': tf.sum(cdI, 0),
      };
      return out;
    });
    try {
      const names = Object.keys(sums);
      const vals = yield names.map((n) => sums[n]);
      names.forEach((name, k) => sum.set(vals[k], spec(layout, name).offset));
    } finally {
      tf.dispose(Object.values(sums));
    }
    // clipped embedding rows
    const pe = spec(layout, 'item_embedding');
    const pb = spec(layout, 'item_bias');
    rowSums.forEach((r, k) => {
      const c = scale[k];
      for (let t = 0; t < r.rows.length; t++) {
        const o = pe.offset + r.rows[t] * d;
        for (let q = 0; q < d; q++) sum[o + q] += c * r.vals[t * d + q];
        sum[pb.offset + r.rows[t]] += c * r.bias[t];
      }
    });
    const order = batch.map((b, k) => [b.user, k] as const).sort((a, b2) => a[0] - b2[0]);
    const userGrads: SparseRows = { rows: Uint32Array.from(order.map((o) => o[0])), values: new Float32Array(U * d), width: d };
    order.forEach(([, k], r) => userGrads.values.set(dUArr.subarray(k * d, (k + 1) * d), r * d));
    let loss = 0;
    for (let k = 0; k < U; k++) loss += lossArr[k];
    return { sum, norms, userGrads, loss: loss / U };
  } finally {
    tf.dispose(Object.values(fwd));
  }
}

/**
 * Per-user gradient vectors over the shared parameters (unclipped), one flat vector per user, handed
 * to `each` in batch order: the contributions of the `round-noise` mechanism, which the encoder
 * clips, rounds and sums one by one. Computed `chunk` users at a time (memory: chunk x dimension
 * floats); `each` may keep or change the vector it is given.
 */
export function perUserGradients(model: TwoTowerModel, batch: UserExamples[], each: (g: Float32Array, k: number) => void, chunk = 64): Promise<void> {
  return run(perUserGradientsReads(model, batch, each, chunk));
}

export function* perUserGradientsReads(model: TwoTowerModel, batch: UserExamples[], each: (g: Float32Array, k: number) => void, chunk = 64): Reads<void> {
  const layout = model.layout;
  if (!layout) throw new Error('perUserGradients needs a model with the shared layout');
  const D = layoutSize(layout);
  for (let s = 0; s < batch.length; s += chunk) {
    const part = batch.slice(s, s + chunk);
    const vecs = part.map(() => new Float32Array(D));
    yield* clippedUserGradientSumReads(model, part, Infinity, (k, g) => writeUserGradient(layout, g, vecs[k]));
    vecs.forEach((v, k) => each(v, s + k));
  }
}

/**
 * How many sampled users one DP-SGD step computes at a time (memory: the chunk's examples, a few
 * per user). Each user's gradient is clipped on its own, so the chunk size changes no user's
 * contribution, only the float summation order of the clipped sum. 256 on cpu/wasm/tfjs-node (the
 * numbers every earlier measurement used); 1,024 on webgpu, where each kernel costs 0.6-1.4 ms
 * whatever its size (Dawn in Node on an H100): a 1,000-user step took 164-276 ms in one chunk against
 * 227-353 ms in four (4 runs of `npm run bench -- gpu-latency`, dp_step_ms).
 */
export function dpChunkUsers(backend = tf.getBackend()): number {
  return backend === 'webgpu' ? 1024 : 256;
}

/** Uniform doubles in [0, 1) with 53 bits each, from libsodium's CSPRNG. */
export function csprngUniforms(n: number): Float64Array {
  const out = new Float64Array(n);
  const bytes = randomBytes(n * 8);
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, n * 2);
  for (let i = 0; i < n; i++) out[i] = ((w[2 * i] >>> 5) * 67108864 + (w[2 * i + 1] >>> 6)) / 9007199254740992;
  bytes.fill(0);
  return out;
}

/** Poisson sampling: each candidate independently with probability q (CSPRNG). */
export function poissonSample(candidates: Uint32Array, q: number): Uint32Array {
  if (!(q > 0 && q <= 1)) throw new RangeError(`"q" expected in (0, 1], got ${q}`);
  const u = csprngUniforms(candidates.length);
  const out: number[] = [];
  for (let i = 0; i < candidates.length; i++) if (u[i] < q) out.push(candidates[i]);
  return Uint32Array.from(out);
}

/** The party's own offers: `own[i]` = 1 when catalogue item i is offered by this party. */
export interface OfferScope {
  party: string;
  own: Uint8Array;
}

/**
 * The offer scope of `party` from the policy's `catalogue.offers`, checked against the node's own
 * catalogue (in dataset order): every item the policy assigns to `party` must name it as provider and
 * no other item may. The catalogue hash already pins the provider column; a mismatch means the policy
 * was written from another catalogue, and training must not start on it.
 */
export function offerScope(party: string, offers: OfferRanges, items: ReadonlyArray<{ id?: string; provider?: string }>): OfferScope {
  const own = ownOfferMask(offers, party, items.length);
  for (let i = 0; i < items.length; i++) {
    if ((own[i] === 1) !== (items[i].provider === party)) {
      throw new RangeError(`the policy's offers of "${party}" disagree with the catalogue at item ${i}${items[i].id ? ` (${items[i].id})` : ''}: the policy says ${own[i] ? '' : 'not '}"${party}", items.csv says "${items[i].provider ?? ''}"`);
    }
  }
  return { party, own };
}

/** Coordinates of the shared vector a scoped party's update can touch: towers and its own rows. */
export function scopeSupport(layout: ParamSpec[], scope: OfferScope): Uint8Array {
  const D = layoutSize(layout);
  const m = new Uint8Array(D).fill(1);
  const emb = layout.find((p) => p.name === 'item_embedding');
  const bias = layout.find((p) => p.name === 'item_bias');
  if (!emb || !bias) throw new Error('offer scope needs a layout with item_embedding and item_bias');
  const d = emb.shape[1];
  if (emb.shape[0] !== scope.own.length || bias.size !== scope.own.length) throw new RangeError(`offer scope covers ${scope.own.length} items, the layout ${emb.shape[0]}`);
  for (let i = 0; i < scope.own.length; i++) {
    if (scope.own[i]) continue;
    m.fill(0, emb.offset + i * d, emb.offset + (i + 1) * d);
    m[bias.offset + i] = 0;
  }
  return m;
}

export interface DpSgdConfig {
  /** restrict training (examples, noise) to the party's own offers; null/absent = whole catalogue */
  scope?: OfferScope | null;
  clipNorm: number;
  noiseMultiplier: number;
  samplingRate: number;
  maxInteractionsPerUser: number;
  negatives: number;
  learningRate: number;
}

export interface DpStepInfo {
  sampledUsers: number;
  /** training examples (positives + negatives) of the sampled users */
  examples: number;
  loss: number;
  clippedFraction: number;
}

/**
 * Each user's training positives (item indices), keeping only items with own[i] = 1 under an offer
 * scope; `dropped` counts the positives outside it. The users are DP-SGD's Poisson sampling
 * population (DpSgdTrainer.population); `node join` checks their number against the policy's
 * privacy.maxUsersPerParty with this same function.
 */
export function positivesByUser(positives: { user: Uint32Array; item: Uint32Array }, own: Uint8Array | null): { byUser: Map<number, number[]>; dropped: number } {
  const byUser = new Map<number, number[]>();
  let dropped = 0;
  for (let j = 0; j < positives.user.length; j++) {
    const u = positives.user[j];
    if (own && !own[positives.item[j]]) {
      dropped++;
      continue;
    }
    if (!byUser.has(u)) byUser.set(u, []);
    byUser.get(u)!.push(positives.item[j]);
  }
  return { byUser, dropped };
}

/**
 * DP-SGD over this node's users. Each `step()` is one Poisson-subsampled Gaussian mechanism with
 * (q = samplingRate, sigma = noiseMultiplier, sensitivity = clipNorm) over the shared parameters;
 * the caller charges the accountant for every step taken.
 */
export class DpSgdTrainer {
  private readonly byUser = new Map<number, Uint32Array>();
  private readonly candidates: Uint32Array;
  private readonly adam: DenseAdam;
  private stepIndex = 0;
  /** positives dropped by the offer scope (another provider's item) */
  readonly droppedOutOfScope: number = 0;
  /** per shared coordinate: 1 where noise is added (all ones without a scope) */
  private readonly support: Uint8Array | null = null;
  private readonly supportSize: number;
  /** negative pools: per domain, and the catalogue-wide pool (own offers only under a scope) */
  private readonly negByDomain: Map<string, Uint32Array>;
  private readonly negAll: Uint32Array | null;

  constructor(
    private readonly model: TwoTowerModel,
    positives: { user: Uint32Array; item: Uint32Array },
    private readonly domains: { byDomain: Map<string, Uint32Array>; domainOf: string[] },
    readonly cfg: DpSgdConfig,
    /** the secret key of the per-user example coins (model/coins.ts); fresh per training */
    private readonly key: ExampleKey,
  ) {
    const scope = cfg.scope ?? null;
    const { byUser: lists, dropped } = positivesByUser(positives, scope?.own ?? null);
    this.droppedOutOfScope = dropped;
    const D = model.sharedSize();
    if (scope) {
      if (!model.layout) throw new Error('an offer scope needs a model with the shared layout (TwoTowerModel.forPolicy)');
      if (scope.own.length !== domains.domainOf.length) throw new RangeError(`offer scope covers ${scope.own.length} items, the catalogue has ${domains.domainOf.length}`);
      this.support = scopeSupport(model.layout, scope);
      const pools = ownOfferPools(domains, scope.own);
      this.negByDomain = pools.byDomain;
      this.negAll = pools.all ?? null;
    } else {
      this.negByDomain = domains.byDomain;
      this.negAll = null;
    }
    let sup = D;
    if (this.support) {
      sup = 0;
      for (let i = 0; i < D; i++) sup += this.support[i];
    }
    this.supportSize = sup;
    for (const [u, l] of lists) this.byUser.set(u, Uint32Array.from(l));
    this.candidates = Uint32Array.from([...this.byUser.keys()].sort((a, b) => a - b));
    if (this.candidates.length === 0) throw new RangeError('DP-SGD needs at least one user with interactions');
    this.adam = new DenseAdam(cfg.learningRate);
  }

  /** Users with at least one training interaction (the Poisson sampling population). */
  get population(): Uint32Array {
    return this.candidates;
  }

  /** Steps taken so far (the step index of the next `noisyGradient`). */
  get stepsTaken(): number {
    return this.stepIndex;
  }

  /**
   * Examples of user u at step `step`: at most maxInteractionsPerUser positives (a random subset), K
   * negatives each, all drawn from u's own coins for that step (a function of the key, the step, u
   * and u's interactions only; see the module comment).
   */
  examplesOf(u: number, step: number): UserExamples {
    const pos = this.byUser.get(u);
    if (!pos) throw new RangeError(`user ${u} has no training interactions`);
    const rng = this.key.coins(step, u);
    const cap = this.cfg.maxInteractionsPerUser;
    let chosen: Uint32Array = pos;
    if (pos.length > cap) {
      chosen = Uint32Array.from(pos);
      for (let i = 0; i < cap; i++) {
        const j = i + rng.nextInt(chosen.length - i);
        const t = chosen[i];
        chosen[i] = chosen[j];
        chosen[j] = t;
      }
      chosen = chosen.subarray(0, cap);
    }
    const K = this.cfg.negatives;
    const items = new Uint32Array(chosen.length * (1 + K));
    const labels = new Float32Array(chosen.length * (1 + K));
    chosen.forEach((it, k) => {
      const o = k * (1 + K);
      items[o] = it;
      labels[o] = 1;
      const pool = this.negByDomain.get(this.domains.domainOf[it])!;
      const all = this.negAll;
      for (let q = 1; q <= K; q++) {
        if (q === K && K > 1) items[o + q] = all ? all[rng.nextInt(all.length)] : rng.nextInt(this.domains.domainOf.length);
        else items[o + q] = pool[rng.nextInt(pool.length)];
      }
    });
    return { user: u, items, labels };
  }

  /** The noised clipped sum of one step (without applying it; see the module comment on scaling). */
  noisyGradient(): Promise<{ grad: Float32Array; info: DpStepInfo; userGrads: SparseRows }> {
    return run(this.noisyGradientReads());
  }

  *noisyGradientReads(): Reads<{ grad: Float32Array; info: DpStepInfo; userGrads: SparseRows }> {
    const step = this.stepIndex++;
    const sampled = poissonSample(this.candidates, this.cfg.samplingRate);
    const batch = Array.from(sampled, (u) => this.examplesOf(u, step));
    // bounded memory: process the sampled users in chunks; sums are additive
    const D = this.model.sharedSize();
    const grad = new Float32Array(D);
    let loss = 0;
    let clipped = 0;
    const userRows: SparseRows[] = [];
    const chunk = dpChunkUsers();
    for (let s = 0; s < batch.length; s += chunk) {
      const part = batch.slice(s, s + chunk);
      const r = yield* clippedUserGradientSumReads(this.model, part, this.cfg.clipNorm);
      for (let i = 0; i < D; i++) grad[i] += r.sum[i];
      loss += r.loss * part.length;
      for (const n of r.norms) if (n > this.cfg.clipNorm) clipped++;
      userRows.push(r.userGrads);
    }
    // noise on every coordinate of the support (all of them without a scope); outside it the
    // clipped sum is exactly zero by construction (asserted: a scope bug must not go unnoticed)
    const noise = gaussianNoise(this.supportSize, this.cfg.noiseMultiplier * this.cfg.clipNorm);
    const sup = this.support;
    if (!sup) {
      for (let i = 0; i < D; i++) grad[i] += noise[i];
    } else {
      let k = 0;
      for (let i = 0; i < D; i++) {
        if (sup[i]) grad[i] += noise[k++];
        else if (grad[i] !== 0) throw new Error(`offer scope violated: a user's gradient touches coordinate ${i} outside the party's offers`);
      }
    }
    const userGrads: SparseRows = {
      rows: Uint32Array.from(userRows.flatMap((r) => Array.from(r.rows))),
      values: Float32Array.from(userRows.flatMap((r) => Array.from(r.values))),
      width: this.model.shape.embeddingDim,
    };
    return { grad, userGrads, info: { sampledUsers: batch.length, examples: batch.reduce((a, b) => a + b.items.length, 0), loss: batch.length ? loss / batch.length : NaN, clippedFraction: batch.length ? clipped / batch.length : 0 } };
  }

  /** One DP-SGD step: noisy gradient, dense Adam on the shared parameters, lazy Adam on private e_u. */
  step(): Promise<DpStepInfo> {
    return run(this.stepReads());
  }

  *stepReads(): Reads<DpStepInfo> {
    const { grad, userGrads, info } = yield* this.noisyGradientReads();
    const w = yield* this.model.sharedFlatReads();
    this.adam.apply([{ name: 'shared', w, g: grad }]);
    this.model.setSharedFlat(w);
    if (userGrads.rows.length) {
      // rows must be unique and sorted for the lazy Adam; chunks partition the users, so sort once
      const order = Array.from(userGrads.rows.keys()).sort((a, b) => userGrads.rows[a] - userGrads.rows[b]);
      const d = userGrads.width;
      const sorted: SparseRows = { rows: Uint32Array.from(order.map((k) => userGrads.rows[k])), values: new Float32Array(userGrads.values.length), width: d };
      order.forEach((k, r) => sorted.values.set(userGrads.values.subarray(k * d, (k + 1) * d), r * d));
      this.model.applyUserEmbeddingGradient(sorted);
    }
    return info;
  }
}
