/**
 * The coordinator's one repository over SqlDriver (SQLite or PostgreSQL): participants, policies and
 * their party signatures, runs, rounds, model versions, the append-only audit log, tokens.
 *
 * Invariants enforced here (and by the schema's unique constraints, so a second process or a retry
 * after a crash cannot break them either):
 * - a model version and the audit entry that records it are written in one transaction;
 * - a round produces at most one model version (UNIQUE(run_id, round)); versions are dense 1, 2, ...;
 * - audit entries are only ever inserted, with index = previous index + 1 (PRIMARY KEY idx);
 * - a model version's bytes (and its protocol state) are checked against their stored hashes on
 *   every read (modelVersion, latestModelVersion): damaged bytes are never handed out or built on
 *   (StoredDataDamaged);
 * - a completed round's aggregate (the unmasked sum, migration 6) is stored with its hash in the
 *   transaction that completes the round, and checked against it on every read (roundAggregate);
 *   so is its server view (migration 7, when the policy sets audit.auditorServerView: roundServerView);
 * - a masked input is stored (round_masked_inputs, one row per party and round) in the transaction
 *   that accepts it, and its rows are deleted in the transaction that writes the round's `mask`
 *   round-phase entry (phase move off mask, round abort, round completion): rows exist for a round
 *   exactly while its accepted masked inputs are in no audit entry yet.
 */
import type { SqlDriver, SqlExecutor, SqlValue } from './sql';
import { UniqueViolation } from './sql';
import { AUDIT_GENESIS, auditChainHash, type AuditRecord } from '../../shared/audit/chain';
import { sodium } from '../../shared/crypto/sodium';

export interface ParticipantRow {
  name: string;
  publicKey: Uint8Array;
  certSha256: string | null;
  enrolledAt: number;
}

export type RunState = 'running' | 'completed' | 'aborted';

export interface RunRow {
  id: string;
  policyHash: string;
  state: RunState;
  roundsPlanned: number;
  createdAt: number;
  finishedAt: number | null;
  abortReason: string | null;
}

export interface RoundRow {
  runId: string;
  round: number;
  state: string;
  phase: string | null;
  phaseDeadline: number | null;
  baseModelVersion: number;
  resultModelVersion: number | null;
  startedAt: number;
  finishedAt: number | null;
  abortReason: string | null;
}

export interface ModelVersionRow {
  version: number;
  hash: Uint8Array;
  bytes: Uint8Array;
  /** the round protocol's state after producing this version (e.g. FedAdam moments), or null */
  protocolState: Uint8Array | null;
  parent: number | null;
  runId: string | null;
  round: number | null;
  createdAt: number;
}

export interface AuditRow {
  idx: number;
  prevHash: Uint8Array;
  entry: Uint8Array;
  signature: Uint8Array;
  createdAt: number;
}

export interface TokenRow {
  id: string;
  role: string;
  tokenHash: Uint8Array;
  label: string;
  createdAt: number;
  revokedAt: number | null;
  /** null: never expires */
  expiresAt: number | null;
}

/**
 * A masked input the coordinator accepted while its round's mask phase is open (table
 * round_masked_inputs): the party and the evidence the phase's `mask` round-phase entry will carry
 * for it, exactly as `maskedInputs` holds it (null for a protocol without signed evidence).
 */
export interface MaskedInputRow {
  runId: string;
  round: number;
  party: string;
  evidence: Record<string, unknown> | null;
  receivedAt: number;
}

/** Signs an audit entry given its index and the previous chain hash (coordinator/audit/log.ts). */
export interface AuditSealer {
  /** Returns the signature to store for (idx, prevHash, entry). */
  seal(idx: number, prevHash: Uint8Array, entry: Uint8Array): Uint8Array;
  /** The chain hash after (idx, prevHash, entry): the next entry's prevHash. */
  chainHash(idx: number, prevHash: Uint8Array, entry: Uint8Array): Uint8Array;
  readonly genesis: Uint8Array;
}

/**
 * The audit path of the coordinator (coordinator/audit/log.ts CoordinatorAudit): instead of the
 * repository building an entry from fields, `emit` is called INSIDE the transaction with what only
 * the transaction knows (new model version, next round) and returns the sealed records (shared/audit
 * AuditRecorder); the repository inserts exactly those bytes after checking that they continue the
 * stored chain (index and prevHash), so the records and the state change commit or roll back together.
 */
export interface AuditEmitter<I = void> {
  emit(info: I): readonly AuditRecord[];
}

function isEmitter<I>(s: AuditSealer | AuditEmitter<I> | undefined): s is AuditEmitter<I> {
  return !!s && typeof (s as AuditEmitter<I>).emit === 'function';
}

/**
 * Stored bytes that do not match their stored hash (a damaged disk, a bad restore, an edited
 * database): the row is refused, never returned. The gRPC layer answers DATA_LOSS with this message.
 */
export class StoredDataDamaged extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoredDataDamaged';
  }
}

