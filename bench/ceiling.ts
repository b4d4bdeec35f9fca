/**
 * `npm run bench -- ceiling`: how much could ANY model gain on a party's own offers? (issue 5's
 * criterion "federated beats local-only on the insurer's HR@10".)
 *
 * For each seed (FEDBRIDGE_BENCH_SEEDS, default 1,2,3) it generates the demo's data world
 * (`--scale default`, platform + insurer + insurer2) and, for the insurer and the platform, scores
 * the same leave-one-out cases (every user with a held-out take-up, 100 negatives from the same
 * provider and domain: the demo's protocol, evaluate.ts) with:
 *   - popularity:     training interaction counts (the demo's baseline);
 *   - local_only:     the demo's local-only model (DEMO_PARAMS.local, own offers, wasm);
 *   - cell_oracle:    the generator's own take-up weights (generate.ts takeUpWeights) with the user's
 *                     topic mixture replaced by the MEAN mixture of the party's users in the same
 *                     (age band, life stage, region) cell, computed from the hidden truth of all of
 *                     them: the best any model can do from those three features with unlimited data
 *                     (it ignores the declared interests and the user's own history; the mean includes
 *                     the user's own taste, one of about 200 in a cell);
 *   - posterior_oracle: what a model with UNLIMITED population data could do (generate.ts
 *                     posteriorTakeUpWeights): the posterior predictive given the user's features,
 *                     declared interests and own training take-ups, the prior being the hidden tastes
 *                     of the other generated users (all parties) in the same cell. A feasible
 *                     predictor: a lower bound on that ceiling, which knows the generator's model
 *                     family (so its lead over local_only mixes the value of population data with
 *                     the two-tower model's misspecification, see below);
 *   - oracle:         the take-up weights with the user's own hidden topic mixture: the Bayes ceiling;
 *   - pooled_insurers, pooled_all: what other parties' RAW data add to the product's model (no DP,
 *                     no federation: the ceiling of what federation could bring): one model trained
 *                     as the demo's pooled column is (DEMO_PARAMS.pooled, each party's interactions
 *                     repeated as often as in its local-only training, negatives from the target's
 *                     provider and domain) on insurer + insurer2, and on all three parties; evaluated
 *                     on the party's every user with evaluatePooledParty (the demo's protocol: same
 *                     held-out items, negatives drawn for the pooled rows). pooled_insurers for the
 *                     insurer only (the platform has no second platform).
 * The posterior row's lead over local_only is NOT a bound on what other parties' data add: most of
 * it is the two-tower model's misspecification, which more of the party's own users repair as well
 * (session 6); the pooled rows measure what the other parties' data add to this model.
 * Each party's users are distinct people, so other parties' data can only teach a party's model the
 * population-level mapping from features to taste (what the cell oracle knows, and more through
 * interests), never a user's individual taste. The gap oracle - local_only that individual taste
 * leaves is closed by nobody else's data.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { BenchContext } from './lib';
import { parse } from 'csv-parse/sync';
import { generateSynthetic, posteriorTakeUpWeights, takeUpWeights, type LatentCatalogue, type LatentUser } from '../participant-node/data/generate';
import { importCsv } from '../participant-node/data/import';
import { loadDataset } from '../participant-node/data/store';
import { initNode } from '../participant-node/identity';
import { selectBackend } from '../participant-node/model/backend';
import { TwoTowerModel } from '../participant-node/model/twotower';
import { domainIndex, encodeFeatures, leaveOneOutSplit, ownOfferPools, trainEpochs, type Split } from '../participant-node/model/train';
import { evaluateModel, evaluateScorer, weightsScorer, type EvalReport } from '../participant-node/model/evaluate';
import { offerRanges, ownOfferMask } from '../shared/fl/offers';
import { DEFAULT_VOCABULARIES as V } from '../shared/data/vocab';
import { Xoshiro128 } from '../shared/util/prng';
import { DEMO_PARAMS, DEMO_PARTIES, demoPooledOptions } from '../bin/demo';
import { evaluatePooledParty, poolDatasets, trainPooled } from '../participant-node/model/pooled';
import type { NodeDataset } from '../participant-node/data/dataset';

const PARTIES = ['insurer', 'platform'];

export function seeds(): number[] {
  const s = process.env.FEDBRIDGE_BENCH_SEEDS ?? '1,2,3';
  const out = s.split(',').map((x) => Number(x.trim()));
  if (out.some((x) => !Number.isSafeInteger(x) || x < 0)) throw new Error(`FEDBRIDGE_BENCH_SEEDS expects comma-separated non-negative integers, got "${s}"`);
  return out;
}

export async function run(ctx: BenchContext): Promise<void> {
  await selectBackend(tf as never, 'wasm');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-bench-ceiling-'));
  try {
    for (const seed of seeds()) {
      const out = path.join(root, `s${seed}`);
      let cat: LatentCatalogue | undefined;
      const latent = new Map<string, LatentUser>(); // by user id (ids carry the party)
      await generateSynthetic({ out, seed, scale: 'default', parties: DEMO_PARTIES, latent: { catalogue: (c) => (cat = c), user: (u) => latent.set(u.id, u) } });
      const catalogue = cat!;
      // prior samples of taste per (age band, life stage, region) cell: every generated user's hidden mixture
      const pools = new Map<string, Float64Array[]>();
      for (const party of DEMO_PARTIES) {
        const rows = parse(fs.readFileSync(path.join(out, party, 'users.csv')), { columns: true }) as Array<Record<string, string>>;
        for (const r of rows) {
          const key = `${r.age_band}|${r.life_stage}|${r.region}`;
          (pools.get(key) ?? pools.set(key, []).get(key)!).push(latent.get(r.user_id)!.theta);
        }
      }
      const datasets: Record<string, NodeDataset> = {};
      for (const party of DEMO_PARTIES) {
        const dir = path.join(root, `s${seed}-${party}`);
        await initNode(dir, party);
        const f = (x: string) => path.join(out, party, x);
        await importCsv({ dataDir: dir, users: f('users.csv'), items: f('items.csv'), interactions: f('interactions.csv') });
        datasets[party] = loadDataset(dir);
        fs.rmSync(dir, { recursive: true, force: true });
      }
      const pooledRows = await pooledFigures(seed, datasets);
      for (const party of PARTIES) {
        const ds = datasets[party];
        const split = leaveOneOutSplit(ds);
        const evalSeed = seed + 1000;
        const params = { seed, party, users: ds.users.length, heldOut: split.test.user.length, protocol: 'leave-one-out, 100 negatives from the same provider and domain' };

        const local = await localOnlyFigures(ds, split, party, seed, split, evalSeed);

        // oracles from the hidden truth, on the same cases
        const user = ds.users.map((u) => latent.get(u.id)!);
        const catalogueRow = new Map(catalogue.ids.map((id, k) => [id, k]));
        const itemRow = ds.items.map((it) => catalogueRow.get(it.id)!);
        const cellOf = (k: number) => `${ds.users[k].ageBand}|${ds.users[k].lifeStage}|${ds.users[k].region}`;
        const cellMean = new Map<string, Float64Array>();
        const cellCount = new Map<string, number>();
        ds.users.forEach((_, k) => {
          const c = cellOf(k);
          const m = cellMean.get(c) ?? cellMean.set(c, new Float64Array(V.topics.length)).get(c)!;
          user[k].theta.forEach((x, t) => (m[t] += x));
          cellCount.set(c, (cellCount.get(c) ?? 0) + 1);
        });
        for (const [c, m] of cellMean) m.forEach((x, t) => (m[t] = x / cellCount.get(c)!));
        const oracle = (thetaOf: (k: number) => Float64Array) => weightsScorer(itemRow, (k) => takeUpWeights(catalogue, party, thetaOf(k), user[k].lifeStage));
        const history = new Map<number, number[]>();
        for (let j = 0; j < split.train.user.length; j++) {
          const k = split.train.user[j];
          (history.get(k) ?? history.set(k, []).get(k)!).push(itemRow[split.train.item[j]]);
        }
        // unlimited population data: the posterior given features, interests and the user's own
        // training take-ups, over OTHER users' hidden tastes in the same cell
        const posterior = weightsScorer(itemRow, (k) => {
          const prior = pools.get(cellOf(k))!.filter((th) => th !== user[k].theta);
          const interests = ds.users[k].interests.map((t) => V.topics.indexOf(t));
          return posteriorTakeUpWeights(catalogue, party, prior, user[k].lifeStage, interests, history.get(k) ?? []);
        });
        const post = await evaluateScorer(ds, split, posterior, evalSeed);
        const cell = await evaluateScorer(ds, split, oracle((k) => cellMean.get(cellOf(k))!), evalSeed);
        const full = await evaluateScorer(ds, split, oracle((k) => user[k].theta), evalSeed);
        const figures: Array<[string, number]> = [
          ['popularity', local.baseline.popularity['hr@10']],
          ['local_only', local.metrics['hr@10']],
          ['cell_oracle', cell['hr@10']],
          ['posterior_oracle', post['hr@10']],
          ['oracle', full['hr@10']],
        ];
        for (const [name, v] of pooledRows[party] ?? []) figures.push([name, v]);
        for (const [name, v] of figures) ctx.record(`${party}_${name}_hr_at_10`, Math.round(v * 10000) / 10000, 'HR@10', params);
        ctx.log(`seed ${seed} ${party}: ${figures.map(([n, v]) => `${n} ${v.toFixed(4)}`).join(', ')}`);
      }
      fs.rmSync(out, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/**
 * The demo's local-only model for `party` (own offers only, DEMO_PARAMS.local unless `over` sets the
 * epochs or learning rate; initialisation and shuffles seeded by `seed`) trained on `train`'s
 * training interactions, evaluated on `evaluate`'s held-out items (bench/own-data.ts evaluates a
 * larger world's model on the smaller world's cases).
 */
