/**
 * Round orchestration: the one place that owns the open run, the open round and its phase, the
 * phase deadlines, and what gets stored and pushed when a phase closes. What a round computes is
 * decided by a RoundProtocol (protocol.ts) — the secure-aggregation server state machine behind an
 * adapter; this service only drives it from outside.
 *
 * Round lifecycle (the `state` column of `rounds`: open -> completed | aborted; `phase` while open):
 *
 *   open/advertise -> open/share -> open/mask -> open/consistency -> open/unmask -> completed
 *   any open phase -> aborted  (deadline with too few parties, operator abort, restart)
 *
 * Every phase move goes through `transitionTo(from[], to)`, which refuses an illegal move and logs
 * `A -> B`; the stored row moves by compare-and-set (repository.setRoundPhase).
 * A phase closes when every expected party has sent (early) or when its deadline passes; parties
 * that did not send are dropped (metrics: dropouts). An aborted round is retried from the same
 * model as the next round number, up to `maxConsecutiveAborts`, then the run is aborted.
 * A restarted coordinator cannot resume a round in flight (the protocol's secrets lived in memory):
 * `recover()` aborts it cleanly with a reason and retries from the same model. What must survive
 * the restart does: a masked input is acknowledged only after its audit evidence is stored
 * (acceptMaskedInput), and recover() logs those inputs (charging their parties) before the abort.
 *
 * All mutations are serialized through one async lock, so a deadline and the last message of a
 * phase cannot both close it. A rejected message (wrong run/round/phase, not expected, protocol
 * error) throws before anything is stored or counted. A masked input sent again byte-identical
 * while its round is open (its acknowledgement was lost) gets the same acknowledgement and changes
 * nothing (checkMaskedUpload / submitMaskedInput).
 */
import { randomBytes } from 'node:crypto';
import { EventKind, Phase, type RoundStatus, type RunStatus } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { parsePolicyYaml, canonicalPolicyJson, policyHash, PolicyError, type Policy } from '../../shared/policy/schema';
import { layoutSize, sharedParameterLayout } from '../../shared/model/layout';
import { sodium } from '../../shared/crypto/sodium';
import { alreadyExists, clientText, failedPrecondition, invalid, permissionDenied, StatusError, status } from '../grpc/errors';
import type { CoordinatorMetrics } from '../http/metrics';
import { checkPolicyAcceptance } from '../policy/signatures';
import { ConflictError, modelBytesHash, type AuditSealer, type MaskedInputRow, type Repository, type RunRow } from '../storage/repository';
import type { EventHub } from './events';
import type { AuditRecord } from '../../shared/audit/chain';
import { maskedInputSchema, type Phase as AuditPhase } from '../../shared/audit/entries';
import type { CoordinatorAudit } from '../audit/log';
import type { MaskedInputEvidence, PhaseEvidence, StagedMessage } from './protocol';
import { ROUND_PHASES, type OutgoingPayload, type ProtocolStep, type RoundPhase, type RoundProtocol, type RoundProtocolFactory } from './protocol';

/** A phase that closed: who was accepted, with their signed messages (for its round-phase audit entry). */
export interface ClosedPhase {
  phase: AuditPhase;
  parties: string[];
  evidence: PhaseEvidence;
}

/** The protocol's evidence for the phase collecting now; none when it has no signed messages. */
function phaseEvidence(p: RoundProtocol): PhaseEvidence {
  return p.evidence ? p.evidence() : {};
}

const PHASES: readonly AuditPhase[] = ['advertise', 'share', 'mask', 'consistency', 'unmask'];

/**
 * The `mask` phase as a restarted coordinator finds it stored (repository.storeMaskedInput): the
 * parties sorted, and their evidence items sorted by party, exactly as the protocol's `evidence()`
 * would have given them at the phase close. None when no input was stored. A protocol without
 * signed evidence stored none (null): the entry then carries parties only, as it would have.
 * A stored item that is not a valid maskedInputs item of its party (a damaged store) is left out
 * and named in `invalid`; its party is still listed, so still charged (the auditor's verifier then
 * reports the missing evidence instead of the coordinator refusing to start).
 */
export function closedFromStored(rows: readonly MaskedInputRow[]): (ClosedPhase & { invalid: string[] }) | undefined {
  if (!rows.length) return undefined;
  const sorted = [...rows].sort((x, y) => (x.party < y.party ? -1 : x.party > y.party ? 1 : 0));
  const items: MaskedInputEvidence[] = [];
  const invalid: string[] = [];
  for (const r of sorted) {
    if (r.evidence === null) continue;
    const ok = maskedInputSchema.safeParse(r.evidence);
    if (ok.success && ok.data.party === r.party) items.push(ok.data);
    else invalid.push(r.party);
  }
  return { phase: 'mask', parties: sorted.map((r) => r.party), evidence: items.length || invalid.length ? { maskedInputs: items } : {}, invalid };
}

function sameBytes(x: Uint8Array, y: Uint8Array): boolean {
  return x.length === y.length && Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.length), Buffer.from(y.buffer, y.byteOffset, y.length)) === 0;
}

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export const PHASE_ENUM: Record<RoundPhase, Phase> = {
  advertise: Phase.PHASE_ADVERTISE_KEYS,
  share: Phase.PHASE_SHARE_KEYS,
  mask: Phase.PHASE_MASKED_INPUT,
  consistency: Phase.PHASE_CONSISTENCY_CHECK,
  unmask: Phase.PHASE_UNMASKING,
};

type Stage = RoundPhase | 'completed' | 'aborted';

/** Legal moves of a round (for transitionTo and its table test). */
export const LEGAL_MOVES: Record<Stage, readonly Stage[]> = {
  advertise: ['share', 'aborted'],
  share: ['mask', 'aborted'],
  mask: ['consistency', 'aborted'],
  consistency: ['unmask', 'aborted'],
  unmask: ['completed', 'aborted'],
  completed: [],
  aborted: [],
};

