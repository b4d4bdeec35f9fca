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
 *
 * Wrong shares. `shamirCombine` cannot tell a wrong share from a right one; callers compare its
 * result with a commitment. `shamirDisagreeing` names the shares that disagree with the
 * polynomials through the first t, and `shamirDecode` corrects and locates wrong shares (see its
 * doc comment: Reed-Solomon decoding, Gao 2003). What is constant-time there and what is not is
 * stated at `shamirDecode`.
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

/** Noble-style checks of share objects: {x: distinct integers in 1..255, y: 32 bytes}. */
function checkShares(shares: readonly Share[]): void {
  const seen = new Set<number>();
  for (const s of shares) {
    if (typeof s !== 'object' || s === null) throw new TypeError('"shares[i]" expected {x, y}');
    aint('shares[i].x', s.x, 1, 255);
    abytes('shares[i].y', s.y, SHAMIR_SECRET_LENGTH);
    if (seen.has(s.x)) throw new RangeError(`"shares" has duplicate point ${s.x}`);
    seen.add(s.x);
  }
}

/** Checks the arguments of the functions that take m >= t shares (all of them are validated). */
function checkAll(shares: readonly Share[], t: number): void {
  if (!Array.isArray(shares)) throw new TypeError('"shares" expected an array of shares');
  aint('t', t, 1, SHAMIR_MAX_SHARES);
  if (shares.length < t) throw new RangeError(`"shares" expected at least t=${t} shares, got ${shares.length}`);
  checkShares(shares);
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
  checkShares(use);
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

// ---------------------------------------------------------------------------------------------
// Wrong shares: detection and error-correcting reconstruction
// ---------------------------------------------------------------------------------------------

let LOG_PUB: Uint8Array | undefined;
let EXP_PUB: Uint8Array | undefined;

/**
 * log/exp tables of GF(2^8) (generator 3), for PUBLIC field elements only: share points, their
 * differences and the Lagrange coefficients built from them. A share value or a secret never
 * indexes a table (cache timing); those go through gfMul / mulPub4 / mulBits4.
 */
function pubTables(): { LOG: Uint8Array; EXP: Uint8Array } {
  if (!LOG_PUB || !EXP_PUB) {
    const LOG = new Uint8Array(256);
    const EXP = new Uint8Array(510);
    let v = 1;
    for (let i = 0; i < 255; i++) {
      EXP[i] = EXP[i + 255] = v;
      LOG[v] = i;
      v = gfMul(v, 3);
    }
    LOG_PUB = LOG;
    EXP_PUB = EXP;
  }
  return { LOG: LOG_PUB, EXP: EXP_PUB };
}

/**
 * Inverse of a PUBLIC nonzero field element (share points, their differences, products of those)
 * from the tables. Never call it on a value derived from a share or a secret: use gfInv.
 */
function invPub(a: number): number {
  const { LOG, EXP } = pubTables();
  return EXP[255 - LOG[a]];
}

/**
 * The 8 "bit images" c_i = c * 2^i of a public element c: then for 4 byte lanes v,
 * v * c = XOR_i ((v >> i) & 0x01010101) * c_i, lane by lane (each lane's bit times c_i < 256 stays
 * in its lane). No branch and no table on v's bits; `mulBits4` does the product.
 */
function bitImages(c: number, out: Int32Array, off: number): void {
  for (let i = 0; i < 8; i++) {
    out[off + i] = c;
    c = ((c << 1) ^ (-((c >> 7) & 1) & 0x1b)) & 0xff;
  }
}

function mulBits4(v: number, ci: Int32Array, off: number): number {
  // each product is below 2^32 (lanes of 0/1 times c_i < 256): Math.imul's low 32 bits are exact
  return (
    Math.imul(v & 0x01010101, ci[off]) ^
    Math.imul((v >>> 1) & 0x01010101, ci[off + 1]) ^
    Math.imul((v >>> 2) & 0x01010101, ci[off + 2]) ^
    Math.imul((v >>> 3) & 0x01010101, ci[off + 3]) ^
    Math.imul((v >>> 4) & 0x01010101, ci[off + 4]) ^
    Math.imul((v >>> 5) & 0x01010101, ci[off + 5]) ^
    Math.imul((v >>> 6) & 0x01010101, ci[off + 6]) ^
    Math.imul((v >>> 7) & 0x01010101, ci[off + 7])
  );
}

/**
 * The points x of the shares that disagree with the polynomials through the first `t` shares
 * (in any of the 32 byte columns), ascending; [] when all m >= t shares lie on one set of
 * polynomials of degree < t. The first t shares define the polynomials, so only shares t..m-1 can
 * be reported: a wrong share among the first t shows up as disagreement of (nearly) all the others
 * or as a reconstruction that fails its commitment. Cost: t(m - t) word products of a share value
 * by a public Lagrange coefficient l_j(x_k) = prod_{i != j} (x_k - x_i) / (x_j - x_i), i < t
 * (coefficients from the public log tables; products by their bit images, branch-free in the share
 * values). Which shares disagree is the output, so the comparison's result is not hidden.
 */
export function shamirDisagreeing(shares: readonly Share[], t: number): number[] {
  checkAll(shares, t);
  const m = shares.length;
  if (m === t) return [];
  const { LOG, EXP } = pubTables();
  const W = SHAMIR_SECRET_LENGTH / 4;
  // log of the barycentric weights of the first t points: w_j = 1 / prod_{i != j} (x_j - x_i)
  const logW = new Int32Array(t);
  for (let j = 0; j < t; j++) {
    let d = 0;
    for (let i = 0; i < t; i++) if (i !== j) d += LOG[shares[i].x ^ shares[j].x];
    logW[j] = 255 - (d % 255);
  }
  const yw = new Int32Array(t * W);
  for (let j = 0; j < t; j++) loadWords(shares[j].y, 0, yw.subarray(j * W, (j + 1) * W));
  const ci = new Int32Array(8);
  const acc = new Int32Array(W);
  const got = new Int32Array(W);
  const out: number[] = [];
  for (let q = t; q < m; q++) {
    const xq = shares[q].x;
    let logP = 0;
    for (let i = 0; i < t; i++) logP += LOG[xq ^ shares[i].x];
    logP %= 255;
    acc.fill(0);
    for (let j = 0; j < t; j++) {
      // l_j(x_q) = P / (x_q - x_j) * w_j
      bitImages(EXP[(logP + 255 - LOG[xq ^ shares[j].x] + logW[j]) % 255], ci, 0);
      for (let k = 0; k < W; k++) acc[k] ^= mulBits4(yw[j * W + k], ci, 0);
    }
    loadWords(shares[q].y, 0, got);
    let diff = 0;
    for (let k = 0; k < W; k++) diff |= acc[k] ^ got[k];
    if (diff !== 0) out.push(xq);
  }
  yw.fill(0);
  acc.fill(0);
  got.fill(0);
  return out.sort((a, b) => a - b);
}

/** Result of `shamirDecode`: the secret and the points of the wrong shares, or why it failed. */
export type ShamirDecoding =
  | { ok: true; secret: Uint8Array; wrong: number[] }
  | { ok: false; reason: string };

/** Degree of p looking down from index `from` (-1 for the zero polynomial). */
function degree(p: Uint8Array, from: number): number {
  let d = from;
  while (d >= 0 && p[d] === 0) d--;
  return d;
}

/** Quotient and remainder of a (degree da) by b (degree db >= 0) over GF(2^8). */
function polyDivmod(a: Uint8Array, da: number, b: Uint8Array, db: number): { q: Uint8Array; r: Uint8Array; dr: number } {
  const r = a.slice(0, Math.max(da + 1, 1));
  const q = new Uint8Array(Math.max(da - db + 1, 1));
  const inv = gfInv(b[db]);
  for (let i = da; i >= db; i--) {
    const c = gfMul(r[i], inv);
    q[i - db] = c;
    for (let j = 0; j <= db; j++) r[i - db + j] ^= gfMul(c, b[j]);
  }
  return { q, r, dr: degree(r, Math.min(da, db - 1)) };
}

/**
 * Gao's decoder for one byte column (see `shamirDecode`): g0 (degree m), g1 (the interpolant of
 * the column, degree < m). Returns the t coefficients of f, or null when no polynomial of degree
 * < t is within floor((m - t)/2) of the column. Intermediates are wiped.
 */
function gaoColumn(g0: Uint8Array, g1: Uint8Array, m: number, t: number): Uint8Array | null {
  let r0: Uint8Array = g0.slice();
  let d0 = m;
  let r1: Uint8Array = g1.slice();
  let d1 = degree(r1, m - 1);
  let v0: Uint8Array = new Uint8Array(1); // 0
  let v1: Uint8Array = Uint8Array.of(1);
  const scratch: Uint8Array[] = [];
  // Stop at the first remainder of degree < (m + t)/2.
  while (2 * d1 >= m + t) {
    const { q, r, dr } = polyDivmod(r0, d0, r1, d1);
    // v_next = v0 - q v1 (characteristic 2: minus is xor)
    const vn = new Uint8Array(Math.max(v0.length, q.length + v1.length - 1));
    vn.set(v0);
    for (let i = 0; i < q.length; i++) for (let j = 0; j < v1.length; j++) vn[i + j] ^= gfMul(q[i], v1[j]);
    scratch.push(r0, v0, q);
    r0 = r1;
    d0 = d1;
    r1 = r;
    d1 = dr;
    v0 = v1;
    v1 = vn;
  }
  const dv = degree(v1, v1.length - 1);
  let f: Uint8Array | null = null;
  if (d1 < 0) {
    f = new Uint8Array(t); // g = 0: the column is all zeros on the decoded polynomial f = 0
  } else if (d1 >= dv) {
    const { q, r, dr } = polyDivmod(r1, d1, v1, dv);
    if (dr < 0 && degree(q, q.length - 1) < t) {
      f = new Uint8Array(t);
      f.set(q.subarray(0, Math.min(q.length, t)));
    }
    scratch.push(q, r);
  }
  for (const a of [...scratch, r0, r1, v0, v1]) a.fill(0);
  return f;
}

/**
 * Error-correcting reconstruction: the secret and the points of the wrong shares from m >= t
 * shares with distinct points, whenever at most e = floor((m - t)/2) of them are wrong (with
 * `known`, see below: floor((m - t + 1)/2)) (any bytes
 * of a wrong share may be wrong); otherwise `{ ok: false }` with the reason. Never throws on share
 * VALUES; bad arguments (types, lengths, ranges, duplicate points) throw like `shamirCombine`.
 *
 * The math. Fix a byte column c (0..31). The dealer's polynomial f_c has degree < t, so the column
 * of m right shares (f_c(x_1), ..., f_c(x_m)) is a codeword of the Reed-Solomon code RS[m, t]
 * over GF(2^8) at the points x_i, whose minimum distance is d = m - t + 1 (two different
 * polynomials of degree < t agree on at most t - 1 points). A wrong share i has y_i[c] != f_c(x_i)
 * in at least one column; the set E of wrong shares is the union of the per-column error sets.
 *  - If |E| <= e = floor((d - 1)/2), every column is within e of exactly one codeword, so decoding
 *    each column on its own returns every f_c, and the shares disagreeing with (f_0..f_31) are
 *    exactly E: the secret f_c(0) and E are both exact.
 *  - If a column cannot be decoded within e, or the union of the disagreements exceeds e, then no
 *    32 polynomials of degree < t disagree with at most e shares (if they did, each column would
 *    be within e of them and, by uniqueness, be decoded to them, with a union <= e): failure.
 *  - With more than e wrong shares the word may still lie within e of ANOTHER codeword; then a
 *    wrong secret and wrong blame come back as a success. Callers must check the secret against
 *    its commitment (secagg: H(b_u), or the advertised public key) before using it or the blame.
 *
 * Per column, Gao's algorithm (S. Gao, "A New Algorithm for Decoding Reed-Solomon Codes", 2003,
 * §3): g0 = prod_i (X - x_i); g1 = the interpolant of degree < m through (x_i, y_i[c]) (the
 * Lagrange basis polynomials depend on the public points only and are computed once for all
 * columns); run the extended Euclidean algorithm on (g0, g1) and stop at the first remainder
 * g = u g0 + v g1 with deg g < (m + t)/2; then f = g / v if the division is exact and deg f < t,
 * else failure. (With error locator L = prod_{i in E_c} (X - x_i), Gao's Theorem 3.1 gives
 * g = L f up to a constant when |E_c| <= e.) The disagreements are then counted over all columns.
 * Cost O(m^2) field products per column (32 columns), on the slow path only.
 *
 * With `known` (the secret, ALREADY verified by the caller against its commitment) the point
 * (0, s) is one more right value: f(X) = s + X g(X) with deg g < t - 1, so the values
 * (y_i - s) / x_i form a codeword of RS[m, t - 1] and up to floor((m - t + 1)/2) wrong shares are
 * located (one more than without `known` when m - t is odd; all of them when t = 1). The secret
 * returned is a copy of `known`. A `known` that is not the dealer's secret gives meaningless blame:
 * pass only a secret that passed its commitment.
 *
 * Constant time: what is and what is not. Every product involving share data is table-free
 * (bitwise gfMul, and mulPub4 by public Lagrange coefficients), inverses of share-derived values
 * use gfInv (a fixed square-and-multiply chain), and the inverse table is indexed by public
 * points only. But the decoder necessarily BRANCHES on the share values: the number of Euclid
 * steps and the degrees met depend on how many shares are wrong and where, and the comparison
 * that names the wrong shares is the output. That is acceptable where it is used: at unmask the
 * share holders reveal these shares TO the coordinator, in the clear, precisely so that it
 * reconstructs the secret, so timing tells the coordinator nothing it does not already hold; an
 * outside observer of its timing learns at most that (and roughly where) shares were wrong, which
 * the round's outcome reports anyway. Do not use this decoder where the shares must stay hidden
 * from the machine that runs it. Intermediates derived from the shares are wiped.
 */
export function shamirDecode(shares: readonly Share[], t: number, known?: Uint8Array): ShamirDecoding {
  checkAll(shares, t);
  if (known !== undefined) abytes('known', known, SHAMIR_SECRET_LENGTH);
  const m = shares.length;
  const W = SHAMIR_SECRET_LENGTH / 4;
  const xs = shares.map((s) => s.x);
  const Y = new Int32Array(m * W);
  for (let i = 0; i < m; i++) loadWords(shares[i].y, 0, Y.subarray(i * W, (i + 1) * W));
  if (known === undefined) {
    const e = Math.floor((m - t) / 2);
    const r = decodeWords(xs, Y, t);
    Y.fill(0);
    if (!r) return { ok: false, reason: `more than floor((m - t)/2) = ${e} of the m = ${m} shares are wrong (t = ${t}), so they cannot be located` };
    const secret = new Uint8Array(SHAMIR_SECRET_LENGTH);
    storeWords(r.F.subarray(0, W), secret);
    r.F.fill(0);
    return { ok: true, secret, wrong: r.wrong };
  }
  // f(X) = s + X g(X) with deg g < t - 1: the shares (y_i - s) / x_i are a codeword of RS[m, t - 1]
  const S = new Int32Array(W);
  loadWords(known, 0, S);
  for (let i = 0; i < m; i++) {
    const inv = invPub(xs[i]);
    for (let k = 0; k < W; k++) Y[i * W + k] = mulPub4(Y[i * W + k] ^ S[k], inv);
  }
  S.fill(0);
  let wrong: number[] | null;
  if (t === 1) {
    // g = 0: every share must equal the secret
    wrong = [];
    for (let i = 0; i < m; i++) {
      let diff = 0;
      for (let k = 0; k < W; k++) diff |= Y[i * W + k];
      if (diff !== 0) wrong.push(xs[i]);
    }
    wrong.sort((a, b) => a - b);
  } else {
    const r = decodeWords(xs, Y, t - 1);
    if (r) r.F.fill(0);
    wrong = r ? r.wrong : null;
  }
  Y.fill(0);
  if (!wrong) {
    const e = Math.floor((m - t + 1) / 2);
    return { ok: false, reason: `more than floor((m - t + 1)/2) = ${e} of the m = ${m} shares are wrong (t = ${t}, secret known), so they cannot be located` };
  }
  return { ok: true, secret: known.slice(), wrong };
}

/**
 * The decoder of `shamirDecode` on packed words: Y[i*W + k] is word k of the value at xs[i]; k-dim
 * code (polynomials of degree < k, k >= 1). Returns the decoded coefficients F[d*W + k] (caller
 * wipes) and the points that disagree, ascending, or null when more than floor((m - k)/2) are wrong.
 */
function decodeWords(xs: readonly number[], Y: Int32Array, t: number): { F: Int32Array; wrong: number[] } | null {
  const m = xs.length;
  const e = Math.floor((m - t) / 2);
  const L = SHAMIR_SECRET_LENGTH;
  const W = L / 4;
  // g0 = prod (X - x_i), coefficients low to high (public)
  const g0 = new Uint8Array(m + 1);
  g0[0] = 1;
  for (let i = 0; i < m; i++) {
    for (let d = i + 1; d >= 1; d--) g0[d] = g0[d - 1] ^ gfMul(g0[d], xs[i]);
    g0[0] = gfMul(g0[0], xs[i]);
  }
  // g1 words: G[d*W + k] = sum_i Y_i[k] * Lb_i[d], Lb_i = g0 / (X - x_i) / prod_{j != i} (x_i - x_j) (public)
  const G = new Int32Array(m * W);
  const basis = new Uint8Array(m);
  for (let i = 0; i < m; i++) {
    // synthetic division of g0 by (X - x_i): b_{m-1} = g0[m], b_{d-1} = g0[d] + x_i b_d
    basis[m - 1] = g0[m];
    for (let d = m - 1; d >= 1; d--) basis[d - 1] = g0[d] ^ gfMul(xs[i], basis[d]);
    let den = 1;
    for (let j = 0; j < m; j++) if (j !== i) den = gfMul(den, xs[i] ^ xs[j]);
    const wi = invPub(den);
    for (let d = 0; d < m; d++) {
      const c = gfMul(basis[d], wi);
      if (c === 0) continue; // public coefficient
      for (let k = 0; k < W; k++) G[d * W + k] ^= mulPub4(Y[i * W + k], c);
    }
  }
  // decode each column; F[d*W + k] packs the decoded coefficients like the shares
  const F = new Int32Array(t * W);
  const g1 = new Uint8Array(m);
  let failed = false;
  for (let c = 0; c < L; c++) {
    const k = c >> 2;
    const sh = 8 * (c & 3);
    for (let d = 0; d < m; d++) g1[d] = (G[d * W + k] >>> sh) & 0xff;
    const f = gaoColumn(g0, g1, m, t);
    if (!f) {
      failed = true;
      break;
    }
    for (let d = 0; d < t; d++) F[d * W + k] |= f[d] << sh;
    f.fill(0);
  }
  g1.fill(0);
  G.fill(0);
  if (failed) {
    F.fill(0);
    return null;
  }
  // evaluate the decoded polynomials at every point (Horner, public x) and compare
  const wrong: number[] = [];
  for (let i = 0; i < m; i++) {
    let diff = 0;
    for (let k = 0; k < W; k++) {
      let a = 0;
      for (let d = t - 1; d >= 1; d--) a = mulPub4(a ^ F[d * W + k], xs[i]);
      diff |= a ^ F[k] ^ Y[i * W + k];
    }
    if (diff !== 0) wrong.push(xs[i]);
  }
  if (wrong.length > e) {
    F.fill(0);
    return null;
  }
  return { F, wrong: wrong.sort((a, b) => a - b) };
}
