/**
 * Renyi-DP accountant (DESIGN §4 step 6).
 *
 * 1. Poisson-subsampled Gaussian mechanism (Mironov, Talwar & Zhang 2019, "Renyi Differential
 *    Privacy of the Sampled Gaussian Mechanism", §3.3): with sampling rate q and noise multiplier
 *    sigma (noise std / L2 sensitivity), RDP at order alpha is log(A_alpha) / (alpha - 1), with
 *      integer alpha:  A = sum_{i=0}^{alpha} C(alpha,i) q^i (1-q)^(alpha-i) exp((i^2 - i)/(2 sigma^2))
 *      fractional alpha: the two-sided series with erfc terms (their eq. for A_alpha), summed in
 *      log space until both terms drop below exp(-30).
 *    This follows TensorFlow Privacy's rdp_accountant (same series, same stopping rule) and
 *    reproduces its published test values (tests/shared/dp/rdp.test.ts).
 * 2. Composition: RDP adds up over steps and rounds at each order.
 * 3. Conversion to (eps, delta): eps = min_alpha [ rdp + log1p(-1/alpha) - log(delta alpha)/(alpha-1) ]
 *    (Canonne, Kamath & Steinke 2020, Prop. 12 of v4 / Balle et al. 2020 Thm. 21), tighter than
 *    Mironov's rdp - log(delta)/(alpha-1); eps = 0 when delta^2 >= 1 - exp(-rdp).
 * 4. Distributed discrete Gaussian (Kairouz, Liu & Steinke 2021, "The Distributed Discrete Gaussian
 *    Mechanism for Federated Learning with Secure Aggregation", Thm. 1 / Prop. 14): the sum of n
 *    independent N_Z(0, s2) is, at order alpha, RDP with
 *      min{ alpha/2 * D2^2 + tau d,
 *           alpha/2 * (D2^2 + 2 D1 tau + tau^2 d),
 *           alpha/2 * (D2 + sqrt(d) tau)^2 }
 *    where D2 = L2 sensitivity / sqrt(n s2), D1 = L1 sensitivity / sqrt(n s2),
 *    tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s2 k/(k+1)); n = 1 gives the discrete Gaussian (tau = 0).
 *    Poisson subsampling at rate q < 1 uses the general upper bound of Zhu & Wang 2019 (Thm. 5),
 *    integer orders only.
 *
 * All functions are pure; the ledger (participant-node/privacy) stores the inputs and recomputes.
 */
import { anum, aint } from '../util/check';
import { logAdd, logSub, logErfc, logComb } from './special';

// bound once, as in special.ts: global lookups are slow in the vm contexts jest runs tests in
const { abs, exp, expm1, floor, log, log1p, max, min, sqrt, PI, SQRT2 } = Math;
const INF = Infinity;

/** Orders used by default (dp_accounting's default list, plus large ones). */
export const DEFAULT_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10),
  ...Array.from({ length: 53 }, (_, x) => 11 + x),
  128,
  256,
  512,
  1024,
]);

/** Integer orders 2..128 and 256 (the distributed discrete Gaussian bound needs integer orders). */
export const INTEGER_ORDERS: readonly number[] = Object.freeze([...Array.from({ length: 127 }, (_, x) => 2 + x), 256]);

/**
 * The orders every fedbridge epsilon is composed at: the node ledger, the coordinator's and the
 * auditor's accountant, `fedbridge privacy epsilon|sigma`, the demo's calibration and `train-local
 * --dp`. One grid, so a sigma calibrated by the CLI is one the ledger accepts at the same budget
 * (on different grids the minimum over orders differs: up to 10% here). Fractional orders for the
 * sampled Gaussian, integer ones for both mechanisms.
 */
export const ACCOUNTING_ORDERS: readonly number[] = Object.freeze([1.25, 1.5, 1.75, ...INTEGER_ORDERS]);

