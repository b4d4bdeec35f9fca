import { sodiumReady } from '../../../shared/crypto/sodium';
import { CsprngBitSource, ScriptedBitSource, BitsExhausted, bitLength } from '../../../shared/dp/bits';
import {
  bernoulliRational,
  bernoulliExp,
  bernoulliExpFrac,
  discreteLaplace,
  DiscreteGaussian,
  discreteGaussianPmf,
  rationalizeVariance,
  floorDiv,
} from '../../../shared/dp/discrete';
import { exactDistribution, bounds } from './exact';

beforeAll(async () => {
  await sodiumReady();
});

describe('bit sources', () => {
  test('scripted source replays bits in order and throws when exhausted', () => {
    const s = new ScriptedBitSource([1, 0, 1, 1]);
    expect(s.bits(3)).toBe(0b101);
    expect(s.bit()).toBe(1);
    expect(() => s.bit()).toThrow(BitsExhausted);
    expect(() => new ScriptedBitSource([0, 2])).toThrow(RangeError);
  });
  test('uniform(n) by rejection: exact over every bit string for n = 5', () => {
    const d = exactDistribution((src) => src.uniform(5), 24);
    for (let v = 0; v < 5; v++) {
      const [lo, hi] = bounds(d, v);
      expect(lo).toBeLessThanOrEqual(0.2);
      expect(hi).toBeGreaterThanOrEqual(0.2);
      expect(hi - lo).toBeLessThan(0.01); // (3/8)^8 of the mass is still undecided at 24 bits
    }
  });
  test('CSPRNG source: bits(k) stays in range and uniform(n) is roughly uniform', () => {
    const s = new CsprngBitSource(4096);
    const counts = new Array(7).fill(0);
    let maxBits = 0;
    for (let i = 0; i < 70000; i++) {
      maxBits = Math.max(maxBits, s.bits(13));
      counts[s.uniform(7)]++;
    }
    expect(maxBits).toBeLessThan(8192);
    expect(maxBits).toBeGreaterThan(8000);
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(600); // > 6 standard deviations
    // 40-bit uniforms use two words and reach the high half
    let high = 0;
    for (let i = 0; i < 1000; i++) if (s.uniform(2 ** 40) >= 2 ** 39) high++;
    expect(high).toBeGreaterThan(400);
    expect(high).toBeLessThan(600);
    expect(() => s.uniform(0)).toThrow(RangeError);
    expect(bitLength(2 ** 40)).toBe(41);
    expect(bitLength(4294967295)).toBe(32);
  });
  test('floorDiv is exact near integer quotients', () => {
    expect(floorDiv(2 ** 53 - 1, 3)).toBe(3002399751580330);
    expect(floorDiv(9007199254740990, 9007199254740991)).toBe(0);
    expect(floorDiv(12, 4)).toBe(3);
  });
});

