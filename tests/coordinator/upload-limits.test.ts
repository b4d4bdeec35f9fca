/**
 * Masked-input uploads cannot hold the coordinator's memory beyond what their round needs (real
 * gRPC with mutual TLS on loopback, the test-only plain-sum protocol, deadlines fired by the test):
 *   - an open announcing any size but the round's masked-input size is refused INVALID_ARGUMENT
 *     naming both sizes, before a chunk is held; bytes past the announced size end the stream;
 *   - a refused upload's bytes are not counted as received (fedbridge_bytes_received_total);
 *   - one upload receiving per party and round: a second one is refused RESOURCE_EXHAUSTED, the
 *     first completes, and a resend after it (a lost acknowledgement) still gets its ack;
 *   - an upload whose round leaves phase mask (deadline) or ends (operator abort) is ended
 *     FAILED_PRECONDITION at once, its chunks released;
 *   - a stream idle longer than grpc.streamIdleMs (before its first message, or after a chunk) is
 *     ended DEADLINE_EXCEEDED and releases what it held.
 * Memory is judged by the coordinator's own bookkeeping (ctx.uploads: uploads receiving, bytes held).
 */
import { EventKind, Phase, type UploadAck, type UploadChunk } from '../../proto/gen/grpc/fedbridge/v1/federation';
import type { RunningCoordinator } from '../../coordinator/main';
import { PlainSumFactory } from './helpers/plain-protocol';
import { grpc, grpcError, makeEnv, ManualTimers, operator, startCoordinator, startOneRoundRun, TestParty, unary, type Env, type EventStream, throughShareKeys, until } from './helpers/harness';

const { status } = grpc;
const CHUNK = 64 * 1024;
/** the test uploads' chunk size: a masked input (the test policy's model) is about ten of them */
const PIECE = 4096;
const IDLE_MS = 1500;

/** An upload stream left open: `chunks` written (the open first), not ended; `result` settles with the ack or the error. */
function openUpload(p: TestParty, chunks: UploadChunk[]) {
  let settle!: (v: UploadAck | grpc.ServiceError) => void;
  const result = new Promise<UploadAck | grpc.ServiceError>((r) => (settle = r));
  const call = p.client.uploadMaskedInput((e, ack) => settle(e ?? ack!));
  call.on('error', () => undefined);
  for (const c of chunks) call.write(c);
  return { call, result };
}

