/**
 * MaskAccumulator.addMasks: the fused, cache-blocked sum of masks (grouped keystream slots, one
 * reduction mod 2^b per block) must equal the simple reference — every keystream drawn
 * independently by libsodium-wrappers-sumo and added one term at a time mod 2^b — at lengths that
 * are odd, below one kernel step, and not a multiple of the 64 KiB block, for b in {8, 20, 31, 32},
 * for every mix of signs within and across groups of up to 4 terms, on the wasm and the JavaScript
 * paths.
 */
import sumo from 'libsodium-wrappers-sumo';
import fc from 'fast-check';
import { addMask, MASK_KERNEL, MaskAccumulator, type MaskTerm } from '../../../shared/crypto/prg';
import { sodiumReady } from '../../../shared/crypto/sodium';

beforeAll(async () => {
  await sodiumReady();
  await sumo.ready;
});

const BLOCK_WORDS = 1 << 14; // 64 KiB of keystream

/** x + sum_j sign_j * (ChaCha20(seed_j) words mod 2^bits), mod 2^bits, from libsodium-sumo. */
function reference(x: Uint32Array, terms: MaskTerm[], bits: number): Uint32Array {
  const mod = 2 ** bits;
  const out = Float64Array.from(x);
  for (const { seed, sign } of terms) {
    const ks = sumo.crypto_stream_chacha20_ietf_xor_ic(new Uint8Array(4 * x.length), new Uint8Array(12), 0, seed);
    const dv = new DataView(ks.buffer, ks.byteOffset, ks.byteLength);
    for (let i = 0; i < x.length; i++) out[i] = (out[i] + sign * (dv.getUint32(4 * i, true) % mod) + mod) % mod;
  }
  return Uint32Array.from(out);
}

function firstDifference(got: Uint32Array, want: Uint32Array): string | null {
  if (got.length !== want.length) return `length ${got.length} != ${want.length}`;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) return `coordinate ${i}: ${got[i]} != ${want[i]}`;
  return null;
}

function seedOf(i: number, salt: number): Uint8Array {
  const s = new Uint8Array(32);
  for (let j = 0; j < 32; j++) s[j] = (i * 131 + j * 17 + salt * 251 + 1) & 0xff;
  return s;
}

function startVector(m: number, bits: number): Uint32Array {
  return new Uint32Array(m).map((_, i) => ((i * 2654435761) >>> 0) % 2 ** bits);
}