describe('building blocks are exact (scripted bits, every bit string enumerated)', () => {
  const rationals: [number, number][] = [
    [0, 1],
    [1, 1],
    [1, 2],
    [1, 3],
    [2, 3],
    [5, 7],
    [123456, 1000003],
    [2 ** 52 - 1, 2 ** 52],
  ];
  test.each(rationals)('Bernoulli(%i/%i) has probability exactly p/q', (p, q) => {
    const L = 48;
    const d = exactDistribution((src) => bernoulliRational(src, p, q), L);
    const one = d.mass.get(1) ?? 0n;
    // exact rational check: one/2^L <= p/q <= (one + exhausted)/2^L
    expect(one * BigInt(q) <= BigInt(p) << BigInt(L)).toBe(true);
    expect((one + d.exhausted) * BigInt(q) >= BigInt(p) << BigInt(L)).toBe(true);
    expect(Number(d.exhausted)).toBeLessThanOrEqual(1); // only the single path tracking p/q itself stays open
  });

  const exps: [number, number][] = [
    [0, 1],
    [1, 1],
    [1, 2],
    [3, 7],
    [5, 2],
    [7, 3],
  ];
  test.each(exps)('Bernoulli(exp(-%i/%i)) has probability exp(-x/y)', (x, y) => {
    const d = exactDistribution((src) => bernoulliExp(src, x, y), 26);
    const [lo, hi] = bounds(d, 1);
    const p = Math.exp(-x / y);
    expect(lo).toBeLessThanOrEqual(p + 1e-15);
    expect(hi).toBeGreaterThanOrEqual(p - 1e-15);
    expect(hi - lo).toBeLessThan(3e-4);
  });

  test('Bernoulli(exp(-x/y)) with y*k beyond 2^52 uses the product form and stays exact', () => {
    const y = 2 ** 51 + 1;
    const x = 2 ** 51;
    const d = exactDistribution((src) => bernoulliExpFrac(src, x, y), 22);
    const [lo, hi] = bounds(d, 1);
    const p = Math.exp(-x / y);
    expect(lo).toBeLessThanOrEqual(p + 1e-15);
    expect(hi).toBeGreaterThanOrEqual(p - 1e-15);
    expect(hi - lo).toBeLessThan(2e-2);
  });

  test('discrete Laplace with rational scale t/s = 3/2: P[y] proportional to exp(-|y| 2/3)', () => {
    const d = exactDistribution((src) => discreteLaplace(src, 3, 2), 19);
    const z = (1 + Math.exp(-2 / 3)) / (1 - Math.exp(-2 / 3)); // sum_y exp(-2|y|/3)
    for (let y = -3; y <= 3; y++) {
      const [lo, hi] = bounds(d, y);
      const p = Math.exp((-2 * Math.abs(y)) / 3) / z;
      expect(lo).toBeLessThanOrEqual(p + 1e-12);
      expect(hi).toBeGreaterThanOrEqual(p - 1e-12);
    }
    expect(Number(d.exhausted) * 2 ** -19).toBeLessThan(0.3); // the bounds are tight enough to mean something
  });

  test('discrete Laplace with scale t/s = 10/3 (geometric split at m = 2): P[y] proportional to exp(-|y| 3/10)', () => {
    const d = exactDistribution((src) => discreteLaplace(src, 10, 3), 19);
    const r = Math.exp(-0.3);
    const z = (1 + r) / (1 - r);
    let lowSum = 0;
    for (let y = -4; y <= 4; y++) {
      const [lo, hi] = bounds(d, y);
      lowSum += lo;
      const p = r ** Math.abs(y) / z;
      expect(lo).toBeLessThanOrEqual(p + 1e-12);
      expect(hi).toBeGreaterThanOrEqual(p - 1e-12);
    }
    expect(lowSum).toBeGreaterThan(0.5);
  });

  test.each([
    [1, 4], // sigma = 0.5: small-sigma branch (tau = 1)
    [2, 1], // sigma = 1.41: tau = s2/mu branch
  ])('discrete Gaussian with variance %i/%i: exact pmf bounds', (num, den) => {
    const dg = (src: ScriptedBitSource) => new DiscreteGaussian({ num, den }, src).sample();
    const d = exactDistribution((src) => dg(src as ScriptedBitSource), 18);
    const pmf = discreteGaussianPmf(num / den, -3, 3);
    let lowSum = 0;
    for (let y = -3; y <= 3; y++) {
      const [lo, hi] = bounds(d, y);
      lowSum += lo;
      expect(lo).toBeLessThanOrEqual(pmf[y + 3] + 1e-12);
      expect(hi).toBeGreaterThanOrEqual(pmf[y + 3] - 1e-12);
    }
    expect(lowSum).toBeGreaterThan(0.55); // the bounds are tight enough to mean something
  });
});

