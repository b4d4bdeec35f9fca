/**
 * Removing a party (OperatorService.RemoveParticipant, `fedbridge coordinator unenroll`) over real
 * gRPC with mutual TLS: refused while a run is running (nothing changes); once the run is over the
 * party's open event stream ends and every request it signs is UNAUTHENTICATED; the old policy can
 * no longer start a run, a policy without the party can (before, a party that left blocked every
 * later run: every enrolled party must sign the policy); the removal is in the signed audit log;
 * the name may be enrolled again with a new key.
 */
import type { RunningCoordinator } from '../../coordinator/main';
import { verifyAuditChain } from '../../coordinator/audit/log';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { exportLine } from '../../shared/audit/chain';
import { verifyLog } from '../../shared/audit/verify';
import { policyHash } from '../../shared/policy/schema';
import { grpc, grpcError, makeEnv, modelDim, operator, policyYaml, signaturesFor, startCoordinator, startOneRoundRun, startRun, testPolicy, TestParty, unary, type Env } from './helpers/harness';

const { status } = grpc;

describe('removing a party', () => {
  let env: Env;
  let coord: RunningCoordinator;
  let parties: TestParty[];
  let op: ReturnType<typeof operator>;

  beforeAll(async () => {
    env = await makeEnv(['platform', 'insurer', 'insurer2']);
    coord = await startCoordinator(env, undefined as never); // the default protocol, SecAgg: its log verifies
    parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort));
    op = operator(env, coord.grpcPort);
  });
  afterAll(async () => {
    for (const p of parties ?? []) p.close();
    op?.client.close();
    await coord?.close();
  });

  const counts = () => coord.ctx.repo.snapshotCounts();
  const remove = (name: string, reason = 'left the federation', metadata = op.metadata) => unary(op.client.removeParticipant.bind(op.client), { name, reason }, metadata);

  test('refused during a run; afterwards its stream ends, its requests are refused, and runs start without it', async () => {
    const [platform, insurer, insurer2] = parties;
    const { runId, streams } = await startOneRoundRun(env, coord, parties);

    let before = await counts();
    const busy = await grpcError(remove('insurer2'));
    expect([busy.code, busy.details]).toEqual([status.FAILED_PRECONDITION, `run ${runId} is running and its policy names "insurer2"; abort it (fedbridge coordinator runs abort) or let it finish, then remove "insurer2"`]);
    expect(await counts()).toEqual(before);
    expect(streams[2].error).toBeNull();

    await unary(op.client.abortRun.bind(op.client), { runId, reason: 'insurer2 leaves' }, op.metadata);
    before = await counts();
    const removed = await remove('insurer2');
    expect(removed).toMatchObject({ name: 'insurer2', publicKey: Buffer.from(insurer2.keys.publicKey) });
    expect(await counts()).toEqual({ ...before, participants: before.participants - 1, audit_log: before.audit_log + 1 });

    // its open stream ends with UNAUTHENTICATED; the others stay open
    const ended = await streams[2].failure();
    expect([ended.code, ended.details]).toEqual([status.UNAUTHENTICATED, 'party "insurer2" was removed from the federation']);
    expect([streams[0].error, streams[1].error]).toEqual([null, null]);
    // a new subscription is refused: the key is no longer enrolled
    const again = insurer2.subscribe(coord.publicKey);
    const refused = await again.failure();
    expect(refused.code).toBe(status.UNAUTHENTICATED);
    expect(refused.details).toMatch(/not enrolled/);
    expect((await unary(op.client.listParticipants.bind(op.client), {}, op.metadata)).participants.map((p) => p.name)).toEqual(['insurer', 'platform']);

    // the old policy (it pins insurer2) no longer starts; one without insurer2, signed by the two, does
    const old = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
    const oldStart = await grpcError(startRun(op.client, op.metadata, { policyYaml: policyYaml(old), signatures: signaturesFor(old, parties) }, new Uint8Array(modelDim(old) * 4)));
    expect([oldStart.code, oldStart.details]).toEqual([status.FAILED_PRECONDITION, 'policy party "insurer2" is not enrolled (fedbridge coordinator enroll)']);
    const two = testPolicy([platform, insurer], coord.publicKey, { numItems: 50, rounds: 1 });
    const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(two), signatures: signaturesFor(two, [platform, insurer]) }, new Uint8Array(modelDim(two) * 4));
    expect(st.state).toBe('running');
    await unary(op.client.abortRun.bind(op.client), { runId: st.runId, reason: 'test over' }, op.metadata);

    // the signed log holds the removal, between the aborted run and the new one
    const rows = await coord.ctx.repo.auditEntries();
    const types = rows.map((r) => JSON.parse(Buffer.from(r.entry).toString('utf8')) as { type: string; name?: string; reason?: string });
    const at = types.findIndex((e) => e.type === 'participant-removed');
    expect(types[at]).toMatchObject({ name: 'insurer2', reason: 'left the federation' });
    expect(types.slice(0, at).map((e) => e.type)).toContain('run-aborted');
    expect(types.slice(at).map((e) => e.type)).toContain('run-started');
    expect(verifyAuditChain(rows, coord.publicKey).failures).toEqual([]);

    // the auditor verifies the whole log with both policies: each run against the policy it names;
    // with either one alone, the other's entries fail on their policy hash
    const bytes = new TextEncoder().encode((await coord.ctx.repo.auditEntries(0, 100_000)).map((r) => exportLine({ idx: r.idx, prevHash: r.prevHash, entry: r.entry, signature: r.signature })).join(''));
    const both = verifyLog(bytes, { policy: two, otherPolicies: [old] });
    expect(both.failures).toEqual([]);
    expect(both.runs.map((r) => [r.runId, r.status])).toEqual([[runId, 'aborted'], [st.runId, 'aborted']]);
    const onlyNew = verifyLog(bytes, { policy: two });
    expect(onlyNew.ok).toBe(false);
    expect(onlyNew.failures[0]).toMatchObject({ field: 'entry.policyHash', expected: policyHash(two), found: policyHash(old) });
    expect(verifyLog(bytes, { policy: old }).failures.some((f) => f.field === 'entry.policyHash' && f.found === policyHash(two))).toBe(true);

    // the name may come back with a new key
    const fresh = ed25519Keygen();
    const back = await unary(op.client.enroll.bind(op.client), { name: 'insurer2', publicKey: fresh.publicKey, certSha256: '' }, op.metadata);
    expect(back.participant?.name).toBe('insurer2');
  });

  test('an unknown or malformed name, a long reason, no operator token: its status, nothing changed', async () => {
    const before = await counts();
    const cases: [string, () => Promise<unknown>, grpc.status, RegExp][] = [
      ['unknown', () => remove('nobody'), status.NOT_FOUND, /^no party "nobody" is enrolled \(fedbridge coordinator parties\)$/],
      ['malformed', () => remove('Not A Name'), status.INVALID_ARGUMENT, /^name must be lowercase letters/],
      ['long reason', () => remove('platform', 'x'.repeat(201)), status.INVALID_ARGUMENT, /^reason is longer than 200 characters$/],
      ['no token', () => remove('platform', 'r', new grpc.Metadata()), status.UNAUTHENTICATED, /missing "authorization: Bearer/],
    ];
    for (const [why, call, code, msg] of cases) {
      const e = await grpcError(call());
      expect([why, e.code, e.details]).toEqual([why, code, expect.stringMatching(msg)]);
    }
    expect(await counts()).toEqual(before);
  });
});
