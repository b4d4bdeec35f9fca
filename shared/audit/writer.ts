/**
 * Writing the log (pure, no I/O): the coordinator appends entries through an AuditWriter, which
 * validates each entry against the schema (entries.ts), adds `idx` and `at`, encodes it canonically,
 * and chains and signs it (chain.ts). Storage persists the returned record; `exportLine` gives its
 * exported form. The same writer builds the logs the tests verify.
 */
import { AUDIT_GENESIS, auditChainHash, canonicalEntryBytes, exportLine, signAuditEntry, type AuditRecord } from './chain';
import { checkEntry, type AuditEntry, type AuditEntryInput } from './entries';
import { merkleRoot } from './merkle';
import { toHex } from './bytes';

export class AuditWriter {
  private nextIdx: number;
  private prev: Uint8Array;
  private readonly records: AuditRecord[] = [];

  /** `resume`: continue after an existing chain (index of the next entry and the current head). */
  constructor(
    private readonly coordinatorSecretKey: Uint8Array,
    resume?: { nextIdx: number; head: Uint8Array },
  ) {
    this.nextIdx = resume?.nextIdx ?? 0;
    this.prev = resume?.head ?? AUDIT_GENESIS;
  }

  /**
   * A writer continuing after stored records (a contiguous tail of the chain, e.g. everything since
   * the open round started, or the whole log). Their chain is recomputed, not trusted: a gap or a
   * prevHash that does not match throws.
   */
  static resume(coordinatorSecretKey: Uint8Array, stored: readonly AuditRecord[]): AuditWriter {
    if (stored.length === 0) return new AuditWriter(coordinatorSecretKey);
    let head = stored[0].prevHash;
    stored.forEach((r, k) => {
      if (r.idx !== stored[0].idx + k) throw new RangeError(`stored audit records are not contiguous at index ${r.idx}`);
      if (k > 0 && r.prevHash.some((b, j) => b !== head[j])) throw new RangeError(`stored audit record ${r.idx} does not chain to the one before`);
      head = auditChainHash(r.idx, r.prevHash, r.entry);
    });
    const w = new AuditWriter(coordinatorSecretKey, { nextIdx: stored[stored.length - 1].idx + 1, head });
    // one push per record: push(...stored) passes every record as an argument and overflows the
    // stack past about 125,000 of them (a coordinator with a long log could not start)
    for (const r of stored) w.records.push(r);
    return w;
  }

  /** Validates, seals and returns the record of one entry; throws RangeError (nothing appended) if invalid. */
  append(input: AuditEntryInput, at: number): AuditRecord & { value: AuditEntry } {
    const obj = { ...input, idx: this.nextIdx, at };
    const c = checkEntry(obj);
    if (!c.ok) throw new RangeError(`invalid audit entry (${input.type}): ${c.issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`);
    return this.appendUnchecked(obj);
  }

  /** Seals an entry object as given (tests use it to write entries the schema would refuse). */
  appendUnchecked(obj: Record<string, unknown>): AuditRecord & { value: AuditEntry } {
    const idx = this.nextIdx;
    const entry = canonicalEntryBytes({ ...obj, idx });
    const prevHash = this.prev;
    const signature = signAuditEntry(idx, prevHash, entry, this.coordinatorSecretKey);
    const rec = { idx, prevHash, entry, signature };
    this.prev = auditChainHash(idx, prevHash, entry);
    this.nextIdx = idx + 1;
    this.records.push(rec);
    return { ...rec, value: { ...obj, idx } as AuditEntry };
  }

  /** The chain head (chain hash of the newest entry) and its index; genesis and -1 when empty. */
  head(): { idx: number; hash: Uint8Array } {
    return { idx: this.nextIdx - 1, hash: this.prev };
  }

  /** Merkle root over this writer's entries with idx in [from, nextIdx). */
  merkleSince(from: number): { from: number; count: number; root: string } {
    const first = this.records.length ? this.records[0].idx : this.nextIdx;
    if (from < first || from > this.nextIdx) throw new RangeError(`"from" expected an index this writer holds in [${first}, ${this.nextIdx}], got ${from}`);
    const entries = this.records.slice(from - first).map((r) => r.entry);
    return { from, count: entries.length, root: toHex(merkleRoot(entries)) };
  }

  /** The records this writer holds (in order): those it was resumed over and appended, less any forgotten. */
  written(): readonly AuditRecord[] {
    return this.records;
  }

  /** Where the writer is now: `rollback` returns to it (nothing may be forgotten in between). */
  mark(): { nextIdx: number; prev: Uint8Array; held: number } {
    return { nextIdx: this.nextIdx, prev: this.prev, held: this.records.length };
  }

  /** Forgets every record appended since `m` (their transaction failed): the head is `m`'s again. */
  rollback(m: { nextIdx: number; prev: Uint8Array; held: number }): void {
    if (this.records.length < m.held || this.nextIdx < m.nextIdx) throw new RangeError('rollback past records forgotten since the mark');
    this.records.length = m.held;
    this.nextIdx = m.nextIdx;
    this.prev = m.prev;
  }

  /**
   * Drops the records with idx < `idx` (storage keeps them): a long-running writer needs only those
   * since the open round's first entry, for its Merkle root (`merkleSince`). The head stays.
   */
  forgetBefore(idx: number): void {
    let k = 0;
    while (k < this.records.length && this.records[k].idx < idx) k++;
    if (k > 0) this.records.splice(0, k);
  }

  /** The exported log (JSON Lines) of this writer's records. */
  exportText(): string {
    return this.records.map(exportLine).join('');
  }
}
