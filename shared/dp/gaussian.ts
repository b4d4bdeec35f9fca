/**
 * Continuous Gaussian noise from libsodium's CSPRNG, for DP-SGD inside local training (the tfjs
 * path adds it as a tensor; tf.randomNormal is never used: it is seeded from the JS engine's non-cryptographic RNG).
 *
 * Method: Box-Muller on 53-bit uniforms. Each pair of outputs consumes four 32-bit CSPRNG words
 * (u1 in (0,1], u2 in [0,1), 53 bits each); z0 = r cos(2 pi u2), z1 = r sin(2 pi u2) with
 * r = sigma sqrt(-2 ln u1). Random bytes come from `csprngBytes` (bits.ts: libsodium randombytes_buf key, ChaCha20
 * expansion), 256 KiB at a time.
 *
 * Known limits, stated plainly:
 * - This is floating-point noise. Mironov (CCS 2012) showed that the low-order bits of naive
 *   floating-point Laplace/Gaussian samples can leak the input; the rigorous integer path of this
 *   project is the exact discrete Gaussian (discrete.ts) used by `round-noise`. DP-SGD in float32
 *   tensors shares this limitation with TF Privacy and Opacus (non-secure mode); the accountant
 *   treats the noise as an ideal Gaussian.
 * - The tail is truncated at about sqrt(2 ln 2^53) = 8.6 sigma (u1 >= 2^-53), a probability of
 *   1e-17 per sample that the accountant does not model.
 */
import { anum, aint } from '../util/check';
import { csprngBytes } from './bits';

const TWO_PI = 2 * Math.PI;
const INV_2_53 = 1 / 9007199254740992;
const TWO_26 = 67108864;

let pool: Uint32Array = new Uint32Array(0);
let poolPos = 0;
const POOL_WORDS = 65536; // 256 KiB

function refill(minWords: number): void {
  pool.fill(0); // used random bits determine secret noise: wipe them
  const words = Math.max(POOL_WORDS, minWords);
  const bytes = csprngBytes(words * 4);
  pool = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
  poolPos = 0;
}

/**
 * Fills `out` (or a new Float32Array of length `n`) with independent N(0, sigma^2) samples from the
 * CSPRNG. Requires `await sodiumReady()` first. Returns `out`.
 */
export function gaussianNoise<T extends Float32Array | Float64Array = Float32Array>(n: number, sigma: number, out?: T): T {
  aint('n', n, 0);
  anum('sigma', sigma, 0);
  const dst = (out ?? new Float32Array(n)) as T;
  if (dst.length < n) throw new RangeError(`"out" expected length >= ${n}, got length=${dst.length}`);
  let i = 0;
  while (i < n) {
    // words needed for the rest, capped to one pool
    if (pool.length - poolPos < 4) refill(4);
    const p = pool;
    let pos = poolPos;
    const lim = Math.min(n, i + 2 * ((p.length - pos) >> 2));
    for (; i < lim; i += 2) {
      // 53-bit uniforms: (a >>> 5) * 2^26 + (b >>> 6) in [0, 2^53)
      const u1 = 1 - ((p[pos] >>> 5) * TWO_26 + (p[pos + 1] >>> 6)) * INV_2_53; // (0, 1]
      const u2 = ((p[pos + 2] >>> 5) * TWO_26 + (p[pos + 3] >>> 6)) * INV_2_53; // [0, 1)
      pos += 4;
      const r = sigma * Math.sqrt(-2 * Math.log(u1));
      const th = TWO_PI * u2;
      dst[i] = r * Math.cos(th);
      if (i + 1 < n) dst[i + 1] = r * Math.sin(th);
    }
    poolPos = pos;
  }
  return dst;
}
