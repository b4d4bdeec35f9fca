/**
 * Small argument checks shared by every module (noble-hashes style).
 *
 * A wrong *type* throws TypeError, a wrong *length or range* throws RangeError; the message always
 * names the argument, e.g. `"seed" expected Uint8Array of length 32, got length=16`.
 */

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'Array';
  if (v instanceof Uint8Array) return `Uint8Array(length=${v.length})`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

/** Asserts `v` is a Uint8Array, optionally of one of the given lengths. Returns it for chaining. */
export function abytes(name: string, v: unknown, ...lengths: number[]): Uint8Array {
  if (!(v instanceof Uint8Array)) {
    throw new TypeError(`"${name}" expected Uint8Array, got ${describe(v)}`);
  }
  if (lengths.length > 0 && !lengths.includes(v.length)) {
    throw new RangeError(`"${name}" expected Uint8Array of length ${lengths.join(' or ')}, got length=${v.length}`);
  }
  return v;
}

/** Asserts `v` is a Uint32Array, optionally of the given length. */
export function au32(name: string, v: unknown, length?: number): Uint32Array {
  if (!(v instanceof Uint32Array)) {
    throw new TypeError(`"${name}" expected Uint32Array, got ${describe(v)}`);
  }
  if (length !== undefined && v.length !== length) {
    throw new RangeError(`"${name}" expected Uint32Array of length ${length}, got length=${v.length}`);
  }
  return v;
}

/** Asserts `v` is a safe integer in [min, max] (inclusive). */
export function aint(name: string, v: unknown, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    throw new TypeError(`"${name}" expected a safe integer, got ${typeof v === 'number' ? String(v) : describe(v)}`);
  }
  if (v < min || v > max) {
    throw new RangeError(`"${name}" expected an integer in [${min}, ${max}], got ${v}`);
  }
  return v;
}

/** Asserts `v` is a finite number in [min, max]; `open` makes the bounds exclusive. */
export function anum(name: string, v: unknown, min = -Infinity, max = Infinity, open: { min?: boolean; max?: boolean } = {}): number {
  if (typeof v !== 'number' || Number.isNaN(v)) {
    throw new TypeError(`"${name}" expected a number, got ${typeof v === 'number' ? String(v) : describe(v)}`);
  }
  if (!Number.isFinite(v)) throw new RangeError(`"${name}" expected a finite number, got ${v}`);
  const lowOk = open.min ? v > min : v >= min;
  const highOk = open.max ? v < max : v <= max;
  if (!lowOk || !highOk) {
    const lb = open.min ? '(' : '[';
    const rb = open.max ? ')' : ']';
    throw new RangeError(`"${name}" expected a number in ${lb}${min}, ${max}${rb}, got ${v}`);
  }
  return v;
}

/** Asserts `v` is a non-empty string. */
export function astr(name: string, v: unknown): string {
  if (typeof v !== 'string') throw new TypeError(`"${name}" expected string, got ${describe(v)}`);
  if (v.length === 0) throw new RangeError(`"${name}" expected a non-empty string`);
  return v;
}
