/**
 * XChaCha20-Poly1305 AEAD (draft-irtf-cfrg-xchacha; RFC 8439 §2.8 with a 24-byte nonce) from
 * libsodium crypto_aead_xchacha20poly1305_ietf_*. Used to carry Shamir shares between parties
 * through the coordinator, which routes ciphertexts it cannot read.
 *
 * Wire format: nonce (24, random) || ciphertext || tag (16). Associated data binds the
 * ciphertext to its context (federation, run, round, phase, sender, recipient); decryption under any
 * other context fails.
 */
import { abytes } from '../util/check';
import { concatBytes } from './encode';
import { randomBytes, sodium } from './sodium';

export const AEAD_KEY_LENGTH = 32;
export const AEAD_NONCE_LENGTH = 24;
export const AEAD_TAG_LENGTH = 16;

/** Encrypts and authenticates `plaintext` with `ad`; a fresh random 192-bit nonce is prepended. */
export function aeadSeal(key: Uint8Array, plaintext: Uint8Array, ad: Uint8Array, rng: (n: number) => Uint8Array = randomBytes): Uint8Array {
  abytes('key', key, AEAD_KEY_LENGTH);
  abytes('plaintext', plaintext);
  abytes('ad', ad);
  const nonce = abytes('rng output', rng(AEAD_NONCE_LENGTH), AEAD_NONCE_LENGTH);
  const ct = sodium().crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, key);
  return concatBytes(nonce, ct);
}

/**
 * Decrypts `sealed`; returns null (never throws) when the tag does not verify, i.e. wrong key,
 * wrong associated data or a modified ciphertext. Throws only on wrong argument types/lengths.
 */
export function aeadOpen(key: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | null {
  abytes('key', key, AEAD_KEY_LENGTH);
  abytes('sealed', sealed);
  abytes('ad', ad);
  if (sealed.length < AEAD_NONCE_LENGTH + AEAD_TAG_LENGTH) return null;
  try {
    return sodium().crypto_aead_xchacha20poly1305_ietf_decrypt(
      null,
      sealed.subarray(AEAD_NONCE_LENGTH),
      ad,
      sealed.subarray(0, AEAD_NONCE_LENGTH),
      key,
    );
  } catch {
    return null;
  }
}
