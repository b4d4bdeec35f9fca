/**
 * Local training, evaluation and serving on small generated data, end to end through the same
 * functions the CLI calls (real tfjs wasm backend, real files).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as http from 'node:http';
import * as tf from '@tensorflow/tfjs';
import { generateSynthetic } from '../../../participant-node/data/generate';
import { initNode } from '../../../participant-node/identity';
import { importCsv } from '../../../participant-node/data/import';
import { loadDataset } from '../../../participant-node/data/store';
import { selectBackend } from '../../../participant-node/model/backend';
import { TwoTowerModel } from '../../../participant-node/model/twotower';
import { domainIndex, encodeFeatures, leaveOneOutSplit, trainEpochs } from '../../../participant-node/model/train';
import { evaluateModel } from '../../../participant-node/model/evaluate';
import { evaluateLocal, openRecommender, trainLocal } from '../../../participant-node/local';
import { createRecommendationServer, listen } from '../../../participant-node/serve/http';
import { DEFAULT_VOCABULARIES } from '../../../shared/data/vocab';
import { Xoshiro128 } from '../../../shared/util/prng';
import type { NodeDataset } from '../../../participant-node/data/dataset';

const quietDeps = { log: () => {} };
let root: string;
let gen: string;
const nodeDir = (p: string) => path.join(root, 'nodes', p);

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-local-'));
  gen = path.join(root, 'gen');
  await generateSynthetic({ out: gen, seed: 5, scale: 'small', parties: ['platform', 'insurer'], usersPerParty: 300, itemsPerParty: 400 });
  for (const p of ['platform', 'insurer']) {
    await initNode(nodeDir(p), p);
    await importCsv({ dataDir: nodeDir(p), users: path.join(gen, p, 'users.csv'), items: path.join(gen, p, 'items.csv'), interactions: path.join(gen, p, 'interactions.csv') });
  }
  process.env.FEDBRIDGE_BACKEND = 'wasm';
  await selectBackend(tf, 'wasm', { ...(await import('../../../participant-node/model/backend')).defaultBackendDeps, ...quietDeps });
});

afterAll(() => {
  delete process.env.FEDBRIDGE_BACKEND;
  fs.rmSync(root, { recursive: true, force: true });
});

function newModel(ds: NodeDataset, seed = 3): TwoTowerModel {
  const m = TwoTowerModel.forPolicy({ architecture: 'two-tower-v1', embeddingDim: 16, hiddenDim: 16, numItems: ds.items.length }, DEFAULT_VOCABULARIES, ds.users.length, { learningRate: 0.01, initSeed: seed });
  const f = encodeFeatures(ds, DEFAULT_VOCABULARIES);
  m.setFeatures(f.users, f.items);
  return m;
}

describe('leave-one-out split and training data', () => {
  test("held-out interactions never reach training", async () => {
    const ds = loadDataset(nodeDir('platform'));
    const split = leaveOneOutSplit(ds);
    expect(split.test.user.length).toBeGreaterThan(250);
    const held = new Set<string>();
    for (let j = 0; j < split.test.user.length; j++) held.add(`${split.test.user[j]}:${split.test.item[j]}`);
    // the held-out item is each user's latest interaction
    const lastTs = new Map<number, number>();
    for (let j = 0; j < ds.interactions.user.length; j++) lastTs.set(ds.interactions.user[j], Math.max(lastTs.get(ds.interactions.user[j]) ?? -Infinity, ds.interactions.timestamp[j]));
    const tsOf = new Map<string, number[]>();
    for (let j = 0; j < ds.interactions.user.length; j++) {
      const key = `${ds.interactions.user[j]}:${ds.interactions.item[j]}`;
      tsOf.set(key, [...(tsOf.get(key) ?? []), ds.interactions.timestamp[j]]);
    }
    for (let j = 0; j < split.test.user.length; j++) {
      expect(tsOf.get(`${split.test.user[j]}:${split.test.item[j]}`)).toContain(lastTs.get(split.test.user[j]));
    }
    for (let j = 0; j < split.train.user.length; j++) expect(held.has(`${split.train.user[j]}:${split.train.item[j]}`)).toBe(false);
    // and nothing the trainer is fed as a positive is a held-out pair
    const m = newModel(ds);
    let positivesSeen = 0;
    await trainEpochs(m, split.train, domainIndex(ds), {
      epochs: 1,
      batchSize: 256,
      negatives: 3,
      rng: new Xoshiro128(1),
      onExamples: (users, items, labels) => {
        for (let k = 0; k < users.length; k++) {
          if (labels[k] !== 1) continue;
          positivesSeen++;
          expect(held.has(`${users[k]}:${items[k]}`)).toBe(false);
        }
      },
    });
    expect(positivesSeen).toBe(split.train.user.length);
    m.dispose();
  });

  test('an untrained model scores HR@10 near 10/101 (chance)', async () => {
    const ds = loadDataset(nodeDir('platform'));
    const split = leaveOneOutSplit(ds);
    const hrs: number[] = [];
    for (const seed of [1, 2, 3]) {
      const m = newModel(ds, seed);
      hrs.push((await evaluateModel(m, ds, split, seed)).metrics['hr@10']);
      m.dispose();
    }
    const mean = hrs.reduce((a, b) => a + b, 0) / hrs.length;
    // 3 x ~300 cases: standard error ~0.01; chance is 10/101 = 0.099
    expect(Math.abs(mean - 10 / 101)).toBeLessThan(0.04);
  });

  test('tf.memory().numTensors does not grow across epochs, evaluation or serving', async () => {
    const ds = loadDataset(nodeDir('insurer'));
    const split = leaveOneOutSplit(ds);
    const m = newModel(ds);
    const dom = domainIndex(ds);
    const opts = { epochs: 1, batchSize: 128, negatives: 2, rng: new Xoshiro128(2) };
    await trainEpochs(m, split.train, dom, opts); // burn-in: optimizer slots are created here
    const before = tf.memory().numTensors;
    for (let e = 0; e < 3; e++) await trainEpochs(m, split.train, dom, opts);
    await evaluateModel(m, ds, split);
    await m.getSharedFlat();
    m.setSharedFlat(await m.getSharedFlat());
    tf.dispose(m.sharedParameters().map((p) => p.tensor));
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });
});

describe('train-local, evaluate, recommend', () => {
  test('training lowers the loss, the model beats chance and the JSON fields are real numbers', async () => {
    const r = await trainLocal(nodeDir('platform'), { backend: 'wasm', epochs: 3, batchSize: 512, negatives: 4, learningRate: 0.01, seed: 9, holdout: 'last' });
    expect(r.backend).toBe('wasm');
    expect(r.epochs).toBe(3);
    expect(r.epochLosses[2]).toBeLessThan(r.epochLosses[0]);
    expect(r.samplesPerSecond).toBeGreaterThan(0);
    const ev = await evaluateLocal(nodeDir('platform'), { backend: 'wasm', groundTruth: path.join(gen, 'platform', 'ground_truth.csv') });
    expect(ev.party).toBe('platform');
    expect(ev.metrics['hr@10']).toBeGreaterThan(0.2);
    expect(ev.metrics['ndcg@10']).toBeGreaterThan(0);
    expect(ev.metrics['ndcg@10']).toBeLessThanOrEqual(ev.metrics['hr@10']);
    expect(Object.keys(ev.byDomain)).toEqual(['course']);
    expect(ev.baseline.popularity['hr@10']).toBeGreaterThan(0);
    expect(ev.crossDomain!.overall.count).toBe(300 * 5);
    expect(Object.keys(ev.crossDomain!.byDomain).sort()).toEqual(['finance', 'insurance']);
  });

  test('evaluate refuses a model that was trained on the held-out interactions', async () => {
    await trainLocal(nodeDir('insurer'), { backend: 'wasm', epochs: 1, batchSize: 256, negatives: 2, learningRate: 0.01, seed: 1, holdout: 'none' });
    await expect(evaluateLocal(nodeDir('insurer'), { backend: 'wasm' })).rejects.toThrow(/trained on every interaction .* retrain with --holdout last/);
  });

  test('recommend: seen items excluded, domain filter, cold start, unknown user', async () => {
    const { rec, close } = await openRecommender(nodeDir('platform'), 'wasm');
    const ds = loadDataset(nodeDir('platform'));
    const uid = ds.users[0].id;
    const seen = new Set<string>();
    for (let j = 0; j < ds.interactions.user.length; j++) if (ds.interactions.user[j] === 0) seen.add(ds.items[ds.interactions.item[j]].id);
    const top = await rec.recommend({ userId: uid, k: 20 });
    expect(top.items).toHaveLength(20);
    for (const it of top.items) expect(seen.has(it.itemId)).toBe(false);
    for (let k = 1; k < 20; k++) expect(top.items[k].score).toBeLessThanOrEqual(top.items[k - 1].score);
    const ins = await rec.recommend({ userId: uid, k: 5, domain: 'insurance' });
    expect(ins.items.map((i) => i.domain)).toEqual(Array(5).fill('insurance'));
    const cold = await rec.recommend({ features: { ageBand: '25-34', region: 'north', lifeStage: 'student', interests: ['programming'] }, k: 3, domain: 'finance' });
    expect(cold.coldStart).toBe(true);
    expect(cold.items.map((i) => i.domain)).toEqual(['finance', 'finance', 'finance']);
    await expect(rec.recommend({ userId: 'nobody', k: 3 })).rejects.toThrow(/unknown user "nobody"/);
    await expect(rec.recommend({ features: { ageBand: '200+', region: 'north', lifeStage: 'student', interests: [] }, k: 3 })).rejects.toThrow(/unknown age_band "200\+"/);
    close();
  });

  test('HTTP endpoint on localhost: 200 with items, precise 4xx errors, server survives', async () => {
    const { rec, close } = await openRecommender(nodeDir('platform'), 'wasm');
    const server = createRecommendationServer(rec);
    const port = await listen(server, 0, '127.0.0.1');
    const get = (p: string, method = 'GET') =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: p, method }, (res) => {
          let data = '';
          res.on('data', (c) => (data += c));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(data) }));
        });
        req.on('error', reject);
        req.end();
      });
    const uid = loadDataset(nodeDir('platform')).users[1].id;
    const ok = await get(`/recommendations/${uid}?k=7&domain=insurance`);
    expect(ok.status).toBe(200);
    expect(ok.body.items).toHaveLength(7);
    expect(ok.body.items.every((i: any) => i.domain === 'insurance')).toBe(true);
    expect((await get('/recommendations/nobody')).status).toBe(404);
    expect((await get(`/recommendations/${uid}?k=0`)).body.error).toMatch(/k must be an integer in \[1, 1000\], got "0"/);
    expect((await get(`/recommendations/${uid}?domain=cars`)).body.error).toMatch(/domain must be one of course\|insurance\|finance/);
    expect((await get(`/recommendations/%E0%A4%A`)).status).toBe(400);
    expect((await get(`/recommendations/${uid}`, 'POST')).status).toBe(405);
    expect((await get('/healthz')).body).toEqual({ ok: true });
    expect((await get(`/recommendations/${uid}`)).status).toBe(200);
    await new Promise((r) => server.close(r));
    close();
  });
});

describe('saving a model', () => {
  test('a model with a non-finite parameter (training diverged) is refused and the saved one is left as it was', async () => {
    const dir = nodeDir('platform');
    const { loadModel, saveModel } = await import('../../../participant-node/model/store');
    await trainLocal(dir, { backend: 'wasm', epochs: 1, batchSize: 512, negatives: 2, learningRate: 0.01, seed: 3, holdout: 'last' });
    const before = fs.readFileSync(path.join(dir, 'model', 'user_embedding.f32'));
    const saved = loadModel(dir);
    saved.model.userEmbedding[5] = Number.NaN;
    const ids = JSON.parse(fs.readFileSync(path.join(dir, 'model', 'users.json'), 'utf8')) as string[];
    const { format: _f, savedAt: _s, numUsers: _n, ...meta } = saved.meta;
    await expect(saveModel(dir, saved.model, meta, ids)).rejects.toThrow(/non-finite user embedding parameter \(index 5: NaN\): training diverged; nothing was saved/);
    saved.model.dispose();
    expect(fs.readFileSync(path.join(dir, 'model', 'user_embedding.f32')).equals(before)).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('.model-staging'))).toEqual([]);
  });
});

describe('personalisation from a saved model', () => {
  test('--from-saved continues the saved model (shared and private parameters) and refuses a holdout mismatch', async () => {
    const dir = nodeDir('platform');
    await trainLocal(dir, { backend: 'wasm', epochs: 1, batchSize: 512, negatives: 2, learningRate: 0.01, seed: 4, holdout: 'last' });
    const { loadModel } = await import('../../../participant-node/model/store');
    const before = loadModel(dir);
    const sharedBefore = await before.model.getSharedFlat();
    before.model.dispose();
    const r = await trainLocal(dir, { backend: 'wasm', epochs: 1, batchSize: 512, negatives: 2, learningRate: 0.001, seed: 5, holdout: 'last', fromSaved: true });
    expect(r.epochs).toBe(1);
    const after = loadModel(dir);
    expect(after.meta.training.kind).toBe('personalised');
    const sharedAfter = await after.model.getSharedFlat();
    // continued from the saved weights: near them (a fresh initialisation would be ~sqrt(2) away)
    let diff = 0;
    let norm = 0;
    for (let i = 0; i < sharedAfter.length; i++) {
      diff += (sharedAfter[i] - sharedBefore[i]) ** 2;
      norm += sharedBefore[i] ** 2;
    }
    expect(Math.sqrt(diff / norm)).toBeGreaterThan(0);
    expect(Math.sqrt(diff / norm)).toBeLessThan(1);
    expect(after.meta.learningRate).toBe(0.001);
    after.model.dispose();
    // the continuation trains at the requested rate, not at the saved model's: a tiny rate barely moves it
    await trainLocal(dir, { backend: 'wasm', epochs: 1, batchSize: 512, negatives: 2, learningRate: 1e-7, seed: 6, holdout: 'last', fromSaved: true });
    const tiny = loadModel(dir);
    const sharedTiny = await tiny.model.getSharedFlat();
    tiny.model.dispose();
    let moved = 0;
    for (let i = 0; i < sharedTiny.length; i++) moved += (sharedTiny[i] - sharedAfter[i]) ** 2;
    expect(Math.sqrt(moved / norm)).toBeLessThan(1e-4);
    // --freeze-towers: the towers f, g stay exactly as saved, the item rows and private e_u adapt
    const pre = loadModel(dir);
    const towersPre = await pre.model.towerValues();
    const itemsPre = Float32Array.from(pre.model.itemEmbedding);
    const usersPre = Float32Array.from(pre.model.userEmbedding);
    pre.model.dispose();
    await trainLocal(dir, { backend: 'wasm', epochs: 1, batchSize: 512, negatives: 2, learningRate: 0.01, seed: 7, holdout: 'last', fromSaved: true, freezeTowers: true });
    const post = loadModel(dir);
    for (const [name, v] of await post.model.towerValues()) expect(v).toEqual(towersPre.get(name));
    expect(post.model.itemEmbedding).not.toEqual(itemsPre);
    expect(post.model.userEmbedding).not.toEqual(usersPre);
    expect(post.meta.training.freezeTowers).toBe(true);
    post.model.dispose();
    await expect(trainLocal(dir, { backend: 'wasm', epochs: 1, batchSize: 512, negatives: 2, learningRate: 0.01, holdout: 'last', freezeTowers: true })).rejects.toThrow(/--freeze-towers needs --from-saved/);
    await expect(trainLocal(dir, { backend: 'wasm', epochs: 1, batchSize: 512, negatives: 2, learningRate: 0.001, holdout: 'none', fromSaved: true })).rejects.toThrow(/trained with holdout last, not none/);
  });

  test('a saved federated model (or a personalisation of one) is not replaced by a local-only model unless asked', async () => {
    const dir = nodeDir('insurer');
    const opts = { backend: 'wasm' as const, epochs: 1, batchSize: 512, negatives: 2, learningRate: 0.01, seed: 8, holdout: 'last' as const };
    await trainLocal(dir, opts);
    // the provenance `node join` writes when it adopts a global model
    const metaFile = path.join(dir, 'model', 'meta.json');
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    meta.training = { kind: 'federated', federationId: 'fb', runId: 'run-7', modelVersion: 12, modelHash: 'ab'.repeat(32), holdout: 'last' };
    fs.writeFileSync(metaFile, JSON.stringify(meta));
    const bytes = fs.readFileSync(metaFile);
    await expect(trainLocal(dir, opts)).rejects.toThrow(/holds the federated model of run run-7 \(version 12\); train-local would replace it .* --replace .* --from-saved/);
    expect(fs.readFileSync(metaFile).equals(bytes)).toBe(true);
    // personalising it is allowed, and the personalisation is protected the same way
    await trainLocal(dir, { ...opts, fromSaved: true });
    await expect(trainLocal(dir, opts)).rejects.toThrow(/holds a personalisation of the federated model of run run-7/);
    const r = await trainLocal(dir, { ...opts, replace: true });
    expect(r.epochs).toBe(1);
    expect(JSON.parse(fs.readFileSync(metaFile, 'utf8')).training.kind).toBe('local');
    await trainLocal(dir, opts); // a local-only model is replaced without asking
  });
});