export async function localOnlyFigures(
  ds: NodeDataset,
  train: Split,
  party: string,
  seed: number,
  evaluate: Split,
  evalSeed: number,
  over: { epochs?: number; learningRate?: number } = {},
): Promise<EvalReport> {
  const L = { ...DEMO_PARAMS.local, ...(over.learningRate === undefined ? {} : { learningRate: over.learningRate }) };
  const own = ownOfferMask(offerRanges(ds.items), party, ds.items.length);
  const keep = Array.from(train.train.item, (i) => own[i] === 1);
  const positives = { user: train.train.user.filter((_, j) => keep[j]), item: train.train.item.filter((_, j) => keep[j]) };
  const model = TwoTowerModel.forPolicy({ architecture: 'two-tower-v1', embeddingDim: DEMO_PARAMS.embeddingDim, hiddenDim: DEMO_PARAMS.hiddenDim, numItems: ds.items.length }, V, ds.users.length, { learningRate: L.learningRate, initSeed: seed });
  try {
    const enc = encodeFeatures(ds, V);
    model.setFeatures(enc.users, enc.items);
    const epochs = over.epochs ?? (party === 'platform' ? L.platformEpochs : L.insurerEpochs);
    await trainEpochs(model, positives, ownOfferPools(domainIndex(ds), own), { epochs, batchSize: L.batchSize, negatives: L.negatives, rng: new Xoshiro128(seed ^ 0x2545f491) });
    return await evaluateModel(model, ds, evaluate, evalSeed);
  } finally {
    model.dispose();
  }
}

