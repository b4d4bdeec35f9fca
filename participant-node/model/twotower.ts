/**
 * The hybrid two-tower recommender (DESIGN §5) on TensorFlow.js.
 *
 *   score(u, i) = sigmoid( <f(x_u) + e_u, g(x_i) + e_i> + b_i )
 *
 * f, g: two-layer MLPs over the shared feature vocabularies (tfjs variables for the forward and
 * backward pass; dense Adam on the CPU over master copies, `DenseAdam`, the same float32 arithmetic as
 * tf.train.adam, so the weights equal what tf.train.adam gives on the cpu and wasm backends).
 * e_i, b_i: item embedding and bias (shared). e_u: per-user embedding (PRIVATE, never in the
 * shared list, never serialised into an update).
 *
 * The embedding-gradient trap (STACK.md): the gradient of tf.gather is UnsortedSegmentSum, which
 * loops over every row on `cpu` and is missing on `wasm`. We never put an embedding table into the
 * tfjs graph. For a batch, the touched rows are gathered in plain JS into small [B, d] tensors; tfjs
 * differentiates the loss with respect to those batch tensors (and the tower variables); the
 * per-example row gradients are then summed per unique row in JS (a scatter-add, exact) and only the
 * touched rows are updated, by a lazy (row-sparse) Adam as in TF's LazyAdamOptimizer. The gradient
 * equals the dense tf.gather gradient restricted to touched rows (tests/participant-node/model).
 *
 * Every method that reads tensors back into JS exists twice over ONE implementation (reads.ts):
 * `xReads()` is the generator (composable with `yield*`), `x()` runs it with the driver the backend
 * allows (synchronous reads on cpu/wasm/tfjs-node, asynchronous on webgpu in Node) and returns a
 * promise.
 */
import * as tf from '@tensorflow/tfjs';
import { sharedParameterLayout, type ParamSpec, type ModelConfig, layoutSize } from '../../shared/model/layout';
import { itemFeatureDim, userFeatureDim, type Vocabularies } from '../../shared/data/vocab';
import { Xoshiro128 } from '../../shared/util/prng';
import { run, type Reads } from './reads';

export interface TwoTowerShape {
  numUsers: number;
  numItems: number;
  embeddingDim: number;
  hiddenDim: number;
  userFeatureDim: number;
  itemFeatureDim: number;
  /** false: plain matrix factorisation (no feature towers) — the STACK.md reference config for benchmarks */
  towers: boolean;
}

export interface TwoTowerOptions {
  learningRate: number;
  /** seed of the (non-cryptographic) initialiser; identical seeds give identical initial models */
  initSeed: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

/** Row-sparse gradient: `rows` unique sorted row indices, `values` rows.length x width. */
export interface SparseRows {
  rows: Uint32Array;
  values: Float32Array;
  width: number;
}

export interface BatchGradients {
  loss: number;
  /** dense gradients of the tower variables, by layout name */
  tower: Map<string, Float32Array>;
  itemEmbedding: SparseRows;
  itemBias: SparseRows;
  userEmbedding: SparseRows;
}

const TOWER_NAMES = [
  'user_tower/dense1/kernel',
  'user_tower/dense1/bias',
  'user_tower/dense2/kernel',
  'user_tower/dense2/bias',
  'item_tower/dense1/kernel',
  'item_tower/dense1/bias',
  'item_tower/dense2/kernel',
  'item_tower/dense2/bias',
] as const;

let instanceCounter = 0;

/**
 * Row-sparse Adam (TF LazyAdamOptimizer semantics): moments and weights of a row change only when the
 * row is in the batch; bias correction uses the global step count.
 */
export class LazyAdam {
  readonly m: Float32Array;
  readonly v: Float32Array;
  private t = 0;

  constructor(
    readonly size: number,
    readonly lr: number,
    readonly b1 = 0.9,
    readonly b2 = 0.999,
    readonly eps = 1e-7,
  ) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  reset(): void {
    this.m.fill(0);
    this.v.fill(0);
    this.t = 0;
  }