describe('discrete Gaussian sampler against the exact pmf (CSPRNG bits)', () => {
  /** chi-square statistic against the exact pmf, bins with expected count >= 20, tails pooled */
  function chiSquare(samples: Float64Array, s2: number): { stat: number; df: number } {
    const sigma = Math.sqrt(s2);
    const lim = Math.ceil(6 * sigma) + 3;
    const pmf = discreteGaussianPmf(s2, -lim, lim);
    const n = samples.length;
    const width = Math.max(1, Math.floor(sigma / 8));
    // bins: [edges], built from the centre outwards, symmetric
    const edges: number[] = [];
    for (let e = -lim; e <= lim + 1; e += width) edges.push(e);
    const exp: number[] = [];
    for (let b = 0; b + 1 < edges.length; b++) {
      let p = 0;
      for (let x = edges[b]; x < edges[b + 1] && x <= lim; x++) p += pmf[x + lim];
      exp.push(p * n);
    }
    const obs = new Array(exp.length).fill(0);
    let outside = 0;
    for (const x of samples) {
      if (x < -lim || x > lim) {
        outside++;
        continue;
      }
      const b = Math.floor((x + lim) / width);
      obs[Math.min(b, obs.length - 1)]++;
    }
    // pool sparse bins into neighbours
    const pe: number[] = [];
    const po: number[] = [];
    let ae = 0;
    let ao = 0;
    for (let i = 0; i < exp.length; i++) {
      ae += exp[i];
      ao += obs[i];
      if (ae >= 20) {
        pe.push(ae);
        po.push(ao);
        ae = 0;
        ao = 0;
      }
    }
    pe[pe.length - 1] += ae + n * (1 - pmf.reduce((a, b) => a + b, 0));
    po[po.length - 1] += ao + outside;
    let stat = 0;
    for (let i = 0; i < pe.length; i++) stat += (po[i] - pe[i]) ** 2 / pe[i];
    return { stat, df: pe.length - 1 };
  }
  /** chi-square quantile at p = 1 - 1e-6 (Wilson-Hilferty) */
  function chiCrit(df: number): number {
    const z = 4.753;
    return df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
  }

  const sigmas = [0.5, 0.8, 1, 1.7, 3, 10, 100, 1000, 1e4];
  test.each(sigmas)('sigma = %p: chi-square, mean and variance', (sigma) => {
    const n = 120000;
    const dg = new DiscreteGaussian(sigma * sigma);
    expect(dg.variance).toBeGreaterThanOrEqual(sigma * sigma);
    expect(dg.variance).toBeLessThanOrEqual(sigma * sigma * (1 + 2 ** -20));
    const xs = dg.fill(new Float64Array(n));
    const { stat, df } = chiSquare(xs, dg.variance);
    expect(stat).toBeLessThan(chiCrit(df));
    let m = 0;
    for (const x of xs) m += x;
    m /= n;
    let v = 0;
    for (const x of xs) v += (x - m) ** 2;
    v /= n - 1;
    // variance of N_Z(0, s2) is slightly below s2 for small sigma; compare with the exact pmf's
    const lim = Math.ceil(12 * sigma) + 3;
    const pmf = discreteGaussianPmf(dg.variance, -lim, lim);
    let exactVar = 0;
    for (let x = -lim; x <= lim; x++) exactVar += pmf[x + lim] * x * x;
    expect(Math.abs(m)).toBeLessThan((6 * Math.sqrt(exactVar)) / Math.sqrt(n));
    expect(Math.abs(v / exactVar - 1)).toBeLessThan(6 * Math.sqrt(2 / n) + 0.002);
  });

  test('the chi-square test would catch a sampler whose variance is 5% off', () => {
    const s2 = 10000;
    const xs = new DiscreteGaussian(s2 * 1.05).fill(new Float64Array(120000));
    const { stat, df } = chiSquare(xs, s2);
    expect(stat).toBeGreaterThan(chiCrit(df));
  });

  test('rationalizeVariance rounds up by at most 2^-20 and rejects out-of-range variances', () => {
    expect(rationalizeVariance(0.25)).toEqual({ num: 1, den: 4 });
    expect(rationalizeVariance(1e8)).toEqual({ num: 1e8, den: 1 });
    const r = rationalizeVariance(Math.PI);
    expect(r.num / r.den).toBeGreaterThanOrEqual(Math.PI);
    expect(r.num / r.den / Math.PI - 1).toBeLessThanOrEqual(2 ** -20);
    expect(() => rationalizeVariance(0)).toThrow(/"variance"/);
    expect(() => rationalizeVariance(2 ** 41)).toThrow(/"variance"/);
    expect(() => new DiscreteGaussian({ num: 0, den: 1 })).toThrow(RangeError);
  });
});