interface ActiveRound {
  runId: string;
  round: number;
  policy: Policy;
  policyHash: string;
  protocol: RoundProtocol;
  stage: Stage;
  expected: Set<string>;
  accepted: Set<string>;
  deadline: number;
  openedAt: number;
  timer: unknown;
  roster: string[];
  baseModelVersion: number;
  /**
   * BLAKE2b-256 of the whole payload of each masked input accepted in this round, by party (set
   * once its row committed; see submitMaskedInput). Lives as long as the round: gone when it
   * completes or aborts.
   */
  maskDigests: Map<string, Uint8Array>;
  /**
   * The other phases' messages accepted in this round: BLAKE2b-256 of the payload and the ack's
   * count, by `${phase}/${party}` (submitLocked: a byte-identical resend gets the same ack).
   */
  phaseDigests: Map<string, { digest: Uint8Array; accepted: number }>;
}

class Lock {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => undefined);
    return p;
  }
}

export interface RoundsDeps {
  repo: Repository;
  sealer: AuditSealer;
  /** the audit log writer (every round/run entry goes through its AuditRecorder, in the state change's transaction) */
  audit: CoordinatorAudit;
  events: EventHub;
  metrics: CoordinatorMetrics;
  factory: RoundProtocolFactory | null;
  federationId: string;
  coordinatorPublicKey: Uint8Array;
  timers?: Timers;
  maxConsecutiveAborts: number;
  log?: (line: string) => void;
}

export class RoundsService {
  private active: ActiveRound | null = null;
  private readonly lock = new Lock();
  private readonly timers: Timers;
  private readonly log: (line: string) => void;
  private consecutiveAborts = 0;
  private closed = false;

  constructor(private readonly d: RoundsDeps) {
    this.timers = d.timers ?? realTimers;
    this.log = d.log ?? (() => undefined);
  }

  // ---------------------------------------------------------------- state moves

  private transitionTo(a: ActiveRound, from: readonly Stage[], to: Stage): void {
    if (!from.includes(a.stage) || !LEGAL_MOVES[a.stage].includes(to)) {
      throw new StatusError(status.INTERNAL, `illegal round transition ${a.stage} -> ${to} (round ${a.runId}/${a.round})`);
    }
    this.log(`round ${a.runId}/${a.round}: ${a.stage} -> ${to}`);
    a.stage = to;
  }

  private phaseDeadline(policy: Policy): number {
    return this.timers.now() + Math.round(policy.timeouts.phaseSeconds * 1000);
  }

  private arm(a: ActiveRound): void {
    if (a.timer !== undefined) this.timers.clearTimeout(a.timer);
    const key = `${a.runId}/${a.round}/${a.stage}`;
    a.timer = this.timers.setTimeout(() => {
      void this.lock.run(() => this.closeIfCurrent(key, 'deadline')).catch((e) => this.log(`closing phase failed: ${(e as Error).stack}`));
    }, Math.max(0, a.deadline - this.timers.now()));
  }

  private announce(a: ActiveRound, phase: RoundPhase, parties: string[], messages: OutgoingPayload[]): void {
    const byParty = new Map<string, Uint8Array>();
    for (const m of messages) byParty.set(m.to, m.payload);
    for (const p of a.roster) {
      if (!parties.includes(p) && !byParty.has(p)) continue;
      const payload = byParty.get(p) ?? new Uint8Array(0);
      this.d.events.publish(p, {
        kind: EventKind.EVENT_KIND_PHASE_STARTED,
        runId: a.runId,
        round: a.round,
        phase: PHASE_ENUM[phase],
        deadlineMs: String(a.deadline),
        parties,
        modelVersion: a.baseModelVersion,
        abortReason: '',
        payload,
      });
      this.d.metrics.bytesSent.inc({ kind: `phase-${phase}` }, payload.length);
    }
  }

  private broadcast(roster: string[], fields: { kind: EventKind; runId: string; round: number; modelVersion?: number; abortReason?: string; audit?: { auditHead: Uint8Array; auditHeadIdx: string; modelHash: Uint8Array } }): void {
    for (const p of roster) {
      this.d.events.publish(p, {
        kind: fields.kind,
        runId: fields.runId,
        round: fields.round,
        phase: Phase.PHASE_UNSPECIFIED,
        deadlineMs: '0',
        parties: [],
        modelVersion: fields.modelVersion ?? 0,
        abortReason: fields.abortReason ?? '',
        payload: new Uint8Array(0),
        ...fields.audit,
      });
    }
  }

  /** Creates the protocol for a stored open round and announces its first phase. */
  private async openRound(run: RunRow, policy: Policy, roundNo: number, baseModelVersion: number): Promise<void> {
    if (!this.d.factory) throw failedPrecondition('no round protocol is configured in this coordinator');
    const base = await this.d.repo.modelVersion(baseModelVersion);
    if (!base) throw new StatusError(status.INTERNAL, `base model version ${baseModelVersion} is missing`);
    const roster = policy.parties.map((p) => p.name);
    const { protocol, first } = this.d.factory.create({
      federationId: this.d.federationId,
      runId: run.id,
      round: roundNo,
      policy,
      policyHash: run.policyHash,
      parties: roster,
      baseModel: { version: base.version, bytes: base.bytes, state: base.protocolState },
    });
    const row = await this.d.repo.roundRow(run.id, roundNo);
    const deadline = row?.phaseDeadline ?? this.phaseDeadline(policy);
    if (row && row.phase !== first.phase) {
      await this.d.repo.setRoundPhase(run.id, roundNo, { state: row.state, phase: row.phase }, { state: 'open', phase: first.phase, phaseDeadline: deadline });
    }
    const a: ActiveRound = {
      runId: run.id,
      round: roundNo,
      policy,
      policyHash: run.policyHash,
      protocol,
      stage: first.phase,
      expected: new Set(first.parties),
      accepted: new Set(),
      deadline,
      openedAt: this.timers.now(),
      timer: undefined,
      roster,
      baseModelVersion,
      maskDigests: new Map(),
      phaseDigests: new Map(),
    };
    this.active = a;
    this.d.events.clearLatest();
    this.announce(a, first.phase, first.parties, first.messages);
    this.arm(a);
  }

