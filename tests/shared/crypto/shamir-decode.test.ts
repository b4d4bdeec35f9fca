/**
 * Wrong Shamir shares: shamirDisagreeing (detection against the first t shares) and shamirDecode
 * (Reed-Solomon decoding, Gao 2003): exact secret and exactly the wrong points whenever at most
 * floor((m - t)/2) shares are wrong; beyond that, failure or a secret that a commitment rejects.
 */
import fc from 'fast-check';
import { blake2b256, equalBytes } from '../../../shared/crypto/hash';
import { shamirCombine, shamirDecode, shamirDisagreeing, shamirSplit, type Share } from '../../../shared/crypto/shamir';
import { sodiumReady } from '../../../shared/crypto/sodium';

beforeAll(() => sodiumReady());

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** t, then m in [t, min(255, t + 10)] distinct points, a secret, and a shuffle seed. */
const setupArb = (tMax: number) =>
  fc
    .integer({ min: 1, max: tMax })
    .chain((t) =>
      fc.record({
        t: fc.constant(t),
        xs: fc.uniqueArray(fc.integer({ min: 1, max: 255 }), { minLength: t, maxLength: Math.min(255, t + 10) }),
        secret: fc.uint8Array({ minLength: 32, maxLength: 32 }),
        pick: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
        corruption: fc.array(fc.record({ byte: fc.integer({ min: 0, max: 31 }), mask: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 6 }),
      }),
    );

/** Chooses `count` distinct indices of [0, m) from the seeds in `pick` (a partial Fisher-Yates shuffle). */
function chooseIndices(m: number, count: number, pick: number[]): number[] {
  const idx = Array.from({ length: m }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + (pick[i % pick.length] + i * 7919) % (m - i);
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, count);
}

/** Flips bytes of shares[i] for each chosen index (the first corruption always changes at least one byte). */
function corrupt(shares: Share[], which: number[], corruption: { byte: number; mask: number }[]): Share[] {
  const out = shares.map((s) => ({ x: s.x, y: s.y.slice() }));
  which.forEach((i, n) => {
    for (let c = 0; c <= n % corruption.length; c++) out[i].y[(corruption[c].byte + n) % 32] ^= corruption[c].mask;
    if (equalBytes(out[i].y, shares[i].y)) out[i].y[n % 32] ^= 0x5a; // corruptions cancelled: make sure the share is wrong
  });
  return out;
}

describe('shamirDecode', () => {
  test.each([
    ['up to floor((m - t)/2) wrong shares', false],
    ['with the verified secret known: up to floor((m - t + 1)/2) wrong shares', true],
  ])('%s: the exact secret and exactly the wrong points', (_label, withSecret) => {
    fc.assert(
      fc.property(setupArb(60), fc.nat(), ({ t, xs, secret, pick, corruption }, eSeed) => {
        const m = xs.length;
        const e = !withSecret ? Math.floor((m - t) / 2) : t === 1 ? m : Math.floor((m - t + 1) / 2);
        const which = chooseIndices(m, eSeed % (e + 1), pick);
        const got = shamirDecode(corrupt(shamirSplit(secret, t, xs), which, corruption), t, withSecret ? secret : undefined);
        expect(got.ok).toBe(true);
        if (!got.ok) return;
        expect(hex(got.secret)).toBe(hex(secret));
        expect(got.wrong).toEqual(which.map((i) => xs[i]).sort((a, b) => a - b));
      }),
      { numRuns: 120 },
    );
  });

  test('more than floor((m - t)/2) wrong shares: failure, or a secret that the commitment rejects', () => {
    let failures = 0;
    fc.assert(
      fc.property(setupArb(40), fc.nat(), ({ t, xs, secret, pick, corruption }, eSeed) => {
        const m = xs.length;
        const e = Math.floor((m - t) / 2);
        fc.pre(m > t); // with m = t every word is a codeword: nothing can be detected, see the next test
        const errors = e + 1 + (eSeed % (m - e));
        const shares = shamirSplit(secret, t, xs);
        const bad = corrupt(shares, chooseIndices(m, errors, pick), corruption);
        const commitment = blake2b256(secret);
        const got = shamirDecode(bad, t);
        if (!got.ok) {
          failures++;
          expect(got.reason).toContain(`more than floor((m - t)/2) = ${e}`);
          return;
        }
        // whatever comes back is not the dealer's secret, so the caller's commitment check refuses it
        expect(equalBytes(blake2b256(got.secret), commitment)).toBe(false);
        expect(got.wrong.length).toBeLessThanOrEqual(e);
      }),
      { numRuns: 120 },
    );
    expect(failures).toBeGreaterThan(0);
  });

  test('shares mostly from ANOTHER sharing decode to that sharing: only the commitment catches it', () => {
    // The word lies within e of a different codeword: a decoder cannot know; the caller's check must.
    const xs = [3, 9, 17, 40, 41, 99, 200];
    const t = 3; // m = 7, e = 2
    const a = new Uint8Array(32).fill(0xa1);
    const b = new Uint8Array(32).fill(0xb2);
    const sa = shamirSplit(a, t, xs);
    const sb = shamirSplit(b, t, xs);
    const mixed = sb.map((s, i) => (i === 1 || i === 4 ? sa[i] : s)); // 5 of 7 wrong with respect to a
    const got = shamirDecode(mixed, t);
    expect(got.ok).toBe(true);
    if (!got.ok) return;
    expect(hex(got.secret)).toBe(hex(b));
    expect(got.wrong).toEqual([9, 41]);
    expect(equalBytes(blake2b256(got.secret), blake2b256(a))).toBe(false);
  });

  test('m = t: no redundancy, the interpolant comes back with no wrong share (the commitment decides)', () => {
    const secret = new Uint8Array(32).map((_, i) => i * 3);
    const shares = shamirSplit(secret, 4, [5, 6, 7, 8]);
    const got = shamirDecode(shares, 4);
    expect(got).toEqual({ ok: true, secret, wrong: [] });
    shares[2].y[0] ^= 1;
    const bad = shamirDecode(shares, 4);
    expect(bad.ok && bad.wrong.length === 0 && !equalBytes(bad.secret, secret)).toBe(true);
  });

  test('every byte of a wrong share may be wrong, and t = 245 of m = 255 corrects 5 shares', () => {
    const secret = new Uint8Array(32).map((_, i) => 255 - i);
    const small = shamirSplit(secret, 3, [1, 2, 3, 4, 5]);
    small[3].y = small[3].y.map((v) => v ^ 0xff);
    expect(shamirDecode(small, 3)).toEqual({ ok: true, secret, wrong: [4] });
    const xs = Array.from({ length: 255 }, (_, i) => 255 - i);
    const big = shamirSplit(secret, 245, xs);
    for (const i of [0, 17, 100, 200, 254]) big[i].y[(i * 5) % 32] ^= 0x80;
    expect(shamirDecode(big, 245)).toEqual({ ok: true, secret, wrong: [1, 55, 155, 238, 255] });
    big[50].y[0] ^= 1; // a sixth wrong share: beyond floor(10/2) = 5
    const six = shamirDecode(big, 245);
    expect(six.ok && equalBytes(six.secret, secret)).toBe(false);
  });

  test('arbitrary share values never throw; a success is consistent with at most e disagreements', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }).chain((t) =>
          fc.tuple(fc.constant(t), fc.uniqueArray(fc.integer({ min: 1, max: 255 }), { minLength: t, maxLength: t + 6 }), fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { minLength: t + 6, maxLength: t + 6 })),
        ),
        ([t, xs, ys]) => {
          const shares = xs.map((x, i) => ({ x, y: ys[i] }));
          const got = shamirDecode(shares, t);
          if (!got.ok) return;
          const e = Math.floor((xs.length - t) / 2);
          expect(got.wrong.length).toBeLessThanOrEqual(e);
          // the shares it did not blame reconstruct its secret
          const kept = shares.filter((s) => !got.wrong.includes(s.x));
          expect(hex(shamirCombine(kept, t))).toBe(hex(got.secret));
          expect(shamirDisagreeing(kept, t)).toEqual([]);
        },
      ),
      { numRuns: 150 },
    );
  });

  test('m = t + 1 with one wrong share: located only when the secret is known', () => {
    const secret = new Uint8Array(32).fill(0x3c);
    const shares = shamirSplit(secret, 3, [11, 22, 33, 44]);
    shares[1].y[9] ^= 0x04;
    const blind = shamirDecode(shares, 3);
    expect(blind).toEqual({ ok: false, reason: 'more than floor((m - t)/2) = 0 of the m = 4 shares are wrong (t = 3), so they cannot be located' });
    expect(shamirDecode(shares, 3, secret)).toEqual({ ok: true, secret, wrong: [22] });
    shares[2].y[0] ^= 0x01; // a second wrong share is beyond floor(2/2) = 1
    expect(shamirDecode(shares, 3, secret)).toEqual({
      ok: false,
      reason: 'more than floor((m - t + 1)/2) = 1 of the m = 4 shares are wrong (t = 3, secret known), so they cannot be located',
    });
  });

  test('hostile arguments are refused with the argument named', () => {
    const y = new Uint8Array(32);
    expect(() => shamirDecode('x' as unknown as Share[], 1)).toThrow(TypeError);
    expect(() => shamirDecode([{ x: 1, y }], 2)).toThrow(/at least t=2/);
    expect(() => shamirDecode([{ x: 1, y }], 0)).toThrow(/"t" expected an integer in \[1, 255\]/);
    expect(() => shamirDecode([{ x: 1, y }, { x: 1, y }], 1)).toThrow(/duplicate point 1/);
    expect(() => shamirDecode([{ x: 0, y }], 1)).toThrow(/"shares\[i\].x"/);
    expect(() => shamirDecode([{ x: 1, y: new Uint8Array(31) }], 1)).toThrow(/"shares\[i\].y" expected Uint8Array of length 32/);
    expect(() => shamirDecode([null as unknown as Share], 1)).toThrow(TypeError);
    expect(() => shamirDecode([{ x: 1, y }], 1, new Uint8Array(16))).toThrow(/"known" expected Uint8Array of length 32/);
    expect(() => shamirDecode([{ x: 1, y }], 1, 'k' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => shamirDisagreeing([{ x: 2, y }, { x: 2, y }], 1)).toThrow(/duplicate point 2/);
    expect(() => shamirDisagreeing([{ x: 2, y }], 3)).toThrow(/at least t=3/);
  });
});

describe('shamirDisagreeing', () => {
  test('names exactly the wrong shares after the first t (any number of them), none when all are right', () => {
    fc.assert(
      fc.property(setupArb(40), fc.nat(), ({ t, xs, secret, pick, corruption }, k) => {
        const m = xs.length;
        const shares = shamirSplit(secret, t, xs);
        expect(shamirDisagreeing(shares, t)).toEqual([]);
        if (m === t) return;
        const count = 1 + (k % (m - t));
        const which = chooseIndices(m - t, count, pick).map((i) => i + t);
        expect(shamirDisagreeing(corrupt(shares, which, corruption), t)).toEqual(which.map((i) => xs[i]).sort((a, b) => a - b));
      }),
      { numRuns: 120 },
    );
  });

  test('a wrong share among the first t makes the others disagree', () => {
    const shares = shamirSplit(new Uint8Array(32).fill(7), 3, [10, 20, 30, 40, 50]);
    shares[0].y[31] ^= 0x10;
    expect(shamirDisagreeing(shares, 3)).toEqual([40, 50]);
  });
});
