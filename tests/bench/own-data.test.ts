/**
 * bench/own-data.ts rests on one property: the first N users of a larger insurer world, imported,
 * are exactly the N-user world (users, interactions, catalogue), and its leave-one-out cases
 * restricted to those users are exactly the N-user world's cases (same held-out items, same sampled
 * negatives), so every size is scored on the same cases.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { firstUsers, testedUsersBelow } from '../../bench/own-data';
import { generateSynthetic } from '../../participant-node/data/generate';
import { importCsv } from '../../participant-node/data/import';
import { loadDataset } from '../../participant-node/data/store';
import { initNode } from '../../participant-node/identity';
import { evaluateScorer, weightsScorer } from '../../participant-node/model/evaluate';
import { leaveOneOutSplit } from '../../participant-node/model/train';
import { sodiumReady } from '../../shared/crypto/sodium';

describe('own-data bench: a larger world, cut to its first N users, is the N-user world', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-own-data-test-'));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  async function world(name: string, insurerUsers: number) {
    const out = path.join(root, name);
    await generateSynthetic({ out, seed: 5, scale: 'small', parties: ['platform', 'insurer', 'insurer2'], usersPerParty: 60, itemsPerParty: 40, partyUsers: { insurer: insurerUsers } });
    const dir = path.join(root, `${name}-node`);
    await initNode(dir, 'insurer');
    const f = (x: string) => path.join(out, 'insurer', x);
    await importCsv({ dataDir: dir, users: f('users.csv'), items: f('items.csv'), interactions: f('interactions.csv') });
    return loadDataset(dir);
  }

  test('same users, interactions, catalogue and leave-one-out cases', async () => {
    await sodiumReady();
    const small = await world('small', 60);
    const big = await world('big', 150);
    expect(big.users.length).toBe(150);
    const cut = firstUsers(big, 60);
    expect(cut.users).toEqual(small.users);
    expect(cut.catalogueHash).toBe(small.catalogueHash);
    expect(Array.from(cut.interactions.user)).toEqual(Array.from(small.interactions.user));
    expect(Array.from(cut.interactions.item)).toEqual(Array.from(small.interactions.item));
    expect(Array.from(cut.interactions.timestamp)).toEqual(Array.from(small.interactions.timestamp));

    // the bench trains on the first N users and scores the first 60 users' cases
    const cases = testedUsersBelow(leaveOneOutSplit(firstUsers(big, 150)), 60);
    const own = leaveOneOutSplit(small);
    expect(Array.from(cases.test.user)).toEqual(Array.from(own.test.user));
    expect(Array.from(cases.test.item)).toEqual(Array.from(own.test.item));
    expect(cases.train.user.length).toBeGreaterThan(own.train.user.length); // trained on more users
    // same sampled negatives: a scorer that ranks items by index gives identical metrics only if the
    // candidate sets are the same; seeded users' weights make it user-specific
    const scorer = weightsScorer(
      small.items.map((_, i) => i),
      (u) => small.items.map((_, i) => Math.sin(i * 12.9898 + u * 78.233)),
    );
    // the evaluation sees the big world's dataset (its extra users are never scored)
    expect(await evaluateScorer(firstUsers(big, 150), cases, scorer, 1005)).toEqual(await evaluateScorer(small, own, scorer, 1005));
  });
});
