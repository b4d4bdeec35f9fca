/**
 * One table of hostile inputs that every DP API must reject with a TypeError (wrong type) or
 * RangeError (wrong range/length) whose message names the argument, never a crash or a silent
 * wrong answer.
 */
import { sodiumReady } from '../../../shared/crypto/sodium';
import { DiscreteGaussian, rationalizeVariance } from '../../../shared/dp/discrete';
import { gaussianNoise } from '../../../shared/dp/gaussian';
import { CsprngBitSource, csprngBytes } from '../../../shared/dp/bits';
import { computeRdp, epsilonFromRdp, rdpDdg, calibrateSigma, roundedSensitivity } from '../../../shared/dp/rdp';
import { encodeUpdate, decodeAggregate, checkWrapAround, rotate, type EncodeParams } from '../../../shared/dp/encode';

beforeAll(async () => {
  await sodiumReady();
});

const p: EncodeParams = { clip: 1, gamma: 8, bits: 32, rotationSeed: null, beta: 0, noise: null };
const ddg = { localVariance: 1, parties: 1, l2: 1, l1: 1, dimension: 1, q: 1, steps: 1 };
const wrap = { bits: 32, parties: 2, dimension: 10, rotated: false, clip: 1, gamma: 8, beta: 0, noise: null };
const X = undefined as unknown;

const cases: [string, () => unknown, typeof TypeError | typeof RangeError, RegExp][] = [
  ['DiscreteGaussian(NaN)', () => new DiscreteGaussian(NaN), TypeError, /"variance"/],
  ['DiscreteGaussian(-1)', () => new DiscreteGaussian(-1), RangeError, /"variance"/],
  ['DiscreteGaussian(Infinity)', () => new DiscreteGaussian(Infinity), RangeError, /"variance"/],
  ['DiscreteGaussian(1.5/1)', () => new DiscreteGaussian({ num: 1.5, den: 1 }), RangeError, /"variance"/],
  ['rationalizeVariance("4")', () => rationalizeVariance('4' as unknown as number), TypeError, /"variance"/],
  ['gaussianNoise(-1, 1)', () => gaussianNoise(-1, 1), RangeError, /"n"/],
  ['gaussianNoise(1.5, 1)', () => gaussianNoise(1.5, 1), TypeError, /"n"/],
  ['gaussianNoise(4, NaN)', () => gaussianNoise(4, NaN), TypeError, /"sigma"/],
  ['gaussianNoise(4, -1)', () => gaussianNoise(4, -1), RangeError, /"sigma"/],
  ['gaussianNoise(4, 1, short out)', () => gaussianNoise(4, 1, new Float32Array(3)), RangeError, /"out"/],
  ['CsprngBitSource(1)', () => new CsprngBitSource(1), RangeError, /"batchBytes"/],
  ['uniform(2^53)', () => new CsprngBitSource().uniform(2 ** 53), RangeError, /"n"/],
  ['csprngBytes(-1)', () => csprngBytes(-1), RangeError, /"n"/],
  ['computeRdp(NaN q)', () => computeRdp(NaN, 1, 1, 2), TypeError, /"q"/],
  ['computeRdp(order 1)', () => computeRdp(0.1, 1, 1, 1), RangeError, /"order"/],
  ['computeRdp(no orders)', () => computeRdp(0.1, 1, 1, []), TypeError, /"orders"/],
  ['epsilonFromRdp(delta 1)', () => epsilonFromRdp([2], [1], 1), RangeError, /"delta"/],
  ['epsilonFromRdp(NaN rdp)', () => epsilonFromRdp([2], [NaN], 1e-5), RangeError, /"rdp\[0\]"/],
  ['rdpDdg(variance 0)', () => rdpDdg({ ...ddg, localVariance: 0 }), RangeError, /"localVariance"/],
  ['rdpDdg(dimension 0)', () => rdpDdg({ ...ddg, dimension: 0 }), RangeError, /"dimension"/],
  ['rdpDdg(q 2)', () => rdpDdg({ ...ddg, q: 2 }), RangeError, /"q"/],
  ['calibrateSigma(eps 0)', () => calibrateSigma(0, 1e-5, 0.1, 1), RangeError, /"epsilon"/],
  ['roundedSensitivity(beta 1)', () => roundedSensitivity(1, 1, 1), RangeError, /"beta"/],
  ['encodeUpdate(null)', () => encodeUpdate(null as unknown as number[], p), TypeError, /"update"/],
  ['encodeUpdate(string)', () => encodeUpdate('abc' as unknown as number[], p), TypeError, /"update"/],
  ['encodeUpdate(NaN coordinate)', () => encodeUpdate([NaN], p), RangeError, /non-finite/],
  ['encodeUpdate(empty)', () => encodeUpdate([], p), RangeError, /"dimension"/],
  ['encodeUpdate(params null)', () => encodeUpdate([1], null as unknown as EncodeParams), TypeError, /"params"/],
  ['encodeUpdate(gamma -1)', () => encodeUpdate([1], { ...p, gamma: -1 }), RangeError, /"gamma"/],
  ['encodeUpdate(bits 1.5)', () => encodeUpdate([1], { ...p, bits: 1.5 }), TypeError, /"bits"/],
  ['encodeUpdate(seed array)', () => encodeUpdate([1], { ...p, rotationSeed: [1, 2] as unknown as Uint8Array }), TypeError, /"rotationSeed"/],
  ['encodeUpdate(nMin 0)', () => encodeUpdate([1], { ...p, noise: { sigma: 1, mode: 'per-party', nMin: 0 } }), RangeError, /"noise.nMin"/],
  ['encodeUpdate(huge gamma)', () => encodeUpdate([1], { ...p, clip: 1, gamma: 2 ** 50 }), RangeError, /out of range/],
  ['encodeUpdate(noise variance 2^42)', () => encodeUpdate([1], { ...p, gamma: 2 ** 20, noise: { sigma: 2, mode: 'per-party', nMin: 1 } }), RangeError, /outside the exact sampler's range/],
  ['decodeAggregate(Uint8Array)', () => decodeAggregate(new Uint8Array(4) as unknown as Uint32Array, p, 4, 1), TypeError, /"sum"/],
  ['decodeAggregate(gamma 0)', () => decodeAggregate(new Uint32Array(4), { ...p, gamma: 0 }, 4, 1), RangeError, /"gamma"/],
  ['checkWrapAround(parties 0)', () => checkWrapAround({ ...wrap, parties: 0 }), RangeError, /"parties"/],
  ['checkWrapAround(maxProbability 0)', () => checkWrapAround({ ...wrap, maxProbability: 0 }), RangeError, /"maxProbability"/],
  ['checkWrapAround(clip undefined)', () => checkWrapAround({ ...wrap, clip: X as number }), TypeError, /"clip"/],
  ['rotate(seed 16 bytes)', () => rotate([1, 2], new Uint8Array(16)), RangeError, /"rotationSeed"/],
];

test.each(cases)('%s is rejected with a precise error', (_name, fn, cls, re) => {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  expect((err as Error).message).toMatch(re);
});
