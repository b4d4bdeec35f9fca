/**
 * Round orchestration over real gRPC: a party dropping at the masked-input deadline, aborts with
 * retry from the same model, operator abort, restart recovery (the round in flight is aborted
 * cleanly and retried; nothing stored is lost or duplicated), /healthz and /metrics.
 */
import * as http from 'node:http';
import { EventKind, Phase } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { verifyAuditChain } from '../../coordinator/audit/log';
import type { RunningCoordinator } from '../../coordinator/main';
import { LEGAL_MOVES } from '../../coordinator/rounds/rounds.service';
import { PlainSumFactory } from './helpers/plain-protocol';
import { enrol, makeEnv, ManualTimers, modelDim, operator, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, unary, until, type Env, type EventStream } from './helpers/harness';
import { PG_URL } from './helpers/db';

const vec = (dim: number, x: number) => new Uint8Array(new Float32Array(dim).fill(x).buffer);

function get(port: number, path: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
    }).on('error', reject);
  });
}

async function phaseThrough(streams: EventStream[], parties: TestParty[], runId: string, round: number, dim: number, opts: { skipMask?: string[]; values?: number[] } = {}) {
  // (run, round, phase) identifies one PHASE_STARTED event per party
  const wait = (ph: Phase, who = streams) => Promise.all(who.map((s) => s.next((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === round && e.phase === ph && e.runId === runId)));
  await wait(Phase.PHASE_ADVERTISE_KEYS);
  await Promise.all(parties.map((p) => p.phase('AdvertiseKeys', runId, round, new Uint8Array([1]))));
  await wait(Phase.PHASE_SHARE_KEYS);
  await Promise.all(parties.map((p) => p.phase('ShareKeys', runId, round, new Uint8Array([2]))));
  await wait(Phase.PHASE_MASKED_INPUT);
  const senders = parties.filter((p) => !(opts.skipMask ?? []).includes(p.name));
  await Promise.all(senders.map((p) => p.upload(runId, round, vec(dim, opts.values?.[parties.indexOf(p)] ?? 1))));
  return senders;
}

describe('round orchestration', () => {
  test('the legal-move table: every (stage, target) pair is legal exactly as documented', () => {
    const order = ['advertise', 'share', 'mask', 'consistency', 'unmask'] as const;
    const stages = [...order, 'completed', 'aborted'] as const;
    for (const from of stages) {
      for (const to of stages) {
        const i = order.indexOf(from as (typeof order)[number]);
        const legal = (i >= 0 && to === 'aborted') || (i >= 0 && i < 4 && to === order[i + 1]) || (from === 'unmask' && to === 'completed');
        expect([from, to, LEGAL_MOVES[from].includes(to)]).toEqual([from, to, legal]);
      }
    }
  });

  for (const backend of PG_URL ? ['sqlite', 'postgres'] : ['sqlite']) {
    describe(`on ${backend}`, () => {
      let env: Env;
      let coord: RunningCoordinator;
      let timers: ManualTimers;
      let factory: PlainSumFactory;
      let parties: TestParty[];
      let streams: EventStream[];
      let dim: number;
      let runId: string;
      let policy: ReturnType<typeof testPolicy>;

      beforeAll(async () => {
        env = await makeEnv(['platform', 'insurer', 'insurer2'], backend === 'postgres' ? { databaseUrl: PG_URL } : {});
        if (backend === 'postgres') {
          // a fresh schema for this test file
          env.configInput.storage.databaseUrl = await freshPgSchemaUrl(PG_URL);
        }
        timers = new ManualTimers();
        factory = new PlainSumFactory(2);
        coord = await startCoordinator(env, factory, timers);
        parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort));
        const op = operator(env, coord.grpcPort);
        await enrol(env, op, parties, false);
        op.client.close();
        policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 3 });
        dim = modelDim(policy);
        streams = parties.map((p) => p.subscribe(coord.publicKey));
      });
      afterAll(async () => {
        for (const s of streams ?? []) s.cancel();
        for (const p of parties ?? []) p.close();
        await coord?.close();
      });

      test('a party that misses the masked-input deadline is dropped; the survivors\' mean becomes the model', async () => {
        const op = operator(env, coord.grpcPort);
        const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, vec(dim, 0));
        runId = st.runId;
        await phaseThrough(streams, parties, runId, 1, dim, { skipMask: ['insurer2'], values: [1, 3, 100] });
        expect(timers.fire()).toBe(1); // the masked-input deadline passes
        const cons = await streams[0].next((e) => e.phase === Phase.PHASE_CONSISTENCY_CHECK && e.round === 1);
        expect(cons.parties.sort()).toEqual(['insurer', 'platform']);
        // the dropped party is not expected any more: its late message is refused
        await expect(parties[2].phase('ConsistencyCheck', runId, 1, new Uint8Array([1]))).rejects.toMatchObject({ code: 7 });
        await Promise.all(parties.slice(0, 2).map((p) => p.phase('ConsistencyCheck', runId, 1, new Uint8Array([1]))));
        await streams[0].next((e) => e.phase === Phase.PHASE_UNMASKING && e.round === 1);
        await Promise.all(parties.slice(0, 2).map((p) => p.phase('Unmasking', runId, 1, new Uint8Array([1]))));
        const done = await streams[2].next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1);
        const m = await parties[0].download(done.modelVersion);
        expect(Array.from(new Float32Array(m.data.buffer, m.data.byteOffset, 3))).toEqual([2, 2, 2]); // (1 + 3) / 2
        const metrics = await get(coord.httpPort, '/metrics');
        expect(metrics.type).toMatch(/text\/plain/);
        expect(metrics.body).toMatch(/fedbridge_dropouts_total\{phase="mask"\} 1/);
        expect(metrics.body).toMatch(/fedbridge_rounds_total\{outcome="completed"\} 1/);
        expect(metrics.body).toMatch(/fedbridge_phase_duration_seconds_count\{phase="advertise"\} 1/);
        expect(metrics.body).toMatch(/fedbridge_bytes_received_total\{kind="upload"\} \d+/);
        op.client.close();
      });

      test('too few survivors abort the round; the next round starts from the same model', async () => {
        await phaseThrough(streams, parties, runId, 2, dim, { skipMask: ['insurer', 'insurer2'] });
        expect(timers.fire()).toBe(1);
        const ab = await streams[1].next((e) => e.kind === EventKind.EVENT_KIND_ROUND_ABORTED && e.round === 2);
        expect(ab.abortReason).toMatch(/only 1 parties sent/);
        const next = await streams[1].next((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === 3);
        expect(next.modelVersion).toBe(ab.modelVersion); // same base model
        const r3 = await coord.ctx.repo.roundRow(runId, 3);
        const r2 = await coord.ctx.repo.roundRow(runId, 2);
        expect(r3?.baseModelVersion).toBe(r2?.baseModelVersion);
        expect(r2?.state).toBe('aborted');
      });

      test('a restart in the middle of a round aborts it cleanly and retries from the same model; nothing is lost or duplicated', async () => {
        await phaseThrough(streams, parties, runId, 3, dim, { skipMask: ['insurer2'] }); // round 3 is now in masked input
        const before = await coord.ctx.repo.snapshotCounts();
        const modelsBefore = await coord.ctx.repo.countModelVersions();
        for (const s of streams) s.cancel();
        await coord.close();
        timers = new ManualTimers();
        coord = await startCoordinator(env, factory, timers);
        const repo = coord.ctx.repo;
        expect(await repo.countModelVersions()).toBe(modelsBefore);
        const r3 = await repo.roundRow(runId, 3);
        expect(r3?.state).toBe('aborted');
        expect(r3?.abortReason).toMatch(/coordinator restarted during round 3 \(phase mask\)/);
        const r4 = await repo.roundRow(runId, 4);
        expect(r4?.state).toBe('open');
        expect(r4?.baseModelVersion).toBe(r3?.baseModelVersion);
        const after = await repo.snapshotCounts();
        expect(after.participants).toBe(before.participants);
        expect(after.rounds).toBe(before.rounds + 1);
        expect((await repo.listParticipants()).map((p) => p.name)).toEqual(['insurer', 'insurer2', 'platform']);
        // parties reconnect (new port) and finish the run
        for (const p of parties) p.close();
        parties = parties.map((p) => new TestParty(p.name, env, coord.grpcPort, { keys: p.keys }));
        streams = parties.map((p) => p.subscribe(coord.publicKey));
        const hello = await streams[0].next(() => true);
        expect(hello.round).toBe(4);
        await phaseThrough(streams, parties, runId, 4, dim, { values: [1, 1, 1] });
        for (const [m, ph] of [['ConsistencyCheck', Phase.PHASE_CONSISTENCY_CHECK], ['Unmasking', Phase.PHASE_UNMASKING]] as const) {
          await streams[0].next((e) => e.phase === ph && e.round === 4);
          await Promise.all(parties.map((p) => p.phase(m, runId, 4, new Uint8Array([1]))));
        }
        await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 4);
        expect(await repo.countModelVersions()).toBe(modelsBefore + 1);
        const versions = await coord.ctx.repo.db.query('SELECT version, parent, round FROM model_versions ORDER BY version');
        expect(versions.map((v) => [Number(v.version), v.parent === null ? null : Number(v.parent), v.round === null ? null : Number(v.round)])).toEqual([
          [1, null, null],
          [2, 1, 1],
          [3, 2, 4],
        ]);
        expect(verifyAuditChain(await repo.auditEntries(), coord.publicKey).failures).toEqual([]);
        const health = await get(coord.httpPort, '/healthz');
        expect(health.status).toBe(200);
        expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', federationId: 'fb-test', storage: backend });
      });

      test('operator abort ends the run and tells every subscriber', async () => {
        const op = operator(env, coord.grpcPort);
        const st = await unary(op.client.getRunStatus.bind(op.client), { runId: '' }, op.metadata);
        expect(st.state).toBe('running');
        expect(st.roundsCompleted).toBe(2);
        const ab = await unary(op.client.abortRun.bind(op.client), { runId: st.runId, reason: 'maintenance' }, op.metadata);
        expect(ab.state).toBe('aborted');
        expect(ab.abortReason).toBe('operator: maintenance');
        const fin = await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
        expect(fin.abortReason).toBe('operator: maintenance');
        expect(timers.count).toBe(0);
        op.client.close();
      });
    });
  }
});

