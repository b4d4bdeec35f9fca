/**
 * Ed25519 signatures (RFC 8032 §5.1) from libsodium (crypto_sign_detached / verify_detached).
 * Identity keys of parties and of the coordinator are Ed25519 key pairs.
 */
import { abytes } from '../util/check';
import { sodium } from './sodium';

export const ED25519_PUBLIC_KEY_LENGTH = 32;
export const ED25519_SECRET_KEY_LENGTH = 64; // libsodium format: seed (32) || public key (32)
export const ED25519_SIGNATURE_LENGTH = 64;

export interface Ed25519KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

/** A fresh key pair from libsodium's CSPRNG. Requires `await sodiumReady()`. */
export function ed25519Keygen(): Ed25519KeyPair {
  const kp = sodium().crypto_sign_keypair();
  return { publicKey: kp.publicKey, secretKey: kp.privateKey };
}

/** The key pair derived from a 32-byte seed (RFC 8032 §5.1.5). */
export function ed25519FromSeed(seed: Uint8Array): Ed25519KeyPair {
  abytes('seed', seed, 32);
  const kp = sodium().crypto_sign_seed_keypair(seed);
  return { publicKey: kp.publicKey, secretKey: kp.privateKey };
}

/** Detached signature over `message`. */
export function ed25519Sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  abytes('message', message);
  abytes('secretKey', secretKey, ED25519_SECRET_KEY_LENGTH);
  return sodium().crypto_sign_detached(message, secretKey);
}

/** True iff `signature` is a valid signature of `message` under `publicKey`. Never throws on a bad signature. */
export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  abytes('signature', signature);
  abytes('message', message);
  abytes('publicKey', publicKey, ED25519_PUBLIC_KEY_LENGTH);
  if (signature.length !== ED25519_SIGNATURE_LENGTH) return false;
  return sodium().crypto_sign_verify_detached(signature, message, publicKey);
}