/** The hash of model bytes and of protocol state (BLAKE2b-256, as the coordinator's modelHash). */
export function modelBytesHash(bytes: Uint8Array): Uint8Array {
  return sodium().crypto_generichash(32, bytes, null);
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

/**
 * The row-lock clause for a SELECT inside a transaction: PostgreSQL locks the rows read until
 * commit; SQLite needs none (its transactions are serialized: BEGIN IMMEDIATE behind one mutex).
 */
const rowLock = (tx: SqlExecutor, mode: 'UPDATE' | 'SHARE'): string => (tx.dialect === 'postgres' ? ` FOR ${mode}` : '');

const u8 = (v: unknown): Uint8Array => (v instanceof Uint8Array ? new Uint8Array(v) : new Uint8Array(0));
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

function participant(r: Record<string, unknown>): ParticipantRow {
  return { name: String(r.name), publicKey: u8(r.public_key), certSha256: strOrNull(r.cert_sha256), enrolledAt: Number(r.enrolled_at) };
}
function run(r: Record<string, unknown>): RunRow {
  return {
    id: String(r.id),
    policyHash: String(r.policy_hash),
    state: String(r.state) as RunState,
    roundsPlanned: Number(r.rounds_planned),
    createdAt: Number(r.created_at),
    finishedAt: numOrNull(r.finished_at),
    abortReason: strOrNull(r.abort_reason),
  };
}
function round(r: Record<string, unknown>): RoundRow {
  return {
    runId: String(r.run_id),
    round: Number(r.round),
    state: String(r.state),
    phase: strOrNull(r.phase),
    phaseDeadline: numOrNull(r.phase_deadline),
    baseModelVersion: Number(r.base_model_version),
    resultModelVersion: numOrNull(r.result_model_version),
    startedAt: Number(r.started_at),
    finishedAt: numOrNull(r.finished_at),
    abortReason: strOrNull(r.abort_reason),
  };
}
/**
 * A model_versions row, its bytes checked against the stored hash and its protocol state against
 * protocol_state_hash (rows written before migration 5 have no state hash: their state is not
 * checked). StoredDataDamaged on a mismatch.
 */
function model(r: Record<string, unknown>): ModelVersionRow {
  const m: ModelVersionRow = {
    version: Number(r.version),
    hash: u8(r.hash),
    bytes: u8(r.bytes),
    protocolState: r.protocol_state === null || r.protocol_state === undefined ? null : u8(r.protocol_state),
    parent: numOrNull(r.parent),
    runId: strOrNull(r.run_id),
    round: numOrNull(r.round),
    createdAt: Number(r.created_at),
  };
  const restore = 'restore the store from a backup (nothing was sent or built on it)';
  if (!sameBytes(modelBytesHash(m.bytes), m.hash)) {
    throw new StoredDataDamaged(`model version ${m.version} is damaged in the coordinator's store: the hash of its ${m.bytes.length} stored bytes is not its stored hash ${hex(m.hash)}; ${restore}`);
  }
  const stateHash = r.protocol_state_hash === null || r.protocol_state_hash === undefined ? null : u8(r.protocol_state_hash);
  if (stateHash !== null && (m.protocolState === null || !sameBytes(modelBytesHash(m.protocolState), stateHash))) {
    throw new StoredDataDamaged(`the round-protocol state (optimizer moments) of model version ${m.version} is damaged in the coordinator's store: it does not match its stored hash; ${restore}`);
  }
  return m;
}
/**
 * A blob of a rounds row stored with its hash (aggregate / aggregate_hash, migration 6; server_view /
 * server_view_hash, migration 7), checked against it (written together: one without the other, or a
 * mismatch, is StoredDataDamaged); null when the row has neither.
 */
function roundBlobOf(r: Record<string, unknown>, column: 'aggregate' | 'server_view', label: string): Uint8Array | null {
  const raw = r[column];
  const rawHash = r[`${column}_hash`];
  const bytes = raw === null || raw === undefined ? null : u8(raw);
  const stored = rawHash === null || rawHash === undefined ? null : u8(rawHash);
  if (bytes === null && stored === null) return null;
  if (bytes === null || stored === null || !sameBytes(modelBytesHash(bytes), stored)) {
    const what = bytes === null ? `its ${label} is missing but its hash is stored` : stored === null ? `its ${label} has no stored hash` : `the hash of its ${bytes.length} stored ${label} bytes is not its stored hash ${hex(stored)}`;
    throw new StoredDataDamaged(`the ${label} of round ${String(r.run_id)}/${String(r.round)} is damaged in the coordinator's store: ${what}; restore the store from a backup (nothing was sent)`);
  }
  return bytes;
}
function maskedInput(r: Record<string, unknown>): MaskedInputRow {
  let evidence: Record<string, unknown> | null = null;
  if (r.evidence !== null && r.evidence !== undefined) {
    // a damaged value is returned as such (the caller validates the item): reading never throws
    let v: unknown;
    try {
      v = JSON.parse(String(r.evidence));
    } catch {
      v = String(r.evidence);
    }
    evidence = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : { invalid: v };
  }
  return { runId: String(r.run_id), round: Number(r.round), party: String(r.party), evidence, receivedAt: Number(r.received_at) };
}
function audit(r: Record<string, unknown>): AuditRow {
  return { idx: Number(r.idx), prevHash: u8(r.prev_hash), entry: u8(r.entry), signature: u8(r.signature), createdAt: Number(r.created_at) };
}
function token(r: Record<string, unknown>): TokenRow {
  return { id: String(r.id), role: String(r.role), tokenHash: u8(r.token_hash), label: String(r.label), createdAt: Number(r.created_at), revokedAt: numOrNull(r.revoked_at), expiresAt: numOrNull(r.expires_at) };
}

export class Repository {
  constructor(
    readonly db: SqlDriver,
    private readonly now: () => number = Date.now,
  ) {}

  // ------------------------------------------------------------ participants

  /** Enrols a party; ConflictError if the name or the key is already enrolled. */
  async enrollParticipant(p: { name: string; publicKey: Uint8Array; certSha256?: string | null }, sealer?: AuditSealer | AuditEmitter<ParticipantRow>): Promise<ParticipantRow> {
    const row: ParticipantRow = { name: p.name, publicKey: p.publicKey, certSha256: p.certSha256 || null, enrolledAt: this.now() };
    try {
      await this.db.transaction(async (tx) => {
        await tx.query('INSERT INTO participants (name, public_key, cert_sha256, enrolled_at) VALUES (?, ?, ?, ?)', [row.name, row.publicKey, row.certSha256, row.enrolledAt]);
        if (isEmitter(sealer)) await this.insertAuditRecords(tx, sealer.emit(row));
        else if (sealer) {
          await this.appendAudit(tx, sealer, ({ type: 'participant-enrolled', name: row.name, publicKey: Buffer.from(row.publicKey).toString('base64'), certSha256: row.certSha256 }));
        }
      });
    } catch (e) {
      if (e instanceof UniqueViolation) throw new ConflictError(`a participant with name "${p.name}" or this public key is already enrolled`);
      throw e;
    }
    return row;
  }

  /**
   * Removes party `name` in ONE transaction with its audit entry (participant-removed with `reason`;
   * an emitter is called with the removed row). Refused while a run whose policy names the party is
   * running (the policy pins it); a party outside that policy (enrolled after the run started) may
   * go. The row is locked first (PostgreSQL: FOR UPDATE), so a run that is starting either sees
   * the party gone (startRun's own check) or is already running when the check below looks.
   */
  async removeParticipant(name: string, reason: string, sealer?: AuditSealer | AuditEmitter<ParticipantRow>): Promise<{ outcome: 'removed'; row: ParticipantRow } | { outcome: 'unknown' } | { outcome: 'running'; runId: string }> {
    return this.db.transaction(async (tx) => {
      const lock = rowLock(tx, 'UPDATE');
      const found = await tx.query(`SELECT * FROM participants WHERE name = ?${lock}`, [name]);
      if (!found.length) return { outcome: 'unknown' as const };
      // the policy's parties are the signers stored with it (startRun accepts a policy only signed by each)
      const running = await tx.query("SELECT r.id FROM runs r JOIN policy_signatures s ON s.policy_hash = r.policy_hash WHERE r.state = 'running' AND s.party = ?", [name]);
      if (running.length) return { outcome: 'running' as const, runId: String(running[0].id) };
      const row = participant(found[0]);
      await tx.query('DELETE FROM participants WHERE name = ?', [name]);
      if (isEmitter(sealer)) await this.insertAuditRecords(tx, sealer.emit(row));
      else if (sealer) await this.appendAudit(tx, sealer, { type: 'participant-removed', name, publicKey: Buffer.from(row.publicKey).toString('base64'), reason });
      return { outcome: 'removed' as const, row };
    });
  }

  async participantByName(name: string): Promise<ParticipantRow | null> {
    const rows = await this.db.query('SELECT * FROM participants WHERE name = ?', [name]);
    return rows.length ? participant(rows[0]) : null;
  }

  async participantByKey(publicKey: Uint8Array): Promise<ParticipantRow | null> {
    const rows = await this.db.query('SELECT * FROM participants WHERE public_key = ?', [publicKey]);
    return rows.length ? participant(rows[0]) : null;
  }

  async listParticipants(): Promise<ParticipantRow[]> {
    return (await this.db.query('SELECT * FROM participants ORDER BY name')).map(participant);
  }

  // ------------------------------------------------------------ policies

  async policy(hash: string): Promise<{ hash: string; canonicalJson: string; registeredAt: number } | null> {
    const rows = await this.db.query('SELECT * FROM policies WHERE hash = ?', [hash]);
    if (!rows.length) return null;
    return { hash: String(rows[0].hash), canonicalJson: String(rows[0].canonical_json), registeredAt: Number(rows[0].registered_at) };
  }

  async policySignatures(hash: string): Promise<{ party: string; publicKey: Uint8Array; signature: Uint8Array }[]> {
    const rows = await this.db.query('SELECT * FROM policy_signatures WHERE policy_hash = ? ORDER BY party', [hash]);
    return rows.map((r) => ({ party: String(r.party), publicKey: u8(r.public_key), signature: u8(r.signature) }));
  }

  // ------------------------------------------------------------ runs and rounds

  /**
   * Starts a run in one transaction: registers the policy and its signatures (if new), stores the
   * initial model version, creates the run and its round 1, and appends the audit entries.
   * ConflictError if another run is still running.
   */
  async startRun(args: {
    runId: string;
    policyHash: string;
    canonicalPolicyJson: string;
    signatures: { party: string; publicKey: Uint8Array; signature: Uint8Array }[];
    roundsPlanned: number;
    initialModel: { bytes: Uint8Array; hash: Uint8Array };
    firstRound: { state: string; phase: string | null; phaseDeadline: number | null };
    sealer: AuditSealer | AuditEmitter<{ newPolicy: boolean; modelVersion: number }>;
  }): Promise<{ run: RunRow; round: RoundRow; modelVersion: number }> {
    const t = this.now();
    return this.db.transaction(async (tx) => {
      // every signer is still enrolled with the key it signed with (a removal may have committed
      // since the caller checked the signatures; PostgreSQL: the rows are held until commit)
      const hold = rowLock(tx, 'SHARE');
      for (const s of args.signatures) {
        const p = await tx.query(`SELECT public_key FROM participants WHERE name = ?${hold}`, [s.party]);
        if (!p.length || Buffer.compare(Buffer.from(u8(p[0].public_key)), Buffer.from(s.publicKey)) !== 0) {
          throw new ConflictError(`party "${s.party}" was removed or enrolled again while the run was starting; check the policy and start the run again`);
        }
      }
      const running = await tx.query("SELECT id FROM runs WHERE state = 'running'");
      if (running.length) throw new ConflictError(`run ${String(running[0].id)} is still running; abort it first`);
      const existing = await tx.query('SELECT hash FROM policies WHERE hash = ?', [args.policyHash]);
      const sealer = args.sealer;
      if (!existing.length) {
        await tx.query('INSERT INTO policies (hash, canonical_json, registered_at) VALUES (?, ?, ?)', [args.policyHash, args.canonicalPolicyJson, t]);
        if (!isEmitter(sealer)) await this.appendAudit(tx, sealer, ({
          type: 'policy-registered',
          policyHash: args.policyHash,
          signatures: args.signatures.map((s) => ({ party: s.party, publicKey: b64(s.publicKey), signature: b64(s.signature) })),
        }));
      }
      for (const s of args.signatures) {
        const have = await tx.query('SELECT party FROM policy_signatures WHERE policy_hash = ? AND party = ?', [args.policyHash, s.party]);
        if (!have.length) {
          await tx.query('INSERT INTO policy_signatures (policy_hash, party, public_key, signature) VALUES (?, ?, ?, ?)', [args.policyHash, s.party, s.publicKey, s.signature]);
        }
      }
      await tx.query('INSERT INTO runs (id, policy_hash, state, rounds_planned, created_at) VALUES (?, ?, ?, ?, ?)', [args.runId, args.policyHash, 'running', args.roundsPlanned, t]);
      const modelVersion = await this.insertModel(tx, { bytes: args.initialModel.bytes, hash: args.initialModel.hash, parent: null, runId: null, round: null });
      if (isEmitter(sealer)) await this.insertAuditRecords(tx, sealer.emit({ newPolicy: !existing.length, modelVersion }));
      else await this.appendAudit(tx, sealer, ({ type: 'run-started', runId: args.runId, policyHash: args.policyHash, roundsPlanned: args.roundsPlanned, initialModelVersion: modelVersion, initialModelHash: hex(args.initialModel.hash) }));
      await tx.query('INSERT INTO rounds (run_id, round, state, phase, phase_deadline, base_model_version, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [
        args.runId, 1, args.firstRound.state, args.firstRound.phase, args.firstRound.phaseDeadline, modelVersion, t,
      ]);
      return {
        run: { id: args.runId, policyHash: args.policyHash, state: 'running', roundsPlanned: args.roundsPlanned, createdAt: t, finishedAt: null, abortReason: null },
        round: { runId: args.runId, round: 1, state: args.firstRound.state, phase: args.firstRound.phase, phaseDeadline: args.firstRound.phaseDeadline, baseModelVersion: modelVersion, resultModelVersion: null, startedAt: t, finishedAt: null, abortReason: null },
        modelVersion,
      };
    });
  }

  async run(id: string): Promise<RunRow | null> {
    const rows = await this.db.query('SELECT * FROM runs WHERE id = ?', [id]);
    return rows.length ? run(rows[0]) : null;
  }

  /** The run whose first round starts from model version `version` (a run's initial model), or null. */
  async runStartingFrom(version: number): Promise<string | null> {
    const rows = await this.db.query('SELECT run_id FROM rounds WHERE round = 1 AND base_model_version = ?', [version]);
    return rows.length ? String(rows[0].run_id) : null;
  }

  async latestRun(): Promise<RunRow | null> {
    const rows = await this.db.query('SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT 1');
    return rows.length ? run(rows[0]) : null;
  }

  async runningRun(): Promise<RunRow | null> {
    const rows = await this.db.query("SELECT * FROM runs WHERE state = 'running' ORDER BY created_at DESC LIMIT 1");
    return rows.length ? run(rows[0]) : null;
  }

  async roundRow(runId: string, r: number): Promise<RoundRow | null> {
    const rows = await this.db.query('SELECT * FROM rounds WHERE run_id = ? AND round = ?', [runId, r]);
    return rows.length ? round(rows[0]) : null;
  }

  async latestRound(runId: string): Promise<RoundRow | null> {
    const rows = await this.db.query('SELECT * FROM rounds WHERE run_id = ? ORDER BY round DESC LIMIT 1', [runId]);
    return rows.length ? round(rows[0]) : null;
  }

  /**
   * The stored aggregate (unmasked sum, u32 little-endian) of round `r` of run `runId`, checked
   * against its stored hash (StoredDataDamaged on a mismatch); null when there is no such round, it
   * is not completed, or it was completed without one (by a protocol that exposes none, or before
   * migration 6).
   */
  async roundAggregate(runId: string, r: number): Promise<Uint8Array | null> {
    return this.roundBlob(runId, r, 'aggregate', 'aggregate');
  }

  /**
   * The stored server view (shared/audit/server-view.ts) of round `r` of run `runId`, checked
   * against its stored hash; null when there is no such round, it is not completed, or it was
   * completed without one (its policy does not set audit.auditorServerView, or before migration 7).
   */
  async roundServerView(runId: string, r: number): Promise<Uint8Array | null> {
    return this.roundBlob(runId, r, 'server_view', 'server view');
  }

  private async roundBlob(runId: string, r: number, column: 'aggregate' | 'server_view', label: string): Promise<Uint8Array | null> {
    const rows = await this.db.query(`SELECT run_id, round, state, ${column}, ${column}_hash FROM rounds WHERE run_id = ? AND round = ?`, [runId, r]);
    if (!rows.length || rows[0].state !== 'completed') return null;
    return roundBlobOf(rows[0], column, label);
  }

  async completedRounds(runId: string): Promise<number> {
    const rows = await this.db.query("SELECT COUNT(*) AS n FROM rounds WHERE run_id = ? AND state = 'completed'", [runId]);
    return Number(rows[0].n);
  }

  /**
   * Moves a round's phase, compare-and-set on its current state and phase (a stale writer changes
   * nothing and gets ConflictError).
   */
  async setRoundPhase(runId: string, r: number, from: { state: string; phase: string | null }, to: { state: string; phase: string | null; phaseDeadline: number | null }, audit?: AuditEmitter): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx.query('SELECT state, phase FROM rounds WHERE run_id = ? AND round = ?', [runId, r]);
      if (!rows.length) throw new ConflictError(`round ${runId}/${r} does not exist`);
      if (rows[0].state !== from.state || (rows[0].phase ?? null) !== from.phase) {
        throw new ConflictError(`round ${runId}/${r} is ${String(rows[0].state)}/${String(rows[0].phase)}, expected ${from.state}/${from.phase}`);
      }
      await tx.query('UPDATE rounds SET state = ?, phase = ?, phase_deadline = ? WHERE run_id = ? AND round = ?', [to.state, to.phase, to.phaseDeadline, runId, r]);
      // leaving the mask phase: its round-phase entry (emitted here) now records the masked inputs
      if (from.phase === 'mask' && to.phase !== 'mask') await this.deleteMaskedInputs(tx, runId, r);
      if (audit) await this.insertAuditRecords(tx, audit.emit());
    });
  }

  /**
   * Accepts one masked input durably: in ONE transaction, checks the round is open in phase
   * `mask`, stores the row (party, evidence), then runs `accept` (the protocol absorbing the
   * input). Any failure rolls the row back: a refused insert (ConflictError for a second input of
   * the party, or a round not in its mask phase; a storage error as thrown) means `accept` never
   * ran; an error thrown by `accept` is rethrown as is, with no row stored.
   */
  async storeMaskedInput<T>(row: { runId: string; round: number; party: string; evidence: Record<string, unknown> | null }, accept: () => T): Promise<T> {
    const t = this.now();
    try {
      return await this.db.transaction(async (tx) => {
        const rows = await tx.query('SELECT state, phase FROM rounds WHERE run_id = ? AND round = ?', [row.runId, row.round]);
        if (!rows.length) throw new ConflictError(`round ${row.runId}/${row.round} does not exist`);
        if (rows[0].state !== 'open' || rows[0].phase !== 'mask') throw new ConflictError(`round ${row.runId}/${row.round} is ${String(rows[0].state)}/${String(rows[0].phase)}, not collecting masked inputs`);
        await tx.query('INSERT INTO round_masked_inputs (run_id, round, party, evidence, received_at) VALUES (?, ?, ?, ?, ?)', [
          row.runId, row.round, row.party, row.evidence === null ? null : JSON.stringify(row.evidence), t,
        ]);
        return accept();
      });
    } catch (e) {
      if (e instanceof UniqueViolation) throw new ConflictError(`party "${row.party}" already sent its masked input for round ${row.round}`);
      throw e;
    }
  }

  /** The masked inputs stored for a round whose mask phase has not been logged yet, by party name. */
  async maskedInputs(runId: string, r: number): Promise<MaskedInputRow[]> {
    return (await this.db.query('SELECT * FROM round_masked_inputs WHERE run_id = ? AND round = ? ORDER BY party', [runId, r])).map(maskedInput);
  }

  private async deleteMaskedInputs(tx: SqlExecutor, runId: string, r: number): Promise<void> {
    await tx.query('DELETE FROM round_masked_inputs WHERE run_id = ? AND round = ?', [runId, r]);
  }

  /**
   * Completes a round in one transaction: stores the new model version (parent = the round's base
   * model), marks the round completed (with its `aggregate`, the unmasked sum, and that sum's
   * BLAKE2b-256, when the protocol hands one over), records the audit entry, opens the next round
   * (or finishes the run). A second call for the same round fails on UNIQUE(run_id, round) and
   * writes nothing.
   */
  async completeRound(args: {
    runId: string;
    round: number;
    model: { bytes: Uint8Array; hash: Uint8Array; protocolState?: Uint8Array | null };
    /** the round's unmasked aggregate (u32 little-endian), kept for auditors (roundAggregate) */
    aggregate?: Uint8Array;
    /** the round's server view (shared/audit/server-view.ts), kept for auditors (roundServerView) */
    serverView?: Uint8Array;
    audit: Record<string, unknown>;
    next: { state: string; phase: string | null; phaseDeadline: number | null } | null;
    sealer: AuditSealer | AuditEmitter<{ modelVersion: number; parentModelVersion: number; nextRound: number | null }>;
  }): Promise<{ modelVersion: number; nextRound: number | null }> {
    const t = this.now();
    try {
      return await this.db.transaction(async (tx) => {
        const rows = await tx.query('SELECT * FROM rounds WHERE run_id = ? AND round = ?', [args.runId, args.round]);
        if (!rows.length) throw new ConflictError(`round ${args.runId}/${args.round} does not exist`);
        const cur = round(rows[0]);
        if (cur.state === 'completed' || cur.state === 'aborted') throw new ConflictError(`round ${args.runId}/${args.round} is already ${cur.state}`);
        const version = await this.insertModel(tx, { bytes: args.model.bytes, hash: args.model.hash, parent: cur.baseModelVersion, runId: args.runId, round: args.round, protocolState: args.model.protocolState ?? null });
        const aggregate = args.aggregate ?? null;
        const view = args.serverView ?? null;
        await tx.query("UPDATE rounds SET state = 'completed', phase = NULL, phase_deadline = NULL, result_model_version = ?, finished_at = ?, aggregate = ?, aggregate_hash = ?, server_view = ?, server_view_hash = ? WHERE run_id = ? AND round = ?", [
          version, t, aggregate, aggregate === null ? null : modelBytesHash(aggregate), view, view === null ? null : modelBytesHash(view), args.runId, args.round,
        ]);
        await this.deleteMaskedInputs(tx, args.runId, args.round);
        const sealer = args.sealer;
        if (isEmitter(sealer)) await this.insertAuditRecords(tx, sealer.emit({ modelVersion: version, parentModelVersion: cur.baseModelVersion, nextRound: args.next ? args.round + 1 : null }));
        else await this.appendAudit(tx, sealer, ({ ...args.audit, type: 'round-completed', runId: args.runId, round: args.round, modelVersion: version, parentModelVersion: cur.baseModelVersion, modelHash: hex(args.model.hash) }));
        let nextRound: number | null = null;
        if (args.next) {
          nextRound = args.round + 1;
          await tx.query('INSERT INTO rounds (run_id, round, state, phase, phase_deadline, base_model_version, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [args.runId, nextRound, args.next.state, args.next.phase, args.next.phaseDeadline, version, t]);
        } else {
          await tx.query("UPDATE runs SET state = 'completed', finished_at = ? WHERE id = ?", [t, args.runId]);
          if (!isEmitter(sealer)) await this.appendAudit(tx, sealer, ({ type: 'run-completed', runId: args.runId, finalModelVersion: version }));
        }
        return { modelVersion: version, nextRound };
      });
    } catch (e) {
      if (e instanceof UniqueViolation) throw new ConflictError(`round ${args.runId}/${args.round} already produced a model version`);
      throw e;
    }
  }

  /**
   * Aborts a round (reason recorded + audited). With `retry`, opens the next round from the SAME
   * base model; otherwise (or when `abortRun`) the run is aborted too.
   */
  async abortRound(args: {
    runId: string;
    round: number;
    reason: string;
    retry: { state: string; phase: string | null; phaseDeadline: number | null } | null;
    abortRun: boolean;
    sealer: AuditSealer | AuditEmitter<{ baseModelVersion: number; nextRound: number | null }>;
  }): Promise<{ nextRound: number | null }> {
    const t = this.now();
    return this.db.transaction(async (tx) => {
      const rows = await tx.query('SELECT * FROM rounds WHERE run_id = ? AND round = ?', [args.runId, args.round]);
      if (!rows.length) throw new ConflictError(`round ${args.runId}/${args.round} does not exist`);
      const cur = round(rows[0]);
      if (cur.state === 'completed' || cur.state === 'aborted') throw new ConflictError(`round ${args.runId}/${args.round} is already ${cur.state}`);
      await tx.query("UPDATE rounds SET state = 'aborted', phase = NULL, phase_deadline = NULL, abort_reason = ?, finished_at = ? WHERE run_id = ? AND round = ?", [args.reason, t, args.runId, args.round]);
      // the emitter logs the mask phase's inputs (accepted so far) before round-aborted, in this transaction
      await this.deleteMaskedInputs(tx, args.runId, args.round);
      const sealer = args.sealer;
      const retry = args.retry && !args.abortRun;
      if (isEmitter(sealer)) await this.insertAuditRecords(tx, sealer.emit({ baseModelVersion: cur.baseModelVersion, nextRound: retry ? args.round + 1 : null }));
      else await this.appendAudit(tx, sealer, ({ type: 'round-aborted', runId: args.runId, round: args.round, reason: args.reason, baseModelVersion: cur.baseModelVersion }));
      if (args.retry && retry) {
        const next = args.round + 1;
        await tx.query('INSERT INTO rounds (run_id, round, state, phase, phase_deadline, base_model_version, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [args.runId, next, args.retry.state, args.retry.phase, args.retry.phaseDeadline, cur.baseModelVersion, t]);
        return { nextRound: next };
      }
      await tx.query("UPDATE runs SET state = 'aborted', finished_at = ?, abort_reason = ? WHERE id = ? AND state = 'running'", [t, args.reason, args.runId]);
      if (!isEmitter(sealer)) await this.appendAudit(tx, sealer, ({ type: 'run-aborted', runId: args.runId, reason: args.reason }));
      return { nextRound: null };
    });
  }

  /** Aborts a run whose current round is already finished (or has none open). */
  async abortRunOnly(runId: string, reason: string, sealer: AuditSealer | AuditEmitter): Promise<void> {
    const t = this.now();
    await this.db.transaction(async (tx) => {
      const rows = await tx.query("SELECT id FROM runs WHERE id = ? AND state = 'running'", [runId]);
      if (!rows.length) throw new ConflictError(`run ${runId} is not running`);
      await tx.query("UPDATE runs SET state = 'aborted', finished_at = ?, abort_reason = ? WHERE id = ?", [t, reason, runId]);
      if (isEmitter(sealer)) await this.insertAuditRecords(tx, sealer.emit());
      else await this.appendAudit(tx, sealer, ({ type: 'run-aborted', runId, reason }));
    });
  }

  // ------------------------------------------------------------ model versions

  private async insertModel(tx: SqlExecutor, m: { bytes: Uint8Array; hash: Uint8Array; parent: number | null; runId: string | null; round: number | null; protocolState?: Uint8Array | null }): Promise<number> {
    const rows = await tx.query('SELECT COALESCE(MAX(version), 0) AS v FROM model_versions');
    const version = Number(rows[0].v) + 1;
    const state = m.protocolState ?? null;
    await tx.query('INSERT INTO model_versions (version, hash, bytes, parent, run_id, round, created_at, protocol_state, protocol_state_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
      version, m.hash, m.bytes, m.parent, m.runId, m.round, this.now(), state, state === null ? null : modelBytesHash(state),
    ]);
    return version;
  }

  /** Model version `version` (bytes checked against the stored hash: StoredDataDamaged), or null. */
  async modelVersion(version: number): Promise<ModelVersionRow | null> {
    const rows = await this.db.query('SELECT * FROM model_versions WHERE version = ?', [version]);
    return rows.length ? model(rows[0]) : null;
  }

  /**
   * Model version `version` without its bytes or protocol state (so nothing is checked): which run
   * and round it belongs to, and its stored hash; null when there is no such version.
   */
  async modelVersionInfo(version: number): Promise<Omit<ModelVersionRow, 'bytes' | 'protocolState'> | null> {
    const rows = await this.db.query('SELECT version, hash, parent, run_id, round, created_at FROM model_versions WHERE version = ?', [version]);
    if (!rows.length) return null;
    const r = rows[0];
    return { version: Number(r.version), hash: u8(r.hash), parent: numOrNull(r.parent), runId: strOrNull(r.run_id), round: numOrNull(r.round), createdAt: Number(r.created_at) };
  }

  async latestModelVersion(): Promise<ModelVersionRow | null> {
    const rows = await this.db.query('SELECT * FROM model_versions ORDER BY version DESC LIMIT 1');
    return rows.length ? model(rows[0]) : null;
  }

  /** The newest model version's number (0: none), without reading its bytes. */
  async latestModelVersionNumber(): Promise<number> {
    const rows = await this.db.query('SELECT MAX(version) AS v FROM model_versions');
    return rows.length && rows[0].v !== null && rows[0].v !== undefined ? Number(rows[0].v) : 0;
  }

  async countModelVersions(): Promise<number> {
    const rows = await this.db.query('SELECT COUNT(*) AS n FROM model_versions');
    return Number(rows[0].n);
  }

  // ------------------------------------------------------------ audit log (append-only)

  /**
   * Appends one entry inside `tx`: index = last + 1, prevHash = chain hash of the last entry. The
   * stored entry is the canonical JSON of `fields` plus `idx` and `at` (ms since the epoch).
   */
  async appendAudit(tx: SqlExecutor, sealer: AuditSealer, fields: Record<string, unknown>): Promise<AuditRow> {
    const last = await tx.query('SELECT * FROM audit_log ORDER BY idx DESC LIMIT 1');
    let idx = 0;
    let prevHash = sealer.genesis;
    if (last.length) {
      const l = audit(last[0]);
      idx = l.idx + 1;
      prevHash = sealer.chainHash(l.idx, l.prevHash, l.entry);
    }
    const createdAt = this.now();
    const entry = auditJson({ ...fields, idx, at: createdAt });
    const signature = sealer.seal(idx, prevHash, entry);
    await tx.query('INSERT INTO audit_log (idx, prev_hash, entry, signature, created_at) VALUES (?, ?, ?, ?, ?)', [idx, prevHash, entry, signature, createdAt]);
    return { idx, prevHash, entry, signature, createdAt };
  }

  /**
   * Inserts sealed records verbatim inside `tx` after checking that they continue the stored chain
   * (index = last + 1, prevHash = chain hash of the last stored entry); ConflictError otherwise.
   */
  async insertAuditRecords(tx: SqlExecutor, records: readonly AuditRecord[]): Promise<void> {
    const last = await tx.query('SELECT * FROM audit_log ORDER BY idx DESC LIMIT 1');
    let idx = 0;
    let head = AUDIT_GENESIS;
    if (last.length) {
      const l = audit(last[0]);
      idx = l.idx + 1;
      head = auditChainHash(l.idx, l.prevHash, l.entry);
    }
    for (const r of records) {
      if (r.idx !== idx || Buffer.compare(Buffer.from(r.prevHash), Buffer.from(head)) !== 0) {
        throw new ConflictError(`audit record ${r.idx} does not continue the stored chain (next index ${idx})`);
      }
      await tx.query('INSERT INTO audit_log (idx, prev_hash, entry, signature, created_at) VALUES (?, ?, ?, ?, ?)', [r.idx, r.prevHash, r.entry, r.signature, this.now()]);
      head = auditChainHash(r.idx, r.prevHash, r.entry);
      idx++;
    }
  }

  /** Appends sealed records in a transaction of their own (receipts). */
  async appendAuditRecords(audit: AuditEmitter): Promise<void> {
    await this.db.transaction(async (tx) => this.insertAuditRecords(tx, audit.emit()));
  }

  async auditEntries(fromIdx = 0, limit = 10_000): Promise<AuditRow[]> {
    return (await this.db.query('SELECT * FROM audit_log WHERE idx >= ? ORDER BY idx LIMIT ?', [fromIdx, limit])).map(audit);
  }

  // ------------------------------------------------------------ tokens

  /** Stores a token (its hash); `expiresInMs` from now (this store's clock), or never when absent. */
  async insertToken(t: { id: string; role: string; tokenHash: Uint8Array; label: string; expiresInMs?: number }, sealer?: AuditSealer | AuditEmitter<TokenRow>): Promise<TokenRow> {
    const createdAt = this.now();
    const row: TokenRow = { id: t.id, role: t.role, tokenHash: t.tokenHash, label: t.label, createdAt, revokedAt: null, expiresAt: t.expiresInMs ? createdAt + t.expiresInMs : null };
    await this.db.transaction(async (tx) => {
      await tx.query('INSERT INTO tokens (id, role, token_hash, label, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)', [row.id, row.role, row.tokenHash, row.label, row.createdAt, row.expiresAt]);
      if (isEmitter(sealer)) await this.insertAuditRecords(tx, sealer.emit(row));
      else if (sealer) await this.appendAudit(tx, sealer, ({ type: 'token-issued', tokenId: row.id, role: row.role, label: row.label, ...(row.expiresAt !== null ? { expiresAt: row.expiresAt } : {}) }));
    });
    return row;
  }

  /** Every issued token, oldest first (hashes included: callers show only id, role, label, times). */
  async listTokens(): Promise<TokenRow[]> {
    return (await this.db.query('SELECT * FROM tokens ORDER BY created_at, id')).map(token);
  }

  /**
   * Revokes token `id` in ONE transaction with its audit entry (token-revoked with `reason`; an
   * emitter is called with the revoked row): from then on tokenByHash no longer finds it. An
   * unknown id or a token already revoked changes nothing and is answered as such (the row, for
   * when it was revoked).
   */
  async revokeToken(id: string, reason: string, sealer?: AuditSealer | AuditEmitter<TokenRow>): Promise<{ outcome: 'revoked' | 'already-revoked'; row: TokenRow } | { outcome: 'unknown' }> {
    return this.db.transaction(async (tx) => {
      const lock = rowLock(tx, 'UPDATE');
      const found = await tx.query(`SELECT * FROM tokens WHERE id = ?${lock}`, [id]);
      if (!found.length) return { outcome: 'unknown' as const };
      const before = token(found[0]);
      if (before.revokedAt !== null) return { outcome: 'already-revoked' as const, row: before };
      const row: TokenRow = { ...before, revokedAt: this.now() };
      await tx.query('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [row.revokedAt, id]);
      if (isEmitter(sealer)) await this.insertAuditRecords(tx, sealer.emit(row));
      else if (sealer) await this.appendAudit(tx, sealer, { type: 'token-revoked', tokenId: row.id, reason });
      return { outcome: 'revoked' as const, row };
    });
  }

  /** The token with this hash if it opens the API now: not revoked, not expired (this store's clock). */
  async tokenByHash(tokenHash: Uint8Array): Promise<TokenRow | null> {
    const rows = await this.db.query('SELECT * FROM tokens WHERE token_hash = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)', [tokenHash, this.now()]);
    return rows.length ? token(rows[0]) : null;
  }

  /** Row counts per table: tests use it to prove a rejected request changed nothing. */
  async snapshotCounts(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const t of ['participants', 'policies', 'policy_signatures', 'runs', 'rounds', 'model_versions', 'audit_log', 'tokens', 'round_masked_inputs']) {
      const rows = await this.db.query(`SELECT COUNT(*) AS n FROM ${t}`);
      out[t] = Number(rows[0].n);
    }
    return out;
  }
}

function b64(b: Uint8Array): string {
  return Buffer.from(b).toString('base64');
}
function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Audit entries are canonical JSON (RFC 8785) bytes; coordinator/audit/log.ts defines the chain. */
export function auditJson(obj: Record<string, unknown>): Uint8Array {
  // lazy import keeps this module light for tests that only use the SQL layer
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { canonicalize } = require('json-canonicalize') as typeof import('json-canonicalize');
  return new TextEncoder().encode(canonicalize(obj));
}

export type { SqlValue };
