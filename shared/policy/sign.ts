/**
 * Policy signatures (DESIGN §3): every party, and the coordinator, signs the policy hash with its
 * Ed25519 identity key; the coordinator will not start a run until every party has signed the same
 * hash, and the auditor checks every signature against the keys pinned in the policy itself.
 *
 * Signed message (Ed25519, RFC 8032):  "fedbridge/v1/policy" || 0x00 || policyHash (32 raw bytes)
 * where policyHash = BLAKE2b-256 of the RFC 8785 canonical JSON of the validated policy
 * (shared/policy/schema.ts#policyHash). The domain prefix keeps a policy signature from being valid
 * for any other signed message of the project. (Same format the coordinator checked from the start,
 * coordinator/policy/signatures.ts, which imports it from here.)
 *
 * A signature file (`<policy>.sig/<signer>.json`, written by `fedbridge policy sign`):
 *   {"format":"fedbridge-policy-signature/1","policyHash":hex,"signer":name,"publicKey":b64,"signature":b64}
 */
import { z } from 'zod';
import { ed25519Sign, ed25519Verify } from '../crypto/sign';
import { sodium } from '../crypto/sodium';
import type { Policy } from './schema';

const PREFIX = new TextEncoder().encode('fedbridge/v1/policy\0');

export const POLICY_SIGNATURE_FORMAT = 'fedbridge-policy-signature/1';

/** The exact bytes signed for a policy hash (64 lowercase hex characters). */
export function policySigningMessage(policyHashHex: string): Uint8Array {
  if (typeof policyHashHex !== 'string' || !/^[0-9a-f]{64}$/.test(policyHashHex)) {
    throw new RangeError(`"policyHash" expected 64 lowercase hex characters, got ${JSON.stringify(String(policyHashHex).slice(0, 70))}`);
  }
  const out = new Uint8Array(PREFIX.length + 32);
  out.set(PREFIX, 0);
  out.set(sodium().from_hex(policyHashHex), PREFIX.length);
  return out;
}

export function signPolicyHash(policyHashHex: string, secretKey: Uint8Array): Uint8Array {
  return ed25519Sign(policySigningMessage(policyHashHex), secretKey);
}

/** True iff `signature` is `publicKey`'s signature of this policy hash. Never throws on a bad signature. */
export function verifyPolicySignature(policyHashHex: string, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (!(signature instanceof Uint8Array) || signature.length !== 64) return false;
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false;
  return ed25519Verify(signature, policySigningMessage(policyHashHex), publicKey);
}

const b64 = (n: number) =>
  z.string().refine((s) => {
    try {
      return sodium().from_base64(s, sodium().base64_variants.ORIGINAL).length === n;
    } catch {
      return false;
    }
  }, `expected base64 of ${n} bytes`);

export const policySignatureFileSchema = z
  .object({
    format: z.literal(POLICY_SIGNATURE_FORMAT),
    policyHash: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex characters'),
    signer: z.string().min(1),
    publicKey: b64(32),
    signature: b64(64),
  })
  .strict();

export type PolicySignatureFile = z.infer<typeof policySignatureFileSchema>;

export function makePolicySignatureFile(policyHashHex: string, signer: string, publicKey: Uint8Array, secretKey: Uint8Array): PolicySignatureFile {
  const s = sodium();
  return {
    format: POLICY_SIGNATURE_FORMAT,
    policyHash: policyHashHex,
    signer,
    publicKey: s.to_base64(publicKey, s.base64_variants.ORIGINAL),
    signature: s.to_base64(signPolicyHash(policyHashHex, secretKey), s.base64_variants.ORIGINAL),
  };
}

/** The key the policy pins for a signer name: a party's, or the coordinator's (by its name). */
export function pinnedKey(policy: Policy, signer: string): { role: 'party' | 'coordinator'; publicKey: string } | null {
  const p = policy.parties.find((x) => x.name === signer);
  if (p) return { role: 'party', publicKey: p.publicKey };
  if (policy.coordinator.name === signer) return { role: 'coordinator', publicKey: policy.coordinator.publicKey };
  return null;
}

export interface SignatureCheck {
  signer: string;
  role: 'party' | 'coordinator' | 'unknown';
  ok: boolean;
  problem?: string;
}

/**
 * Checks signature files against a policy: each must name a signer the policy pins, carry exactly
 * the pinned key, be over this policy's hash, and verify. `missing` lists the pinned signers
 * (every party, and the coordinator) without a valid signature.
 */
export function checkPolicySignatures(policy: Policy, policyHashHex: string, files: readonly PolicySignatureFile[]): { checks: SignatureCheck[]; missing: string[]; ok: boolean } {
  const s = sodium();
  const checks: SignatureCheck[] = files.map((f) => {
    const pin = pinnedKey(policy, f.signer);
    if (!pin) return { signer: f.signer, role: 'unknown', ok: false, problem: `"${f.signer}" is neither a party nor the coordinator of this policy` };
    if (f.policyHash !== policyHashHex) return { signer: f.signer, role: pin.role, ok: false, problem: `signs policy ${f.policyHash}, not this policy (${policyHashHex})` };
    if (f.publicKey !== pin.publicKey) return { signer: f.signer, role: pin.role, ok: false, problem: 'public key differs from the key the policy pins for this signer' };
    const ok = verifyPolicySignature(policyHashHex, s.from_base64(f.signature, s.base64_variants.ORIGINAL), s.from_base64(pin.publicKey, s.base64_variants.ORIGINAL));
    return ok ? { signer: f.signer, role: pin.role, ok } : { signer: f.signer, role: pin.role, ok, problem: 'signature does not verify' };
  });
  const good = new Set(checks.filter((c) => c.ok).map((c) => c.signer));
  const missing = [policy.coordinator.name, ...policy.parties.map((p) => p.name)].filter((n) => !good.has(n));
  return { checks, missing, ok: missing.length === 0 && checks.every((c) => c.ok) };
}
