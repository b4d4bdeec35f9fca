import {
  computeRdp,
  epsilonFromRdp,
  rdpSampledGaussian,
  calibrateSigma,
  calibrateDdgSigma,
  rdpDdg,
  ddgTau,
  roundedSensitivity,
  DEFAULT_ORDERS,
  INTEGER_ORDERS,
} from '../../../shared/dp/rdp';
import { erfc, logErfc, logAdd, logSub, logGamma } from '../../../shared/dp/special';

/** the tolerance: 1e-5 absolute or 1e-4 relative, whichever is larger */
function close(actual: number, expected: number): void {
  const tol = Math.max(1e-5, 1e-4 * Math.abs(expected));
  if (!(Math.abs(actual - expected) <= tol)) throw new Error(`expected ${expected} +- ${tol}, got ${actual}`);
}

describe('special functions', () => {
  test('erfc matches reference values (Python math.erfc)', () => {
    const ref: [number, number][] = [
      [0, 1],
      [0.5, 0.4795001221869535],
      [1, 0.15729920705028513],
      [2, 0.004677734981047266],
      [2.49, 0.000429287867733913],
      [2.5, 0.0004069520174449589],
      [3, 2.209049699858544e-5],
      [5, 1.5374597944280349e-12],
      [10, 2.088487583762545e-45],
      [-1, 1.8427007929497148],
    ];
    for (const [x, v] of ref) expect(Math.abs(erfc(x) - v) / v).toBeLessThan(1e-11);
  });
  test('logErfc stays finite where erfc underflows', () => {
    // log erfc(30) = -900 - log(30 sqrt(pi)) + log(1 - 1/1800 + ...) ~ -904.0262
    const x = 30;
    const asym = -x * x - Math.log(x * Math.sqrt(Math.PI)) + Math.log(1 - 1 / (2 * x * x) + 3 / (4 * x ** 4) - 15 / (8 * x ** 6));
    expect(Math.abs(logErfc(x) - asym)).toBeLessThan(1e-9);
    expect(Number.isFinite(logErfc(1000))).toBe(true);
  });
  test('logAdd / logSub / logGamma', () => {
    expect(logAdd(Math.log(2), Math.log(3))).toBeCloseTo(Math.log(5), 14);
    expect(logSub(Math.log(5), Math.log(3))).toBeCloseTo(Math.log(2), 14);
    expect(() => logSub(0, 1)).toThrow(RangeError);
    expect(logGamma(11)).toBeCloseTo(Math.log(3628800), 11);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 12);
  });
});

