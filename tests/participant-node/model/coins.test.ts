/**
 * The keyed per-user example coins of DP-SGD (participant-node/model/coins.ts): a PRF of
 * (key, step, user), uniform, and a key that is never printed or serialised.
 */
import { inspect } from 'node:util';
import { ExampleKey } from '../../../participant-node/model/coins';
import { sodiumReady } from '../../../shared/crypto/sodium';

beforeAll(async () => {
  await sodiumReady();
});

const draws = (k: ExampleKey, step: number, user: number, n = 40, range = 1000) => {
  const c = k.coins(step, user);
  return Array.from({ length: n }, () => c.nextInt(range));
};

test('coins are a function of (key, step, user) only, and differ when any of them changes', () => {
  const k = ExampleKey.forTesting(new Uint8Array(32).fill(1));
  const same = ExampleKey.forTesting(new Uint8Array(32).fill(1));
  const base = draws(k, 3, 17);
  expect(draws(same, 3, 17)).toEqual(base);
  expect(draws(k, 4, 17)).not.toEqual(base);
  expect(draws(k, 3, 18)).not.toEqual(base);
  expect(draws(ExampleKey.forTesting(new Uint8Array(32).fill(2)), 3, 17)).not.toEqual(base);
  expect(draws(k.derive('["r",1]'), 3, 17)).not.toEqual(base);
  expect(draws(k.derive('["r",1]'), 3, 17)).toEqual(draws(same.derive('["r",1]'), 3, 17));
  expect(draws(k.derive('["r",1]'), 3, 17)).not.toEqual(draws(k.derive('["r",2]'), 3, 17));
  // steps beyond 2^32 are distinct inputs (u64 step)
  expect(draws(k, 2 ** 32 + 3, 17)).not.toEqual(base);
  // many blocks: the stream goes on past one 64-byte block without repeating it
  const long = draws(k, 0, 0, 64, 2 ** 32);
  expect(new Set(long).size).toBe(64);
});

test('nextInt is uniform (chi-square over 10 buckets, 20000 draws)', () => {
  const c = ExampleKey.forTesting(new Uint8Array(32).fill(9)).coins(0, 0);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 20000; i++) counts[c.nextInt(10)]++;
  const chi2 = counts.reduce((s, x) => s + (x - 2000) ** 2 / 2000, 0);
  expect(chi2).toBeLessThan(27.9); // p = 0.001 at 9 degrees of freedom
  expect(() => c.nextInt(0)).toThrow(RangeError);
});

test('fresh keys differ; a key is never printed or serialised; bad input is refused', () => {
  const a = ExampleKey.fresh();
  const b = ExampleKey.fresh();
  expect(draws(a, 0, 0)).not.toEqual(draws(b, 0, 0));
  expect(() => JSON.stringify({ key: a })).toThrow(/never serialised/);
  expect(String(a)).toBe('ExampleKey(secret)');
  expect(inspect({ a })).toContain('ExampleKey(secret)');
  expect(Object.keys(a)).toEqual([]);
  expect(() => ExampleKey.forTesting(new Uint8Array(16))).toThrow(/32 bytes, got 16/);
  expect(() => a.coins(-1, 0)).toThrow(/"step"/);
  expect(() => a.coins(0, 2 ** 32)).toThrow(/"user"/);
});
