/**
 * The dataset folder under concurrent imports and crashes: a reader never returns a mix of two
 * imports (every file is checked against the sha256 in the meta.json it read first), a torn meta.json
 * is a one-line error, and a crash between replaceDirAtomic's two renames is repaired on the next
 * load or import (no DIR/data, only DIR/data.old-*), with what dead processes left swept away.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { generateSynthetic } from '../../../participant-node/data/generate';
import { importCsv } from '../../../participant-node/data/import';
import { datasetDir, loadDataset, readDatasetMeta } from '../../../participant-node/data/store';
import { initNode } from '../../../participant-node/identity';
import { catalogueHash } from '../../../shared/data/catalogue';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { UserError } from '../../../shared/cli/errors';
import { tempDir } from './helpers';

let root: string;
let gen: string;
/** a second catalogue with the same counts as the first, one topic changed */
let itemsB: string;

const files = (items?: string) => ({
  users: path.join(gen, 'platform', 'users.csv'),
  items: items ?? path.join(gen, 'platform', 'items.csv'),
  interactions: path.join(gen, 'platform', 'interactions.csv'),
});

/** A pid that belonged to a process which has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

beforeAll(async () => {
  await sodiumReady();
  root = tempDir('store');
  gen = path.join(root, 'gen');
  await generateSynthetic({ out: gen, seed: 5, scale: 'small', parties: ['platform'] });
  const lines = fs.readFileSync(files().items, 'utf8').split('\n');
  const f = lines[1].split(',');
  f[4] = f[4] === 'programming' ? 'home' : 'programming';
  lines[1] = f.join(',');
  itemsB = path.join(root, 'items-b.csv');
  fs.writeFileSync(itemsB, lines.join('\n'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function node(name: string, items?: string): Promise<string> {
  const dir = path.join(root, name);
  await initNode(dir, 'platform');
  await importCsv({ dataDir: dir, ...files(items) });
  return dir;
}

describe('a reader racing an import', () => {
  let dir: string;
  let other: string; // the other import's complete data folder, swapped in during a read
  let spy: jest.SpyInstance | undefined;
  beforeEach(async () => {
    dir = await node(`race-${Math.random().toString(16).slice(2)}`);
    const b = await node(`${path.basename(dir)}-b`, itemsB);
    other = path.join(dir, 'swap-other');
    fs.renameSync(datasetDir(b), other);
  });
  afterEach(() => spy?.mockRestore());

  /** Swaps DIR/data with the other import right after meta.json is read, `times` times. */
  function swapAfterMeta(times: number): { swaps: () => number } {
    let swaps = 0;
    const real = fs.readFileSync;
    const metaFile = path.join(datasetDir(dir), 'meta.json');
    // the CommonJS module object (the modules' `import * as fs` bindings read through to it)
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    spy = jest.spyOn(require('node:fs') as typeof fs, 'readFileSync').mockImplementation(((f: fs.PathOrFileDescriptor, o?: unknown) => {
      const out = (real as (f: fs.PathOrFileDescriptor, o?: unknown) => Buffer)(f, o);
      if (f === metaFile && swaps < times) {
        swaps++;
        fs.renameSync(datasetDir(dir), `${other}.tmp`);
        fs.renameSync(other, datasetDir(dir));
        fs.renameSync(`${other}.tmp`, other);
      }
      return out;
    }) as typeof fs.readFileSync);
    return { swaps: () => swaps };
  }

  it('a swap between meta.json and the other files: retried, the result is one whole import', () => {
    const s = swapAfterMeta(1);
    const ds = loadDataset(dir);
    expect(s.swaps()).toBe(1);
    // the catalogue hash matches the items loaded (before: meta.json of one import, items.json of the other)
    expect(catalogueHash(ds.items)).toBe(ds.catalogueHash);
    expect(ds.catalogueHash).toBe(readDatasetMeta(dir).catalogueHash);
  });

  it('an import swapping on every try: a precise error', () => {
    swapAfterMeta(Infinity);
    expect(() => loadDataset(dir)).toThrow(/the data dir changed while it was read \(an import in progress\?\): try again/);
  });

  it('a mixed folder (items.json of another import, meta.json unchanged) is corrupted, never loaded', () => {
    fs.copyFileSync(path.join(other, 'items.json'), path.join(datasetDir(dir), 'items.json'));
    expect(() => loadDataset(dir)).toThrow(/items\.json: content does not match meta\.json \(corrupted\); re-run 'fedbridge node import'/);
  });

  it('a dataset of an earlier version (JSON files not hashed): loads; a mixed items.json fails the recomputed catalogue hash', () => {
    const metaFile = path.join(datasetDir(dir), 'meta.json');
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    delete meta.sha256['users.json'];
    delete meta.sha256['items.json'];
    fs.writeFileSync(metaFile, JSON.stringify(meta));
    expect(loadDataset(dir).catalogueHash).toBe(meta.catalogueHash);
    fs.copyFileSync(path.join(other, 'items.json'), path.join(datasetDir(dir), 'items.json'));
    expect(() => loadDataset(dir)).toThrow(/items\.json: its catalogue hash [0-9a-f]{16}… is not the [0-9a-f]{16}… of meta\.json; re-run/);
  });

  it.each([
    ['truncated', (t: string) => t.slice(0, 40)],
    ['not an object', () => '[1,2]'],
    ['counts missing', (t: string) => JSON.stringify({ ...JSON.parse(t), counts: undefined })],
  ])('a %s meta.json is a one-line error', (_name, edit) => {
    const metaFile = path.join(datasetDir(dir), 'meta.json');
    fs.writeFileSync(metaFile, edit(fs.readFileSync(metaFile, 'utf8')));
    let err: unknown;
    try {
      loadDataset(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/meta\.json: (cannot read the stored dataset|not a dataset description|unsupported format)/);
    expect((err as Error).message).not.toContain('\n');
    expect(() => readDatasetMeta(dir)).toThrow(UserError);
  });
});

