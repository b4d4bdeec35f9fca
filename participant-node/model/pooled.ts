/**
 * The pooled ceiling and sampled evaluation (DESIGN §5: "each party alone, federated, and pooled").
 *
 * Pooled training puts every party's users and interactions into ONE NodeDataset (the shared
 * catalogue is identical on every node, checked by its hash), trains one model on the union without
 * DP, and evaluates it per party on that party's held-out items and hidden ground truth. No real
 * federation can do this (it would need the raw data in one place); it is the upper bound the
 * federated model is compared with.
 *
 * Evaluation on a sample: at default scale, ranking every held-out item against the full catalogue
 * for every user of every party takes minutes per model, so the demo may evaluate on a fixed,
 * seeded sample of each party's users. The sample is a deterministic function of (party's users,
 * sample size, seed), so local, federated and pooled models are scored on exactly the same users,
 * held-out items and sampled negatives (evaluate.ts draws the negatives from a seeded PRNG in case
 * order; the cases of a party's users are in the same order in the pooled dataset).
 *
 * The sampling PRNG is the project's xoshiro128 (evaluation only: nothing here reaches the wire or
 * the privacy accounting).
 */
import { UserError } from '../../shared/cli/errors';
import type { Vocabularies } from '../../shared/data/vocab';
import type { ModelConfig } from '../../shared/model/layout';
import { Xoshiro128 } from '../../shared/util/prng';
import type { NodeDataset } from '../data/dataset';
import { evaluateCrossDomain, evaluateModel, type CrossDomainReport, type EvalReport } from './evaluate';
import { TwoTowerModel } from './twotower';
import { domainIndex, encodeFeatures, leaveOneOutSplit, offerGroupPools, trainEpochs, type Positives, type Split, type TrainResult } from './train';

export interface PooledPart {
  party: string;
  /** index of the party's first user in the pooled dataset */
  offset: number;
  /** number of the party's users */
  count: number;
}

export interface PooledDataset {
  ds: NodeDataset;
  parts: PooledPart[];
}

/** User id in the pooled dataset: the party name keeps ids of different parties apart. */
export function pooledUserId(party: string, id: string): string {
  return `${party}/${id}`;
}

/**
 * Pools datasets over the same catalogue: users are concatenated in the given order (party k's user
 * j becomes user offset_k + j), interactions likewise, so the pooled interactions stay sorted by
 * (user, timestamp) and each user's leave-one-out split is the same as in its own party's dataset.
 */
export function poolDatasets(datasets: readonly NodeDataset[]): PooledDataset {
  if (datasets.length === 0) throw new RangeError('poolDatasets: need at least one dataset');
  const first = datasets[0];
  const names = new Set<string>();
  for (const d of datasets) {
    if (d.catalogueHash !== first.catalogueHash) throw new UserError(`cannot pool "${d.party}" with "${first.party}": different catalogues (${d.catalogueHash.slice(0, 16)}… vs ${first.catalogueHash.slice(0, 16)}…)`);
    if (names.has(d.party)) throw new RangeError(`poolDatasets: party "${d.party}" given twice`);
    names.add(d.party);
  }
  const parts: PooledPart[] = [];
  let users = 0;
  let inter = 0;
  for (const d of datasets) {
    parts.push({ party: d.party, offset: users, count: d.users.length });
    users += d.users.length;
    inter += d.interactions.user.length;
  }
  const user = new Uint32Array(inter);
  const item = new Uint32Array(inter);
  const timestamp = new Float64Array(inter);
  let at = 0;
  datasets.forEach((d, k) => {
    const off = parts[k].offset;
    const n = d.interactions.user.length;
    for (let j = 0; j < n; j++) user[at + j] = d.interactions.user[j] + off;
    item.set(d.interactions.item, at);
    timestamp.set(d.interactions.timestamp, at);
    at += n;
  });
  return {
    ds: {
      party: datasets.map((d) => d.party).join('+'),
      items: first.items,
      catalogueHash: first.catalogueHash,
      users: datasets.flatMap((d) => d.users.map((u) => ({ ...u, id: pooledUserId(d.party, u.id) }))),
      interactions: { user, item, timestamp },
    },
    parts,
  };
}

