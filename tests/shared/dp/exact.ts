/**
 * Test helper: the exact output distribution of a sampler that reads bits from a BitSource,
 * computed by enumerating every bit string up to `maxDepth` bits (depth-first; a prefix is extended
 * only when the sampler asks for more bits). Masses are exact integers in units of 2^-maxDepth;
 * `exhausted` is the mass of prefixes still undecided at maxDepth, so the true probability of each
 * outcome v lies in [mass(v), mass(v) + exhausted] * 2^-maxDepth.
 */
import { ScriptedBitSource, BitsExhausted, type BitSource } from '../../../shared/dp/bits';

export interface ExactDistribution {
  depth: number;
  mass: Map<number, bigint>;
  exhausted: bigint;
}

export function exactDistribution(run: (src: BitSource) => number, maxDepth: number, maxPaths = 2_000_000): ExactDistribution {
  const mass = new Map<number, bigint>();
  let exhausted = 0n;
  let paths = 0;
  const stack: number[][] = [[]];
  while (stack.length) {
    const prefix = stack.pop()!;
    if (++paths > maxPaths) throw new Error('exactDistribution: too many paths');
    const src = new ScriptedBitSource(prefix);
    let v: number;
    try {
      v = run(src);
    } catch (e) {
      if (!(e instanceof BitsExhausted)) throw e;
      if (prefix.length >= maxDepth) exhausted += 1n << BigInt(maxDepth - prefix.length);
      else stack.push([...prefix, 1], [...prefix, 0]);
      continue;
    }
    if (src.consumed !== prefix.length) throw new Error('sampler returned before reading its whole prefix');
    mass.set(v, (mass.get(v) ?? 0n) + (1n << BigInt(maxDepth - prefix.length)));
  }
  return { depth: maxDepth, mass, exhausted };
}

/** [lo, hi] probability bounds of outcome v as doubles. */
export function bounds(d: ExactDistribution, v: number): [number, number] {
  const m = d.mass.get(v) ?? 0n;
  const scale = 2 ** -d.depth;
  return [Number(m) * scale, Number(m + d.exhausted) * scale];
}
