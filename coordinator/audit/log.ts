/**
 * Minimal audit log (issue 5; issue 6 deepens it): every entry is canonical JSON (RFC 8785),
 * hash-chained with BLAKE2b-256 and signed by the coordinator's Ed25519 identity key.
 *
 *   genesis      = 32 zero bytes
 *   chain(i)     = BLAKE2b-256( "fedbridge/v1/audit-chain" || 0x00 || u64be(i) || prevHash(i) || entry(i) )
 *   prevHash(i)  = chain(i-1)  (genesis for i = 0)
 *   signature(i) = Ed25519( "fedbridge/v1/audit-entry" || 0x00 || u64be(i) || prevHash(i) || entry(i) )
 *
 * `verifyAuditChain` checks the exact stored bytes: index continuity, each prevHash, each
 * signature, and that each entry is the canonical encoding of itself. The chain head (chain of the
 * newest entry) is what parties will countersign in receipts (issue 6).
 */
import { canonicalize } from 'json-canonicalize';
import { ed25519Sign, ed25519Verify } from '../../shared/crypto/sign';
import { AUDIT_GENESIS, auditChainHash, auditSigningMessage } from '../../shared/audit/chain';
import type { AuditRow, AuditSealer } from '../storage/repository';

// The construction lives in shared/audit/chain.ts (the auditor's verifier uses the same code).
export { AUDIT_GENESIS, auditChainHash, auditSigningMessage };

/** An AuditSealer holding the coordinator's secret key (never logged). */
export function coordinatorSealer(secretKey: Uint8Array): AuditSealer {
  return {
    genesis: AUDIT_GENESIS,
    chainHash: auditChainHash,
    seal: (idx, prevHash, entry) => ed25519Sign(auditSigningMessage(idx, prevHash, entry), secretKey),
  };
}

export interface AuditFailure {
  entry: number;
  field: string;
  expected: string;
  found: string;
}

/** Checks a sequence of stored rows from index 0; returns the failures (empty = valid) and the head. */
export function verifyAuditChain(rows: AuditRow[], coordinatorPublicKey: Uint8Array): { failures: AuditFailure[]; head: Uint8Array } {
  const failures: AuditFailure[] = [];
  let prev: Uint8Array = AUDIT_GENESIS;
  rows.forEach((r, i) => {
    if (r.idx !== i) failures.push({ entry: i, field: 'idx', expected: String(i), found: String(r.idx) });
    if (Buffer.compare(Buffer.from(r.prevHash), Buffer.from(prev)) !== 0) {
      failures.push({ entry: i, field: 'prevHash', expected: Buffer.from(prev).toString('hex'), found: Buffer.from(r.prevHash).toString('hex') });
    }
    if (!ed25519Verify(r.signature, auditSigningMessage(r.idx, r.prevHash, r.entry), coordinatorPublicKey)) {
      failures.push({ entry: i, field: 'signature', expected: 'valid coordinator signature', found: 'invalid' });
    }
    let canonical = '';
    try {
      canonical = canonicalize(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(r.entry)));
    } catch {
      canonical = '(not JSON)';
    }
    if (canonical !== new TextDecoder().decode(r.entry)) failures.push({ entry: i, field: 'entry', expected: 'canonical JSON (RFC 8785)', found: 'non-canonical bytes' });
    prev = auditChainHash(r.idx, r.prevHash, r.entry);
  });
  return { failures, head: prev };
}
