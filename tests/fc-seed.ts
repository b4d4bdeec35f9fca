import { randomInt } from 'node:crypto';

/** The fast-check seed that FC_SEED asks for (tests/fast-check-setup.ts): unset -> the default. */
export const DEFAULT_SEED = 20261123;

/** The seed FC_SEED names: undefined for "random", the default when unset; a typo is an error. */
export function configuredSeed(v: string | undefined = process.env.FC_SEED): number | undefined {
  if (v === undefined || v === '') return DEFAULT_SEED;
  if (v === 'random') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`FC_SEED must be an integer or "random", got ${JSON.stringify(v)}`);
  return n;
}

/** A base seed for tests that pass explicit seeds: the configured one, else a fresh one, printed. */
export function baseSeed(): number {
  const s = configuredSeed();
  if (s !== undefined) return s;
  const fresh = randomInt(2 ** 31);
  console.log(`fast-check base seed ${fresh} (replay: FC_SEED=${fresh})`);
  return fresh;
}