describe('a crash between the two renames of the folder swap', () => {
  /** The state a process killed between `data -> data.old-*` and `staging -> data` leaves. */
  async function crashed(name: string, pid: number): Promise<{ dir: string; before: string }> {
    const dir = await node(name);
    const before = readDatasetMeta(dir).catalogueHash;
    const b = await node(`${name}-b`, itemsB);
    fs.renameSync(datasetDir(dir), path.join(dir, `data.old-${pid}-0a1b2c3d`));
    fs.renameSync(datasetDir(b), path.join(dir, `.data-staging-${pid}-4e5f6071`)); // complete, never swapped in
    return { dir, before };
  }

  it('load renames the old folder back and sweeps what the dead process left', async () => {
    const { dir, before } = await crashed('crash-load', deadPid());
    fs.mkdirSync(path.join(dir, '.data-staging-77aa88bb')); // an earlier version's name (no pid): its writer is gone
    const ds = loadDataset(dir);
    expect(ds.catalogueHash).toBe(before);
    expect(fs.readdirSync(dir).sort()).toEqual(['data', 'identity.key', 'node.json']);
  });

  it('import repairs it too, then replaces the data', async () => {
    const { dir } = await crashed('crash-import', deadPid());
    const r = await importCsv({ dataDir: dir, ...files(itemsB) });
    expect(loadDataset(dir).catalogueHash).toBe(r.catalogueHash);
    expect(fs.readdirSync(dir).sort()).toEqual(['data', 'identity.key', 'node.json']);
  });

  it('the folders of a live process (an import in progress) are left alone', async () => {
    const { dir } = await crashed('crash-live', process.pid);
    expect(() => loadDataset(dir)).toThrow(/holds no imported data/);
    expect(fs.readdirSync(dir).sort()).toEqual([`.data-staging-${process.pid}-4e5f6071`, `data.old-${process.pid}-0a1b2c3d`, 'identity.key', 'node.json']);
  });

  it('an incomplete old folder is not restored (nor deleted)', async () => {
    const pid = deadPid();
    const { dir } = await crashed('crash-torn', pid);
    const old = path.join(dir, `data.old-${pid}-0a1b2c3d`);
    fs.appendFileSync(path.join(old, 'interactions.ts.f64'), Buffer.alloc(8));
    expect(() => loadDataset(dir)).toThrow(/holds no imported data/);
    expect(fs.existsSync(old)).toBe(true);
    expect(fs.existsSync(path.join(dir, `.data-staging-${pid}-4e5f6071`))).toBe(false);
  });
});