  /**
   * Opens a stored round; if the protocol refuses to start it (e.g. parameters it cannot run), or
   * its base model version is damaged in the store (StoredDataDamaged: its bytes or protocol state
   * do not match their stored hashes, so no round is built on them), the round and the run are
   * aborted cleanly with the reason instead of staying open forever.
   * Returns the reason, or null when the round opened.
   */
  private async openRoundOrAbort(run: RunRow, policy: Policy, roundNo: number, baseModelVersion: number): Promise<string | null> {
    try {
      await this.openRound(run, policy, roundNo, baseModelVersion);
      return null;
    } catch (e) {
      const reason = (e as Error).message;
      this.log(`round ${run.id}/${roundNo} cannot start: ${reason}`);
      this.active = null;
      const why = `round could not start: ${reason}`;
      const sealer = this.abortEmitter(policy, run.id, { reason: why, phase: null, roster: policy.parties.map((p) => p.name) });
      await this.d.audit.write(() => this.d.repo.abortRound({ runId: run.id, round: roundNo, reason: why, retry: null, abortRun: true, sealer }));
      this.broadcast(policy.parties.map((p) => p.name), { kind: EventKind.EVENT_KIND_RUN_FINISHED, runId: run.id, round: roundNo, abortReason: `round could not start: ${reason}` });
      return reason;
    }
  }

  private async closeIfCurrent(key: string, why: 'deadline' | 'complete'): Promise<void> {
    const a = this.active;
    if (!a || this.closed || `${a.runId}/${a.round}/${a.stage}` !== key) return; // stale timer or already closed
    await this.closePhase(a, why);
  }

  private async closePhase(a: ActiveRound, why: 'deadline' | 'complete'): Promise<void> {
    if (a.timer !== undefined) this.timers.clearTimeout(a.timer);
    a.timer = undefined;
    const phase = a.stage as RoundPhase;
    this.d.metrics.phaseDuration.observe({ phase }, (this.timers.now() - a.openedAt) / 1000);
    const dropped = [...a.expected].filter((p) => !a.accepted.has(p));
    if (dropped.length) this.d.metrics.dropouts.inc({ phase }, dropped.length);
    this.log(`round ${a.runId}/${a.round}: phase ${phase} closed (${why}); ${a.accepted.size} sent, dropped: ${dropped.join(', ') || 'none'}`);
    // what the phase's audit entry records: the accepted parties and their signed messages
    const closed: ClosedPhase = { phase, parties: [...a.accepted].sort(), evidence: phaseEvidence(a.protocol) };
    let step: ProtocolStep;
    try {
      step = a.protocol.closePhase();
    } catch (e) {
      step = { kind: 'aborted', reason: `protocol error closing phase ${phase}: ${(e as Error).message}` };
    }
    if (step.kind === 'next') {
      if (!ROUND_PHASES.includes(step.phase)) step = { kind: 'aborted', reason: `protocol asked for unknown phase "${String(step.phase)}"` };
    }
    if (step.kind === 'next') {
      const deadline = this.phaseDeadline(a.policy);
      const to = { state: 'open', phase: step.phase, phaseDeadline: deadline };
      const emit = () => [this.d.audit.recorderFor(a.policy).phase(closed.phase, closed.parties, closed.evidence)];
      try {
        await this.d.audit.write(() => this.d.repo.setRoundPhase(a.runId, a.round, { state: 'open', phase }, to, { emit }));
      } catch (e) {
        return this.abortAfterStorageError(a, closed, e);
      }
      this.transitionTo(a, [phase], step.phase);
      a.expected = new Set(step.parties);
      a.accepted = new Set();
      a.deadline = deadline;
      a.openedAt = this.timers.now();
      this.announce(a, step.phase, step.parties, step.messages);
      this.arm(a);
      return;
    }
    if (step.kind === 'done') {
      const completed = await this.d.repo.completedRounds(a.runId);
      const more = completed + 1 < a.policy.training.rounds;
      const hash = sodium().crypto_generichash(32, step.model, null);
      const sealer = this.completeEmitter(a, closed, step, hash);
      let res: Awaited<ReturnType<typeof this.d.repo.completeRound>>;
      try {
        res = await this.d.audit.write(() => this.d.repo.completeRound({
          runId: a.runId,
          round: a.round,
          model: { bytes: step.model, hash, protocolState: step.state ?? null },
          aggregate: step.aggregate,
          serverView: step.serverView,
          audit: { ...step.audit, policyHash: a.policyHash, survivors: step.survivors },
          next: more ? { state: 'open', phase: 'advertise', phaseDeadline: this.phaseDeadline(a.policy) } : null,
          sealer,
        }));
      } catch (e) {
        return this.abortAfterStorageError(a, closed, e);
      }
      this.transitionTo(a, ['unmask'], 'completed');
      this.consecutiveAborts = 0;
      this.d.metrics.rounds.inc({ outcome: 'completed' });
      this.active = null;
      const head = this.d.audit.head();
      const audit = { auditHead: head.hash, auditHeadIdx: String(head.idx), modelHash: hash };
      this.broadcast(a.roster, { kind: EventKind.EVENT_KIND_ROUND_COMPLETED, runId: a.runId, round: a.round, modelVersion: res.modelVersion, audit });
      if (res.nextRound !== null) {
        const run = await this.d.repo.run(a.runId);
        await this.openRoundOrAbort(run!, a.policy, res.nextRound, res.modelVersion);
      } else {
        this.broadcast(a.roster, { kind: EventKind.EVENT_KIND_RUN_FINISHED, runId: a.runId, round: a.round, modelVersion: res.modelVersion });
      }
      return;
    }
    await this.abortActive(a, step.reason, false, closed);
  }

