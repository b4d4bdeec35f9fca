import fc from 'fast-check';
import { baseSeed, configuredSeed, DEFAULT_SEED } from '../fc-seed';

// npm test runs fast-check with one fixed seed unless FC_SEED says otherwise (tests/fast-check-setup.ts)
test('fast-check runs with the configured seed', () => {
  const env = process.env.FC_SEED;
  const seed = fc.readConfigureGlobal().seed;
  if (env === 'random') expect(seed).toBeUndefined();
  else expect(seed).toBe(env === undefined || env === '' ? DEFAULT_SEED : Number(env));
});

test('FC_SEED: unset or empty -> the default, "random" -> none, an integer -> itself, anything else -> an error naming it', () => {
  expect(configuredSeed(undefined)).toBe(DEFAULT_SEED);
  expect(configuredSeed('')).toBe(DEFAULT_SEED);
  expect(configuredSeed('random')).toBeUndefined();
  expect(configuredSeed('-1171275587')).toBe(-1171275587);
  expect(() => configuredSeed('12x')).toThrow('FC_SEED must be an integer or "random", got "12x"');
  expect(() => configuredSeed('1e300')).toThrow(/FC_SEED/);
  // explicit-seed tests (the gRPC fuzz) take the same base
  if (process.env.FC_SEED !== 'random') expect(baseSeed()).toBe(configuredSeed());
});
