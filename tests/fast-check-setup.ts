/**
 * fast-check's seed for the whole test run (jest `setupFiles`).
 *
 * Property tests that draw a fresh random seed on every run make CI a lottery: a counterexample
 * found once (and fixed or not) can turn any later, unrelated change red. So `npm test` runs every
 * property with one fixed seed by default: reproducible, and a failure names the seed and path to
 * replay. Exploration is separate and on purpose:
 *   FC_SEED=random npm test    a fresh seed for every property (fast-check prints it on failure)
 *   FC_SEED=12345 npm test     a chosen seed, e.g. to replay a failure
 * (run the random mode repeatedly for a longer hunt; it is how the accountant's round-off bug in
 * hostile.property.test.ts was found).
 * Properties that pass their own `seed` (the gRPC fuzz test) keep it.
 */
import fc from 'fast-check';

const DEFAULT_SEED = 20261123;

function parseSeed(v: string | undefined): number | undefined {
  if (v === undefined || v === '') return DEFAULT_SEED;
  if (v === 'random') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`FC_SEED must be an integer or "random", got ${JSON.stringify(v)}`);
  return n;
}

const seed = parseSeed(process.env.FC_SEED);
if (seed !== undefined) fc.configureGlobal({ seed });
