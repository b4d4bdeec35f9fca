/**
 * Offline evaluation (DESIGN §5).
 *
 * - Leave-one-out HR@10 and NDCG@10 with 100 sampled negatives (the NCF protocol of He et al.
 *   2017). Negatives are drawn uniformly from the held-out item's own CANDIDATE GROUP: the offers of
 *   the same provider in the same domain (items.csv `provider` and `domain`), excluding every item
 *   the user interacted with. So a model cannot score by telling courses from insurance products,
 *   nor by telling one insurer's catalogue from another's: a party recommends its own offers in its
 *   own domain (it does not sell a competitor's policies), and a node whose users only ever took up
 *   its own insurer's products would otherwise win every case in which a negative is the other
 *   insurer's product, a shortcut that says nothing about ranking. When the catalogue has no
 *   provider column, or a group has fewer than 101 items, the pool is the whole domain.
 * - Full-catalogue recall@50: the held-out item's rank among every item the user has not
 *   interacted with in training.
 * - Per domain (of the held-out item), and a popularity baseline (items ranked by their interaction
 *   count in this party's training data, ties broken at random) under the identical protocol.
 * - Cross-domain quality against hidden ground truth (items of other domains a user would take up):
 *   each ground-truth item ranked against 100 negatives from its domain.
 *
 * Rank = number of candidates scoring higher than the target OR EQUAL to it (a tie is never won by
 * the target: a constant or diverged model must not look perfect; a NaN score, target or
 * candidate, counts against the target too); hit@K iff rank < K; NDCG = 1/log2(rank + 2).
 * Sampling of negatives uses a seeded PRNG so two models are compared on the same candidates.
 */
import type { NodeDataset } from '../data/dataset';
import { Xoshiro128 } from '../../shared/util/prng';
import type { TwoTowerModel } from './twotower';
import { domainIndex, offerGroupPools, type Positives, type Split } from './train';
import { run, type Reads } from './reads';

export interface RankMetrics {
  'hr@10': number;
  'ndcg@10': number;
  count: number;
}

export interface EvalReport {
  metrics: RankMetrics & { 'recall@50': number };
  byDomain: Record<string, RankMetrics & { 'recall@50': number }>;
  baseline: { popularity: RankMetrics & { 'recall@50': number; byDomain: Record<string, RankMetrics & { 'recall@50': number }> } };
}

export interface CrossDomainReport {
  overall: RankMetrics;
  byDomain: Record<string, RankMetrics>;
  baseline: { popularity: RankMetrics };
}

/** scores[c] for candidate items of one user (a computation that may read tensors, reads.ts) */
export type Scorer = (userIndices: Uint32Array) => Reads<{ scores: Float32Array; stride: number }>;

class Acc {
  hr = 0;
  ndcg = 0;
  recall = 0;
  n = 0;
  add(rank: number, fullRank?: number): void {
    this.n++;
    if (rank < 10) {
      this.hr++;
      this.ndcg += 1 / Math.log2(rank + 2);
    }
    if (fullRank !== undefined && fullRank < 50) this.recall++;
  }
  rank(): RankMetrics {
    return { 'hr@10': this.n ? this.hr / this.n : 0, 'ndcg@10': this.n ? this.ndcg / this.n : 0, count: this.n };
  }
  withRecall(): RankMetrics & { 'recall@50': number } {
    return { ...this.rank(), 'recall@50': this.n ? this.recall / this.n : 0 };
  }
}

function userItemSets(p: Positives): Map<number, Set<number>> {
  const m = new Map<number, Set<number>>();
  for (let j = 0; j < p.user.length; j++) {
    let s = m.get(p.user[j]);
    if (!s) m.set(p.user[j], (s = new Set()));
    s.add(p.item[j]);
  }
  return m;
}

/**
 * k distinct negatives from `pool` (the target's domain) not in `exclude`. When the domain has at
 * most k eligible items (small test catalogues) all of them are used: the rank is then among fewer
 * candidates, but never against items of another domain.
 */