export function pooledPart(p: PooledDataset, party: string): PooledPart {
  const part = p.parts.find((x) => x.party === party);
  if (!part) throw new RangeError(`party "${party}" is not in the pooled dataset (${p.parts.map((x) => x.party).join(', ')})`);
  return part;
}

export interface PooledTrainOptions {
  model: ModelConfig;
  vocabularies: Vocabularies;
  epochs: number;
  batchSize: number;
  negatives: number;
  learningRate: number;
  seed: number;
  /** cap on the number of optimizer steps (time budget) */
  maxSteps?: number;
  /**
   * per party: how many times each of its training interactions appears in one epoch (default 1).
   * The demo passes each party's local-only epoch count, so every interaction is seen as often as
   * in its party's local training, plus everyone else's data: a fair ceiling, not an under-trained one.
   */
  repeats?: Record<string, number>;
  /** negatives from the positive's provider and domain (offerGroupPools), as parties training on their own offers draw them */
  offerNegatives?: boolean;
}

/** The training pairs of `train` with party k's pairs repeated repeats[k] times (user order kept). */
export function repeatByParty(p: PooledDataset, train: Positives, repeats: Record<string, number>): Positives {
  const times = (u: number) => {
    const part = p.parts.find((x) => u >= x.offset && u < x.offset + x.count)!;
    const r = repeats[part.party] ?? 1;
    if (!Number.isSafeInteger(r) || r < 1) throw new RangeError(`repeats.${part.party} must be a positive integer, got ${r}`);
    return r;
  };
  let n = 0;
  for (let j = 0; j < train.user.length; j++) n += times(train.user[j]);
  const user = new Uint32Array(n);
  const item = new Uint32Array(n);
  let at = 0;
  for (let j = 0; j < train.user.length; j++) {
    for (let r = times(train.user[j]); r > 0; r--) {
      user[at] = train.user[j];
      item[at++] = train.item[j];
    }
  }
  return { user, item };
}

/**
 * Trains one model (plain, non-DP) on the pooled training interactions (every user's latest
 * interaction held out). The tfjs backend must already be selected; the caller disposes the model.
 */
