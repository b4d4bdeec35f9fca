/**
 * Storage backends for coordinator tests: SQLite always; PostgreSQL when FEDBRIDGE_TEST_PG_URL (or
 * DATABASE_URL) is set. In CI (CI=true) the URL must be set: .ci/run starts a real server, and
 * `requirePgInCi` makes a missing URL a failing test rather than a silent skip.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { PostgresDriver, SqliteDriver, type SqlDriver } from '../../../coordinator/storage/sql';

export const PG_URL = process.env.FEDBRIDGE_TEST_PG_URL || process.env.DATABASE_URL || '';

export interface Backend {
  name: 'sqlite' | 'postgres';
  /** A fresh, empty database (a new file or a new schema); same `key` reopens the same one. */
  open(key?: string): Promise<SqlDriver>;
  cleanup(): Promise<void>;
}

export function sqliteBackend(): Backend {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-db-'));
  return {
    name: 'sqlite',
    open: async (key = randomBytes(6).toString('hex')) => SqliteDriver.open(path.join(dir, `${key}.sqlite`)),
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

export function pgBackend(url: string): Backend {
  const schemas = new Set<string>();
  return {
    name: 'postgres',
    open: async (key = randomBytes(6).toString('hex')) => {
      const schema = `t_${key}`;
      schemas.add(schema);
      return PostgresDriver.connect(url, { schema });
    },
    cleanup: async () => {
      const d = await PostgresDriver.connect(url);
      try {
        for (const s of schemas) await d.execScript(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
      } finally {
        await d.close();
      }
    },
  };
}

export function backends(): Backend[] {
  return PG_URL ? [sqliteBackend(), pgBackend(PG_URL)] : [sqliteBackend()];
}

/** Fails in CI when no PostgreSQL URL is configured (the PG tests must run there for real). */
export function requirePgInCi(): void {
  if (process.env.CI === 'true' || process.env.CI === '1') {
    if (!PG_URL) throw new Error('CI=true but neither FEDBRIDGE_TEST_PG_URL nor DATABASE_URL is set: .ci/run must start PostgreSQL');
  }
}

/**
 * A PostgreSQL URL whose sessions use a fresh schema (search_path in the URL's `options`), for a
 * whole coordinator started with DATABASE_URL; `drop` removes the schema.
 */
export async function pgSchemaUrl(url: string, prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const schema = `t_${prefix}_${randomBytes(4).toString('hex')}`;
  const d = await PostgresDriver.connect(url, { schema });
  await d.close();
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return {
    url: u.toString(),
    drop: async () => {
      const c = await PostgresDriver.connect(url);
      try {
        await c.execScript(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await c.close();
      }
    },
  };
}
