/**
 * How an imported dataset lives in the node data dir, and how it is loaded back (fast: users and
 * items as JSON, interactions as raw little-endian typed arrays, no parsing per row).
 *
 *   DIR/data/meta.json                 { format, party, catalogueHash, counts, sha256 of each binary, ... }
 *   DIR/data/users.json                UserRecord[] in user-index order
 *   DIR/data/items.json                ItemRecord[] in catalogue order
 *   DIR/data/interactions.user.u32     Uint32 user index per interaction
 *   DIR/data/interactions.item.u32     Uint32 item index per interaction
 *   DIR/data/interactions.ts.f64       Float64 timestamp per interaction
 *
 * The whole folder is replaced at once (`storeDataset`): the new one is written into a staging
 * folder inside DIR and swapped in with `replaceDirAtomic`, so a reader (or a crash) sees the old
 * dataset or the new one, never a mix. The sha256 digests detect a torn or edited file on load
 * (integrity, not security: the data dir is the node's own).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { replaceDirAtomic } from '../../shared/util/atomic';
import { UserError } from '../../shared/cli/errors';
import type { ItemRecord, NodeDataset, UserRecord } from './dataset';

export const DATASET_FORMAT = 'fedbridge-dataset/1';

const BIN_FILES = {
  user: 'interactions.user.u32',
  item: 'interactions.item.u32',
  timestamp: 'interactions.ts.f64',
} as const;

export interface DatasetMeta {
  format: string;
  party: string;
  catalogueHash: string;
  counts: { users: number; items: number; interactions: number };
  /** sha256 hex of each binary file */
  sha256: Record<string, string>;
  /** free-form provenance written by the importer (source files, duplicates removed, time) */
  source?: Record<string, unknown>;
}

/** The folder holding the imported dataset of node data dir `dataDir`. */
export function datasetDir(dataDir: string): string {
  return path.join(dataDir, 'data');
}

/** Whether `dataDir` holds an imported dataset. */
export function hasDataset(dataDir: string): boolean {
  return fs.existsSync(path.join(datasetDir(dataDir), 'meta.json'));
}

function assertLittleEndian(): void {
  if (os.endianness() !== 'LE') throw new Error('the dataset store assumes a little-endian host');
}

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

