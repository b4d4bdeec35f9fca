/**
 * Idempotent masked-input upload (issue #5): a party whose acknowledgement was lost sends the same
 * masked input again and gets the same UploadAck, with NOTHING changed (no second row, audit entry,
 * protocol call, metric count or charge), whether the resend replays the very same signed open
 * (same nonce) or comes under a freshly signed open (what participant-node's uploadWithRetry sends),
 * and even after its input closed the mask phase. A different input from that party is refused
 * ALREADY_EXISTS; a truncated or altered resend fails the stream checks; a resend opened while its
 * first attempt still streams is refused RESOURCE_EXHAUSTED (one upload at a time) and may be sent
 * again once that one ended; replays of every other RPC
 * stay ALREADY_EXISTS; after the round is over a resend gets what it got before. Real gRPC with
 * mutual TLS on loopback: the test-only plain-sum protocol (every step driven by the test) on
 * SQLite, and the real secure-aggregation protocol (MiniNodes) on SQLite and, when a URL is
 * configured, PostgreSQL.
 */
import { EventKind, Phase, UploadOpenBody, type UploadAck, type UploadChunk, type SignedRequest } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { sodium, sodiumReady } from '../../shared/crypto/sodium';
import { encodedDimension } from '../../shared/dp/encode';
import { maskedInputEvidence } from '../../shared/audit/evidence';
import { verifyLog } from '../../shared/audit/verify';
import { exportLine } from '../../shared/audit/chain';
import { decodeClientMessage } from '../../shared/secagg/wire';
import type { Policy } from '../../shared/policy/schema';
import { verifyAuditChain } from '../../coordinator/audit/log';
import type { RunningCoordinator } from '../../coordinator/main';
import { PhaseMessageBody } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { PlainSumFactory } from './helpers/plain-protocol';
import { MiniNode } from './helpers/mini-node';
import { PG_URL, pgSchemaUrl } from './helpers/db';
import { enrol, grpc, grpcError, makeEnv, ManualTimers, modelDim, startOneRoundRun, operator, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, type Env, type EventStream } from './helpers/harness';

const { status } = grpc;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Entry = Record<string, any>;

const CHUNK = 16 * 1024;

/** A complete upload (signed open + chunks), built once so that it can be sent again byte for byte. */
function signedUpload(p: TestParty, runId: string, round: number, data: Uint8Array, chunkBytes = CHUNK): UploadChunk[] {
  const count = Math.ceil(data.length / chunkBytes);
  const open: UploadOpenBody = {
    header: p.header('UploadMaskedInput', runId, round),
    totalBytes: String(data.length),
    chunkCount: count,
    dataHash: sodium().crypto_generichash(32, data, null),
  };
  const chunks: UploadChunk[] = [{ open: p.sign('UploadMaskedInput', UploadOpenBody.encode(open).finish()), index: 0, data: new Uint8Array(0) }];
  for (let i = 0; i < count; i++) chunks.push({ open: undefined, index: i, data: data.slice(i * chunkBytes, Math.min(data.length, (i + 1) * chunkBytes)) });
  return chunks;
}

/** Streams exactly these chunk messages. */
function send(p: TestParty, chunks: UploadChunk[]): Promise<UploadAck> {
  return new Promise((resolve, reject) => {
    const call = p.client.uploadMaskedInput((e, ack) => (e ? reject(e) : resolve(ack)));
    call.on('error', () => undefined);
    for (const c of chunks) call.write(c);
    call.end();
  });
}

async function bytesReceived(coord: RunningCoordinator): Promise<Record<string, number>> {
  const m = await coord.ctx.metrics.bytesReceived.get();
  return Object.fromEntries(m.values.map((v) => [String(v.labels.kind), v.value]));
}

async function auditLog(coord: RunningCoordinator): Promise<{ bytes: Uint8Array; entries: Entry[] }> {
  const rows = await coord.ctx.repo.auditEntries();
  expect(verifyAuditChain(rows, coord.publicKey).failures).toEqual([]);
  return {
    bytes: new TextEncoder().encode(rows.map((r) => exportLine(r)).join('')),
    entries: rows.map((r) => JSON.parse(Buffer.from(r.entry).toString('utf8')) as Entry),
  };
}

beforeAll(async () => {
  await sodiumReady();
});