  /** Applies `g` (rows.length x width) to `w` at the given rows. */
  apply(w: Float32Array, g: SparseRows): void {
    this.t++;
    const { b1, b2, eps } = this;
    const alpha = (this.lr * Math.sqrt(1 - Math.pow(b2, this.t))) / (1 - Math.pow(b1, this.t));
    const { rows, values, width } = g;
    const m = this.m;
    const v = this.v;
    for (let r = 0; r < rows.length; r++) {
      const base = rows[r] * width;
      const gb = r * width;
      for (let k = 0; k < width; k++) {
        const gi = values[gb + k];
        const j = base + k;
        const mj = (m[j] = b1 * m[j] + (1 - b1) * gi);
        const vj = (v[j] = b2 * v[j] + (1 - b2) * gi * gi);
        w[j] -= (alpha * mj) / (Math.sqrt(vj) + eps);
      }
    }
  }
}

/**
 * Dense Adam over Float32Arrays on the CPU, with EXACTLY the float32 arithmetic of tfjs 4.22's
 * `tf.train.adam` (tfjs-core optimizers/adam_optimizer.ts) as the cpu backend runs it, op by op, each
 * result rounded to float32 (f = Math.fround; every JS number reaches a kernel as a float32 scalar):
 *
 *   state: accBeta1 = f(b1), accBeta2 = f(b2), per variable m = v = 0
 *   step:  c1 = f(1 - accBeta1), c2 = f(1 - accBeta2)
 *          per element, for each variable in order:
 *            m' = f( f(m * f(b1)) + f(g * f(1 - b1)) )
 *            v' = f( f(v * f(b2)) + f( f(g * g) * f(1 - b2) ) )
 *            w' = f( f( f( f(m' / c1) / f( f(sqrt(f(v' / c2))) + f(eps) ) ) * f(-lr) ) + w )
 *          then accBeta1 = f(accBeta1 * f(b1)), accBeta2 = f(accBeta2 * f(b2))
 *
 * (+, -, *, / and sqrt of float32 values computed in double and rounded once equal the float32
 * operations, so the wasm backend's kernels give the same bits.) Why not tf.train.adam: on a GPU
 * backend its ~13 kernels per variable were most of a training step (0.6-1.4 ms each on WebGPU
 * over Dawn, `npm run bench -- gpu-latency`), for about 10,000 tower weights whose gradients the
 * step has already read back to the CPU. tests/participant-node/model/gradients.test.ts checks the
 * bits against tf.train.adam. DP-SGD (model/dpsgd.ts) steps the whole shared vector with it too.
 */
export class DenseAdam {
  private readonly b1: number;
  private readonly b2: number;
  private readonly omb1: number;
  private readonly omb2: number;
  private readonly eps: number;
  private readonly negLr: number;
  private accBeta1: number;
  private accBeta2: number;
  private readonly moments = new Map<string, { m: Float32Array; v: Float32Array }>();

  constructor(lr: number, b1 = 0.9, b2 = 0.999, eps = 1e-7) {
    const f = Math.fround;
    this.b1 = f(b1);
    this.b2 = f(b2);
    this.omb1 = f(1 - b1);
    this.omb2 = f(1 - b2);
    this.eps = f(eps);
    this.negLr = f(-lr);
    this.accBeta1 = this.b1;
    this.accBeta2 = this.b2;
  }

  reset(): void {
    this.moments.clear();
    this.accBeta1 = this.b1;
    this.accBeta2 = this.b2;
  }

