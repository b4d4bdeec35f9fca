/**
 * How an imported dataset lives in the node data dir, and how it is loaded back (fast: users and
 * items as JSON, interactions as raw little-endian typed arrays, no parsing per row).
 *
 *   DIR/data/meta.json                 { format, party, catalogueHash, counts, sha256 of every other file, ... }
 *   DIR/data/users.json                UserRecord[] in user-index order
 *   DIR/data/items.json                ItemRecord[] in catalogue order
 *   DIR/data/interactions.user.u32     Uint32 user index per interaction
 *   DIR/data/interactions.item.u32     Uint32 item index per interaction
 *   DIR/data/interactions.ts.f64       Float64 timestamp per interaction
 *
 * The whole folder is replaced at once (`storeDataset`): the new one is written into a staging
 * folder inside DIR and swapped in with `replaceDirAtomic`. A reader opens the files one by one by
 * path, so a swap in between could hand it meta.json of one import and items.json of the other:
 * meta.json holds the sha256 of every other file, each file is checked against it on load, and a
 * mismatch while meta.json itself changed is "the data dir changed while it was read" (retried
 * twice, then reported); otherwise it is a corrupted file. The catalogue hash is recomputed from
 * the loaded items (when libsodium is initialised, as in `node join` and `node import`; otherwise
 * the sha256 of items.json binds it to the hash written at import). A crash inside the swap is
 * repaired on the next load or import (`recoverDir`). Integrity, not security: the data dir is the
 * node's own.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { makeStagingDir, recoverDir, replaceDirAtomic } from '../../shared/util/atomic';
import { UserError } from '../../shared/cli/errors';
import { catalogueHash } from '../../shared/data/catalogue';
import { sodium } from '../../shared/crypto/sodium';
import type { ItemRecord, NodeDataset, UserRecord } from './dataset';

export const DATASET_FORMAT = 'fedbridge-dataset/1';

const JSON_FILES = { users: 'users.json', items: 'items.json' } as const;
const STAGING_PREFIX = '.data-staging-';

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
  /** sha256 hex of every other file (datasets of earlier versions: the binary files only) */
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

/** SHA-256 of a stored file's bytes, hex (the dataset's and the model's meta.json record these). */
export function sha256(buf: Uint8Array): string {
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
  const files: Record<string, Buffer> = {
    [JSON_FILES.users]: Buffer.from(JSON.stringify(ds.users), 'utf8'),
    [JSON_FILES.items]: Buffer.from(JSON.stringify(ds.items), 'utf8'),
    ...bins,
  };
  const meta: DatasetMeta = {
    format: DATASET_FORMAT,
    party: ds.party,
    catalogueHash: ds.catalogueHash,
    counts: { users: ds.users.length, items: ds.items.length, interactions: ds.interactions.user.length },
    sha256: Object.fromEntries(Object.entries(files).map(([f, b]) => [f, sha256(b)])),
    ...(source ? { source } : {}),
  };
  for (const [f, b] of Object.entries(files)) writeSynced(path.join(dir, f), b);
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
  recoverDataset(dataDir);
  const staged = makeStagingDir(dataDir, STAGING_PREFIX);
  try {
    const meta = writeDatasetFiles(staged, ds, source);
    replaceDirAtomic(staged, datasetDir(dataDir));
    return meta;
  } catch (e) {
    fs.rmSync(staged, { recursive: true, force: true });
    throw e;
  }
}

const metaSchema = z.object({
  format: z.string(),
  party: z.string(),
  catalogueHash: z.string(),
  counts: z.object({ users: z.number().int().nonnegative(), items: z.number().int().nonnegative(), interactions: z.number().int().nonnegative() }),
  sha256: z.record(z.string(), z.string()),
  source: z.record(z.string(), z.unknown()).optional(),
});

const REIMPORT = "re-run 'fedbridge node import'";

function parseMeta(file: string, bytes: Buffer): DatasetMeta {
  let obj: unknown;
  try {
    obj = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UserError(`${file}: cannot read the stored dataset (${(e as Error).message}); ${REIMPORT}`, 1);
  }
  if (obj !== null && typeof obj === 'object' && (obj as { format?: unknown }).format !== DATASET_FORMAT) {
    throw new UserError(`${file}: unsupported format "${String((obj as { format?: unknown }).format)}" (expected ${DATASET_FORMAT})`, 1);
  }
  const r = metaSchema.safeParse(obj);
  if (!r.success) throw new UserError(`${file}: not a dataset description (${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}); ${REIMPORT}`, 1);
  return r.data;
}

/** The data dir was swapped by an import while this reader was between its files. */
class ChangedWhileRead extends UserError {}