describe('masked-input upload limits', () => {
  let env: Env;
  let coord: RunningCoordinator;
  let parties: TestParty[];
  let streams: EventStream[];
  let runId: string;
  let dim: number;
  const timers = new ManualTimers();
  const input = (k: number) => {
    const v = new Float32Array(dim);
    for (let i = 0; i < dim; i += 97) v[i] = 0.01 * (k + 1);
    return new Uint8Array(v.buffer);
  };
  const uploads = () => ({ receiving: coord.ctx.uploads.count(), held: coord.ctx.uploads.heldBytes() });

  beforeAll(async () => {
    env = await makeEnv(['platform', 'insurer', 'insurer2'], { maxChunkBytes: CHUNK });
    Object.assign(env.configInput.grpc, { streamIdleMs: IDLE_MS });
    coord = await startCoordinator(env, new PlainSumFactory(2), timers);
    parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort));
    ({ runId, dim, streams } = await startOneRoundRun(env, coord, parties, CHUNK));
    await throughShareKeys(parties, streams, runId);
  });
  afterAll(async () => {
    for (const s of streams ?? []) s.cancel();
    for (const p of parties ?? []) p.close();
    await coord?.close();
  });

  test('an open announcing another size than the round expects: INVALID_ARGUMENT naming both, nothing held; bytes past the announced size end the stream', async () => {
    const [platform] = parties;
    const before = await coord.ctx.repo.snapshotCounts();
    // 500 MiB announced (below grpc.maxUploadBytes), the round's masked input is dim * 4 bytes
    const big = platform.uploadChunks(runId, 1, input(0), { chunkBytes: PIECE, openOver: { totalBytes: String(500 * 1024 * 1024), chunkCount: 8000 } });
    const e = await grpcError(platform.upload(runId, 1, input(0), { chunkBytes: PIECE, mutate: () => big }));
    expect({ code: e.code, details: e.details }).toEqual({
      code: status.INVALID_ARGUMENT,
      details: `UploadMaskedInput: total_bytes is ${500 * 1024 * 1024}, the masked input of party "platform" for round 1 is ${dim * 4} bytes`,
    });
    // one word short: refused at the open too (before, only after the whole stream, by the protocol)
    const short = await grpcError(platform.upload(runId, 1, input(0).subarray(4), { chunkBytes: PIECE }));
    expect(short.code).toBe(status.INVALID_ARGUMENT);
    expect(short.details).toMatch(new RegExp(`total_bytes is ${dim * 4 - 4}, .* is ${dim * 4} bytes`));
    // the right size announced, one chunk more sent: cut off at that chunk
    const extra = await grpcError(platform.upload(runId, 1, input(0), { chunkBytes: PIECE, mutate: (c) => [...c, { open: undefined, index: c.length - 1, data: new Uint8Array(8) }] }));
    expect(extra.code).toBe(status.INVALID_ARGUMENT);
    expect(extra.details).toMatch(/more than the announced/);
    expect(uploads()).toEqual({ receiving: 0, held: 0 });
    expect(await coord.ctx.repo.snapshotCounts()).toEqual(before);
  });

  test('an upload refused after its whole stream (by the protocol) is not counted in fedbridge_bytes_received_total{kind="upload"}, only as a rejected request', async () => {
    const insurer2 = parties[2];
    const metric = async (name: 'bytesReceived' | 'rejected') => Object.fromEntries((await coord.ctx.metrics[name].get()).values.map((v) => [String(Object.values(v.labels)[0]), v.value]));
    const [bytes, rejected] = [await metric('bytesReceived'), await metric('rejected')];
    const bad = new Float32Array(dim);
    bad[3] = Number.NaN; // the right size, refused by the plain-sum protocol once the stream is complete and verified
    const e = await grpcError(insurer2.upload(runId, 1, new Uint8Array(bad.buffer), { chunkBytes: PIECE }));
    expect({ code: e.code, details: e.details }).toEqual({ code: status.INVALID_ARGUMENT, details: 'masked input holds a value that is not a finite float32' });
    expect(await metric('bytesReceived')).toEqual(bytes);
    expect(await metric('rejected')).toEqual({ ...rejected, INVALID_ARGUMENT: (rejected.INVALID_ARGUMENT ?? 0) + 1 });
    expect(await coord.ctx.repo.maskedInputs(runId, 1)).toEqual([]);
  });

  test('one upload at a time per party and round: a second is refused RESOURCE_EXHAUSTED; the first completes; a resend after it gets the same ack', async () => {
    const [platform] = parties;
    const chunks = platform.uploadChunks(runId, 1, input(0), { chunkBytes: PIECE });
    const first = openUpload(platform, chunks.slice(0, 3));
    await until('the first upload holds chunks', () => coord.ctx.uploads.heldBytes() >= 2 * PIECE);
    const second = await grpcError(platform.upload(runId, 1, input(0), { chunkBytes: PIECE }));
    expect(second.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(second.details).toBe(`UploadMaskedInput: party "platform" already has an upload in progress for round 1 of run ${runId} (one at a time); send it again once that one has ended`);
    expect(coord.ctx.uploads.count('platform')).toBe(1);
    // another party is not held up
    const other = parties[1].upload(runId, 1, input(1), { chunkBytes: PIECE });
    for (const c of chunks.slice(3)) first.call.write(c);
    first.call.end();
    const ack = await first.result;
    expect(ack).toEqual({ runId, round: 1, receivedBytes: String(dim * 4) });
    expect(await other).toEqual({ runId, round: 1, receivedBytes: String(dim * 4) });
    // the acknowledgement was "lost": the same input again is acknowledged alike (issue #5)
    expect(await platform.upload(runId, 1, input(0), { chunkBytes: PIECE })).toEqual(ack);
    expect(uploads()).toEqual({ receiving: 0, held: 0 });
    expect((await coord.ctx.repo.maskedInputs(runId, 1)).map((r) => r.party).sort()).toEqual(['insurer', 'platform']);
  });

  test('an idle stream is ended DEADLINE_EXCEEDED: one that never opens, and one that stops after a chunk; what it held is released', async () => {
    const insurer2 = parties[2];
    const silent = openUpload(insurer2, []);
    const e1 = (await silent.result) as grpc.ServiceError;
    expect(e1.code).toBe(status.DEADLINE_EXCEEDED);
    expect(e1.details).toBe(`UploadMaskedInput: no message for ${IDLE_MS} ms (grpc.streamIdleMs); the stream was ended and what it sent was dropped`);
    const stalled = openUpload(insurer2, insurer2.uploadChunks(runId, 1, input(2), { chunkBytes: PIECE }).slice(0, 3));
    const e2 = (await stalled.result) as grpc.ServiceError;
    expect(e2.code).toBe(status.DEADLINE_EXCEEDED);
    expect(uploads()).toEqual({ receiving: 0, held: 0 });
    expect(coord.ctx.rounds.binding()).toMatchObject({ phase: 'mask' });
  });

  test('one connection may have at most 64 streams open at once (the server\'s HTTP/2 SETTINGS)', async () => {
    const http2 = await import('node:http2');
    const fs = await import('node:fs');
    const c = env.certs.clients.platform;
    const s = http2.connect(`https://127.0.0.1:${coord.grpcPort}`, { ca: fs.readFileSync(env.certs.ca), cert: fs.readFileSync(c.cert), key: fs.readFileSync(c.key), servername: 'localhost' });
    try {
      await new Promise((resolve, reject) => {
        s.once('remoteSettings', resolve);
        s.once('error', reject);
      });
      expect(s.remoteSettings.maxConcurrentStreams).toBe(64);
    } finally {
      s.close();
    }
  });

  test("the operator's StartRun stream is held to the same idle limit", async () => {
    const op = operator(env, coord.grpcPort);
    const e = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = op.client.startRun(op.metadata, (err) => resolve(err));
      call.on('error', () => undefined); // opened, then silent
    });
    op.client.close();
    expect(e?.code).toBe(status.DEADLINE_EXCEEDED);
    expect(e?.details).toBe(`StartRun: no message for ${IDLE_MS} ms (grpc.streamIdleMs); the stream was ended and what it sent was dropped`);
    expect(coord.ctx.rounds.binding()).toMatchObject({ phase: 'mask' }); // the run in progress is untouched
  });

  test('the round leaves phase mask (deadline), then ends (operator abort): open uploads end FAILED_PRECONDITION at once and release their chunks', async () => {
    const [platform, , insurer2] = parties;
    // insurer2 uploads slowly (keeps sending, so the idle limit is not what ends it)
    const slow = openUpload(insurer2, insurer2.uploadChunks(runId, 1, input(2), { chunkBytes: PIECE }).slice(0, 3));
    await until('insurer2 holds chunks', () => coord.ctx.uploads.heldBytes() >= 2 * PIECE);
    timers.fire(); // the mask deadline: platform and insurer sent, insurer2 is dropped
    const e = (await slow.result) as grpc.ServiceError;
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toBe('UploadMaskedInput: the upload was ended before it completed: message is for phase mask, round 1 is in phase consistency');
    expect(uploads()).toEqual({ receiving: 0, held: 0 });
    await streams[0].next((ev) => ev.phase === Phase.PHASE_CONSISTENCY_CHECK && ev.round === 1);

    // a resend of an accepted input is still welcome in phase consistency, until the round ends
    const resend = openUpload(platform, platform.uploadChunks(runId, 1, input(0), { chunkBytes: PIECE }).slice(0, 3));
    await until('the resend holds chunks', () => coord.ctx.uploads.heldBytes() >= 2 * PIECE);
    const op = operator(env, coord.grpcPort);
    await unary(op.client.abortRun.bind(op.client), { runId, reason: 'test' }, op.metadata);
    op.client.close();
    const e2 = (await resend.result) as grpc.ServiceError;
    expect(e2.code).toBe(status.FAILED_PRECONDITION);
    expect(e2.details).toMatch(/^UploadMaskedInput: the upload was ended before it completed: no round is open$/);
    expect(uploads()).toEqual({ receiving: 0, held: 0 });
    await streams[0].next((ev) => ev.kind === EventKind.EVENT_KIND_RUN_FINISHED);
  });
});
