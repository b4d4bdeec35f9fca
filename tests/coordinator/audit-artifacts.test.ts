/**
 * The audit API's artifact downloads over real HTTP, on a coordinator running real secure-aggregation
 * rounds over gRPC (two parties driven by MiniNode, SQLite): GET /audit/v1/models/{version} and GET
 * /audit/v1/runs/{runId}/rounds/{round}/aggregate, and what GET .../server-view answers for a policy
 * that does not set audit.auditorServerView (tests/coordinator/audit-server-view.test.ts: one that does).
 *
 * With a policy that sets audit.auditorArtifacts: true, the initial model and every round's model
 * download byte-identical to what is stored and hash to the logged initialModelHash / modelHash; each
 * round's aggregate is the sum mod 2^32 of the parties' inputs (computed here from them) and hashes to
 * the logged aggregateHash. Without the field, or with it false, both answer 403 naming the field.
 * Without audit.auditorServerView the coordinator keeps no server view (its SecAggServer no copies
 * of the masked inputs, its store none) and the server view answers 403 naming that field.
 * Only auditor tokens open them (401 otherwise); malformed path parameters are 400, unknown or
 * unavailable artifacts 404, damaged stored bytes 500 (and the server goes on).
 */
import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { RunningCoordinator } from '../../coordinator/main';
import type { SecAggProtocolFactory } from '../../coordinator/rounds/secagg-protocol';
import { modularSum } from '../../shared/fl/aggregate';
import { sodium } from '../../shared/crypto/sodium';
import type { Policy } from '../../shared/policy/schema';
import { AUDIT_OPENAPI_FILE } from '../../coordinator/http/audit.controller';
import { OPERATOR_TOKEN, policyYaml, signaturesFor, startRun, testPolicy, unary, type TestParty } from './helpers/harness';
import type { MiniNode } from './helpers/mini-node';
import { blake, startArtifactRun, u32le, type ArtifactRun } from './helpers/artifact-run';
import { PG_URL, pgSchemaUrl, requirePgInCi } from './helpers/db';