  /** One step: updates each `w` in place from its `g` (equal lengths), in the order given. */
  apply(params: ReadonlyArray<{ name: string; w: Float32Array; g: Float32Array }>): void {
    const f = Math.fround;
    const { b1, b2, omb1, omb2, eps, negLr } = this;
    const c1 = f(1 - this.accBeta1);
    const c2 = f(1 - this.accBeta2);
    for (const { name, w, g } of params) {
      if (g.length !== w.length) throw new RangeError(`gradient of "${name}" has length ${g.length}, the weights ${w.length}`);
      const st = this.moments.get(name);
      if (st && st.m.length !== w.length) throw new RangeError(`"${name}" changed length from ${st.m.length} to ${w.length}`);
    }
    for (const { name, w, g } of params) {
      let st = this.moments.get(name);
      if (!st) this.moments.set(name, (st = { m: new Float32Array(w.length), v: new Float32Array(w.length) }));
      const { m, v } = st;
      for (let j = 0; j < w.length; j++) {
        const gj = g[j];
        const mj = (m[j] = f(f(m[j] * b1) + f(gj * omb1)));
        const vj = (v[j] = f(f(v[j] * b2) + f(f(gj * gj) * omb2)));
        const den = f(f(Math.sqrt(f(vj / c2))) + eps);
        w[j] = f(f(f(f(mj / c1) / den) * negLr) + w[j]);
      }
    }
    this.accBeta1 = f(this.accBeta1 * b1);
    this.accBeta2 = f(this.accBeta2 * b2);
  }
}

/**
 * Sums per-example rows into unique rows: out[row(idx[j])] += vals[j]. Exact (the same additions, in
 * example order, that a dense scatter would do).
 */
export function segmentSumRows(idx: Uint32Array, vals: Float32Array, width: number): SparseRows {
  const order = new Map<number, number>();
  for (let j = 0; j < idx.length; j++) if (!order.has(idx[j])) order.set(idx[j], order.size);
  const rows = Uint32Array.from(order.keys()).sort();
  const pos = new Map<number, number>();
  rows.forEach((r, i) => pos.set(r, i));
  const values = new Float32Array(rows.length * width);
  for (let j = 0; j < idx.length; j++) {
    const o = pos.get(idx[j])! * width;
    const s = j * width;
    for (let k = 0; k < width; k++) values[o + k] += vals[s + k];
  }
  return { rows, values, width };
}

function gatherRows(src: Float32Array, idx: Uint32Array, width: number, out?: Float32Array): Float32Array {
  const dst = out ?? new Float32Array(idx.length * width);
  for (let j = 0; j < idx.length; j++) {
    const s = idx[j] * width;
    dst.set(src.subarray(s, s + width), j * width);
  }
  return dst;
}

export class TwoTowerModel {
  readonly shape: TwoTowerShape;
  readonly layout: ParamSpec[] | null;
  /** shared item embedding [numItems, d] and bias [numItems] */
  readonly itemEmbedding: Float32Array;
  readonly itemBias: Float32Array;
  /** PRIVATE per-user embedding [numUsers, d] */
  readonly userEmbedding: Float32Array;
  private readonly vars = new Map<string, tf.Variable>();
  /** master copies of the tower weights (the variables hold uploads of these), by layout name */
  private readonly towerW = new Map<string, Float32Array>();
  private readonly towerAdam: DenseAdam;
  private readonly adamItemEmb: LazyAdam;
  private readonly adamItemBias: LazyAdam;
  private readonly adamUserEmb: LazyAdam;
  private userFeatures: Float32Array;
  private itemFeatures: Float32Array;
  private readonly id = ++instanceCounter;
  private disposed = false;

