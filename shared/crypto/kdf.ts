/**
 * Key derivation: BLAKE2b-256 keyed with the input key material (RFC 7693 §2.5 keyed mode, as
 * libsodium crypto_generichash with a key), over a canonical, length-prefixed context (encode.ts).
 * BLAKE2b in keyed mode is a PRF, so outputs for distinct contexts are independent keys.
 *
 * Pair seeds and share-encryption keys are bound to (purpose, federation id, run id, round, ordered
 * party ids), so the same X25519 keys in another round, run, federation or pair give unrelated keys.
 */
import { abytes, aint, astr } from '../util/check';
import { encodeFields, type Field } from './encode';
import { sodium } from './sodium';

export const KDF_KEY_LENGTH = 32;

/** 32-byte key = BLAKE2b-256(key = ikm, message = encode(purpose, ...context)). ikm: 16..64 bytes. */
export function kdf(ikm: Uint8Array, purpose: string, ...context: Field[]): Uint8Array {
  abytes('ikm', ikm);
  if (ikm.length < 16 || ikm.length > 64) {
    throw new RangeError(`"ikm" expected Uint8Array of length 16..64, got length=${ikm.length}`);
  }
  astr('purpose', purpose);
  return sodium().crypto_generichash(KDF_KEY_LENGTH, encodeFields('fedbridge/kdf/v1', purpose, ...context), ikm);
}

/**
 * Key bound to an unordered pair {a, b} within (federationId, runId, round): ids are put in sorted
 * order so both parties derive the same key. `a !== b` is required.
 */
export function pairKdf(
  ikm: Uint8Array,
  purpose: string,
  federationId: string,
  runId: string,
  round: number,
  a: string,
  b: string,
): Uint8Array {
  astr('federationId', federationId);
  astr('runId', runId);
  aint('round', round, 0);
  astr('a', a);
  astr('b', b);
  if (a === b) throw new RangeError('"a" and "b" must be different party ids');
  const [lo, hi] = a < b ? [a, b] : [b, a];
  return kdf(ikm, purpose, federationId, runId, round, lo, hi);
}
