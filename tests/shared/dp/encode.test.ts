import fc from 'fast-check';
import { createCipheriv } from 'node:crypto';
import { sodiumReady, sodium } from '../../../shared/crypto/sodium';
import {
  fwht,
  rotate,
  unrotate,
  rotationSigns,
  paddedDimension,
  conditionalRound,
  quantizeContribution,
  finishEncoding,
  encodeUpdate,
  encodeContributions,
  decodeAggregate,
  checkWrapAround,
  assertNoWrapAround,
  contributionSensitivity,
  clipL2,
  DEFAULT_BETA,
  type EncodeParams,
} from '../../../shared/dp/encode';
import { roundedSensitivity } from '../../../shared/dp/rdp';
import { csprngBytes } from '../../../shared/dp/bits';
import { gaussianNoise } from '../../../shared/dp/gaussian';

beforeAll(async () => {
  await sodiumReady();
});

const seedA = new Uint8Array(32).fill(7);
const seedB = new Uint8Array(32).fill(8);

function norm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

function sumMod(vs: Uint32Array[], bits: number): Uint32Array {
  const m = 2 ** bits;
  const out = new Uint32Array(vs[0].length);
  for (const v of vs) for (let i = 0; i < v.length; i++) out[i] = (out[i] + v[i]) % m;
  return out;
}

function randomVector(d: number, scale: number): Float64Array {
  return Float64Array.from(gaussianNoise(d, scale, new Float64Array(d)));
}

describe('randomized Hadamard rotation', () => {
  test('fwht of a unit vector is all ones; applying it twice multiplies by n', () => {
    const x = new Float64Array([1, 0, 0, 0]);
    fwht(x);
    expect(Array.from(x)).toEqual([1, 1, 1, 1]);
    const y = new Float64Array([3, -1, 2, 5, 0, 1, 1, -2]);
    const z = Float64Array.from(y);
    fwht(z);
    fwht(z);
    z.forEach((v, i) => expect(v).toBeCloseTo(8 * y[i], 12));
  });
  test('signs are deterministic in the public seed and differ between seeds', () => {
    const a = rotationSigns(seedA, 256);
    expect(Array.from(rotationSigns(seedA, 256))).toEqual(Array.from(a));
    const b = rotationSigns(seedB, 256);
    let diff = 0;
    let ones = 0;
    for (let i = 0; i < 256; i++) {
      diff += a[i] !== b[i] ? 1 : 0;
      ones += a[i];
    }
    expect(diff).toBeGreaterThan(80);
    expect(ones).toBeGreaterThan(80);
    expect(ones).toBeLessThan(176);
    expect(() => rotationSigns(new Uint8Array(16), 4)).toThrow(/"rotationSeed" expected Uint8Array of length 32/);
  });
  test('signs are the ChaCha20 keystream (checked against Node crypto) under BLAKE2b-256(seed, context key)', () => {
    const key = sodium().crypto_generichash(32, seedA, new TextEncoder().encode('fedbridge/hadamard-signs/v1'));
    // libsodium randombytes_buf_deterministic = ChaCha20-IETF, nonce "LibsodiumDRG", counter 0
    const iv = Buffer.concat([Buffer.alloc(4), Buffer.from('LibsodiumDRG')]);
    const ks = createCipheriv('chacha20', Buffer.from(key), iv).update(Buffer.alloc(64));
    const signs = rotationSigns(seedA, 512);
    for (let i = 0; i < 512; i++) expect(signs[i]).toBe((ks[i >> 3] >> (i & 7)) & 1);
  });
  test('property: rotation preserves the L2 norm and unrotate inverts it (padding to a power of two)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -100, max: 100, noNaN: true }), { minLength: 1, maxLength: 300 }), (xs) => {
        const y = rotate(xs, seedA);
        expect(y.length).toBe(paddedDimension(xs.length));
        expect(Math.abs(norm(y) - norm(xs))).toBeLessThan(1e-9 * (1 + norm(xs)));
        const back = unrotate(y, seedA, xs.length);
        back.forEach((v, i) => expect(Math.abs(v - xs[i])).toBeLessThan(1e-9 * (1 + norm(xs))));
      }),
      { numRuns: 60 },
    );
  });
  test('rotation spreads a spike over all coordinates', () => {
    const x = new Float64Array(1024);
    x[3] = 32;
    const y = rotate(x, seedA);
    for (const v of y) expect(Math.abs(v)).toBeCloseTo(1, 12);
  });
});

