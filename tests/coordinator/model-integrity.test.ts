/**
 * A model version whose stored bytes no longer match its stored hash (damaged disk, bad restore,
 * edited database) is never handed out nor built on (real gRPC with mutual TLS, real SQLite, and
 * PostgreSQL when a URL is configured):
 *   - DownloadModel answers DATA_LOSS naming the version (before: the damaged bytes, under the
 *     stored valid hash), and changes nothing;
 *   - a round whose base model is damaged does not open: a coordinator restarting on such a store
 *     aborts the run with a reason naming the version (before: the round protocol took the damaged
 *     bytes as its base, and later versions carried the damage under fresh valid hashes);
 *   - the round-protocol state stored with a version (FedAdam moments) is checked the same way.
 */
import { sodium, sodiumReady } from '../../shared/crypto/sodium';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { coordinatorSealer } from '../../coordinator/audit/log';
import type { RunningCoordinator } from '../../coordinator/main';
import { migrate } from '../../coordinator/storage/migrations';
import { Repository, StoredDataDamaged } from '../../coordinator/storage/repository';
import { PlainSumFactory } from './helpers/plain-protocol';
import { backends, PG_URL } from './helpers/db';
import { enrol, grpc, makeEnv, ManualTimers, modelDim, operator, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, unary } from './helpers/harness';

const h = (b: Uint8Array) => sodium().crypto_generichash(32, b, null);

beforeAll(async () => {
  await sodiumReady();
});

for (const backend of backends()) {
  describe(`stored model integrity on ${backend.name}`, () => {
    afterAll(() => backend.cleanup());

    test('damaged model bytes or protocol state are refused on read (StoredDataDamaged naming the version); intact rows read as stored', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db);
        const sealer = coordinatorSealer(ed25519Keygen().secretKey);
        const initial = new Uint8Array([1, 2, 3, 4]);
        await repo.startRun({ runId: 'r', policyHash: 'ab'.repeat(32), canonicalPolicyJson: '{}', signatures: [], roundsPlanned: 3, initialModel: { bytes: initial, hash: h(initial) }, firstRound: { state: 'open', phase: 'advertise', phaseDeadline: null }, sealer });
        const next = new Uint8Array([5, 6, 7, 8]);
        const state = new Uint8Array([9, 9, 9]);
        await repo.completeRound({ runId: 'r', round: 1, model: { bytes: next, hash: h(next), protocolState: state }, audit: {}, next: { state: 'open', phase: 'advertise', phaseDeadline: null }, sealer });
        expect((await repo.modelVersion(2))?.protocolState).toEqual(state);

        await db.query('UPDATE model_versions SET bytes = ? WHERE version = ?', [new Uint8Array([1, 2, 3, 5]), 1]);
        await expect(repo.modelVersion(1)).rejects.toThrow(StoredDataDamaged);
        await expect(repo.modelVersion(1)).rejects.toThrow(/model version 1 is damaged in the coordinator's store/);
        expect((await repo.modelVersion(2))?.bytes).toEqual(next);

        await db.query('UPDATE model_versions SET protocol_state = ? WHERE version = ?', [new Uint8Array([9, 9, 8]), 2]);
        await expect(repo.modelVersion(2)).rejects.toThrow(/round-protocol state .* of model version 2 is damaged/);
        await expect(repo.latestModelVersion()).rejects.toThrow(StoredDataDamaged);
        await db.query('UPDATE model_versions SET protocol_state = NULL WHERE version = ?', [2]);
        await expect(repo.modelVersion(2)).rejects.toThrow(/model version 2 is damaged/); // a state that vanished is damage too
        expect(await repo.latestModelVersionNumber()).toBe(2); // the number alone reads no bytes
      } finally {
        await db.close();
      }
    });

    test('DownloadModel answers DATA_LOSS for a damaged version; a restart does not open a round on it and aborts the run, naming it', async () => {
      const env = await makeEnv(['platform', 'insurer'], PG_URL && backend.name === 'postgres' ? { databaseUrl: await pgUrlWithSchema(backend) } : {});
      let coord: RunningCoordinator = await startCoordinator(env, new PlainSumFactory(2), new ManualTimers());
      let parties = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
      try {
        const op = operator(env, coord.grpcPort);
        await enrol(env, op, parties);
        const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 2 });
        const model = new Float32Array(modelDim(policy)).fill(0.25);
        const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(model.buffer));
        op.client.close();

        // float 0 of the initial model (version 1) becomes 1e30; the stored hash stays
        const row = (await coord.ctx.repo.db.query('SELECT bytes FROM model_versions WHERE version = 1'))[0];
        const damaged = Buffer.from(row.bytes as Uint8Array);
        damaged.writeFloatLE(1e30, 0);
        await coord.ctx.repo.db.query('UPDATE model_versions SET bytes = ? WHERE version = 1', [damaged]);

        const before = await coord.ctx.repo.snapshotCounts();
        const e = await parties[0].download(1).then(() => null, (err) => err);
        expect(e?.code).toBe(grpc.status.DATA_LOSS);
        expect(e?.details).toMatch(/model version 1 is damaged in the coordinator's store: .*restore the store from a backup/);
        expect(await coord.ctx.repo.snapshotCounts()).toEqual(before);

        // a restart: the open round is aborted and retried from version 1, which is damaged
        for (const p of parties) p.close();
        await coord.close();
        coord = await startCoordinator(env, new PlainSumFactory(2), new ManualTimers());
        parties = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
        expect(coord.ctx.rounds.binding()).toBeNull(); // no round open on the damaged base
        const run = await coord.ctx.repo.run(st.runId);
        expect(run?.state).toBe('aborted');
        expect(run?.abortReason).toMatch(/round could not start: model version 1 is damaged in the coordinator's store/);
        expect(await coord.ctx.repo.countModelVersions()).toBe(1); // nothing built on it
        const op2 = operator(env, coord.grpcPort);
        const status = await unary(op2.client.getRunStatus.bind(op2.client), { runId: '' }, op2.metadata);
        expect(status).toMatchObject({ state: 'aborted', latestModelVersion: 1 });
        op2.client.close();
      } finally {
        for (const p of parties) p.close();
        await coord.close();
      }
    });
  });
}

/** A database URL whose search_path is a fresh schema of the PostgreSQL backend. */
async function pgUrlWithSchema(backend: { open(key?: string): Promise<{ close(): Promise<void> }> }): Promise<string> {
  const key = `mi${Date.now().toString(36)}`;
  await (await backend.open(key)).close(); // creates schema t_<key>, dropped by backend.cleanup()
  const u = new URL(PG_URL);
  u.searchParams.set('options', `-c search_path=t_${key}`);
  return u.toString();
}
