/**
 * DownloadModel under clients that do not read (real gRPC with mutual TLS on loopback; a client
 * raw HTTP/2 stream left paused never reads, so HTTP/2 flow control stops the server):
 *   - chunks are produced as the client reads: a stalled download has written only part of them;
 *   - one cached buffer per model version: concurrent downloads read it from storage once;
 *   - at most grpc.maxDownloadsPerParty open per party (RESOURCE_EXHAUSTED beyond);
 *   - a client that reads nothing for grpc.streamIdleMs is ended DEADLINE_EXCEEDED, its slot released;
 *   - a reading client still gets the whole model, hash-checked.
 * Judged by the coordinator's own bookkeeping (ctx.downloads, ctx.models), not process memory.
 */
import { sodium } from '../../shared/crypto/sodium';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import { DownloadModelBody, SignedRequest } from '../../proto/gen/grpc/fedbridge/v1/federation';
import type { RunningCoordinator } from '../../coordinator/main';
import { PlainSumFactory } from './helpers/plain-protocol';
import { enrol, grpc, grpcError, makeEnv, ManualTimers, modelDim, operator, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, type Env, until } from './helpers/harness';

const { status } = grpc;
const CHUNK = 16 * 1024;
const STALL_MS = 1500;

describe('model downloads', () => {
  let env: Env;
  let coord: RunningCoordinator;
  let platform: TestParty;
  let dim: number;
  const sessions: http2.ClientHttp2Session[] = [];

  beforeAll(async () => {
    env = await makeEnv(['platform', 'insurer'], { maxChunkBytes: CHUNK });
    Object.assign(env.configInput.grpc, { streamIdleMs: STALL_MS, maxDownloadsPerParty: 2 });
    coord = await startCoordinator(env, new PlainSumFactory(2), new ManualTimers());
    const parties = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
    platform = parties[0];
    parties[1].close();
    const op = operator(env, coord.grpcPort);
    await enrol(env, op, parties);
    const policy = testPolicy(parties, coord.publicKey, { numItems: 20_000, rounds: 1 });
    dim = modelDim(policy);
    const model = new Float32Array(dim).map((_, i) => (i % 13) * 0.5);
    await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(model.buffer), CHUNK);
    op.client.close();
  });
  afterAll(async () => {
    for (const s of sessions) s.destroy();
    platform?.close();
    await coord?.close();
  });

  /**
   * A download whose client never reads: raw HTTP/2 (a grpc-js client reads ahead into its own
   * buffer), the stream paused, a 64 KiB window. `status()` is the grpc-status of its trailers once read.
   */
  function stalled() {
    const cert = env.certs.clients.platform;
    const session = http2.connect(`https://localhost:${coord.grpcPort}`, { ca: fs.readFileSync(env.certs.ca), cert: fs.readFileSync(cert.cert), key: fs.readFileSync(cert.key), servername: 'localhost', settings: { initialWindowSize: 65535 } });
    session.on('error', () => undefined);
    sessions.push(session);
    const body = DownloadModelBody.encode({ header: platform.header('DownloadModel'), version: 1 }).finish();
    const msg = Buffer.from(SignedRequest.encode(platform.sign('DownloadModel', body)).finish());
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    msg.copy(frame, 5);
    const st = session.request({ ':method': 'POST', ':path': '/fedbridge.v1.ParticipantService/DownloadModel', 'content-type': 'application/grpc', te: 'trailers' });
    st.on('error', () => undefined);
    let trailers: http2.IncomingHttpHeaders | null = null;
    st.on('trailers', (h) => (trailers = h));
    st.pause();
    st.end(frame);
    return { read: () => st.resume(), status: () => (trailers ? { code: Number(trailers['grpc-status']), details: decodeURIComponent(String(trailers['grpc-message'] ?? '')) } : null) };
  }

  test('stalled clients: chunks written only as read, one stored read for both, a third download RESOURCE_EXHAUSTED, each ended DEADLINE_EXCEEDED after the stall limit', async () => {
    const total = Math.ceil((dim * 4) / CHUNK);
    expect(total).toBeGreaterThan(100);
    const a = stalled();
    const b = stalled();
    await until('two downloads open and writing', () => coord.ctx.downloads.count('platform') === 2 && coord.ctx.downloads.list().every((d) => d.written > 0));
    // production stops where flow control stops it: wait until it stands still, then look
    let last = '';
    for (let still = 0; still < 3; ) {
      await new Promise((r) => setTimeout(r, 100));
      const now = JSON.stringify(coord.ctx.downloads.list());
      still = now === last ? still + 1 : 0;
      last = now;
    }
    for (const d of coord.ctx.downloads.list()) expect(d).toMatchObject({ party: 'platform', version: 1, total });
    for (const d of coord.ctx.downloads.list()) expect(d.written).toBeLessThan(total / 2);
    expect(coord.ctx.models.reads).toBe(1); // one buffer for both
    expect(coord.ctx.models.size).toBe(1);

    const third = await grpcError(platform.download(1));
    expect({ code: third.code, details: third.details }).toEqual({
      code: status.RESOURCE_EXHAUSTED,
      details: 'DownloadModel: party "platform" already has 2 downloads in progress (grpc.maxDownloadsPerParty); wait for one to end',
    });

    // the stall limit ends both and frees their slots; a client reading now gets the status after what was in flight
    await until('the stalled downloads were ended', () => coord.ctx.downloads.count() === 0);
    for (const s of [a, b]) {
      s.read();
      await until('the client sees the status', () => s.status() !== null);
      expect(s.status()!.code).toBe(status.DEADLINE_EXCEEDED);
      expect(s.status()!.details).toMatch(new RegExp(`^DownloadModel: the client read nothing for ${STALL_MS} ms \\(grpc\\.streamIdleMs\\); the download was ended after \\d+ of ${total} chunks$`));
    }
  });

  test('a reading client gets the whole model, hash-checked, from the cached buffer', async () => {
    const m = await platform.download(1);
    expect(m.data.length).toBe(dim * 4);
    expect(m.chunks).toBe(Math.ceil((dim * 4) / CHUNK));
    expect(Buffer.compare(Buffer.from(sodium().crypto_generichash(32, m.data, null)), Buffer.from(m.info.modelHash))).toBe(0);
    const latest = await platform.download(0);
    expect(latest.info.version).toBe(1);
    expect(coord.ctx.models.reads).toBe(1);
    expect(coord.ctx.downloads.count()).toBe(0);
    const missing = await grpcError(platform.download(7));
    expect({ code: missing.code, details: missing.details }).toEqual({ code: status.NOT_FOUND, details: 'model version 7 does not exist' });
  });
});
