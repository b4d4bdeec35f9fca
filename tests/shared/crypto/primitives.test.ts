/**
 * KDF, AEAD, hashing, encoding: behaviour that a mistake would break, plus the shared table of
 * hostile inputs every crypto API must reject with the argument named.
 */
import fc from 'fast-check';
import { aeadOpen, aeadSeal } from '../../../shared/crypto/aead';
import { encodeFields } from '../../../shared/crypto/encode';
import { blake2b256, equalBytes, hashFields } from '../../../shared/crypto/hash';
import { kdf, pairKdf } from '../../../shared/crypto/kdf';
import { addMask, chacha20Keystream, expandMask } from '../../../shared/crypto/prg';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { x25519, x25519Keygen, x25519PublicKey } from '../../../shared/crypto/x25519';

beforeAll(() => sodiumReady());

const k32 = new Uint8Array(32).fill(7);

describe('BLAKE2b', () => {
  test('BLAKE2b-256 of the empty string (known answer)', () => {
    // BLAKE2b-256("") = 0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8 (widely published)
    expect(Buffer.from(blake2b256(new Uint8Array(0))).toString('hex')).toBe('0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8');
  });
  test('domain-separated hashing: different domains or field splits never collide', () => {
    expect(equalBytes(hashFields('a', 'bc'), hashFields('ab', 'c'))).toBe(false);
    expect(equalBytes(hashFields('d', 'x', 'y'), hashFields('d', 'xy'))).toBe(false);
    expect(equalBytes(hashFields('d', ['a', 'b']), hashFields('d', ['ab']))).toBe(false);
    expect(equalBytes(hashFields('d', 1), hashFields('d', '1'))).toBe(false);
  });
});

describe('encodeFields', () => {
  test('is injective on random field lists (distinct lists give distinct bytes)', () => {
    const field = fc.oneof(fc.string({ maxLength: 5 }), fc.nat(1000), fc.uint8Array({ maxLength: 5 }), fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 }));
    fc.assert(
      fc.property(fc.array(field, { maxLength: 4 }), fc.array(field, { maxLength: 4 }), (a, b) => {
        const same = JSON.stringify(a, (_k, v) => (v instanceof Uint8Array ? ['u8', ...v] : v)) === JSON.stringify(b, (_k, v) => (v instanceof Uint8Array ? ['u8', ...v] : v));
        expect(Buffer.from(encodeFields(...a)).equals(Buffer.from(encodeFields(...b)))).toBe(same);
      }),
      { numRuns: 300 },
    );
  });
});

describe('KDF', () => {
  test('pair keys are symmetric in the pair and bound to federation, run, round, purpose and both ids', () => {
    const base = pairKdf(k32, 'p', 'fed', 'run-1', 3, 'alice', 'bob');
    expect(equalBytes(base, pairKdf(k32, 'p', 'fed', 'run-1', 3, 'bob', 'alice'))).toBe(true);
    for (const other of [
      pairKdf(k32, 'p', 'fed', 'run-1', 4, 'alice', 'bob'),
      pairKdf(k32, 'p', 'fed', 'run-2', 3, 'alice', 'bob'),
      pairKdf(k32, 'p', 'fed2', 'run-1', 3, 'alice', 'bob'),
      pairKdf(k32, 'q', 'fed', 'run-1', 3, 'alice', 'bob'),
      pairKdf(k32, 'p', 'fed', 'run-1', 3, 'alice', 'carol'),
      pairKdf(new Uint8Array(32).fill(8), 'p', 'fed', 'run-1', 3, 'alice', 'bob'),
    ]) {
      expect(equalBytes(base, other)).toBe(false);
    }
    expect(() => pairKdf(k32, 'p', 'fed', 'run-1', 3, 'alice', 'alice')).toThrow(/different party ids/);
  });
  test('X25519 + KDF gives both parties the same key', () => {
    const a = x25519Keygen();
    const b = x25519Keygen();
    const ka = pairKdf(x25519(a.secretKey, b.publicKey), 'p', 'f', 'r', 1, 'a', 'b');
    const kb = pairKdf(x25519(b.secretKey, a.publicKey), 'p', 'f', 'r', 1, 'b', 'a');
    expect(equalBytes(ka, kb)).toBe(true);
  });
});

