import fc from 'fast-check';

// npm test runs fast-check with one fixed seed unless FC_SEED says otherwise (tests/fast-check-setup.ts)
test('fast-check runs with the configured seed', () => {
  const env = process.env.FC_SEED;
  const seed = fc.readConfigureGlobal().seed;
  if (env === 'random') expect(seed).toBeUndefined();
  else expect(seed).toBe(env === undefined || env === '' ? 20261123 : Number(env));
});
