/**
 * The node's local model on disk: DIR/model/
 *   meta.json            format, shape, model config, vocabularies, catalogue hash, training info,
 *                        sha256 of each other file
 *   shared.f32           the shared parameters, flat in layout order (little-endian float32)
 *   user_embedding.f32   the PRIVATE per-user embeddings (never leaves the node)
 *   users.json           user ids in row order (to map `--user ID` to a row)
 * Written to a staging folder and swapped in with replaceDirAtomic; a crash inside the swap is
 * repaired on the next load or save (recoverDir: the old model is renamed back). On load every file
 * is checked against its sha256 and every parameter must be finite: a corrupted model is refused
 * by name instead of serving null scores. Models saved before the hashes existed still load (length
 * and finiteness checked).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sha256 } from '../data/store';
import { UserError } from '../../shared/cli/errors';
import type { ModelConfig } from '../../shared/model/layout';
import type { Vocabularies } from '../../shared/data/vocab';
import { makeStagingDir, recoverDir, replaceDirAtomic, writeFileAtomic } from '../../shared/util/atomic';
import { TwoTowerModel } from './twotower';

export const MODEL_FORMAT = 'fedbridge-model/1';

export interface ModelMeta {
  format: string;
  model: ModelConfig;
  vocabularies: Vocabularies;
  numUsers: number;
  catalogueHash: string;
  learningRate: number;
  initSeed: number;
  savedAt: string;
  /** free-form training provenance: backend, epochs, rounds, ... */
  training: Record<string, unknown>;
  /** sha256 hex of shared.f32, user_embedding.f32 and users.json (absent in models of earlier versions) */
  sha256?: Record<string, string>;
}

const MODEL_FILES = ['shared.f32', 'user_embedding.f32', 'users.json'] as const;
const STAGING_PREFIX = '.model-staging-';
const RETRAIN = "retrain it ('fedbridge node train-local') or run the federation again";


export function modelDir(dataDir: string): string {
  return path.join(dataDir, 'model');
}

function toBytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Reads a model file, checked against the sha256 in meta.json (when the model has them). */
function readChecked(dir: string, name: (typeof MODEL_FILES)[number], meta: ModelMeta): Buffer {
  const file = path.join(dir, name);
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new UserError(`${file}: ${(e as Error).message}; ${RETRAIN}`, 1);
  }
  const want = meta.sha256?.[name];
  if (want !== undefined && want !== sha256(buf)) throw new UserError(`${file}: content does not match meta.json (corrupted); ${RETRAIN}`, 1);
  return buf;
}

function readF32(dir: string, name: 'shared.f32' | 'user_embedding.f32', meta: ModelMeta, expected: number): Float32Array {
  const file = path.join(dir, name);
  const buf = readChecked(dir, name, meta);
  if (buf.byteLength !== expected * 4) throw new UserError(`${file}: expected ${expected} float32 values, found ${buf.byteLength / 4}; ${RETRAIN}`, 1);
  const out = new Float32Array(expected);
  new Uint8Array(out.buffer).set(buf);
  const bad = out.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) throw new UserError(`${file}: parameter ${bad} is ${out[bad]} (not finite): the model is corrupted; ${RETRAIN}`, 1);
  return out;
}

/** Whether `dir` is a complete model folder: meta.json readable, every file present and matching its sha256. */
function isCompleteModelDir(dir: string): boolean {
  try {
    const meta = parseModelMeta(path.join(dir, 'meta.json'));
    for (const f of MODEL_FILES) readChecked(dir, f, meta);
    return true;
  } catch {
    return false;
  }
}

/** Repairs DIR/model after a process died while replacing it, and removes what dead processes left. */
export function recoverModel(dataDir: string): void {
  recoverDir(modelDir(dataDir), STAGING_PREFIX, isCompleteModelDir);
}

