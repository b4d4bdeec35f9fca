/**
 * Property: any valid users/items/interactions written as CSV by a CSV library (ids with commas,
 * quotes, pipes, non-ASCII) import and load back exactly, with interactions sorted by
 * (user, timestamp, item) and exact repeats removed. Catches any hand-rolled split(',') parsing.
 * (A newline, like any control character, is refused in an id: import.test.ts, where a quoted one
 * is reported at the line the record ends on.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { stringify } from 'csv-stringify/sync';
import { importCsv } from '../../../participant-node/data/import';
import { loadDataset } from '../../../participant-node/data/store';
import { initNode } from '../../../participant-node/identity';
import { catalogueHash } from '../../../shared/data/catalogue';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { DEFAULT_VOCABULARIES as V, type Domain } from '../../../shared/data/vocab';
import { tempDir } from './helpers';

let root: string;
beforeAll(async () => {
  await sodiumReady();
  root = tempDir('import-prop');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const idChars = fc.constantFrom(...'abcXYZ019 ,"|;\'é漢-_'.split(''));
const rawId = fc.array(idChars, { minLength: 1, maxLength: 8 }).map((cs) => cs.join(''));
const id = rawId.filter((s) => s.trim() === s && s.length > 0);

const user = fc.record({
  id,
  ageBand: fc.constantFrom(...V.ageBand),
  region: fc.constantFrom(...V.region),
  lifeStage: fc.constantFrom(...V.lifeStage),
  interests: fc.subarray(V.topics, { maxLength: 4 }),
});
const item = fc.record({
  id,
  provider: fc.constantFrom('platform', 'insurer', 'a,b "c"'),
  domain: fc.constantFrom(...(V.domain as Domain[])),
  priceBand: fc.constantFrom(...V.priceBand),
  topics: fc.subarray(V.topics, { minLength: 1, maxLength: 3 }),
});

const scenario = fc
  .record({
    users: fc.uniqueArray(user, { minLength: 1, maxLength: 12, selector: (u) => u.id }),
    items: fc.uniqueArray(item, { minLength: 1, maxLength: 12, selector: (i) => i.id }),
    picks: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 20 })), { minLength: 1, maxLength: 40 }),
    crlf: fc.boolean(),
  })
  .map((s) => ({
    ...s,
    // timestamps from a tiny range so ties and exact repeats occur
    interactions: s.picks.map(([u, i, t]) => ({ user: u % s.users.length, item: i % s.items.length, ts: 1_700_000_000 + t })),
  }));

let run = 0;

describe('import round trip (property)', () => {
  it('imports CSV-library output exactly', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const dir = path.join(root, `case-${run++}`);
        fs.mkdirSync(dir);
        await initNode(path.join(dir, 'node'), 'platform');
        const opt = { record_delimiter: s.crlf ? 'windows' : 'unix' } as const;
        const write = (name: string, rows: string[][]) => {
          const f = path.join(dir, name);
          fs.writeFileSync(f, stringify(rows, opt));
          return f;
        };
        const report = await importCsv({
          dataDir: path.join(dir, 'node'),
          users: write('u.csv', [['user_id', 'age_band', 'region', 'life_stage', 'interests'], ...s.users.map((u) => [u.id, u.ageBand, u.region, u.lifeStage, u.interests.join('|')])]),
          items: write('i.csv', [['item_id', 'provider', 'domain', 'price_band', 'topics'], ...s.items.map((i) => [i.id, i.provider, i.domain, i.priceBand, i.topics.join('|')])]),
          interactions: write('x.csv', [['user_id', 'item_id', 'timestamp'], ...s.interactions.map((x) => [s.users[x.user].id, s.items[x.item].id, String(x.ts)])]),
        });
        const ds = loadDataset(path.join(dir, 'node'));
        expect(ds.users).toEqual(s.users);
        expect(ds.items).toEqual(s.items);
        expect(ds.catalogueHash).toBe(catalogueHash(s.items));
        const expected = [...new Set(s.interactions.map((x) => `${x.user}:${x.ts}:${x.item}`))]
          .map((k) => k.split(':').map(Number))
          .sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
        const got = Array.from(ds.interactions.user, (u, k) => [u, ds.interactions.timestamp[k], ds.interactions.item[k]]);
        expect(got).toEqual(expected);
        expect(report.counts.interactions.duplicatesRemoved).toBe(s.interactions.length - expected.length);
        fs.rmSync(dir, { recursive: true, force: true });
      }),
      { numRuns: 25, seed: 20261123 },
    );
  });
});