function sampleNegatives(pool: Uint32Array, exclude: Set<number>, k: number, rng: Xoshiro128): Uint32Array {
  // at least pool.length - exclude.size items are eligible: only a pool that may have <= k needs the scan
  if (pool.length - exclude.size <= k) {
    const eligible = Array.from(pool).filter((i) => !exclude.has(i));
    if (eligible.length <= k) return Uint32Array.from(eligible);
  }
  const out = new Uint32Array(k);
  const chosen = new Set<number>();
  let n = 0;
  while (n < k) {
    const c = pool[rng.nextInt(pool.length)];
    if (exclude.has(c) || chosen.has(c)) continue;
    chosen.add(c);
    out[n++] = c;
  }
  return out;
}

/** Popularity scores: training interaction counts plus a random tie-breaker in [0, 0.5). */
export function popularityScores(train: Positives, numItems: number, seed: number): Float32Array {
  const s = new Float32Array(numItems);
  for (let j = 0; j < train.item.length; j++) s[train.item[j]] += 1;
  const rng = new Xoshiro128(seed ^ 0x5bd1e995);
  for (let i = 0; i < numItems; i++) s[i] += rng.nextFloat() * 0.5;
  return s;
}

/** A scorer backed by the model: one matMul of the users' vectors against every item. */
export function* modelScorerReads(model: TwoTowerModel): Reads<Scorer> {
  const itemVecs = yield* model.itemVectorsReads();
  return function* (users) {
    const userVecs = yield* model.userVectorsReads(users);
    return { scores: yield* model.scoreAllReads(userVecs, itemVecs), stride: model.shape.numItems };
  };
}

export function popularityScorer(pop: Float32Array): Scorer {
  return function* (users) {
    const out = new Float32Array(users.length * pop.length);
    for (let k = 0; k < users.length; k++) out.set(pop, k * pop.length);
    return { scores: out, stride: pop.length };
  };
}

interface Case {
  user: number;
  target: number;
  negatives: Uint32Array;
}

/**
 * The negative pool of every item: the items of the same provider and domain when the catalogue
 * names providers and that group has more than 100 items, else every item of the item's domain.
 */
export function candidatePools(ds: NodeDataset): Uint32Array[] {
  const { byDomain, domainOf } = domainIndex(ds);
  const groups = offerGroupPools(ds);
  return ds.items.map((it, k) => {
    const g = groups.byDomain.get(groups.domainOf[k])!;
    return it.provider && g.length > 100 ? g : byDomain.get(domainOf[k])!;
  });
}

function buildCases(test: Positives, seen: Map<number, Set<number>>, poolOf: Uint32Array[], rng: Xoshiro128): Case[] {
  const cases: Case[] = [];
  for (let j = 0; j < test.user.length; j++) {
    const u = test.user[j];
    const t = test.item[j];
    const exclude = new Set(seen.get(u) ?? []);
    exclude.add(t);
    cases.push({ user: u, target: t, negatives: sampleNegatives(poolOf[t], exclude, 100, rng) });
  }
  return cases;
}

function* runCases(
  cases: Case[],
  scorer: Scorer,
  domainOf: string[],
  trainSeen: Map<number, Set<number>> | null,
): Reads<{ all: Acc; byDomain: Map<string, Acc> }> {
  const all = new Acc();
  const byDomain = new Map<string, Acc>();
  const chunk = 256;
  for (let s = 0; s < cases.length; s += chunk) {
    const part = cases.slice(s, s + chunk);
    // one score row per distinct user of the chunk (cross-domain cases repeat a user per ground-truth item)
    const rowOf = new Map<number, number>();
    for (const c of part) if (!rowOf.has(c.user)) rowOf.set(c.user, rowOf.size);
    const { scores, stride } = yield* scorer(Uint32Array.from(rowOf.keys()));
    part.forEach((c) => {
      const k = rowOf.get(c.user)!;
      const row = scores.subarray(k * stride, (k + 1) * stride);
      const ts = row[c.target];
      let rank = 0;
      // !(x < ts): ties and NaN count against the target
      for (const neg of c.negatives) if (!(row[neg] < ts)) rank++;
      let full: number | undefined;
      if (trainSeen) {
        const seen = trainSeen.get(c.user);
        full = 0;
        for (let i = 0; i < stride; i++) if (i !== c.target && !(row[i] < ts) && !(seen && seen.has(i))) full++;
      }
      all.add(rank, full);
      const d = domainOf[c.target];
      if (!byDomain.has(d)) byDomain.set(d, new Acc());
      byDomain.get(d)!.add(rank, full);
    });
  }
  return { all, byDomain };
}

