import fc from 'fast-check';
import { gfInv, gfMul, shamirCombine, shamirSplit, type Share } from '../../../shared/crypto/shamir';
import { sodiumReady } from '../../../shared/crypto/sodium';

beforeAll(() => sodiumReady());

/** Reference GF(2^8) multiply via schoolbook polynomial product then reduction (independent of gfMul). */
function refMul(a: number, b: number): number {
  let p = 0;
  for (let i = 0; i < 8; i++) if ((b >> i) & 1) p ^= a << i;
  for (let i = 15; i >= 8; i--) if ((p >> i) & 1) p ^= 0x11b << (i - 8);
  return p;
}

/** Random distinct points in 1..255. */
const pointsArb = (min: number, max: number) => fc.uniqueArray(fc.integer({ min: 1, max: 255 }), { minLength: min, maxLength: max });

describe('GF(2^8)', () => {
  test('multiplication matches a schoolbook reference on all 65536 pairs, and inverses invert', () => {
    for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) if (gfMul(a, b) !== refMul(a, b)) throw new Error(`${a}*${b}`);
    for (let a = 1; a < 256; a++) expect(gfMul(a, gfInv(a))).toBe(1);
    expect(gfMul(0x57, 0x83)).toBe(0xc1); // FIPS-197 §4.2 example
  });
});

describe('Shamir t-of-n', () => {
  test('any t shares (any subset, any order) reconstruct; t-1 shares do not', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), pointsArb(2, 20), fc.nat(), fc.nat(), (secret, xs, tSeed, pick) => {
        const t = 1 + (tSeed % xs.length);
        const shares = shamirSplit(secret, t, xs);
        const rot = pick % shares.length;
        const subset = [...shares.slice(rot), ...shares.slice(0, rot)].reverse().slice(0, t);
        expect(Buffer.from(shamirCombine(subset, t)).equals(Buffer.from(secret))).toBe(true);
        // fewer than t shares are refused outright (what t-1 shares reveal: see the next test)
        if (t >= 2) expect(() => shamirCombine(subset.slice(0, t - 1), t)).toThrow(RangeError);
      }),
      { numRuns: 100 },
    );
  });

  test('perfect secrecy: any t-1 shares are produced, with equal probability, for every candidate secret', () => {
    // For shares S (t-1 of them) of secret A, and any candidate B, there is exactly one polynomial of
    // degree < t with f(0) = B through S. We interpolate it and check that splitting B with that
    // polynomial's coefficients reproduces S exactly: the t-1 shares carry no information on the secret.
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        pointsArb(3, 12),
        fc.nat(),
        (a, b, xs, tSeed) => {
          const t = 2 + (tSeed % (xs.length - 1));
          const shares = shamirSplit(a, t, xs);
          const known = shares.slice(0, t - 1);
          // coefficients of the unique polynomial g of degree < t with g(0)=b through `known`:
          // evaluate g at t-1 extra points via interpolation, then recover coefficients by splitting
          // with an rng that returns them. We solve for coefficients with Lagrange basis evaluation.
          const pts: Share[] = [{ x: 0, y: b } as Share, ...known];
          const coeffs = interpolateCoefficients(pts, t); // c_1..c_{t-1}, each 32 bytes
          const again = shamirSplit(b, t, xs, () => coeffs);
          for (let i = 0; i < known.length; i++) expect(Buffer.from(again[i].y).equals(Buffer.from(known[i].y))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  test('a wrong share gives a different secret (detection is by commitment, done in secagg)', () => {
    const secret = new Uint8Array(32).map((_, i) => i);
    const shares = shamirSplit(secret, 3, [1, 2, 3, 4]);
    shares[1].y[5] ^= 0x40;
    expect(Buffer.from(shamirCombine(shares, 3)).equals(Buffer.from(secret))).toBe(false);
  });

  test('hostile arguments are refused with the argument named', () => {
    const s = new Uint8Array(32);
    expect(() => shamirSplit(new Uint8Array(31), 2, [1, 2])).toThrow('"secret" expected Uint8Array of length 32, got length=31');
    expect(() => shamirSplit(s, 3, [1, 2])).toThrow(/"t" expected an integer in \[1, 2\]/);
    expect(() => shamirSplit(s, 2, [0, 2])).toThrow(/"xs\[i\]"/);
    expect(() => shamirSplit(s, 2, [256, 2])).toThrow(RangeError);
    expect(() => shamirSplit(s, 2, [2, 2])).toThrow(/duplicate point 2/);
    expect(() => shamirSplit(s, 2, 'ab' as unknown as number[])).toThrow(TypeError);
    expect(() => shamirCombine([{ x: 1, y: s }, { x: 1, y: s }], 2)).toThrow(/duplicate point 1/);
    expect(() => shamirCombine([{ x: 1, y: new Uint8Array(3) }], 1)).toThrow(/"shares\[i\].y"/);
    expect(() => shamirCombine([{ x: 1, y: s }], 2)).toThrow(/at least t=2/);
  });
});

/**
 * Coefficients c_1..c_{t-1} (flattened, 32 bytes each) of the polynomial of degree < t through
 * the t points `pts` (pts[0].x = 0), per byte, by solving the Vandermonde system with Gaussian
 * elimination over GF(2^8) (reference code, independent of shamirCombine).
 */
function interpolateCoefficients(pts: Share[], t: number): Uint8Array {
  const out = new Uint8Array((t - 1) * 32);
  for (let byte = 0; byte < 32; byte++) {
    // rows: [x^0 .. x^{t-1} | y]
    const rows = pts.map((p) => {
      const r: number[] = [];
      let xp = 1;
      for (let j = 0; j < t; j++) {
        r.push(xp);
        xp = refMul(xp, p.x);
      }
      r.push(p.y[byte]);
      return r;
    });
    for (let col = 0; col < t; col++) {
      const piv = rows.findIndex((r, i) => i >= col && r[col] !== 0);
      [rows[col], rows[piv]] = [rows[piv], rows[col]];
      const inv = gfInv(rows[col][col]);
      rows[col] = rows[col].map((v) => refMul(v, inv));
      for (let i = 0; i < t; i++) if (i !== col && rows[i][col] !== 0) {
        const f = rows[i][col];
        rows[i] = rows[i].map((v, j) => v ^ refMul(f, rows[col][j]));
      }
    }
    for (let j = 1; j < t; j++) out[(j - 1) * 32 + byte] = rows[j][t];
  }
  return out;
}