for (const backend of PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const)) describe(`audit API (${backend}): model and aggregate downloads`, () => {
  let run: ArtifactRun;
  let pg: { url: string; drop: () => Promise<void> } | null = null;
  let coord: RunningCoordinator;
  let op: ArtifactRun['op'];
  let parties: TestParty[];
  let nodes: MiniNode[];
  let policy: Policy;
  let initial: Float32Array;
  let runId: string;
  let get: ArtifactRun['get'];
  let token: string;

  beforeAll(async () => {
    // a run of two real SecAgg rounds whose policy releases its models and aggregates to auditors
    requirePgInCi();
    pg = backend === 'postgres' ? await pgSchemaUrl(PG_URL, 'art') : null;
    run = await startArtifactRun({ auditorArtifacts: true }, 'replay', pg ? { databaseUrl: pg.url } : {});
    ({ coord, op, parties, nodes, policy, initial, runId, get, token } = run);
  }, 120_000);

  afterAll(async () => {
    await run?.close();
    await pg?.drop();
  });

  /** The run's entries as the audit API exports them. */
  const logged = async (type: string, run = runId) => {
    const page = await get('/audit/v1/log?from=0&limit=10000');
    expect(page.status).toBe(200);
    return page.text.trim().split('\n').map((l) => JSON.parse(l).entry).filter((e) => e.type === type && e.runId === run);
  };
  const expectDownload = (a: Awaited<ReturnType<typeof get>>) => {
    expect({ status: a.status, type: a.h('content-type'), cache: a.h('cache-control') }).toEqual({ status: 200, type: 'application/octet-stream', cache: 'no-store' });
    expect([a.h('x-content-type-options'), a.h('x-frame-options'), a.h('referrer-policy'), a.h('x-powered-by')]).toEqual(['nosniff', 'DENY', 'no-referrer', null]);
    expect(a.h('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
    expect(a.h('x-fedbridge-blake2b-256')).toBe(blake(a.body));
  };
  const startUndriven = async (p: Policy) => {
    const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(p), signatures: signaturesFor(p, parties) }, new Uint8Array(initial.buffer));
    const [started] = await logged('run-started', st.runId);
    return { runId: st.runId, initialModelVersion: started.initialModelVersion as number };
  };
  const abort = (id: string) => unary(op.client.abortRun.bind(op.client), { runId: id, reason: 'test over' }, op.metadata);

  test('the initial model and every round\'s model download as stored and hash to the logged initialModelHash and modelHash', async () => {
    const [started] = await logged('run-started');
    const init = await get(`/audit/v1/models/${started.initialModelVersion}`);
    expectDownload(init);
    expect(init.body.equals(Buffer.from(initial.buffer))).toBe(true);
    expect(blake(init.body)).toBe(started.initialModelHash);

    const completed = await logged('round-completed');
    expect(completed.map((e) => e.round)).toEqual([1, 2]);
    let parent = started.initialModelVersion;
    for (const e of completed) {
      expect(e.parentModelVersion).toBe(parent);
      const m = await get(`/audit/v1/models/${e.modelVersion}`);
      expectDownload(m);
      expect(m.body.equals(Buffer.from((await coord.ctx.repo.modelVersion(e.modelVersion))!.bytes))).toBe(true);
      expect(m.body.length).toBe(initial.length * 4);
      expect(blake(m.body)).toBe(e.modelHash);
      parent = e.modelVersion;
    }
  });

  test('each round\'s aggregate is the sum mod 2^32 of the parties\' inputs and hashes to the logged aggregateHash', async () => {
    for (const e of await logged('round-completed')) {
      const a = await get(`/audit/v1/runs/${runId}/rounds/${e.round}/aggregate`);
      expectDownload(a);
      expect(blake(a.body)).toBe(e.aggregateHash);
      expect(a.body.equals(u32le(modularSum(nodes.map((n) => n.input(e.round)), 32)))).toBe(true);
      expect(a.body.equals(Buffer.from((await coord.ctx.repo.roundAggregate(runId, e.round))!))).toBe(true);
      // the policy does not set audit.auditorServerView: no view was kept, and none is served
      expect(await coord.ctx.repo.roundServerView(runId, e.round)).toBeNull();
      expect(await get(`/audit/v1/runs/${runId}/rounds/${e.round}/server-view`).then((r) => [r.status, r.text])).toEqual([
        403,
        `run ${runId}'s policy does not release the server view to auditors (policy audit.auditorServerView)\n`,
      ]);
    }
  });

  test('only an auditor token opens them: none, a wrong one, the operator token and another scheme are 401', async () => {
    const paths = ['/audit/v1/models/1', `/audit/v1/runs/${runId}/rounds/1/aggregate`, `/audit/v1/runs/${runId}/rounds/1/server-view`];
    for (const p of paths) {
      for (const auth of [null, 'Bearer fbt_not-a-token', `Bearer ${OPERATOR_TOKEN}`, `Basic ${token}`, token]) {
        const r = await get(p, auth);
        expect([p, auth, r.status, r.text]).toEqual([p, auth, 401, 'an auditor bearer token is required (fedbridge coordinator tokens issue --role auditor)\n']);
        expect(r.h('www-authenticate')).toBe('Bearer realm="fedbridge-audit"');
        expect(r.h('x-fedbridge-blake2b-256')).toBeNull();
        expect(r.h('x-content-type-options')).toBe('nosniff');
      }
      // even a malformed path is checked for the token first
      expect((await get(p.replace('/1', '/abc'), null)).status).toBe(401);
    }
  });

  test('a malformed version, round or run id is 400 with a one-line reason', async () => {
    for (const bad of ['abc', '-1', '+1', '01x', '1.0', '1e3', ' 1', '12345678901234567', '9007199254740992']) {
      const m = await get(`/audit/v1/models/${encodeURIComponent(bad)}`);
      expect([bad, m.status, m.text]).toEqual([bad, 400, expect.stringMatching(/^the version in the path must be a non-negative decimal integer \(digits only, at most 16, no sign\), got ".*"\n$/)]);
      for (const what of ['aggregate', 'server-view']) {
        const a = await get(`/audit/v1/runs/${runId}/rounds/${encodeURIComponent(bad)}/${what}`);
        expect([bad, what, a.status, a.text]).toEqual([bad, what, 400, expect.stringMatching(/^the round in the path must be a non-negative decimal integer \(digits only, at most 16, no sign\), got ".*"\n$/)]);
        expect(a.h('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
      }
    }
    const long = await get(`/audit/v1/runs/${'r'.repeat(129)}/rounds/1/aggregate`);
    expect([long.status, long.text]).toEqual([400, 'the run id in the path must be 1 to 128 characters (as audit entries carry it), got 129\n']);
    // 128 characters is a run id: just not one of this coordinator
    const unknownRun = 'r'.repeat(128);
    expect(await get(`/audit/v1/runs/${unknownRun}/rounds/1/aggregate`).then((r) => [r.status, r.text])).toEqual([404, `no run "${unknownRun}" on this coordinator\n`]);
  });

  test('unknown versions, runs and rounds are 404 with the reason', async () => {
    const latest = await coord.ctx.repo.latestModelVersionNumber();
    expect(await get(`/audit/v1/models/${latest + 1}`).then((r) => [r.status, r.text])).toEqual([404, `no model version ${latest + 1} on this coordinator\n`]);
    expect(await get('/audit/v1/models/0').then((r) => [r.status, r.text])).toEqual([404, 'no model version 0 on this coordinator\n']);
    expect(await get(`/audit/v1/runs/${runId}/rounds/3/aggregate`).then((r) => [r.status, r.text])).toEqual([404, `run ${runId} has no round 3\n`]);
    expect(await get(`/audit/v1/runs/${runId}/rounds/0/aggregate`).then((r) => [r.status, r.text])).toEqual([404, `run ${runId} has no round 0\n`]);
    expect(await get('/audit/v1/runs/run-nope/rounds/1/aggregate').then((r) => [r.status, r.text])).toEqual([404, 'no run "run-nope" on this coordinator\n']);
  });

  test('a run whose policy lacks audit.auditorArtifacts, or sets it false: 403 for its models and aggregates, naming the field; other runs are unaffected', async () => {
    for (const setting of [undefined, false]) {
      const p = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 2 });
      if (setting !== undefined) p.audit = { auditorArtifacts: setting };
      const other = await startUndriven(p);
      const why = `run ${other.runId}'s policy does not release models and aggregates to auditors (policy audit.auditorArtifacts)\n`;
      try {
        const m = await get(`/audit/v1/models/${other.initialModelVersion}`);
        expect([m.status, m.text]).toEqual([403, `model version ${other.initialModelVersion} belongs to run ${other.runId}, and ${why}`]);
        expect([m.h('x-content-type-options'), m.h('content-security-policy'), m.h('x-fedbridge-blake2b-256')]).toEqual(['nosniff', "default-src 'none'; frame-ancestors 'none'", null]);
        // the round exists (open) or not: the policy is checked first
        for (const r of [1, 2]) expect(await get(`/audit/v1/runs/${other.runId}/rounds/${r}/aggregate`).then((x) => [x.status, x.text])).toEqual([403, why]);
      } finally {
        await abort(other.runId);
      }
      expect(await get(`/audit/v1/runs/${other.runId}/rounds/1/aggregate`).then((x) => x.status)).toBe(403);
      // the first run's artifacts are still released
      expect((await get(`/audit/v1/runs/${runId}/rounds/1/aggregate`)).status).toBe(200);
      const [started] = await logged('run-started');
      expect((await get(`/audit/v1/models/${started.initialModelVersion}`)).status).toBe(200);
    }
  });

  test('only a policy with audit.auditorServerView makes the round\'s SecAggServer keep copies of the masked inputs', async () => {
    const roundServer = (id: string) => (coord.ctx.rounds['d'].factory as SecAggProtocolFactory).created.find((x) => x['start'].runId === id && x['start'].round === 1)!.server;
    for (const audit of [{ auditorArtifacts: true }, { auditorArtifacts: true, auditorServerView: true }]) {
      const p = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 2 });
      p.audit = audit;
      const open = await startUndriven(p);
      try {
        // its first round is open (advertise): the copies' map exists from the start, or never
        expect([audit, roundServer(open.runId)['keptInputs']]).toEqual([audit, audit.auditorServerView ? new Map() : undefined]);
        if (audit.auditorServerView) {
          expect(await get(`/audit/v1/runs/${open.runId}/rounds/1/server-view`).then((r) => [r.status, r.text])).toEqual([404, `round 1 of run ${open.runId} is open, not completed: only a completed round has a server view\n`]);
        }
      } finally {
        await abort(open.runId);
      }
    }
  });

  test('a round not completed (open, aborted) or completed without a stored aggregate is 404 with the reason', async () => {
    const p = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 2 });
    p.audit = { auditorArtifacts: true };
    // a second run of the first run's policy
    const open = await startUndriven(p);
    try {
      expect((await get(`/audit/v1/models/${open.initialModelVersion}`)).body.equals(Buffer.from(initial.buffer))).toBe(true);
      expect(await get(`/audit/v1/runs/${open.runId}/rounds/1/aggregate`).then((r) => [r.status, r.text])).toEqual([404, `round 1 of run ${open.runId} is open, not completed: only a completed round has an aggregate\n`]);
    } finally {
      await abort(open.runId);
    }
    expect(await get(`/audit/v1/runs/${open.runId}/rounds/1/aggregate`).then((r) => [r.status, r.text])).toEqual([404, `round 1 of run ${open.runId} is aborted, not completed: only a completed round has an aggregate\n`]);
    // a round completed before the coordinator kept aggregates (migration 6): its columns are NULL
    const db = coord.ctx.repo.db;
    const [kept] = await db.query('SELECT aggregate, aggregate_hash FROM rounds WHERE run_id = ? AND round = 2', [runId]);
    try {
      await db.query('UPDATE rounds SET aggregate = NULL, aggregate_hash = NULL WHERE run_id = ? AND round = 2', [runId]);
      expect(await get(`/audit/v1/runs/${runId}/rounds/2/aggregate`).then((r) => [r.status, r.text])).toEqual([
        404,
        `round 2 of run ${runId} was completed without a stored aggregate (completed before this coordinator kept aggregates, storage migration 6, or by a round protocol that exposes none)\n`,
      ]);
    } finally {
      await db.query('UPDATE rounds SET aggregate = ?, aggregate_hash = ? WHERE run_id = ? AND round = 2', [kept.aggregate as Uint8Array, kept.aggregate_hash as Uint8Array, runId]);
    }
    expect((await get(`/audit/v1/runs/${runId}/rounds/2/aggregate`)).status).toBe(200);
  });

  test('damaged stored bytes are refused (500, what to do) and the server goes on; a model version of no run is 404', async () => {
    const db = coord.ctx.repo.db;
    const [row] = await db.query('SELECT aggregate FROM rounds WHERE run_id = ? AND round = 1', [runId]);
    const good = new Uint8Array(row.aggregate as Uint8Array);
    const bad = new Uint8Array(good);
    bad[7] ^= 0x10;
    try {
      await db.query('UPDATE rounds SET aggregate = ? WHERE run_id = ? AND round = 1', [bad, runId]);
      const r = await get(`/audit/v1/runs/${runId}/rounds/1/aggregate`);
      expect([r.status, r.text]).toEqual([500, expect.stringMatching(new RegExp(`^the aggregate of round ${runId}/1 is damaged in the coordinator's store: .*restore the store from a backup`))]);
      expect([r.h('x-content-type-options'), r.h('x-fedbridge-blake2b-256')]).toEqual(['nosniff', null]);
    } finally {
      await db.query('UPDATE rounds SET aggregate = ? WHERE run_id = ? AND round = 1', [good, runId]);
    }
    const [completed] = await logged('round-completed');
    const [m] = await db.query('SELECT bytes FROM model_versions WHERE version = ?', [completed.modelVersion]);
    const bytes = new Uint8Array(m.bytes as Uint8Array);
    try {
      const flipped = new Uint8Array(bytes);
      flipped[0] ^= 1;
      await db.query('UPDATE model_versions SET bytes = ? WHERE version = ?', [flipped, completed.modelVersion]);
      const r = await get(`/audit/v1/models/${completed.modelVersion}`);
      expect([r.status, r.text]).toEqual([500, expect.stringMatching(new RegExp(`^model version ${completed.modelVersion} is damaged in the coordinator's store`))]);
    } finally {
      await db.query('UPDATE model_versions SET bytes = ? WHERE version = ?', [bytes, completed.modelVersion]);
    }
    expectDownload(await get(`/audit/v1/runs/${runId}/rounds/1/aggregate`));
    expectDownload(await get(`/audit/v1/models/${completed.modelVersion}`));

    // a stored policy that no longer hashes to the run's policy hash releases nothing
    const run = (await coord.ctx.repo.run(runId))!;
    const [pol] = await db.query('SELECT canonical_json FROM policies WHERE hash = ?', [run.policyHash]);
    try {
      await db.query('UPDATE policies SET canonical_json = ? WHERE hash = ?', [String(pol.canonical_json).replace('"auditorArtifacts":true', '"auditorArtifacts":true '), run.policyHash]);
      const r = await get(`/audit/v1/runs/${runId}/rounds/1/aggregate`);
      expect([r.status, r.text]).toEqual([500, `the stored policy of run ${runId} does not hash to its policy hash ${run.policyHash} (the one its parties signed): it is damaged in the coordinator's store; restore the store from a backup\n`]);
    } finally {
      await db.query('UPDATE policies SET canonical_json = ? WHERE hash = ?', [String(pol.canonical_json), run.policyHash]);
    }

    // a version stored with no run that no run starts from (not something the coordinator writes)
    const orphan = (await coord.ctx.repo.latestModelVersionNumber()) + 1;
    const z = new Uint8Array(8);
    await db.query('INSERT INTO model_versions (version, hash, bytes, parent, run_id, round, created_at) VALUES (?, ?, ?, NULL, NULL, NULL, ?)', [orphan, sodium().crypto_generichash(32, z, null), z, Date.now()]);
    expect(await get(`/audit/v1/models/${orphan}`).then((r) => [r.status, r.text])).toEqual([404, `model version ${orphan} belongs to no run (neither produced by a round nor the initial model of a run)\n`]);
  });

  test('the OpenAPI description lists the three downloads with their parameters, answers and the hash header', async () => {
    const served = await get('/audit/openapi.yaml', null);
    expect(served.text).toBe(fs.readFileSync(AUDIT_OPENAPI_FILE, 'utf8'));
    const doc = parseYaml(served.text);
    const model = doc.paths['/audit/v1/models/{version}'].get;
    const agg = doc.paths['/audit/v1/runs/{runId}/rounds/{round}/aggregate'].get;
    const view = doc.paths['/audit/v1/runs/{runId}/rounds/{round}/server-view'].get;
    expect(model.parameters.map((p: { name: string; in: string }) => [p.name, p.in])).toEqual([['version', 'path']]);
    for (const [op, type] of [[model, 'application/octet-stream'], [agg, 'application/octet-stream'], [view, 'application/json']]) {
      expect(Object.keys(op.responses).sort()).toEqual(['200', '400', '401', '403', '404', '500', '503']);
      expect(Object.keys(op.responses['200'].content)).toEqual([type]);
      expect(Object.keys(op.responses['200'].headers)).toEqual(['X-Fedbridge-Blake2b-256']);
    }
    expect(doc.components.headers.Blake2b256.schema.pattern).toBe('^[0-9a-f]{64}$');
    // what failed() answers on every API path: damaged or failing store 500, store unavailable 503 with Retry-After
    for (const p of ['/audit/v1/log', '/audit/v1/head', '/audit/v1/models/{version}', '/audit/v1/runs/{runId}/rounds/{round}/aggregate', '/audit/v1/runs/{runId}/rounds/{round}/server-view']) {
      expect([p, doc.paths[p].get.responses['500'], doc.paths[p].get.responses['503']]).toEqual([p, { $ref: '#/components/responses/StoreFailed' }, { $ref: '#/components/responses/StoreUnavailable' }]);
    }
    expect(Object.keys(doc.components.responses.StoreUnavailable.headers)).toEqual(['Retry-After']);
    for (const op of [agg, view]) {
      expect(op.parameters.map((p: { name: string; in: string }) => [p.name, p.in])).toEqual([['runId', 'path'], ['round', 'path']]);
      // the run id's limits are the audit entries' own
      expect(op.parameters[0].schema).toEqual({ type: 'string', minLength: 1, maxLength: 128 });
    }
  });
});
