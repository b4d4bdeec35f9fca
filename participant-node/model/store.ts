/**
 * The node's local model on disk: DIR/model/
 *   meta.json            format, shape, model config, vocabularies, catalogue hash, training info
 *   shared.f32           the shared parameters, flat in layout order (little-endian float32)
 *   user_embedding.f32   the PRIVATE per-user embeddings (never leaves the node)
 *   users.json           user ids in row order (to map `--user ID` to a row)
 * Written to a staging folder and swapped in atomically: a crash leaves the old model or the new one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../../shared/cli/errors';
import type { ModelConfig } from '../../shared/model/layout';
import type { Vocabularies } from '../../shared/data/vocab';
import { replaceDirAtomic, writeFileAtomic } from '../../shared/util/atomic';
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
}

export function modelDir(dataDir: string): string {
  return path.join(dataDir, 'model');
}

function toBytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function readF32(file: string, expected: number): Float32Array {
  const buf = fs.readFileSync(file);
  if (buf.byteLength !== expected * 4) throw new UserError(`${file}: expected ${expected} float32 values, found ${buf.byteLength / 4}`, 1);
  const out = new Float32Array(expected);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

export async function saveModel(dataDir: string, model: TwoTowerModel, meta: Omit<ModelMeta, 'format' | 'savedAt' | 'numUsers'>, userIds: string[]): Promise<void> {
  if (userIds.length !== model.shape.numUsers) throw new RangeError(`userIds has ${userIds.length} entries, model has ${model.shape.numUsers} users`);
  const shared = await model.getSharedFlat(); // read before staging: nothing is written if the read fails
  // a diverged model (NaN/Inf) is never saved: it would replace a good one and evaluate as garbage
  for (const [what, v] of [['shared', shared], ['user embedding', model.userEmbedding]] as const) {
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new UserError(`the trained model has a non-finite ${what} parameter (index ${bad}: ${v[bad]}): training diverged; nothing was saved (try a smaller learning rate)`, 1);
  }
  const target = modelDir(dataDir);
  const staged = path.join(dataDir, `.model-staging-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(staged, { recursive: true });
  try {
    const full: ModelMeta = { format: MODEL_FORMAT, ...meta, numUsers: model.shape.numUsers, savedAt: new Date().toISOString() };
    writeFileAtomic(path.join(staged, 'shared.f32'), toBytes(shared));
    writeFileAtomic(path.join(staged, 'user_embedding.f32'), toBytes(model.userEmbedding), 0o600);
    writeFileAtomic(path.join(staged, 'users.json'), JSON.stringify(userIds), 0o600);
    writeFileAtomic(path.join(staged, 'meta.json'), JSON.stringify(full, null, 2) + '\n');
    replaceDirAtomic(staged, target);
  } catch (e) {
    fs.rmSync(staged, { recursive: true, force: true });
    throw e;
  }
}

export function readModelMeta(dataDir: string): ModelMeta {
  const f = path.join(modelDir(dataDir), 'meta.json');
  if (!fs.existsSync(f)) throw new UserError(`no trained model in ${dataDir}: run 'fedbridge node train-local --data-dir ${dataDir}' (or join a federation) first`);
  const meta = JSON.parse(fs.readFileSync(f, 'utf8')) as ModelMeta;
  if (meta.format !== MODEL_FORMAT) throw new UserError(`${f}: unsupported model format "${meta.format}"`, 1);
  return meta;
}

/**
 * Loads the saved model (tfjs backend must already be selected). Its optimizers use the saved
 * learning rate unless `learningRate` is given (continuing training at another rate).
 */
export function loadModel(dataDir: string, o: { learningRate?: number } = {}): { model: TwoTowerModel; meta: ModelMeta; userIds: string[] } {
  const meta = readModelMeta(dataDir);
  const dir = modelDir(dataDir);
  const model = TwoTowerModel.forPolicy(meta.model, meta.vocabularies, meta.numUsers, { learningRate: o.learningRate ?? meta.learningRate, initSeed: meta.initSeed });
  try {
    const layoutLen = model.sharedSize();
    model.setSharedFlat(readF32(path.join(dir, 'shared.f32'), layoutLen));
    model.userEmbedding.set(readF32(path.join(dir, 'user_embedding.f32'), meta.numUsers * meta.model.embeddingDim));
    const userIds = JSON.parse(fs.readFileSync(path.join(dir, 'users.json'), 'utf8')) as string[];
    return { model, meta, userIds };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
