/**
 * CoordinatorAudit (coordinator/audit/log.ts) holds memory bounded by the open round, not by the
 * log: over a stored log of two runs under two policies (real storage: SQLite, and PostgreSQL where
 * configured) it holds no record between rounds and only the open round's records inside one; the
 * charges it rebuilds page by page give every party the lifetime epsilon the whole-log replay
 * (AuditRecorder.replay of the exported text) gives, for either policy's recorder; and a round
 * finished after a restart logs the same round-completed entry (Merkle root over the round's
 * records, epsilon) as a recorder holding the whole log.
 */
import { sodiumReady } from '../../shared/crypto/sodium';
import { parseExportLine, splitLines, type AuditRecord } from '../../shared/audit/chain';
import { AuditRecorder } from '../../shared/audit/recorder';
import { CoordinatorAudit } from '../../coordinator/audit/log';
import { migrate } from '../../coordinator/storage/migrations';
import { ConflictError, Repository } from '../../coordinator/storage/repository';
import { appendSecondPolicyRun, generateLog, makeFederation } from '../shared/audit/fixture';
import { backends, requirePgInCi } from './helpers/db';

beforeAll(async () => {
  requirePgInCi();
  await sodiumReady();
});

function recordsOf(bytes: Uint8Array): AuditRecord[] {
  return splitLines(bytes).lines.filter((l) => l.length).map((l) => {
    const p = parseExportLine(l);
    if (!p.ok) throw new Error(`${p.field}: ${p.found}`);
    return p.record;
  });
}