describe('idempotent masked-input upload (plain-sum protocol, every step driven by the test)', () => {
  let env: Env;
  let coord: RunningCoordinator;
  const factory = new PlainSumFactory(2);
  let parties: TestParty[];
  let streams: EventStream[];
  let runId: string;
  let dim: number;
  const inputs: Uint8Array[] = [];
  const uploads: UploadChunk[][] = [];
  const acks: UploadAck[] = [];
  const signedAdvertise: SignedRequest[] = [];

  const counts = () => coord.ctx.repo.snapshotCounts();
  const received = () => JSON.stringify(factory.protocols.map((p) => p.received));
  const maskReceived = () => factory.protocols[0].received.filter((r) => r.phase === 'mask').map((r) => r.party).sort();
  const rows = async () => (await coord.ctx.repo.maskedInputs(runId, 1)).map((r) => r.party);

  /** Everything a resend must leave alone: stored rows of every table, the protocol's messages, the audit log, the round's binding. */
  async function state() {
    return { counts: await counts(), received: received(), audit: (await coord.ctx.repo.auditEntries()).length, binding: coord.ctx.rounds.binding() };
  }

  /** `bad` fails with `code` and a message matching `msg`, and changes nothing. */
  async function refused(bad: () => Promise<unknown>, code: grpc.status, msg: RegExp) {
    const before = await state();
    const e = await grpcError(bad());
    expect({ code: e.code, details: e.details }).toEqual({ code, details: expect.stringMatching(msg) });
    expect(await state()).toEqual(before);
  }

  beforeAll(async () => {
    env = await makeEnv(['platform', 'insurer', 'insurer2'], { maxChunkBytes: CHUNK });
    coord = await startCoordinator(env, factory, new ManualTimers());
    parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort));
    ({ runId, dim, streams } = await startOneRoundRun(env, coord, parties, CHUNK));
    for (let k = 0; k < 3; k++) {
      const v = new Float32Array(dim);
      for (let i = 0; i < dim; i++) v[i] = ((i % 7) - 3) * 0.01 * (k + 1);
      inputs.push(new Uint8Array(v.buffer));
    }
    // advertise (the signed requests kept for the replay checks) and share
    for (const p of parties) {
      const req = p.sign('AdvertiseKeys', PhaseMessageBody.encode({ header: p.header('AdvertiseKeys', runId, 1), payload: new Uint8Array([1]) }).finish());
      signedAdvertise.push(req);
      await p.rawPhase('AdvertiseKeys', req);
    }
    await Promise.all(streams.map((s) => s.next((e) => e.phase === Phase.PHASE_SHARE_KEYS && e.round === 1)));
    await Promise.all(parties.map((p) => p.phase('ShareKeys', runId, 1, new Uint8Array([2]))));
    await Promise.all(streams.map((s) => s.next((e) => e.phase === Phase.PHASE_MASKED_INPUT && e.round === 1)));
  });
  afterAll(async () => {
    for (const s of streams ?? []) s.cancel();
    for (const p of parties ?? []) p.close();
    await coord?.close();
  });

  test('the same signed upload sent twice: both acknowledged alike, one stored row, nothing else changes', async () => {
    const [platform] = parties;
    uploads[0] = signedUpload(platform, runId, 1, inputs[0]);
    expect(uploads[0].length).toBeGreaterThan(2); // a real multi-chunk stream
    acks[0] = await send(platform, uploads[0]);
    expect(acks[0]).toEqual({ runId, round: 1, receivedBytes: String(dim * 4) });
    expect(await rows()).toEqual(['platform']);
    const before = await state();
    const bytesBefore = await bytesReceived(coord);
    expect(bytesBefore.upload).toBe(dim * 4);

    // the identical bytes again: the same signed open (same nonce), the same chunks
    expect(await send(platform, uploads[0])).toEqual(acks[0]);
    expect(await state()).toEqual(before);
    expect(await rows()).toEqual(['platform']);
    expect(maskReceived()).toEqual(['platform']);
    // counted apart: `upload` and the phase's bytes count each input once
    expect(await bytesReceived(coord)).toEqual({ ...bytesBefore, 'upload-resend': dim * 4 });

    // the same masked input under a freshly signed open (new nonce), as the node's uploadWithRetry sends it
    expect(await platform.upload(runId, 1, inputs[0], { chunkBytes: CHUNK })).toEqual(acks[0]);
    expect(await state()).toEqual(before);
    expect(await bytesReceived(coord)).toEqual({ ...bytesBefore, 'upload-resend': 2 * dim * 4 });
    expect(coord.ctx.rounds.binding()).toMatchObject({ phase: 'mask', expected: ['insurer', 'insurer2', 'platform'] });
  });

  test('a resend while its first attempt still streams is refused RESOURCE_EXHAUSTED (one upload at a time), changing nothing; once the first completed, resends get its ack; one row', async () => {
    const insurer = parties[1];
    uploads[1] = signedUpload(insurer, runId, 1, inputs[1]);
    // the first attempt: open and the first chunk sent, the stream still open
    let settle!: (v: UploadAck | grpc.ServiceError) => void;
    const firstResult = new Promise<UploadAck | grpc.ServiceError>((r) => (settle = r));
    const first = insurer.client.uploadMaskedInput((e, ack) => settle(e ?? ack!));
    first.on('error', () => undefined);
    first.write(uploads[1][0]);
    first.write(uploads[1][1]);
    for (let i = 0; coord.ctx.uploads.count('insurer') === 0; i++) {
      if (i > 1000) throw new Error('the first attempt never reached the coordinator');
      await new Promise((r) => setTimeout(r, 10));
    }
    // a resend racing it (the same bytes under a fresh open): refused at its open, nothing changes
    await refused(() => insurer.upload(runId, 1, inputs[1], { chunkBytes: CHUNK }), status.RESOURCE_EXHAUSTED, /^UploadMaskedInput: party "insurer" already has an upload in progress for round 1 of run .* \(one at a time\); send it again once that one has ended$/);
    for (const c of uploads[1].slice(2)) first.write(c);
    first.end();
    const a1 = (await firstResult) as UploadAck;
    acks[1] = a1;
    expect(a1).toEqual({ runId, round: 1, receivedBytes: String(dim * 4) });
    // the same signed open again, and the same input under a fresh one: acknowledged alike
    expect(await send(insurer, uploads[1])).toEqual(a1);
    expect(await insurer.upload(runId, 1, inputs[1], { chunkBytes: CHUNK })).toEqual(a1);
    expect(await rows()).toEqual(['insurer', 'platform']);
    expect(maskReceived()).toEqual(['insurer', 'platform']);
    expect((await bytesReceived(coord)).upload).toBe(2 * dim * 4);
  });

  test('a different masked input from the same party: ALREADY_EXISTS naming party and round; a truncated or altered resend fails its stream checks; nothing changes', async () => {
    const [platform] = parties;
    const other = new Uint8Array(inputs[0]);
    other[5] ^= 1;
    const already = /^party "platform" already had a masked input accepted for round 1 of run run-.*; a different one is refused/;
    await refused(() => platform.upload(runId, 1, other, { chunkBytes: CHUNK }), status.ALREADY_EXISTS, already);
    // a different input under a replayed open is refused the same way
    await refused(() => send(platform, signedUpload(platform, runId, 1, other).map((c, i) => (i === 0 ? uploads[0][0] : c))), status.INVALID_ARGUMENT, /does not match the announced hash/);
    // the accepted input's signed open, one byte altered in flight: the whole stream is verified before anything is said
    const altered = uploads[0].map((c, i) => {
      if (i !== 2) return c;
      const d = new Uint8Array(c.data);
      d[7] ^= 0x80;
      return { ...c, data: d };
    });
    await refused(() => send(platform, altered), status.INVALID_ARGUMENT, /does not match the announced hash/);
    // truncated: the last chunk missing
    await refused(() => send(platform, uploads[0].slice(0, -1)), status.INVALID_ARGUMENT, /got \d+ chunks/);
    // a fresh open announcing the accepted input's hash but carrying other data
    await refused(() => platform.upload(runId, 1, other, { chunkBytes: CHUNK, openOver: { dataHash: sodium().crypto_generichash(32, inputs[0], null) } }), status.INVALID_ARGUMENT, /does not match the announced hash/);
    // the decisive check on the complete payload (what a different input racing its first attempt meets)
    const before = await state();
    await expect(coord.ctx.rounds.submitMaskedInput('platform', runId, 1, other, null)).rejects.toMatchObject({ code: status.ALREADY_EXISTS, message: expect.stringMatching(already) });
    await expect(coord.ctx.rounds.submit('platform', 'mask', runId, 1, other)).rejects.toMatchObject({ code: status.ALREADY_EXISTS });
    expect(await state()).toEqual(before);
    expect(await rows()).toEqual(['insurer', 'platform']);
    // a replayed open of a party with no accepted input is refused as any replay is
    const insurer2 = parties[2];
    const fresh = signedUpload(insurer2, runId, 1, inputs[2]);
    const mangled = fresh.map((c, i) => (i === 1 ? { ...c, data: new Uint8Array(c.data.length) } : c));
    await refused(() => send(insurer2, mangled), status.INVALID_ARGUMENT, /does not match the announced hash/); // consumes the nonce, stores nothing
    await refused(() => send(insurer2, fresh), status.ALREADY_EXISTS, /UploadMaskedInput: replayed request \(nonce already used by party "insurer2"\)/);
  });

  test('the last input closes the phase; its resend in phase consistency gets its ack; replays of other RPCs stay ALREADY_EXISTS; the round completes with each input once', async () => {
    const insurer2 = parties[2];
    uploads[2] = signedUpload(insurer2, runId, 1, inputs[2]);
    acks[2] = await send(insurer2, uploads[2]);
    await Promise.all(streams.map((s) => s.next((e) => e.phase === Phase.PHASE_CONSISTENCY_CHECK && e.round === 1)));
    expect(coord.ctx.rounds.binding()).toMatchObject({ runId, round: 1, phase: 'consistency' });
    expect(await rows()).toEqual([]); // deleted with the phase move that wrote the mask entry

    // the ack was "lost": the same bytes again, now in phase consistency, and under a fresh open
    const before = await state();
    expect(await send(insurer2, uploads[2])).toEqual(acks[2]);
    expect(await insurer2.upload(runId, 1, inputs[2], { chunkBytes: CHUNK })).toEqual(acks[2]);
    expect(await send(parties[0], uploads[0])).toEqual(acks[0]);
    expect(await state()).toEqual(before);
    const other = new Uint8Array(inputs[2]);
    other[0] ^= 1;
    await refused(() => insurer2.upload(runId, 1, other, { chunkBytes: CHUNK }), status.ALREADY_EXISTS, /party "insurer2" already had a masked input accepted for round 1/);

    // replays of every other RPC: refused exactly as before
    for (const [k, req] of signedAdvertise.entries()) await refused(() => parties[k].rawPhase('AdvertiseKeys', req), status.ALREADY_EXISTS, /AdvertiseKeys: replayed request/);
    const consistency = parties.map((p) => p.sign('ConsistencyCheck', PhaseMessageBody.encode({ header: p.header('ConsistencyCheck', runId, 1), payload: new Uint8Array([3]) }).finish()));
    await parties[0].rawPhase('ConsistencyCheck', consistency[0]);
    await refused(() => parties[0].rawPhase('ConsistencyCheck', consistency[0]), status.ALREADY_EXISTS, /ConsistencyCheck: replayed request/);
    await parties[1].rawPhase('ConsistencyCheck', consistency[1]);
    await parties[2].rawPhase('ConsistencyCheck', consistency[2]);
    await Promise.all(streams.map((s) => s.next((e) => e.phase === Phase.PHASE_UNMASKING && e.round === 1)));
    expect(await send(parties[1], uploads[1])).toEqual(acks[1]); // still inside the round: still its ack
    await Promise.all(parties.map((p) => p.phase('Unmasking', runId, 1, new Uint8Array([4]))));
    const done = await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1);
    expect(done.modelVersion).toBe(2);

    // the protocol saw each input once: the new model is base (0) + the mean of the three inputs
    expect(maskReceived()).toEqual(['insurer', 'insurer2', 'platform']);
    const m = await parties[0].download(2);
    const got = new Float32Array(m.data.buffer.slice(m.data.byteOffset, m.data.byteOffset + m.data.length));
    const f = inputs.map((b) => new Float32Array(b.buffer));
    for (const i of [0, 1, 2, 3, 5, dim - 1]) expect(got[i]).toBeCloseTo((f[0][i] + f[1][i] + f[2][i]) / 3, 6);
    // the audit log: one mask entry listing each party once; the round completed with all three
    const r1 = (await auditLog(coord)).entries.filter((e) => e.runId === runId && e.round === 1);
    const masks = r1.filter((e) => e.type === 'round-phase' && e.phase === 'mask');
    expect(masks).toHaveLength(1);
    expect(masks[0].parties).toEqual(['insurer', 'insurer2', 'platform']);
    expect(r1.find((e) => e.type === 'round-completed')!.survivors).toEqual(['insurer', 'insurer2', 'platform']);
    // each input counted once under `upload`; every identical resend apart
    const bytes = await bytesReceived(coord);
    expect(bytes.upload).toBe(3 * dim * 4);
    expect(bytes['phase-mask']).toBe(3 * dim * 4);
    expect(bytes['upload-resend']).toBe(8 * dim * 4); // 2 + 2 (after the refused race) + 3 + 1
  });

  test('after the round is over a resend gets what it got before: a replayed open ALREADY_EXISTS, a fresh one FAILED_PRECONDITION', async () => {
    await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
    await refused(() => send(parties[0], uploads[0]), status.ALREADY_EXISTS, /UploadMaskedInput: replayed request \(nonce already used by party "platform"\)/);
    await refused(() => parties[0].upload(runId, 1, inputs[0], { chunkBytes: CHUNK }), status.FAILED_PRECONDITION, /no round is open/);
  });
});