function logAInt(q: number, sigma: number, alpha: number): number {
  let logA = -INF;
  const lq = log(q);
  const l1q = log1p(-q);
  for (let i = 0; i <= alpha; i++) {
    const logCoef = logComb(alpha, i) + i * lq + (alpha - i) * l1q;
    const s = logCoef + (i * i - i) / (2 * sigma * sigma);
    logA = logAdd(logA, s);
  }
  return logA;
}

/**
 * log A_alpha for fractional alpha (TF Privacy's _compute_log_a_frac): an alternating series summed
 * in log space. When sigma is so large that A_alpha = 1 + O(1/sigma^2) the terms cancel below double
 * precision and a partial sum can come out negative, and near q = 1/2 the terms decay only as
 * i^-(alpha+1) so the series may not reach its stopping threshold in 1e5 terms; in both cases this
 * returns null (the caller falls back to a bound that needs neither) rather than throwing or
 * returning a wrong value.
 */
function logAFrac(q: number, sigma: number, alpha: number): number | null {
  let logA0 = -INF;
  let logA1 = -INF;
  const z0 = sigma * sigma * log(1 / q - 1) + 0.5;
  const lq = log(q);
  const l1q = log1p(-q);
  const s2 = sigma * sigma;
  const sqrt2s = SQRT2 * sigma;
  // binomial coefficient C(alpha, i) for real alpha, as log|C| and sign, built incrementally
  let logAbsCoef = 0;
  let sign = 1;
  for (let i = 0; ; i++) {
    if (i > 0) {
      const f = (alpha - (i - 1)) / i;
      if (f === 0) break; // cannot happen for fractional alpha
      logAbsCoef += log(abs(f));
      if (f < 0) sign = -sign;
    }
    const j = alpha - i;
    const logT0 = logAbsCoef + i * lq + j * l1q;
    const logT1 = logAbsCoef + j * lq + i * l1q;
    const logE0 = log(0.5) + logErfc((i - z0) / sqrt2s);
    const logE1 = log(0.5) + logErfc((z0 - j) / sqrt2s);
    const logS0 = logT0 + (i * i - i) / (2 * s2) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * s2) + logE1;
    if (sign > 0) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      if (logS0 >= logA0 || logS1 >= logA1) return null; // cancellation below double precision
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (max(logS0, logS1) < -30) break;
    if (i > 100000) return null; // slow convergence (q near 1/2 with very large sigma)
  }
  return logAdd(logA0, logA1);
}

/**
 * RDP at one order of one step of the Poisson-subsampled Gaussian mechanism. Two numerical guards,
 * both of which only ever raise the returned value, so it stays an upper bound on the true RDP:
 * - RDP is a Renyi divergence, >= 0 (A_alpha >= 1 by Jensen); with very large sigma the log-space
 *   sums land a few ulps below 0 (down to about -5e-13 at sigma 1e8), which would make a
 *   composition look negative. Such values are raised to 0.
 * - Where the fractional-order series loses its cancellation or does not converge (only for sigma
 *   above about 1e4, far from any calibrated noise), log A_alpha is bounded by interpolating the
 *   exact integer orders k = floor(alpha) and k + 1: log A_alpha = log E[L^alpha] is convex in
 *   alpha (Hoelder), so with alpha = (1 - t) k + t (k + 1),
 *     log A_alpha <= (1 - t) log A_k + t log A_{k+1},   log A_1 = 0.
 *   At such noise the bound exceeds the series value by about 1e-9, so the RDP at that one order
 *   can rise by that much where a larger sigma crosses into the fallback; epsilon, the minimum over
 *   the orders, is set there by large integer orders (tests/shared/dp/rdp.property.test.ts).
 */
export function rdpSampledGaussianStep(q: number, sigma: number, order: number): number {
  if (q === 0) return 0;
  if (sigma === 0) return INF;
  if (order === INF) return INF;
  if (q === 1) return order / (2 * sigma * sigma);
  if (Number.isInteger(order)) return max(0, logAInt(q, sigma, order) / (order - 1));
  let logA = logAFrac(q, sigma, order);
  if (logA === null) {
    const k = floor(order);
    const t = order - k;
    logA = (1 - t) * (k === 1 ? 0 : logAInt(q, sigma, k)) + t * logAInt(q, sigma, k + 1);
  }
  return max(0, logA / (order - 1));
}