/** Reads the folder's files one by one, each checked against the meta.json read first. */
function loadOnce(dataDir: string): NodeDataset {
  const dir = datasetDir(dataDir);
  const metaFile = path.join(dir, 'meta.json');
  let metaBytes: Buffer;
  try {
    metaBytes = fs.readFileSync(metaFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UserError(`${dataDir} holds no imported data (no ${metaFile}): run 'fedbridge node import --data-dir ${dataDir} ...' first`);
    }
    throw new UserError(`${metaFile}: ${(e as Error).message}`, 1);
  }
  const meta = parseMeta(metaFile, metaBytes);
  /** A file that does not match meta.json: an import swapped the folder meanwhile, or it is corrupted. */
  const mismatch = (file: string, what: string): UserError => {
    let now: Buffer | undefined;
    try {
      now = fs.readFileSync(metaFile);
    } catch {
      now = undefined;
    }
    if (!now || !now.equals(metaBytes)) return new ChangedWhileRead(`${dir}: the data dir changed while it was read (an import in progress?): try again`, 1);
    return new UserError(`${file}: ${what}; ${REIMPORT}`, 1);
  };
  const read = (name: string, bytes?: number, what = ''): Buffer => {
    const full = path.join(dir, name);
    let buf: Buffer;
    try {
      buf = fs.readFileSync(full);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw mismatch(full, 'missing');
      throw new UserError(`${full}: ${(e as Error).message}`, 1);
    }
    if (bytes !== undefined && buf.byteLength !== bytes) throw mismatch(full, `${buf.byteLength} bytes, expected ${bytes} for ${what}`);
    const want = meta.sha256[name];
    if (want === undefined) {
      // datasets of earlier versions hash the binary files only; their JSON files are checked by count
      // and (items) by the catalogue hash below
      if (!Object.values(JSON_FILES).includes(name as never)) throw new UserError(`${metaFile}: no sha256 for ${name}; ${REIMPORT}`, 1);
    } else if (want !== sha256(buf)) throw mismatch(full, 'content does not match meta.json (corrupted)');
    return buf;
  };
  const json = (name: string): unknown => {
    const buf = read(name);
    try {
      return JSON.parse(buf.toString('utf8'));
    } catch (e) {
      throw mismatch(path.join(dir, name), `cannot read the stored dataset (${(e as Error).message})`);
    }
  };
  const typed = <T extends Uint32Array | Float64Array>(
    name: string,
    ctor: { new (buf: ArrayBuffer, off: number, len: number): T; new (len: number): T; BYTES_PER_ELEMENT: number },
  ): T => {
    const n = meta.counts.interactions;
    const buf = read(name, n * ctor.BYTES_PER_ELEMENT, `${n} interactions`);
    if (buf.byteOffset % ctor.BYTES_PER_ELEMENT === 0) return new ctor(buf.buffer as ArrayBuffer, buf.byteOffset, n);
    const copy = new ctor(n);
    new Uint8Array(copy.buffer).set(buf);
    return copy;
  };
  const users = json(JSON_FILES.users) as UserRecord[];
  const items = json(JSON_FILES.items) as ItemRecord[];
  if (!Array.isArray(users) || users.length !== meta.counts.users) throw mismatch(`${dir}/users.json`, `expected ${meta.counts.users} users`);
  if (!Array.isArray(items) || items.length !== meta.counts.items) throw mismatch(`${dir}/items.json`, `expected ${meta.counts.items} items`);
  const ds: NodeDataset = {
    party: meta.party,
    items,
    catalogueHash: meta.catalogueHash,
    users,
    interactions: {
      user: typed(BIN_FILES.user, Uint32Array),
      item: typed(BIN_FILES.item, Uint32Array),
      timestamp: typed(BIN_FILES.timestamp, Float64Array),
    },
  };
  if (sodiumIsReady()) {
    let actual: string;
    try {
      actual = catalogueHash(items);
    } catch (e) {
      throw mismatch(`${dir}/items.json`, `not a catalogue (${(e as Error).message})`);
    }
    if (actual !== meta.catalogueHash) throw mismatch(`${dir}/items.json`, `its catalogue hash ${actual.slice(0, 16)}… is not the ${meta.catalogueHash.slice(0, 16)}… of meta.json`);
  }
  try {
    checkDataset(ds);
  } catch (e) {
    throw new UserError(`${dir}: inconsistent stored dataset (${(e as Error).message}); ${REIMPORT}`, 1);
  }
  return ds;
}

function sodiumIsReady(): boolean {
  try {
    sodium();
    return true;
  } catch {
    return false;
  }
}

/** Whether `dir` is a complete dataset folder: meta.json readable and every file it hashes matches. */
function isCompleteDatasetDir(dir: string): boolean {
  try {
    const meta = parseMeta(path.join(dir, 'meta.json'), fs.readFileSync(path.join(dir, 'meta.json')));
    for (const f of [...Object.values(JSON_FILES), ...Object.values(BIN_FILES)]) {
      const buf = fs.readFileSync(path.join(dir, f));
      if (meta.sha256[f] !== undefined && meta.sha256[f] !== sha256(buf)) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Repairs the dataset folder after a process died while replacing it (no DIR/data, only
 * DIR/data.old-*: renamed back) and removes staging and old folders that dead processes left.
 */
export function recoverDataset(dataDir: string): void {
  recoverDir(datasetDir(dataDir), STAGING_PREFIX, isCompleteDatasetDir);
}

/**
 * Loads the node's imported dataset from `dataDir/data`. Throws a UserError naming the file if it
 * is missing, of another format, truncated or corrupted, or if an import replaced the folder while
 * it was read (after two retries).
 */
export function loadDataset(dataDir: string): NodeDataset {
  assertLittleEndian();
  recoverDataset(dataDir);
  for (let attempt = 1; ; attempt++) {
    try {
      return loadOnce(dataDir);
    } catch (e) {
      if (!(e instanceof ChangedWhileRead) || attempt >= 3) throw e;
    }
  }
}

/** Reads only meta.json (cheap), e.g. for status output. */
export function readDatasetMeta(dataDir: string): DatasetMeta {
  recoverDataset(dataDir);
  const metaFile = path.join(datasetDir(dataDir), 'meta.json');
  if (!fs.existsSync(metaFile)) throw new UserError(`${dataDir} holds no imported data: run 'fedbridge node import' first`);
  return parseMeta(metaFile, fs.readFileSync(metaFile));
}
