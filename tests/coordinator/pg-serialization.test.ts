/**
 * PostgreSQL runs every repository transaction SERIALIZABLE; one that raced another is refused with
 * SQLSTATE 40001 and must be run again (it stores nothing). The driver does that itself: the repeat
 * sees the other transaction's outcome. Forced deterministically here: the transaction takes its
 * snapshot, another session updates and commits the same row, then the transaction writes the row.
 * And the case found racing in storage.test.ts: two revocations of one token at once, on a real
 * server: one revokes, the other finds it revoked (before, the second failed with "could not
 * serialize access due to concurrent update" whenever the two overlapped).
 */
import { PostgresDriver, SERIALIZATION_RETRIES, type SqlDriver } from '../../coordinator/storage/sql';
import { migrate } from '../../coordinator/storage/migrations';
import { Repository } from '../../coordinator/storage/repository';
import { coordinatorSealer } from '../../coordinator/audit/log';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { sodiumReady } from '../../shared/crypto/sodium';
import { backends, PG_URL, requirePgInCi } from './helpers/db';

describe('serialization failures are retried', () => {
  requirePgInCi();
  const all = backends();
  beforeAll(() => sodiumReady());
  afterAll(async () => {
    for (const b of all) await b.cleanup();
  });

  for (const backend of all) {
    test(`${backend.name}: two revocations of one token at once, 10 times: one revokes, the other finds it revoked`, async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db, () => 1000);
        const sealer = coordinatorSealer(ed25519Keygen().secretKey);
        for (let i = 0; i < 10; i++) {
          const id = `tok-${String(i).padStart(12, '0')}`;
          await repo.insertToken({ id, role: 'auditor', tokenHash: new Uint8Array(32).fill(i + 1), label: '' }, sealer);
          const both = await Promise.all([repo.revokeToken(id, 'left', sealer), repo.revokeToken(id, 'left', sealer)]);
          expect(both.map((r) => r.outcome).sort()).toEqual(['already-revoked', 'revoked']);
        }
      } finally {
        await db.close();
      }
    });
  }

  if (PG_URL) {
    test('postgres: a transaction whose row another session changed after its snapshot is run again, and only then commits', async () => {
      const backend = all.find((b) => b.name === 'postgres')!;
      const db = (await backend.open()) as PostgresDriver;
      const other: SqlDriver = db;
      try {
        await db.execScript('CREATE TABLE counter (id INTEGER PRIMARY KEY, v INTEGER NOT NULL); INSERT INTO counter VALUES (1, 0);');
        let attempts = 0;
        await db.transaction(async (tx) => {
          attempts++;
          await tx.query('SELECT 1'); // the snapshot
          // another session (another pooled connection) changes the row and commits, on the first attempt only
          if (attempts === 1) await other.query('UPDATE counter SET v = v + 1 WHERE id = 1');
          await tx.query('UPDATE counter SET v = v + 10 WHERE id = 1');
        });
        expect(attempts).toBe(2);
        expect((await db.query('SELECT v FROM counter WHERE id = 1'))[0].v).toBe(11);

        // a transaction that keeps racing gives up after SERIALIZATION_RETRIES repeats with the server's error
        attempts = 0;
        await expect(
          db.transaction(async (tx) => {
            attempts++;
            await tx.query('SELECT 1');
            await other.query('UPDATE counter SET v = v + 1 WHERE id = 1');
            await tx.query('UPDATE counter SET v = v + 10 WHERE id = 1');
          }),
        ).rejects.toMatchObject({ code: '40001' });
        expect(attempts).toBe(SERIALIZATION_RETRIES + 1);
        expect((await db.query('SELECT v FROM counter WHERE id = 1'))[0].v).toBe(11 + SERIALIZATION_RETRIES + 1);
      } finally {
        await db.close();
      }
    });
  }
});