describe('AEAD (XChaCha20-Poly1305)', () => {
  test('round trip; any change of key, associated data or ciphertext is rejected (null)', () => {
    const pt = new Uint8Array([1, 2, 3, 4]);
    const ad = encodeFields('fed', 1, 'share-keys', 'a', 'b');
    const ct = aeadSeal(k32, pt, ad);
    expect(Array.from(aeadOpen(k32, ct, ad)!)).toEqual([1, 2, 3, 4]);
    expect(aeadOpen(new Uint8Array(32).fill(8), ct, ad)).toBeNull();
    expect(aeadOpen(k32, ct, encodeFields('fed', 1, 'share-keys', 'b', 'a'))).toBeNull();
    for (let i = 0; i < ct.length; i++) {
      const bad = ct.slice();
      bad[i] ^= 1;
      expect(aeadOpen(k32, bad, ad)).toBeNull();
    }
    expect(aeadOpen(k32, ct.subarray(0, 10), ad)).toBeNull();
    // fresh nonce: two encryptions of the same plaintext differ
    expect(equalBytes(ct, aeadSeal(k32, pt, ad))).toBe(false);
  });
});

describe('hostile inputs (shared table): every API names the bad argument', () => {
  const bad: [string, () => unknown, RegExp, ErrorConstructor][] = [
    ['x25519 short secret', () => x25519(new Uint8Array(31), k32), /"secretKey" expected Uint8Array of length 32, got length=31/, RangeError],
    ['x25519 string key', () => x25519(k32, 'abc' as unknown as Uint8Array), /"publicKey" expected Uint8Array, got string/, TypeError],
    ['x25519PublicKey array', () => x25519PublicKey([1, 2] as unknown as Uint8Array), /"secretKey" expected Uint8Array, got Array/, TypeError],
    ['kdf short ikm', () => kdf(new Uint8Array(8), 'p'), /"ikm" expected Uint8Array of length 16..64/, RangeError],
    ['kdf empty purpose', () => kdf(k32, ''), /"purpose" expected a non-empty string/, RangeError],
    ['pairKdf negative round', () => pairKdf(k32, 'p', 'f', 'r', -1, 'a', 'b'), /"round" expected an integer/, RangeError],
    ['pairKdf fractional round', () => pairKdf(k32, 'p', 'f', 'r', 1.5, 'a', 'b'), /"round" expected a safe integer/, TypeError],
    ['aeadSeal 16-byte key', () => aeadSeal(new Uint8Array(16), k32, k32), /"key" expected Uint8Array of length 32/, RangeError],
    ['aeadOpen null ad', () => aeadOpen(k32, k32, null as unknown as Uint8Array), /"ad" expected Uint8Array, got null/, TypeError],
    ['keystream short nonce', () => chacha20Keystream(k32, new Uint8Array(8), 0, 64), /"nonce" expected Uint8Array of length 12/, RangeError],
    ['keystream counter overflow', () => chacha20Keystream(k32, new Uint8Array(12), 2 ** 32, 64), /"counter"/, RangeError],
    ['keystream counter wrap', () => chacha20Keystream(k32, new Uint8Array(12), 2 ** 32 - 1, 128), /32-bit ChaCha20 block counter/, RangeError],
    ['addMask Int32Array', () => addMask(new Int32Array(4) as unknown as Uint32Array, k32, 1), /"acc" expected Uint32Array, got Int32Array/, TypeError],
    ['addMask short seed', () => addMask(new Uint32Array(4), new Uint8Array(16), 1), /"seed" expected Uint8Array of length 32/, RangeError],
    ['addMask bad sign', () => addMask(new Uint32Array(4), k32, 2 as 1), /"sign" expected 1 or -1/, RangeError],
    ['addMask bits 7', () => addMask(new Uint32Array(4), k32, 1, 7), /"bits" expected an integer in \[8, 32\]/, RangeError],
    ['addMask bits 33', () => addMask(new Uint32Array(4), k32, 1, 33), /"bits"/, RangeError],
    ['expandMask negative length', () => expandMask(k32, -1), /"length"/, RangeError],
  ];
  test.each(bad)('%s', (_name, fn, msg, kind) => {
    expect(fn).toThrow(kind);
    expect(fn).toThrow(msg);
  });
});
