/**
 * CoordinatorAudit (coordinator/audit/log.ts) against real storage (SQLite, and PostgreSQL when a
 * URL is configured): records are inserted in the transaction that produces them; a transaction
 * that fails after appending in memory stores nothing and the writer is rebuilt from storage; a
 * writer whose view is stale (another process appended) is refused (ConflictError: index/prevHash
 * do not continue the stored chain), stores nothing, and continues correctly after its resync.
 */
import { sodiumReady } from '../../shared/crypto/sodium';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { CoordinatorAudit, verifyAuditChain } from '../../coordinator/audit/log';
import { migrate } from '../../coordinator/storage/migrations';
import { ConflictError, Repository } from '../../coordinator/storage/repository';
import { backends } from './helpers/db';

beforeAll(async () => {
  await sodiumReady();
});

for (const backend of backends()) {
  describe(`CoordinatorAudit on ${backend.name}`, () => {
    afterAll(() => backend.cleanup());

    test('failed transactions store nothing; a stale writer is refused, then continues the stored chain', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db);
        const key = ed25519Keygen();
        const a = await CoordinatorAudit.open(repo, key.secretKey);
        const token = (audit: CoordinatorAudit, id: string) =>
          audit.write(() => repo.insertToken({ id, role: 'auditor', tokenHash: new Uint8Array(32).fill(id.length), label: id }, { emit: (row) => [audit.append({ type: 'token-issued', tokenId: row.id, role: row.role, label: row.label })] }));
        await token(a, 't1');
        expect(a.head().idx).toBe(0);

        // appended in memory, then the transaction fails: nothing stored, the head goes back
        await expect(
          a.write(() =>
            repo.db.transaction(async (tx) => {
              await repo.insertAuditRecords(tx, [a.append({ type: 'token-issued', tokenId: 'x', role: 'auditor', label: 'lost' })]);
              throw new Error('boom');
            }),
          ),
        ).rejects.toThrow('boom');
        expect((await repo.snapshotCounts()).audit_log).toBe(1);
        expect(a.head().idx).toBe(0);

        // a second writer (another process) appends; the first one's view is stale
        const b = await CoordinatorAudit.open(repo, key.secretKey);
        await token(b, 't22');
        const before = await repo.snapshotCounts();
        await expect(token(a, 't333')).rejects.toThrow(ConflictError);
        expect(await repo.snapshotCounts()).toEqual(before);
        await token(a, 't4444'); // resynced: continues after b's entry
        const rows = await repo.auditEntries();
        expect(rows.map((r) => JSON.parse(Buffer.from(r.entry).toString()).tokenId)).toEqual(['t1', 't22', 't4444']);
        expect(verifyAuditChain(rows, key.publicKey).failures).toEqual([]);
        expect(Buffer.from((await a.chainHashAt(2))!).equals(Buffer.from(a.head().hash))).toBe(true);
      } finally {
        await db.close();
      }
    });
  });
}
