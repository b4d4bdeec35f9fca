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
import { AuditRecorder, RecorderState, replayedEntry } from '../../shared/audit/recorder';
import { AuditWriter } from '../../shared/audit/writer';
import { policyHash, type Policy } from '../../shared/policy/schema';
import { ConflictError, type AuditRow, type AuditSealer, type Repository } from '../storage/repository';

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
 * in-memory chain and charges go back to before it; a ConflictError (the stored chain is not the
 * one this writer continues) rebuilds them from storage (resync).
 *
 * Memory does not grow with the log. What is held:
 *   - the chain head (index and hash of the newest entry);
 *   - the records since the open round's round-started entry (none between rounds): the round's
 *     Merkle root covers them (AuditWriter.merkleSince); older ones are forgotten after each write;
 *   - the recorder's RecorderState: per party, the accountant's RDP totals at its fixed orders
 *     (grows with parties, not rounds), and the open round (its parties).
 * At start-up and after a ConflictError the stored log is read page by page (10,000 rows):
 * the chain is recomputed, not trusted (a gap or a prevHash that does not continue it throws),
 * each round entry is absorbed into a fresh RecorderState, and only the open round's records are
 * kept. A recorder for another policy reuses that state (each round is charged with the parameters
 * its round-started entry logged), so a policy change does not read the log again. What needs an
 * older entry (a receipt's round and chain head) reads it from storage.
 */
export class CoordinatorAudit {
  private writer: AuditWriter;
  private state = new RecorderState();
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

  /** Rebuilds the chain head, the open round's records and the recorder state from the stored log, page by page. */
  async resync(): Promise<void> {
    const state = new RecorderState();
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let head: Uint8Array = AUDIT_GENESIS;
    let next = 0;
    let open: AuditRecord[] = []; // the records since the open round's round-started
    for (;;) {
      const page = await this.repo.auditEntries(next, PAGE);
      for (const r of page) {
        if (r.idx !== next) throw new RangeError(`stored audit records are not contiguous at index ${r.idx} (expected ${next})`);
        if (Buffer.compare(Buffer.from(r.prevHash), Buffer.from(head)) !== 0) throw new RangeError(`stored audit record ${r.idx} does not chain to the one before`);
        head = auditChainHash(r.idx, r.prevHash, r.entry);
        next++;
        let v: unknown;
        try {
          v = JSON.parse(decoder.decode(r.entry));
        } catch {
          throw new RangeError(`stored audit entry ${r.idx} is not UTF-8 JSON`);
        }
        const e = replayedEntry(v);
        if (e) state.absorb(e);
        const rec = { idx: r.idx, prevHash: r.prevHash, entry: r.entry, signature: r.signature };
        if (!state.round) open = [];
        else if (state.round.from === r.idx) open = [rec];
        else open.push(rec);
      }
      if (page.length < PAGE) break;
    }
    this.writer = open.length ? AuditWriter.resume(this.secretKey, open) : new AuditWriter(this.secretKey, { nextIdx: next, head });
    this.state = state;
    this.rec = this.policy ? new AuditRecorder(this.policy, this.writer, this.clock, this.state) : null;
  }

  /** The recorder for `policy` (sharing the state rebuilt from the log; no replay). */
  recorderFor(policy: Policy): AuditRecorder {
    if (this.rec && this.policy && policyHash(this.policy) === policyHash(policy)) return this.rec;
    this.policy = policy;
    this.rec = new AuditRecorder(policy, this.writer, this.clock, this.state);
    return this.rec;
  }

  /** Appends a plain entry (enrolment, token) to the chain; call inside `write`. */
  append(input: AuditEntryInput): AuditRecord {
    return this.writer.append(input, this.clock());
  }

  /**
   * Runs one storage transaction that appends audit records, exclusively. On failure the writer and
   * the recorder state go back to where they were before it (a ConflictError: storage moved on, so
   * they are rebuilt from it). After a success, records before the open round's first one are
   * forgotten (storage has them).
   */
  write<T>(fn: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      let out: T;
      const mark = this.writer.mark();
      const saved = this.state.clone();
      try {
        out = await fn();
      } catch (e) {
        if (e instanceof ConflictError) {
          // storage may hold what this writer does not (another process, a commit whose answer was
          // lost): read it
          await this.resync();
        } else {
          // the transaction rolled back: forget what it appended and charged, without reading the
          // log (the store may be the thing that failed). Had it committed after all, the next
          // insert would not continue the stored chain: a ConflictError, then a resync.
          this.writer.rollback(mark);
          this.state = saved;
          this.rec = this.policy ? new AuditRecorder(this.policy, this.writer, this.clock, this.state) : null;
        }
        throw e;
      }
      this.writer.forgetBefore(this.state.round ? this.state.round.from : this.writer.head().idx + 1);
      return out;
    };
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Chain head (index and hash of the newest entry). */
  head(): { idx: number; hash: Uint8Array } {
    return this.writer.head();
  }

  /** How many records are held in memory (tests: bounded by the open round, not by the log). */
  heldRecords(): number {
    return this.writer.written().length;
  }

  /** Chain hash of stored entry `idx` (read from storage), or null when there is no such entry. */
  async chainHashAt(idx: number): Promise<Uint8Array | null> {
    const head = this.writer.head();
    if (idx === head.idx) return head.hash;
    if (!Number.isSafeInteger(idx) || idx < 0 || idx > head.idx) return null;
    const [r] = await this.repo.auditEntries(idx, 1);
    return r && r.idx === idx ? auditChainHash(r.idx, r.prevHash, r.entry) : null;
  }

  /**
   * Visits the stored entries from the newest back (newest first, read from storage a page at a
   * time) until `visit` returns true; an exception from `visit` ends the scan and is thrown.
   */
  async scanBack(visit: (idx: number, entry: Uint8Array) => boolean): Promise<void> {
    let end = this.writer.head().idx + 1;
    while (end > 0) {
      const from = Math.max(0, end - BACK_PAGE);
      const page = await this.repo.auditEntries(from, end - from);
      for (let k = page.length - 1; k >= 0; k--) if (visit(page[k].idx, page[k].entry)) return;
      end = from;
    }
  }
}

/** Rows per storage read when the log is rebuilt. */
const PAGE = 10_000;
/** Rows per storage read when scanning back from the head (receipts look at the newest entries). */
const BACK_PAGE = 256;