describe('RDP of the Poisson-subsampled Gaussian (TF Privacy rdp_accountant_test values)', () => {
  test('compute_rdp(q=0.1, sigma=2, steps=10, order=5) = 0.07737', () => {
    close(computeRdp(0.1, 2, 10, 5) as number, 0.07737);
  });
  test('q=0.01, sigma=2.5, steps=50, integer and fractional orders', () => {
    const got = computeRdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100]) as number[];
    const want = [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307];
    got.forEach((g, i) => close(g, want[i]));
  });
  test('agrees with direct numerical integration of the Renyi divergence (integer and fractional orders)', () => {
    // log(A_alpha)/(alpha-1), A_alpha = integral of mu0^(1-alpha) mu^alpha, mu0 = N(0, s^2),
    // mu = (1-q) N(0, s^2) + q N(1, s^2): computed independently with scipy.integrate.quad
    // (epsrel 1e-13) in Python, not with the series used here.
    const ref: [number, number, number, number][] = [
      [0.1, 1.0, 2.5, 0.02350372726100321],
      [0.01, 2.0, 7.3, 0.00010539333483156762],
      [0.2, 0.8, 3.7, 0.8130704542762178],
      [0.05, 1.5, 12.5, 0.0168109543965571],
      [0.5, 3.0, 1.5, 0.02141335632063135],
      [0.001, 0.7, 4.25, 1.5036501231872903e-5],
      [0.1, 1, 3, 0.031712300303376385],
      [0.05, 1.5, 12, 0.014522297252574671],
    ];
    for (const [q, s, a, want] of ref) {
      const got = computeRdp(q, s, 1, a) as number;
      expect(Math.abs(got / want - 1)).toBeLessThan(1e-8);
    }
  });
  test('edge cases: q = 0, q = 1 (alpha / (2 sigma^2)), infinite order', () => {
    expect(computeRdp(0, 10, 1, 20)).toBe(0);
    expect(computeRdp(1, 10, 1, 20)).toBeCloseTo(0.1, 15);
    expect(computeRdp(0.1, 1, 1, [Infinity])).toEqual([Infinity]);
  });
  test('fractional orders interpolate between neighbouring integer orders (RDP is non-decreasing in the order)', () => {
    const orders = [2, 2.5, 3, 3.5, 4, 10, 10.5, 11];
    const r = computeRdp(0.05, 1.1, 1, orders) as number[];
    for (let i = 1; i < r.length; i++) expect(r[i]).toBeGreaterThan(r[i - 1]);
  });
  test('very large sigma: every order gives a finite RDP >= 0 and the composition converts', () => {
    // found by the hostile-log property test: a logged noise multiplier of 1.2e8 gave RDP -1.9e-13
    // (log-space round-off) and the conversion threw; near q = 1/2 the fractional series also failed
    // to converge for sigma above about 1e4
    for (const q of [1e-4, 0.3, 0.5, 0.99]) {
      for (const sigma of [1e4, 1e7, 116835019, 1e12]) {
        const r = rdpSampledGaussian(q, sigma, 3);
        r.forEach((v, i) => {
          // at this noise differences between neighbouring orders are round-off, so only sign,
          // finiteness and size are asserted: subsampling never raises RDP above the unsampled
          // Gaussian's steps * alpha / (2 sigma^2)
          const a = DEFAULT_ORDERS[i];
          if (!(Number.isFinite(v) && v >= 0 && v <= (3 * a) / (2 * sigma * sigma) + 1e-12)) throw new Error(`q=${q} sigma=${sigma} order=${DEFAULT_ORDERS[i]}: RDP ${v}`);
        });
        // RDP ~ 0 at every order: the conversion's floor at the largest order is about 0.011
        const { epsilon } = epsilonFromRdp(DEFAULT_ORDERS, r, 1e-5);
        expect(epsilon).toBeGreaterThanOrEqual(0);
        expect(epsilon).toBeLessThan(0.02);
      }
    }
  });
  test('a fractional order whose series cannot be summed is bounded from the integer orders around it, never below', () => {
    // q = 1/2, sigma = 1e5: the alternating series for order 1.2 does not converge in 1e5 terms
    // (it does for 1.5, which stays below order 2); log A is convex in the order and log A_1 = 0,
    // so log A_1.2 <= 0.2 log A_2, i.e. RDP(1.2) <= RDP(2), which is what is returned
    const at = (a: number) => computeRdp(0.5, 1e5, 1, a) as number;
    expect(at(1.2)).toBe(at(2));
    expect(at(1.5)).toBeLessThan(at(2));
    expect(at(1.5)).toBeGreaterThan(0);
    // where the series converges, the fractional value is strictly between its integer neighbours
    const mid = computeRdp(0.5, 30, 1, 2.5) as number;
    expect(mid).toBeGreaterThan(computeRdp(0.5, 30, 1, 2) as number);
    expect(mid).toBeLessThan(computeRdp(0.5, 30, 1, 3) as number);
  });
  test('rejects bad arguments with errors naming them', () => {
    expect(() => computeRdp(1.5, 1, 1, 2)).toThrow(/"q"/);
    expect(() => computeRdp(0.1, -1, 1, 2)).toThrow(/"sigma"/);
    expect(() => computeRdp(0.1, 1, 1.5, 2)).toThrow(/"steps"/);
    expect(() => computeRdp(0.1, 1, 1, [2, 0.5])).toThrow(/"orders\[1\]"/);
  });
});

describe('conversion to (eps, delta)', () => {
  test('constant RDP 1.1 at orders 2..32, delta = 1e-5 -> eps = 1.32783806176 (CKS/Balle conversion)', () => {
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const { epsilon, order } = epsilonFromRdp(orders, orders.map(() => 1.1), 1e-5);
    expect(Math.abs(epsilon - 1.32783806176)).toBeLessThan(1e-9);
    expect(order).toBe(32);
  });
  test('the tighter conversion is below the classic rdp - log(delta)/(alpha-1)', () => {
    const rdp = rdpSampledGaussian(0.01, 1.1, 1000);
    const { epsilon } = epsilonFromRdp(DEFAULT_ORDERS, rdp, 1e-5);
    const classic = Math.min(...DEFAULT_ORDERS.map((a, i) => rdp[i] - Math.log(1e-5) / (a - 1)));
    expect(epsilon).toBeLessThan(classic);
    expect(epsilon).toBeGreaterThan(0.5 * classic);
  });
  test('eps = 0 when delta^2 >= 1 - exp(-rdp)', () => {
    expect(epsilonFromRdp([2, 3], [1e-12, 1e-12], 0.01).epsilon).toBe(0);
  });
  test('rejects mismatched lengths and bad delta', () => {
    expect(() => epsilonFromRdp([2, 3], [1], 1e-5)).toThrow(/"rdp"/);
    expect(() => epsilonFromRdp([2], [1], 0)).toThrow(/"delta"/);
    expect(() => epsilonFromRdp([2], [-1], 1e-5)).toThrow(/"rdp\[0\]"/);
  });
});