const pgSchemas: string[] = [];
afterAll(async () => {
  if (!pgSchemas.length) return;
  const { PostgresDriver } = await import('../../coordinator/storage/sql');
  const d = await PostgresDriver.connect(PG_URL);
  for (const s of pgSchemas) await d.execScript(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  await d.close();
});

async function freshPgSchemaUrl(url: string): Promise<string> {
  const { PostgresDriver } = await import('../../coordinator/storage/sql');
  const schema = `t_rounds_${Date.now().toString(36)}`;
  pgSchemas.push(schema);
  const d = await PostgresDriver.connect(url, { schema });
  await d.close();
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

describe('a round the protocol refuses to start', () => {
  test('aborts the run cleanly instead of leaving it open; a later run can start', async () => {
    const env = await makeEnv(['platform', 'insurer']);
    const plain = new PlainSumFactory(2);
    let refuse = true;
    const factory = {
      create: (start: Parameters<PlainSumFactory['create']>[0]) => {
        if (refuse) throw new Error('threshold rule cannot hold for this roster');
        return plain.create(start);
      },
    };
    const coord = await startCoordinator(env, factory, new ManualTimers());
    const parties = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
    try {
      const op = operator(env, coord.grpcPort);
      await enrol(env, op, parties, false);
      const policy = testPolicy(parties, coord.publicKey, { numItems: 50 });
      const dim = modelDim(policy);
      const req = { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) };
      const e = await startRun(op.client, op.metadata, req, vec(dim, 0)).then(() => null, (err) => err);
      expect(e?.code).toBe(9);
      expect(e?.details).toMatch(/was aborted: the round protocol refused to start round 1: threshold rule cannot hold/);
      const st = await unary(op.client.getRunStatus.bind(op.client), { runId: '' }, op.metadata);
      expect(st.state).toBe('aborted');
      expect(st.currentRound?.state).toBe('aborted');
      expect(coord.ctx.rounds.binding()).toBeNull();
      refuse = false;
      const ok = await startRun(op.client, op.metadata, req, vec(dim, 0));
      expect(ok.state).toBe('running');
      expect(verifyAuditChain(await coord.ctx.repo.auditEntries(), coord.publicKey).failures).toEqual([]);
      op.client.close();
    } finally {
      for (const p of parties) p.close();
      await coord.close();
    }
  });
});

describe('a storage failure while a phase closes', () => {
  test('aborts the round (the protocol has moved on in memory) and retries it from the same model; an abort that cannot be stored is tried again', async () => {
    const env = await makeEnv(['platform', 'insurer', 'insurer2']);
    const timers = new ManualTimers();
    const logs: string[] = [];
    const coord = await startCoordinator(env, new PlainSumFactory(2), timers, logs);
    const parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort));
    const streams: EventStream[] = [];
    try {
      const op = operator(env, coord.grpcPort);
      await enrol(env, op, parties, false);
      const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
      const dim = modelDim(policy);
      streams.push(...parties.map((p) => p.subscribe(coord.publicKey)));
      const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, vec(dim, 0));
      op.client.close();
      await Promise.all(streams.map((s) => s.next((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === 1)));
      await parties[0].phase('AdvertiseKeys', st.runId, 1, new Uint8Array([1]));
      await parties[1].phase('AdvertiseKeys', st.runId, 1, new Uint8Array([1]));

      // the store refuses the phase change once, then the abort twice (a transient lock): two
      // failed attempts to store ONE abort are one aborted round, not three (maxConsecutiveAborts
      // is 3: counting each attempt aborted the whole run)
      const repo = coord.ctx.repo;
      const busy = () => Promise.reject(Object.assign(new Error('SQLITE_BUSY: database is locked'), { code: 'SQLITE_BUSY' }));
      const { setRoundPhase, abortRound } = repo;
      let phaseFailures = 1;
      let abortFailures = 2;
      repo.setRoundPhase = ((...a: Parameters<typeof setRoundPhase>) => (phaseFailures-- > 0 ? busy() : setRoundPhase.apply(repo, a))) as typeof setRoundPhase;
      repo.abortRound = ((...a: Parameters<typeof abortRound>) => (abortFailures-- > 0 ? busy() : abortRound.apply(repo, a))) as typeof abortRound;

      expect(timers.fire()).toBe(1); // the advertise deadline passes without insurer2
      await until('the failed abort is logged', () => logs.some((l) => /the abort could not be stored either \(SQLITE_BUSY/.test(l)));
      expect(timers.count).toBe(1); // the abort is re-armed, nothing else
      expect(coord.ctx.rounds.binding()?.round).toBe(1);
      // meanwhile the round takes no message for the phase the protocol moved to
      await expect(parties[0].phase('ShareKeys', st.runId, 1, new Uint8Array([2]))).rejects.toMatchObject({ code: 9 });

      expect(timers.fire()).toBe(1); // the second attempt fails too
      await until('the second failed abort is logged', () => logs.filter((l) => /the abort could not be stored either/.test(l)).length === 2);
      expect(timers.count).toBe(1);
      expect(timers.fire()).toBe(1);
      const ab = await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_ROUND_ABORTED && e.round === 1);
      expect(ab.abortReason).toMatch(/coordinator storage failed closing phase advertise: SQLITE_BUSY/);
      expect(ab.abortReason).not.toMatch(/consecutive aborted rounds/);
      const retry = await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === 2);
      expect(retry.phase).toBe(Phase.PHASE_ADVERTISE_KEYS);
      expect(retry.modelVersion).toBe(ab.modelVersion); // same base model
      expect((await coord.ctx.repo.roundRow(st.runId, 1))?.state).toBe('aborted');
      expect(coord.ctx.rounds.binding()).toMatchObject({ round: 2, phase: 'advertise' });
      expect(verifyAuditChain(await coord.ctx.repo.auditEntries(), coord.publicKey).failures).toEqual([]);
    } finally {
      for (const s of streams) s.cancel();
      for (const p of parties) p.close();
      await coord.close();
    }
  });
});