function checkOrders(orders: readonly number[]): void {
  if (!Array.isArray(orders) || orders.length === 0) throw new TypeError('"orders" expected a non-empty array of numbers');
  orders.forEach((a, i) => {
    if (typeof a !== 'number' || Number.isNaN(a) || !(a > 1)) throw new RangeError(`"orders[${i}]" expected a number > 1, got ${a}`);
  });
}

/**
 * RDP of `steps` compositions of the Poisson-subsampled Gaussian (TF Privacy's compute_rdp):
 * one value per order. `sigma` is the noise multiplier (std / L2 sensitivity).
 */
export function computeRdp(q: number, sigma: number, steps: number, orders: readonly number[] | number): number[] | number {
  anum('q', q, 0, 1);
  anum('sigma', sigma, 0);
  aint('steps', steps, 0);
  if (typeof orders === 'number') {
    if (!(orders > 1)) throw new RangeError(`"order" expected a number > 1, got ${orders}`);
    return rdpSampledGaussianStep(q, sigma, orders) * steps;
  }
  checkOrders(orders);
  return orders.map((a) => rdpSampledGaussianStep(q, sigma, a) * steps);
}

/** Vector form of computeRdp (always returns an array). */
export function rdpSampledGaussian(q: number, sigma: number, steps: number, orders: readonly number[] = DEFAULT_ORDERS): number[] {
  return computeRdp(q, sigma, steps, [...orders]) as number[];
}

export interface EpsilonResult {
  epsilon: number;
  /** the order at which the minimum was attained */
  order: number;
}

/**
 * (eps, delta)-DP from RDP values (CKS 2020 / Balle et al. 2020 conversion, as dp_accounting's
 * compute_epsilon): returns the smallest eps over the orders and the order achieving it.
 */
export function epsilonFromRdp(orders: readonly number[], rdp: readonly number[], delta: number): EpsilonResult {
  checkOrders(orders);
  if (rdp.length !== orders.length) throw new RangeError(`"rdp" expected length ${orders.length} (one per order), got length=${rdp.length}`);
  anum('delta', delta, 0, 1, { min: true, max: true });
  let best = INF;
  let bestOrder = orders[0];
  for (let i = 0; i < orders.length; i++) {
    const a = orders[i];
    const r = rdp[i];
    if (typeof r !== 'number' || Number.isNaN(r) || r < 0) throw new RangeError(`"rdp[${i}]" expected a number >= 0, got ${r}`);
    let eps: number;
    if (delta * delta + expm1(-r) > 0) eps = 0;
    else if (a > 1.01) eps = r + log1p(-1 / a) - log(delta * a) / (a - 1);
    else eps = INF;
    if (eps < best) {
      best = eps;
      bestOrder = a;
    }
  }
  return { epsilon: max(0, best), order: bestOrder };
}

/**
 * tau of Kairouz, Liu & Steinke 2021 Thm. 1: 10 sum_{k=1}^{n-1} exp(-2 pi^2 s2 k/(k+1)), where s2
 * is the variance parameter of each of the n discrete Gaussian shares (integer domain).
 */
export function ddgTau(localVariance: number, n: number): number {
  let tau = 0;
  for (let k = 1; k < n; k++) tau += exp(-2 * PI * PI * localVariance * (k / (k + 1)));
  return 10 * tau;
}

export interface DdgParams {
  /** variance parameter of each party's discrete Gaussian share (integer domain) */
  localVariance: number;
  /** number of shares whose noise is guaranteed to be in the sum (n_min; 1 for per-party) */
  parties: number;
  /** L2 sensitivity of the integer vector (after conditional rounding) */
  l2: number;
  /** L1 sensitivity of the integer vector */
  l1: number;
  /** dimension of the vector (after padding) */
  dimension: number;
  /** Poisson sampling rate of the privacy unit */
  q: number;
  steps: number;
}

