/**
 * A store that cannot be reached or written just now (SQLite busy, a PostgreSQL connection ended
 * under a query) is answered UNAVAILABLE with a "send it again" message, not INTERNAL (which a node
 * takes as a verdict): real gRPC with the operator API and a real SQLite lock held by another
 * connection; a real PostgreSQL session ended by the server while it runs a query.
 */
import * as path from 'node:path';
import * as vm from 'node:vm';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { status, toStatusError } from '../../coordinator/grpc/errors';
import { PostgresDriver } from '../../coordinator/storage/sql';
import { makeEnv, operator, startCoordinator, unary } from './helpers/harness';
import { PG_URL } from './helpers/db';

test('SQLite held by another writer past busy_timeout: operator Enroll answers UNAVAILABLE, stores nothing, and succeeds once the store is free', async () => {
  const env = await makeEnv(['platform']);
  const logs: string[] = [];
  const coord = await startCoordinator(env, null, undefined, logs);
  const op = operator(env, coord.grpcPort);
  const other = new Database(path.join(env.configInput.storage.dataDir as string, 'coordinator.sqlite'));
  try {
    const before = await coord.ctx.repo.snapshotCounts();
    other.exec('BEGIN EXCLUSIVE'); // another process writing: the coordinator's BEGIN IMMEDIATE waits busy_timeout (5 s), then SQLITE_BUSY
    const k = ed25519Keygen();
    // while it waits for the lock, the coordinator (this process) keeps serving: a metrics scrape is
    // answered before the Enroll's answer (with SQLite's own busy_timeout the thread slept through
    // the whole wait and the scrape came after)
    const order: string[] = [];
    const enrolled = unary(op.client.enroll.bind(op.client), { name: 'platform', publicKey: k.publicKey, certSha256: '' }, op.metadata).then(
      () => null,
      (err: { code: number; details: string }) => err,
    );
    void enrolled.then(() => order.push('enroll answered'));
    await new Promise((r) => setTimeout(r, 500));
    const health = await fetch(`http://127.0.0.1:${coord.httpPort}/metrics`).then((r) => r.status);
    order.push('health answered');
    const e = await enrolled;
    expect(order).toEqual(['health answered', 'enroll answered']);
    expect(health).toBe(200);
    // before: INTERNAL, "internal error in the coordinator" (the coordinator's log is printed with a failure)
    expect({ code: e?.code, details: e?.details, log: e?.code === status.UNAVAILABLE ? [] : logs }).toEqual({
      code: status.UNAVAILABLE,
      details: "the coordinator's storage is unavailable just now (SQLITE_BUSY); send the request again shortly",
      log: [],
    });
    other.exec('ROLLBACK');
    expect(await coord.ctx.repo.snapshotCounts()).toEqual(before);
    await unary(op.client.enroll.bind(op.client), { name: 'platform', publicKey: k.publicKey, certSha256: '' }, op.metadata);
    expect((await coord.ctx.repo.participantByName('platform'))?.publicKey).toEqual(k.publicKey);
  } finally {
    if (other.inTransaction) other.exec('ROLLBACK');
    other.close();
    op.client.close();
    await coord.close();
  }
});

if (PG_URL) test('PostgreSQL: a query whose session the server ends maps to UNAVAILABLE; other errors stay INTERNAL', async () => {
  const db = await PostgresDriver.connect(PG_URL);
  const admin = await PostgresDriver.connect(PG_URL);
  try {
    const tag = `fb_${randomBytes(6).toString('hex')}`;
    const q = db.query(`SELECT pg_sleep(30) AS ${tag}`).then(() => null, (e: unknown) => e);
    let ended = 0;
    for (let i = 0; i < 200 && !ended; i++) {
      ended = (await admin.query('SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE query LIKE ? AND pid <> pg_backend_pid()', [`%AS ${tag}%`])).length;
      if (!ended) await new Promise((r) => setTimeout(r, 25));
    }
    expect(ended).toBe(1);
    const err = await q;
    const s = toStatusError(err);
    expect(s.code).toBe(status.UNAVAILABLE); // before: INTERNAL
    expect(s.message).toMatch(/^the coordinator's storage is unavailable just now \((PostgreSQL 57P01|connection to PostgreSQL lost|ECONNRESET)\); send the request again shortly$/);
    // the pool goes on with a new connection
    expect(await db.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    // a statement error is no outage
    const syntax = await db.query('SELEC 1').then(() => null, (e: unknown) => e);
    expect(toStatusError(syntax).code).toBe(status.INTERNAL);
  } finally {
    await db.close();
    await admin.close();
  }
});

test('an outage error from another JS realm (better-sqlite3 keeps the error class of the realm that first loaded it) is still UNAVAILABLE', () => {
  // what the SQLite driver throws when another jest test file loaded better-sqlite3 first: an Error of another realm
  const foreign = vm.runInNewContext(`Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' })`) as { message: string };
  expect(foreign instanceof Error).toBe(false);
  expect(toStatusError(foreign).code).toBe(status.UNAVAILABLE); // before: INTERNAL
  expect(toStatusError(vm.runInNewContext(`new Error('syntax error')`)).code).toBe(status.INTERNAL);
});
