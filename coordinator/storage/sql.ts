/**
 * One small SQL driver interface over SQLite (better-sqlite3, a file, the default) and PostgreSQL
 * (`pg`, when DATABASE_URL says so), so the repository and the migrations are written once.
 *
 * - Placeholders are `?` in every statement; the PostgreSQL driver rewrites them to $1..$n.
 * - Integers come back as JS numbers on both (PostgreSQL BIGINT is parsed; values stay < 2^53),
 *   bytes as Uint8Array (Buffer).
 * - `transaction(fn)` runs `fn` on a connection nobody else uses until it commits or rolls back.
 *   SQLite has one connection, so every statement goes through an async mutex; a transaction holds
 *   it across its awaits (otherwise another request's statement could land inside it).
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { Pool, PoolClient } from 'pg';
import { randomInt } from 'node:crypto';

export type Dialect = 'sqlite' | 'postgres';
export type SqlValue = string | number | null | Uint8Array;
export type Row = Record<string, unknown>;

export interface SqlExecutor {
  readonly dialect: Dialect;
  /** Runs one statement; returns the rows (empty for statements without RETURNING/SELECT). */
  query<T extends Row = Row>(sql: string, params?: SqlValue[]): Promise<T[]>;
}

export interface SqlDriver extends SqlExecutor {
  /** Runs several `;`-separated DDL statements (migrations), no parameters. */
  execScript(sql: string): Promise<void>;
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** A short description for logs (never includes a password). */
  readonly description: string;
}

/** Thrown for a unique/primary-key violation, whatever the dialect. */
export class UniqueViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UniqueViolation';
  }
}

class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    await prev;
    return release;
  }
}

function normalizeRow(row: Row): Row {
  for (const k of Object.keys(row)) {
    const v = row[k];
    if (typeof v === 'bigint') row[k] = Number(v);
  }
  return row;
}

// ------------------------------------------------------------------ SQLite

/** How long a SQLite transaction waits for another process's write lock before SQLITE_BUSY (ms). */
export const SQLITE_BUSY_WAIT_MS = 5000;

export class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  readonly description: string;
  private readonly mutex = new Mutex();

  private constructor(private readonly db: BetterSqlite3.Database, file: string) {
    this.description = `sqlite:${file}`;
  }

  /** Opens (creating if needed) the SQLite file; WAL journal, foreign keys on, full fsync on commit. */
  static open(file: string): SqliteDriver {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3') as typeof BetterSqlite3;
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    // a statement waits at most this long for another process's lock, blocking the thread; the wait
    // for a transaction's write lock is done in `transaction`, without blocking (SQLITE_BUSY_WAIT_MS)
    db.pragma('busy_timeout = 20');
    return new SqliteDriver(db, file);
  }

  /**
   * Takes the write lock for a transaction (BEGIN IMMEDIATE). Another process holding the file
   * (a backup tool, an operator's sqlite3 shell) makes it SQLITE_BUSY: tried again every 25 ms
   * until SQLITE_BUSY_WAIT_MS have passed, then that error is thrown (the caller answers
   * UNAVAILABLE). The waiting is asynchronous: with SQLite's own busy_timeout the whole
   * coordinator (every call, every keepalive answer) stopped for the full wait.
   */
  private async begin(): Promise<void> {
    const giveUp = Date.now() + SQLITE_BUSY_WAIT_MS;
    for (;;) {
      try {
        this.db.exec('BEGIN IMMEDIATE');
        return;
      } catch (e) {
        if ((e as { code?: unknown }).code !== 'SQLITE_BUSY' || Date.now() >= giveUp) throw e;
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }

  private run<T extends Row>(sql: string, params: SqlValue[]): T[] {
    try {
      const stmt = this.db.prepare(sql);
      const args = params.map((p) => (p instanceof Uint8Array && !Buffer.isBuffer(p) ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p));
      if (stmt.reader) return (stmt.all(...args) as Row[]).map(normalizeRow) as T[];
      stmt.run(...args);
      return [];
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new UniqueViolation((e as Error).message);
      throw e;
    }
  }

  async query<T extends Row = Row>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    const release = await this.mutex.lock();
    try {
      return this.run<T>(sql, params);
    } finally {
      release();
    }
  }

  async execScript(sql: string): Promise<void> {
    const release = await this.mutex.lock();
    try {
      this.db.exec(sql);
    } finally {
      release();
    }
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const release = await this.mutex.lock();
    let open = true;
    const tx: SqlExecutor = {
      dialect: 'sqlite',
      query: async <R extends Row = Row>(sql: string, params: SqlValue[] = []) => {
        if (!open) throw new Error('transaction already finished');
        return this.run<R>(sql, params);
      },
    };
    try {
      await this.begin();
      try {
        const result = await fn(tx);
        this.db.exec('COMMIT');
        return result;
      } catch (e) {
        // SQLite has already rolled the transaction back itself after some errors (SQLITE_FULL,
        // SQLITE_IOERR, SQLITE_NOMEM, ...): a ROLLBACK then fails with "no transaction is active"
        // and would hide the error that matters. The original error is always the one thrown.
        if (this.db.inTransaction) {
          try {
            this.db.exec('ROLLBACK');
          } catch {
            /* the connection reports the original error on its next statement, if it persists */
          }
        }
        throw e;
      }
    } finally {
      open = false;
      release();
    }
  }

  async close(): Promise<void> {
    const release = await this.mutex.lock();
    try {
      if (this.db.open) this.db.close();
    } finally {
      release();
    }
  }
}