function ddgRdpFull(p: DdgParams, alpha: number): number {
  const sd = sqrt(p.parties * p.localVariance);
  const l2s = p.l2 / sd;
  const l1s = p.l1 / sd;
  const tau = ddgTau(p.localVariance, p.parties);
  const d = p.dimension;
  const t1 = (alpha / 2) * l2s * l2s + tau * d;
  const t2 = (alpha / 2) * (l2s * l2s + 2 * l1s * tau + tau * tau * d);
  const t3 = (alpha / 2) * (l2s + sqrt(d) * tau) ** 2;
  return min(t1, t2, t3);
}

/** Zhu & Wang 2019 Thm. 5: RDP at integer order alpha of a mechanism with RDP `eps(l)`, Poisson-subsampled at rate q. */
function rdpSubsampledGeneral(alpha: number, q: number, eps: (l: number) => number): number {
  // log of  (1-q)^(alpha-1) (alpha q - q + 1) + C(alpha,2) q^2 (1-q)^(alpha-2) e^{eps(2)}
  //       + 3 sum_{l=3}^{alpha} C(alpha,l) q^l (1-q)^(alpha-l) e^{(l-1) eps(l)}, all in log space
  const l1q = log1p(-q);
  const lq = log(q);
  let acc = (alpha - 1) * l1q + log(alpha * q - q + 1);
  acc = logAdd(acc, logComb(alpha, 2) + 2 * lq + (alpha - 2) * l1q + eps(2));
  for (let l = 3; l <= alpha; l++) {
    acc = logAdd(acc, log(3) + (l - 1) * eps(l) + logComb(alpha, l) + (alpha - l) * l1q + l * lq);
  }
  // the sum is >= 1 exactly (it bounds E[(P/Q)^alpha]); a log a few ulps below 0 is round-off,
  // raised to 0 so that the result stays an upper bound and compositions stay non-negative
  return max(0, acc / (alpha - 1));
}

/**
 * RDP (one value per order, integer orders only) of `steps` compositions of the (distributed)
 * discrete Gaussian sum mechanism, Poisson-subsampled at rate q (q = 1: no subsampling).
 */
export function rdpDdg(p: DdgParams, orders: readonly number[] = INTEGER_ORDERS): number[] {
  anum('localVariance', p.localVariance, 0, INF, { min: true });
  aint('parties', p.parties, 1);
  anum('l2', p.l2, 0);
  anum('l1', p.l1, 0);
  aint('dimension', p.dimension, 1);
  anum('q', p.q, 0, 1);
  aint('steps', p.steps, 0);
  checkOrders(orders);
  return orders.map((a0, i) => {
    if (!Number.isInteger(a0)) throw new RangeError(`"orders[${i}]" must be an integer for the discrete Gaussian bound, got ${a0}`);
    const eps = (l: number): number => ddgRdpFull(p, l);
    if (p.q === 0) return 0;
    const full = eps(a0);
    const r = p.q === 1 ? full : min(rdpSubsampledGeneral(a0, p.q, eps), full);
    return r * p.steps;
  });
}

/**
 * Integer-domain L2 and L1 sensitivity after conditional stochastic rounding (Kairouz, Liu &
 * Steinke 2021, Thm. 1 / Prop. 22): a vector of L2 norm <= c (already scaled by gamma) in dimension
 * d, rounded and re-drawn until its norm is <= the returned `l2`, has
 *   l2 = min( c + sqrt(d), sqrt(c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2)) )
 * (c + sqrt(d) holds for every rounding; the second bound is the re-draw threshold, met by an
 * unconditioned rounding with probability >= 1 - beta) and, since coordinates are integers,
 *   l1 = l2 * min(sqrt(d), l2).
 */