/** Leave-one-out evaluation of `model` (and the popularity baseline) on the split's held-out items. */
export function evaluateModel(model: TwoTowerModel, ds: NodeDataset, split: Split, seed = 1): Promise<EvalReport> {
  return run(evaluateModelReads(model, ds, split, seed));
}

type LooMetrics = RankMetrics & { 'recall@50': number; byDomain: Record<string, RankMetrics & { 'recall@50': number }> };

/** The leave-one-out cases of a split for a seed, and a runner that ranks any scorer on exactly them. */
function looCases(ds: NodeDataset, split: Split, seed: number): (scorer: Scorer) => Reads<LooMetrics> {
  const { domainOf } = domainIndex(ds);
  const trainSeen = userItemSets(split.train);
  const cases = buildCases(split.test, trainSeen, candidatePools(ds), new Xoshiro128(seed));
  return function* (scorer) {
    const m = yield* runCases(cases, scorer, domainOf, trainSeen);
    return { ...m.all.withRecall(), byDomain: Object.fromEntries([...m.byDomain].sort().map(([d, a]) => [d, a.withRecall()])) };
  };
}

export function* evaluateModelReads(model: TwoTowerModel, ds: NodeDataset, split: Split, seed = 1): Reads<EvalReport> {
  const rank = looCases(ds, split, seed);
  const { byDomain, ...metrics } = yield* rank(yield* modelScorerReads(model));
  const popularity = yield* rank(popularityScorer(popularityScores(split.train, ds.items.length, seed)));
  return { metrics, byDomain, baseline: { popularity } };
}

/**
 * Leave-one-out evaluation of any scorer (e.g. an oracle built from the generator's hidden variables)
 * on exactly the candidates evaluateModel draws for the same split and seed.
 */
export function evaluateScorer(ds: NodeDataset, split: Split, scorer: Scorer, seed = 1): Promise<LooMetrics> {
  return run(looCases(ds, split, seed)(scorer));
}

/**
 * A scorer from per-user weights in another item order: weightsOf(u)[itemRow[i]] scores the
 * dataset's item i (e.g. oracle weights in the generator's catalogue order).
 */
export function weightsScorer(itemRow: ArrayLike<number>, weightsOf: (user: number) => ArrayLike<number>): Scorer {
  return function* (users) {
    const stride = itemRow.length;
    const scores = new Float32Array(users.length * stride);
    users.forEach((u, r) => {
      const w = weightsOf(u);
      for (let i = 0; i < stride; i++) scores[r * stride + i] = w[itemRow[i]];
    });
    return { scores, stride };
  };
}

/**
 * Cross-domain quality: every (user, item) of the hidden ground truth, ranked against 100 negatives
 * from the item's candidate group (same provider and domain, see candidatePools) that the user did
 * not interact with and that are not in the user's ground truth.
 */
export function evaluateCrossDomain(model: TwoTowerModel, ds: NodeDataset, split: Split, truth: Positives, seed = 2): Promise<CrossDomainReport> {
  return run(evaluateCrossDomainReads(model, ds, split, truth, seed));
}

export function* evaluateCrossDomainReads(model: TwoTowerModel, ds: NodeDataset, split: Split, truth: Positives, seed = 2): Reads<CrossDomainReport> {
  const { domainOf } = domainIndex(ds);
  const poolOf = candidatePools(ds);
  const seen = userItemSets({ user: Uint32Array.from([...split.train.user, ...split.test.user]), item: Uint32Array.from([...split.train.item, ...split.test.item]) });
  const truthSets = userItemSets(truth);
  const rng = new Xoshiro128(seed);
  const cases: Case[] = [];
  for (let j = 0; j < truth.user.length; j++) {
    const u = truth.user[j];
    const exclude = new Set([...(seen.get(u) ?? []), ...(truthSets.get(u) ?? [])]);
    cases.push({ user: u, target: truth.item[j], negatives: sampleNegatives(poolOf[truth.item[j]], exclude, 100, rng) });
  }
  const m = yield* runCases(cases, yield* modelScorerReads(model), domainOf, null);
  const p = yield* runCases(cases, popularityScorer(popularityScores(split.train, ds.items.length, seed)), domainOf, null);
  return {
    overall: m.all.rank(),
    byDomain: Object.fromEntries([...m.byDomain].sort().map(([d, a]) => [d, a.rank()])),
    baseline: { popularity: p.all.rank() },
  };
}