export async function saveModel(dataDir: string, model: TwoTowerModel, meta: Omit<ModelMeta, 'format' | 'savedAt' | 'numUsers' | 'sha256'>, userIds: string[]): Promise<void> {
  if (userIds.length !== model.shape.numUsers) throw new RangeError(`userIds has ${userIds.length} entries, model has ${model.shape.numUsers} users`);
  const shared = await model.getSharedFlat(); // read before staging: nothing is written if the read fails
  // a diverged model (NaN/Inf) is never saved: it would replace a good one and evaluate as garbage
  for (const [what, v] of [['shared', shared], ['user embedding', model.userEmbedding]] as const) {
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new UserError(`the trained model has a non-finite ${what} parameter (index ${bad}: ${v[bad]}): training diverged; nothing was saved (try a smaller learning rate)`, 1);
  }
  const target = modelDir(dataDir);
  recoverModel(dataDir);
  const staged = makeStagingDir(dataDir, STAGING_PREFIX);
  try {
    const files = { 'shared.f32': toBytes(shared), 'user_embedding.f32': toBytes(model.userEmbedding), 'users.json': Buffer.from(JSON.stringify(userIds), 'utf8') };
    const full: ModelMeta = {
      format: MODEL_FORMAT,
      ...meta,
      numUsers: model.shape.numUsers,
      savedAt: new Date().toISOString(),
      sha256: Object.fromEntries(Object.entries(files).map(([f, b]) => [f, sha256(b)])),
    };
    writeFileAtomic(path.join(staged, 'shared.f32'), files['shared.f32']);
    writeFileAtomic(path.join(staged, 'user_embedding.f32'), files['user_embedding.f32'], 0o600);
    writeFileAtomic(path.join(staged, 'users.json'), files['users.json'], 0o600);
    // meta.json last: its presence marks a complete folder
    writeFileAtomic(path.join(staged, 'meta.json'), JSON.stringify(full, null, 2) + '\n');
    replaceDirAtomic(staged, target);
  } catch (e) {
    fs.rmSync(staged, { recursive: true, force: true });
    throw e;
  }
}

function parseModelMeta(f: string): ModelMeta {
  let meta: ModelMeta;
  try {
    meta = JSON.parse(fs.readFileSync(f, 'utf8')) as ModelMeta;
  } catch (e) {
    throw new UserError(`${f}: cannot read the saved model (${(e as Error).message}); ${RETRAIN}`, 1);
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw new UserError(`${f}: not a model description; ${RETRAIN}`, 1);
  if (meta.format !== MODEL_FORMAT) throw new UserError(`${f}: unsupported model format "${String(meta.format)}"`, 1);
  const problem =
    !Number.isSafeInteger(meta.numUsers) || meta.numUsers < 0 ? 'numUsers'
    : meta.model === null || typeof meta.model !== 'object' || !Number.isSafeInteger(meta.model.embeddingDim) || meta.model.embeddingDim <= 0 ? 'model'
    : meta.vocabularies === null || typeof meta.vocabularies !== 'object' ? 'vocabularies'
    : typeof meta.catalogueHash !== 'string' ? 'catalogueHash'
    : meta.sha256 !== undefined && (meta.sha256 === null || typeof meta.sha256 !== 'object') ? 'sha256'
    : undefined;
  if (problem) throw new UserError(`${f}: "${problem}" is missing or invalid; ${RETRAIN}`, 1);
  return meta;
}

export function readModelMeta(dataDir: string): ModelMeta {
  recoverModel(dataDir);
  const f = path.join(modelDir(dataDir), 'meta.json');
  if (!fs.existsSync(f)) throw new UserError(`no trained model in ${dataDir}: run 'fedbridge node train-local --data-dir ${dataDir}' (or join a federation) first`);
  return parseModelMeta(f);
}

/**
 * Loads the saved model (tfjs backend must already be selected). Its optimizers use the saved
 * learning rate unless `learningRate` is given (continuing training at another rate).
 */
export function loadModel(dataDir: string, o: { learningRate?: number } = {}): { model: TwoTowerModel; meta: ModelMeta; userIds: string[] } {
  const meta = readModelMeta(dataDir);
  const dir = modelDir(dataDir);
  let model: TwoTowerModel;
  try {
    model = TwoTowerModel.forPolicy(meta.model, meta.vocabularies, meta.numUsers, { learningRate: o.learningRate ?? meta.learningRate, initSeed: meta.initSeed });
  } catch (e) {
    throw new UserError(`${path.join(dir, 'meta.json')}: describes no model this version can build (${(e as Error).message}); ${RETRAIN}`, 1);
  }
  try {
    const layoutLen = model.sharedSize();
    model.setSharedFlat(readF32(dir, 'shared.f32', meta, layoutLen));
    model.userEmbedding.set(readF32(dir, 'user_embedding.f32', meta, meta.numUsers * meta.model.embeddingDim));
    const usersFile = path.join(dir, 'users.json');
    let userIds: unknown;
    try {
      userIds = JSON.parse(readChecked(dir, 'users.json', meta).toString('utf8'));
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`${usersFile}: cannot read the saved model (${(e as Error).message}); ${RETRAIN}`, 1);
    }
    if (!Array.isArray(userIds) || userIds.length !== meta.numUsers || userIds.some((u) => typeof u !== 'string')) {
      throw new UserError(`${usersFile}: expected ${meta.numUsers} user ids; ${RETRAIN}`, 1);
    }
    return { model, meta, userIds: userIds as string[] };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