  constructor(shape: TwoTowerShape, private readonly opts: TwoTowerOptions) {
    this.shape = shape;
    const { numUsers, numItems, embeddingDim: d, hiddenDim: h } = shape;
    const rng = new Xoshiro128(opts.initSeed);
    const normal = (n: number, std: number) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = rng.nextGaussian() * std;
      return a;
    };
    const glorot = (fanIn: number, fanOut: number) => {
      const lim = Math.sqrt(6 / (fanIn + fanOut));
      const a = new Float32Array(fanIn * fanOut);
      for (let i = 0; i < a.length; i++) a[i] = (rng.nextFloat() * 2 - 1) * lim;
      return a;
    };
    this.itemEmbedding = normal(numItems * d, 0.05);
    this.itemBias = new Float32Array(numItems);
    this.userEmbedding = normal(numUsers * d, 0.05);
    this.layout = null;
    if (shape.towers) {
      const du = shape.userFeatureDim;
      const di = shape.itemFeatureDim;
      const init: Record<(typeof TOWER_NAMES)[number], [Float32Array, number[]]> = {
        'user_tower/dense1/kernel': [glorot(du, h), [du, h]],
        'user_tower/dense1/bias': [new Float32Array(h), [h]],
        'user_tower/dense2/kernel': [glorot(h, d), [h, d]],
        'user_tower/dense2/bias': [new Float32Array(d), [d]],
        'item_tower/dense1/kernel': [glorot(di, h), [di, h]],
        'item_tower/dense1/bias': [new Float32Array(h), [h]],
        'item_tower/dense2/kernel': [glorot(h, d), [h, d]],
        'item_tower/dense2/bias': [new Float32Array(d), [d]],
      };
      for (const name of TOWER_NAMES) {
        const [vals, shp] = init[name];
        this.towerW.set(name, vals);
        // the variable shares the tensor's data (a copy: the master copy changes in place); the tensor
        // itself is then dropped (else one leaks per variable)
        const t = tf.tensor(vals.slice(), shp);
        try {
          this.vars.set(name, tf.variable(t, true, `m${this.id}/${name}`));
        } finally {
          t.dispose();
        }
      }
    }
    this.towerAdam = new DenseAdam(opts.learningRate, opts.beta1 ?? 0.9, opts.beta2 ?? 0.999, opts.epsilon ?? 1e-7);
    this.adamItemEmb = new LazyAdam(numItems * d, opts.learningRate, opts.beta1, opts.beta2, opts.epsilon);
    this.adamItemBias = new LazyAdam(numItems, opts.learningRate, opts.beta1, opts.beta2, opts.epsilon);
    this.adamUserEmb = new LazyAdam(numUsers * d, opts.learningRate, opts.beta1, opts.beta2, opts.epsilon);
    this.userFeatures = new Float32Array(numUsers * shape.userFeatureDim);
    this.itemFeatures = new Float32Array(numItems * shape.itemFeatureDim);
  }

  /** A two-tower model whose shared parameters follow the policy's layout. */
  static forPolicy(model: ModelConfig, vocab: Vocabularies, numUsers: number, opts: TwoTowerOptions): TwoTowerModel {
    const m = new TwoTowerModel(
      {
        numUsers,
        numItems: model.numItems,
        embeddingDim: model.embeddingDim,
        hiddenDim: model.hiddenDim,
        userFeatureDim: userFeatureDim(vocab),
        itemFeatureDim: itemFeatureDim(vocab),
        towers: true,
      },
      opts,
    );
    (m as { layout: ParamSpec[] | null }).layout = sharedParameterLayout(model, vocab);
    return m;
  }

  /** Sets the encoded feature matrices (rows = users / items in dataset order). */
  setFeatures(userFeatures: Float32Array, itemFeatures: Float32Array): void {
    if (userFeatures.length !== this.shape.numUsers * this.shape.userFeatureDim) {
      throw new RangeError(`"userFeatures" expected length ${this.shape.numUsers * this.shape.userFeatureDim}, got ${userFeatures.length}`);
    }
    if (itemFeatures.length !== this.shape.numItems * this.shape.itemFeatureDim) {
      throw new RangeError(`"itemFeatures" expected length ${this.shape.numItems * this.shape.itemFeatureDim}, got ${itemFeatures.length}`);
    }
    this.userFeatures = userFeatures;
    this.itemFeatures = itemFeatures;
  }

  /**
   * The SHARED parameters (f, g, e_i, b_i) as an ordered list of named tensors, in the policy's
   * layout order. The private user embedding is never in this list. The caller owns (disposes) the
   * returned tensors.
   */
  sharedParameters(): Array<{ name: string; tensor: tf.Tensor }> {
    const layout = this.requireLayout();
    return layout.map((p) => {
      if (p.name === 'item_embedding') return { name: p.name, tensor: tf.tensor2d(this.itemEmbedding, [this.shape.numItems, this.shape.embeddingDim]) };
      if (p.name === 'item_bias') return { name: p.name, tensor: tf.tensor1d(this.itemBias) };
      const v = this.vars.get(p.name);
      if (!v) throw new Error(`model has no variable for shared parameter "${p.name}"`);
      return { name: p.name, tensor: v.clone() };
    });
  }

  /** Length of the shared vector (layout order). */
  sharedSize(): number {
    return layoutSize(this.requireLayout());
  }

