/**
 * The generator's hidden variables for analyses (participant-node/data/generate.ts: the `latent`
 * observer, takeUpWeights, posteriorTakeUpWeights; used by bench/ceiling.ts): observing them changes
 * no output byte, and the oracles built from them really are the generator's interaction model
 * (they rank the held-out take-ups far better than popularity, and only with the right user's taste).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateSynthetic, posteriorTakeUpWeights, takeUpWeights, type LatentCatalogue, type LatentUser } from '../../../participant-node/data/generate';
import { importCsv } from '../../../participant-node/data/import';
import { loadDataset } from '../../../participant-node/data/store';
import { initNode } from '../../../participant-node/identity';
import { leaveOneOutSplit } from '../../../participant-node/model/train';
import { evaluateScorer, popularityScorer, popularityScores, weightsScorer } from '../../../participant-node/model/evaluate';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { DEFAULT_VOCABULARIES as V } from '../../../shared/data/vocab';
import { dirFingerprint, readCsv, tempDir } from './helpers';
import * as tf from '@tensorflow/tfjs';
import { defaultBackendDeps, selectBackend } from '../../../participant-node/model/backend';

let root: string;
beforeAll(async () => {
  await sodiumReady();
  // evaluateScorer runs through reads.ts, which asks the selected backend how it reads
  await selectBackend(tf, 'wasm', { ...defaultBackendDeps, log: () => {} });
  root = tempDir('latent');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

test('the latent observer sees the catalogue and every user, and changes no output byte', async () => {
  const opts = { seed: 4, scale: 'small' as const, parties: ['platform', 'insurer'] };
  const plain = await generateSynthetic({ ...opts, out: path.join(root, 'plain') });
  let cat: LatentCatalogue | undefined;
  const seen: Record<string, number[]> = { platform: [], insurer: [] };
  const observed = await generateSynthetic({
    ...opts,
    out: path.join(root, 'observed'),
    latent: {
      catalogue: (c) => (cat = c),
      user: ({ party, index: u, id, theta, lifeStage: life }) => {
        seen[party].push(u);
        expect(id).toBe(`${party}-u${String(u + 1).padStart(7, '0')}`);
        expect(theta.length).toBe(V.topics.length);
        expect(theta.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
        expect(life).toBeGreaterThanOrEqual(0);
        expect(life).toBeLessThan(V.lifeStage.length);
      },
    },
  });
  expect(dirFingerprint(path.join(root, 'observed'))).toBe(dirFingerprint(path.join(root, 'plain')));
  expect(observed).toEqual(plain);
  expect(cat!.popularity.length).toBe(plain.catalogue.numItems);
  for (const p of ['platform', 'insurer']) expect(seen[p]).toEqual(Array.from({ length: plain.counts[p].users }, (_, u) => u));
  const items = readCsv(path.join(root, 'plain', 'insurer', 'items.csv'));
  items.forEach((it, k) => {
    expect(cat!.ids[k]).toBe(it.item_id);
    expect(cat!.provider[k]).toBe(it.provider);
    expect(V.priceBand[cat!.priceBand[k]]).toBe(it.price_band);
    expect(Array.from(cat!.topics[k], (t) => V.topics[t]).join('|')).toBe(it.topics);
  });
});

test('posteriorTakeUpWeights with the user\'s own taste as the only prior sample ranks like takeUpWeights', async () => {
  let cat: LatentCatalogue | undefined;
  const thetas: Float64Array[] = [];
  await generateSynthetic({ out: path.join(root, 'one'), seed: 5, scale: 'small', parties: ['platform', 'insurer'], latent: { catalogue: (c) => (cat = c), user: (u) => u.party === 'insurer' && (thetas[u.index] = u.theta) } });
  const a = takeUpWeights(cat!, 'insurer', thetas[0], 3);
  const b = posteriorTakeUpWeights(cat!, 'insurer', [thetas[0]], 3, [1, 2], [cat!.provider.indexOf('insurer')]);
  let ratio: number | undefined;
  a.forEach((x, i) => {
    if (cat!.provider[i] !== 'insurer') return expect([x, b[i]]).toEqual([0, 0]);
    expect(x).toBeGreaterThan(0);
    ratio ??= b[i] / x;
    expect(b[i] / x).toBeCloseTo(ratio, 9);
  });
});

test('the oracles are the interaction model: true taste >> features, interests and history >> popularity; a wrong user\'s taste does not help', async () => {
  const out = path.join(root, 'eval');
  let cat: LatentCatalogue | undefined;
  const latent = new Map<string, LatentUser>();
  await generateSynthetic({
    out, seed: 6, scale: 'small', parties: ['platform', 'insurer'], usersPerParty: 3000, itemsPerParty: 400,
    latent: { catalogue: (c) => (cat = c), user: (u) => latent.set(u.id, u) },
  });
  const dir = path.join(root, 'eval-node');
  await initNode(dir, 'insurer');
  const f = (x: string) => path.join(out, 'insurer', x);
  await importCsv({ dataDir: dir, users: f('users.csv'), items: f('items.csv'), interactions: f('interactions.csv') });
  const ds = loadDataset(dir);
  const split = leaveOneOutSplit(ds);
  const user = ds.users.map((u) => latent.get(u.id)!);
  const itemRow = ds.items.map((it) => cat!.ids.indexOf(it.id));
  const popularity = await evaluateScorer(ds, split, popularityScorer(popularityScores(split.train, ds.items.length, 7)), 7);
  const oracle = await evaluateScorer(ds, split, weightsScorer(itemRow, (k) => takeUpWeights(cat!, 'insurer', user[k].theta, user[k].lifeStage)), 7);
  const other = (k: number) => user[(k + 1) % user.length];
  const wrong = await evaluateScorer(ds, split, weightsScorer(itemRow, (k) => takeUpWeights(cat!, 'insurer', other(k).theta, user[k].lifeStage)), 7);
  const cellOf = (k: number) => `${ds.users[k].ageBand}|${ds.users[k].lifeStage}|${ds.users[k].region}`;
  const pools = new Map<string, Float64Array[]>();
  ds.users.forEach((_, k) => (pools.get(cellOf(k)) ?? pools.set(cellOf(k), []).get(cellOf(k))!).push(user[k].theta));
  const hist = new Map<number, number[]>();
  split.train.user.forEach((k, j) => (hist.get(k) ?? hist.set(k, []).get(k)!).push(itemRow[split.train.item[j]]));
  const posterior = await evaluateScorer(
    ds, split,
    weightsScorer(itemRow, (k) => posteriorTakeUpWeights(cat!, 'insurer', pools.get(cellOf(k))!.filter((th) => th !== user[k].theta), user[k].lifeStage, ds.users[k].interests.map((t) => V.topics.indexOf(t)), hist.get(k) ?? [])),
    7,
  );
  expect(oracle.count).toBeGreaterThan(1000);
  expect(oracle['hr@10']).toBeGreaterThan(popularity['hr@10'] + 0.15);
  expect(posterior['hr@10']).toBeGreaterThan(popularity['hr@10'] + 0.05);
  expect(posterior['hr@10']).toBeLessThan(oracle['hr@10']);
  expect(wrong['hr@10']).toBeLessThan(posterior['hr@10'] - 0.03);
});
