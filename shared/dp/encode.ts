/**
 * Update encoder / decoder: real vector -> integers mod 2^b (the secure-aggregation input) and back
 * (DESIGN §4 steps 3 and 5; Kairouz, Liu & Steinke 2021, "The Distributed Discrete Gaussian
 * Mechanism for Federated Learning with Secure Aggregation", Alg. 1-2).
 *
 * Encode, for one party:
 *   1. clip each contribution to L2 norm C;
 *   2. optional randomized Hadamard rotation R = H D / sqrt(D') with D' = next power of two >= d
 *      (zero padding), D a +-1 diagonal from a ChaCha20 stream keyed by BLAKE2b(public 32-byte
 *      seed) — every party and the coordinator derive the same R; it spreads mass evenly over
 *      coordinates so that a small bit width suffices;
 *   3. scale by gamma;
 *   4. conditional stochastic rounding: each coordinate rounds up with probability equal to its
 *      fractional part (CSPRNG), and the whole vector is re-drawn until ||x_int||_2 <= l2 with
 *      l2 = roundedSensitivity(gamma C, D', beta).l2 — checked on the integers themselves, exactly;
 *   5. (mechanism `round-noise`) add discrete Gaussian noise N_Z(0, s2) per coordinate from the
 *      exact sampler, s2 = (gamma sigma)^2 (`per-party`) or (gamma sigma)^2 / n_min
 *      (`distributed`), rationalised upwards; the exact s2 used is returned for the accountant;
 *   6. reduce mod 2^b into a Uint32Array.
 * Decode (coordinator, on the unmasked sum): signed lift from [0, 2^b) to [-2^(b-1), 2^(b-1)),
 * divide by gamma, undo the rotation, truncate to d, divide by the number of parties (uniform
 * weights).
 *
 * User-level sensitivity (the privacy unit is one end user; DESIGN §4 step 2):
 *   A party's round update is a sum over its users u of contributions g_u. With `round-noise`, each
 *   contribution is clipped, rotated, scaled and conditionally rounded *on its own*
 *   (`quantizeContribution`), and the party's integer vector is the sum X = sum_u r_u of those
 *   integer vectors. Removing (or adding) one user v changes X by exactly r_v, whose norms are
 *   enforced on the integers: ||r_v||_2 <= l2 and ||r_v||_1 <= l1 = l2 min(sqrt(D'), l2) (integer
 *   coordinates). So X has L2 sensitivity l2 and L1 sensitivity l1 — the numbers the accountant
 *   (rdpDdg) is given — no matter how many users there are or what the other users contributed.
 *   (Rounding the *sum* instead would not do: the rounding error of a sum is not a per-user
 *   quantity.) In the real domain, before rounding, the same argument gives sensitivity C:
 *   sum_u clip_C(g_u) changes by clip_C(g_v), of norm <= C.
 *   With `local-dpsgd`, the party's delta is already DP from training; encoding it as one vector
 *   (`encodeUpdate` with no noise) is post-processing and needs no sensitivity of its own.
 * Private per-user embeddings never enter these vectors (they are never released).
 */
import { abytes, anum, aint, au32 } from '../util/check';
import { sodium } from '../crypto/sodium';
import { csprngBytes } from './bits';
import { DiscreteGaussian, MIN_VARIANCE, MAX_VARIANCE } from './discrete';
import { roundedSensitivity } from './rdp';

export type NoiseMode = 'per-party' | 'distributed';

export interface NoiseParams {
  /** real-domain standard deviation of the noise the sum must carry (noise multiplier x C) */
  sigma: number;
  mode: NoiseMode;
  /** for `distributed`: the least number of honest parties whose noise reaches the sum */
  nMin: number;
}

export interface EncodeParams {
  /** L2 clip norm C of one contribution (real domain) */
  clip: number;
  /** scale: integers per unit */
  gamma: number;
  /** modulus 2^bits, 1 <= bits <= 32 */
  bits: number;
  /** public 32-byte rotation seed, or null for no rotation */
  rotationSeed: Uint8Array | null;
  /** conditional rounding parameter beta in [0, 1): see roundedSensitivity; 0 = unconditional */
  beta: number;
  /** discrete Gaussian noise (mechanism `round-noise`), or null */
  noise: NoiseParams | null;
}

