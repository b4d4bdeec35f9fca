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
  process.stdout.write(JSON.stringify(obj) + '\n');
}
