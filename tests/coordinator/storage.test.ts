import { sodium, sodiumReady } from '../../shared/crypto/sodium';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { coordinatorSealer, verifyAuditChain } from '../../coordinator/audit/log';
import { migrate, MIGRATIONS, MigrationError } from '../../coordinator/storage/migrations';
import { ConflictError, Repository, StoredDataDamaged } from '../../coordinator/storage/repository';
import { SqliteDriver } from '../../coordinator/storage/sql';
import { backends, PG_URL, requirePgInCi, sqliteBackend } from './helpers/db';

beforeAll(async () => {
  await sodiumReady();
});

test('CI runs the PostgreSQL storage tests for real (URL present when CI=true)', () => {
  expect(() => requirePgInCi()).not.toThrow();
  if (process.env.CI === 'true') expect(PG_URL).toMatch(/^postgres(ql)?:\/\//);
});

const hash32 = (b: number) => new Uint8Array(32).fill(b);

for (const backend of backends()) {
  describe(`storage on ${backend.name}`, () => {
    afterAll(() => backend.cleanup());
    const coord = () => ed25519Keygen();

    test('migrations apply once, are recorded, and a second run applies nothing', async () => {
      const db = await backend.open();
      try {
        expect(await migrate(db)).toEqual(MIGRATIONS.map((m) => m.version));
        expect(await migrate(db)).toEqual([]);
        const rows = await db.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations ORDER BY version');
        expect(rows.map((r) => [Number(r.version), r.name])).toEqual(MIGRATIONS.map((m) => [m.version, m.name]));
      } finally {
        await db.close();
      }
    });

    test('a database written by a newer coordinator is refused', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        await db.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [999, 'from the future', 1]);
        await expect(migrate(db)).rejects.toThrow(MigrationError);
        await expect(migrate(db)).rejects.toThrow(/migration 999/);
      } finally {
        await db.close();
      }
    });

    test('a store whose tables exist without schema_migrations (restored without it) is refused with what to do, and left as it was', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        await db.execScript('DROP TABLE schema_migrations');
        // before: the driver's "table participants already exists" (or "relation ... already exists")
        await expect(migrate(db)).rejects.toThrow(MigrationError);
        await expect(migrate(db)).rejects.toThrow(/has the coordinator's tables \(audit_log, model_versions, participants, policies, rounds, runs, tokens\) but no record of their migrations \(table schema_migrations is missing\).*nothing was changed\. Restore schema_migrations from the same backup/);
        await db.execScript('CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
        await expect(migrate(db)).rejects.toThrow(/table schema_migrations is empty/);
        await db.execScript('DROP TABLE schema_migrations');
        await expect(db.query('SELECT COUNT(*) AS n FROM participants')).resolves.toEqual([{ n: 0 }]);
        // not re-created (asked of the catalogue, as migrate itself does)
        const catalogue = db.dialect === 'postgres' ? "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_migrations'" : "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'";
        expect(await db.query(catalogue)).toEqual([]);
      } finally {
        await db.close();
      }
    });

    test('participants: enrol, look up by name and key, duplicates refused without writing', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db, () => 1000);
        const sealer = coordinatorSealer(coord().secretKey);
        const a = ed25519Keygen();
        await repo.enrollParticipant({ name: 'platform', publicKey: a.publicKey }, sealer);
        expect((await repo.participantByName('platform'))?.publicKey).toEqual(a.publicKey);
        expect((await repo.participantByKey(a.publicKey))?.name).toBe('platform');
        expect(await repo.participantByKey(ed25519Keygen().publicKey)).toBeNull();
        const before = await repo.snapshotCounts();
        await expect(repo.enrollParticipant({ name: 'platform', publicKey: ed25519Keygen().publicKey }, sealer)).rejects.toThrow(ConflictError);
        await expect(repo.enrollParticipant({ name: 'other', publicKey: a.publicKey }, sealer)).rejects.toThrow(ConflictError);
        expect(await repo.snapshotCounts()).toEqual(before); // the audit entry rolled back with the insert
      } finally {
        await db.close();
      }
    });

    test('run lifecycle: model versions dense and linked, a round never produces two versions, audit chain verifies', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        let t = 0;
        const repo = new Repository(db, () => ++t);
        const ck = coord();
        const sealer = coordinatorSealer(ck.secretKey);
        await repo.enrollParticipant({ name: 'platform', publicKey: hash32(1) }, sealer); // the signer
        const started = await repo.startRun({
          runId: 'run-1',
          policyHash: 'ab'.repeat(32),
          canonicalPolicyJson: '{"x":1}',
          signatures: [{ party: 'platform', publicKey: hash32(1), signature: new Uint8Array(64).fill(2) }],
          roundsPlanned: 2,
          initialModel: { bytes: new Uint8Array([1, 2, 3]), hash: hash32(7) },
          firstRound: { state: 'collecting', phase: 'advertise_keys', phaseDeadline: 99 },
          sealer,
        });
        expect(started.modelVersion).toBe(1);
        await expect(
          repo.startRun({ runId: 'run-2', policyHash: 'ab'.repeat(32), canonicalPolicyJson: '{"x":1}', signatures: [], roundsPlanned: 1, initialModel: { bytes: new Uint8Array(1), hash: hash32(1) }, firstRound: { state: 'collecting', phase: null, phaseDeadline: null }, sealer }),
        ).rejects.toThrow(/still running/);

        const r1 = await repo.completeRound({ runId: 'run-1', round: 1, model: { bytes: new Uint8Array([4, 5]), hash: hash32(8) }, audit: { survivors: ['platform'] }, next: { state: 'collecting', phase: 'advertise_keys', phaseDeadline: 5 }, sealer });
        expect(r1).toEqual({ modelVersion: 2, nextRound: 2 });
        const before = await repo.snapshotCounts();
        await expect(repo.completeRound({ runId: 'run-1', round: 1, model: { bytes: new Uint8Array([9]), hash: hash32(9) }, audit: {}, next: null, sealer })).rejects.toThrow(ConflictError);
        expect(await repo.snapshotCounts()).toEqual(before);

        // abort round 2 and retry from the same base model
        const ab = await repo.abortRound({ runId: 'run-1', round: 2, reason: 'too few survivors', retry: { state: 'collecting', phase: 'advertise_keys', phaseDeadline: 7 }, abortRun: false, sealer });
        expect(ab.nextRound).toBe(3);
        expect((await repo.roundRow('run-1', 3))?.baseModelVersion).toBe(2);
        expect((await repo.roundRow('run-1', 2))?.abortReason).toBe('too few survivors');

        const r3 = await repo.completeRound({ runId: 'run-1', round: 3, model: { bytes: new Uint8Array([6]), hash: sodium().crypto_generichash(32, new Uint8Array([6]), null) }, audit: {}, next: null, sealer });
        expect(r3).toEqual({ modelVersion: 3, nextRound: null });
        expect((await repo.run('run-1'))?.state).toBe('completed');
        const m3 = await repo.modelVersion(3);
        expect(m3?.parent).toBe(2);
        expect(m3?.bytes).toEqual(new Uint8Array([6]));
        expect(m3?.hash).toEqual(sodium().crypto_generichash(32, new Uint8Array([6]), null));

        const entries = await repo.auditEntries();
        expect(entries.map((e) => JSON.parse(Buffer.from(e.entry).toString()).type)).toEqual([
          'participant-enrolled', 'policy-registered', 'run-started', 'round-completed', 'round-aborted', 'round-completed', 'run-completed',
        ]);
        expect(verifyAuditChain(entries, ck.publicKey).failures).toEqual([]);
        // a flipped byte anywhere in a stored entry is caught at that entry
        const tampered = entries.map((e) => ({ ...e, entry: new Uint8Array(e.entry) }));
        tampered[2].entry[5] ^= 1;
        const f = verifyAuditChain(tampered, ck.publicKey).failures;
        expect(f.length).toBeGreaterThan(0);
        expect(f[0].entry).toBe(2);
      } finally {
        await db.close();
      }
    });

    test('a failed transaction writes nothing; concurrent completions of one round store exactly one version', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db);
        const sealer = coordinatorSealer(coord().secretKey);
        await repo.startRun({ runId: 'r', policyHash: 'cd'.repeat(32), canonicalPolicyJson: '{}', signatures: [], roundsPlanned: 5, initialModel: { bytes: new Uint8Array(4), hash: hash32(0) }, firstRound: { state: 'collecting', phase: 'advertise_keys', phaseDeadline: null }, sealer });
        const before = await repo.snapshotCounts();
        await expect(db.transaction(async (tx) => {
          await tx.query('INSERT INTO tokens (id, role, token_hash, label, created_at) VALUES (?, ?, ?, ?, ?)', ['t1', 'auditor', hash32(3), 'x', 1]);
          throw new Error('boom');
        })).rejects.toThrow('boom');
        expect(await repo.snapshotCounts()).toEqual(before);

        const attempts = await Promise.allSettled([1, 2, 3].map((i) =>
          repo.completeRound({ runId: 'r', round: 1, model: { bytes: new Uint8Array([i]), hash: hash32(i) }, audit: {}, next: { state: 'collecting', phase: 'advertise_keys', phaseDeadline: null }, sealer })));
        expect(attempts.filter((a) => a.status === 'fulfilled')).toHaveLength(1);
        expect(await repo.countModelVersions()).toBe(2);
        const rows = await db.query("SELECT COUNT(*) AS n FROM model_versions WHERE run_id = 'r' AND round = 1");
        expect(Number(rows[0].n)).toBe(1);
      } finally {
        await db.close();
      }
    });

    test('tokens: listed oldest first; revoked once, with its audit entry, and then not found by hash; unknown or already revoked changes nothing', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        let now = 1000;
        const repo = new Repository(db, () => now);
        const key = coord();
        const sealer = coordinatorSealer(key.secretKey);
        await repo.insertToken({ id: 'tok-bbbbbbbbbbbb', role: 'auditor', tokenHash: hash32(1), label: 'first' }, sealer);
        now = 2000;
        await repo.insertToken({ id: 'tok-aaaaaaaaaaaa', role: 'auditor', tokenHash: hash32(2), label: 'second' }, sealer);
        expect((await repo.listTokens()).map((t) => [t.id, t.createdAt, t.revokedAt])).toEqual([['tok-bbbbbbbbbbbb', 1000, null], ['tok-aaaaaaaaaaaa', 2000, null]]);

        const before = await repo.snapshotCounts();
        expect(await repo.revokeToken('tok-000000000000', 'no such token', sealer)).toEqual({ outcome: 'unknown' });
        expect(await repo.snapshotCounts()).toEqual(before);

        now = 3000;
        // two revocations at once: exactly one revokes (and writes one audit entry), the other finds it revoked
        const both = await Promise.all([repo.revokeToken('tok-bbbbbbbbbbbb', 'left', sealer), repo.revokeToken('tok-bbbbbbbbbbbb', 'left', sealer)]);
        expect(both.map((r) => r.outcome).sort()).toEqual(['already-revoked', 'revoked']);
        expect(await repo.tokenByHash(hash32(1))).toBeNull();
        expect((await repo.tokenByHash(hash32(2)))?.id).toBe('tok-aaaaaaaaaaaa');
        expect((await repo.listTokens()).map((t) => [t.id, t.revokedAt])).toEqual([['tok-bbbbbbbbbbbb', 3000], ['tok-aaaaaaaaaaaa', null]]);
        const after = await repo.snapshotCounts();
        expect(after).toEqual({ ...before, audit_log: before.audit_log + 1 });
        const log = await repo.auditEntries();
        expect(JSON.parse(Buffer.from(log[log.length - 1].entry).toString('utf8'))).toMatchObject({ type: 'token-revoked', tokenId: 'tok-bbbbbbbbbbbb', reason: 'left', at: 3000 });
        expect(verifyAuditChain(log, key.publicKey).failures).toEqual([]);

        now = 4000;
        expect(await repo.revokeToken('tok-bbbbbbbbbbbb', 'again', sealer)).toMatchObject({ outcome: 'already-revoked', row: { revokedAt: 3000 } });
        expect(await repo.snapshotCounts()).toEqual(after);

        // expiry: found by hash until its time (this store's clock), not at or after it
        await repo.insertToken({ id: 'tok-cccccccccccc', role: 'auditor', tokenHash: hash32(3), label: 'a day', expiresInMs: 86_400_000 }, sealer);
        expect((await repo.listTokens()).find((t) => t.id === 'tok-cccccccccccc')?.expiresAt).toBe(4000 + 86_400_000);
        now = 4000 + 86_400_000 - 1;
        expect((await repo.tokenByHash(hash32(3)))?.id).toBe('tok-cccccccccccc');
        now = 4000 + 86_400_000;
        expect(await repo.tokenByHash(hash32(3))).toBeNull();
        expect((await repo.tokenByHash(hash32(2)))?.id).toBe('tok-aaaaaaaaaaaa'); // no expiry
      } finally {
        await db.close();
      }
    });

    test('participants: removed with its audit entry, not during a run; a run whose signer was removed meanwhile does not start; the name may be enrolled again', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db, () => 5000);
        const key = coord();
        const sealer = coordinatorSealer(key.secretKey);
        const a = ed25519Keygen();
        const b = ed25519Keygen();
        await repo.enrollParticipant({ name: 'platform', publicKey: a.publicKey }, sealer);
        await repo.enrollParticipant({ name: 'insurer2', publicKey: b.publicKey }, sealer);
        const sig = (party: string, publicKey: Uint8Array) => ({ party, publicKey, signature: new Uint8Array(64).fill(1) });
        const start = (runId: string, signatures: ReturnType<typeof sig>[]) =>
          repo.startRun({ runId, policyHash: 'ef'.repeat(32), canonicalPolicyJson: '{}', signatures, roundsPlanned: 1, initialModel: { bytes: new Uint8Array(4), hash: hash32(4) }, firstRound: { state: 'open', phase: 'advertise', phaseDeadline: null }, sealer });
        await start('run-1', [sig('platform', a.publicKey), sig('insurer2', b.publicKey)]);

        let before = await repo.snapshotCounts();
        expect(await repo.removeParticipant('insurer2', 'left', sealer)).toEqual({ outcome: 'running', runId: 'run-1' });
        expect(await repo.removeParticipant('nobody', 'x', sealer)).toEqual({ outcome: 'unknown' });
        expect(await repo.snapshotCounts()).toEqual(before);
        await repo.abortRunOnly('run-1', 'test', sealer);

        before = await repo.snapshotCounts();
        const removed = await repo.removeParticipant('insurer2', 'left', sealer);
        expect(removed).toMatchObject({ outcome: 'removed', row: { name: 'insurer2' } });
        expect(await repo.participantByName('insurer2')).toBeNull();
        expect(await repo.participantByKey(b.publicKey)).toBeNull();
        expect((await repo.listParticipants()).map((p) => p.name)).toEqual(['platform']);
        expect(await repo.snapshotCounts()).toEqual({ ...before, participants: before.participants - 1, audit_log: before.audit_log + 1 });
        const log = await repo.auditEntries();
        expect(JSON.parse(Buffer.from(log[log.length - 1].entry).toString('utf8'))).toEqual(expect.objectContaining({ type: 'participant-removed', name: 'insurer2', publicKey: Buffer.from(b.publicKey).toString('base64'), reason: 'left' }));
        expect(verifyAuditChain(log, key.publicKey).failures).toEqual([]);

        // a run whose signatures were checked before the removal committed: refused in its own transaction, nothing written
        before = await repo.snapshotCounts();
        await expect(start('run-2', [sig('platform', a.publicKey), sig('insurer2', b.publicKey)])).rejects.toThrow(/party "insurer2" was removed or enrolled again while the run was starting/);
        await expect(start('run-2', [sig('platform', b.publicKey)])).rejects.toThrow(/party "platform" was removed or enrolled again/);
        expect(await repo.snapshotCounts()).toEqual(before);
        // enrolled again, with a new key; the run without the removed party starts
        await repo.enrollParticipant({ name: 'insurer2', publicKey: ed25519Keygen().publicKey }, sealer);
        await start('run-3', [sig('platform', a.publicKey)]);
        expect((await repo.runningRun())?.id).toBe('run-3');
      } finally {
        await db.close();
      }
    });

    test('round aggregates: stored with the round\'s completion, returned byte-identical, none for an open round, damage caught on read', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db);
        const sealer = coordinatorSealer(coord().secretKey);
        await repo.startRun({ runId: 'agg', policyHash: '12'.repeat(32), canonicalPolicyJson: '{}', signatures: [], roundsPlanned: 3, initialModel: { bytes: new Uint8Array(8), hash: hash32(0) }, firstRound: { state: 'open', phase: 'advertise', phaseDeadline: null }, sealer });
        const next = { state: 'open', phase: 'advertise', phaseDeadline: null };
        // every byte value, and zeros at both ends (a driver that trims or re-encodes would show)
        const sum = new Uint8Array(1024).map((_, i) => (i * 7 + 3) & 0xff);
        sum[0] = 0;
        sum[sum.length - 1] = 0;
        expect(await repo.roundAggregate('agg', 1)).toBeNull(); // open
        await repo.completeRound({ runId: 'agg', round: 1, model: { bytes: new Uint8Array([1]), hash: hash32(1) }, aggregate: sum, audit: {}, next, sealer });
        const got = await repo.roundAggregate('agg', 1);
        expect(got).toBeInstanceOf(Uint8Array);
        expect(Buffer.from(got!).equals(Buffer.from(sum))).toBe(true);
        const [stored] = await db.query('SELECT aggregate_hash FROM rounds WHERE run_id = ? AND round = ?', ['agg', 1]);
        expect(Buffer.from(stored.aggregate_hash as Uint8Array).equals(Buffer.from(sodium().crypto_generichash(32, sum, null)))).toBe(true);
        expect(await repo.roundAggregate('agg', 2)).toBeNull(); // open, the next round
        expect(await repo.roundAggregate('agg', 9)).toBeNull(); // no such round
        expect(await repo.roundAggregate('nope', 1)).toBeNull(); // no such run
        // a round completed without one (a protocol that exposes none): null, nothing stored
        await repo.completeRound({ runId: 'agg', round: 2, model: { bytes: new Uint8Array([2]), hash: hash32(2) }, audit: {}, next, sealer });
        expect(await repo.roundAggregate('agg', 2)).toBeNull();
        expect(await db.query('SELECT aggregate, aggregate_hash FROM rounds WHERE run_id = ? AND round = ?', ['agg', 2])).toEqual([{ aggregate: null, aggregate_hash: null }]);
        // an aborted round has none either
        await repo.abortRound({ runId: 'agg', round: 3, reason: 'test', retry: null, abortRun: true, sealer });
        expect(await repo.roundAggregate('agg', 3)).toBeNull();

        // one flipped byte in the stored aggregate: refused on read, with what to do
        const flipped = new Uint8Array(sum);
        flipped[500] ^= 1;
        await db.query('UPDATE rounds SET aggregate = ? WHERE run_id = ? AND round = ?', [flipped, 'agg', 1]);
        await expect(repo.roundAggregate('agg', 1)).rejects.toThrow(StoredDataDamaged);
        await expect(repo.roundAggregate('agg', 1)).rejects.toThrow(/^the aggregate of round agg\/1 is damaged in the coordinator's store: the hash of its 1024 stored aggregate bytes is not its stored hash [0-9a-f]{64}; restore the store from a backup/);
        // a truncated one, and one whose hash is gone
        await db.query('UPDATE rounds SET aggregate = ? WHERE run_id = ? AND round = ?', [sum.subarray(0, 1000), 'agg', 1]);
        await expect(repo.roundAggregate('agg', 1)).rejects.toThrow(/hash of its 1000 stored aggregate bytes is not its stored hash/);
        await db.query('UPDATE rounds SET aggregate = ?, aggregate_hash = NULL WHERE run_id = ? AND round = ?', [sum, 'agg', 1]);
        await expect(repo.roundAggregate('agg', 1)).rejects.toThrow(/round agg\/1 is damaged .*its aggregate has no stored hash/);
        await db.query('UPDATE rounds SET aggregate = NULL, aggregate_hash = ? WHERE run_id = ? AND round = ?', [sodium().crypto_generichash(32, sum, null), 'agg', 1]);
        await expect(repo.roundAggregate('agg', 1)).rejects.toThrow(/round agg\/1 is damaged .*its aggregate is missing but its hash is stored/);
      } finally {
        await db.close();
      }
    });

    test('round server views: stored with the round\'s completion next to its aggregate, returned byte-identical, damage caught on read', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db);
        const sealer = coordinatorSealer(coord().secretKey);
        await repo.startRun({ runId: 'sv', policyHash: '56'.repeat(32), canonicalPolicyJson: '{}', signatures: [], roundsPlanned: 2, initialModel: { bytes: new Uint8Array(8), hash: hash32(0) }, firstRound: { state: 'open', phase: 'advertise', phaseDeadline: null }, sealer });
        const view = new TextEncoder().encode('{"format":"fedbridge-server-view/1","maskKeys":{},"maskedInputs":{"a":"AAAAAA=="},"selfMaskSeeds":{}}');
        expect(await repo.roundServerView('sv', 1)).toBeNull(); // open
        await repo.completeRound({ runId: 'sv', round: 1, model: { bytes: new Uint8Array([1]), hash: hash32(1) }, aggregate: new Uint8Array(4), serverView: view, audit: {}, next: { state: 'open', phase: 'advertise', phaseDeadline: null }, sealer });
        expect(Buffer.from((await repo.roundServerView('sv', 1))!).equals(Buffer.from(view))).toBe(true);
        expect(await repo.roundAggregate('sv', 1)).toEqual(new Uint8Array(4));
        // completed without one (its policy does not set audit.auditorServerView)
        await repo.completeRound({ runId: 'sv', round: 2, model: { bytes: new Uint8Array([2]), hash: hash32(2) }, aggregate: new Uint8Array(4), audit: {}, next: null, sealer });
        expect(await repo.roundServerView('sv', 2)).toBeNull();
        const flipped = new Uint8Array(view);
        flipped[3] ^= 1;
        await db.query('UPDATE rounds SET server_view = ? WHERE run_id = ? AND round = ?', [flipped, 'sv', 1]);
        await expect(repo.roundServerView('sv', 1)).rejects.toThrow(/^the server view of round sv\/1 is damaged in the coordinator's store: the hash of its \d+ stored server view bytes is not its stored hash [0-9a-f]{64}; restore the store from a backup/);
        await db.query('UPDATE rounds SET server_view = NULL WHERE run_id = ? AND round = ?', ['sv', 1]);
        await expect(repo.roundServerView('sv', 1)).rejects.toThrow(/its server view is missing but its hash is stored/);
        // the aggregate of the same row is untouched by the view's damage
        expect(await repo.roundAggregate('sv', 1)).toEqual(new Uint8Array(4));
      } finally {
        await db.close();
      }
    });

    test('migration 6 (round aggregates) applies to a store at migration 5 with completed rounds: they keep their models and have no aggregate', async () => {
      const db = await backend.open();
      try {
        expect(await migrate(db, MIGRATIONS.filter((m) => m.version <= 5))).toEqual([1, 2, 3, 4, 5]);
        const repo = new Repository(db, () => 1000);
        const sealer = coordinatorSealer(coord().secretKey);
        const initial = new Uint8Array([1, 2, 3, 4]);
        await repo.startRun({ runId: 'old', policyHash: '34'.repeat(32), canonicalPolicyJson: '{}', signatures: [], roundsPlanned: 2, initialModel: { bytes: initial, hash: sodium().crypto_generichash(32, initial, null) }, firstRound: { state: 'open', phase: 'advertise', phaseDeadline: null }, sealer });
        // round 1 completed and round 2 open, as a coordinator at migration 5 wrote them
        const m2 = new Uint8Array([5, 6, 7, 8]);
        await db.query('INSERT INTO model_versions (version, hash, bytes, parent, run_id, round, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)', [2, sodium().crypto_generichash(32, m2, null), m2, 1, 'old', 1, 1000]);
        await db.query("UPDATE rounds SET state = 'completed', phase = NULL, result_model_version = 2, finished_at = 1000 WHERE run_id = 'old' AND round = 1");
        await db.query("INSERT INTO rounds (run_id, round, state, phase, base_model_version, started_at) VALUES ('old', 2, 'open', 'advertise', 2, 1000)");

        expect(await migrate(db)).toEqual([6, 7]);
        expect((await db.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations WHERE version = 6')).map((r) => [Number(r.version), r.name])).toEqual([[6, 'round aggregates']]);
        expect(await db.query("SELECT round, aggregate, aggregate_hash FROM rounds WHERE run_id = 'old' ORDER BY round")).toEqual([
          { round: expect.anything(), aggregate: null, aggregate_hash: null },
          { round: expect.anything(), aggregate: null, aggregate_hash: null },
        ]);
        expect(await repo.roundAggregate('old', 1)).toBeNull();
        expect(await repo.roundServerView('old', 1)).toBeNull(); // migration 7 (server views): none either
        expect((await repo.roundRow('old', 1))?.state).toBe('completed');
        expect((await repo.modelVersion(2))?.bytes).toEqual(m2);
        // the open round completes on the new schema with its aggregate
        const sum = new Uint8Array([9, 0, 0, 0, 255, 255, 255, 255]);
        await repo.completeRound({ runId: 'old', round: 2, model: { bytes: new Uint8Array([1]), hash: hash32(1) }, aggregate: sum, audit: {}, next: null, sealer });
        expect(await repo.roundAggregate('old', 2)).toEqual(sum);
        expect(await migrate(db)).toEqual([]);
      } finally {
        await db.close();
      }
    });

    test('data survives closing and reopening the store', async () => {
      const key = `reopen${Date.now().toString(36)}`;
      let db = await backend.open(key);
      await migrate(db);
      const kp = ed25519Keygen();
      await new Repository(db).enrollParticipant({ name: 'insurer', publicKey: kp.publicKey, certSha256: 'aa'.repeat(32) });
      await db.close();
      db = await backend.open(key);
      try {
        expect(await migrate(db)).toEqual([]);
        const p = await new Repository(db).participantByName('insurer');
        expect(p?.publicKey).toEqual(kp.publicKey);
        expect(p?.certSha256).toBe('aa'.repeat(32));
      } finally {
        await db.close();
      }
    });
  });
}