/** Default beta, as Kairouz et al.'s experiments: exp(-0.5). */
export const DEFAULT_BETA = Math.exp(-0.5);
/** Default bound on the probability that the true sum wraps around 2^b. */
export const DEFAULT_MAX_WRAP_PROBABILITY = 2 ** -40;
const MAX_ROUNDING_ATTEMPTS = 10000;
const SIGN_CONTEXT = new TextEncoder().encode('fedbridge/hadamard-signs/v1'); // BLAKE2b key (27 bytes)

export function checkEncodeParams(p: EncodeParams): void {
  if (typeof p !== 'object' || p === null) throw new TypeError('"params" expected an object');
  anum('clip', p.clip, 0, Infinity, { min: true });
  anum('gamma', p.gamma, 0, Infinity, { min: true });
  aint('bits', p.bits, 1, 32);
  if (p.rotationSeed !== null) abytes('rotationSeed', p.rotationSeed, 32);
  anum('beta', p.beta, 0, 1, { max: true });
  if (p.noise !== null) {
    if (typeof p.noise !== 'object') throw new TypeError('"noise" expected an object or null');
    anum('noise.sigma', p.noise.sigma, 0, Infinity, { min: true });
    if (p.noise.mode !== 'per-party' && p.noise.mode !== 'distributed') {
      throw new RangeError(`"noise.mode" expected per-party or distributed, got ${String(p.noise.mode)}`);
    }
    aint('noise.nMin', p.noise.nMin, 1);
  }
}

/** Smallest power of two >= d. */
export function paddedDimension(d: number): number {
  aint('dimension', d, 1, 2 ** 30);
  let p = 1;
  while (p < d) p *= 2;
  return p;
}

/** The dimension of the encoded vector: d' = next power of two with rotation, d without. */
export function encodedDimension(d: number, rotated: boolean): number {
  return rotated ? paddedDimension(d) : (aint('dimension', d, 1, 2 ** 30), d);
}

