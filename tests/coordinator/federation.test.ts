/**
 * The coordinator over real gRPC (mutual TLS) on loopback port 0: enrolment, a full run driven
 * through every phase by subscribed parties (events pushed, no polling), chunked upload beyond the
 * 4 MiB message limit, chunked model download, model versions stored with their hashes.
 */
import { EventKind, Phase } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { sodium } from '../../shared/crypto/sodium';
import { verifyAuditChain } from '../../coordinator/audit/log';
import type { RunningCoordinator } from '../../coordinator/main';
import { PlainSumFactory } from './helpers/plain-protocol';
import { grpc, grpcError, makeEnv, ManualTimers, modelDim, operator, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, unary, type Env } from './helpers/harness';

const f32 = (n: number, f: (i: number) => number) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return new Uint8Array(a.buffer);
};

describe('federation over gRPC (mutual TLS, loopback)', () => {
  let env: Env;
  let coord: RunningCoordinator;
  const timers = new ManualTimers();
  const factory = new PlainSumFactory(2);
  let parties: TestParty[];

  beforeAll(async () => {
    env = await makeEnv(['platform', 'insurer', 'insurer2']);
    coord = await startCoordinator(env, factory, timers);
    parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort));
  });
  afterAll(async () => {
    for (const p of parties ?? []) p.close();
    await coord?.close();
  });

  test('two full rounds: events pushed per phase, >4 MiB chunked uploads, the model is base + mean of inputs', async () => {
    const op = operator(env, coord.grpcPort);
    for (const p of parties) {
      const r = await unary(op.client.enroll.bind(op.client), { name: p.name, publicKey: p.keys.publicKey, certSha256: '' }, op.metadata);
      expect(r.participant?.name).toBe(p.name);
    }
    const policy = testPolicy(parties, coord.publicKey, { numItems: 36_000, rounds: 2 });
    const dim = modelDim(policy);
    expect(dim * 4).toBeGreaterThan(4 * 1024 * 1024); // the masked input is larger than one gRPC message may be
    const initial = f32(dim, (i) => (i % 7) / 7);
    const streams = parties.map((p) => p.subscribe(coord.publicKey));
    for (const s of streams) await s.next((e) => e.kind === EventKind.EVENT_KIND_HELLO);

    const status = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, initial);
    expect(status.state).toBe('running');
    expect(status.currentRound?.phase).toBe('advertise');
    const runId = status.runId;

    let base = new Float32Array(initial.buffer.slice(0));
    for (const round of [1, 2]) {
      const inputs = parties.map((_, k) => f32(dim, (i) => ((i * (k + 1)) % 13) / 100 - 0.05));
      for (const [method, phase, ph] of [
        ['AdvertiseKeys', Phase.PHASE_ADVERTISE_KEYS, 'advertise'],
        ['ShareKeys', Phase.PHASE_SHARE_KEYS, 'share'],
        ['UploadMaskedInput', Phase.PHASE_MASKED_INPUT, 'mask'],
        ['ConsistencyCheck', Phase.PHASE_CONSISTENCY_CHECK, 'consistency'],
        ['Unmasking', Phase.PHASE_UNMASKING, 'unmask'],
      ] as const) {
        const evs = await Promise.all(streams.map((s) => s.next((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === round && e.phase === phase)));
        for (const [k, e] of evs.entries()) {
          expect(e.runId).toBe(runId);
          expect(e.parties.sort()).toEqual(parties.map((p) => p.name).sort());
          if (ph !== 'advertise') expect(Buffer.from(e.payload).toString()).toBe(`${ph}:${parties[k].name}`);
        }
        if (method === 'UploadMaskedInput') {
          const acks = await Promise.all(parties.map((p, k) => p.upload(runId, round, inputs[k], { chunkBytes: 1024 * 1024 })));
          expect(acks.map((a) => Number(a.receivedBytes))).toEqual(parties.map(() => dim * 4));
        } else {
          const acks = await Promise.all(parties.map((p) => p.phase(method, runId, round, new TextEncoder().encode(`${ph} from ${p.name}`))));
          expect(acks.map((a) => a.accepted).sort()).toEqual([1, 2, 3]);
        }
      }
      const done = await streams[0].next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === round);
      // expected model computed here, independently of the coordinator
      const expected = new Float32Array(dim);
      const vs = inputs.map((u) => new Float32Array(u.buffer));
      for (let i = 0; i < dim; i++) expected[i] = base[i] + (vs[0][i] + vs[1][i] + vs[2][i]) / 3;
      const dl = await parties[1].download(done.modelVersion);
      expect(dl.chunks).toBeGreaterThan(4);
      expect(dl.info.version).toBe(done.modelVersion);
      expect(dl.info.parentVersion).toBe(done.modelVersion - 1);
      expect(Buffer.compare(Buffer.from(dl.info.modelHash), Buffer.from(sodium().crypto_generichash(32, dl.data, null)))).toBe(0);
      expect(dl.data.length).toBe(dim * 4);
      const got = new Float32Array(dl.data.buffer, dl.data.byteOffset, dim);
      let maxDiff = 0;
      for (let i = 0; i < dim; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - expected[i]));
      expect(maxDiff).toBeLessThan(1e-6); // same float32 values up to the order of summation
      base = expected;
    }
    await streams[2].next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
    const fin = await unary(op.client.getRunStatus.bind(op.client), { runId }, op.metadata);
    expect(fin.state).toBe('completed');
    expect(fin.roundsCompleted).toBe(2);
    expect(fin.latestModelVersion).toBe(3);
    expect(verifyAuditChain(await coord.ctx.repo.auditEntries(), coord.publicKey).failures).toEqual([]);
    for (const s of streams) s.cancel();
    expect(timers.count).toBe(0); // every phase closed early (all sent), no deadline left armed
    op.client.close();
  });
});



describe('TLS without client certificates (requireClientCert: false)', () => {
  test('parties authenticate by signature alone; the channel is still TLS (a plaintext client is refused)', async () => {
    const env2 = await makeEnv(['platform'], { requireClientCert: false });
    const c = await startCoordinator(env2, new PlainSumFactory(2), new ManualTimers());
    try {
      const op = operator(env2, c.grpcPort);
      const p = new TestParty('platform', env2, c.grpcPort, { certAs: 'nobody' }); // no client certificate
      await unary(op.client.enroll.bind(op.client), { name: 'platform', publicKey: p.keys.publicKey, certSha256: '' }, op.metadata);
      const s = p.subscribe(c.publicKey);
      const hello = await s.next((e) => e.kind === EventKind.EVENT_KIND_HELLO);
      expect(hello.runId).toBe('');
      s.cancel();
      // plaintext to the TLS port fails at the transport
      const { ParticipantServiceClient } = await import('../../proto/gen/grpc/fedbridge/v1/federation');
      const plain = new ParticipantServiceClient(`127.0.0.1:${c.grpcPort}`, grpc.credentials.createInsecure());
      const e = await grpcError(new Promise((res, rej) => plain.advertiseKeys({ body: new Uint8Array([1]), signature: new Uint8Array(64) }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, a) => (err ? rej(err) : res(a)))));
      expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.INTERNAL]).toContain(e.code);
      plain.close();
      p.close();
      op.client.close();
    } finally {
      await c.close();
    }
  });
});
