/**
 * Local training of the two-tower model on a node's own interactions: the leave-one-out split,
 * example batches (each positive with K sampled negatives, mostly from the positive item's domain), the epoch
 * loop and progress reporting. Non-DP: DP-SGD (per-user clipping + noise) lives in dpsgd.ts.
 */
import type { NodeDataset } from '../data/dataset';
import { encodeItemFeatures, encodeUserFeatures, itemFeatureDim, userFeatureDim, type Vocabularies } from '../../shared/data/vocab';
import { Xoshiro128 } from '../../shared/util/prng';
import type { TwoTowerModel } from './twotower';
import { run, type Reads } from './reads';

export interface Positives {
  user: Uint32Array;
  item: Uint32Array;
}

export interface Split {
  /** training positives (every interaction except the held-out ones) */
  train: Positives;
  /** one held-out interaction per user with >= 2 interactions: the user's latest */
  test: Positives;
}

/**
 * Leave-one-out split (NCF protocol): each user's latest interaction (by timestamp; the dataset is
 * sorted by user, then timestamp) is held out if the user has at least two; users with one
 * interaction stay in training only. Held-out pairs never appear in `train` (a test checks it, also
 * for duplicate interactions of the same pair, which are all removed from training).
 */
export function leaveOneOutSplit(ds: NodeDataset): Split {
  const { user, item } = ds.interactions;
  const n = user.length;
  const trainU: number[] = [];
  const trainI: number[] = [];
  const testU: number[] = [];
  const testI: number[] = [];
  let s = 0;
  while (s < n) {
    let e = s;
    while (e < n && user[e] === user[s]) e++;
    if (e - s >= 2) {
      const held = item[e - 1];
      testU.push(user[s]);
      testI.push(held);
      for (let j = s; j < e - 1; j++) {
        if (item[j] === held) continue; // a repeat of the held-out pair would leak it
        trainU.push(user[j]);
        trainI.push(item[j]);
      }
    } else {
      trainU.push(user[s]);
      trainI.push(item[s]);
    }
    s = e;
  }
  return {
    train: { user: Uint32Array.from(trainU), item: Uint32Array.from(trainI) },
    test: { user: Uint32Array.from(testU), item: Uint32Array.from(testI) },
  };
}

/** All interactions as training positives (for a model that will serve, not be evaluated). */
export function allPositives(ds: NodeDataset): Positives {
  return { user: Uint32Array.from(ds.interactions.user), item: Uint32Array.from(ds.interactions.item) };
}

/** Encoded feature matrices of a dataset, row order = dataset order. */
export function encodeFeatures(ds: NodeDataset, vocab: Vocabularies): { users: Float32Array; items: Float32Array } {
  const du = userFeatureDim(vocab);
  const di = itemFeatureDim(vocab);
  const users = new Float32Array(ds.users.length * du);
  ds.users.forEach((u, k) => encodeUserFeatures(vocab, u, users, k * du));
  const items = new Float32Array(ds.items.length * di);
  ds.items.forEach((it, k) => encodeItemFeatures(vocab, it, items, k * di));
  return { users, items };
}

/** Item indices grouped by domain, and each item's domain index. */
/**
 * Where negatives come from: per domain (`byDomain`, indexed by the positive's domain) and, for the
 * one catalogue-wide negative, `all` (every catalogue item when absent).
 */
export interface NegativePools {
  byDomain: Map<string, Uint32Array>;
  domainOf: string[];
  all?: Uint32Array;
}

/**
 * The negative pools restricted to the items with own[i] = 1 (a party's own offers): each domain's
 * pool and the catalogue-wide pool keep only those items.
 */
export function ownOfferPools(domains: NegativePools, own: Uint8Array): NegativePools {
  if (own.length !== domains.domainOf.length) throw new RangeError(`"own" covers ${own.length} items, the catalogue has ${domains.domainOf.length}`);
  return {
    byDomain: new Map([...domains.byDomain].map(([d, l]) => [d, l.filter((i) => own[i] === 1)])),
    domainOf: domains.domainOf,
    all: Uint32Array.from(domains.domainOf.map((_, i) => i).filter((i) => own[i] === 1)),
  };
}

/**
 * Negative pools keyed by (provider, domain) of the positive: every negative of a positive comes from
 * the same provider's offers in the same domain (the catalogue-wide one from the whole catalogue).
 * For one party training on its own offers this equals ownOfferPools; on a pooled dataset it gives
 * each party's users the negatives their own node would draw.
 */
export function offerGroupPools(ds: NodeDataset): NegativePools {
  const domainOf = ds.items.map((it) => `${it.provider ?? ''}\u0000${it.domain}`);
  const lists = new Map<string, number[]>();
  domainOf.forEach((k, i) => {
    let l = lists.get(k);
    if (!l) lists.set(k, (l = []));
    l.push(i);
  });
  return { byDomain: new Map([...lists].map(([k, l]) => [k, Uint32Array.from(l)])), domainOf };
}