/** In-place unnormalised fast Walsh-Hadamard transform (length a power of two). */
export function fwht(x: Float64Array): void {
  const n = x.length;
  for (let h = 1; h < n; h *= 2) {
    for (let i = 0; i < n; i += 2 * h) {
      for (let j = i; j < i + h; j++) {
        const a = x[j];
        const b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

/**
 * The +-1 diagonal of the rotation: bit i of a ChaCha20 stream (libsodium
 * randombytes_buf_deterministic) keyed with BLAKE2b-256(seed, key = "fedbridge/hadamard-signs/v1").
 * Deterministic in the public seed; 1 = flip sign.
 */
export function rotationSigns(seed: Uint8Array, n: number): Uint8Array {
  abytes('rotationSeed', seed, 32);
  const s = sodium();
  const key = s.crypto_generichash(32, seed, SIGN_CONTEXT);
  const stream = s.randombytes_buf_deterministic(Math.ceil(n / 8), key);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (stream[i >> 3] >> (i & 7)) & 1;
  return out;
}

/** y = H D pad(x) / sqrt(D'): the randomized Hadamard rotation (orthogonal). */
export function rotate(x: ArrayLike<number>, seed: Uint8Array): Float64Array {
  const n = paddedDimension(x.length);
  const signs = rotationSigns(seed, n);
  const y = new Float64Array(n);
  for (let i = 0; i < x.length; i++) y[i] = signs[i] ? -x[i] : x[i];
  fwht(y);
  const s = 1 / Math.sqrt(n);
  for (let i = 0; i < n; i++) y[i] *= s;
  return y;
}

/** Inverse of `rotate`: x = D H y / sqrt(D'), truncated to `dimension`. */
export function unrotate(y: Float64Array, seed: Uint8Array, dimension: number): Float64Array {
  const n = y.length;
  if (paddedDimension(n) !== n) throw new RangeError(`"y" expected a power-of-two length, got length=${n}`);
  aint('dimension', dimension, 1, n);
  const signs = rotationSigns(seed, n);
  const z = Float64Array.from(y);
  fwht(z);
  const s = 1 / Math.sqrt(n);
  const out = new Float64Array(dimension);
  for (let i = 0; i < dimension; i++) out[i] = signs[i] ? -z[i] * s : z[i] * s;
  return out;
}

/** Scales `x` in place so that ||x||_2 <= clip; returns the norm before clipping. */
export function clipL2(x: Float64Array, clip: number): number {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const norm = Math.sqrt(ss);
  if (!Number.isFinite(norm)) throw new RangeError('"update" contains a non-finite value');
  if (norm > clip) {
    const f = clip / norm;
    for (let i = 0; i < x.length; i++) x[i] *= f;
  }
  return norm;
}

/** Integer-domain sensitivities of one contribution under these parameters. */
export function contributionSensitivity(p: EncodeParams, dimension: number): { l2: number; l1: number; encodedDimension: number } {
  checkEncodeParams(p);
  const dd = encodedDimension(dimension, p.rotationSeed !== null);
  const s = roundedSensitivity(p.gamma * p.clip, dd, p.beta);
  return { ...s, encodedDimension: dd };
}

/**
 * Conditional stochastic rounding of `y` (already scaled): each coordinate rounds to floor(v) + 1
 * with probability frac(v) (32-bit CSPRNG uniforms, so the probability is frac(v) to within 2^-32),
 * re-drawn until sum x_i^2 <= floor(l2^2), compared exactly on integers. Returns the integer vector
 * (as doubles) and the number of draws.
 */
export function conditionalRound(y: Float64Array, l2: number, maxAttempts = MAX_ROUNDING_ATTEMPTS): { x: Float64Array; attempts: number } {
  anum('l2', l2, 0);
  const bound = Math.floor(l2 * l2);
  const x = new Float64Array(y.length);
  const fl = new Float64Array(y.length);
  for (let i = 0; i < y.length; i++) {
    if (!Number.isFinite(y[i]) || Math.abs(y[i]) > 2 ** 40) throw new RangeError(`"update" coordinate ${i} out of range after scaling: ${y[i]}`);
    fl[i] = Math.floor(y[i]);
  }
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const r = csprngBytes(4 * y.length);
    const u = new Uint32Array(r.buffer, r.byteOffset, y.length);
    let ss = 0;
    for (let i = 0; i < y.length; i++) {
      const frac = y[i] - fl[i];
      const up = u[i] < frac * 4294967296 ? 1 : 0;
      const v = fl[i] + up;
      x[i] = v;
      ss += v * v;
    }
    r.fill(0);
    if (ss > Number.MAX_SAFE_INTEGER) throw new RangeError('integer vector norm beyond 2^53: gamma or clip too large');
    if (ss <= bound) return { x, attempts: attempt };
  }
  throw new RangeError(`conditional rounding: no draw within L2 bound ${l2} after ${maxAttempts} attempts (beta too small?)`);
}

/**
 * Clips, rotates, scales and conditionally rounds one contribution, adding the integer vector into
 * `acc` (length = encoded dimension) when given. Returns the integer vector and its norms; the
 * bound l2 is enforced on it (see the sensitivity note at the top of this file).
 */
export function quantizeContribution(
  update: ArrayLike<number>,
  p: EncodeParams,
  acc?: Float64Array,
): { x: Float64Array; l2Norm: number; l1Norm: number; attempts: number } {
  checkEncodeParams(p);
  if (update === null || typeof update !== 'object' || typeof (update as ArrayLike<number>).length !== 'number') {
    throw new TypeError(`"update" expected an array or typed array of numbers, got ${update === null ? 'null' : typeof update}`);
  }
  const d = update.length;
  const { l2, encodedDimension: dd } = contributionSensitivity(p, d);
  if (acc && acc.length !== dd) throw new RangeError(`"acc" expected length ${dd}, got length=${acc.length}`);
  const v = Float64Array.from(update);
  clipL2(v, p.clip);
  const y = p.rotationSeed ? rotate(v, p.rotationSeed) : v;
  for (let i = 0; i < y.length; i++) y[i] *= p.gamma;
  const { x, attempts } = conditionalRound(y, l2);
  let ss = 0;
  let l1 = 0;
  for (let i = 0; i < x.length; i++) {
    ss += x[i] * x[i];
    l1 += Math.abs(x[i]);
    if (acc) acc[i] += x[i];
  }
  return { x, l2Norm: Math.sqrt(ss), l1Norm: l1, attempts };
}

/** Integer variance parameter of each party's noise share (before rationalisation). */
export function noiseVariance(p: EncodeParams): number {
  if (!p.noise) return 0;
  const s = p.gamma * p.noise.sigma;
  return p.noise.mode === 'distributed' ? (s * s) / p.noise.nMin : s * s;
}

export interface EncodedUpdate {
  /** the secure-aggregation input: integers mod 2^bits */
  data: Uint32Array;
  /** encoded dimension (power of two with rotation) */
  dimension: number;
  /** exact variance num/den of the discrete Gaussian actually added (0 if none) */
  noiseVariance: number;
  noiseVarianceRational: { num: number; den: number } | null;
}

/**
 * Adds discrete Gaussian noise (if `p.noise`) to the integer vector `acc` in place and reduces it
 * mod 2^bits. `acc` holds exact integers (a sum of quantizeContribution outputs).
 */
export function finishEncoding(acc: Float64Array, p: EncodeParams): EncodedUpdate {
  checkEncodeParams(p);
  const n = acc.length;
  let rational: { num: number; den: number } | null = null;
  let variance = 0;
  if (p.noise) {
    const v = noiseVariance(p);
    if (!(v >= MIN_VARIANCE && v <= MAX_VARIANCE)) {
      throw new RangeError(
        `noise: integer variance per share (gamma ${p.gamma} x sigma ${p.noise.sigma})^2${p.noise.mode === 'distributed' ? ` / n_min ${p.noise.nMin}` : ''} = ${v} is outside the exact sampler's range [2^-8, 2^40]`,
      );
    }
    const dg = new DiscreteGaussian(v);
    rational = { num: dg.num, den: dg.den };
    variance = dg.variance;
    for (let i = 0; i < n; i++) acc[i] += dg.sample();
  }
  const m = 2 ** p.bits;
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const v = acc[i];
    if (!Number.isSafeInteger(v)) throw new RangeError(`"acc" coordinate ${i} is not a safe integer: ${v}`);
    const r = v % m;
    out[i] = r < 0 ? r + m : r;
  }
  return { data: out, dimension: n, noiseVariance: variance, noiseVarianceRational: rational };
}

/** One vector through the whole pipeline (one contribution, e.g. a DP-SGD delta or one client). */
export function encodeUpdate(update: ArrayLike<number>, p: EncodeParams): EncodedUpdate & { l2Norm: number; attempts: number } {
  checkEncodeParams(p);
  if (update === null || typeof update !== 'object' || typeof (update as ArrayLike<number>).length !== 'number') {
    throw new TypeError(`"update" expected an array or typed array of numbers, got ${update === null ? 'null' : typeof update}`);
  }
  const dd = encodedDimension(update.length, p.rotationSeed !== null);
  const acc = new Float64Array(dd);
  const q = quantizeContribution(update, p, acc);
  return { ...finishEncoding(acc, p), l2Norm: q.l2Norm, attempts: q.attempts };
}

/**
 * `round-noise` for one party: every user's contribution clipped, rotated, scaled and conditionally
 * rounded on its own (quantizeContribution), the integer vectors summed, then one discrete
 * Gaussian draw per coordinate and the reduction mod 2^bits. Removing one user changes the
 * pre-noise integer vector by that user's rounded contribution only (norms <= l2, l1 of
 * contributionSensitivity), which is what the accountant is told. `dimension` is the input
 * dimension d; every contribution must have it.
 */
export function encodeContributions(
  contributions: Iterable<ArrayLike<number>>,
  dimension: number,
  p: EncodeParams,
): EncodedUpdate & { contributions: number; maxL2Norm: number } {
  const enc = new ContributionEncoder(dimension, p);
  for (const c of contributions) enc.add(c);
  return enc.finish();
}

/**
 * encodeContributions one contribution at a time, for callers that produce them as they read
 * tensors (participant-node's round-noise update): same checks, same arithmetic, one noise draw at
 * `finish()`, which may be called once.
 */
export class ContributionEncoder {
  private readonly acc: Float64Array;
  private count = 0;
  private maxL2Norm = 0;
  private done = false;

  constructor(
    private readonly dimension: number,
    private readonly p: EncodeParams,
  ) {
    checkEncodeParams(p);
    this.acc = new Float64Array(encodedDimension(dimension, p.rotationSeed !== null));
  }

  /** Clips, rotates, scales and conditionally rounds one user's contribution into the sum. */
  add(c: ArrayLike<number>): void {
    if (this.done) throw new Error('ContributionEncoder: add() after finish()');
    if (c === null || typeof c !== 'object' || c.length !== this.dimension) {
      throw new RangeError(`contribution ${this.count} expected length ${this.dimension}, got ${c === null || typeof c !== 'object' ? String(c) : `length=${c.length}`}`);
    }
    const q = quantizeContribution(c, this.p, this.acc);
    if (q.l2Norm > this.maxL2Norm) this.maxL2Norm = q.l2Norm;
    this.count++;
  }

  /** Adds the noise (once) and reduces mod 2^bits. */
  finish(): EncodedUpdate & { contributions: number; maxL2Norm: number } {
    if (this.done) throw new Error('ContributionEncoder: finish() called twice');
    this.done = true;
    return { ...finishEncoding(this.acc, this.p), contributions: this.count, maxL2Norm: this.maxL2Norm };
  }
}

/**
 * Decodes the unmasked aggregate: signed lift mod 2^bits, / gamma, inverse rotation, truncation to
 * `dimension`, / `parties` (uniform weights). Returns the average update.
 */
export function decodeAggregate(
  sum: Uint32Array,
  p: Pick<EncodeParams, 'gamma' | 'bits' | 'rotationSeed'>,
  dimension: number,
  parties: number,
): Float64Array {
  au32('sum', sum);
  anum('gamma', p.gamma, 0, Infinity, { min: true });
  aint('bits', p.bits, 1, 32);
  aint('parties', parties, 1);
  const dd = encodedDimension(dimension, p.rotationSeed !== null);
  if (sum.length !== dd) throw new RangeError(`"sum" expected Uint32Array of length ${dd}, got length=${sum.length}`);
  const m = 2 ** p.bits;
  const half = m / 2;
  const y = new Float64Array(dd);
  for (let i = 0; i < dd; i++) {
    const v = sum[i] % m; // values >= 2^bits would be a protocol error upstream; reduce anyway
    y[i] = (v >= half ? v - m : v) / p.gamma;
  }
  const x = p.rotationSeed ? unrotate(y, p.rotationSeed, dimension) : y;
  for (let i = 0; i < x.length; i++) x[i] /= parties;
  return x;
}

export interface WrapCheckParams {
  bits: number;
  /** number of parties whose vectors are summed */
  parties: number;
  /** input dimension d (before padding) */
  dimension: number;
  rotated: boolean;
  clip: number;
  gamma: number;
  beta: number;
  /** rounded contributions summed per party (1 for a whole update; round-noise asks contributionCapacity instead) */
  contributionsPerParty?: number;
  noise: NoiseParams | null;
  /** default 2^-40 */
  maxProbability?: number;
}

export interface WrapCheck {
  ok: boolean;
  /** per coordinate, |signal of the sum| <= this, deterministically */
  signalBound: number;
  /** 2^(bits-1) - 1: the largest magnitude the signed lift represents */
  range: number;
  /** log2 of the union bound on P[some coordinate wraps] */
  log2Probability: number;
  /** which bound failed, as a sentence, or null */
  failure: string | null;
}

/**
 * Wrap-around check (issue 3, "Quantization"): the decoded sum is right iff every coordinate of the
 * true integer sum lies in [-2^(b-1), 2^(b-1) - 1]. Two bounds:
 *   - signal: each party's integer vector has L2 norm <= k l2 (k contributions, each <= l2 after
 *     conditional rounding), hence every coordinate of the n-party sum is <= S = n k l2 in
 *     magnitude — deterministic;
 *   - noise: the summed noise per coordinate is a sum of n independent discrete Gaussians with
 *     variance parameter s2 each, sub-Gaussian with parameter n s2 (CKS 2020 Cor. 9 / Prop. 19), so
 *     P[|N| >= T] <= 2 exp(-T^2 / (2 n s2)); with T = 2^(b-1) - 1 - S and a union bound over the
 *     D' coordinates, P[wrap] <= 2 D' exp(-T^2 / (2 n s2)).
 * Refuses (ok = false, `failure` names the bound) when S >= 2^(b-1) - 1 or the bound exceeds
 * `maxProbability`. s2 is the rationalised variance the encoder will actually use.
 */
export function checkWrapAround(w: WrapCheckParams): WrapCheck {
  aint('bits', w.bits, 1, 32);
  aint('parties', w.parties, 1);
  aint('dimension', w.dimension, 1, 2 ** 30);
  anum('clip', w.clip, 0, Infinity, { min: true });
  anum('gamma', w.gamma, 0, Infinity, { min: true });
  anum('beta', w.beta, 0, 1, { max: true });
  const k = aint('contributionsPerParty', w.contributionsPerParty ?? 1, 1);
  const maxP = anum('maxProbability', w.maxProbability ?? DEFAULT_MAX_WRAP_PROBABILITY, 0, 1, { min: true });
  const dd = encodedDimension(w.dimension, w.rotated);
  const { l2 } = roundedSensitivity(w.gamma * w.clip, dd, w.beta);
  const signalBound = w.parties * k * l2;
  const range = 2 ** (w.bits - 1) - 1;
  if (signalBound >= range) {
    return {
      ok: false,
      signalBound,
      range,
      log2Probability: 0,
      failure: `signal bound: ${w.parties} parties x ${k} contribution(s) x L2 bound ${l2.toFixed(1)} (gamma ${w.gamma} x clip ${w.clip}, after rounding) = ${signalBound.toFixed(1)} does not fit in 2^(${w.bits}-1) - 1 = ${range}; lower gamma or clip, or raise bits`,
    };
  }
  let log2P = -Infinity;
  if (w.noise) {
    const p: EncodeParams = { clip: w.clip, gamma: w.gamma, bits: w.bits, rotationSeed: null, beta: w.beta, noise: w.noise };
    checkEncodeParams(p);
    const s2 = new DiscreteGaussian(noiseVariance(p)).variance;
    const t = range - signalBound;
    // log2(2 D' exp(-t^2 / (2 n s2)))
    log2P = 1 + Math.log2(dd) - (t * t) / (2 * w.parties * s2) / Math.LN2;
  }
  const log2Max = Math.log2(maxP);
  if (log2P > log2Max) {
    return {
      ok: false,
      signalBound,
      range,
      log2Probability: log2P,
      failure: `Gaussian tail bound: P[sum wraps around 2^${w.bits}] <= 2^${log2P.toFixed(1)} exceeds the allowed 2^${log2Max.toFixed(1)} (${w.parties} parties, noise std ${(w.gamma * (w.noise?.sigma ?? 0)).toFixed(1)} integers per party, signal bound ${signalBound.toFixed(1)}, dimension ${dd}); lower gamma or sigma, or raise bits`,
    };
  }
  return { ok: true, signalBound, range, log2Probability: log2P, failure: null };
}

/** As checkWrapAround, throwing a RangeError with the failing bound's sentence. */
export function assertNoWrapAround(w: WrapCheckParams): WrapCheck {
  const r = checkWrapAround(w);
  if (!r.ok) throw new RangeError(`refusing quantization parameters: ${r.failure}`);
  return r;
}

/**
 * The largest number of contributions per party that `checkWrapAround` accepts with these (public)
 * parameters, or 0 when not even one fits. The check is monotone in the count (the signal bound
 * grows with it, the noise does not change), so a binary search finds it. Used by round-noise, where
 * the number of contributions a party sums is its number of sampled users, a PRIVATE quantity: the
 * capacity is computed from the policy alone, so it is the same at every party and says nothing
 * about any party's data.
 */
export function contributionCapacity(w: Omit<WrapCheckParams, 'contributionsPerParty'>): number {
  const at = (k: number) => checkWrapAround({ ...w, contributionsPerParty: k }).ok;
  if (!at(1)) return 0;
  const dd = encodedDimension(w.dimension, w.rotated);
  const { l2 } = roundedSensitivity(w.gamma * w.clip, dd, w.beta);
  let lo = 1; // at(lo) holds
  let hi = Math.max(1, Math.ceil((2 ** (w.bits - 1) - 1) / (w.parties * Math.max(l2, 1e-300)))); // at(hi) fails (signal bound)
  while (at(hi)) hi *= 2; // never more than once: hi already breaks the signal bound
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (at(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}
