/**
 * Bearer tokens: the operator token (its SHA-256 is in the config) and auditor tokens the operator
 * issues (only their SHA-256 is stored). Tokens are 32 CSPRNG bytes, so a plain hash is enough to
 * store them; comparison is constant-time. Operator, auditor and party credentials never overlap:
 * parties authenticate with Ed25519 signatures, not tokens.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { randomBytes } from '../../shared/crypto/sodium';

export const TOKEN_PREFIX = 'fbt_';

/** A fresh token: "fbt_" + base64url(32 random bytes from libsodium). Requires sodiumReady(). */
export function newToken(): string {
  return TOKEN_PREFIX + Buffer.from(randomBytes(32)).toString('base64url');
}

export function tokenSha256(token: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(token, 'utf8').digest());
}

export function tokenSha256Hex(token: string): string {
  return Buffer.from(tokenSha256(token)).toString('hex');
}

/** Constant-time check of a presented token against a stored SHA-256 (hex). */
export function tokenMatches(presented: string, expectedSha256Hex: string): boolean {
  const a = Buffer.from(tokenSha256(presented));
  const b = Buffer.from(expectedSha256Hex, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Extracts the token from `authorization: Bearer <token>` metadata values; null if absent/malformed. */
export function bearerToken(values: unknown[]): string | null {
  if (values.length !== 1 || typeof values[0] !== 'string') return null;
  const m = /^Bearer ([A-Za-z0-9_\-.~+/=]{16,512})$/.exec(values[0]);
  return m ? m[1] : null;
}
