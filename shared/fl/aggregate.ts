/**
 * The coordinator's side of a round after secure aggregation (DESIGN §4 step 5): decode the
 * unmasked sum of the survivors' encoded updates, average with uniform weights (or, under the
 * policy's offer scope, over the parties that can touch each coordinate: shared/fl/offers.ts), apply
 * the server optimizer. Pure: the same function serves the gRPC coordinator and in-process simulations.
 */
import { decodeAggregate } from '../dp/encode';
import { applyServerUpdate, type ServerOptimizerConfig, type ServerOptimizerState } from './server';

export interface AggregateParams {
  gamma: number;
  bits: number;
  rotationSeed: Uint8Array | null;
}

export function nextGlobalModel(
  global: Float32Array,
  sum: Uint32Array,
  survivors: number,
  enc: AggregateParams,
  optimizer: ServerOptimizerConfig,
  state: ServerOptimizerState,
  /** per-coordinate divisors (averagingDivisors) instead of the survivor count */
  divisors?: Float64Array,
): Float32Array {
  if (divisors && divisors.length !== global.length) throw new RangeError(`"divisors" expected length ${global.length}, got ${divisors.length}`);
  const avg = decodeAggregate(sum, enc, global.length, divisors ? 1 : survivors);
  if (divisors) for (let i = 0; i < avg.length; i++) avg[i] /= divisors[i];
  return applyServerUpdate(global, avg, optimizer, state);
}

/** Exact sum mod 2^bits of Uint32 vectors (what secure aggregation reveals). */
export function modularSum(vectors: Uint32Array[], bits: number): Uint32Array {
  if (vectors.length === 0) throw new RangeError('no vectors to sum');
  const n = vectors[0].length;
  const out = new Uint32Array(n);
  const mask = bits === 32 ? 0xffffffff : 2 ** bits - 1;
  for (const v of vectors) {
    if (v.length !== n) throw new RangeError(`vector length ${v.length} differs from ${n}`);
    for (let i = 0; i < n; i++) out[i] = ((out[i] + v[i]) & mask) >>> 0;
  }
  return out;
}