describe('conditional stochastic rounding (Kairouz et al. 2021)', () => {
  test('the norm bound holds on the integer vector itself, every draw, even when it forces re-draws', () => {
    const d = 4096;
    // worst case for rounding: every coordinate has fractional part 1/2
    const y = new Float64Array(d);
    for (let i = 0; i < d; i++) y[i] = (i % 2 ? -1 : 1) * 0.5 + (i % 3);
    const yn = norm(y);
    // (a) the accountant's bound (Kairouz et al. Thm. 1)
    const { l2 } = roundedSensitivity(yn, d, 0.3);
    // (b) a bound near the median of the unconditioned norm, E||x||^2 = ||y||^2 + d/4: about half the draws fail it
    const tight = Math.sqrt(yn * yn + d / 4);
    let redraws = 0;
    let bad = 0;
    for (let t = 0; t < 40; t++) {
      for (const bound of [l2, tight]) {
        const { x, attempts } = conditionalRound(y, bound);
        if (bound === tight) redraws += attempts - 1;
        let ss = 0;
        for (let i = 0; i < d; i++) {
          if (!Number.isInteger(x[i]) || Math.abs(x[i] - y[i]) >= 1) bad++;
          ss += x[i] * x[i];
        }
        expect(ss).toBeLessThanOrEqual(Math.floor(bound * bound));
      }
    }
    expect(bad).toBe(0);
    // the tight bound rejected draws, so the norm check itself was exercised
    expect(redraws).toBeGreaterThan(5);
  });
  test('rounding is unbiased (mean of many draws ~ the input)', () => {
    const y = new Float64Array([0.25, -0.75, 3.5, -2.125]);
    const n = 20000;
    const mean = new Float64Array(4);
    for (let t = 0; t < n; t++) {
      const { x } = conditionalRound(y, 100);
      for (let i = 0; i < 4; i++) mean[i] += x[i] / n;
    }
    for (let i = 0; i < 4; i++) expect(Math.abs(mean[i] - y[i])).toBeLessThan(0.02);
  });
  test('refuses when no draw can meet the bound, and rejects non-finite input', () => {
    expect(() => conditionalRound(new Float64Array([10, 10]), 1, 5)).toThrow(/no draw within L2 bound/);
    expect(() => conditionalRound(new Float64Array([NaN]), 1)).toThrow(/out of range/);
  });
});

describe('user-level sensitivity', () => {
  const params: EncodeParams = { clip: 1, gamma: 64, bits: 32, rotationSeed: seedA, beta: DEFAULT_BETA, noise: null };
  test('real domain: removing any one user changes the sum of clipped contributions by <= C', () => {
    const users = Array.from({ length: 12 }, (_, u) => randomVector(50, u % 3 === 0 ? 5 : 0.05));
    const clipped = users.map((g) => {
      const v = Float64Array.from(g);
      clipL2(v, params.clip);
      return v;
    });
    const total = new Float64Array(50);
    for (const v of clipped) for (let i = 0; i < 50; i++) total[i] += v[i];
    for (let v = 0; v < users.length; v++) {
      const without = new Float64Array(50);
      clipped.forEach((c, u) => {
        if (u !== v) for (let i = 0; i < 50; i++) without[i] += c[i];
      });
      const diff = total.map((t, i) => t - without[i]);
      expect(norm(diff)).toBeLessThanOrEqual(params.clip * (1 + 1e-12));
    }
  });
  test('integer domain: each rounded contribution (= the change from removing that user) obeys the accountant’s l2 and l1', () => {
    const d = 300;
    const { l2, l1, encodedDimension } = contributionSensitivity(params, d);
    expect(encodedDimension).toBe(512);
    const acc = new Float64Array(encodedDimension);
    const contributions: Float64Array[] = [];
    for (let u = 0; u < 20; u++) {
      const q = quantizeContribution(randomVector(d, u % 2 ? 10 : 0.01), params, acc);
      contributions.push(q.x);
      expect(q.l2Norm).toBeLessThanOrEqual(l2);
      expect(q.l1Norm).toBeLessThanOrEqual(l1);
    }
    // X - X_without_v == r_v exactly (integers)
    for (let v = 0; v < contributions.length; v++) {
      let ss = 0;
      for (let i = 0; i < encodedDimension; i++) {
        let without = 0;
        contributions.forEach((c, u) => {
          if (u !== v) without += c[i];
        });
        ss += (acc[i] - without) ** 2;
      }
      expect(Math.sqrt(ss)).toBeLessThanOrEqual(l2);
    }
  });
});

