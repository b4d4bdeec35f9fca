/**
 * The pooled dataset and the sampled evaluation the demo relies on: pooling keeps every party's
 * users, interactions and leave-one-out split; the user sample is deterministic and nested (a
 * smaller sample is a prefix of a larger one, so the per-round sample is inside the final one);
 * and a model scored through the pooled dataset gets exactly the same figures as the same model
 * scored on the party's own dataset (same users, held-out items and negatives).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { generateSynthetic } from '../../participant-node/data/generate';
import { initNode } from '../../participant-node/identity';
import { importCsv, readGroundTruth } from '../../participant-node/data/import';
import { loadDataset } from '../../participant-node/data/store';
import type { NodeDataset } from '../../participant-node/data/dataset';
import { TwoTowerModel } from '../../participant-node/model/twotower';
import { encodeFeatures, leaveOneOutSplit } from '../../participant-node/model/train';
import { evaluatePooledParty, evaluateUsers, poolDatasets, repeatByParty, restrictPositives, sampleUsers } from '../../participant-node/model/pooled';
import { DEFAULT_VOCABULARIES } from '../../shared/data/vocab';

const PARTIES = ['platform', 'insurer'];

describe('pooled dataset and sampled evaluation', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-pooled-'));
  const ds: Record<string, NodeDataset> = {};

  beforeAll(async () => {
    await tf.setBackend('cpu');
    await generateSynthetic({ out: path.join(dir, 'gen'), seed: 5, scale: 'small', parties: PARTIES, usersPerParty: 60, itemsPerParty: 30 });
    for (const p of PARTIES) {
      const d = path.join(dir, p);
      await initNode(d, p);
      const g = (f: string) => path.join(dir, 'gen', p, f);
      await importCsv({ dataDir: d, users: g('users.csv'), items: g('items.csv'), interactions: g('interactions.csv') });
      ds[p] = loadDataset(d);
    }
  }, 60_000);
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('pooling keeps each party\'s users, interactions and leave-one-out split', () => {
    const pooled = poolDatasets([ds.platform, ds.insurer]);
    expect(pooled.parts).toEqual([
      { party: 'platform', offset: 0, count: ds.platform.users.length },
      { party: 'insurer', offset: ds.platform.users.length, count: ds.insurer.users.length },
    ]);
    expect(pooled.ds.users.length).toBe(ds.platform.users.length + ds.insurer.users.length);
    expect(new Set(pooled.ds.users.map((u) => u.id)).size).toBe(pooled.ds.users.length);
    const split = leaveOneOutSplit(pooled.ds);
    for (const part of pooled.parts) {
      const own = leaveOneOutSplit(ds[part.party]);
      const users = new Set(Array.from({ length: part.count }, (_, k) => k + part.offset));
      const test = restrictPositives(split.test, users);
      expect(Array.from(test.user, (u) => u - part.offset)).toEqual(Array.from(own.test.user));
      expect(Array.from(test.item)).toEqual(Array.from(own.test.item));
      const train = restrictPositives(split.train, users);
      expect(Array.from(train.user, (u) => u - part.offset)).toEqual(Array.from(own.train.user));
      expect(Array.from(train.item)).toEqual(Array.from(own.train.item));
    }
    // repeats: insurer pairs 3 times, platform pairs once
    const rep = repeatByParty(pooled, split.train, { platform: 1, insurer: 3 });
    const insurerUsers = new Set(Array.from({ length: pooled.parts[1].count }, (_, k) => k + pooled.parts[1].offset));
    const ins = restrictPositives(split.train, insurerUsers).user.length;
    expect(rep.user.length).toBe(split.train.user.length + 2 * ins);
    expect(() => repeatByParty(pooled, split.train, { insurer: 0 })).toThrow(RangeError);
  });

  test('a different catalogue or a party given twice is refused', () => {
    expect(() => poolDatasets([ds.platform, { ...ds.insurer, catalogueHash: '0'.repeat(64) }])).toThrow(/different catalogues/);
    expect(() => poolDatasets([ds.platform, ds.platform])).toThrow(/given twice/);
  });

  test('user samples are deterministic, distinct, sorted and nested', () => {
    const a = sampleUsers(1000, 100, 7);
    expect(Array.from(sampleUsers(1000, 100, 7))).toEqual(Array.from(a));
    expect(new Set(a).size).toBe(100);
    expect(Array.from(a)).toEqual(Array.from(a).sort((x, y) => x - y));
    expect(Array.from(a).every((u) => u < 1000)).toBe(true);
    const big = new Set(sampleUsers(1000, 400, 7));
    for (const u of a) expect(big.has(u)).toBe(true);
    expect(Array.from(sampleUsers(1000, 100, 8))).not.toEqual(Array.from(a));
    expect(Array.from(sampleUsers(5, 10, 1))).toEqual([0, 1, 2, 3, 4]);
    expect(() => sampleUsers(10, 0, 1)).toThrow(RangeError);
  });

  test('the same model scores the same through the pooled dataset as on the party\'s own', async () => {
    const pooled = poolDatasets([ds.platform, ds.insurer]);
    const modelCfg = { architecture: 'two-tower-v1' as const, embeddingDim: 8, hiddenDim: 8, numItems: pooled.ds.items.length };
    const big = TwoTowerModel.forPolicy(modelCfg, DEFAULT_VOCABULARIES, pooled.ds.users.length, { learningRate: 0.01, initSeed: 3 });
    const small = TwoTowerModel.forPolicy(modelCfg, DEFAULT_VOCABULARIES, ds.insurer.users.length, { learningRate: 0.01, initSeed: 4 });
    try {
      const fb = encodeFeatures(pooled.ds, DEFAULT_VOCABULARIES);
      big.setFeatures(fb.users, fb.items);
      const fs2 = encodeFeatures(ds.insurer, DEFAULT_VOCABULARIES);
      small.setFeatures(fs2.users, fs2.items);
      // the insurer's rows of the pooled model = the party model
      small.setSharedFlat(await big.getSharedFlat());
      const d = small.shape.embeddingDim;
      const off = pooled.parts[1].offset;
      small.userEmbedding.set(big.userEmbedding.subarray(off * d, (off + ds.insurer.users.length) * d));
      const truth = await readGroundTruth(path.join(dir, 'gen', 'insurer', 'ground_truth.csv'), ds.insurer);
      const users = sampleUsers(ds.insurer.users.length, 40, 11);
      const own = await evaluateUsers(small, ds.insurer, leaveOneOutSplit(ds.insurer), users, { seed: 11, truth });
      const viaPool = await evaluatePooledParty(big, pooled, leaveOneOutSplit(pooled.ds), 'insurer', users, { seed: 11, truth });
      expect(viaPool.loo.metrics.count).toBe(own.loo.metrics.count);
      expect(viaPool.loo.metrics['hr@10']).toBeCloseTo(own.loo.metrics['hr@10'], 10);
      expect(viaPool.loo.metrics['ndcg@10']).toBeCloseTo(own.loo.metrics['ndcg@10'], 10);
      expect(viaPool.crossDomain!.overall['hr@10']).toBeCloseTo(own.crossDomain!.overall['hr@10'], 10);
      expect(viaPool.crossDomain!.overall.count).toBe(own.crossDomain!.overall.count);
      expect(viaPool.totalUsers).toBe(ds.insurer.users.length);
      // a user outside the party is refused
      await expect(evaluatePooledParty(big, pooled, leaveOneOutSplit(pooled.ds), 'insurer', Uint32Array.of(ds.insurer.users.length), { seed: 1 })).rejects.toThrow(RangeError);
    } finally {
      big.dispose();
      small.dispose();
    }
  });
});
