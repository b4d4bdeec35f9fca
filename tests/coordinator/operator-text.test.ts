/**
 * An operator's free text (AbortRun's reason, RemoveParticipant's and RevokeToken's reasons,
 * IssueToken's label) goes into the signed audit log, the parties' events and the coordinator's
 * log lines: at most 200 characters without control characters, checked before anything is done.
 * Before, AbortRun took any reason: a 3 MB one with NUL and ESC was committed to the log and
 * broadcast, and only then did the call fail RESOURCE_EXHAUSTED (its answer was too large).
 * Over real gRPC: each bad text is INVALID_ARGUMENT naming the field and the rule, and nothing
 * changes (stored rows, the audit log, the run, no event); a reason of exactly 200 characters aborts.
 */
import type { RunningCoordinator } from '../../coordinator/main';
import { PlainSumFactory } from './helpers/plain-protocol';
import { EventKind } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { grpc, grpcError, makeEnv, operator, startCoordinator, startOneRoundRun, TestParty, unary, type Env, type EventStream } from './helpers/harness';

const { status } = grpc;

describe("the operator's free text", () => {
  let env: Env;
  let coord: RunningCoordinator;
  let parties: TestParty[];
  let op: ReturnType<typeof operator>;
  let runId: string;
  let streams: EventStream[];

  beforeAll(async () => {
    env = await makeEnv(['platform', 'insurer']);
    coord = await startCoordinator(env, new PlainSumFactory(2));
    parties = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
    op = operator(env, coord.grpcPort);
    ({ runId, streams } = await startOneRoundRun(env, coord, parties));
  });
  afterAll(async () => {
    for (const s of streams ?? []) s.cancel();
    for (const p of parties ?? []) p.close();
    op?.client.close();
    await coord?.close();
  });

  test('a long or control-character reason or label: INVALID_ARGUMENT before anything is done; 200 characters abort the run', async () => {
    const abort = (reason: string) => unary(op.client.abortRun.bind(op.client), { runId, reason }, op.metadata);
    const issued = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'kept', expiresInSeconds: '0' }, op.metadata);
    const before = await coord.ctx.repo.snapshotCounts();
    const events = streams.map((s) => s.events.length);
    const CONTROL = /^(reason|label) holds the control character U\+[0-9A-F]{4} at position \d+ \(no control characters: C0, DEL, C1, line separators, bidi controls\)$/;
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      ['abort: 3 MB with NUL and ESC', () => abort(`${'x'.repeat(3_000_000)}\n\u0000\u001b[31mred`), /^reason is longer than 200 characters$/],
      ['abort: 201 characters', () => abort('x'.repeat(201)), /^reason is longer than 200 characters$/],
      ['abort: ESC', () => abort('maintenance\u001b[8m'), CONTROL],
      ['abort: newline', () => abort('maintenance\nverified: every check passed'), CONTROL],
      ['abort: C1 CSI', () => abort('stop\u009b2J'), CONTROL],
      ['remove: DEL', () => unary(op.client.removeParticipant.bind(op.client), { name: 'insurer', reason: 'gone\u007f' }, op.metadata), CONTROL],
      ['issue: bidi override', () => unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'auditor \u202eevil', expiresInSeconds: '0' }, op.metadata), CONTROL],
      ['revoke: NUL', () => unary(op.client.revokeToken.bind(op.client), { tokenId: issued.tokenId, reason: 'x\u0000' }, op.metadata), CONTROL],
    ];
    for (const [why, call, msg] of cases) {
      const e = await grpcError(call());
      expect([why, e.code, e.details]).toEqual([why, status.INVALID_ARGUMENT, expect.stringMatching(msg)]);
    }
    expect(await coord.ctx.repo.snapshotCounts()).toEqual(before);
    expect((await unary(op.client.getRunStatus.bind(op.client), { runId }, op.metadata)).state).toBe('running');
    expect(streams.map((s) => s.events.length)).toEqual(events);

    const reason = `${'r'.repeat(199)}.`;
    const st = await abort(reason);
    expect(st.abortReason).toBe(`operator: ${reason}`);
    const ev = await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
    expect(ev.abortReason).toBe(`operator: ${reason}`);
  });
});