  /** Audit records of a completed round: its last phase, round-completed, then run-completed or the next round-started. */
  private completeEmitter(a: ActiveRound, closed: ClosedPhase, step: Extract<ProtocolStep, { kind: 'done' }>, modelHash: Uint8Array) {
    // a protocol that does not expose its aggregate (the test-only plain-sum protocol) logs the new model's hash there
    const given = step.audit.aggregateHash;
    const aggregateHash = typeof given === 'string' && /^[0-9a-f]{64}$/.test(given) ? given : Buffer.from(modelHash).toString('hex');
    // the view's bytes pinned in the signed log (as stored with server_view_hash): an auditor's
    // export fetches it once, and the replay names a file that is not it
    const serverViewHash = step.serverView ? Buffer.from(modelBytesHash(step.serverView)).toString('hex') : undefined;
    return {
      emit: ({ modelVersion, nextRound }: { modelVersion: number; nextRound: number | null }): AuditRecord[] => {
        const rec = this.d.audit.recorderFor(a.policy); // resolved inside the write (the recorder may have been rebuilt)
        const out: AuditRecord[] = [rec.phase(closed.phase, closed.parties, closed.evidence)];
        out.push(rec.completeRound({ survivors: [...step.survivors].sort(), aggregateHash, serverViewHash, modelVersion, modelHash: Buffer.from(modelHash).toString('hex') }));
        if (nextRound === null) out.push(rec.completeRun(a.runId, modelVersion));
        else out.push(rec.startRound({ runId: a.runId, round: nextRound, secaggRound: nextRound, baseModelVersion: modelVersion, parties: a.roster }));
        return out;
      },
    };
  }

  /**
   * Audit records of an aborted round: the phase that closed (if it did), round-aborted, then the
   * retry's round-started or run-aborted. A log without the round's round-started (written before
   * the audit module) gets no round-aborted.
   */
  private abortEmitter(policy: Policy, runId: string, o: { reason: string; phase: AuditPhase | null; closed?: ClosedPhase; roster: string[] }) {
    return {
      emit: ({ baseModelVersion, nextRound }: { baseModelVersion: number; nextRound: number | null }): AuditRecord[] => {
        const rec = this.d.audit.recorderFor(policy);
        const out: AuditRecord[] = [];
        if (o.closed) out.push(rec.phase(o.closed.phase, o.closed.parties, o.closed.evidence));
        try {
          out.push(rec.abortRound(o.reason, o.phase));
        } catch (e) {
          if (!(e instanceof RangeError && e.message.startsWith('no round is open'))) throw e;
        }
        if (nextRound !== null) out.push(rec.startRound({ runId, round: nextRound, secaggRound: nextRound, baseModelVersion, parties: o.roster }));
        else out.push(rec.abortRun(runId, o.reason));
        return out;
      },
    };
  }

  private runAbortEmitter(policy: Policy, runId: string, reason: string) {
    return { emit: (): AuditRecord[] => [this.d.audit.recorderFor(policy).abortRun(runId, reason)] };
  }

  /**
   * The store refused the commit that closes a phase (or completes the round). The protocol has
   * already moved past that phase in memory, so the round cannot go on: it is aborted, with the
   * closed phase logged (a masked input accepted in it stays charged) and retried from the same
   * model. If the abort cannot be stored either, it is tried again after one phase timeout (the
   * round takes no message meanwhile: `active` is in the closed phase's stage, the protocol is
   * not); a restart aborts and retries it the same way (recover()).
   */
  private async abortAfterStorageError(a: ActiveRound, closed: ClosedPhase, e: unknown): Promise<void> {
    const reason = `coordinator storage failed closing phase ${closed.phase}: ${(e as Error).message}`;
    this.log(`round ${a.runId}/${a.round}: ${reason}; aborting the round`);
    try {
      await this.abortActive(a, reason, false, closed);
    } catch (e2) {
      if (this.active !== a || this.closed) return;
      const delay = Math.round(a.policy.timeouts.phaseSeconds * 1000);
      this.log(`round ${a.runId}/${a.round}: the abort could not be stored either (${(e2 as Error).message}); trying again in ${delay} ms`);
      a.timer = this.timers.setTimeout(() => {
        void this.lock.run(() => (this.active === a && !this.closed ? this.abortAfterStorageError(a, closed, e2) : Promise.resolve())).catch((e3) => this.log(`aborting the round failed: ${(e3 as Error).stack}`));
      }, delay);
    }
  }

  private async abortActive(a: ActiveRound, reason: string, abortRun: boolean, closed?: ClosedPhase): Promise<void> {
    if (a.timer !== undefined) this.timers.clearTimeout(a.timer);
    a.timer = undefined;
    try {
      a.protocol.abort(reason);
    } catch {
      /* already finished inside the protocol */
    }
    // counted once the abort is stored: a retry of the same abort (abortAfterStorageError) is not another aborted round
    const aborts = this.consecutiveAborts + 1;
    const giveUp = abortRun || aborts >= this.d.maxConsecutiveAborts;
    const runReason = abortRun ? reason : giveUp ? `${reason} (${aborts} consecutive aborted rounds)` : reason;
    const sealer = this.abortEmitter(a.policy, a.runId, { reason: runReason, phase: closed ? closed.phase : (a.stage as AuditPhase), closed, roster: a.roster });
    const res = await this.d.audit.write(() => this.d.repo.abortRound({
      runId: a.runId,
      round: a.round,
      reason: runReason,
      retry: giveUp ? null : { state: 'open', phase: 'advertise', phaseDeadline: this.phaseDeadline(a.policy) },
      abortRun: giveUp,
      sealer,
    }));
    this.consecutiveAborts = aborts;
    this.transitionTo(a, [a.stage], 'aborted');
    this.d.metrics.rounds.inc({ outcome: 'aborted' });
    this.active = null;
    this.broadcast(a.roster, { kind: EventKind.EVENT_KIND_ROUND_ABORTED, runId: a.runId, round: a.round, abortReason: runReason, modelVersion: a.baseModelVersion });
    if (res.nextRound !== null) {
      const run = await this.d.repo.run(a.runId);
      await this.openRoundOrAbort(run!, a.policy, res.nextRound, a.baseModelVersion);
    } else {
      this.broadcast(a.roster, { kind: EventKind.EVENT_KIND_RUN_FINISHED, runId: a.runId, round: a.round, abortReason: runReason });
    }
  }

