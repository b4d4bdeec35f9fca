/**
 * Special functions the accountant needs, in double precision: log(erfc(x)) without underflow,
 * log-space addition/subtraction, log binomial coefficients for real orders.
 *
 * erfc: Taylor series of erf for |x| < 2.5 (relative error of erfc below 1e-12 there), Lentz's
 * continued fraction for x >= 2.5 evaluated in log space, so log(erfc(x)) stays finite for x in
 * the thousands (where erfc itself underflows), and erfc(x) = 2 - erfc(-x) for x < 0.
 */

// Math's members bound once: under jest every test file runs in a vm context, where each global
// lookup (Math, Infinity) goes through the context's interceptor and the accountant's series loops
// run about 50 times slower than in plain node (rdpSampledGaussian(0.5, 1e4, 3): 11 s vs 0.24 s).
const { abs, exp, expm1, log, log1p, max, min, sin, sqrt, PI } = Math;
const INF = Infinity;

const LOG_SQRT_PI = 0.5 * log(PI);
const TWO_OVER_SQRT_PI = 2 / sqrt(PI);

function erfSeries(x: number): number {
  // erf(x) = 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1))
  const x2 = x * x;
  let term = x; // (-1)^n x^(2n+1) / n!
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= -x2 / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (abs(add) < 1e-17 * abs(sum)) break;
  }
  return TWO_OVER_SQRT_PI * sum;
}

/** log of the continued fraction part: erfc(x) = exp(-x^2)/sqrt(pi) * CF(x), x >= 2.5. */
function logErfcCf(x: number): number {
  // CF(x) = 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))) ; modified Lentz
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 5000; k++) {
    const a = k / 2;
    d = x + a * d;
    if (abs(d) < tiny) d = tiny;
    c = x + a / c;
    if (abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (abs(delta - 1) < 1e-16) break;
  }
  return -x * x - LOG_SQRT_PI - log(f);
}

/** erfc(x) in double precision. */
export function erfc(x: number): number {
  if (x !== x) return x; // NaN
  if (x < 0) return 2 - erfc(-x);
  if (x < 2.5) return 1 - erfSeries(x);
  return exp(logErfcCf(x));
}

/** log(erfc(x)), finite for large positive x. */
export function logErfc(x: number): number {
  if (x !== x) return x; // NaN
  if (x === INF) return -INF;
  if (x < 2.5) return log(erfc(x));
  return logErfcCf(x);
}

/** log(exp(a) + exp(b)). */
export function logAdd(a: number, b: number): number {
  if (a === -INF) return b;
  if (b === -INF) return a;
  const m = max(a, b);
  return log1p(exp(min(a, b) - m)) + m;
}

/** log(exp(a) - exp(b)), a >= b. */
export function logSub(a: number, b: number): number {
  if (b === -INF) return a;
  if (a < b) throw new RangeError('logSub: the result of subtraction must be non-negative');
  if (a === b) return -INF;
  const d = a - b;
  if (d > 700) return a; // exp(-d) below double precision relative to 1
  return log(expm1(d)) + b;
}

/** log(Gamma(x)) for x > 0 (Lanczos, g = 7, n = 9; relative error ~1e-15). */
export function logGamma(x: number): number {
  const g = 7;
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return log(PI / abs(sin(PI * x))) - logGamma(1 - x);
  x -= 1;
  let a = c[0];
  const t = x + g + 0.5;
  for (let i = 1; i < g + 2; i++) a += c[i] / (x + i);
  return 0.5 * log(2 * PI) + (x + 0.5) * log(t) - t + log(a);
}

/** log C(n, k) for integers 0 <= k <= n. */
export function logComb(n: number, k: number): number {
  return logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1);
}
