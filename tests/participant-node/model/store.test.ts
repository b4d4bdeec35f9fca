/**
 * The saved model on disk: every file is checked against the sha256 in its meta.json and every
 * parameter must be finite on load (a shared.f32 overwritten with NaN used to load and serve null
 * scores); a garbled meta.json is a one-line error; a crash inside the folder swap is repaired.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { selectBackend, defaultBackendDeps } from '../../../participant-node/model/backend';
import { TwoTowerModel } from '../../../participant-node/model/twotower';
import { loadModel, modelDir, readModelMeta, saveModel } from '../../../participant-node/model/store';
import { DEFAULT_VOCABULARIES } from '../../../shared/data/vocab';
import { UserError } from '../../../shared/cli/errors';

let root: string;
const config = { architecture: 'two-tower-v1' as const, embeddingDim: 4, hiddenDim: 4, numItems: 6 };
const NUM_USERS = 3;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-model-store-'));
  await selectBackend(tf, 'wasm', { ...defaultBackendDeps, log: () => {} });
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function saved(name: string): Promise<string> {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  const m = TwoTowerModel.forPolicy(config, DEFAULT_VOCABULARIES, NUM_USERS, { learningRate: 0.01, initSeed: 7 });
  try {
    await saveModel(dir, m, { model: config, vocabularies: DEFAULT_VOCABULARIES, catalogueHash: 'ab'.repeat(32), learningRate: 0.01, initSeed: 7, training: {} }, ['u1', 'u2', 'u3']);
  } finally {
    m.dispose();
  }
  return dir;
}

function loadError(dir: string): Error {
  try {
    loadModel(dir).model.dispose();
  } catch (e) {
    return e as Error;
  }
  throw new Error('loadModel did not fail');
}

/** Overwrites the first float32 of a model file with NaN (same length). */
function poison(dir: string, file: string): void {
  const f = path.join(modelDir(dir), file);
  const buf = fs.readFileSync(f);
  buf.writeFloatLE(NaN, 0);
  fs.writeFileSync(f, buf);
}

it('saves a sha256 of every file and loads it back', async () => {
  const dir = await saved('ok');
  expect(Object.keys(readModelMeta(dir).sha256 ?? {}).sort()).toEqual(['shared.f32', 'user_embedding.f32', 'users.json']);
  const { model, userIds } = loadModel(dir);
  model.dispose();
  expect(userIds).toEqual(['u1', 'u2', 'u3']);
});

it.each(['shared.f32', 'user_embedding.f32'])('a %s overwritten with NaN is refused as corrupted', async (file) => {
  const dir = await saved(`nan-${file}`);
  poison(dir, file);
  const err = loadError(dir);
  expect(err).toBeInstanceOf(UserError);
  expect(err.message).toMatch(new RegExp(`${file.replace('.', '\\.')}: content does not match meta\\.json \\(corrupted\\); retrain it`));
});

it('a model saved before the hashes (no sha256 in meta.json) loads, but a NaN parameter is refused', async () => {
  const dir = await saved('legacy');
  const metaFile = path.join(modelDir(dir), 'meta.json');
  const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
  delete meta.sha256;
  fs.writeFileSync(metaFile, JSON.stringify(meta));
  loadModel(dir).model.dispose();
  for (const file of ['user_embedding.f32', 'shared.f32']) {
    poison(dir, file);
    expect(loadError(dir).message).toMatch(new RegExp(`${file.replace('.', '\\.')}: parameter 0 is NaN \\(not finite\\): the model is corrupted`));
  }
});

it.each([
  ['truncated', (t: string) => t.slice(0, 30)],
  ['empty', () => ''],
  ['without numUsers', (t: string) => JSON.stringify({ ...JSON.parse(t), numUsers: 'x' })],
])('a %s meta.json is a one-line error', async (_name, edit) => {
  const dir = await saved(`meta-${_name}`);
  const metaFile = path.join(modelDir(dir), 'meta.json');
  fs.writeFileSync(metaFile, edit(fs.readFileSync(metaFile, 'utf8')));
  for (const f of [() => readModelMeta(dir), () => loadModel(dir)]) {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/meta\.json: (cannot read the saved model|"numUsers" is missing or invalid)/);
    expect((err as Error).message).not.toContain('\n');
  }
});

it('a crash between the swap renames: the old model is renamed back on load, leftovers swept', async () => {
  const dir = await saved('crash');
  const pid = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString());
  fs.renameSync(modelDir(dir), path.join(dir, `model.old-${pid}-01234567`));
  fs.mkdirSync(path.join(dir, `.model-staging-${pid}-89abcdef`));
  fs.mkdirSync(path.join(dir, '.model-staging-deadbeef')); // earlier versions' name: no pid
  const { model, userIds } = loadModel(dir);
  model.dispose();
  expect(userIds).toEqual(['u1', 'u2', 'u3']);
  expect(fs.readdirSync(dir)).toEqual(['model']);
});