  // ---------------------------------------------------------------- start-up

  /**
   * At start-up: a run left `running` by a previous process has its open round aborted
   * ("coordinator restarted") and retried from the same model, or is aborted when no protocol is
   * configured. Nothing stored is lost or duplicated: completed rounds and their model versions stay.
   *
   * Privacy charges: if the round was open in phase `mask`, the masked inputs accepted before the
   * restart (stored rows, acceptMaskedInput) are first logged as the `mask` round-phase entry, so
   * the recorder charges exactly those parties and round-aborted lists their epsilon; all in the
   * abort's one transaction, which also deletes the rows. No row: as before. A round found in a
   * later phase already has its mask entry: it was written in the same transaction that moved the
   * stored phase off `mask` (and deleted the rows), so a crash between the phase closing in memory
   * and that commit leaves phase `mask` with the rows, and this path logs them.
   */
  async recover(): Promise<void> {
    await this.lock.run(async () => {
      const run = await this.d.repo.runningRun();
      if (!run) return;
      const policy = await this.loadPolicy(run.policyHash);
      const round = await this.d.repo.latestRound(run.id);
      const reason = round?.state === 'open' ? `coordinator restarted during round ${round.round} (phase ${round.phase}); its in-memory protocol state is gone` : 'coordinator restarted';
      if (!round || round.state !== 'open') {
        await this.d.audit.write(() => this.d.repo.abortRunOnly(run.id, reason, this.runAbortEmitter(policy, run.id, reason)));
        return;
      }
      const giveUp = !this.d.factory;
      const why = giveUp ? `${reason}; no round protocol configured` : reason;
      const phase = (PHASES as readonly string[]).includes(round.phase ?? '') ? (round.phase as AuditPhase) : null;
      // masked inputs accepted (and acknowledged) before the restart: logged as the mask phase, so they are charged
      const closed = round.phase === 'mask' ? closedFromStored(await this.d.repo.maskedInputs(run.id, round.round)) : undefined;
      if (closed) this.log(`recovering run ${run.id}: round ${round.round} had accepted the masked inputs of ${closed.parties.join(', ')}; logging them (charged) before the abort${closed.invalid.length ? `; the stored evidence of ${closed.invalid.join(', ')} is damaged and left out` : ''}`);
      const sealer = this.abortEmitter(policy, run.id, { reason: why, phase, closed, roster: policy.parties.map((p) => p.name) });
      const res = await this.d.audit.write(() => this.d.repo.abortRound({
        runId: run.id,
        round: round.round,
        reason: why,
        retry: giveUp ? null : { state: 'open', phase: 'advertise', phaseDeadline: this.phaseDeadline(policy) },
        abortRun: giveUp,
        sealer,
      }));
      this.log(`recovered run ${run.id}: ${reason}`);
      if (res.nextRound !== null) await this.openRoundOrAbort(run, policy, res.nextRound, round.baseModelVersion);
    });
  }

  private async loadPolicy(hash: string): Promise<Policy> {
    const p = await this.d.repo.policy(hash);
    if (!p) throw new StatusError(status.INTERNAL, `policy ${hash} of a stored run is missing`);
    const { validatePolicy } = await import('../../shared/policy/schema');
    return validatePolicy(JSON.parse(p.canonicalJson));
  }

  // ---------------------------------------------------------------- operator

  async startRun(req: { policyYaml: string; signatures: { party: string; signature: Uint8Array }[]; initialModel: Uint8Array }): Promise<RunStatus> {
    return this.lock.run(async () => {
      if (this.closed) throw failedPrecondition('coordinator is shutting down');
      if (!this.d.factory) throw failedPrecondition('no round protocol is configured in this coordinator (see coordinator/rounds/protocol.ts)');
      let policy: Policy;
      try {
        policy = parsePolicyYaml(req.policyYaml);
      } catch (e) {
        if (e instanceof PolicyError) throw invalid(e.message);
        throw e;
      }
      const hash = policyHash(policy);
      const accepted = checkPolicyAcceptance({
        policy,
        policyHash: hash,
        federationId: this.d.federationId,
        coordinatorPublicKey: this.d.coordinatorPublicKey,
        enrolled: await this.d.repo.listParticipants(),
        signatures: req.signatures,
      });
      const dim = layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
      let model = req.initialModel;
      if (model.length === 0) model = new Uint8Array(dim * 4);
      if (model.length !== dim * 4) throw invalid(`initial_model must be ${dim} float32 values (${dim * 4} bytes) for this policy's model, got ${model.length} bytes`);
      const running = await this.d.repo.runningRun();
      if (running) throw failedPrecondition(`run ${running.id} is still running; abort it first`);
      const runId = `run-${new Date(this.timers.now()).toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}-${randomBytes(3).toString('hex')}`;
      const sealer = this.startEmitter(policy, runId, accepted, sodium().crypto_generichash(32, model, null));
      const started = await this.d.audit.write(() => this.d.repo.startRun({
        runId,
        policyHash: hash,
        canonicalPolicyJson: canonicalPolicyJson(policy),
        signatures: accepted,
        roundsPlanned: policy.training.rounds,
        initialModel: { bytes: model, hash: sodium().crypto_generichash(32, model, null) },
        firstRound: { state: 'open', phase: 'advertise', phaseDeadline: this.phaseDeadline(policy) },
        sealer,
      }));
      this.consecutiveAborts = 0;
      const err = await this.openRoundOrAbort(started.run, policy, 1, started.modelVersion);
      if (err) throw failedPrecondition(`run ${started.run.id} was aborted: the round protocol refused to start round 1: ${err}`);
      return this.statusOf(started.run.id);
    });
  }

