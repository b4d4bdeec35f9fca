/**
 * AuditRecorder: the coordinator-side bookkeeping that turns round events into audit entries
 * exactly as verifyLog expects them (pure; the caller persists each returned record in the same
 * transaction as the state change it records). It keeps the open round's first index (for the
 * Merkle root), which parties were charged (masked input accepted), and every party's charged
 * rounds, so the epsilon it logs is the accountant's lifetime value (accounting.ts). A recorder
 * resumed after a restart must be rebuilt from the stored log with `AuditRecorder.replay`.
 */
import type { Policy } from '../policy/schema';
import { policyHash as computePolicyHash } from '../policy/schema';
import { RdpLedger, expectedRoundParams } from './accounting';
import { parseExportLine, splitLines, type AuditRecord } from './chain';
import { checkEntry, type AuditEntry, type EntryOf, type Phase, type Receipt, type RoundParams } from './entries';
import { AuditWriter } from './writer';
import { MAX_LOGGED_TEXT, toFreeText } from '../util/text';

type Rec = AuditRecord & { value: AuditEntry };
type PhaseFields = Omit<EntryOf<'round-phase'>, 'type' | 'idx' | 'at' | 'runId' | 'round' | 'policyHash' | 'phase' | 'parties'>;

/** The round a recorder has open: its first entry's index (Merkle root), who was charged, its base model. */
export interface OpenRound {
  runId: string;
  round: number;
  from: number;
  charged: string[];
  base: number;
}

/**
 * What a recorder carries over from the log, whatever the policy in use: every party's charges
 * (each round charged with the parameters its round-started entry logged, so runs of several
 * policies compose) and the round still open. Built entry by entry (`absorb`, in log order), so a
 * coordinator can rebuild it from its stored log page by page, and a recorder for another policy
 * reuses it instead of replaying the log again.
 */
export class RecorderState {
  readonly ledger: RdpLedger;
  round: OpenRound | null = null;
  private params: RoundParams | null = null;

  constructor(ledger: RdpLedger = new RdpLedger()) {
    this.ledger = ledger;
  }

  /** An independent copy (restored when the transaction that changed this state fails). */
  clone(): RecorderState {
    const c = new RecorderState(this.ledger.clone());
    c.round = this.round ? { ...this.round, charged: [...this.round.charged] } : null;
    c.params = this.params;
    return c;
  }

  /** Takes one logged entry into account; only round-started, round-phase (mask), round-completed and round-aborted change anything. */
  absorb(e: AuditEntry): void {
    if (e.type === 'round-started') {
      this.round = { runId: e.runId, round: e.round, from: e.idx, charged: [], base: e.baseModelVersion };
      this.params = e.params;
    }
    if (e.type === 'round-phase' && e.phase === 'mask' && this.round && this.params) {
      for (const party of e.parties) this.ledger.charge(party, this.params);
      this.round.charged = [...e.parties];
    }
    if (e.type === 'round-completed' || e.type === 'round-aborted') this.round = null;
  }
}

export class AuditRecorder {
  readonly policyHash: string;
  readonly params: RoundParams;

  constructor(
    readonly policy: Policy,
    readonly writer: AuditWriter,
    private readonly clock: () => number = () => Date.now(),
    /** the charges and open round so far (a restarted coordinator's, rebuilt from its log) */
    readonly state: RecorderState = new RecorderState(),
  ) {
    this.policyHash = computePolicyHash(policy);
    this.params = expectedRoundParams(policy);
  }

  private get round(): OpenRound | null {
    return this.state.round;
  }

  private set round(r: OpenRound | null) {
    this.state.round = r;
  }

  private get ledger(): RdpLedger {
    return this.state.ledger;
  }

  private add(e: Parameters<AuditWriter['append']>[0]): Rec {
    return this.writer.append(e, this.clock());
  }

  registerPolicy(signatures: { party: string; publicKey: string; signature: string }[]): Rec {
    return this.add({ type: 'policy-registered', policyHash: this.policyHash, signatures });
  }

  startRun(runId: string, initialModelVersion: number, initialModelHash: string): Rec {
    return this.add({ type: 'run-started', runId, policyHash: this.policyHash, roundsPlanned: this.policy.training.rounds, initialModelVersion, initialModelHash });
  }

  startRound(a: { runId: string; round: number; secaggRound: number; baseModelVersion: number; parties: string[] }): Rec {
    if (this.round) throw new RangeError(`round ${this.round.round} of ${this.round.runId} is still open`);
    const rec = this.add({ type: 'round-started', runId: a.runId, round: a.round, policyHash: this.policyHash, secaggRound: a.secaggRound, baseModelVersion: a.baseModelVersion, parties: a.parties, params: this.params });
    this.round = { runId: a.runId, round: a.round, from: rec.idx, charged: [], base: a.baseModelVersion };
    return rec;
  }

  private open(): NonNullable<AuditRecorder['round']> {
    if (!this.round) throw new RangeError('no round is open (startRound first)');
    return this.round;
  }

