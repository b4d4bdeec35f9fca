import fc from 'fast-check';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { neighbourGraph, validateParams } from '../../../shared/secagg/graph';

beforeAll(() => sodiumReady());

const ids = (n: number) => Array.from({ length: n }, (_, i) => `p${i}`);

describe('neighbour graph', () => {
  test('property: k-regular, symmetric, no self loops, identical for every party and roster order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 4, max: 120 }), fc.nat(), fc.uint8Array({ minLength: 32, maxLength: 32 }), (n, kSeed, seed) => {
        const k = 2 + 2 * (kSeed % Math.floor((n - 2) / 2));
        if (k >= n - 1) return;
        const roster = ids(n);
        const g = neighbourGraph(roster, k, seed);
        const g2 = neighbourGraph([...roster].reverse(), k, seed.slice());
        const sets = new Map([...g].map(([u, nb]) => [u, new Set(nb)]));
        for (const u of roster) {
          const nb = g.get(u)!;
          if (nb.length !== k) throw new Error(`${u} has ${nb.length} neighbours, expected ${k}`);
          if (sets.get(u)!.has(u)) throw new Error(`${u} is its own neighbour`);
          for (const v of nb) if (!sets.get(v)!.has(u)) throw new Error(`${u}-${v} not symmetric`);
          if (g2.get(u)!.join() !== nb.join()) throw new Error(`${u}: graph depends on roster order`);
        }
      }),
      { numRuns: 60 },
    );
  });

  test('the graph depends on the public round seed (different seeds, different graphs)', () => {
    const roster = ids(40);
    const a = neighbourGraph(roster, 6, new Uint8Array(32).fill(1));
    const b = neighbourGraph(roster, 6, new Uint8Array(32).fill(2));
    expect(roster.some((u) => a.get(u)!.join() !== b.get(u)!.join())).toBe(true);
  });

  test('k = 0 or k >= n-1 is the full graph', () => {
    for (const k of [0, 4, 9]) {
      const g = neighbourGraph(ids(5), k, new Uint8Array(32));
      expect(g.get('p0')).toEqual(['p1', 'p2', 'p3', 'p4']);
    }
  });
});

describe('validateParams: t and k together', () => {
  const ok: [number, number, number][] = [
    [2, 2, 0],
    [3, 2, 0],
    [3, 3, 0],
    [10, 6, 0],
    [10, 2, 2],
    [10, 3, 4],
    [100, 8, 14],
    [255, 128, 0],
  ];
  test.each(ok)('n=%i t=%i k=%i is accepted', (n, t, k) => {
    expect(() => validateParams(n, { threshold: t, degree: k, bits: 32 })).not.toThrow();
  });
  const bad: [number, number, number, number, RegExp][] = [
    [2, 1, 0, 32, /"params.threshold" expected an integer in \[2/],
    [4, 2, 0, 32, /strict majority of the 4 share holders.*need t >= 3/],
    [10, 5, 0, 32, /strict majority/],
    [10, 2, 4, 32, /t=2 must be a strict majority of the 5 share holders/],
    [10, 6, 4, 32, /t=6 exceeds the 5 share holders/],
    [10, 3, 3, 32, /must be 0 \(full graph\), >= n-1, or an even number >= 2/],
    [1, 1, 0, 32, /"n \(number of parties\)"/],
    [256, 200, 0, 32, /"n \(number of parties\)"/],
    [5, 3, 0, 7, /"params.bits"/],
    [5, 3, 0, 33, /"params.bits"/],
  ];
  test.each(bad)('n=%i t=%i k=%i bits=%i is refused', (n, t, k, bits, re) => {
    expect(() => validateParams(n, { threshold: t, degree: k, bits })).toThrow(re);
  });
});