  /**
   * The shared parameters flattened in layout order (the vector secure aggregation sums). Every
   * parameter has a CPU copy, so nothing is read from the backend; the generator form stays for
   * callers that compose it.
   */
  getSharedFlat(): Promise<Float32Array> {
    return run(this.sharedFlatReads());
  }

  *sharedFlatReads(): Reads<Float32Array> {
    this.assertLive();
    const layout = this.requireLayout();
    const out = new Float32Array(layoutSize(layout));
    for (const p of layout) {
      if (p.name === 'item_embedding') out.set(this.itemEmbedding, p.offset);
      else if (p.name === 'item_bias') out.set(this.itemBias, p.offset);
      else {
        const w = this.towerW.get(p.name);
        if (!w) throw new Error(`model has no variable for shared parameter "${p.name}"`);
        out.set(w, p.offset);
      }
    }
    return out;
  }

  /** Replaces the shared parameters (e.g. with a new global model); private embeddings are kept. */
  setSharedFlat(flat: Float32Array): void {
    const layout = this.requireLayout();
    if (flat.length !== layoutSize(layout)) throw new RangeError(`shared vector expected length ${layoutSize(layout)}, got ${flat.length}`);
    for (const p of layout) {
      const view = flat.subarray(p.offset, p.offset + p.size);
      if (p.name === 'item_embedding') this.itemEmbedding.set(view);
      else if (p.name === 'item_bias') this.itemBias.set(view);
      else {
        this.towerW.get(p.name)!.set(view);
        this.upload(p.name);
      }
    }
  }

  /** Writes the master copy of tower variable `name` into its tfjs variable (a copy of it). */
  private upload(name: string): void {
    const v = this.vars.get(name)!;
    const w = this.towerW.get(name)!;
    tf.tidy(() => v.assign(tf.tensor(w.slice(), v.shape)));
  }

  /** Forgets optimizer state (each federated round starts local training afresh). */
  resetOptimizer(): void {
    this.towerAdam.reset();
    this.adamItemEmb.reset();
    this.adamItemBias.reset();
    this.adamUserEmb.reset();
  }

  private requireLayout(): ParamSpec[] {
    if (!this.layout) throw new Error('this model has no shared layout (construct it with TwoTowerModel.forPolicy)');
    return this.layout;
  }

  private tower(prefix: 'user_tower' | 'item_tower', x: tf.Tensor2D): tf.Tensor2D {
    const v = (n: string) => this.vars.get(`${prefix}/${n}`)!;
    const h1 = tf.relu(tf.add(tf.matMul(x, v('dense1/kernel') as tf.Tensor2D), v('dense1/bias')));
    return tf.add(tf.matMul(h1, v('dense2/kernel') as tf.Tensor2D), v('dense2/bias')) as tf.Tensor2D;
  }

  /**
   * Loss and gradients of one batch of (user, item, label) examples; mean binary cross-entropy.
   * Gradients of the embedding tables are returned row-sparse (touched rows only).
   * `weights` (optional, per example) reweights each example's loss term (used for per-user clipping).
   */
  computeGradients(users: Uint32Array, items: Uint32Array, labels: Float32Array, weights?: Float32Array): Promise<BatchGradients> {
    return run(this.gradientReads(users, items, labels, weights));
  }