for (const backend of backends()) {
  describe(`CoordinatorAudit memory on ${backend.name}`, () => {
    afterAll(() => backend.cleanup());

    test('no record held between rounds, the open round\'s inside one; charges and Merkle roots as with the whole log', async () => {
      const fed = await makeFederation();
      const first = generateLog(fed, [{}, { drop: [{ party: 'insurer2', phase: 'mask' }] }, {}]);
      const { second, both } = appendSecondPolicyRun(fed, first);
      const stored = recordsOf(both.bytes);
      expect(stored.length).toBeGreaterThan(40);
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db);
        await repo.appendAuditRecords({ emit: () => stored });

        let now = 1_769_000_000_000;
        const clock = () => (now += 1000);
        const audit = await CoordinatorAudit.open(repo, fed.coordinator.secretKey, clock);
        expect(audit.head().idx).toBe(stored.length - 1);
        expect(audit.heldRecords()).toBe(0); // every round of the log is closed

        // the charges rebuilt page by page = the whole-log replay, whichever policy's recorder asks
        const whole = AuditRecorder.replay(second, fed.coordinator.secretKey, both.bytes);
        const parties = fed.policy.parties.map((p) => p.name);
        for (const p of [fed.policy, second]) {
          const rec = audit.recorderFor(p);
          for (const party of parties) expect([party, rec.state.ledger.epsilon(party, 1e-6)]).toEqual([party, whole.state.ledger.epsilon(party, 1e-6)]);
        }
        expect(whole.state.ledger.epsilon('platform', 1e-6)).toBeGreaterThan(0);

        // a round opened and its masked inputs charged: only its records are held
        const open = (a: CoordinatorAudit) =>
          a.write(() => repo.appendAuditRecords({ emit: () => [a.recorderFor(second).startRound({ runId: 'run-3', round: 1, secaggRound: 1, baseModelVersion: both.modelVersion, parties }), a.recorderFor(second).phase('mask', parties)] }));
        await open(audit);
        expect(audit.heldRecords()).toBe(2);

        // a restarted coordinator holds the same, and completes the round with the same entry as a
        // recorder that replayed the whole stored log
        const restarted = await CoordinatorAudit.open(repo, fed.coordinator.secretKey, clock);
        expect(restarted.heldRecords()).toBe(2);
        const all = await repo.auditEntries(0, 100_000);
        const text = new TextEncoder().encode(all.map((r) => JSON.stringify({ entry: JSON.parse(Buffer.from(r.entry).toString()), idx: r.idx, prevHash: Buffer.from(r.prevHash).toString('hex'), signature: Buffer.from(r.signature).toString('base64') }) + '\n').join(''));
        const at = now + 5000;
        const reference = AuditRecorder.replay(second, fed.coordinator.secretKey, text, () => at);
        const done = { survivors: parties, aggregateHash: 'cd'.repeat(32), modelVersion: both.modelVersion + 1, modelHash: 'ef'.repeat(32) };
        const expected = reference.completeRound(done);
        const restartedAt = await CoordinatorAudit.open(repo, fed.coordinator.secretKey, () => at);
        let got: AuditRecord | null = null;
        await restartedAt.write(() => repo.appendAuditRecords({ emit: () => [(got = restartedAt.recorderFor(second).completeRound(done))] }));
        expect(Buffer.from(got!.entry).toString()).toBe(Buffer.from(expected.entry).toString());
        expect(JSON.parse(Buffer.from(got!.entry).toString()).merkle.count).toBe(2); // round-started and the mask phase
        expect(restartedAt.heldRecords()).toBe(0);
        expect((await CoordinatorAudit.open(repo, fed.coordinator.secretKey)).heldRecords()).toBe(0);
      } finally {
        await db.close();
      }
    });

    test('a failed transaction takes back what it appended and charged, without reading the log again; a chain conflict does read it', async () => {
      const fed = await makeFederation();
      const log = generateLog(fed, [{}, {}]);
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db);
        await repo.appendAuditRecords({ emit: () => recordsOf(log.bytes) });
        const audit = await CoordinatorAudit.open(repo, fed.coordinator.secretKey);
        const parties = fed.policy.parties.map((p) => p.name);
        const rec = () => audit.recorderFor(fed.policy);
        await audit.write(() => repo.appendAuditRecords({ emit: () => [rec().startRound({ runId: 'run-2', round: 1, secaggRound: 1, baseModelVersion: log.modelVersion, parties })] }));
        const eps = rec().state.ledger.epsilon('platform', 1e-6);
        const head = audit.head();
        const reads = jest.spyOn(repo, 'auditEntries');
        // the mask phase is appended (charging every party in memory), then the transaction fails
        await expect(
          audit.write(() =>
            repo.db.transaction(async (tx) => {
              await repo.insertAuditRecords(tx, [rec().phase('mask', parties)]);
              throw new Error('disk full');
            }),
          ),
        ).rejects.toThrow('disk full');
        expect(reads).not.toHaveBeenCalled();
        expect(audit.head()).toEqual(head);
        expect(audit.heldRecords()).toBe(1);
        expect(rec().state.ledger.epsilon('platform', 1e-6)).toBe(eps);
        expect(rec().state.round?.charged).toEqual([]);
        // the same phase again: stored, charged once
        await audit.write(() => repo.appendAuditRecords({ emit: () => [rec().phase('mask', parties)] }));
        const charged = rec().state.ledger.epsilon('platform', 1e-6);
        expect(charged).toBeGreaterThan(eps);
        const reopened = await CoordinatorAudit.open(repo, fed.coordinator.secretKey);
        expect(reopened.recorderFor(fed.policy).state.ledger.epsilon('platform', 1e-6)).toBe(charged);
        // another writer appends: this one's next insert does not continue the stored chain
        // (ConflictError), and only then is the log read
        await reopened.write(() => repo.appendAuditRecords({ emit: () => [reopened.recorderFor(fed.policy).phase('share', parties)] }));
        await expect(audit.write(() => repo.appendAuditRecords({ emit: () => [rec().phase('share', parties)] }))).rejects.toThrow(ConflictError);
        expect(reads).toHaveBeenCalled();
        expect(audit.head()).toEqual(reopened.head());
        expect(rec().state.ledger.epsilon('platform', 1e-6)).toBe(charged);
        reads.mockRestore();
      } finally {
        await db.close();
      }
    });
  });
}
