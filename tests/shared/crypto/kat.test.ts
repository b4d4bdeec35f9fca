/**
 * Known-answer tests: RFC 8439 ChaCha20 (§2.4.2, A.1), RFC 7748 X25519 (§5.2, §6.1),
 * RFC 8032 Ed25519 test 1, and our Node-ChaCha20 mask PRG against libsodium-wrappers-sumo.
 */
import sumo from 'libsodium-wrappers-sumo';
import fc from 'fast-check';
import { addMask, chacha20Keystream, expandMask, MASK_KERNEL, MaskAccumulator } from '../../../shared/crypto/prg';
import { ed25519FromSeed, ed25519Sign, ed25519Verify } from '../../../shared/crypto/sign';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { x25519, x25519PublicKey } from '../../../shared/crypto/x25519';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/[\s:]/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

beforeAll(async () => {
  await sodiumReady();
  await sumo.ready;
});

describe('ChaCha20 (RFC 8439)', () => {
  test('A.1 test vector #1: zero key, zero nonce, counter 0', () => {
    const ks = chacha20Keystream(new Uint8Array(32), new Uint8Array(12), 0, 64);
    expect(toHex(ks)).toBe(
      '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586',
    );
  });

  test('A.1 test vector #2: zero key, zero nonce, counter 1', () => {
    const ks = chacha20Keystream(new Uint8Array(32), new Uint8Array(12), 1, 64);
    expect(toHex(ks)).toBe(
      '9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f',
    );
  });

  test('§2.4.2 encryption example (keystream xor plaintext)', () => {
    const key = hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
    const nonce = hex('000000000000004a00000000');
    const pt = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
    const ks = chacha20Keystream(key, nonce, 1, pt.length);
    const ct = pt.map((b, i) => b ^ ks[i]);
    expect(toHex(ct)).toBe(
      '6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab77937365af90bbf74a35be6b40b8eedf2785e42874d',
    );
  });

  test('matches libsodium-wrappers-sumo crypto_stream_chacha20_ietf for random key/nonce/counter/length', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 0, max: 70000 }),
        (key, nonce, counter, len) => {
          const ours = chacha20Keystream(key, nonce, counter, len);
          const ref = sumo.crypto_stream_chacha20_ietf_xor_ic(new Uint8Array(len), nonce, counter, key);
          expect(Buffer.from(ours).equals(Buffer.from(ref))).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  test('the WebAssembly SIMD kernel is in use on this host (little-endian, SIMD available)', () => {
    expect(MASK_KERNEL).toBe('wasm-simd');
  });

  test('mask words are the little-endian keystream words (zero nonce, counter 0), checked against sumo', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.integer({ min: 1, max: 40000 }), fc.integer({ min: 8, max: 32 }), fc.boolean(), (seed, m, bits, forceJs) => {
        const ref = sumo.crypto_stream_chacha20_ietf_xor_ic(new Uint8Array(4 * m), new Uint8Array(12), 0, seed);
        const dv = new DataView(ref.buffer, ref.byteOffset, ref.byteLength);
        const mask = expandMask(seed, m, bits, forceJs);
        for (let i = 0; i < m; i++) {
          const w = dv.getUint32(4 * i, true);
          if (mask[i] !== (bits === 32 ? w : w % 2 ** bits)) throw new Error(`word ${i} differs`);
        }
      }),
      { numRuns: 25 },
    );
  });

  test('addMask then subtracting the same mask restores the vector exactly, for every b', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.integer({ min: 8, max: 32 }), fc.integer({ min: 1, max: 70000 }), fc.boolean(), fc.nat(3), (seed, bits, m, forceJs, lead) => {
        // `lead` offsets the vector inside its buffer (subarray views must work too)
        const x = new Uint32Array(m + lead).subarray(lead);
        for (let i = 0; i < m; i++) x[i] = (i * 2654435761) % 2 ** bits;
        const y = new Uint32Array(m + lead).subarray(lead);
        y.set(x);
        addMask(y, seed, 1, bits, forceJs);
        const ref = expandMask(seed, m, bits, !forceJs);
        for (let i = 0; i < m; i++) if (y[i] !== (x[i] + ref[i]) % 2 ** bits) throw new Error(`coordinate ${i}`);
        addMask(y, seed, -1, bits, forceJs);
        expect(Array.from(y)).toEqual(Array.from(x));
      }),
      { numRuns: 30 },
    );
  });
});

describe('MaskAccumulator', () => {
  test('x + PRG(s1) + v - PRG(s2) mod 2^b equals a libsodium-sumo reference, wasm and JS paths, any b', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.integer({ min: 8, max: 32 }),
        fc.integer({ min: 0, max: 40000 }),
        fc.boolean(),
        (s1, s2, bits, m, forceJs) => {
          const mod = 2 ** bits;
          const x = new Uint32Array(m).map((_, i) => (i * 2654435761) % mod);
          const v = new Uint32Array(m).map((_, i) => (i * 40503 + 7) % mod);
          const acc = new MaskAccumulator(m, bits, forceJs);
          acc.set(x);
          acc.addMask(s1, 1);
          acc.addVector(v);
          acc.addMask(s2, -1);
          const k1 = sumo.crypto_stream_chacha20_ietf_xor_ic(new Uint8Array(4 * m), new Uint8Array(12), 0, s1);
          const k2 = sumo.crypto_stream_chacha20_ietf_xor_ic(new Uint8Array(4 * m), new Uint8Array(12), 0, s2);
          const d1 = new DataView(k1.buffer, k1.byteOffset, k1.byteLength);
          const d2 = new DataView(k2.buffer, k2.byteOffset, k2.byteLength);
          const got = acc.read();
          for (let i = 0; i < m; i++) {
            const want = (x[i] + (d1.getUint32(4 * i, true) % mod) + v[i] - (d2.getUint32(4 * i, true) % mod) + mod) % mod;
            if (got[i] !== want) throw new Error(`coordinate ${i}: ${got[i]} != ${want}`);
          }
          acc.wipe();
          expect(acc.read().every((w) => w === 0)).toBe(true);
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('X25519 (RFC 7748)', () => {
  test('§5.2 vectors', () => {
    expect(toHex(x25519(hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'), hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c')))).toBe(
      'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552',
    );
    expect(toHex(x25519(hex('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d'), hex('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493')))).toBe(
      '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957',
    );
  });

  test('§6.1 Diffie-Hellman: public keys and the shared secret', () => {
    const a = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const b = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    expect(toHex(x25519PublicKey(a))).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(toHex(x25519PublicKey(b))).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(toHex(x25519(a, x25519PublicKey(b)))).toBe(k);
    expect(toHex(x25519(b, x25519PublicKey(a)))).toBe(k);
  });

  test('a low-order public key (all-zero output) is refused', () => {
    expect(() => x25519(new Uint8Array(32).fill(1), new Uint8Array(32))).toThrow(RangeError);
    expect(() => x25519(new Uint8Array(32).fill(1), hex('0100000000000000000000000000000000000000000000000000000000000000'))).toThrow(/low-order/);
  });
});

describe('Ed25519 (RFC 8032 §7.1)', () => {
  test('test 1 (empty message)', () => {
    const kp = ed25519FromSeed(hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'));
    expect(toHex(kp.publicKey)).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    const sig = ed25519Sign(new Uint8Array(0), kp.secretKey);
    expect(toHex(sig)).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    expect(ed25519Verify(sig, new Uint8Array(0), kp.publicKey)).toBe(true);
    sig[0] ^= 1;
    expect(ed25519Verify(sig, new Uint8Array(0), kp.publicKey)).toBe(false);
  });
});
