/**
 * Mask PRG: the ChaCha20 keystream (RFC 8439 §2.4) keyed by a full 256-bit seed, read as
 * little-endian 32-bit words (Bonawitz et al. 2017 §4: PRG(b_u), PRG(s_uv)).
 *
 * Implementation: Node's OpenSSL ChaCha20 (`createCipheriv('chacha20', key, iv)`, where the
 * 16-byte iv is the RFC 8439 block counter (u32 LE) followed by the 96-bit nonce) encrypting
 * zeros, which yields the keystream itself. It is about 3x faster than libsodium's wasm build; a
 * known-answer test checks it against RFC 8439 §2.4.2/A.1 and libsodium-wrappers-sumo.
 *
 * The nonce is fixed to zero and the counter starts at 0: this is safe because every mask seed is
 * used for exactly one keystream (seeds are fresh per round and per pair, see kdf.ts). A 32-bit
 * block counter allows 2^32 * 64 bytes = 256 GiB, i.e. 2^36 words per seed; longer requests are
 * refused.
 *
 * A mask mod 2^b (8 <= b <= 32) takes the low b bits of each word, which is uniform on [0, 2^b)
 * because 2^b divides 2^32. Masks are added into an accumulator in place, one 64 KiB keystream
 * block at a time: no copy of the vector, memory O(block).
 *
 * Note: OpenSSL keeps its own copy of the key inside the cipher context, which Node frees when the
 * cipher object is collected; we cannot wipe that copy (callers wipe their seeds).
 */
import { createCipheriv } from 'node:crypto';
import { endianness } from 'node:os';
import { abytes, aint, au32 } from '../util/check';

export const PRG_SEED_LENGTH = 32;
const BLOCK_BYTES = 1 << 16; // 64 KiB of keystream per update
const ZEROS = new Uint8Array(BLOCK_BYTES);
const LITTLE_ENDIAN = endianness() === 'LE';
/** Most words one seed may produce (2^32 ChaCha20 blocks of 16 words). */
export const PRG_MAX_WORDS = 2 ** 36;

/** Asserts `bits` is an integer in [8, 32]; returns it. */
export function abits(bits: unknown): number {
  return aint('bits', bits, 8, 32);
}

/** The bit mask 2^b - 1 as a 32-bit pattern usable with `&`. */
export function modMask(bits: number): number {
  return 2 ** abits(bits) - 1;
}

/**
 * `length` bytes of the raw ChaCha20 keystream for (key, nonce, initial counter) — RFC 8439
 * §2.4 with plaintext all zeros. For known-answer tests and interop; masks use `addMask`.
 */
export function chacha20Keystream(key: Uint8Array, nonce: Uint8Array, counter: number, length: number): Uint8Array {
  abytes('key', key, 32);
  abytes('nonce', nonce, 12);
  aint('counter', counter, 0, 0xffffffff);
  aint('length', length, 0);
  if (counter + Math.ceil(length / 64) > 2 ** 32) throw new RangeError('"length" exceeds the 32-bit ChaCha20 block counter');
  const iv = new Uint8Array(16);
  new DataView(iv.buffer).setUint32(0, counter, true);
  iv.set(nonce, 4);
  const c = createCipheriv('chacha20', key, iv);
  const out = new Uint8Array(length);
  for (let off = 0; off < length; off += BLOCK_BYTES) {
    const n = Math.min(BLOCK_BYTES, length - off);
    out.set(c.update(ZEROS.subarray(0, n)), off);
  }
  return out;
}

function keystreamCipher(seed: Uint8Array) {
  return createCipheriv('chacha20', seed, new Uint8Array(16));
}

function words(ks: Uint8Array, nWords: number): Uint32Array {
  if (LITTLE_ENDIAN && ks.byteOffset % 4 === 0) return new Uint32Array(ks.buffer, ks.byteOffset, nWords);
  const w = new Uint32Array(nWords);
  const dv = new DataView(ks.buffer, ks.byteOffset, ks.byteLength);
  for (let i = 0; i < nWords; i++) w[i] = dv.getUint32(4 * i, true);
  return w;
}

/**
 * acc[i] <- acc[i] + sign * PRG(seed)[i]  (mod 2^bits), in place, for every i < acc.length.
 * PRG(seed)[i] is keystream word i masked to `bits` bits. `acc` entries are expected in
 * [0, 2^bits); the result is again in [0, 2^bits).
 */
export function addMask(acc: Uint32Array, seed: Uint8Array, sign: 1 | -1, bits = 32): void {
  au32('acc', acc);
  abytes('seed', seed, PRG_SEED_LENGTH);
  if (sign !== 1 && sign !== -1) throw new RangeError(`"sign" expected 1 or -1, got ${String(sign)}`);
  const mask = modMask(bits);
  const m = acc.length;
  if (m > PRG_MAX_WORDS) throw new RangeError(`"acc" is longer than ${PRG_MAX_WORDS} words`);
  const c = keystreamCipher(seed);
  const blockWords = BLOCK_BYTES / 4;
  for (let off = 0; off < m; off += blockWords) {
    const n = Math.min(blockWords, m - off);
    const w = words(c.update(ZEROS.subarray(0, 4 * n)), n);
    if (bits === 32) {
      // Uint32Array stores wrap mod 2^32 (ToUint32), so plain += / -= is exact modular arithmetic.
      if (sign === 1) for (let i = 0; i < n; i++) acc[off + i] += w[i];
      else for (let i = 0; i < n; i++) acc[off + i] -= w[i];
    } else if (sign === 1) {
      for (let i = 0; i < n; i++) acc[off + i] = (acc[off + i] + w[i]) & mask;
    } else {
      for (let i = 0; i < n; i++) acc[off + i] = (acc[off + i] - w[i]) & mask;
    }
  }
}

/** PRG(seed) as a fresh vector of `length` words mod 2^bits (for tests and small uses). */
export function expandMask(seed: Uint8Array, length: number, bits = 32): Uint32Array {
  aint('length', length, 0, PRG_MAX_WORDS);
  const out = new Uint32Array(length);
  addMask(out, seed, 1, bits);
  return out;
}
