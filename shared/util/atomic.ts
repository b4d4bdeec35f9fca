/**
 * Crash-safe file writes: write to a temporary file in the same directory, fsync it, rename over
 * the target, fsync the directory. A reader sees either the old file or the new one, never a torn one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  try {
    fs.chmodSync(tmp, mode); // umask may have narrowed or widened it
    fs.renameSync(tmp, file);
  } catch (e) {
    // e.g. `file` is a directory: leave nothing behind
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

/**
 * A new, empty staging folder `parent/PREFIX<pid>-<random>` (mode 0700). The pid in the name lets
 * `recoverDir` tell the folder of a live writer from one left by a process that died.
 */
export function makeStagingDir(parent: string, prefix: string): string {
  const dir = path.join(parent, `${prefix}${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/**
 * Replaces directory `target` with the fully written directory `staged` (same parent): the old one is
 * moved aside to `TARGET.old-<pid>-<random>`, the new one renamed in, then the old one removed. This
 * takes two renames: a process that dies between them leaves NO `target`, only the aside folder
 * (and the staged one). `recoverDir` repairs that on the next load or write: it renames the aside
 * folder back, so after a crash `target` is the old directory, or the new one if the swap finished.
 */
export function replaceDirAtomic(staged: string, target: string): void {
  const old = `${target}.old-${process.pid}-${randomBytes(4).toString('hex')}`;
  const had = fs.existsSync(target);
  if (had) fs.renameSync(target, old);
  try {
    fs.renameSync(staged, target);
  } catch (e) {
    if (had) fs.renameSync(old, target);
    throw e;
  }
  fsyncDir(path.dirname(target));
  if (had) fs.rmSync(old, { recursive: true, force: true });
}

/** Whether the process that named a folder `...<pid>-<random>` is gone (a name without a pid: written by an older version, gone). */
function ownerDead(suffix: string): boolean {
  const m = /^(\d+)-[0-9a-f]+$/.exec(suffix);
  if (!m) return true;
  const pid = Number(m[1]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Repairs what a process that died inside `replaceDirAtomic` (or while staging) left next to
 * `target`: if `target` is missing, the newest complete `TARGET.old-*` folder of a dead process is
 * renamed back (`isComplete` checks it, e.g. against its own hashes); then the `TARGET.old-*` and
 * `stagingPrefix*` folders of dead processes are removed. Folders of a live process (a write in
 * progress, on this host) are left alone. Returns what it did, for messages and tests.
 */
export function recoverDir(target: string, stagingPrefix: string, isComplete: (dir: string) => boolean): { restored?: string; removed: string[] } {
  const parent = path.dirname(target);
  const oldPrefix = `${path.basename(target)}.old-`;
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return { removed: [] };
  }
  const stale = (n: string): boolean =>
    (n.startsWith(oldPrefix) && ownerDead(n.slice(oldPrefix.length))) || (n.startsWith(stagingPrefix) && ownerDead(n.slice(stagingPrefix.length)));
  const out: { restored?: string; removed: string[] } = { removed: [] };
  if (!fs.existsSync(target)) {
    const olds = names
      .filter((n) => n.startsWith(oldPrefix) && stale(n) && isComplete(path.join(parent, n)))
      .map((n) => ({ n, t: fs.statSync(path.join(parent, n)).ctimeMs }))
      .sort((a, b) => b.t - a.t);
    if (olds.length) {
      try {
        fs.renameSync(path.join(parent, olds[0].n), target);
        fsyncDir(parent);
        out.restored = olds[0].n;
      } catch (e) {
        // another process restored it first
        if (!fs.existsSync(target)) throw e;
      }
    }
  }
  const targetThere = fs.existsSync(target);
  for (const n of names) {
    if (n === out.restored || !stale(n)) continue;
    if (!targetThere && n.startsWith(oldPrefix)) continue; // nothing complete to restore: keep what there is
    fs.rmSync(path.join(parent, n), { recursive: true, force: true });
    out.removed.push(n);
  }
  return out;
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // some filesystems do not allow fsync on directories; the rename is still atomic
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
