/**
 * One coordinator per store. Two coordinators on one store would both open rounds, write model
 * versions and append to one audit chain from two in-memory heads (a forked, unverifiable log).
 * `coordinator start` therefore takes a lock that lives exactly as long as the process:
 *   - SQLite: a lock database beside the store (`<file>.lock`), opened in EXCLUSIVE locking mode
 *     inside an open `BEGIN EXCLUSIVE`; the operating system drops the file lock when the process
 *     exits or is killed, so there is never a stale lock to clean up. (SQLite's own lock tracking
 *     makes a second connection in the same process conflict too.) The store itself is not locked:
 *     the CLI and tests may still read it.
 *   - PostgreSQL: a session-level advisory lock, keyed by the schema the store lives in, on a
 *     dedicated connection; released when that connection closes, including when the process dies.
 * A second coordinator is refused at start-up with a message naming the store.
 */
import { UserError } from '../../shared/cli/errors';
import { redactUrl } from './sql';

export interface InstanceLock {
  release(): Promise<void>;
}

export class StoreInUse extends UserError {}

/** Held locks, strongly referenced: a lock handle dropped by its caller must not be garbage-collected (closing its connection would end the lock). */
const held = new Set<object>();

export async function acquireInstanceLock(o: { databaseUrl?: string; sqliteFile: string }): Promise<InstanceLock> {
  return o.databaseUrl ? pgLock(o.databaseUrl) : sqliteLock(o.sqliteFile);
}

function sqliteLock(file: string): InstanceLock {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3') as typeof import('better-sqlite3');
  const lockFile = `${file}.lock`;
  const db = new Database(lockFile);
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (e) {
    db.close();
    if ((e as { code?: string }).code?.startsWith('SQLITE_BUSY')) {
      throw new StoreInUse(`another coordinator is running on the store sqlite:${file} (it holds ${lockFile}); stop it first, or give this one another storage.dataDir`, 1);
    }
    throw e;
  }
  held.add(db);
  return {
    release: async () => {
      held.delete(db);
      if (db.open) db.close(); // ends the transaction and the exclusive lock
    },
  };
}

async function pgLock(url: string): Promise<InstanceLock> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pg = require('pg') as typeof import('pg');
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {
    /* the lock ends with the connection; the store's own pool reports database errors */
  });
  await client.connect();
  try {
    const r = await client.query<{ locked: boolean; schema: string }>("SELECT pg_try_advisory_lock(hashtext('fedbridge-coordinator:' || current_schema())) AS locked, current_schema() AS schema");
    if (!r.rows[0].locked) {
      throw new StoreInUse(`another coordinator is running on the store postgres:${redactUrl(url)} (schema ${r.rows[0].schema}); stop it first`, 1);
    }
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
  held.add(client);
  return {
    release: async () => {
      if (!held.delete(client)) return;
      await client.end(); // a session-level advisory lock ends with its session
    },
  };
}