  /** A closed phase: who was accepted, with the phase's signed evidence (advertisements, masked inputs, survivor signatures). */
  phase(phase: Phase, parties: string[], fields: PhaseFields = {}): Rec {
    const r = this.open();
    const rec = this.add({ type: 'round-phase', runId: r.runId, round: r.round, policyHash: this.policyHash, phase, parties, ...fields });
    if (phase === 'mask') {
      for (const p of parties) this.ledger.charge(p, this.params);
      r.charged = [...parties];
    }
    return rec;
  }

  private epsilonOfCharged(charged: string[]): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of charged) out[p] = this.ledger.epsilon(p, this.policy.privacy.delta);
    return out;
  }

  completeRound(a: { survivors: string[]; aggregateHash: string; serverViewHash?: string; modelVersion: number; modelHash: string }): Rec {
    const r = this.open();
    const rec = this.add({
      type: 'round-completed',
      runId: r.runId,
      round: r.round,
      policyHash: this.policyHash,
      survivors: a.survivors,
      aggregateHash: a.aggregateHash,
      ...(a.serverViewHash !== undefined ? { serverViewHash: a.serverViewHash } : {}),
      modelVersion: a.modelVersion,
      parentModelVersion: r.base,
      modelHash: a.modelHash,
      params: this.params,
      epsilon: this.epsilonOfCharged(r.charged),
      merkle: this.writer.merkleSince(r.from),
    });
    this.round = null;
    return rec;
  }

  abortRound(reason: string, phase: Phase | null): Rec {
    const r = this.open();
    const rec = this.add({
      type: 'round-aborted',
      runId: r.runId,
      round: r.round,
      policyHash: this.policyHash,
      phase,
      reason: toFreeText(reason, MAX_LOGGED_TEXT),
      baseModelVersion: r.base,
      epsilon: this.epsilonOfCharged(r.charged),
      merkle: this.writer.merkleSince(r.from),
    });
    this.round = null;
    return rec;
  }

  receipt(receipt: Receipt): Rec {
    return this.add({ type: 'receipt', receipt });
  }

  completeRun(runId: string, finalModelVersion: number): Rec {
    return this.add({ type: 'run-completed', runId, policyHash: this.policyHash, finalModelVersion });
  }

  abortRun(runId: string, reason: string): Rec {
    if (this.round) this.abortRound(reason, null);
    return this.add({ type: 'run-aborted', runId, policyHash: this.policyHash, reason: toFreeText(reason, MAX_LOGGED_TEXT) });
  }

  /**
   * Rebuilds a recorder (writer head, charges, open round) from the whole stored log, for a
   * coordinator that restarts: the next entry continues the same chain.
   */
  static replay(policy: Policy, coordinatorSecretKey: Uint8Array, exported: Uint8Array, clock?: () => number): AuditRecorder {
    const parsed = splitLines(exported).lines.map((line) => {
      const p = parseExportLine(line);
      if (!p.ok) throw new RangeError(`stored audit log line is invalid: ${p.field}: ${p.found}`);
      return p;
    });
    return AuditRecorder.replayParsed(policy, AuditWriter.resume(coordinatorSecretKey, parsed.map((p) => p.record)), (k) => parsed[k].entry, clock);
  }

  /**
   * The same from a writer already resumed over the stored records (coordinator/audit/log.ts, at
   * start-up and after a resync): it continues that writer. No exported text of the whole log is
   * built (`replay` needs one string of every line, which grows with the log towards the engine's
   * string limit), and the chain is not hashed a second time.
   */
  static replayWriter(policy: Policy, writer: AuditWriter, clock?: () => number): AuditRecorder {
    const records = writer.written();
    const decoder = new TextDecoder('utf-8', { fatal: true });
    return AuditRecorder.replayParsed(policy, writer, (k) => {
      let v: unknown;
      try {
        v = JSON.parse(decoder.decode(records[k].entry));
      } catch {
        throw new RangeError(`stored audit entry ${records[k].idx} is not UTF-8 JSON`);
      }
      // only these entries change what is replayed; others are not validated here (as in `replay`,
      // an entry that fails the schema is skipped)
      return typeof v === 'object' && v !== null && REPLAYED.has(String((v as { type?: unknown }).type)) ? v : null;
    }, clock);
  }

  private static replayParsed(policy: Policy, writer: AuditWriter, entryAt: (k: number) => unknown, clock?: () => number): AuditRecorder {
    const rec = new AuditRecorder(policy, writer, clock);
    const n = writer.written().length;
    for (let k = 0; k < n; k++) {
      const e = replayedEntry(entryAt(k));
      if (e) rec.state.absorb(e);
    }
    return rec;
  }
}

const REPLAYED = new Set(['round-started', 'round-phase', 'round-completed', 'round-aborted']);

/**
 * A stored entry's value as RecorderState.absorb takes it, or null for one that changes nothing
 * there (another type, or one that fails the schema: skipped, as verifyLog reports those).
 */
export function replayedEntry(v: unknown): AuditEntry | null {
  if (typeof v !== 'object' || v === null || !REPLAYED.has(String((v as { type?: unknown }).type))) return null;
  const c = checkEntry(v);
  return c.ok ? c.entry : null;
}
