/**
 * Parity of a computed vector against a reference (bench/gpu.ts: a GPU backend's gradients against
 * the cpu backend's). Pure functions.
 */

export interface ParityError {
  /** max_i |a_i - b_i| / max_i |b_i|: the largest deviation, relative to the reference's scale */
  maxRel: number;
  /** ||a - b||_2 / ||b||_2 */
  relL2: number;
  /** max_i |a_i - b_i| */
  maxAbs: number;
  n: number;
}

function ratio(num: number, den: number): number {
  if (den > 0) return num / den;
  return num === 0 ? 0 : Infinity;
}

/**
 * Deviation of `a` from the reference `b` (same length). Non-finite entries make the result NaN
 * (never a silent pass). Both zero vectors: 0; a zero reference with a non-zero `a`: Infinity.
 */
export function parityError(a: ArrayLike<number>, b: ArrayLike<number>): ParityError {
  if (a.length !== b.length) throw new RangeError(`parityError: lengths differ (${a.length} vs ${b.length})`);
  let maxAbs = 0;
  let maxRef = 0;
  let num = 0;
  let den = 0;
  let nonFinite = false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (!Number.isFinite(x) || !Number.isFinite(y)) {
      nonFinite = true;
      continue;
    }
    const e = Math.abs(x - y);
    if (e > maxAbs) maxAbs = e;
    if (Math.abs(y) > maxRef) maxRef = Math.abs(y);
    num += e * e;
    den += y * y;
  }
  if (nonFinite) return { maxRel: NaN, relL2: NaN, maxAbs: NaN, n: a.length };
  return { maxRel: ratio(maxAbs, maxRef), relL2: ratio(Math.sqrt(num), Math.sqrt(den)), maxAbs, n: a.length };
}

/** Largest per-element relative error |a_i - b_i| / |b_i| over entries with |b_i| >= floor. */
export function maxElementRelError(a: ArrayLike<number>, b: ArrayLike<number>, floor: number): number {
  if (a.length !== b.length) throw new RangeError(`maxElementRelError: lengths differ (${a.length} vs ${b.length})`);
  if (!(floor > 0)) throw new RangeError(`"floor" expected > 0, got ${floor}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) return NaN;
    if (Math.abs(b[i]) < floor) continue;
    const r = Math.abs(a[i] - b[i]) / Math.abs(b[i]);
    if (r > worst) worst = r;
  }
  return worst;
}