export async function trainPooled(p: PooledDataset, o: PooledTrainOptions): Promise<{ model: TwoTowerModel; split: Split; train: TrainResult }> {
  const split = leaveOneOutSplit(p.ds);
  const model = TwoTowerModel.forPolicy(o.model, o.vocabularies, p.ds.users.length, { learningRate: o.learningRate, initSeed: o.seed });
  try {
    const f = encodeFeatures(p.ds, o.vocabularies);
    model.setFeatures(f.users, f.items);
    const positives = o.repeats ? repeatByParty(p, split.train, o.repeats) : split.train;
    const train = await trainEpochs(model, positives, o.offerNegatives ? offerGroupPools(p.ds) : domainIndex(p.ds), {
      epochs: o.epochs,
      batchSize: o.batchSize,
      negatives: o.negatives,
      rng: new Xoshiro128(o.seed ^ 0x2545f491),
      maxSteps: o.maxSteps,
    });
    return { model, split, train };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * A fixed sample of user indices in [0, numUsers): `size` distinct users chosen by a partial
 * Fisher–Yates shuffle seeded with `seed`, returned sorted; every user when size >= numUsers.
 */
export function sampleUsers(numUsers: number, size: number, seed: number): Uint32Array {
  if (!Number.isSafeInteger(numUsers) || numUsers < 0) throw new RangeError(`numUsers must be a non-negative integer, got ${numUsers}`);
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`sample size must be a positive integer, got ${size}`);
  if (size >= numUsers) return Uint32Array.from({ length: numUsers }, (_, k) => k);
  const idx = Uint32Array.from({ length: numUsers }, (_, k) => k);
  const rng = new Xoshiro128(seed ^ 0x9e3779b9);
  for (let k = 0; k < size; k++) {
    const j = k + rng.nextInt(numUsers - k);
    const t = idx[k];
    idx[k] = idx[j];
    idx[j] = t;
  }
  return idx.slice(0, size).sort();
}

/** The pairs of `p` whose user is in `users` (shifted by `offset` first), in their original order. */
export function restrictPositives(p: Positives, users: ReadonlySet<number>, offset = 0): Positives {
  const us: number[] = [];
  const is: number[] = [];
  for (let j = 0; j < p.user.length; j++) {
    const u = p.user[j] + offset;
    if (users.has(u)) {
      us.push(u);
      is.push(p.item[j]);
    }
  }
  return { user: Uint32Array.from(us), item: Uint32Array.from(is) };
}

export interface PartyEvaluation {
  /** leave-one-out HR@10 / NDCG@10 / recall@50 overall and per domain of the held-out item */
  loo: EvalReport;
  /** hidden cross-domain ground truth (when given) */
  crossDomain?: CrossDomainReport;
  /** users evaluated (after sampling), of `totalUsers` */
  users: number;
  totalUsers: number;
}

/**
 * Evaluates `model` (whose user rows are `ds`'s users) on the users `users` only: their held-out
 * items (leave-one-out, `split.test`) and, when `truth` is given (user indices of `ds`), their hidden
 * cross-domain take-ups. Same seed and same user set = same candidates for every model.
 */
export async function evaluateUsers(
  model: TwoTowerModel,
  ds: NodeDataset,
  split: Split,
  users: Uint32Array,
  o: { seed: number; truth?: Positives; totalUsers?: number },
): Promise<PartyEvaluation> {
  const set = new Set<number>(users);
  const test = restrictPositives(split.test, set);
  if (test.user.length === 0) throw new UserError(`none of the ${users.length} evaluated users of "${ds.party}" has a held-out interaction (users need at least 2 interactions)`);
  const loo = await evaluateModel(model, ds, { train: split.train, test }, o.seed);
  const out: PartyEvaluation = { loo, users: users.length, totalUsers: o.totalUsers ?? ds.users.length };
  if (o.truth) {
    const truth = restrictPositives(o.truth, set);
    if (truth.user.length > 0) out.crossDomain = await evaluateCrossDomain(model, ds, { train: split.train, test }, truth, o.seed + 1);
  }
  return out;
}

/**
 * Evaluates the pooled model for one party: the party's sampled users (indices in the party's own
 * dataset) are shifted to their pooled rows; `truth` is in the party's own user indices.
 */
export async function evaluatePooledParty(
  model: TwoTowerModel,
  p: PooledDataset,
  split: Split,
  party: string,
  partyUsers: Uint32Array,
  o: { seed: number; truth?: Positives },
): Promise<PartyEvaluation> {
  const part = pooledPart(p, party);
  for (const u of partyUsers) if (u >= part.count) throw new RangeError(`user index ${u} is outside party "${party}" (${part.count} users)`);
  const shifted = Uint32Array.from(partyUsers, (u) => u + part.offset);
  const truth = o.truth ? { user: Uint32Array.from(o.truth.user, (u) => u + part.offset), item: o.truth.item } : undefined;
  return evaluateUsers(model, p.ds, split, shifted, { seed: o.seed, truth, totalUsers: part.count });
}

/**
 * Evaluates the model saved in `dataDir/model` (local or federated; it must have been trained with
 * holdout 'last') on the party's users `users`. The tfjs backend must already be selected.
 */
export async function evaluateSavedModel(dataDir: string, users: Uint32Array, o: { seed: number; groundTruth?: string }): Promise<PartyEvaluation & { training: Record<string, unknown> }> {
  const [{ loadDataset }, { loadModel }, { readGroundTruth }] = await Promise.all([import('../data/store'), import('./store'), import('../data/import')]);
  const ds = loadDataset(dataDir);
  const { model, meta, userIds } = loadModel(dataDir);
  try {
    if (meta.catalogueHash !== ds.catalogueHash) throw new UserError(`the model in ${dataDir} was trained on another catalogue than the imported one`, 1);
    if (userIds.length !== ds.users.length || userIds.some((id, k) => ds.users[k].id !== id)) throw new UserError(`the model in ${dataDir} does not belong to the imported users`, 1);
    if (meta.training.holdout !== 'last') throw new UserError(`the model in ${dataDir} was trained on every interaction (holdout ${String(meta.training.holdout)}); a leave-one-out evaluation would score items it has seen`, 1);
    const f = encodeFeatures(ds, meta.vocabularies);
    model.setFeatures(f.users, f.items);
    const truth = o.groundTruth ? await readGroundTruth(o.groundTruth, ds) : undefined;
    return { ...(await evaluateUsers(model, ds, leaveOneOutSplit(ds), users, { seed: o.seed, truth })), training: meta.training };
  } finally {
    model.dispose();
  }
}