describe('encode / decode', () => {
  test('property: decode(sum of encodings) = average of the clipped updates, within the rounding error', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 2, max: 5 }), fc.boolean(), fc.integer({ min: 12, max: 32 }), (d, n, rot, bits) => {
        const p: EncodeParams = { clip: 3, gamma: 256, bits, rotationSeed: rot ? seedB : null, beta: 0, noise: null };
        const ups = Array.from({ length: n }, () => randomVector(d, 0.2));
        if (!checkWrapAround({ bits, parties: n, dimension: d, rotated: rot, clip: 3, gamma: 256, beta: 0, noise: null }).ok) return;
        const enc = ups.map((u) => encodeUpdate(u, p).data);
        const avg = decodeAggregate(sumMod(enc, bits), p, d, n);
        const want = new Float64Array(d);
        for (const u of ups) {
          const c = Float64Array.from(u);
          clipL2(c, 3);
          for (let i = 0; i < d; i++) want[i] += c[i] / n;
        }
        // per coordinate the rounding error is < 1/gamma per party (before the orthogonal rotation)
        const errNorm = norm(avg.map((v, i) => v - want[i]));
        expect(errNorm).toBeLessThanOrEqual(Math.sqrt(paddedDimension(d)) / 256 + 1e-9);
      }),
      { numRuns: 40 },
    );
  });
  test('round-noise for one party: per-user rounded contributions sum and decode to the sum of clipped contributions', () => {
    const d = 100;
    const p: EncodeParams = { clip: 1, gamma: 512, bits: 32, rotationSeed: seedA, beta: DEFAULT_BETA, noise: null };
    const users = Array.from({ length: 25 }, (_, u) => randomVector(d, u % 4 === 0 ? 3 : 0.05));
    const enc = encodeContributions(users, d, p);
    expect(enc.contributions).toBe(25);
    expect(enc.maxL2Norm).toBeLessThanOrEqual(contributionSensitivity(p, d).l2);
    const got = decodeAggregate(enc.data, p, d, 1);
    const want = new Float64Array(d);
    for (const u of users) {
      const c = Float64Array.from(u);
      clipL2(c, 1);
      for (let i = 0; i < d; i++) want[i] += c[i];
    }
    // 25 independent roundings, each with error < 1/gamma per coordinate
    expect(norm(got.map((v, i) => v - want[i]))).toBeLessThanOrEqual((25 * Math.sqrt(128)) / 512);
    expect(() => encodeContributions([new Float64Array(d), new Float64Array(d - 1)], d, p)).toThrow(/contribution 1 expected length 100/);
  });
  test('negative values survive the reduction mod 2^b and the signed lift', () => {
    const p: EncodeParams = { clip: 100, gamma: 1, bits: 16, rotationSeed: null, beta: 0, noise: null };
    const e = finishEncoding(new Float64Array([-1, -32768, 32767, 0]), p);
    expect(Array.from(e.data)).toEqual([65535, 32768, 32767, 0]);
    expect(Array.from(decodeAggregate(e.data, p, 4, 1))).toEqual([-1, -32768, 32767, 0]);
  });
  test('a sum that wraps decodes wrongly, and the validator refuses those parameters naming the signal bound', () => {
    const p: EncodeParams = { clip: 1, gamma: 100, bits: 8, rotationSeed: null, beta: 0, noise: null };
    const one = encodeUpdate([1], p).data; // 100
    const avg = decodeAggregate(sumMod([one, one], 8), p, 1, 2); // 200 wraps to -56
    expect(avg[0]).toBeLessThan(0);
    const r = checkWrapAround({ bits: 8, parties: 2, dimension: 1, rotated: false, clip: 1, gamma: 100, beta: 0, noise: null });
    expect(r.ok).toBe(false);
    expect(r.failure).toMatch(/^signal bound/);
    expect(() => assertNoWrapAround({ bits: 8, parties: 2, dimension: 1, rotated: false, clip: 1, gamma: 100, beta: 0, noise: null })).toThrow(/signal bound/);
  });
  test('the validator refuses noise whose Gaussian tail may wrap, accepts it with more bits, and honours the bound', () => {
    const base = { parties: 3, dimension: 100000, rotated: true, clip: 1, gamma: 1000, beta: DEFAULT_BETA };
    const noise = { sigma: 50, mode: 'per-party' as const, nMin: 1 };
    const small = checkWrapAround({ ...base, bits: 20, noise });
    expect(small.ok).toBe(false);
    expect(small.failure).toMatch(/^Gaussian tail bound/);
    const big = checkWrapAround({ ...base, bits: 32, noise });
    expect(big.ok).toBe(true);
    expect(big.log2Probability).toBeLessThan(-40);
    // the same parameters with a laxer bound
    const lax = checkWrapAround({ ...base, bits: 20, noise, maxProbability: 0.5 });
    expect(lax.log2Probability).toBe(small.log2Probability);
    expect(lax.ok).toBe(lax.log2Probability <= -1);
    expect(() => checkWrapAround({ ...base, bits: 33, noise })).toThrow(/"bits"/);
  });
  test('all-zero update with round-noise: per-coordinate variance of the lifted integers = gamma^2 sigma^2 within 5%', () => {
    const gamma = 8;
    const sigma = 1.25; // integer std 10
    const d = 20000;
    for (const mode of ['per-party', 'distributed'] as const) {
      const nMin = mode === 'distributed' ? 4 : 1;
      const p: EncodeParams = { clip: 1, gamma, bits: 32, rotationSeed: seedA, beta: DEFAULT_BETA, noise: { sigma, mode, nMin } };
      const e = encodeUpdate(new Float64Array(d), p);
      expect(e.dimension).toBe(32768);
      const want = (gamma * sigma) ** 2 / nMin;
      expect(e.noiseVariance).toBeGreaterThanOrEqual(want);
      expect(e.noiseVariance / want - 1).toBeLessThan(1e-6);
      let s = 0;
      let ss = 0;
      for (const v of e.data) {
        const x = v >= 2 ** 31 ? v - 2 ** 32 : v;
        s += x;
        ss += x * x;
      }
      const n = e.data.length;
      const variance = (ss - (s * s) / n) / (n - 1);
      expect(Math.abs(variance / want - 1)).toBeLessThan(0.05);
    }
  });
  test('bad parameters and inputs get precise errors', () => {
    const p: EncodeParams = { clip: 1, gamma: 8, bits: 32, rotationSeed: null, beta: 0, noise: null };
    expect(() => encodeUpdate([1], { ...p, clip: 0 })).toThrow(/"clip"/);
    expect(() => encodeUpdate([1], { ...p, bits: 0 })).toThrow(/"bits"/);
    expect(() => encodeUpdate([1], { ...p, rotationSeed: new Uint8Array(31) })).toThrow(/"rotationSeed"/);
    expect(() => encodeUpdate([1, Infinity], p)).toThrow(/non-finite/);
    expect(() => encodeUpdate([1], { ...p, noise: { sigma: 1, mode: 'bogus' as 'per-party', nMin: 1 } })).toThrow(/"noise.mode"/);
    expect(() => decodeAggregate(new Uint32Array(3), p, 4, 1)).toThrow(/"sum" expected Uint32Array of length 4/);
    expect(() => decodeAggregate(new Uint32Array(4), p, 4, 0)).toThrow(/"parties"/);
    expect(csprngBytes(0).length).toBe(0);
  });
});