  /** Audit records of a new run: policy-registered (first use of the policy), run-started, round 1's round-started. */
  private startEmitter(policy: Policy, runId: string, signatures: { party: string; publicKey: Uint8Array; signature: Uint8Array }[], initialModelHash: Uint8Array) {
    const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
    const recorder = () => this.d.audit.recorderFor(policy);
    return {
      emit: ({ newPolicy, modelVersion }: { newPolicy: boolean; modelVersion: number }): AuditRecord[] => [
        ...(newPolicy ? [recorder().registerPolicy(signatures.map((s) => ({ party: s.party, publicKey: b64(s.publicKey), signature: b64(s.signature) })))] : []),
        recorder().startRun(runId, modelVersion, Buffer.from(initialModelHash).toString('hex')),
        recorder().startRound({ runId, round: 1, secaggRound: 1, baseModelVersion: modelVersion, parties: policy.parties.map((p) => p.name) }),
      ],
    };
  }

  async abortRun(runId: string, reason: string): Promise<RunStatus> {
    return this.lock.run(async () => {
      const run = runId ? await this.d.repo.run(runId) : await this.d.repo.runningRun();
      if (!run) throw new StatusError(status.NOT_FOUND, runId ? `no run "${clientText(runId)}"` : 'no run is running');
      if (run.state !== 'running') throw failedPrecondition(`run ${run.id} is already ${run.state}`);
      const why = `operator: ${reason || 'aborted'}`;
      const a = this.active;
      // the phase in progress is logged with the messages accepted so far (a masked input already
      // received is charged), then the round and the run are aborted
      if (a && a.runId === run.id) await this.abortActive(a, why, true, { phase: a.stage as AuditPhase, parties: [...a.accepted].sort(), evidence: phaseEvidence(a.protocol) });
      else {
        const sealer = this.runAbortEmitter(await this.loadPolicy(run.policyHash), run.id, why);
        await this.d.audit.write(() => this.d.repo.abortRunOnly(run.id, why, sealer));
      }
      return this.statusOf(run.id);
    });
  }

  async status(runId: string): Promise<RunStatus> {
    const run = runId ? await this.d.repo.run(runId) : await this.d.repo.latestRun();
    if (!run) throw new StatusError(status.NOT_FOUND, runId ? `no run "${clientText(runId)}"` : 'no run has been started');
    return this.statusOf(run.id);
  }

  private async statusOf(runId: string): Promise<RunStatus> {
    const run = (await this.d.repo.run(runId))!;
    const r = await this.d.repo.latestRound(runId);
    const latest = await this.d.repo.latestModelVersionNumber(); // the number only: no bytes read
    const a = this.active && this.active.runId === runId ? this.active : null;
    const current: RoundStatus | undefined = r
      ? {
          round: r.round,
          state: r.state,
          phase: r.phase ?? '',
          deadlineMs: String(r.phaseDeadline ?? 0),
          abortReason: r.abortReason ?? '',
          parties: a && a.round === r.round ? [...a.expected] : [],
          modelVersion: r.resultModelVersion ?? r.baseModelVersion,
        }
      : undefined;
    return {
      runId: run.id,
      state: run.state,
      policyHash: run.policyHash,
      roundsPlanned: run.roundsPlanned,
      roundsCompleted: await this.d.repo.completedRounds(runId),
      currentRound: current,
      latestModelVersion: latest,
      abortReason: run.abortReason ?? '',
    };
  }

  // ---------------------------------------------------------------- party messages

  /** The open round's binding, or null. */
  binding(): { runId: string; round: number; phase: Stage; expected: string[]; deadline: number } | null {
    const a = this.active;
    return a ? { runId: a.runId, round: a.round, phase: a.stage, expected: [...a.expected], deadline: a.deadline } : null;
  }

  /**
   * Throws unless a message from `party` bound to (runId, round, phase) is acceptable now:
   * FAILED_PRECONDITION for another run/round/phase or a second message, PERMISSION_DENIED for a
   * party not expected in this phase.
   */
  checkBinding(party: string, phase: RoundPhase, runId: string, round: number): void {
    const a = this.active;
    if (!a) throw failedPrecondition('no round is open');
    if (runId !== a.runId) throw failedPrecondition(`message is bound to run "${clientText(runId)}", the open run is "${a.runId}"`);
    if (round !== a.round) throw failedPrecondition(`message is bound to round ${round}, the open round is ${a.round}`);
    if (phase !== a.stage) throw failedPrecondition(`message is for phase ${phase}, round ${a.round} is in phase ${a.stage}`);
    if (!a.expected.has(party)) throw permissionDenied(`party "${party}" is not expected in phase ${phase} of round ${a.round}`);
    if (a.accepted.has(party)) throw failedPrecondition(`party "${party}" already sent its ${phase} message for round ${a.round}`);
  }

  /**
   * Hands one authenticated message to the protocol; closes the phase early when all have sent.
   * A masked input is made durable first (acceptMaskedInput): it is acknowledged only once its
   * evidence is stored; it goes through submitMaskedInput (an identical resend changes nothing).
   */
  async submit(party: string, phase: RoundPhase, runId: string, round: number, payload: Uint8Array): Promise<{ accepted: number }> {
    if (phase === 'mask') return this.submitMaskedInput(party, runId, round, payload, null);
    return this.lock.run(() => this.submitLocked(party, phase, runId, round, payload));
  }

