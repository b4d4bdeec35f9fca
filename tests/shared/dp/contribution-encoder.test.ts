/**
 * ContributionEncoder (shared/dp/encode.ts) is encodeContributions one contribution at a time: the
 * same result for the same contributions and noise-free parameters, the same argument checks, and it
 * refuses to be used after finish() (a second noise draw or a contribution after it would break the
 * accounting).
 */
import { ContributionEncoder, encodeContributions, type EncodeParams } from '../../../shared/dp/encode';
import { sodiumReady } from '../../../shared/crypto/sodium';

beforeAll(sodiumReady);

const P: EncodeParams = { clip: 1, gamma: 4, bits: 32, beta: Math.exp(-0.5), rotationSeed: null, noise: null };

test('equal to encodeContributions on the same inputs (no noise; values on the 1/gamma grid, so rounding is exact)', () => {
  const cs = [Float32Array.from([0.25, -0.5, 0.5]), Float32Array.from([0, 0.75, -0.25]), Float32Array.from([0, 0, 0])];
  const whole = encodeContributions(cs, 3, P);
  const e = new ContributionEncoder(3, P);
  for (const c of cs) e.add(c);
  const parts = e.finish();
  expect(parts.contributions).toBe(3);
  expect(parts.maxL2Norm).toBe(whole.maxL2Norm);
  expect(Array.from(parts.data)).toEqual(Array.from(whole.data));
  // 4 * (0.25 + 0) = 1, 4 * (-0.5 + 0.75) = 1, 4 * (0.5 - 0.25) = 1
  expect(Array.from(parts.data)).toEqual([1, 1, 1]);
});

test('checks its arguments like encodeContributions', () => {
  expect(() => new ContributionEncoder(3, { ...P, clip: -1 } as EncodeParams)).toThrow(/clip/);
  const e = new ContributionEncoder(3, P);
  expect(() => e.add(Float32Array.from([1, 2]))).toThrow(/contribution 0 expected length 3, got length=2/);
  expect(() => encodeContributions([Float32Array.from([1, 2])], 3, P)).toThrow(/contribution 0 expected length 3, got length=2/);
});

test('no contribution and no second noise draw after finish()', () => {
  const e = new ContributionEncoder(2, P);
  e.add(Float32Array.from([0.1, 0.2]));
  e.finish();
  expect(() => e.add(Float32Array.from([0.1, 0.2]))).toThrow(/after finish/);
  expect(() => e.finish()).toThrow(/twice/);
});
