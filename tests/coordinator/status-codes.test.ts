/**
 * Every rejected party request gets its own gRPC status and a message, changes no stored state
 * (row counts of every table, the protocol's received messages), and the honest parties' round
 * still completes afterwards. Over real gRPC with mutual TLS on loopback.
 */
import { ed25519Keygen } from '../../shared/crypto/sign';
import { EventKind, PhaseMessageBody, SubscribeBody, UploadChunk, UploadOpenBody } from '../../proto/gen/grpc/fedbridge/v1/federation';
import type { RunningCoordinator } from '../../coordinator/main';
import { PlainSumFactory } from './helpers/plain-protocol';
import { grpc, grpcError, makeEnv, ManualTimers, startOneRoundRun, OPERATOR_TOKEN, operator, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, unary, type Env, type EventStream } from './helpers/harness';

const { status } = grpc;

describe('status codes of rejected requests (nothing stored, honest round completes)', () => {
  let env: Env;
  let coord: RunningCoordinator;
  const timers = new ManualTimers();
  const factory = new PlainSumFactory(2);
  let parties: TestParty[];
  let intruder: TestParty;
  let streams: EventStream[];
  let runId: string;
  let dim: number;
  const CHUNK = 64 * 1024;

  const counts = () => coord.ctx.repo.snapshotCounts();
  const received = () => JSON.stringify(factory.protocols.map((p) => p.received));
  const rejectedInvalid = async () => (await coord.ctx.metrics.rejected.get()).values.find((v) => v.labels.code === 'INVALID_ARGUMENT')?.value ?? 0;

  /** Runs `bad`, expects `code` and a message matching `msg`, and that nothing was stored. */
  async function rejects(bad: () => Promise<unknown>, code: grpc.status, msg: RegExp) {
    const before = await counts();
    const rec = received();
    const e = await grpcError(bad());
    expect({ code: e.code, details: e.details }).toEqual({ code, details: expect.stringMatching(msg) });
    expect(await counts()).toEqual(before);
    expect(received()).toBe(rec);
  }

  beforeAll(async () => {
    env = await makeEnv(['platform', 'insurer', 'insurer2', 'intruder'], { maxChunkBytes: CHUNK });
    coord = await startCoordinator(env, factory, timers);
    parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort));
    intruder = new TestParty('intruder', env, coord.grpcPort);
    ({ runId, dim, streams } = await startOneRoundRun(env, coord, parties, CHUNK));
  });
  afterAll(async () => {
    for (const s of streams ?? []) s.cancel();
    for (const p of [...(parties ?? []), intruder]) p?.close();
    await coord?.close();
  });

  test('advertise phase: unknown key, forged signature, replays, wrong binding, bad shapes, foreign certificate', async () => {
    const [platform, insurer] = parties;
    const payload = new TextEncoder().encode('keys');
    // unenrolled party (its own valid CA-issued certificate)
    await rejects(() => intruder.phase('AdvertiseKeys', runId, 1, payload), status.UNAUTHENTICATED, /party "intruder" is not enrolled/);
    // a key that is not the enrolled one (forged signature)
    const forged = PhaseMessageBody.encode({ header: platform.header('AdvertiseKeys', runId, 1), payload }).finish();
    await rejects(() => platform.rawPhase('AdvertiseKeys', platform.sign('AdvertiseKeys', forged, ed25519Keygen().secretKey)), status.UNAUTHENTICATED, /signature does not verify/);
    // a valid signature over a body signed for another RPC
    const otherRpc = PhaseMessageBody.encode({ header: platform.header('ShareKeys', runId, 1), payload }).finish();
    await rejects(() => platform.rawPhase('AdvertiseKeys', platform.sign('ShareKeys', otherRpc)), status.UNAUTHENTICATED, /signature does not verify/);
    // wrong phase: ShareKeys while the round is in advertise
    await rejects(() => platform.phase('ShareKeys', runId, 1, payload), status.FAILED_PRECONDITION, /phase share, round 1 is in phase advertise/);
    // header phase differs from the RPC's phase
    await rejects(() => platform.phase('AdvertiseKeys', runId, 1, payload, { phase: 3 }), status.FAILED_PRECONDITION, /bound to phase 3/);
    // wrong round, wrong run, wrong federation
    await rejects(() => platform.phase('AdvertiseKeys', runId, 2, payload), status.FAILED_PRECONDITION, /bound to round 2/);
    await rejects(() => platform.phase('AdvertiseKeys', 'run-other', 1, payload), status.FAILED_PRECONDITION, /bound to run "run-other"/);
    await rejects(() => platform.phase('AdvertiseKeys', runId, 1, payload, { federationId: 'elsewhere' }), status.FAILED_PRECONDITION, /federation "elsewhere"/);
    // stale timestamp
    await rejects(() => platform.phase('AdvertiseKeys', runId, 1, payload, { timestampMs: String(Date.now() - 3_600_000) }), status.UNAUTHENTICATED, /outside the accepted window/);
    // bad shapes: short signature, garbage body, short nonce, oversized payload for the phase
    await rejects(() => platform.rawPhase('AdvertiseKeys', { body: forged, signature: new Uint8Array(10) }), status.INVALID_ARGUMENT, /signature must be 64 bytes/);
    await rejects(() => platform.rawPhase('AdvertiseKeys', platform.sign('AdvertiseKeys', new Uint8Array([0xff, 0xff, 0xff]))), status.INVALID_ARGUMENT, /body does not decode/);
    await rejects(() => platform.phase('AdvertiseKeys', runId, 1, payload, { nonce: new Uint8Array(4) }), status.INVALID_ARGUMENT, /nonce must be 16 bytes/);
    // a validly signed body in a damaged encoding: the header declares one byte less than it has, so
    // its last field runs past it. The generated decoder reads it as the honest message anyway;
    // the strict wire check refuses it (a signer's bytes must mean one thing: shared/proto/wire-check.ts)
    const honest = PhaseMessageBody.encode({ header: platform.header('AdvertiseKeys', runId, 1), payload }).finish();
    const damaged = Uint8Array.from(honest);
    expect([damaged[0], damaged[1] < 128]).toEqual([0x0a, true]);
    damaged[1] -= 1;
    expect(PhaseMessageBody.decode(damaged)).toEqual(PhaseMessageBody.decode(honest));
    await rejects(() => platform.rawPhase('AdvertiseKeys', platform.sign('AdvertiseKeys', damaged)), status.INVALID_ARGUMENT, /body does not decode: fedbridge\.v1\.PhaseMessageBody\.header\.\w+.* runs? past|body does not decode: fedbridge\.v1\.PhaseMessageBody\.header\.\w+: \d+ bytes declared/);
    await rejects(() => platform.phase('AdvertiseKeys', runId, 1, new Uint8Array(5000)), status.INVALID_ARGUMENT, /at most 1024/);
    // a party's signed request sent over another party's TLS client certificate
    const wrongCert = new TestParty('platform', env, coord.grpcPort, { keys: platform.keys, certAs: 'insurer' });
    await rejects(() => wrongCert.phase('AdvertiseKeys', runId, 1, payload), status.PERMISSION_DENIED, /client certificate is not the one enrolled/);
    wrongCert.close();
    // a message larger than any gRPC message may be
    await rejects(() => platform.phase('AdvertiseKeys', runId, 1, new Uint8Array(5 * 1024 * 1024)), status.RESOURCE_EXHAUSTED, /larger than max/);

    // accepted once; the same signed request replayed is refused, and so is a second, different
    // message; the same message under a fresh header (a node resending after a lost answer) gets
    // the same ack and changes nothing
    const body = PhaseMessageBody.encode({ header: insurer.header('AdvertiseKeys', runId, 1), payload }).finish();
    const signed = insurer.sign('AdvertiseKeys', body);
    expect((await insurer.rawPhase('AdvertiseKeys', signed)).accepted).toBe(1);
    await rejects(() => insurer.rawPhase('AdvertiseKeys', signed), status.ALREADY_EXISTS, /replayed request/);
    await rejects(() => insurer.phase('AdvertiseKeys', runId, 1, new TextEncoder().encode('other keys')), status.FAILED_PRECONDITION, /already sent its advertise message/);
    const countsBeforeResend = await counts();
    const receivedBeforeResend = received();
    expect((await insurer.phase('AdvertiseKeys', runId, 1, payload)).accepted).toBe(1);
    expect(await counts()).toEqual(countsBeforeResend);
    expect(received()).toBe(receivedBeforeResend);

    // unenrolled subscription
    const s = intruder.subscribe(coord.publicKey);
    expect((await s.failure()).code).toBe(status.UNAUTHENTICATED);
    // the honest parties finish the phase
    await platform.phase('AdvertiseKeys', runId, 1, payload);
    await parties[2].phase('AdvertiseKeys', runId, 1, payload);
    for (const [m, ph] of [['ShareKeys', 3]] as const) {
      await Promise.all(streams.map((st) => st.next((e) => e.phase === ph && e.round === 1)));
      await Promise.all(parties.map((p) => p.phase(m, runId, 1, payload)));
    }
    await Promise.all(streams.map((st) => st.next((e) => e.phase === 4 && e.round === 1)));
    // a resend that arrives after its phase closed (the round is in phase mask now): the same ack;
    // other bytes for that phase: refused for the phase
    const countsLate = await counts();
    const receivedLate = received();
    expect((await insurer.phase('AdvertiseKeys', runId, 1, payload)).accepted).toBe(1);
    expect((await platform.phase('ShareKeys', runId, 1, payload)).accepted).toBeGreaterThanOrEqual(1);
    expect(await counts()).toEqual(countsLate);
    expect(received()).toBe(receivedLate);
    await rejects(() => insurer.phase('AdvertiseKeys', runId, 1, new TextEncoder().encode('other keys')), status.FAILED_PRECONDITION, /is for phase advertise, round 1 is in phase mask/);
  });

  test('masked-input phase: wrong length, oversize chunk, tampered chunk, gaps, wrong announced sizes', async () => {
    const [platform, insurer, insurer2] = parties;
    const good = (k: number) => {
      const v = new Float32Array(dim);
      for (let i = 0; i < dim; i++) v[i] = (i % 5) * 0.01 * (k + 1);
      return new Uint8Array(v.buffer);
    };
    // wrong vector length: the announced size is not the round's, refused at the open before any chunk
    await rejects(() => platform.upload(runId, 1, new Uint8Array(dim * 4 - 4), { chunkBytes: CHUNK }), status.INVALID_ARGUMENT, new RegExp(`total_bytes is ${dim * 4 - 4}, the masked input of party "platform" for round 1 is ${dim * 4} bytes`));
    // a chunk above the coordinator's limit
    await rejects(() => platform.upload(runId, 1, good(0), { chunkBytes: CHUNK, openOver: { chunkCount: 0 } }), status.INVALID_ARGUMENT, /cannot carry/);
    await rejects(
      () => platform.upload(runId, 1, good(0), { chunkBytes: CHUNK, mutate: (c) => { c[1] = { ...c[1], data: new Uint8Array(CHUNK + 1) }; return c; } }),
      status.RESOURCE_EXHAUSTED,
      /chunk 0 is 65537 bytes, the limit is 65536/,
    );
    // one byte altered in flight in the middle of the stream: the signed hash catches it
    await rejects(
      () => platform.upload(runId, 1, good(0), { chunkBytes: CHUNK, mutate: (c) => { const d = new Uint8Array(c[1].data); d[100] ^= 1; c[1] = { ...c[1], data: d }; return c; } }),
      status.INVALID_ARGUMENT,
      /does not match the announced hash/,
    );
    // a missing chunk, a repeated open, data before open
    await rejects(() => platform.upload(runId, 1, good(0), { chunkBytes: 4096, mutate: (c) => c.filter((_, i) => i !== 2) }), status.INVALID_ARGUMENT, /expected chunk 1, got chunk 2/);
    await rejects(() => platform.upload(runId, 1, good(0), { chunkBytes: 4096, mutate: (c) => [c[0], c[0], ...c.slice(1)] }), status.INVALID_ARGUMENT, /may only come first/);
    await rejects(() => platform.upload(runId, 1, good(0), { chunkBytes: 4096, mutate: (c) => c.slice(1) }), status.INVALID_ARGUMENT, /first message must carry `open`/);
    // announced size beyond the upload limit
    await rejects(() => platform.upload(runId, 1, good(0), { openOver: { totalBytes: String(2 ** 40), chunkCount: 2 ** 24 } }), status.RESOURCE_EXHAUSTED, /exceed the limit/);
    await rejects(() => platform.upload(runId, 1, good(0), { openOver: { totalBytes: '18446744073709551615', chunkCount: 2 ** 32 - 1 } }), status.RESOURCE_EXHAUSTED, /exceed the limit/);
    // an unenrolled party and a forged open
    await rejects(() => intruder.upload(runId, 1, good(0)), status.UNAUTHENTICATED, /not enrolled/);
    await rejects(
      () => platform.upload(runId, 1, good(0), { mutate: (c) => { const body = UploadOpenBody.encode(UploadOpenBody.decode(c[0].open!.body)).finish(); c[0] = { ...c[0], open: platform.sign('UploadMaskedInput', body, ed25519Keygen().secretKey) }; return c; } }),
      status.UNAUTHENTICATED,
      /signature does not verify/,
    );

    // a frame that is no protobuf message, after a valid signed open and a first chunk: refused
    // INVALID_ARGUMENT (not grpc-js's INTERNAL), the handler's partial upload is dropped
    const chunks = platform.uploadChunks(runId, 1, good(0), { chunkBytes: 4096 });
    const frames = chunks.map((c) => UploadChunk.encode(c).finish());
    await rejects(
      () => platform.streamBytes('UploadMaskedInput', [frames[0], frames[1], Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), ...frames.slice(2)]),
      status.INVALID_ARGUMENT,
      /^malformed request: the bytes are not a valid fedbridge\.v1\.UploadChunk protobuf message \(/,
    );
    // an undecodable first frame
    await rejects(() => platform.streamBytes('UploadMaskedInput', [Uint8Array.from([0xff])]), status.INVALID_ARGUMENT, /not a valid fedbridge\.v1\.UploadChunk protobuf message/);

    // honest uploads complete the phase and the round
    await Promise.all([platform, insurer, insurer2].map((p, k) => p.upload(runId, 1, good(k), { chunkBytes: CHUNK })));
    for (const [m, ph] of [['ConsistencyCheck', 5], ['Unmasking', 6]] as const) {
      await Promise.all(streams.map((st) => st.next((e) => e.phase === ph && e.round === 1)));
      await Promise.all(parties.map((p) => p.phase(m, runId, 1, new Uint8Array([1]))));
    }
    const done = await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED);
    expect(done.modelVersion).toBe(2);
    const m = await parties[2].download(2);
    const got = new Float32Array(m.data.buffer, m.data.byteOffset, dim);
    expect(got[3]).toBeCloseTo(((3 % 5) * 0.01 * (1 + 2 + 3)) / 3, 6);
  });

  test('malformed protobuf bytes on every unary and server-streaming party RPC: INVALID_ARGUMENT naming the message type, nothing stored, the server keeps serving', async () => {
    const fs = await import('node:fs');
    const creds = grpc.credentials.createSsl(fs.readFileSync(env.certs.ca), fs.readFileSync(env.certs.clients.platform.key), fs.readFileSync(env.certs.clients.platform.cert));
    const raw = new grpc.Client(`127.0.0.1:${coord.grpcPort}`, creds, { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' });
    const id = (b: Buffer) => b;
    const before = await counts();
    const rejectedBefore = await rejectedInvalid();
    const METHODS = ['Subscribe', 'AdvertiseKeys', 'ShareKeys', 'ConsistencyCheck', 'Unmasking', 'DownloadModel', 'SubmitReceipt'];
    for (const m of METHODS) {
      const got = await new Promise<{ code: number; details: string }>((resolve) => {
        const fail = (e: grpc.ServiceError | null) => resolve(e ? { code: e.code, details: e.details } : { code: -1, details: '' });
        if (m === 'Subscribe' || m === 'DownloadModel') {
          const call = raw.makeServerStreamRequest(`/fedbridge.v1.ParticipantService/${m}`, id, id, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), new grpc.Metadata(), {});
          call.on('data', () => undefined);
          call.on('error', fail);
          call.on('end', () => fail(null));
        } else {
          raw.makeUnaryRequest(`/fedbridge.v1.ParticipantService/${m}`, id, id, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), fail);
        }
      });
      expect([m, got]).toEqual([m, { code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^malformed request: the bytes are not a valid fedbridge\.v1\.SignedRequest protobuf message \(.+\)$/) }]);
    }
    raw.close();
    expect(await counts()).toEqual(before);
    // each refusal is counted in fedbridge_rejected_requests_total
    expect((await rejectedInvalid()) - rejectedBefore).toBe(METHODS.length);
    // still serving: a well-formed request gets its normal answer
    const s = parties[0].subscribe(coord.publicKey);
    await s.next(() => true);
    s.cancel();
  });

  test('operator API: no token, wrong token, an auditor token, a party key are all refused', async () => {
    const op = operator(env, coord.grpcPort);
    const issued = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'test', expiresInSeconds: '0' }, op.metadata);
    expect(issued.token).toMatch(/^fbt_/);
    const before = await counts();
    for (const [token, msg] of [['fbt_not-the-operator-token-xxxxxxxx', /not the operator token/], [issued.token, /not the operator token/]] as const) {
      const bad = operator(env, coord.grpcPort, token);
      const e = await grpcError(unary(bad.client.enroll.bind(bad.client), { name: 'mallory', publicKey: new Uint8Array(32).fill(9), certSha256: '' }, bad.metadata));
      expect(e.code).toBe(status.UNAUTHENTICATED);
      expect(e.details).toMatch(msg);
      bad.client.close();
    }
    const e = await grpcError(unary(op.client.enroll.bind(op.client), { name: 'mallory', publicKey: new Uint8Array(32).fill(9), certSha256: '' }, new grpc.Metadata()));
    expect(e.code).toBe(status.UNAUTHENTICATED);
    expect(e.details).toMatch(/missing "authorization: Bearer/);
    // a token that is there but malformed is not reported as missing
    const m = new grpc.Metadata();
    m.set('authorization', 'Bearer wrongtoken');
    const malformed = await grpcError(unary(op.client.enroll.bind(op.client), { name: 'mallory', publicKey: new Uint8Array(32).fill(9), certSha256: '' }, m));
    expect(malformed.code).toBe(status.UNAUTHENTICATED);
    expect(malformed.details).toMatch(/operator API: the authorization metadata is not one "Bearer <operator token>" \(a token of 16-512 characters/);
    const dup = await grpcError(unary(op.client.enroll.bind(op.client), { name: 'platform', publicKey: new Uint8Array(32).fill(9), certSha256: '' }, op.metadata));
    expect(dup.code).toBe(status.ALREADY_EXISTS);
    const shortKey = await grpcError(unary(op.client.enroll.bind(op.client), { name: 'newparty', publicKey: new Uint8Array(31), certSha256: '' }, op.metadata));
    expect(shortKey.code).toBe(status.INVALID_ARGUMENT);
    // the coordinator's own key cannot be a party's, under any name
    for (const name of ['coordinator', 'newparty']) {
      const own = await grpcError(unary(op.client.enroll.bind(op.client), { name, publicKey: coord.publicKey, certSha256: '' }, op.metadata));
      expect({ code: own.code, details: own.details }).toEqual({ code: status.ALREADY_EXISTS, details: "public_key is the coordinator's own identity key; each party enrols with its own key (fedbridge node init prints it)" });
      expect(await coord.ctx.repo.participantByName(name)).toBeNull();
    }
    const role = await grpcError(unary(op.client.issueToken.bind(op.client), { role: 'operator', label: '', expiresInSeconds: '0' }, op.metadata));
    expect(role.code).toBe(status.INVALID_ARGUMENT);
    // undecodable bytes on a unary and the client-streaming operator RPC
    const id = (b: Buffer) => b;
    const junk = Buffer.from([0xff, 0x01]); // field 31 with wire type 7, which does not exist
    const enrollJunk = await grpcError(new Promise((resolve, reject) => op.client.makeUnaryRequest('/fedbridge.v1.OperatorService/Enroll', id, id, junk, op.metadata, (e, r) => (e ? reject(e) : resolve(r)))));
    expect({ code: enrollJunk.code, details: enrollJunk.details }).toEqual({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^malformed request: the bytes are not a valid fedbridge\.v1\.EnrollRequest protobuf message/) });
    const startJunk = await grpcError(
      new Promise((resolve, reject) => {
        const call = op.client.makeClientStreamRequest('/fedbridge.v1.OperatorService/StartRun', id, id, op.metadata, {}, (e, r) => (e ? reject(e) : resolve(r)));
        call.on('error', () => undefined);
        call.write(junk);
        call.end();
      }),
    );
    expect({ code: startJunk.code, details: startJunk.details }).toEqual({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/not a valid fedbridge\.v1\.StartRunChunk protobuf message/) });
    expect(await counts()).toEqual(before);
    // a policy nobody signed cannot start a run
    const policy = testPolicy(parties, coord.publicKey, { numItems: 50 });
    const unsigned = await grpcError(startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties).slice(1) }, new Uint8Array(0)));
    expect(unsigned.code).toBe(status.FAILED_PRECONDITION);
    expect(unsigned.details).toMatch(/has not signed policy/);
    const wrongSig = signaturesFor(policy, parties);
    wrongSig[1] = { ...wrongSig[1], signature: wrongSig[0].signature };
    expect((await grpcError(startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: wrongSig }, new Uint8Array(0)))).code).toBe(status.PERMISSION_DENIED);
    expect(await counts()).toEqual(before);
    void OPERATOR_TOKEN;
    void SubscribeBody;
    op.client.close();
  });
});