describe('calibration', () => {
  test('returns the smallest sigma meeting the target (eps(sigma) <= target < eps(sigma (1 - 1e-4)))', () => {
    const q = 0.01;
    const steps = 1000;
    const delta = 1e-5;
    const target = 2;
    const sigma = calibrateSigma(target, delta, q, steps);
    const eps = (s: number) => epsilonFromRdp(DEFAULT_ORDERS, rdpSampledGaussian(q, s, steps), delta).epsilon;
    expect(eps(sigma)).toBeLessThanOrEqual(target);
    expect(eps(sigma * (1 - 1e-4))).toBeGreaterThan(target);
  });
  test('round-noise calibration: the smallest real-domain sigma for the discrete Gaussian meets the target', () => {
    const a = { epsilon: 4, delta: 1e-6, q: 1, steps: 20, clip: 1, gamma: 256, dimension: 4096, beta: Math.exp(-0.5), shares: 1 };
    const sigma = calibrateDdgSigma(a);
    const { l2, l1 } = roundedSensitivity(256, 4096, Math.exp(-0.5));
    const eps = (s: number) =>
      epsilonFromRdp(INTEGER_ORDERS, rdpDdg({ localVariance: (256 * s) ** 2, parties: 1, l2, l1, dimension: 4096, q: 1, steps: 20 }), 1e-6).epsilon;
    expect(eps(sigma)).toBeLessThanOrEqual(4);
    expect(eps(sigma * (1 - 1e-4))).toBeGreaterThan(4);
    // rounding inflates the sensitivity above gamma * clip, so sigma exceeds the continuous one per unit clip
    expect(sigma).toBeGreaterThan(calibrateSigma(4, 1e-6, 1, 20, INTEGER_ORDERS) * 0.99);
  });
  test('q = 1 single step: matches the closed form minimisation', () => {
    const sigma = calibrateSigma(1, 1e-5, 1, 1);
    expect(sigma).toBeGreaterThan(3);
    expect(sigma).toBeLessThan(6);
  });
});