  private async submitLocked(party: string, phase: RoundPhase, runId: string, round: number, payload: Uint8Array): Promise<{ accepted: number }> {
    // A node whose answer was lost (connection cut, a storage outage answered UNAVAILABLE after the
    // message went in) sends the same message again under a fresh header. The same bytes from the
    // same party for a phase of the open round that already took them: the same ack, nothing
    // changes (also once the round moved to a later phase). Other bytes: refused below as before.
    const open = this.active;
    const prior = phase !== 'mask' && open && open.runId === runId && open.round === round ? open.phaseDigests.get(`${phase}/${party}`) : undefined;
    if (prior && Buffer.from(prior.digest).equals(Buffer.from(sodium().crypto_generichash(32, payload, null)))) return { accepted: prior.accepted };
    this.checkBinding(party, phase, runId, round);
    const a = this.active!;
    const r = phase === 'mask' ? await this.acceptMaskedInput(a, party, payload) : a.protocol.receive(party, phase, payload);
    // the input committed: remember its digest, so that a resend of it is recognised (submitMaskedInput)
    if (phase === 'mask') a.maskDigests.set(party, sodium().crypto_generichash(32, payload, null));
    a.accepted.add(party);
    this.d.metrics.bytesReceived.inc({ kind: `phase-${phase}` }, payload.length);
    const accepted = a.accepted.size;
    if (phase !== 'mask') a.phaseDigests.set(`${phase}/${party}`, { digest: sodium().crypto_generichash(32, payload, null), accepted });
    if (r.complete) {
      const key = `${a.runId}/${a.round}/${a.stage}`;
      setImmediate(() => void this.lock.run(() => this.closeIfCurrent(key, 'complete')).catch((e) => this.log(`closing phase failed: ${(e as Error).stack}`)));
    }
    return { accepted };
  }

  // ---------------------------------------------------------------- idempotent masked-input upload

  /**
   * Idempotent masked-input upload (issue #5). A node whose acknowledgement was lost after the
   * coordinator committed its input (connection cut after the commit, a deadline, a proxy reset)
   * sends the same masked input again; it gets the same acknowledgement and NOTHING changes.
   *
   * Identity: a resend is identical when the BLAKE2b-256 of its WHOLE payload (every byte handed
   * to the protocol; for secure aggregation the complete masked-input message, its whole vector and
   * the party's signature inside it) equals the digest of the input accepted from the same party in
   * the same run and round. That digest is taken here over the payload handed to the protocol, once its row committed
   * (`ActiveRound.maskDigests`), and taken again over the resend's payload after the whole stream was
   * reassembled and verified; no header field or announced value alone decides. The stored evidence
   * (round_masked_inputs) cannot serve: its digest covers the vector only, it is null for a protocol
   * without signed evidence, and the rows are deleted when the phase leaves mask, which is exactly
   * when the last party's resend arrives (its input closed the phase early). The transport envelope
   * may differ: a resend under a freshly signed open (new nonce: participant-node's uploadWithRetry)
   * and a replay of the very same signed open (same nonce, reported by PartyAuthenticator with
   * `replay: 'report'`, `replayed` here) are both resends of the same input.
   *
   * Window: while that round is open, in phase mask or a later phase of the same round. When the
   * round completes or aborts the digests go with it, and a resend gets what it got before
   * (FAILED_PRECONDITION for a round that is not open, ALREADY_EXISTS for a replayed nonce). A
   * restarted coordinator aborts the round in flight (recover()), so memory is enough.
   *
   * For a party with an accepted input in the open round:
   *   identical payload  -> the first acknowledgement again (the caller builds the same UploadAck);
   *                         no row, no audit entry, no protocol call, the party not counted again
   *                         (accepted set, phase bytes); the caller counts its bytes apart
   *                         (bytes_received{kind="upload-resend"})
   *   different payload  -> ALREADY_EXISTS naming the party, run and round; nothing changes
   * For a party without one: a replayed nonce -> `replayed` (its ALREADY_EXISTS, as before); else the
   * ordinary path (checkBinding, then acceptMaskedInput).
   *
   * Checked twice: at the open (checkMaskedUpload: an announced hash that is not the accepted
   * input's is refused before any chunk is read, and so is a replayed nonce without an accepted
   * input unless the round is in phase mask and still expects the party: its first attempt may
   * still be committing), then decisively on the complete, verified payload (submitMaskedInput,
   * under the lock, so a resend racing its own first attempt is recognised whichever commits first;
   * a replayed open is never taken as a new input).
   */
  checkMaskedUpload(party: string, runId: string, round: number, announcedHash: Uint8Array, replayed: StatusError | null): 'resend' | 'new' {
    const a = this.active;
    const prior = this.acceptedDigest(party, runId, round);
    if (prior && a) {
      if (!sameBytes(prior, announcedHash)) throw this.differentInput(a, party);
      return 'resend';
    }
    if (replayed) {
      // its first attempt may still be committing: decided on the complete payload (submitMaskedInput)
      if (a && a.runId === runId && a.round === round && a.stage === 'mask' && a.expected.has(party)) return 'resend';
      throw replayed;
    }
    this.checkBinding(party, 'mask', runId, round);
    return 'new';
  }

  /**
   * The complete, verified masked-input payload of an upload (see checkMaskedUpload): an identical
   * resend is answered `resent: true` with nothing changed; anything else takes the ordinary path,
   * except an upload whose open was a replay (`replayed`), which is refused with that error.
   */
  async submitMaskedInput(party: string, runId: string, round: number, payload: Uint8Array, replayed: StatusError | null): Promise<{ accepted: number; resent: boolean }> {
    return this.lock.run(async () => {
      const a = this.active;
      const prior = this.acceptedDigest(party, runId, round);
      if (prior && a) {
        if (!sameBytes(prior, sodium().crypto_generichash(32, payload, null))) throw this.differentInput(a, party);
        this.log(`round ${a.runId}/${a.round}: the masked input of ${party} was sent again, byte-identical to the one accepted (its acknowledgement was lost?); acknowledged again, nothing changed`);
        return { accepted: a.maskDigests.size, resent: true };
      }
      if (replayed) throw replayed;
      return { ...(await this.submitLocked(party, 'mask', runId, round, payload)), resent: false };
    });
  }