  *gradientReads(users: Uint32Array, items: Uint32Array, labels: Float32Array, weights?: Float32Array): Reads<BatchGradients> {
    this.assertLive();
    const B = users.length;
    if (items.length !== B || labels.length !== B) throw new RangeError(`batch arrays differ in length (users=${B}, items=${items.length}, labels=${labels.length})`);
    if (weights && weights.length !== B) throw new RangeError(`"weights" expected length ${B}, got ${weights.length}`);
    const { embeddingDim: d, userFeatureDim: du, itemFeatureDim: di } = this.shape;
    const euArr = gatherRows(this.userEmbedding, users, d);
    const eiArr = gatherRows(this.itemEmbedding, items, d);
    const biArr = gatherRows(this.itemBias, items, 1);
    const eu = tf.tensor2d(euArr, [B, d]);
    const ei = tf.tensor2d(eiArr, [B, d]);
    const bi = tf.tensor1d(biArr);
    const xu = this.shape.towers ? tf.tensor2d(gatherRows(this.userFeatures, users, du), [B, du]) : null;
    const xi = this.shape.towers ? tf.tensor2d(gatherRows(this.itemFeatures, items, di), [B, di]) : null;
    const y = tf.tensor1d(labels);
    const w = weights ? tf.tensor1d(weights) : null;
    const towerVars = this.shape.towers ? TOWER_NAMES.map((n) => this.vars.get(n)!) : [];
    try {
      const { value, grads } = tf.engine().gradients(
        () =>
          tf.tidy(() => {
            const U = xu ? tf.add(this.tower('user_tower', xu), eu) : eu;
            const I = xi ? tf.add(this.tower('item_tower', xi), ei) : ei;
            const logit = tf.add(tf.sum(tf.mul(U, I), 1), bi);
            // numerically stable BCE with logits: max(z,0) - z*y + log(1+exp(-|z|))
            const per = tf.add(tf.sub(tf.relu(logit), tf.mul(logit, y)), tf.log1p(tf.exp(tf.neg(tf.abs(logit)))));
            return (w ? tf.div(tf.sum(tf.mul(per, w)), B) : tf.mean(per)) as tf.Scalar;
          }),
        [eu, ei, bi, ...towerVars],
      );
      try {
        const [lossArr, gEu, gEi, gBi, ...gTower] = yield [value, ...grads];
        const tower = new Map<string, Float32Array>();
        gTower.forEach((g, k) => tower.set(TOWER_NAMES[k], g));
        return {
          loss: lossArr[0],
          tower,
          userEmbedding: segmentSumRows(users, gEu, d),
          itemEmbedding: segmentSumRows(items, gEi, d),
          itemBias: segmentSumRows(items, gBi, 1),
        };
      } finally {
        tf.dispose([value, ...grads]);
      }
    } finally {
      tf.dispose([eu, ei, bi, y]);
      if (xu) xu.dispose();
      if (xi) xi.dispose();
      if (w) w.dispose();
    }
  }

  /** Applies gradients: dense Adam on the towers, lazy Adam on touched embedding rows only. */
  applyGradients(g: Omit<BatchGradients, 'loss'>, opts: { updateUserEmbedding?: boolean; updateTowers?: boolean } = {}): void {
    this.assertLive();
    if (this.shape.towers && g.tower.size > 0 && opts.updateTowers !== false) {
      const params = TOWER_NAMES.map((name) => {
        const grad = g.tower.get(name);
        if (!grad) throw new RangeError(`no gradient for tower variable "${name}"`);
        return { name, w: this.towerW.get(name)!, g: grad };
      });
      this.towerAdam.apply(params);
      for (const name of TOWER_NAMES) this.upload(name);
    }
    this.adamItemEmb.apply(this.itemEmbedding, g.itemEmbedding);
    this.adamItemBias.apply(this.itemBias, g.itemBias);
    if (opts.updateUserEmbedding !== false) this.adamUserEmb.apply(this.userEmbedding, g.userEmbedding);
  }

  /**
   * One optimisation step; returns the batch loss. `updateTowers: false` keeps f and g fixed (local
   * personalisation of a federated model: only e_i, b_i and the private e_u adapt).
   */
  trainBatch(users: Uint32Array, items: Uint32Array, labels: Float32Array, opts: { updateTowers?: boolean } = {}): Promise<number> {
    return run(this.trainBatchReads(users, items, labels, opts));
  }

  *trainBatchReads(users: Uint32Array, items: Uint32Array, labels: Float32Array, opts: { updateTowers?: boolean } = {}): Reads<number> {
    const g = yield* this.gradientReads(users, items, labels);
    this.applyGradients(g, opts);
    return g.loss;
  }

  /** g(x_i) + e_i for every item, [numItems * d] (row-major), computed in chunks. */
  itemVectors(): Promise<Float32Array> {
    return run(this.itemVectorsReads());
  }

