/**
 * Keystream blocks are mask material (with the masked vector, they give back the input), so the
 * PRG wipes every block Node's cipher hands it instead of leaving it to the garbage collector.
 * The test records every buffer `update()` returns while masks are added, on the wasm and the
 * JavaScript paths and at lengths that leave a scalar tail, and checks each is all zeros after.
 */
import { createCipheriv } from 'node:crypto';
import { addMask, chacha20Keystream, expandMask, MaskAccumulator } from '../../../shared/crypto/prg';
import { sodiumReady, randomBytes } from '../../../shared/crypto/sodium';

beforeAll(async () => {
  await sodiumReady();
});

type Update = (this: unknown, ...args: unknown[]) => Buffer;

/** Runs `fn` while recording every keystream buffer a ChaCha20 cipher returns. */
function recordUpdates(fn: () => void): Buffer[] {
  const proto = Object.getPrototypeOf(createCipheriv('chacha20', new Uint8Array(32), new Uint8Array(16))) as { update: Update };
  const original = proto.update;
  const seen: Buffer[] = [];
  proto.update = function (this: unknown, ...args: unknown[]) {
    const out = original.apply(this, args);
    seen.push(out);
    return out;
  };
  try {
    fn();
  } finally {
    proto.update = original;
  }
  return seen;
}

const allZero = (b: Uint8Array) => b.every((x) => x === 0);
const LENGTHS = [1, 7, 1000, (1 << 14) + 5, 3 * (1 << 14)];

describe('keystream blocks are wiped after use', () => {
  test.each([false, true])('addMask (forceJs %s)', (forceJs) => {
    for (const m of LENGTHS) {
      const acc = new Uint32Array(m);
      const seen = recordUpdates(() => addMask(acc, randomBytes(32), 1, 32, forceJs));
      expect(seen.length).toBe(Math.ceil(m / (1 << 14)));
      expect(seen.every((b) => b.length > 0 && allZero(b))).toBe(true);
      // the mask did reach the vector (the wipe came after the add)
      expect(acc.some((x) => x !== 0)).toBe(true);
    }
  });

  test.each([false, true])('MaskAccumulator.addMasks (forceJs %s)', (forceJs) => {
    for (const m of LENGTHS) {
      const acc = new MaskAccumulator(m, 32, forceJs);
      const terms = Array.from({ length: 6 }, (_, j) => ({ seed: randomBytes(32), sign: (j % 2 ? -1 : 1) as 1 | -1 }));
      const seen = recordUpdates(() => acc.addMasks(terms));
      expect(seen.length).toBe(6 * Math.ceil(m / (1 << 14)));
      expect(seen.every((b) => b.length > 0 && allZero(b))).toBe(true);
      // the sum equals the masks added one at a time
      const ref = new Uint32Array(m);
      for (const t of terms) addMask(ref, t.seed, t.sign);
      expect(acc.read()).toEqual(ref);
      acc.wipe();
    }
  });

  test('chacha20Keystream wipes its intermediate blocks, not its result', () => {
    const seen = recordUpdates(() => {
      const out = chacha20Keystream(randomBytes(32), new Uint8Array(12), 0, 100_000);
      expect(allZero(out)).toBe(false);
    });
    expect(seen.length).toBe(2);
    expect(seen.every(allZero)).toBe(true);
  });

  test('expandMask returns the mask and leaves no keystream block behind', () => {
    let mask: Uint32Array = new Uint32Array(0);
    const seen = recordUpdates(() => {
      mask = expandMask(randomBytes(32), 70_000);
    });
    expect(mask.some((x) => x !== 0)).toBe(true);
    expect(seen.every(allZero)).toBe(true);
  });
});
