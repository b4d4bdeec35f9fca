/**
 * Status messages never grow with what a client sent (real gRPC with mutual TLS on loopback): a
 * header.run_id that is no run id (too long, another alphabet) is refused INVALID_ARGUMENT at
 * authentication, on every party RPC, quoting at most 64 of its characters; a 200,000-character
 * run id still gets its status (before, the echoed id made the trailers too large and the client
 * got none). Operator calls naming an unknown run quote it cut to 64 characters too. Nothing is
 * stored.
 */
import { ReceiptBody } from '../../proto/gen/grpc/fedbridge/v1/federation';
import type { RunningCoordinator } from '../../coordinator/main';
import { clientText } from '../../coordinator/grpc/errors';
import { RUN_ID_RE } from '../../coordinator/identity/authenticate';
import { PlainSumFactory } from './helpers/plain-protocol';
import { enrol, grpc, grpcError, makeEnv, operator, startCoordinator, TestParty, unary, type Env } from './helpers/harness';

const { status } = grpc;

describe('client strings in status messages', () => {
  let env: Env;
  let coord: RunningCoordinator;
  let platform: TestParty;

  beforeAll(async () => {
    env = await makeEnv(['platform']);
    coord = await startCoordinator(env, new PlainSumFactory(1));
    platform = new TestParty('platform', env, coord.grpcPort);
    const op = operator(env, coord.grpcPort);
    await enrol(env, op, [platform]);
    op.client.close();
  });
  afterAll(async () => {
    platform?.close();
    await coord?.close();
  });

  test('clientText keeps short strings and cuts long ones to 64 characters, naming the length', () => {
    expect(clientText('run-20260101T120000-a1b2c3')).toBe('run-20260101T120000-a1b2c3');
    expect(clientText('x'.repeat(64))).toBe('x'.repeat(64));
    expect(clientText('y'.repeat(70_000))).toBe(`${'y'.repeat(64)}... (70000 characters)`);
  });

  test('the run id rule: empty or 1..64 characters of the generated ids\' alphabet', () => {
    for (const ok of ['', 'run-20260101T120000-a1b2c3', 'run-nope', 'r', 'a'.repeat(64)]) expect(RUN_ID_RE.test(ok)).toBe(true);
    for (const bad of ['a'.repeat(65), '-run', 'run 1', 'run/1', 'run"1', 'run\n1', 'ränn']) expect(RUN_ID_RE.test(bad)).toBe(false);
  });

  test.each([70_000, 200_000])('a %d-character run_id on party RPCs: INVALID_ARGUMENT with a short message, nothing stored', async (n) => {
    const before = await coord.ctx.repo.snapshotCounts();
    const runId = 'r'.repeat(n);
    const want = { code: status.INVALID_ARGUMENT, details: `AdvertiseKeys: header.run_id must be empty or a run id (1..64 letters, digits, '.', '_' or '-', like run-20260101T120000-a1b2c3), got "${clientText(runId)}" (${n} characters)` };
    const e = await grpcError(platform.phase('AdvertiseKeys', runId, 1, new Uint8Array([1])));
    expect({ code: e.code, details: e.details }).toEqual(want);
    expect(e.details.length).toBeLessThan(300);
    const u = await grpcError(platform.upload(runId, 1, new Uint8Array(8)));
    expect({ code: u.code, details: u.details }).toEqual({ ...want, details: want.details.replace(/^AdvertiseKeys/, 'UploadMaskedInput') });
    const s = platform.subscribe(coord.publicKey, { runId });
    const f = await s.failure();
    expect({ code: f.code, details: f.details }).toEqual({ ...want, details: want.details.replace(/^AdvertiseKeys/, 'Subscribe') });
    const body = ReceiptBody.encode({ header: platform.header('SubmitReceipt', runId, 1), headIdx: '0', chainHead: new Uint8Array(32), modelVersion: 1, modelHash: new Uint8Array(32), receiptSignature: new Uint8Array(64) }).finish();
    const r = await grpcError(new Promise((resolve, reject) => platform.client.submitReceipt(platform.sign('SubmitReceipt', body), (err, ack) => (err ? reject(err) : resolve(ack)))));
    expect({ code: r.code, details: r.details }).toEqual({ ...want, details: want.details.replace(/^AdvertiseKeys/, 'SubmitReceipt') });
    expect(await coord.ctx.repo.snapshotCounts()).toEqual(before);
  });

  test('operator calls naming an unknown run quote at most 64 of its characters', async () => {
    const op = operator(env, coord.grpcPort);
    try {
      const runId = 'q'.repeat(200_000);
      for (const call of [() => unary(op.client.getRunStatus.bind(op.client), { runId }, op.metadata), () => unary(op.client.abortRun.bind(op.client), { runId, reason: 'x' }, op.metadata)]) {
        const e = await grpcError(call());
        expect({ code: e.code, details: e.details }).toEqual({ code: status.NOT_FOUND, details: `no run "${clientText(runId)}"` });
      }
    } finally {
      op.client.close();
    }
  });
});
