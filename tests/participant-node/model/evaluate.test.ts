/**
 * The evaluation's negatives (participant-node/model/evaluate.ts): a held-out item is ranked only
 * against items of the same provider and domain (its candidate group), never against another
 * provider's offers, which a node whose users only take up its own offers would trivially rank
 * low. Without a provider column, or with a group of <= 100 items, the pool is the whole domain.
 */
import { candidatePools, evaluateScorer, type Scorer } from '../../../participant-node/model/evaluate';
import { leaveOneOutSplit } from '../../../participant-node/model/train';
import type { NodeDataset } from '../../../participant-node/data/dataset';

function dataset(items: Array<{ provider?: string; domain: string }>): NodeDataset {
  return {
    party: 'insurer',
    items: items.map((it, k) => ({ id: `i${k}`, domain: it.domain, provider: it.provider, priceBand: 'mid', topics: ['health'] })) as never,
    catalogueHash: '00'.repeat(32),
    users: [],
    interactions: { user: new Uint32Array(0), item: new Uint32Array(0), timestamp: new Float64Array(0) },
  };
}

test('pools are the same provider and domain when the group has more than 100 items', () => {
  const items = [
    ...Array.from({ length: 150 }, () => ({ provider: 'insurer', domain: 'insurance' })),
    ...Array.from({ length: 120 }, () => ({ provider: 'insurer2', domain: 'insurance' })),
    ...Array.from({ length: 50 }, () => ({ provider: 'insurer', domain: 'finance' })),
    ...Array.from({ length: 60 }, () => ({ provider: 'insurer2', domain: 'finance' })),
  ];
  const pools = candidatePools(dataset(items));
  const set = (k: number) => new Set(pools[k]);
  // insurance: per provider
  expect(set(0).size).toBe(150);
  for (const i of set(0)) expect(items[i]).toEqual({ provider: 'insurer', domain: 'insurance' });
  expect(set(200).size).toBe(120);
  for (const i of set(200)) expect(items[i].provider).toBe('insurer2');
  // finance groups are too small (50, 60): the whole domain (110 items), both providers
  expect(set(275).size).toBe(110);
  for (const i of set(275)) expect(items[i].domain).toBe('finance');
});

test('without a provider column the pool is the whole domain', () => {
  const items = [...Array.from({ length: 130 }, () => ({ domain: 'course' })), ...Array.from({ length: 140 }, () => ({ domain: 'insurance' }))];
  const pools = candidatePools(dataset(items));
  expect(pools[0].length).toBe(130);
  expect(pools[200].length).toBe(140);
});

describe('ranking: a tie or a NaN score is never a hit', () => {
  // 4 users, 150 items of one provider and domain; each user took up items u, u+1, u+2 (the last held out)
  const ds: NodeDataset = {
    ...dataset(Array.from({ length: 150 }, () => ({ provider: 'insurer', domain: 'insurance' }))),
    users: Array.from({ length: 4 }, (_, u) => ({ id: `u${u}`, ageBand: '25-34', region: 'north', lifeStage: 'student', interests: [] })) as never,
    interactions: {
      user: Uint32Array.from([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]),
      item: Uint32Array.from([0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5]),
      timestamp: Float64Array.from([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]),
    },
  };
  const split = leaveOneOutSplit(ds);
  const scorer = (score: (user: number, item: number) => number): Scorer =>
    function* (users) {
      const scores = new Float32Array(users.length * 150);
      users.forEach((u, r) => {
        for (let i = 0; i < 150; i++) scores[r * 150 + i] = score(u, i);
      });
      return { scores, stride: 150 };
    };

  test('a constant model and a diverged (NaN) model score 0, not a perfect 1; the held-out item alone on top scores 1', async () => {
    const held = (u: number) => u + 2;
    expect(await evaluateScorer(ds, split, scorer(() => 0.5))).toMatchObject({ 'hr@10': 0, 'ndcg@10': 0, 'recall@50': 0, count: 4 });
    expect(await evaluateScorer(ds, split, scorer(() => NaN))).toMatchObject({ 'hr@10': 0, 'ndcg@10': 0, 'recall@50': 0 });
    expect(await evaluateScorer(ds, split, scorer((u, i) => (i === held(u) ? 1 : 0)))).toMatchObject({ 'hr@10': 1, 'ndcg@10': 1, 'recall@50': 1 });
  });
});