describe('SQLite transaction errors', () => {
  const backend = sqliteBackend();
  afterAll(() => backend.cleanup());

  test('a statement that fails inside transaction() after SQLite rolled back itself (SQLITE_FULL) surfaces as itself, and the store goes on', async () => {
    const db = (await backend.open()) as SqliteDriver;
    try {
      await db.query('CREATE TABLE t (b BLOB)');
      // "disk full": the connection may not grow the file past 2 more pages
      const raw = (db as unknown as { db: { pragma(s: string, o?: { simple: boolean }): unknown } }).db;
      raw.pragma(`max_page_count = ${Number(raw.pragma('page_count', { simple: true })) + 2}`);
      const e = await db.transaction(async (tx) => tx.query('INSERT INTO t VALUES (?)', [new Uint8Array(100_000)])).then(() => null, (err: unknown) => err as Error & { code?: string });
      // before: "cannot rollback - no transaction is active" from the ROLLBACK, hiding SQLITE_FULL
      expect(e?.code).toBe('SQLITE_FULL');
      expect(e?.message).toMatch(/full/);
      raw.pragma('max_page_count = 1073741823');
      await db.transaction(async (tx) => tx.query('INSERT INTO t VALUES (?)', [new Uint8Array(10)]));
      expect(await db.query('SELECT COUNT(*) AS n FROM t')).toEqual([{ n: 1 }]);
      // an ordinary failure still rolls back what the transaction wrote
      await expect(db.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES (?)', [new Uint8Array(1)]);
        throw new Error('boom');
      })).rejects.toThrow('boom');
      expect(await db.query('SELECT COUNT(*) AS n FROM t')).toEqual([{ n: 1 }]);
    } finally {
      await db.close();
    }
  });
});
