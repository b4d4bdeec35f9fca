import { forTerminal } from '../util/text';

/**
 * An error whose message a person can act on. The CLI prints it as one line
 * (`fedbridge: <message>`) and exits with `exitCode` (2 = bad usage or input, 1 = operation failed).
 */
export class UserError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2 = 2) {
    super(message);
    this.name = 'UserError';
  }
}

/** Parses a CLI number option, naming the flag in the error. */
export function parseNumberOption(flag: string, raw: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) throw new UserError(`${flag} expects a number, got "${raw}"`);
  if (opts.integer && !Number.isInteger(v)) throw new UserError(`${flag} expects an integer, got "${raw}"`);
  if (opts.min !== undefined && v < opts.min) throw new UserError(`${flag} must be >= ${opts.min}, got ${raw}`);
  if (opts.max !== undefined && v > opts.max) throw new UserError(`${flag} must be <= ${opts.max}, got ${raw}`);
  return v;
}

/** Prints the one JSON object of a `--json` command on stdout (progress and logs go to stderr). */
export function printJson(obj: unknown): void {
  process.stdout.write(jsonLine(obj) + '\n');
}

/**
 * `obj` as one JSON line that is also safe on a terminal: JSON.stringify escapes C0 but leaves DEL,
 * C1 (e.g. the 8-bit CSI U+009B), the line separators and the bidi controls raw inside strings; those
 * are written as \uXXXX escapes too (forTerminal), which JSON reads back as the same characters.
 */
export function jsonLine(obj: unknown): string {
  return forTerminal(JSON.stringify(obj));
}

const FS_CODES = new Set(['ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM']);

/**
 * A Node filesystem error on a path (ENOENT, EEXIST, ENOTDIR, EISDIR, EACCES, EPERM) as a UserError
 * naming the path and what was expected there; null for anything else. The CLI's top-level handler
 * uses it, so a file where a folder is expected (or the reverse) is a one-line reason at every site.
 */
export function fsUserError(e: unknown): UserError | null {
  // duck-typed: errors from Node's own fs are not `instanceof Error` in every realm (jest's sandbox)
  const err = (e ?? {}) as NodeJS.ErrnoException & { dest?: string };
  if (typeof err.code !== 'string' || !FS_CODES.has(err.code)) return null;
  // reading a folder opens fine and fails on read(2), where Node does not say which path it was
  if (err.code === 'EISDIR' && err.syscall === 'read' && err.path === undefined) return new UserError('a directory was given where a file is expected');
  if (typeof err.path !== 'string') return null;
  // a rename fails on its target (the source is our own temporary file)
  const p = err.syscall === 'rename' && typeof err.dest === 'string' ? err.dest : err.path;
  const listing = err.syscall === 'scandir' || err.syscall === 'opendir';
  switch (err.code) {
    case 'ENOENT':
      return new UserError(`${p}: no such file or directory`);
    case 'EEXIST':
      return new UserError(err.syscall === 'mkdir' ? `${p} exists and is not a directory; expected a directory (or a path that does not exist yet)` : `${p} already exists`);
    case 'ENOTDIR':
      return new UserError(listing ? `${p} is not a directory; expected a directory` : `${p}: a part of this path is a file, not a directory`);
    case 'EISDIR':
      return new UserError(`${p} is a directory; expected a file`);
    default:
      return new UserError(`${p}: permission denied`);
  }
}
