import * as fs from 'node:fs';

/**
 * fs.readFileSync for a path a person gave on the command line. Reading a folder fails in read(2),
 * where Node's error carries no path; this one names it, so `fsUserError` can say which argument
 * was a folder ("PATH is a directory; expected a file"). Every other error passes unchanged.
 */
export function readFileAt(p: string): Buffer;
export function readFileAt(p: string, encoding: BufferEncoding): string;
export function readFileAt(p: string, encoding?: BufferEncoding): Buffer | string {
  try {
    return encoding ? fs.readFileSync(p, encoding) : fs.readFileSync(p);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err && err.code === 'EISDIR' && err.path === undefined) err.path = p;
    throw e;
  }
}