describe('MaskAccumulator.addMasks (fused, cache-blocked)', () => {
  test('the wasm kernel is the path under test on this host', () => {
    expect(MASK_KERNEL).toBe('wasm-simd');
  });

  // lengths: empty, below one 8-word kernel step, odd, block boundaries +- a few, several blocks plus a tail
  const lengths = [0, 1, 7, 8, 9, 33, BLOCK_WORDS - 1, BLOCK_WORDS, BLOCK_WORDS + 1, BLOCK_WORDS + 7, 3 * BLOCK_WORDS + 5];
  for (const bits of [20, 32]) {
    test(`equals the term-by-term libsodium reference at edge lengths, b=${bits}, signs + + - + - - + (groups of 4 and 3, mixed signs)`, () => {
      const signs: (1 | -1)[] = [1, 1, -1, 1, -1, -1, 1];
      for (const m of lengths) {
        const terms = signs.map((sign, i) => ({ seed: seedOf(i, m), sign }));
        for (const forceJs of [false, true]) {
          const acc = new MaskAccumulator(m, bits, forceJs);
          const x = startVector(m, bits);
          acc.set(x);
          acc.addMasks(terms);
          const diff = firstDifference(acc.read(), reference(x, terms, bits));
          if (diff) throw new Error(`m=${m} b=${bits} forceJs=${forceJs}: ${diff}`);
        }
      }
    });
  }

  test('every count of positive and negative terms (0..9 each) matches the reference, b=20 and b=32', () => {
    const m = BLOCK_WORDS + 13; // two blocks, the second with a scalar tail
    for (const bits of [20, 32]) {
      const x = startVector(m, bits);
      for (let pos = 0; pos <= 9; pos++) {
        for (const neg of [0, 1, 2, 3, 5, 9]) {
          const terms: MaskTerm[] = [
            ...Array.from({ length: pos }, (_, i) => ({ seed: seedOf(i, 1000 + pos), sign: 1 as const })),
            ...Array.from({ length: neg }, (_, i) => ({ seed: seedOf(i, 2000 + neg), sign: -1 as const })),
          ];
          const acc = new MaskAccumulator(m, bits);
          acc.set(x);
          acc.addMasks(terms);
          const diff = firstDifference(acc.read(), reference(x, terms, bits));
          if (diff) throw new Error(`pos=${pos} neg=${neg} b=${bits}: ${diff}`);
        }
      }
    }
  });

  test('random term lists, lengths and b (8..32): fused equals addMask one term at a time, in any order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ seed: fc.uint8Array({ minLength: 32, maxLength: 32 }), sign: fc.constantFrom<1 | -1>(1, -1) }), { maxLength: 11 }),
        fc.integer({ min: 0, max: 2 * BLOCK_WORDS + 40 }),
        fc.integer({ min: 8, max: 32 }),
        (terms, m, bits) => {
          const x = startVector(m, bits);
          const fused = new MaskAccumulator(m, bits);
          fused.set(x);
          fused.addMasks(terms);
          // the simple path: one plain-array addMask per term, in reverse order
          const simple = x.slice();
          for (const t of [...terms].reverse()) addMask(simple, t.seed, t.sign, bits, true);
          const diff = firstDifference(fused.read(), simple);
          if (diff) throw new Error(`m=${m} b=${bits} terms=${terms.length}: ${diff}`);
          if (bits < 32 && fused.read().some((w) => w >= 2 ** bits)) throw new Error('an entry is not reduced mod 2^b');
        },
      ),
      { numRuns: 25 },
    );
  });

  test('addMasks after addVector and set, and addMask(seed, sign) as a one-term sum, compose exactly (b=20)', () => {
    const m = BLOCK_WORDS + 3;
    const bits = 20;
    const x = startVector(m, bits);
    const v = new Uint32Array(m).map((_, i) => (i * 40503 + 7) % 2 ** bits);
    const t: MaskTerm[] = [0, 1, 2].map((i) => ({ seed: seedOf(i, 77), sign: i === 1 ? -1 : 1 }));
    const a = new MaskAccumulator(m, bits);
    a.set(x);
    a.addVector(v);
    a.addMasks(t.slice(0, 2));
    a.addMask(t[2].seed, t[2].sign);
    const want = reference(x.map((xi, i) => (xi + v[i]) % 2 ** bits), t, bits);
    expect(firstDifference(a.read(), want)).toBeNull();
  });

  test('the same seed with + and - cancels exactly; a fused sum of distinct seeds does not leave the input unchanged', () => {
    const m = 1000;
    const x = startVector(m, 32);
    const s = seedOf(5, 5);
    const a = new MaskAccumulator(m, 32);
    a.set(x);
    a.addMasks([{ seed: s, sign: 1 }, { seed: seedOf(6, 6), sign: 1 }, { seed: s, sign: -1 }, { seed: seedOf(6, 6), sign: -1 }]);
    expect(firstDifference(a.read(), x)).toBeNull();
    a.addMasks([{ seed: s, sign: 1 }, { seed: seedOf(6, 6), sign: -1 }]);
    const changed = a.read().filter((w, i) => w !== x[i]).length;
    expect(changed).toBeGreaterThan(m - 5);
  });

  test('wipe() zeroes the vector and every keystream slot of the kernel memory', () => {
    const a = new MaskAccumulator(BLOCK_WORDS + 9, 32);
    a.addMasks([1, 2, 3, 4, 5].map((i) => ({ seed: seedOf(i, 9), sign: 1 as const })));
    const mem = (a as unknown as { bytes: Uint8Array }).bytes;
    expect(mem.some((b) => b !== 0)).toBe(true);
    a.wipe();
    expect(mem.every((b) => b === 0)).toBe(true);
  });

  test('bad terms are refused with the argument named, before the contents change', () => {
    const m = 100;
    const a = new MaskAccumulator(m, 20);
    const x = startVector(m, 20);
    a.set(x);
    const good = { seed: seedOf(1, 1), sign: 1 as const };
    const bad: [string, unknown, RegExp, ErrorConstructor][] = [
      ['not an array', { seed: good.seed, sign: 1 }, /"terms" expected an array/, TypeError],
      ['null term', [good, null], /"terms\[1\]" expected \{ seed, sign \}, got null/, TypeError],
      ['short seed after a good term', [good, { seed: new Uint8Array(16), sign: 1 }], /"terms\[1\]\.seed" expected Uint8Array of length 32, got length=16/, RangeError],
      ['seed as array', [{ seed: Array.from(good.seed), sign: -1 }], /"terms\[0\]\.seed" expected Uint8Array, got Array/, TypeError],
      ['sign 0 after good terms', [good, good, { seed: good.seed, sign: 0 }], /"terms\[2\]\.sign" expected 1 or -1, got 0/, RangeError],
    ];
    for (const [name, terms, msg, kind] of bad) {
      let err: unknown;
      try {
        a.addMasks(terms as MaskTerm[]);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(kind);
      expect(String((err as Error).message)).toMatch(msg);
      if (firstDifference(a.read(), x)) throw new Error(`${name}: the contents changed`);
    }
    a.addMasks([]);
    expect(firstDifference(a.read(), x)).toBeNull();
  });
});