export function roundedSensitivity(scaledClip: number, dimension: number, beta: number): { l2: number; l1: number } {
  anum('scaledClip', scaledClip, 0);
  aint('dimension', dimension, 1);
  anum('beta', beta, 0, 1, { max: true });
  const sd = sqrt(dimension);
  const b1 = scaledClip + sd;
  let l2 = b1;
  if (beta > 0) {
    const b2 = sqrt(scaledClip * scaledClip + dimension / 4 + sqrt(2 * log(1 / beta)) * (scaledClip + sd / 2));
    l2 = min(b1, b2);
  }
  return { l2, l1: l2 * min(sd, l2) };
}

/**
 * Smallest s (to relative precision `rtol`) with epsAt(s) <= target, for a function that is
 * non-increasing in s (more noise, less epsilon): doubling to bracket, then bisection on log s.
 * The returned s meets the target.
 */
export function calibrate(epsAt: (s: number) => number, target: number, what: string, rtol = 1e-6, lo0 = 1e-4, hi0 = 1e7): number {
  let hi = 1;
  while (epsAt(hi) > target) {
    hi *= 2;
    if (hi > hi0) throw new RangeError(`no ${what} below ${hi0} reaches epsilon ${target}`);
  }
  let lo = hi / 2;
  if (hi === 1) {
    lo = 1;
    while (epsAt(lo) <= target) {
      hi = lo;
      lo /= 2;
      if (lo < lo0) return hi; // any value this small already meets the target
    }
  }
  // invariant: eps(lo) > target >= eps(hi)
  while ((hi - lo) / hi > rtol) {
    const mid = sqrt(lo * hi);
    if (epsAt(mid) <= target) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * Smallest noise multiplier sigma (to relative precision `rtol`) such that `steps` compositions of
 * the Poisson-subsampled Gaussian at rate q are (targetEpsilon, delta)-DP.
 */
export function calibrateSigma(targetEpsilon: number, delta: number, q: number, steps: number, orders: readonly number[] = DEFAULT_ORDERS, rtol = 1e-6): number {
  anum('epsilon', targetEpsilon, 0, INF, { min: true });
  anum('delta', delta, 0, 1, { min: true, max: true });
  anum('q', q, 0, 1, { min: true });
  aint('steps', steps, 1);
  const epsAt = (s: number): number => epsilonFromRdp(orders, rdpSampledGaussian(q, s, steps, orders), delta).epsilon;
  return calibrate(epsAt, targetEpsilon, 'sigma', rtol);
}

/**
 * Round-noise calibration: the smallest real-domain noise std sigma (the encoder's noise.sigma)
 * such that `steps` rounds of the (distributed) discrete Gaussian — shares of variance
 * (gamma sigma)^2 / shares, integer sensitivities from roundedSensitivity(gamma clip, dimension,
 * beta) — are (targetEpsilon, delta)-DP.
 */
export function calibrateDdgSigma(a: {
  epsilon: number;
  delta: number;
  q: number;
  steps: number;
  clip: number;
  gamma: number;
  /** encoded dimension (after padding) */
  dimension: number;
  beta: number;
  /** 1 for per-party, n_min for distributed */
  shares: number;
  rtol?: number;
}): number {
  anum('epsilon', a.epsilon, 0, INF, { min: true });
  anum('delta', a.delta, 0, 1, { min: true, max: true });
  anum('gamma', a.gamma, 0, INF, { min: true });
  anum('clip', a.clip, 0, INF, { min: true });
  const { l2, l1 } = roundedSensitivity(a.gamma * a.clip, a.dimension, a.beta);
  const epsAt = (sigma: number): number =>
    epsilonFromRdp(
      INTEGER_ORDERS,
      rdpDdg({ localVariance: (a.gamma * sigma) ** 2 / a.shares, parties: a.shares, l2, l1, dimension: a.dimension, q: a.q, steps: a.steps }),
      a.delta,
    ).epsilon;
  return calibrate(epsAt, a.epsilon, 'sigma', a.rtol ?? 1e-6);
}
