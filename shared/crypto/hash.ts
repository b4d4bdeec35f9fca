/**
 * BLAKE2b (RFC 7693) via libsodium crypto_generichash. Used for commitments to secrets and for
 * digests of long vectors inside signed messages.
 */
import { abytes } from '../util/check';
import { encodeFields, type Field } from './encode';
import { sodium } from './sodium';

export const HASH_LENGTH = 32;

/** BLAKE2b-256 of `data` (RFC 7693, 32-byte output, unkeyed). */
export function blake2b256(data: Uint8Array): Uint8Array {
  abytes('data', data);
  return sodium().crypto_generichash(HASH_LENGTH, data, null);
}

/**
 * Domain-separated hash: BLAKE2b-256 of the canonical encoding of (domain, ...fields).
 * Distinct domains or field lists never collide by construction (encode.ts is injective).
 */
export function hashFields(domain: string, ...fields: Field[]): Uint8Array {
  return blake2b256(encodeFields(domain, ...fields));
}

/** Constant-time equality of two byte arrays (libsodium sodium_memcmp); false on length mismatch. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  abytes('a', a);
  abytes('b', b);
  if (a.length !== b.length) return false;
  if (a.length === 0) return true;
  return sodium().memcmp(a, b);
}

/** Overwrites a secret with zeros (libsodium sodium_memzero). */
export function wipe(...secrets: (Uint8Array | undefined | null)[]): void {
  for (const s of secrets) if (s && s.length) sodium().memzero(s);
}