function bytesOf(a: Uint32Array | Float64Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function writeSynced(file: string, data: string | Uint8Array): void {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Checks the dataset's internal consistency (lengths, index ranges); throws on the first problem. */
export function checkDataset(ds: NodeDataset): void {
  const n = ds.interactions.user.length;
  if (ds.interactions.item.length !== n || ds.interactions.timestamp.length !== n) {
    throw new RangeError(`interaction arrays differ in length (user ${n}, item ${ds.interactions.item.length}, timestamp ${ds.interactions.timestamp.length})`);
  }
  const nu = ds.users.length;
  const ni = ds.items.length;
  const { user, item, timestamp } = ds.interactions;
  for (let k = 0; k < n; k++) {
    if (user[k] >= nu) throw new RangeError(`interaction ${k}: user index ${user[k]} out of range (${nu} users)`);
    if (item[k] >= ni) throw new RangeError(`interaction ${k}: item index ${item[k]} out of range (${ni} items)`);
    if (k > 0 && (user[k] < user[k - 1] || (user[k] === user[k - 1] && timestamp[k] < timestamp[k - 1]))) {
      throw new RangeError(`interaction ${k}: not sorted by (user, timestamp)`);
    }
  }
}

/** Writes the dataset's files into the empty or new folder `dir` (no atomicity here). */
export function writeDatasetFiles(dir: string, ds: NodeDataset, source?: Record<string, unknown>): DatasetMeta {
  assertLittleEndian();
  checkDataset(ds);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const bins: Record<string, Buffer> = {
    [BIN_FILES.user]: bytesOf(ds.interactions.user),
    [BIN_FILES.item]: bytesOf(ds.interactions.item),
    [BIN_FILES.timestamp]: bytesOf(ds.interactions.timestamp),
  };
  const meta: DatasetMeta = {
    format: DATASET_FORMAT,
    party: ds.party,
    catalogueHash: ds.catalogueHash,
    counts: { users: ds.users.length, items: ds.items.length, interactions: ds.interactions.user.length },
    sha256: Object.fromEntries(Object.entries(bins).map(([f, b]) => [f, sha256(b)])),
    ...(source ? { source } : {}),
  };
  writeSynced(path.join(dir, 'users.json'), JSON.stringify(ds.users));
  writeSynced(path.join(dir, 'items.json'), JSON.stringify(ds.items));
  for (const [f, b] of Object.entries(bins)) writeSynced(path.join(dir, f), b);
  // meta.json last: its presence marks a complete folder
  writeSynced(path.join(dir, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
  return meta;
}

/**
 * Stores `ds` as the node's dataset, replacing any previous one atomically: written into a staging
 * folder inside `dataDir`, then swapped in. On failure the staging folder is removed and the old
 * dataset is untouched.
 */
export function storeDataset(dataDir: string, ds: NodeDataset, source?: Record<string, unknown>): DatasetMeta {
  const staged = fs.mkdtempSync(path.join(dataDir, '.data-staging-'));
  try {
    const meta = writeDatasetFiles(staged, ds, source);
    replaceDirAtomic(staged, datasetDir(dataDir));
    return meta;
  } catch (e) {
    fs.rmSync(staged, { recursive: true, force: true });
    throw e;
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: cannot read the stored dataset (${(e as Error).message}); re-run 'fedbridge node import'`, 1);
  }
}

function readTyped<T extends Uint32Array | Float64Array>(
  dir: string,
  file: string,
  meta: DatasetMeta,
  ctor: { new (buf: ArrayBuffer, off: number, len: number): T; new (len: number): T; BYTES_PER_ELEMENT: number },
): T {
  const full = path.join(dir, file);
  const buf = fs.readFileSync(full);
  const n = meta.counts.interactions;
  if (buf.byteLength !== n * ctor.BYTES_PER_ELEMENT) {
    throw new UserError(`${full}: ${buf.byteLength} bytes, expected ${n * ctor.BYTES_PER_ELEMENT} for ${n} interactions; re-run 'fedbridge node import'`, 1);
  }
  if (meta.sha256[file] !== sha256(buf)) throw new UserError(`${full}: content does not match meta.json (corrupted); re-run 'fedbridge node import'`, 1);
  if (buf.byteOffset % ctor.BYTES_PER_ELEMENT === 0) return new ctor(buf.buffer as ArrayBuffer, buf.byteOffset, n);
  const copy = new ctor(n);
  new Uint8Array(copy.buffer).set(buf);
  return copy;
}

/**
 * Loads the node's imported dataset from `dataDir/data`. Throws a UserError naming the file if it
 * is missing, of another format, truncated or corrupted.
 */
export function loadDataset(dataDir: string): NodeDataset {
  assertLittleEndian();
  const dir = datasetDir(dataDir);
  const metaFile = path.join(dir, 'meta.json');
  if (!fs.existsSync(metaFile)) {
    throw new UserError(`${dataDir} holds no imported data (no ${metaFile}): run 'fedbridge node import --data-dir ${dataDir} ...' first`);
  }
  const meta = readJson(metaFile) as DatasetMeta;
  if (meta.format !== DATASET_FORMAT) throw new UserError(`${metaFile}: unsupported format "${meta.format}" (expected ${DATASET_FORMAT})`, 1);
  const users = readJson(path.join(dir, 'users.json')) as UserRecord[];
  const items = readJson(path.join(dir, 'items.json')) as ItemRecord[];
  if (!Array.isArray(users) || users.length !== meta.counts.users) throw new UserError(`${dir}/users.json: expected ${meta.counts.users} users`, 1);
  if (!Array.isArray(items) || items.length !== meta.counts.items) throw new UserError(`${dir}/items.json: expected ${meta.counts.items} items`, 1);
  const ds: NodeDataset = {
    party: meta.party,
    items,
    catalogueHash: meta.catalogueHash,
    users,
    interactions: {
      user: readTyped(dir, BIN_FILES.user, meta, Uint32Array),
      item: readTyped(dir, BIN_FILES.item, meta, Uint32Array),
      timestamp: readTyped(dir, BIN_FILES.timestamp, meta, Float64Array),
    },
  };
  try {
    checkDataset(ds);
  } catch (e) {
    throw new UserError(`${dir}: inconsistent stored dataset (${(e as Error).message}); re-run 'fedbridge node import'`, 1);
  }
  return ds;
}

/** Reads only meta.json (cheap), e.g. for status output. */
export function readDatasetMeta(dataDir: string): DatasetMeta {
  const metaFile = path.join(datasetDir(dataDir), 'meta.json');
  if (!fs.existsSync(metaFile)) throw new UserError(`${dataDir} holds no imported data: run 'fedbridge node import' first`);
  return readJson(metaFile) as DatasetMeta;
}