const PARTIES = ['platform', 'insurer', 'insurer2'];

for (const backend of PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const)) {
  test(`secure aggregation (${backend}): a stored masked input sent again (same signed open, then a fresh open) is acknowledged alike; its evidence is logged once, the log verifies, the round completes`, async () => {
    const pg = backend === 'postgres' ? await pgSchemaUrl(PG_URL, 'idem') : null;
    const env = await makeEnv(PARTIES, pg ? { databaseUrl: pg.url } : {});
    const coord = await startCoordinator(env, undefined as never, new ManualTimers());
    const parties = PARTIES.map((n) => new TestParty(n, env, coord.grpcPort));
    let nodes: MiniNode[] = [];
    try {
      const op = operator(env, coord.grpcPort);
      await enrol(env, op, parties);
      const policy: Policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
      policy.secagg.threshold = 2;
      const dim = modelDim(policy);
      const length = encodedDimension(dim, policy.secagg.rotation === 'hadamard');
      nodes = parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, length));
      for (const n of nodes) n.holdAt = { round: 1, phase: Phase.PHASE_MASKED_INPUT };
      const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(new Float32Array(dim).fill(0.01).buffer));
      op.client.close();
      const runId = st.runId;
      const held = await Promise.all(nodes.map((n) => n.heldReply(1, Phase.PHASE_MASKED_INPUT)));

      const up = signedUpload(parties[0], runId, 1, held[0], 64 * 1024);
      const ack = await send(parties[0], up);
      expect(ack).toEqual({ runId, round: 1, receivedBytes: String(held[0].length) });
      const repo = coord.ctx.repo;
      const stored = await repo.maskedInputs(runId, 1);
      const before = { counts: await repo.snapshotCounts(), audit: (await repo.auditEntries()).length };
      expect(await send(parties[0], up)).toEqual(ack);
      expect(await nodes[0].release(1, Phase.PHASE_MASKED_INPUT, runId)).toEqual(ack); // fresh open, same bytes
      expect({ counts: await repo.snapshotCounts(), audit: (await repo.auditEntries()).length }).toEqual(before);
      expect(await repo.maskedInputs(runId, 1)).toEqual(stored);
      expect(coord.ctx.rounds.binding()).toMatchObject({ phase: 'mask' });

      await nodes[1].release(1, Phase.PHASE_MASKED_INPUT, runId);
      await nodes[2].release(1, Phase.PHASE_MASKED_INPUT, runId);
      await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
      const log = await auditLog(coord);
      const res = verifyLog(log.bytes, { policy });
      expect(res.failures).toEqual([]);
      const r1 = log.entries.filter((e) => e.runId === runId && e.round === 1);
      const masks = r1.filter((e) => e.type === 'round-phase' && e.phase === 'mask');
      expect(masks).toHaveLength(1);
      expect(masks[0].parties).toEqual(['insurer', 'insurer2', 'platform']);
      const evidence = (b: Uint8Array) => {
        const m = decodeClientMessage(b);
        if (m.type !== 'masked-input') throw new Error(`held reply is a ${m.type} message`);
        return maskedInputEvidence(m);
      };
      expect(masks[0].maskedInputs).toEqual([evidence(held[1]), evidence(held[2]), evidence(held[0])]);
      const done = r1.find((e) => e.type === 'round-completed')!;
      expect(done.survivors).toEqual(['insurer', 'insurer2', 'platform']);
      expect(Object.keys(done.epsilon).sort()).toEqual(['insurer', 'insurer2', 'platform']);
      for (const n of nodes) expect(n.errors).toEqual([]);
    } finally {
      for (const n of nodes) n.stream.cancel();
      for (const p of parties) p.close();
      await coord.close();
      await pg?.drop();
    }
  }, 120_000);
}
