/**
 * `npm run bench -- own-data`: how much MORE OF ITS OWN DATA would lift the insurer's HR@10 on its own
 * offers? A generous estimate of what any federation partner's data can add there (issue 5's
 * criterion "federated beats local-only on the insurer's HR@10 by more than twice the seed spread").
 * An estimate, not a bound: the value of own data is measured with a finite tuning grid, so the true
 * value may be a little higher; the argument below is about information, not a theorem.
 *
 * The argument. The other parties' users are distinct people who take up OTHER providers' offers
 * (generate.ts), so their data can teach the insurer's model only what is shared: the feature
 * towers (how features and interests map to taste, how topic tags and price bands map to appeal).
 * More of the insurer's own users teach all of that too, from the same generator, plus the insurer's
 * own item rows: extra users of the insurer are at least as informative for its own offers as the
 * same number of a partner's users (who also come from other regions: each insurer has its own
 * regional footprint), without DP noise. So if k times the insurer's own users lifts its HR@10 by x,
 * a federation with partners holding (k - 1) times its users cannot be expected to lift it by much
 * more than x (and the DP federation, which must also serve the other domains through the
 * same towers, by less).
 *
 * The measurement. For each seed (FEDBRIDGE_BENCH_SEEDS, default 1,2,3) the demo's world is generated
 * with the insurer at the largest size (FEDBRIDGE_BENCH_OWN_SIZES, default 20000,40000,80000; the
 * platform and insurer2 keep the default 20k). The generator draws a party's users in sequence from
 * its own stream, so the world with N insurer users is exactly the first N users (and their
 * interactions) of the largest one, and the catalogue is the same. For each N the demo's local-only
 * model (bench/ceiling.ts localOnlyFigures: own offers, DEMO_PARAMS.local) is trained on the first N
 * users and evaluated on the leave-one-out cases of the first 20,000 users: the same users, held-out
 * items and negatives at every N (the cases are drawn in user order from the same seed, so they are
 * exactly the default world's; the 20k row at the demo's setting equals the ceiling bench's
 * local_only row).
 * The demo's setting (3 epochs, lr 0.005) was tuned for 20k users; more users at the same epochs mean
 * more steps, and at 40k it scores lower than at 20k (measured). So every N is trained over a grid
 * (FEDBRIDGE_BENCH_OWN_EPOCHS, default 1,2,3; FEDBRIDGE_BENCH_OWN_LR, default 0.005,0.002) and the
 * best setting is chosen ON THE EVALUATION CASES: optimistic for every N alike, which is what an upper
 * bound wants. One JSON line per (seed, N, setting), one `_best` line per (seed, N).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { BenchContext } from './lib';
import { generateSynthetic, SCALES } from '../participant-node/data/generate';
import { importCsv } from '../participant-node/data/import';
import { loadDataset } from '../participant-node/data/store';
import type { NodeDataset } from '../participant-node/data/dataset';
import { initNode } from '../participant-node/identity';
import { selectBackend } from '../participant-node/model/backend';
import { leaveOneOutSplit, type Split } from '../participant-node/model/train';
import { DEMO_PARTIES } from '../bin/demo';
import { localOnlyFigures, seeds } from './ceiling';

const PARTY = 'insurer';

function list(name: string, fallback: string, check: (x: number) => boolean): number[] {
  const s = process.env[name] ?? fallback;
  const out = s.split(',').map((x) => Number(x.trim()));
  if (out.length === 0 || out.some((x) => !check(x))) throw new Error(`${name} expects a comma-separated list, got "${s}"`);
  return [...new Set(out)];
}

const PROTOCOL = "the first 20,000 users' leave-one-out cases, 100 negatives from the same provider and domain (the default world's)";
const round4 = (x: number) => Math.round(x * 10000) / 10000;

/** The first `n` users of `ds` and their interactions (a prefix: interactions are sorted by user). */
export function firstUsers(ds: NodeDataset, n: number): NodeDataset {
  const { user, item, timestamp } = ds.interactions;
  let end = 0;
  while (end < user.length && user[end] < n) end++;
  return { ...ds, users: ds.users.slice(0, n), interactions: { user: user.subarray(0, end), item: item.subarray(0, end), timestamp: timestamp.subarray(0, end) } };
}

