/**
 * The server view over real HTTP, on a coordinator running real secure-aggregation rounds over gRPC
 * (three parties driven by MiniNode; SQLite, and PostgreSQL where configured; insurer2 dies when round 1's masked input opens, after
 * sharing its keys, so round 1's view holds its reconstructed mask key, and round 2 runs without it),
 * under a policy that sets audit.auditorArtifacts and audit.auditorServerView: GET
 * /audit/v1/runs/{runId}/rounds/{round}/server-view gives what the coordinator unmasked with; its
 * masked inputs are the ones the parties signed (the log's digests), recomputeAggregate from it gives
 * the stored aggregate (the survivors' inputs' sum, computed here from them), and `audit export
 * --artifacts` + `audit verify --replay` (the CLI's functions) recompute every aggregate and model of
 * the run. Without auditorServerView nothing is kept (tests/coordinator/audit-artifacts.test.ts
 * checks that, and the 403).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import type { RunningCoordinator } from '../../coordinator/main';
import { Phase } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { modularSum } from '../../shared/fl/aggregate';
import { roundSecAggInfo } from '../../shared/fl/round-params';
import type { Policy } from '../../shared/policy/schema';
import { decodeServerView } from '../../shared/audit/server-view';
import { RoundContext } from '../../shared/secagg/round';
import { recomputeAggregate } from '../../shared/secagg/unmask';
import { fetchAuditArtifacts, fetchAuditLog, verifyLogFile } from '../../shared/cli/audit';
import { blake, startArtifactRun, u32le, type ArtifactRun } from './helpers/artifact-run';
import { PG_URL, pgSchemaUrl, requirePgInCi } from './helpers/db';


for (const backend of PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const)) describe(`audit API (${backend}): the server view, and the replay of a real run`, () => {
  let run: ArtifactRun;
  let pg: { url: string; drop: () => Promise<void> } | null = null;
  let coord: RunningCoordinator;
  let token: string;
  let base: string;
  let policy: Policy;
  let runId: string;
  let get: ArtifactRun['get'];

  beforeAll(async () => {
    requirePgInCi();
    pg = backend === 'postgres' ? await pgSchemaUrl(PG_URL, 'view') : null;
    run = await startArtifactRun({ auditorArtifacts: true, auditorServerView: true }, 'view', {
      ...(pg ? { databaseUrl: pg.url } : {}),
      names: ['platform', 'insurer', 'insurer2'],
      prepare: (nodes) => void (nodes[2].killAt = { round: 1, phase: Phase.PHASE_MASKED_INPUT }),
      drive: async (nodes, timers) => {
        // round 1: all advertise and share keys; insurer2 dies when masked input opens; the deadline drops it
        await Promise.all(nodes.slice(0, 2).map((n) => n.sentIn(1, Phase.PHASE_MASKED_INPUT)));
        expect(timers.fire()).toBe(1);
        // round 2 without insurer2: its advertise deadline passes, the two others complete the round
        await Promise.all(nodes.slice(0, 2).map((n) => n.sentIn(2, Phase.PHASE_ADVERTISE_KEYS)));
        expect(timers.fire()).toBe(1);
      },
    });
    ({ coord, token, base, policy, runId, get } = run);
  }, 120_000);

  afterAll(async () => {
    await run?.close();
    await pg?.drop();
  });

  const entries = async () => (await fetchAuditLog(base, token)).bytes.toString('utf8').trim().split('\n').map((l) => JSON.parse(l).entry);

  test('each round\'s server view: the parties\' signed masked inputs, from which the stored aggregate is recomputed', async () => {
    const log = await entries();
    const completed = log.filter((e) => e.type === 'round-completed' && e.runId === runId);
    expect(completed.map((e) => e.round)).toEqual([1, 2]);
    for (const done of completed) {
      const r = await get(`/audit/v1/runs/${runId}/rounds/${done.round}/server-view`);
      expect({ status: r.status, type: r.h('content-type'), cache: r.h('cache-control'), nosniff: r.h('x-content-type-options') }).toEqual({ status: 200, type: 'application/json', cache: 'no-store', nosniff: 'nosniff' });
      expect(r.h('x-fedbridge-blake2b-256')).toBe(blake(r.body));
      expect(done.serverViewHash).toBe(blake(r.body)); // the signed log pins the view's bytes
      expect(r.body.equals(Buffer.from((await coord.ctx.repo.roundServerView(runId, done.round))!))).toBe(true);
      const dec = decodeServerView(new Uint8Array(r.body));
      if (!dec.ok) throw new Error(dec.problem);
      const phase = (name: string) => log.find((e) => e.type === 'round-phase' && e.runId === runId && e.round === done.round && e.phase === name);
      // the masked inputs are those the parties signed, and each is what the MiniNode sent
      for (const m of phase('mask').maskedInputs) expect(blake(u32le(dec.view.maskedInputs.get(m.party)!))).toBe(m.digest);
      // round 1: insurer2 shared its keys and dropped, so its mask key was reconstructed; round 2: it never advertised
      expect([done.round, [...dec.view.maskedInputs.keys()].sort(), [...dec.view.maskKeys.keys()]]).toEqual([done.round, ['insurer', 'platform'], done.round === 1 ? ['insurer2'] : []]);
      expect(phase('share').parties).toEqual(done.round === 1 ? ['insurer', 'insurer2', 'platform'] : ['insurer', 'platform']);
      const ads = new Map<string, { sPk: Uint8Array; selfMaskCommitment: Uint8Array }>(
        phase('advertise').advertisements.map((a: { party: string; sPk: string; selfMaskCommitment: string }) => [a.party, { sPk: Buffer.from(a.sPk, 'base64'), selfMaskCommitment: Buffer.from(a.selfMaskCommitment, 'hex') }]),
      );
      const ctx = new RoundContext(roundSecAggInfo(policy, runId, done.round));
      const sum = recomputeAggregate(ctx, phase('share').parties, phase('mask').parties, ads, dec.view);
      if (!sum.ok) throw new Error(sum.problems.join('; '));
      expect(u32le(sum.sum).equals(Buffer.from((await coord.ctx.repo.roundAggregate(runId, done.round))!))).toBe(true);
      expect(blake(u32le(sum.sum))).toBe(done.aggregateHash);
      expect(u32le(sum.sum).equals(u32le(modularSum(run.nodes.slice(0, 2).map((n) => n.input(done.round)), 32)))).toBe(true); // the survivors' inputs
      if (done.round === 1) {
        // the dropped party's mask key is needed: without it the view does not recompute
        expect(recomputeAggregate(ctx, phase('share').parties, phase('mask').parties, ads, { ...dec.view, maskKeys: new Map() })).toEqual({
          ok: false,
          problems: ['mask keys of none, expected those of the dropped parties with a surviving neighbour: insurer2'],
        });
      }
    }
  });

  test('export --artifacts and verify --replay over the real run: every aggregate recomputed, every model replayed', async () => {
    const dir = path.join(run.env.dir, 'replay');
    const exported = await fetchAuditLog(base, token);
    const logFile = path.join(run.env.dir, 'audit.jsonl');
    fs.writeFileSync(logFile, exported.bytes);
    const policyFile = path.join(run.env.dir, 'view-policy.yaml');
    fs.writeFileSync(policyFile, stringify(policy));
    expect(await fetchAuditArtifacts(base, token, exported.bytes, dir)).toEqual({ models: 1, aggregates: 2, serverViews: 2, fetched: 5 });
    const res = await verifyLogFile(logFile, policyFile, [], dir);
    expect(res.failures).toEqual([]);
    expect(res.replay).toMatchObject({ replayed: 2, aggregatesRecomputed: 2 });
    expect(res.ok).toBe(true);
    // a second export fetches nothing: every file, the views included, matches its logged hash
    expect(await fetchAuditArtifacts(base, token, exported.bytes, dir)).toEqual({ models: 1, aggregates: 2, serverViews: 2, fetched: 0 });
    // a view file that is not the logged one (here: round 1's view in round 2's place) is named as such
    const view2 = path.join(dir, 'server-views', runId, '2.json');
    fs.copyFileSync(path.join(dir, 'server-views', runId, '1.json'), view2);
    const swapped = await verifyLogFile(logFile, policyFile, [], dir);
    const logged = (await entries()).find((e) => e.type === 'round-completed' && e.runId === runId && e.round === 2);
    expect(swapped.failures).toEqual([{ entry: expect.any(Number), field: 'replay.serverView.hash', expected: `${logged.serverViewHash} (the logged serverViewHash)`, found: blake(fs.readFileSync(view2)) }]);
    // and the next export puts the logged one back
    expect(await fetchAuditArtifacts(base, token, exported.bytes, dir)).toEqual({ models: 1, aggregates: 2, serverViews: 2, fetched: 1 });
    expect((await verifyLogFile(logFile, policyFile, [], dir)).ok).toBe(true);
  });

  test('the server view is an auditor-token download like the others; unknown rounds are 404', async () => {
    expect((await get(`/audit/v1/runs/${runId}/rounds/1/server-view`, null)).status).toBe(401);
    expect(await get(`/audit/v1/runs/${runId}/rounds/3/server-view`).then((r) => [r.status, r.text])).toEqual([404, `run ${runId} has no round 3\n`]);
    expect(await get(`/audit/v1/runs/${runId}/rounds/x/server-view`).then((r) => r.status)).toBe(400);
    // a round completed before migration 7 has no stored view
    const db = coord.ctx.repo.db;
    const [kept] = await db.query('SELECT server_view, server_view_hash FROM rounds WHERE run_id = ? AND round = 2', [runId]);
    try {
      await db.query('UPDATE rounds SET server_view = NULL, server_view_hash = NULL WHERE run_id = ? AND round = 2', [runId]);
      expect(await get(`/audit/v1/runs/${runId}/rounds/2/server-view`).then((r) => [r.status, r.text])).toEqual([
        404,
        `round 2 of run ${runId} was completed without a stored server view (completed before this coordinator kept server views, storage migration 7)\n`,
      ]);
      // a view without its hash is damage, not absence
      await db.query('UPDATE rounds SET server_view = ? WHERE run_id = ? AND round = 2', [kept.server_view as Uint8Array, runId]);
      expect(await get(`/audit/v1/runs/${runId}/rounds/2/server-view`).then((r) => [r.status, r.text])).toEqual([500, expect.stringMatching(/server view of round .* is damaged .*: its server view has no stored hash/)]);
    } finally {
      await db.query('UPDATE rounds SET server_view = ?, server_view_hash = ? WHERE run_id = ? AND round = 2', [kept.server_view as Uint8Array, kept.server_view_hash as Uint8Array, runId]);
    }
    expect((await get(`/audit/v1/runs/${runId}/rounds/2/server-view`)).status).toBe(200);
  });
});