describe('distributed discrete Gaussian (Kairouz, Liu & Steinke 2021)', () => {
  test('one party, q = 1: tau = 0 and RDP = alpha D2^2 / (2 s2) (the discrete Gaussian matches the Gaussian)', () => {
    const p = { localVariance: 400, parties: 1, l2: 10, l1: 100, dimension: 1000, q: 1, steps: 3 };
    const r = rdpDdg(p, [2, 8]);
    expect(r[0]).toBeCloseTo((3 * 2 * 100) / (2 * 400), 12);
    expect(r[1]).toBeCloseTo((3 * 8 * 100) / (2 * 400), 12);
  });
  test('n shares of variance s2 behave like one of variance n s2 plus tau', () => {
    expect(ddgTau(1, 1)).toBe(0);
    const tau = ddgTau(0.25, 3);
    const want = 10 * (Math.exp(-2 * Math.PI ** 2 * 0.25 * 0.5) + Math.exp(-2 * Math.PI ** 2 * 0.25 * (2 / 3)));
    expect(tau).toBeCloseTo(want, 14);
    const p = { localVariance: 0.25, parties: 3, l2: 1, l1: 1, dimension: 10, q: 1, steps: 1 };
    const [r] = rdpDdg(p, [4]);
    const l2s = 1 / Math.sqrt(0.75);
    const t1 = 2 * l2s ** 2 + tau * 10;
    const t2 = 2 * (l2s ** 2 + 2 * l2s * tau + tau ** 2 * 10);
    const t3 = 2 * (l2s + Math.sqrt(10) * tau) ** 2;
    expect(r).toBeCloseTo(Math.min(t1, t2, t3), 12);
  });
  test('the bound is at least the exact Renyi divergence of a sum of n discrete Gaussians (1-D, shift 1)', () => {
    // exact pmf of the sum of n independent N_Z(0, s2) by convolution, then
    // D_alpha(P(. - 1) || P) = log(sum_x P(x-1)^alpha P(x)^(1-alpha)) / (alpha - 1)
    for (const [s2, n] of [
      [0.3, 3],
      [0.5, 2],
      [1, 4],
    ] as [number, number][]) {
      const lim = 40;
      let pmf = Array.from({ length: 2 * lim + 1 }, (_, i) => Math.exp(-((i - lim) ** 2) / (2 * s2)));
      const z = pmf.reduce((a, b) => a + b, 0);
      const base = pmf.map((v) => v / z);
      pmf = base;
      for (let k = 1; k < n; k++) {
        const next = new Array(pmf.length + base.length - 1).fill(0);
        pmf.forEach((a, i) => base.forEach((b, j) => (next[i + j] += a * b)));
        pmf = next;
      }
      for (const alpha of [2, 3, 5, 10]) {
        let sum = 0;
        for (let x = 1; x < pmf.length; x++) if (pmf[x] > 0 && pmf[x - 1] > 0) sum += Math.exp(alpha * Math.log(pmf[x - 1]) + (1 - alpha) * Math.log(pmf[x]));
        const exact = Math.log(sum) / (alpha - 1);
        const [bound] = rdpDdg({ localVariance: s2, parties: n, l2: 1, l1: 1, dimension: 1, q: 1, steps: 1 }, [alpha]);
        expect(bound).toBeGreaterThanOrEqual(exact * (1 - 1e-9));
        // and not absurdly loose (the tau term is what covers the gap to the continuous Gaussian)
        expect(bound).toBeLessThan(exact + 2 + 2 * alpha);
      }
    }
  });
  test('Poisson subsampling (Zhu & Wang Thm. 5) upper-bounds the exact sampled Gaussian RDP, and is not loose', () => {
    // one share, tau = 0: the base mechanism is the Gaussian with noise multiplier sqrt(s2)/l2
    for (const [q, sigma] of [
      [0.01, 1],
      [0.1, 2],
      [0.3, 0.9],
    ]) {
      const orders = [2, 3, 5, 8, 16, 32];
      const sub = rdpDdg({ localVariance: sigma * sigma, parties: 1, l2: 1, l1: 1, dimension: 1, q, steps: 1 }, orders);
      const exact = computeRdp(q, sigma, 1, orders) as number[];
      orders.forEach((_, i) => {
        expect(sub[i]).toBeGreaterThanOrEqual(exact[i] * (1 - 1e-9));
        expect(sub[i]).toBeLessThanOrEqual(Math.max(3 * exact[i], exact[i] + 0.05));
      });
    }
  });
  test('subsampling lowers RDP, and eps grows with steps', () => {
    const base = { localVariance: 1e4, parties: 4, l2: 50, l1: 2500, dimension: 4096, steps: 10 };
    const full = rdpDdg({ ...base, q: 1 });
    const sub = rdpDdg({ ...base, q: 0.1 });
    sub.forEach((v, i) => expect(v).toBeLessThanOrEqual(full[i]));
    expect(sub[0]).toBeLessThan(full[0]);
    const e10 = epsilonFromRdp(INTEGER_ORDERS, sub, 1e-6).epsilon;
    const e20 = epsilonFromRdp(INTEGER_ORDERS, rdpDdg({ ...base, q: 0.1, steps: 20 }), 1e-6).epsilon;
    expect(e20).toBeGreaterThan(e10);
  });
  test('rounded sensitivity (Kairouz et al. Thm. 1): min(c + sqrt d, sqrt(c^2 + d/4 + sqrt(2 ln 1/beta)(c + sqrt(d)/2)))', () => {
    const { l2, l1 } = roundedSensitivity(100, 10000, Math.exp(-0.5));
    const b2 = Math.sqrt(100 ** 2 + 2500 + 1 * (100 + 50));
    expect(l2).toBeCloseTo(Math.min(200, b2), 12);
    expect(l1).toBeCloseTo(l2 * Math.min(100, l2), 9);
    expect(roundedSensitivity(3, 16, 0).l2).toBe(7);
  });
  test('very large variance: every order gives RDP >= 0 (round-off in the log-space subsampling sum is raised to 0)', () => {
    for (const q of [1e-4, 0.01, 0.3, 0.99]) {
      for (const s of [1e6, 1e8, 1e12]) {
        const r = rdpDdg({ localVariance: s * s, parties: 3, l2: 1.5, l1: 3, dimension: 1000, q, steps: 2 });
        r.forEach((v, i) => {
          if (!(Number.isFinite(v) && v >= 0 && v < 1e-6)) throw new Error(`q=${q} s=${s} order=${INTEGER_ORDERS[i]}: RDP ${v}`);
        });
        // with RDP ~ 0 at orders up to 256 the conversion gives log(1 - 1/256) - log(delta 256)/255 = 0.0195
        expect(epsilonFromRdp(INTEGER_ORDERS, r, 1e-5).epsilon).toBeLessThan(0.02);
      }
    }
  });
  test('rejects fractional orders and bad parameters', () => {
    const p = { localVariance: 1, parties: 2, l2: 1, l1: 1, dimension: 1, q: 1, steps: 1 };
    expect(() => rdpDdg(p, [2.5])).toThrow(/integer/);
    expect(() => rdpDdg({ ...p, parties: 0 }, [2])).toThrow(/"parties"/);
  });
});