  *itemVectorsReads(): Reads<Float32Array> {
    this.assertLive();
    const { numItems, embeddingDim: d, itemFeatureDim: di } = this.shape;
    if (!this.shape.towers) return Float32Array.from(this.itemEmbedding);
    const out = new Float32Array(numItems * d);
    const chunk = 4096;
    for (let s = 0; s < numItems; s += chunk) {
      const n = Math.min(chunk, numItems - s);
      const vals = tf.tidy(() => {
        const x = tf.tensor2d(this.itemFeatures.subarray(s * di, (s + n) * di), [n, di]);
        return this.tower('item_tower', x);
      });
      try {
        const [v] = yield [vals];
        out.set(v, s * d);
      } finally {
        vals.dispose();
      }
    }
    for (let i = 0; i < out.length; i++) out[i] += this.itemEmbedding[i];
    return out;
  }

  /**
   * f(x_u) + e_u for users given by index (their stored features and private embedding) or, for a
   * cold-start user, by an encoded feature row alone (e_u = 0).
   */
  userVectors(users: Uint32Array | { features: Float32Array }): Promise<Float32Array> {
    return run(this.userVectorsReads(users));
  }

  *userVectorsReads(users: Uint32Array | { features: Float32Array }): Reads<Float32Array> {
    this.assertLive();
    const { embeddingDim: d, userFeatureDim: du } = this.shape;
    if ('features' in users) {
      if (users.features.length % du !== 0) throw new RangeError(`cold-start features must be a multiple of ${du} long, got ${users.features.length}`);
      const n = users.features.length / du;
      if (!this.shape.towers) return new Float32Array(n * d);
      const v = tf.tidy(() => this.tower('user_tower', tf.tensor2d(users.features, [n, du])));
      try {
        const [vals] = yield [v];
        return Float32Array.from(vals);
      } finally {
        v.dispose();
      }
    }
    const n = users.length;
    const out = gatherRows(this.userEmbedding, users, d);
    if (this.shape.towers) {
      const v = tf.tidy(() => this.tower('user_tower', tf.tensor2d(gatherRows(this.userFeatures, users, du), [n, du])));
      try {
        const [f] = yield [v];
        for (let i = 0; i < out.length; i++) out[i] += f[i];
      } finally {
        v.dispose();
      }
    }
    return out;
  }

  /** Scores (logits) of `userVecs` [n, d] against all items: [n, numItems], via one matMul per chunk. */
  scoreAll(userVecs: Float32Array, itemVecs: Float32Array): Promise<Float32Array> {
    return run(this.scoreAllReads(userVecs, itemVecs));
  }

  *scoreAllReads(userVecs: Float32Array, itemVecs: Float32Array): Reads<Float32Array> {
    const { numItems, embeddingDim: d } = this.shape;
    const n = userVecs.length / d;
    const res = tf.tidy(() => {
      const U = tf.tensor2d(userVecs, [n, d]);
      const I = tf.tensor2d(itemVecs, [numItems, d]);
      return tf.add(tf.matMul(U, I, false, true), tf.tensor1d(this.itemBias));
    });
    try {
      const [out] = yield [res];
      return out;
    } finally {
      res.dispose();
    }
  }

  /**
   * A tower variable by layout name, for code that computes per-user gradients by hand. Read-only
   * (typed as a Tensor): the weights change through applyGradients / setSharedFlat, which keep the
   * CPU master copy and the variable equal.
   */
  towerVariable(name: string): tf.Tensor {
    const v = this.vars.get(name);
    if (!v) throw new RangeError(`no tower variable "${name}"`);
    return v;
  }

  /** Encoded feature rows (read-only views). */
  features(): { users: Float32Array; items: Float32Array } {
    return { users: this.userFeatures, items: this.itemFeatures };
  }

  /** Applies a private-embedding gradient (row-sparse) with the lazy Adam of e_u. */
  applyUserEmbeddingGradient(g: SparseRows): void {
    this.adamUserEmb.apply(this.userEmbedding, g);
  }

  /** Tower variable values by layout name (copies of the CPU master copies; nothing is read from the backend). */
  towerValues(): Promise<Map<string, Float32Array>> {
    return run(this.towerValuesReads());
  }

  *towerValuesReads(): Reads<Map<string, Float32Array>> {
    this.assertLive();
    return new Map([...this.towerW].map(([name, w]) => [name, Float32Array.from(w)]));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('model was disposed');
  }
}
