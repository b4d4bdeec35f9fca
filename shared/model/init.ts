/**
 * Initial values of the shared parameters, in pure TypeScript (the coordinator creates the first
 * global model without tfjs). Deterministic for a seed, which the run records:
 *   kernels: Glorot-uniform; biases: 0; item embedding: N(0, 0.05^2); item bias: 0.
 * Non-cryptographic PRNG: initial weights are public.
 */
import { Xoshiro128 } from '../util/prng';
import { layoutSize, type ParamSpec } from './layout';

export function initSharedParams(layout: ParamSpec[], seed: number): Float32Array {
  const rng = new Xoshiro128(seed);
  const out = new Float32Array(layoutSize(layout));
  for (const p of layout) {
    const view = out.subarray(p.offset, p.offset + p.size);
    if (p.name.endsWith('/kernel')) {
      const [fanIn, fanOut] = p.shape;
      const lim = Math.sqrt(6 / (fanIn + fanOut));
      for (let i = 0; i < view.length; i++) view[i] = (rng.nextFloat() * 2 - 1) * lim;
    } else if (p.name === 'item_embedding') {
      for (let i = 0; i < view.length; i++) view[i] = rng.nextGaussian() * 0.05;
    } // biases stay 0
  }
  return out;
}
