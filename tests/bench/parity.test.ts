import { maxElementRelError, parityError } from '../../bench/parity';

describe('parityError', () => {
  test('max deviation relative to the reference scale, relative L2, max absolute', () => {
    const e = parityError([1, 2.5, -3], [1, 2, -4]);
    expect(e.maxAbs).toBe(1);
    expect(e.maxRel).toBeCloseTo(1 / 4, 15);
    expect(e.relL2).toBeCloseTo(Math.sqrt(0.25 + 1) / Math.sqrt(1 + 4 + 16), 15);
    expect(e.n).toBe(3);
  });

  test('identical vectors and zero vectors give 0; a zero reference with a deviation gives Infinity', () => {
    expect(parityError([1, -2], [1, -2])).toEqual({ maxRel: 0, relL2: 0, maxAbs: 0, n: 2 });
    expect(parityError([0, 0], [0, 0])).toEqual({ maxRel: 0, relL2: 0, maxAbs: 0, n: 2 });
    const e = parityError([0, 1e-9], [0, 0]);
    expect(e.maxRel).toBe(Infinity);
    expect(e.relL2).toBe(Infinity);
  });

  test('a non-finite entry is never a pass', () => {
    expect(parityError([1, NaN], [1, 2]).maxRel).toBeNaN();
    expect(parityError([1, 2], [Infinity, 2]).relL2).toBeNaN();
  });

  test('different lengths are a RangeError', () => {
    expect(() => parityError([1], [1, 2])).toThrow(RangeError);
  });
});

describe('maxElementRelError', () => {
  test('per element, skipping reference entries below the floor', () => {
    expect(maxElementRelError([1.1, 2, 5], [1, 2, 1e-20], 1e-12)).toBeCloseTo(0.1, 12);
    expect(maxElementRelError([3], [2], 1e-12)).toBeCloseTo(0.5, 15);
    expect(maxElementRelError([NaN], [2], 1e-12)).toBeNaN();
    expect(() => maxElementRelError([1], [1, 2], 1)).toThrow(RangeError);
    expect(() => maxElementRelError([1], [1], 0)).toThrow(/"floor" expected > 0/);
  });
});