export function domainIndex(ds: NodeDataset): { byDomain: Map<string, Uint32Array>; domainOf: string[] } {
  const lists = new Map<string, number[]>();
  const domainOf: string[] = [];
  ds.items.forEach((it, k) => {
    domainOf.push(it.domain);
    if (!lists.has(it.domain)) lists.set(it.domain, []);
    lists.get(it.domain)!.push(k);
  });
  return { byDomain: new Map([...lists].map(([d, l]) => [d, Uint32Array.from(l)])), domainOf };
}

export interface TrainProgress {
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  loss: number;
  samplesPerSecond: number;
}

export interface TrainOptions {
  epochs: number;
  /** examples per batch (positives + negatives) */
  batchSize: number;
  negatives: number;
  rng: Xoshiro128;
  /** at most this many training steps in total (federated rounds train a fixed number of local steps) */
  maxSteps?: number;
  /** keep the feature towers f, g fixed (personalising a federated model) */
  freezeTowers?: boolean;
  onProgress?: (p: TrainProgress) => void;
  /** every example the trainer sees, for tests that check what reaches training */
  onExamples?: (users: Uint32Array, items: Uint32Array, labels: Float32Array) => void;
}

export interface TrainResult {
  epochs: number;
  steps: number;
  samples: number;
  seconds: number;
  samplesPerSecond: number;
  finalLoss: number;
  epochLosses: number[];
}

/**
 * Builds one batch: `count` positives from `order[start..]`, each followed by K negatives: K-1 from
 * the positive's domain and one from the whole catalogue (uniform; a negative may rarely be another
 * positive of the user, the usual approximation of sampled training).
 */
export function makeBatch(
  positives: Positives,
  order: Uint32Array,
  start: number,
  count: number,
  negatives: number,
  domains: NegativePools,
  rng: Xoshiro128,
): { users: Uint32Array; items: Uint32Array; labels: Float32Array } {
  const per = 1 + negatives;
  const users = new Uint32Array(count * per);
  const items = new Uint32Array(count * per);
  const labels = new Float32Array(count * per);
  for (let k = 0; k < count; k++) {
    const j = order[start + k];
    const u = positives.user[j];
    const i = positives.item[j];
    const o = k * per;
    users[o] = u;
    items[o] = i;
    labels[o] = 1;
    const pool = domains.byDomain.get(domains.domainOf[i])!;
    for (let q = 1; q <= negatives; q++) {
      users[o + q] = u;
      // the last negative comes from the whole catalogue, so the model also learns which domains a
      // party's users do not take up; the others are same-domain "hard" negatives
      if (q === negatives && negatives > 1) items[o + q] = domains.all ? domains.all[rng.nextInt(domains.all.length)] : rng.nextInt(domains.domainOf.length);
      else items[o + q] = pool[rng.nextInt(pool.length)];
    }
  }
  return { users, items, labels };
}

/**
 * Trains `opts.epochs` epochs (or `maxSteps` steps) of shuffled batches. One run of the reads.ts
 * driver the backend allows: synchronous reads throughout on cpu/wasm/tfjs-node, asynchronous on
 * webgpu in Node, with the same examples and updates either way.
 */
export function trainEpochs(model: TwoTowerModel, positives: Positives, domains: NegativePools, opts: TrainOptions): Promise<TrainResult> {
  return run(trainEpochsReads(model, positives, domains, opts));
}

export function* trainEpochsReads(model: TwoTowerModel, positives: Positives, domains: NegativePools, opts: TrainOptions): Reads<TrainResult> {
  const n = positives.user.length;
  if (n === 0) throw new RangeError('no training interactions');
  const perBatch = Math.max(1, Math.floor(opts.batchSize / (1 + opts.negatives)));
  const batches = Math.ceil(n / perBatch);
  const order = new Uint32Array(n);
  const epochLosses: number[] = [];
  let steps = 0;
  let samples = 0;
  let finalLoss = NaN;
  const t0 = process.hrtime.bigint();
  outer: for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    for (let j = 0; j < n; j++) order[j] = j;
    opts.rng.shuffle(order);
    let lossSum = 0;
    let lossCount = 0;
    for (let b = 0; b < batches; b++) {
      if (opts.maxSteps !== undefined && steps >= opts.maxSteps) break outer;
      const start = b * perBatch;
      const count = Math.min(perBatch, n - start);
      const batch = makeBatch(positives, order, start, count, opts.negatives, domains, opts.rng);
      opts.onExamples?.(batch.users, batch.items, batch.labels);
      const loss = yield* model.trainBatchReads(batch.users, batch.items, batch.labels, { updateTowers: !opts.freezeTowers });
      steps++;
      samples += batch.users.length;
      lossSum += loss;
      lossCount++;
      finalLoss = loss;
      if (opts.onProgress) {
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        opts.onProgress({ epoch, epochs: opts.epochs, batch: b + 1, batches, loss, samplesPerSecond: samples / Math.max(secs, 1e-9) });
      }
    }
    epochLosses.push(lossSum / Math.max(lossCount, 1));
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { epochs: epochLosses.length, steps, samples, seconds, samplesPerSecond: samples / Math.max(seconds, 1e-9), finalLoss, epochLosses };
}
