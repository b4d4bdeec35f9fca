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
 *
 * The PostgreSQL lock can be lost while the process lives: the server ends the lock's session
 * (pg_terminate_backend, a restart, an idle-session timeout, a pooler, a network cut found by TCP
 * keepalive, which is on). `onLost` then tells the holder, which must stop serving at once
 * (coordinator/main.ts closes the coordinator; `coordinator start` exits non-zero with the reason):
 * from that moment another coordinator may take the store. The SQLite lock is a file lock of the
 * process and is never lost while the process lives.
 */
import { UserError } from '../../shared/cli/errors';
import { redactUrl } from './sql';

export interface InstanceLock {
  release(): Promise<void>;
  /**
   * Calls `listener` once, with a one-line reason, if the lock ends before `release` (at once if it
   * already has). Never for a released lock, nor for SQLite.
   */
  onLost(listener: (reason: string) => void): void;
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
    onLost: () => undefined, // a file lock of this process: it ends only with the process or release()
  };
}

async function pgLock(url: string): Promise<InstanceLock> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pg = require('pg') as typeof import('pg');
  // TCP keepalive: a lock connection cut without a FIN (network, host gone) is found and ends
  const client = new pg.Client({ connectionString: url, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
  const store = `postgres:${redactUrl(url)}`;
  let lostReason: string | null = null;
  let released = false;
  const listeners: ((reason: string) => void)[] = [];
  const lose = (why: string) => {
    if (released || lostReason !== null) return;
    lostReason = `the coordinator lost its lock on the store ${store} (${why}); it stopped serving, since another coordinator may now take the store: check the database server and start it again`;
    for (const l of listeners.splice(0)) l(lostReason);
  };
  // the lock lives exactly as long as this connection: its error or end is the lock's end
  client.on('error', (e) => lose(`lock connection failed: ${e.message}`));
  client.on('end', () => lose('lock connection closed by the server'));
  await client.connect();
  try {
    const r = await client.query<{ locked: boolean; schema: string }>("SELECT pg_try_advisory_lock(hashtext('fedbridge-coordinator:' || current_schema())) AS locked, current_schema() AS schema");
    if (!r.rows[0].locked) {
      throw new StoreInUse(`another coordinator is running on the store ${store} (schema ${r.rows[0].schema}); stop it first`, 1);
    }
    // names the lock's session in pg_stat_activity (operators; tests end exactly this session)
    await client.query("SELECT set_config('application_name', left('fedbridge-lock:' || current_schema(), 63), false)");
  } catch (e) {
    released = true;
    await client.end().catch(() => undefined);
    throw e;
  }
  held.add(client);
  return {
    release: async () => {
      if (!held.delete(client)) return;
      released = true;
      if (lostReason === null) await client.end(); // a session-level advisory lock ends with its session
      else await client.end().catch(() => undefined);
    },
    onLost: (listener) => {
      if (released) return;
      if (lostReason !== null) {
        const why = lostReason;
        queueMicrotask(() => listener(why));
      } else listeners.push(listener);
    },
  };
}
