/**
 * X25519 Diffie-Hellman (RFC 7748 §5, §6.1) from libsodium crypto_scalarmult.
 * Parties hold two X25519 key pairs per round (DESIGN §4 step 4): c (for encrypting shares) and
 * s (for pairwise mask agreement).
 */
import { abytes } from '../util/check';
import { randomBytes, sodium } from './sodium';

export const X25519_KEY_LENGTH = 32;

export interface X25519KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/** The public key of a 32-byte secret scalar (RFC 7748 §6.1: X25519(sk, 9)). */
export function x25519PublicKey(secretKey: Uint8Array): Uint8Array {
  abytes('secretKey', secretKey, X25519_KEY_LENGTH);
  return sodium().crypto_scalarmult_base(secretKey);
}

/**
 * A key pair. The secret is 32 bytes from `rng` (default libsodium randombytes_buf); clamping is
 * applied inside X25519 per RFC 7748 §5, so any 32 bytes are a valid secret.
 */
export function x25519Keygen(rng: (n: number) => Uint8Array = randomBytes): X25519KeyPair {
  const secretKey = abytes('rng output', rng(X25519_KEY_LENGTH), X25519_KEY_LENGTH);
  return { publicKey: x25519PublicKey(secretKey), secretKey };
}

/**
 * The raw shared secret X25519(secretKey, publicKey) (RFC 7748 §5). Throws RangeError when the
 * result is all zeros (a low-order peer key, RFC 7748 §6.1 "check"). Never use the raw output as
 * a key: pass it through kdf.ts.
 */
export function x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  abytes('secretKey', secretKey, X25519_KEY_LENGTH);
  abytes('publicKey', publicKey, X25519_KEY_LENGTH);
  try {
    return sodium().crypto_scalarmult(secretKey, publicKey);
  } catch {
    throw new RangeError('"publicKey" is a low-order point: X25519 output is all zeros');
  }
}
