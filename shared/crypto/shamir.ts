/**
 * Shamir secret sharing (Shamir 1979) of 32-byte secrets, t-of-n, byte-wise over GF(2^8) with the
 * AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11b). Each secret byte is the constant term of its own
 * random polynomial of degree t-1; share x (1..255) holds the 32 evaluations at x.
 *
 * Guarantees: any t shares with distinct x determine the secret; any t-1 shares are consistent
 * with every candidate secret, each equally likely (perfect secrecy, tested). Reconstruction
 * cannot detect wrong shares by itself: callers compare the result with a commitment (the
 * secret's hash, or the public key for a key share) — see shared/secagg.
 *
 * Field multiplication is bitwise (no secret-indexed table lookups), four bytes at a time in one
 * 32-bit word: secrets are only ever multiplied by public values (share points x and Lagrange
 * coefficients), so the loop branches on the public factor's bits only. JavaScript gives no hard
 * constant-time guarantee; this avoids the obvious cache-timing leak of log/exp tables.
 * Polynomial coefficients come from libsodium's CSPRNG (or the injected `rng`) and are wiped.
 */
import { abytes, aint } from '../util/check';
import { randomBytes } from './sodium';

export const SHAMIR_SECRET_LENGTH = 32;
export const SHAMIR_MAX_SHARES = 255;

export interface Share {
  /** evaluation point, 1..255 (never 0: that is the secret) */
  x: number;
  /** 32 bytes: the polynomials evaluated at x */
  y: Uint8Array;
}

/** GF(2^8) product, bitwise. */
export function gfMul(a: number, b: number): number {
  let p = 0;
  for (let i = 0; i < 8; i++) {
    p ^= -(b & 1) & a;
    const hi = -((a >> 7) & 1) & 0x1b;
    a = ((a << 1) ^ hi) & 0xff;
    b >>= 1;
  }
  return p;
}

/**
 * Four GF(2^8) products at once: each byte of the 32-bit word `v` (secret) times the public
 * element `x`. Shift-and-add from the top bit of x, with "xtime" on every byte lane.
 */
function mulPub4(v: number, x: number): number {
  let r = 0;
  for (let bit = 7; bit >= 0; bit--) {
    r = ((r & 0x7f7f7f7f) << 1) ^ (((r >>> 7) & 0x01010101) * 0x1b);
    if ((x >> bit) & 1) r ^= v;
  }
  return r;
}

function loadWords(b: Uint8Array, off: number, out: Int32Array): void {
  for (let k = 0; k < out.length; k++) {
    const i = off + 4 * k;
    out[k] = b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
  }
}

function storeWords(w: Int32Array, b: Uint8Array): void {
  for (let k = 0; k < w.length; k++) {
    const v = w[k];
    b[4 * k] = v & 0xff;
    b[4 * k + 1] = (v >>> 8) & 0xff;
    b[4 * k + 2] = (v >>> 16) & 0xff;
    b[4 * k + 3] = (v >>> 24) & 0xff;
  }
}

/** GF(2^8) inverse a^254 (a != 0). */
export function gfInv(a: number): number {
  if (a === 0) throw new RangeError('0 has no inverse in GF(2^8)');
  let r = 1;
  let base = a;
  let e = 254;
  while (e > 0) {
    if (e & 1) r = gfMul(r, base);
    base = gfMul(base, base);
    e >>= 1;
  }
  return r;
}

/**
 * Splits `secret` (32 bytes) into shares at the given distinct points `xs` (each 1..255) with
 * threshold `t` (1 <= t <= xs.length). The secret itself is not modified.
 */
export function shamirSplit(secret: Uint8Array, t: number, xs: readonly number[], rng: (n: number) => Uint8Array = randomBytes): Share[] {
  abytes('secret', secret, SHAMIR_SECRET_LENGTH);
  if (!Array.isArray(xs)) throw new TypeError('"xs" expected an array of integers');
  aint('xs.length', xs.length, 1, SHAMIR_MAX_SHARES);
  aint('t', t, 1, xs.length);
  const seen = new Set<number>();
  for (const x of xs) {
    aint('xs[i]', x, 1, 255);
    if (seen.has(x)) throw new RangeError(`"xs" has duplicate point ${x}`);
    seen.add(x);
  }
  const L = SHAMIR_SECRET_LENGTH;
  // coeffs[j*L + i]: coefficient of x^(j+1) for byte i
  const coeffs = t > 1 ? abytes('rng output', rng((t - 1) * L), (t - 1) * L) : new Uint8Array(0);
  const W = L / 4;
  const cw = new Int32Array((t - 1) * W); // coefficient words
  for (let j = 0; j < t - 1; j++) loadWords(coeffs, j * L, cw.subarray(j * W, (j + 1) * W));
  const sw = new Int32Array(W);
  loadWords(secret, 0, sw);
  const yw = new Int32Array(W);
  const shares: Share[] = [];
  for (const x of xs) {
    for (let k = 0; k < W; k++) {
      // Horner: ((c_{t-1} x + c_{t-2}) x + ... + c_1) x + secret
      let acc = 0;
      for (let j = t - 2; j >= 0; j--) acc = mulPub4(acc ^ cw[j * W + k], x);
      yw[k] = acc ^ sw[k];
    }
    const y = new Uint8Array(L);
    storeWords(yw, y);
    shares.push({ x, y });
  }
  coeffs.fill(0);
  cw.fill(0);
  sw.fill(0);
  yw.fill(0);
  return shares;
}

/**
 * Lagrange interpolation at 0 of the first `t` shares (exactly the ones given are used when
 * t === shares.length). Requires distinct x in 1..255 and 32-byte y. Returns a fresh secret the
 * caller must check against its commitment: wrong or too few shares give a wrong value, never an
 * error.
 */
export function shamirCombine(shares: readonly Share[], t: number = shares.length): Uint8Array {
  if (!Array.isArray(shares)) throw new TypeError('"shares" expected an array of shares');
  aint('t', t, 1, SHAMIR_MAX_SHARES);
  if (shares.length < t) throw new RangeError(`"shares" expected at least t=${t} shares, got ${shares.length}`);
  const use = shares.slice(0, t);
  const seen = new Set<number>();
  for (const s of use) {
    if (typeof s !== 'object' || s === null) throw new TypeError('"shares[i]" expected {x, y}');
    aint('shares[i].x', s.x, 1, 255);
    abytes('shares[i].y', s.y, SHAMIR_SECRET_LENGTH);
    if (seen.has(s.x)) throw new RangeError(`"shares" has duplicate point ${s.x}`);
    seen.add(s.x);
  }
  // Lagrange basis at 0 in characteristic 2: l_j(0) = prod_{m != j} x_m / (x_m - x_j) = prod x_m / (x_m ^ x_j)
  const W = SHAMIR_SECRET_LENGTH / 4;
  const acc = new Int32Array(W);
  const yw = new Int32Array(W);
  for (let j = 0; j < use.length; j++) {
    let num = 1;
    let den = 1;
    for (let m = 0; m < use.length; m++) {
      if (m === j) continue;
      num = gfMul(num, use[m].x);
      den = gfMul(den, use[m].x ^ use[j].x);
    }
    const l = gfMul(num, gfInv(den));
    loadWords(use[j].y, 0, yw);
    for (let k = 0; k < W; k++) acc[k] ^= mulPub4(yw[k], l);
  }
  const out = new Uint8Array(SHAMIR_SECRET_LENGTH);
  storeWords(acc, out);
  acc.fill(0);
  yw.fill(0);
  return out;
}
