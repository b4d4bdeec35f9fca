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
import { AUDIT_GENESIS, auditChainHash, auditSigningMessage, type AuditRecord } from '../../shared/audit/chain';
import type { AuditEntryInput } from '../../shared/audit/entries';
import { AuditRecorder } from '../../shared/audit/recorder';
import { AuditWriter } from '../../shared/audit/writer';
import { policyHash, type Policy } from '../../shared/policy/schema';
import type { AuditRow, AuditSealer, Repository } from '../storage/repository';

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

/**
 * The coordinator's one audit writer (issue 6). Every entry the coordinator appends goes through
 * it: round and run events through an AuditRecorder (shared/audit/recorder.ts: round bookkeeping,
 * epsilon per party, Merkle roots), enrolments, tokens and receipts through the same chain.
 *
 * Consistency with storage: `write(fn)` runs one repository transaction at a time; the records are
 * produced inside the transaction by an `AuditEmitter` (storage/repository.ts) and inserted there,
 * so they commit or roll back with the state change they record. If the transaction fails, the
 * in-memory chain may have advanced past what was stored, so it is rebuilt from storage (resync).
 * At start-up the writer resumes from the stored log; the recorder is rebuilt with
 * `AuditRecorder.replayWriter(policy, writer)` when a run's policy is first used.
 */
export class CoordinatorAudit {
  private writer: AuditWriter;
  private rec: AuditRecorder | null = null;
  private policy: Policy | null = null;
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly repo: Repository,
    private readonly secretKey: Uint8Array,
    private readonly clock: () => number,
  ) {
    this.writer = new AuditWriter(secretKey);
  }

  static async open(repo: Repository, secretKey: Uint8Array, clock: () => number = Date.now): Promise<CoordinatorAudit> {
    const a = new CoordinatorAudit(repo, secretKey, clock);
    await a.resync();
    return a;
  }

  private async storedRecords(): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    for (;;) {
      const page = await this.repo.auditEntries(out.length, 10_000);
      for (const r of page) out.push({ idx: r.idx, prevHash: r.prevHash, entry: r.entry, signature: r.signature });
      if (page.length < 10_000) return out;
    }
  }

  /** Rebuilds the writer (and the recorder, when a policy is in use) from the stored log. */
  async resync(): Promise<void> {
    const records = await this.storedRecords();
    this.writer = AuditWriter.resume(this.secretKey, records);
    if (this.policy) this.rec = AuditRecorder.replayWriter(this.policy, this.writer, this.clock);
  }

  /** The recorder for `policy` (replayed from the log the first time a policy is used). */
  recorderFor(policy: Policy): AuditRecorder {
    if (this.rec && this.policy && policyHash(this.policy) === policyHash(policy)) return this.rec;
    this.policy = policy;
    this.rec = AuditRecorder.replayWriter(policy, this.writer, this.clock);
    return this.rec;
  }

  /** Appends a plain entry (enrolment, token) to the chain; call inside `write`. */
  append(input: AuditEntryInput): AuditRecord {
    return this.writer.append(input, this.clock());
  }

  /** Runs one storage transaction that appends audit records, exclusively; resyncs on failure. */
  write<T>(fn: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      try {
        return await fn();
      } catch (e) {
        await this.resync();
        throw e;
      }
    };
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Chain head (index and hash of the newest entry). */
  head(): { idx: number; hash: Uint8Array } {
    return this.writer.head();
  }

  /** The stored records, in order (what the audit API exports). */
  records(): readonly AuditRecord[] {
    return this.writer.written();
  }

  /** Chain hash of entry `idx`, or null when there is no such entry. */
  chainHashAt(idx: number): Uint8Array | null {
    const r = this.writer.written()[idx];
    return r && r.idx === idx ? auditChainHash(r.idx, r.prevHash, r.entry) : null;
  }
}