// ------------------------------------------------------------------ PostgreSQL

function toPg(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

function pgError(e: unknown): unknown {
  if ((e as { code?: string }).code === '23505') return new UniqueViolation((e as Error).message);
  return e;
}

function pgArgs(params: SqlValue[]): unknown[] {
  return params.map((p) => (p instanceof Uint8Array && !Buffer.isBuffer(p) ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p));
}

/** Repeats of a PostgreSQL transaction refused for a serialization failure or a deadlock. */
export const SERIALIZATION_RETRIES = 4;

export class PostgresDriver implements SqlDriver {
  readonly dialect = 'postgres' as const;
  readonly description: string;

  private constructor(private readonly pool: Pool, url: string) {
    this.description = `postgres:${redactUrl(url)}`;
  }

  /**
   * Connects a pool and checks the server answers (fails fast with the server's message).
   * `schema` (tests) puts every table in that schema (created if missing) via search_path.
   */
  static async connect(url: string, opts: { schema?: string } = {}): Promise<PostgresDriver> {
    if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(opts.schema)) throw new RangeError(`"schema" must be a lowercase SQL identifier, got "${opts.schema}"`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pg = require('pg') as typeof import('pg');
    const types = {
      getTypeParser: (oid: number, format?: string) => {
        // int8 (BIGINT) and numeric counts: our values are < 2^53
        if (oid === 20) return (v: string) => Number(v);
        return pg.types.getTypeParser(oid, format as 'text');
      },
    };
    const pool = new pg.Pool({ connectionString: url, max: 4, types: types as never, ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}) });
    pool.on('error', () => {
      /* idle client errors surface on the next query */
    });
    if (opts.schema) await pool.query(`CREATE SCHEMA IF NOT EXISTS ${opts.schema}`);
    const d = new PostgresDriver(pool, url);
    await d.query('SELECT 1');
    return d;
  }

  async query<T extends Row = Row>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    try {
      const r = await this.pool.query(toPg(sql), pgArgs(params));
      return (r.rows as Row[]).map(normalizeRow) as T[];
    } catch (e) {
      throw pgError(e);
    }
  }

  async execScript(sql: string): Promise<void> {
    try {
      await this.pool.query(sql);
    } catch (e) {
      throw pgError(e);
    }
  }

  /**
   * Runs `fn` in one SERIALIZABLE transaction. PostgreSQL may refuse to commit (or to go on with) a
   * serializable transaction that raced another one: SQLSTATE 40001 (serialization failure) or 40P01
   * (deadlock). Nothing of it is stored then, and the documented remedy is to run it again, so `fn`
   * is run again from the start (up to SERIALIZATION_RETRIES more times, after a short random wait);
   * it then sees the other transaction's outcome (e.g. a token the other one revoked). Records an
   * AuditEmitter produced in the failed attempt are not reused: the repeated attempt's records no
   * longer continue the stored chain and are refused (ConflictError), so an audit writer resyncs.
   */
  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.transactionOnce(fn);
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if ((code !== '40001' && code !== '40P01') || attempt >= SERIALIZATION_RETRIES) throw e;
        await new Promise((r) => setTimeout(r, randomInt(5, 25) * (attempt + 1)));
      }
    }
  }

  private async transactionOnce<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const client: PoolClient = await this.pool.connect();
    let open = true;
    const tx: SqlExecutor = {
      dialect: 'postgres',
      query: async <R extends Row = Row>(sql: string, params: SqlValue[] = []) => {
        if (!open) throw new Error('transaction already finished');
        try {
          const r = await client.query(toPg(sql), pgArgs(params));
          return (r.rows as Row[]).map(normalizeRow) as R[];
        } catch (e) {
          throw pgError(e);
        }
      },
    };
    try {
      await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
      try {
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    } finally {
      open = false;
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** postgres://user:secret@host/db -> postgres://user:***@host/db */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}

/** Opens the configured store: PostgreSQL when `databaseUrl` is set, else the SQLite file. */
export async function openDriver(opts: { databaseUrl?: string; sqliteFile: string }): Promise<SqlDriver> {
  if (opts.databaseUrl) return PostgresDriver.connect(opts.databaseUrl);
  return SqliteDriver.open(opts.sqliteFile);
}
