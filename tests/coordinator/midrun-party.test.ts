/**
 * A party enrolled while a run is running, outside that run's policy, over real gRPC with mutual
 * TLS (PlainSumFactory rounds):
 *   - DownloadModel of the run's models (the initial one, version 0 = latest, and one a round
 *     produced) is PERMISSION_DENIED, naming the run; the policy's parties still download;
 *   - RemoveParticipant of that party succeeds during the run (it was refused with "its policy pins
 *     every party"), while a party the policy names is still refused, naming it, storing nothing;
 *   - after the run, a policy party removed and enrolled again under a new key is refused the run's
 *     model too (the policy pins its old key).
 */
import * as fs from 'node:fs';
import { EventKind, Phase } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { PlainSumFactory } from './helpers/plain-protocol';
import { grpc, grpcError, makeEnv, modelDim, operator, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, unary, enrol, type Env } from './helpers/harness';
import type { RunningCoordinator } from '../../coordinator/main';

let env: Env;
let coord: RunningCoordinator;
const clients: { close(): void }[] = [];
beforeAll(async () => {
  env = await makeEnv(['platform', 'insurer', 'late']);
  coord = await startCoordinator(env, new PlainSumFactory(2));
});
afterAll(async () => {
  for (const c of clients) c.close();
  await coord.close();
  fs.rmSync(env.dir, { recursive: true, force: true });
});

const answer = (p: TestParty, version: number) => p.download(version).then((r) => `OK version ${r.info.version}`, (e: grpc.ServiceError) => `${grpc.status[e.code]}: ${e.details}`);

test('outside the running run\'s policy: no model of the run, removable during it; policy parties download and stay pinned', async () => {
  const op = operator(env, coord.grpcPort);
  clients.push(op.client);
  const [platform, insurer] = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
  clients.push(platform, insurer);
  await enrol(env, op, [platform, insurer]);
  const policy = testPolicy([platform, insurer], coord.publicKey, { numItems: 50, rounds: 2 });
  const dim = modelDim(policy);
  const streams = [platform, insurer].map((p) => p.subscribe(coord.publicKey));
  for (const s of streams) clients.push({ close: () => s.call.cancel() });
  const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, [platform, insurer]) }, new Uint8Array(dim * 4));
  const runId = st.runId;
  const initial = st.latestModelVersion;

  // round 1 completes: a version produced by the run (run_id set), next to the initial one (none)
  for (const [method, phase] of [['AdvertiseKeys', Phase.PHASE_ADVERTISE_KEYS], ['ShareKeys', Phase.PHASE_SHARE_KEYS], ['UploadMaskedInput', Phase.PHASE_MASKED_INPUT], ['ConsistencyCheck', Phase.PHASE_CONSISTENCY_CHECK], ['Unmasking', Phase.PHASE_UNMASKING]] as const) {
    await Promise.all(streams.map((s) => s.next((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === 1 && e.phase === phase)));
    if (method === 'UploadMaskedInput') await Promise.all([platform, insurer].map((p) => p.upload(runId, 1, new Uint8Array(dim * 4))));
    else await Promise.all([platform, insurer].map((p) => p.phase(method, runId, 1, new Uint8Array([1]))));
  }
  const produced = (await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1)).modelVersion;
  expect(produced).toBe(initial + 1);

  const late = new TestParty('late', env, coord.grpcPort);
  clients.push(late);
  await enrol(env, op, [late]);
  for (const v of [0, initial, produced]) {
    const shown = v === 0 ? produced : v;
    expect([v, await answer(late, v)]).toEqual([v, `PERMISSION_DENIED: DownloadModel: model version ${shown} belongs to run ${runId}, whose policy does not name party "late"`]);
    expect([v, await answer(platform, v)]).toEqual([v, `OK version ${shown}`]);
  }

  let before = await coord.ctx.repo.snapshotCounts();
  const busy = await grpcError(unary(op.client.removeParticipant.bind(op.client), { name: 'insurer', reason: 'x' }, op.metadata));
  expect([grpc.status[busy.code], busy.details]).toEqual(['FAILED_PRECONDITION', `run ${runId} is running and its policy names "insurer"; abort it (fedbridge coordinator runs abort) or let it finish, then remove "insurer"`]);
  expect(await coord.ctx.repo.snapshotCounts()).toEqual(before);
  const removed = await unary(op.client.removeParticipant.bind(op.client), { name: 'late', reason: 'enrolled by mistake' }, op.metadata);
  expect(removed.name).toBe('late');
  expect(await answer(late, 0)).toBe('UNAUTHENTICATED: DownloadModel: party "late" is not enrolled in this federation');
  expect((await coord.ctx.repo.listParticipants()).map((p) => p.name)).toEqual(['insurer', 'platform']);

  // after the run: insurer re-keyed is not the insurer the policy pins
  await unary(op.client.abortRun.bind(op.client), { runId, reason: 'done' }, op.metadata);
  await unary(op.client.removeParticipant.bind(op.client), { name: 'insurer', reason: 'key rotated' }, op.metadata);
  const rotated = new TestParty('insurer', env, coord.grpcPort, { keys: ed25519Keygen() });
  clients.push(rotated);
  await enrol(env, op, [rotated]);
  before = await coord.ctx.repo.snapshotCounts();
  expect(await answer(rotated, produced)).toBe(`PERMISSION_DENIED: DownloadModel: model version ${produced} belongs to run ${runId}, whose policy pins another key for party "insurer"`);
  expect(await answer(platform, produced)).toBe(`OK version ${produced}`);
  expect(await coord.ctx.repo.snapshotCounts()).toEqual(before);
});