/** `split` with only the held-out cases of users below `n` (training interactions unchanged). */
export function testedUsersBelow(split: Split, n: number): Split {
  const keep = Array.from(split.test.user, (u) => u < n);
  return { ...split, test: { user: split.test.user.filter((_, j) => keep[j]), item: split.test.item.filter((_, j) => keep[j]) } };
}

export async function run(ctx: BenchContext): Promise<void> {
  await selectBackend(tf as never, 'wasm');
  const base = SCALES.default.usersPerParty;
  // the default world's size is always measured: the other sizes are compared with it
  const ns = [...new Set([base, ...list('FEDBRIDGE_BENCH_OWN_SIZES', '20000,40000,80000', (x) => Number.isSafeInteger(x) && x >= base)])].sort((a, b) => a - b);
  const grid = { epochs: list('FEDBRIDGE_BENCH_OWN_EPOCHS', '1,2,3', (x) => Number.isSafeInteger(x) && x >= 1 && x <= 100), lrs: list('FEDBRIDGE_BENCH_OWN_LR', '0.005,0.002', (x) => x > 0 && x < 1) };
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-bench-own-data-'));
  try {
    for (const seed of seeds()) {
      const out = path.join(root, `s${seed}`);
      await generateSynthetic({ out, seed, scale: 'default', parties: DEMO_PARTIES, partyUsers: { [PARTY]: ns[ns.length - 1] } });
      const dir = path.join(root, `s${seed}-${PARTY}`);
      await initNode(dir, PARTY);
      const f = (x: string) => path.join(out, PARTY, x);
      await importCsv({ dataDir: dir, users: f('users.csv'), items: f('items.csv'), interactions: f('interactions.csv') });
      const all = loadDataset(dir);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(out, { recursive: true, force: true });
      const evalSeed = seed + 1000;
      const row: string[] = [];
      let at20k = NaN;
      for (const n of ns) {
        const ds = firstUsers(all, n);
        const split = leaveOneOutSplit(ds);
        const cases = testedUsersBelow(split, base);
        const params = { seed, party: PARTY, trainedUsers: n, trainingInteractions: split.train.user.length, evaluatedUsers: base, heldOut: cases.test.user.length, protocol: PROTOCOL };
        let best: { hr: number; ndcg: number; epochs: number; learningRate: number } | null = null;
        for (const learningRate of grid.lrs) {
          for (const epochs of grid.epochs) {
            const t0 = Date.now();
            const r = await localOnlyFigures(ds, split, PARTY, seed, cases, evalSeed, { epochs, learningRate });
            const hr = r.metrics['hr@10'];
            const ndcg = r.metrics['ndcg@10'];
            ctx.record(`${PARTY}_own_users_${n}_e${epochs}_lr${learningRate}_hr_at_10`, round4(hr), 'HR@10', { ...params, epochs, learningRate, ndcgAt10: round4(ndcg), seconds: Math.round((Date.now() - t0) / 100) / 10 });
            if (!best || hr > best.hr) best = { hr, ndcg, epochs, learningRate };
          }
        }
        ctx.record(`${PARTY}_own_users_${n}_best_hr_at_10`, round4(best!.hr), 'HR@10', { ...params, epochs: best!.epochs, learningRate: best!.learningRate, ndcgAt10: round4(best!.ndcg), chosen: 'the best of the grid on these evaluation cases' });
        if (n === base) at20k = best!.hr;
        row.push(`${n} users ${best!.hr.toFixed(4)} (e${best!.epochs}, lr ${best!.learningRate})${n === base ? '' : ` ${best!.hr - at20k >= 0 ? '+' : ''}${(best!.hr - at20k).toFixed(4)}`}`);
      }
      ctx.log(`seed ${seed} insurer HR@10 on the first ${base} users' cases, best of the grid, trained on: ${row.join(', ')}`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