/**
 * HR@10 of the demo's pooled model (DEMO_PARAMS.pooled, non-DP) trained on insurer + insurer2 and
 * on all parties, for each party of PARTIES on every one of its users: [row name, HR@10] per party.
 */
async function pooledFigures(seed: number, datasets: Record<string, NodeDataset>): Promise<Record<string, Array<[string, number]>>> {
  const out: Record<string, Array<[string, number]>> = {};
  const sets: Array<[string, string[]]> = [
    ['pooled_insurers', ['insurer', 'insurer2']],
    ['pooled_all', DEMO_PARTIES],
  ];
  for (const [name, parties] of sets) {
    const pooled = poolDatasets(parties.map((p) => datasets[p]));
    const model = { architecture: 'two-tower-v1' as const, embeddingDim: DEMO_PARAMS.embeddingDim, hiddenDim: DEMO_PARAMS.hiddenDim, numItems: pooled.ds.items.length };
    const pt = await trainPooled(pooled, demoPooledOptions(parties, model, V, seed, true));
    try {
      for (const party of PARTIES.filter((p) => parties.includes(p))) {
        const users = Uint32Array.from({ length: datasets[party].users.length }, (_, k) => k); // every user
        const r = await evaluatePooledParty(pt.model, pooled, pt.split, party, users, { seed: seed + 1000 });
        (out[party] ??= []).push([name, r.loo.metrics['hr@10']]);
      }
    } finally {
      pt.model.dispose();
    }
  }
  return out;
}