  private acceptedDigest(party: string, runId: string, round: number): Uint8Array | undefined {
    const a = this.active;
    return a && a.runId === runId && a.round === round ? a.maskDigests.get(party) : undefined;
  }

  private differentInput(a: ActiveRound, party: string): StatusError {
    return alreadyExists(`party "${party}" already had a masked input accepted for round ${a.round} of run ${a.runId}; a different one is refused (one masked input per party and round)`);
  }

  /** The exact size the open round's protocol expects of `party`'s masked input (null: not known, or not the open round). */
  expectedMaskedInputBytes(party: string, runId: string, round: number): number | null {
    const a = this.active;
    return a && a.runId === runId && a.round === round ? (a.protocol.maskedInputBytes?.(party) ?? null) : null;
  }

  /**
   * A masked input, accepted durably (DESIGN §4: the party's budget is charged when its masked
   * input is sent, so the log must charge every input the coordinator acknowledged, even if the
   * coordinator restarts before the mask phase closes):
   *
   *   1. the protocol stages the message: transport checks and its `maskedInputs` evidence item,
   *      no state change (RoundProtocol.stage; a protocol without it stages with no evidence);
   *   2. ONE storage transaction: the round must be open in phase mask, the row (party, evidence)
   *      is inserted (primary key: one per party and round), then the protocol absorbs the message
   *      (`apply`), then commit; only after the commit is the message acknowledged.
   *
   * Outcomes: the protocol refuses the message -> its error, nothing stored; the insert fails ->
   * UNAVAILABLE ("send it again"), the protocol never saw it, nothing stored or counted; a second
   * input of the party never gets here (submitMaskedInput: the first acknowledgement again for a
   * byte-identical resend, ALREADY_EXISTS for a different one; checkBinding and the primary key
   * stay behind it as FAILED_PRECONDITION).
   * The one case that cannot be rolled back is a commit that fails AFTER the protocol absorbed the
   * input (the in-memory sum now contains it but the store does not): the round is aborted at once
   * with the mask phase's in-memory evidence, so the party is charged in the log, and the node gets
   * UNAVAILABLE. recover() completes the picture: rows still stored when a restarted coordinator
   * finds the round open in phase mask are logged as the mask round-phase entry before round-aborted.
   */
  private async acceptMaskedInput(a: ActiveRound, party: string, payload: Uint8Array): Promise<{ complete: boolean }> {
    const staged: StagedMessage = a.protocol.stage ? a.protocol.stage(party, 'mask', payload) : { evidence: null, apply: () => a.protocol.receive(party, 'mask', payload) };
    const st: { absorbed: boolean; refusal: { error: unknown } | null } = { absorbed: false, refusal: null };
    const apply = () => {
      try {
        const r = staged.apply();
        st.absorbed = true;
        return r;
      } catch (e) {
        st.refusal = { error: e };
        throw e;
      }
    };
    try {
      return await this.d.repo.storeMaskedInput({ runId: a.runId, round: a.round, party, evidence: staged.evidence }, apply);
    } catch (e) {
      if (st.refusal && st.refusal.error === e) throw e; // the protocol refused it; the row rolled back
      if (e instanceof ConflictError) throw e; // FAILED_PRECONDITION: a second input, or the round left its mask phase
      this.log(`round ${a.runId}/${a.round}: storing the masked input of ${party} failed: ${(e as Error)?.stack ?? String(e)}`);
      if (!st.absorbed) {
        throw new StatusError(status.UNAVAILABLE, `the coordinator could not store the masked input of "${party}" for round ${a.round}; it was not accepted and nothing changed: send it again`);
      }
      // the commit failed after the protocol absorbed the input: abort the round, charging the party
      a.accepted.add(party);
      const why = `the masked input of "${party}" could not be stored after the protocol accepted it`;
      try {
        await this.abortActive(a, why, false, { phase: 'mask', parties: [...a.accepted].sort(), evidence: phaseEvidence(a.protocol) });
      } catch (e2) {
        this.log(`round ${a.runId}/${a.round}: aborting after a failed masked-input commit failed too (recovered at the next start): ${(e2 as Error)?.message ?? String(e2)}`);
      }
      throw new StatusError(status.UNAVAILABLE, `the coordinator could not store the masked input of "${party}" for round ${a.round}; the round was aborted (it is retried from the same model)`);
    }
  }

  /** The first event of a Subscribe stream for `party`. */
  helloFor(party: string) {
    const remembered = this.d.events.latestFor(party);
    const a = this.active;
    if (remembered && a && remembered.runId === a.runId && remembered.round === a.round) {
      const { sequence: _s, federationId: _f, ...fields } = remembered;
      return fields;
    }
    return {
      kind: EventKind.EVENT_KIND_HELLO,
      runId: a?.runId ?? '',
      round: a?.round ?? 0,
      phase: a && a.stage in PHASE_ENUM ? PHASE_ENUM[a.stage as RoundPhase] : Phase.PHASE_UNSPECIFIED,
      deadlineMs: String(a?.deadline ?? 0),
      parties: a ? [...a.expected] : [],
      modelVersion: a?.baseModelVersion ?? 0,
      abortReason: '',
      payload: new Uint8Array(0),
    };
  }

  /** Stops timers; the open round (if any) stays stored as open and is recovered at next start. */
  async close(): Promise<void> {
    await this.lock.run(async () => {
      this.closed = true;
      if (this.active?.timer !== undefined) this.timers.clearTimeout(this.active.timer);
      this.active = null;
    });
  }
}
