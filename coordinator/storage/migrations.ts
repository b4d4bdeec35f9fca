/**
 * Versioned schema migrations, the same for SQLite and PostgreSQL (DESIGN §6). Each migration runs
 * in one transaction together with its row in `schema_migrations`, so a crash leaves it either
 * applied and recorded or not at all; `migrate` applies the missing ones in order at start-up and
 * refuses a database whose recorded history does not match this list (a newer or foreign schema).
 *
 * Portability: statements use TEXT, BIGINT and BLOB (rewritten to BYTEA for PostgreSQL); no
 * auto-increment ids (the repository assigns them, under unique constraints).
 * Never edit a released migration: add a new one.
 */
import type { SqlDriver } from './sql';

export interface Migration {
  version: number;
  name: string;
  statements: string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    statements: [
      `CREATE TABLE participants (
        name TEXT PRIMARY KEY,
        public_key BLOB NOT NULL UNIQUE,
        cert_sha256 TEXT,
        enrolled_at BIGINT NOT NULL
      )`,
      `CREATE TABLE policies (
        hash TEXT PRIMARY KEY,
        canonical_json TEXT NOT NULL,
        registered_at BIGINT NOT NULL
      )`,
      `CREATE TABLE policy_signatures (
        policy_hash TEXT NOT NULL REFERENCES policies(hash),
        party TEXT NOT NULL,
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL,
        PRIMARY KEY (policy_hash, party)
      )`,
      `CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        policy_hash TEXT NOT NULL REFERENCES policies(hash),
        state TEXT NOT NULL,
        rounds_planned BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        finished_at BIGINT,
        abort_reason TEXT
      )`,
      `CREATE TABLE model_versions (
        version BIGINT PRIMARY KEY,
        hash BLOB NOT NULL,
        bytes BLOB NOT NULL,
        parent BIGINT REFERENCES model_versions(version),
        run_id TEXT REFERENCES runs(id),
        round BIGINT,
        created_at BIGINT NOT NULL,
        UNIQUE (run_id, round)
      )`,
      `CREATE TABLE rounds (
        run_id TEXT NOT NULL REFERENCES runs(id),
        round BIGINT NOT NULL,
        state TEXT NOT NULL,
        phase TEXT,
        phase_deadline BIGINT,
        base_model_version BIGINT NOT NULL REFERENCES model_versions(version),
        result_model_version BIGINT REFERENCES model_versions(version),
        started_at BIGINT NOT NULL,
        finished_at BIGINT,
        abort_reason TEXT,
        PRIMARY KEY (run_id, round)
      )`,
      `CREATE TABLE audit_log (
        idx BIGINT PRIMARY KEY,
        prev_hash BLOB NOT NULL,
        entry BLOB NOT NULL,
        signature BLOB NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      `CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE,
        label TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
      )`,
    ],
  },
  {
    version: 2,
    name: 'protocol state with model versions',
    statements: [
      // opaque round-protocol state that belongs to a model version (the server optimizer's
      // moments for FedAdam): stored in the same row, so a restart or a retry resumes from it
      `ALTER TABLE model_versions ADD COLUMN protocol_state BLOB`,
    ],
  },
  {
    version: 3,
    name: 'masked inputs accepted in the open round',
    statements: [
      // one row per masked input the coordinator accepted (and acknowledged) while the round's
      // mask phase is open: what that phase's audit entry will record for the party, so a restart
      // inside the phase can still log (and charge) it. Written before the acknowledgement, in the
      // transaction that accepts the input; deleted in the transaction that writes the mask
      // round-phase entry (phase close, or round abort). `evidence` is the JSON of the party's
      // maskedInputs item (shared/audit/entries.ts), NULL for a protocol without signed evidence.
      `CREATE TABLE round_masked_inputs (
        run_id TEXT NOT NULL,
        round BIGINT NOT NULL,
        party TEXT NOT NULL,
        evidence TEXT,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (run_id, round, party),
        FOREIGN KEY (run_id, round) REFERENCES rounds(run_id, round)
      )`,
    ],
  },
  {
    version: 4,
    name: 'auditor token expiry',
    statements: [
      // when the token stops opening the audit API (ms since the epoch); NULL: never
      `ALTER TABLE tokens ADD COLUMN expires_at BIGINT`,
    ],
  },
  {
    version: 5,
    name: 'protocol state hash',
    statements: [
      // BLAKE2b-256 of protocol_state, checked on every read of the row (as `hash` is for `bytes`);
      // NULL when there is no state, and for rows written before this migration (not checked)
      `ALTER TABLE model_versions ADD COLUMN protocol_state_hash BLOB`,
    ],
  },
  {
    version: 6,
    name: 'round aggregates',
    statements: [
      // a completed round's unmasked secure-aggregation sum (u32 little-endian, what the protocol's
      // `done` step hands over), stored in the transaction that completes the round, so that
      // auditors can recompute the model chain (`audit verify --replay`, when the run's policy sets
      // audit.auditorArtifacts); NULL for open or aborted rounds, for a protocol without one, and for
      // rounds completed before this migration
      `ALTER TABLE rounds ADD COLUMN aggregate BLOB`,
      // BLAKE2b-256 of aggregate (the round-completed entry's aggregateHash), checked on every read;
      // written together with aggregate: one without the other is damage
      `ALTER TABLE rounds ADD COLUMN aggregate_hash BLOB`,
    ],
  },
  {
    version: 7,
    name: 'round server views',
    statements: [
      // a completed round's server view (shared/audit/server-view.ts: the survivors' masked inputs,
      // their reconstructed self-mask seeds, the dropped parties' mask keys), stored in the
      // transaction that completes the round when the run's policy sets audit.auditorServerView, so
      // that auditors can recompute the aggregate from the parties' signed inputs; NULL otherwise
      `ALTER TABLE rounds ADD COLUMN server_view BLOB`,
      // BLAKE2b-256 of server_view, checked on every read; written together with it
      `ALTER TABLE rounds ADD COLUMN server_view_hash BLOB`,
    ],
  },
];

const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version BIGINT PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`;

function forDialect(sql: string, dialect: SqlDriver['dialect']): string {
  return dialect === 'postgres' ? sql.replace(/\bBLOB\b/g, 'BYTEA') : sql;
}

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

/** Tables of migration 1: a database holding any of them was migrated by a coordinator. */
const CORE_TABLES = ['participants', 'policies', 'runs', 'model_versions', 'rounds', 'audit_log', 'tokens'];

/** Which of `names` exist as tables in the store (SQLite: the file; PostgreSQL: the current schema). */
async function existingTables(db: SqlDriver, names: string[]): Promise<string[]> {
  const marks = names.map(() => '?').join(', ');
  const rows = db.dialect === 'postgres'
    ? await db.query<{ name: string }>(`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN (${marks})`, names)
    : await db.query<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (${marks})`, names);
  return rows.map((r) => String(r.name)).sort();
}

/** Applies the missing migrations in order; returns the versions it applied. */
export async function migrate(db: SqlDriver, migrations: readonly Migration[] = MIGRATIONS, now: () => number = Date.now): Promise<number[]> {
  // the coordinator's tables without the record of their migrations (restored or copied without
  // schema_migrations): migration 1 would fail on "table ... already exists"; say what happened
  const present = await existingTables(db, [...CORE_TABLES, 'schema_migrations']);
  const core = present.filter((t) => t !== 'schema_migrations');
  if (core.length && (!present.includes('schema_migrations') || !(await db.query('SELECT version FROM schema_migrations LIMIT 1')).length)) {
    throw new MigrationError(`the store ${db.description} has the coordinator's tables (${core.join(', ')}) but no record of their migrations (table schema_migrations is ${present.includes('schema_migrations') ? 'empty' : 'missing'}), as when a store is restored or copied without it; nothing was changed. Restore schema_migrations from the same backup as the other tables, or point storage at an empty database`);
  }
  await db.execScript(CREATE_MIGRATIONS_TABLE);
  const applied = await db.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations ORDER BY version');
  const known = new Map(migrations.map((m) => [m.version, m]));
  for (const row of applied) {
    const m = known.get(row.version);
    if (!m) throw new MigrationError(`database has migration ${row.version} ("${row.name}") that this coordinator does not know: it was written by a newer version`);
    if (m.name !== row.name) throw new MigrationError(`migration ${row.version} is recorded as "${row.name}" but this coordinator calls it "${m.name}"`);
  }
  const done = new Set(applied.map((r) => r.version));
  const ran: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (done.has(m.version)) continue;
    await db.transaction(async (tx) => {
      // another coordinator process may have applied it meanwhile: the primary key decides
      const again = await tx.query('SELECT version FROM schema_migrations WHERE version = ?', [m.version]);
      if (again.length) return;
      for (const s of m.statements) await tx.query(forDialect(s, db.dialect));
      await tx.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [m.version, m.name, now()]);
      ran.push(m.version);
    });
  }
  return ran;
}
