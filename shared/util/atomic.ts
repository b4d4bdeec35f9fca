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
 * Replaces directory `target` with the fully written directory `staged` (same parent): the old one is
 * moved aside, the new one renamed in, then the old one removed. If the process dies in between,
 * `target` is either the old or the new directory (plus a leftover `.old` folder at worst).
 */
export function replaceDirAtomic(staged: string, target: string): void {
  const old = `${target}.old-${randomBytes(4).toString('hex')}`;
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
