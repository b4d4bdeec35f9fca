/**
 * `npm run bench -- own-data`: how much MORE OF ITS OWN DATA would lift the insurer's HR@10 on its own
 * offers? A measured upper bound on what any federation partner's data can add there (issue 5's
 * criterion "federated beats local-only on the insurer's HR@10 by more than twice the seed spread").
 *
 * The argument. The other parties' users are distinct people who take up OTHER providers' offers
 * (generate.ts), so their data can teach the insurer's model only what is shared: the feature
 * towers (how features and interests map to taste, how topic tags and price bands map to appeal).
 * More of the insurer's own users teach all of that too, from the same generator, plus the insurer's
 * own item rows: extra users of the insurer are at least as informative for its own offers as the
 * same number of a partner's users, without DP noise. So if k times the insurer's own users lifts its
 * HR@10 by x, a federation with partners holding (k - 1) times its users cannot be expected to lift
 * it by much more than x (and the DP federation, which must also serve the other domains through the
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
 * exactly the default world's; the 20k row equals the ceiling bench's local_only row).
 * Prints one JSON line per (seed, N); the summary reports the lift over 20k per seed.
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

function sizes(): number[] {
  const s = process.env.FEDBRIDGE_BENCH_OWN_SIZES ?? '20000,40000,80000';
  const out = s.split(',').map((x) => Number(x.trim()));
  const base = SCALES.default.usersPerParty;
  if (out.some((x) => !Number.isSafeInteger(x) || x < base)) throw new Error(`FEDBRIDGE_BENCH_OWN_SIZES expects comma-separated user counts of at least ${base}, got "${s}"`);
  return [...new Set(out)].sort((a, b) => a - b);
}

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
  const ns = sizes();
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
        const t0 = Date.now();
        const r = await localOnlyFigures(ds, split, PARTY, seed, cases, evalSeed);
        const hr = r.metrics['hr@10'];
        if (n === base) at20k = hr;
        ctx.record(`${PARTY}_own_users_${n}_hr_at_10`, Math.round(hr * 10000) / 10000, 'HR@10', {
          seed,
          party: PARTY,
          trainedUsers: n,
          trainingInteractions: split.train.user.length,
          evaluatedUsers: base,
          heldOut: cases.test.user.length,
          ndcgAt10: Math.round(r.metrics['ndcg@10'] * 10000) / 10000,
          seconds: Math.round((Date.now() - t0) / 100) / 10,
          protocol: "the first 20,000 users' leave-one-out cases, 100 negatives from the same provider and domain (the default world's)",
        });
        row.push(`${n} users ${hr.toFixed(4)}${n === base ? '' : ` (${hr - at20k >= 0 ? '+' : ''}${(hr - at20k).toFixed(4)})`}`);
      }
      ctx.log(`seed ${seed} insurer HR@10 on the first ${base} users' cases, trained on: ${row.join(', ')}`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
