/**
 * `npm run bench -- coordinator`: the coordinator's transport, measured over real gRPC with mutual
 * TLS on loopback (the NestJS app as the product runs it; SQLite storage in a temp folder).
 *
 * 1. Chunked upload throughput: one party streams a 32 MiB masked-input upload (signed open,
 *    BLAKE2b-checked chunks) for chunk sizes 64 KiB, 256 KiB and 1 MiB; 5 repetitions each,
 *    interleaved; median MB/s. The round protocol here is a sink that accepts the bytes (so the
 *    figure is transport + authentication + reassembly + hashing, not secure aggregation).
 * 2. Whole secure-aggregation rounds over gRPC: n = 3 parties, each a SecAggClient driven only by
 *    the coordinator's pushed events; vector length m = 2^16 and 2^20 (a model of about 1M shared
 *    parameters, Hadamard-padded); wall time from the round opening to ROUND_COMPLETED seen by
 *    every party, 3 rounds per size (reported: median and each).
 * The machine is shared: each record carries the 1-minute load average at the time it was taken.
 */
import * as fs from 'node:fs';
import { randomFillSync } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import {
  EventKind,
  ParticipantServiceClient,
  Phase,
  PhaseEvent,
  PhaseMessageBody,
  SubscribeBody,
  UploadOpenBody,
  type PhaseAck,
  type SignedEvent,
  type SignedRequest,
  type UploadAck,
  type UploadChunk,
} from '../proto/gen/grpc/fedbridge/v1/federation';
import { makeCerts } from '../coordinator/certs/certs';
import { operatorClient, startRun, unary } from '../coordinator/cli/operator-client';
import { validateConfig } from '../coordinator/config/config';
import { tokenSha256Hex } from '../coordinator/identity/tokens';
import { createCoordinator, type RunningCoordinator } from '../coordinator/main';
import { signPolicyHash } from '../coordinator/policy/signatures';
import type { ProtocolStep, RoundPhase, RoundProtocol, RoundProtocolFactory, RoundStart } from '../coordinator/rounds/protocol';
import { ed25519Keygen, type Ed25519KeyPair } from '../shared/crypto/sign';
import { sodium, sodiumReady } from '../shared/crypto/sodium';
import { encodedDimension } from '../shared/dp/encode';
import { publicRoundSeed } from '../shared/fl/seeds';
import { layoutSize, sharedParameterLayout } from '../shared/model/layout';
import { defaultPolicy } from '../shared/policy/defaults';
import { policyHash, type Policy } from '../shared/policy/schema';
import { newHeader, signRequest, type PartyMethod } from '../shared/proto/envelope';
import { SecAggClient } from '../shared/secagg/client';
import { decodeServerMessage, encodeClientMessage } from '../shared/secagg/wire';
import { machineInfo, median, type BenchContext } from './lib';

const FED = 'bench';
const TOKEN = 'fbt_bench-operator-token-0123456789';

class Party {
  readonly keys: Ed25519KeyPair = ed25519Keygen();
  readonly client: ParticipantServiceClient;
  constructor(readonly name: string, certDir: string, port: number) {
    const creds = grpc.credentials.createSsl(fs.readFileSync(path.join(certDir, 'ca.crt')), fs.readFileSync(path.join(certDir, `${name}.key`)), fs.readFileSync(path.join(certDir, `${name}.crt`)));
    this.client = new ParticipantServiceClient(`127.0.0.1:${port}`, creds, { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' });
  }
  signed(method: PartyMethod, body: Uint8Array): SignedRequest {
    return signRequest(method, body, this.keys.secretKey);
  }
  header(method: PartyMethod, runId: string, round: number) {
    return newHeader({ federationId: FED, party: this.name, runId, round, method });
  }
  phase(method: 'AdvertiseKeys' | 'ShareKeys' | 'ConsistencyCheck' | 'Unmasking', runId: string, round: number, payload: Uint8Array): Promise<PhaseAck> {
    const req = this.signed(method, PhaseMessageBody.encode({ header: this.header(method, runId, round), payload }).finish());
    const c = this.client;
    const fn = { AdvertiseKeys: c.advertiseKeys, ShareKeys: c.shareKeys, ConsistencyCheck: c.consistencyCheck, Unmasking: c.unmasking }[method].bind(c) as (r: SignedRequest, cb: (e: grpc.ServiceError | null, a: PhaseAck) => void) => unknown;
    return new Promise((res, rej) => fn(req, (e, a) => (e ? rej(e) : res(a))));
  }
  upload(runId: string, round: number, data: Uint8Array, chunk: number): Promise<UploadAck> {
    const count = Math.ceil(data.length / chunk);
    const open = UploadOpenBody.encode({ header: this.header('UploadMaskedInput', runId, round), totalBytes: String(data.length), chunkCount: count, dataHash: sodium().crypto_generichash(32, data, null) }).finish();
    return new Promise((res, rej) => {
      const call = this.client.uploadMaskedInput((e, a) => (e ? rej(e) : res(a)));
      call.write({ open: this.signed('UploadMaskedInput', open), index: 0, data: new Uint8Array(0) } as UploadChunk);
      for (let i = 0; i < count; i++) call.write({ open: undefined, index: i, data: data.subarray(i * chunk, Math.min(data.length, (i + 1) * chunk)) } as UploadChunk);
      call.end();
    });
  }
  subscribe(onEvent: (e: PhaseEvent) => void): grpc.ClientReadableStream<SignedEvent> {
    const call = this.client.subscribe(this.signed('Subscribe', SubscribeBody.encode({ header: this.header('Subscribe', '', 0) }).finish()));
    call.on('data', (ev: SignedEvent) => onEvent(PhaseEvent.decode(ev.body)));
    call.on('error', () => undefined);
    return call;
  }
}

/** Bench instrument: accepts one masked-input upload per party and never completes the phase. */
class SinkProtocol implements RoundProtocol {
  phase: RoundPhase = 'mask';
  private got = new Set<string>();
  waitingFor(): string[] {
    return [];
  }
  receive(party: string, phase: RoundPhase, payload: Uint8Array): { complete: boolean } {
    if (phase !== 'mask' || payload.length === 0) throw new Error('sink takes masked input');
    this.got.add(party);
    return { complete: false };
  }
  closePhase(): ProtocolStep {
    return { kind: 'aborted', reason: 'bench sink' };
  }
  abort(): void {
    /* nothing held */
  }
}
class SinkFactory implements RoundProtocolFactory {
  create(start: RoundStart) {
    return { protocol: new SinkProtocol(), first: { phase: 'mask' as const, parties: start.parties, messages: [] } };
  }
}

async function setup(dir: string, names: string[], protocol: RoundProtocolFactory | 'secagg', maxChunkBytes: number, maxUploadBytes: number) {
  const certs = path.join(dir, 'certs');
  await makeCerts({ out: certs, parties: [...names, 'operator'] });
  const config = validateConfig(
    {
      federationId: FED,
      grpc: { listen: '127.0.0.1:0', tls: { cert: path.join(certs, 'server.crt'), key: path.join(certs, 'server.key'), ca: path.join(certs, 'ca.crt') }, maxChunkBytes, maxUploadBytes },
      http: { listen: '127.0.0.1:0' },
      storage: { dataDir: path.join(dir, 'data') },
      identity: { keyFile: path.join(dir, 'coordinator.key') },
      operator: { tokenSha256: tokenSha256Hex(TOKEN) },
    },
    dir,
    'bench',
    {},
  );
  const coord = await createCoordinator(config, { protocol, createKey: true, log: () => undefined });
  const parties = names.map((n) => new Party(n, certs, coord.grpcPort));
  const op = operatorClient({ address: `127.0.0.1:${coord.grpcPort}`, caFile: path.join(certs, 'ca.crt'), token: TOKEN, certFile: path.join(certs, 'operator.crt'), keyFile: path.join(certs, 'operator.key') });
  for (const p of parties) await unary(op.client.enroll.bind(op.client), { name: p.name, publicKey: p.keys.publicKey, certSha256: '' }, op.metadata);
  return { coord, parties, op };
}

function policyFor(coord: RunningCoordinator, parties: Party[], numItems: number, rounds: number): Policy {
  const p = defaultPolicy({
    federationId: FED,
    coordinator: { name: 'coordinator', publicKey: Buffer.from(coord.publicKey).toString('base64') },
    parties: parties.map((q) => ({ name: q.name, publicKey: Buffer.from(q.keys.publicKey).toString('base64') })),
    catalogue: { hash: 'ab'.repeat(32), numItems },
  });
  p.training.rounds = rounds;
  p.secagg.threshold = 2;
  return p;
}

async function uploadThroughput(ctx: BenchContext, dir: string): Promise<void> {
  const MB = 1024 * 1024;
  const size = 32 * MB;
  const chunks = [64 * 1024, 256 * 1024, MB];
  const reps = 5;
  // a party's masked input is accepted once per round, so every repetition is a different party
  const names = Array.from({ length: reps * chunks.length }, (_, i) => `p${String(i).padStart(2, '0')}`);
  const { coord, parties, op } = await setup(dir, names, new SinkFactory(), MB, 64 * MB);
  try {
    const policy = policyFor(coord, parties, 50, 1);
    const h = policyHash(policy);
    const dim = layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
    const st = await startRun(op.client, op.metadata, { policyYaml: stringify(policy), signatures: parties.map((p) => ({ party: p.name, signature: signPolicyHash(h, p.keys.secretKey) })) }, new Uint8Array(dim * 4));
    const data = new Uint8Array(size);
    randomFillSync(data); // payload content is irrelevant to the transport (masked inputs look uniform)
    const mbps = new Map<number, number[]>(chunks.map((c) => [c, []]));
    let k = 0;
    for (let r = 0; r < reps; r++) {
      for (const c of chunks) {
        const t0 = process.hrtime.bigint();
        const ack = await parties[k++].upload(st.runId, 1, data, c);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (Number(ack.receivedBytes) !== size) throw new Error('short upload');
        mbps.get(c)!.push(size / MB / (ms / 1000));
      }
    }
    for (const c of chunks) {
      const xs = mbps.get(c)!;
      ctx.record('upload_mib_per_s', Number(median(xs).toFixed(1)), 'MiB/s', { chunkBytes: c, uploadBytes: size, reps, all: xs.map((x) => Number(x.toFixed(1))), tls: 'mutual', loadAvg1m: os.loadavg()[0], ...machineInfo() });
    }
  } finally {
    op.client.close();
    for (const p of parties) p.client.close();
    await coord.close();
  }
}

async function secaggRounds(ctx: BenchContext, dir: string, numItems: number, rounds: number): Promise<void> {
  const { coord, parties, op } = await setup(dir, ['platform', 'insurer', 'insurer2'], 'secagg', 1024 * 1024, 512 * 1024 * 1024);
  const policy = policyFor(coord, parties, numItems, rounds);
  const dim = layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
  const m = encodedDimension(dim, policy.secagg.rotation === 'hadamard');
  const started = new Map<number, number>();
  const completed = new Map<number, number[]>();
  const errors: Error[] = [];
  let finished!: () => void;
  const allDone = new Promise<void>((r) => (finished = r));
  const streams = parties.map((p) => {
    const clients = new Map<number, SecAggClient>();
    let chain: Promise<unknown> = Promise.resolve();
    const input = (round: number) => {
      const v = new Uint32Array(m);
      for (let i = 0; i < m; i++) v[i] = (((i * 31 + round * 7 + p.name.length) % 2001) - 1000) >>> 0;
      return v;
    };
    return p.subscribe((e) => {
      chain = chain
        .then(async () => {
          if (e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED) {
            const list = completed.get(e.round) ?? [];
            list.push(performance.now());
            completed.set(e.round, list);
            if (e.round === rounds && list.length === parties.length) finished();
            return;
          }
          if (e.kind !== EventKind.EVENT_KIND_PHASE_STARTED) return;
          if (e.phase === Phase.PHASE_ADVERTISE_KEYS) {
            if (!started.has(e.round)) started.set(e.round, performance.now());
            const peers: Record<string, Uint8Array> = {};
            for (const q of policy.parties) peers[q.name] = new Uint8Array(Buffer.from(q.publicKey, 'base64'));
            const c = new SecAggClient({
              federationId: FED,
              runId: e.runId,
              round: e.round,
              params: { threshold: policy.secagg.threshold, degree: policy.secagg.neighbourDegree, bits: policy.secagg.bitWidth },
              roundSeed: publicRoundSeed('graph', FED, e.runId, e.round),
              vectorLength: m,
              peers,
              identity: { partyId: p.name, secretKey: p.keys.secretKey },
              coordinatorPublicKey: coord.publicKey,
            });
            clients.set(e.round, c);
            await p.phase('AdvertiseKeys', e.runId, e.round, encodeClientMessage(c.start()));
            return;
          }
          const c = clients.get(e.round)!;
          const reply = encodeClientMessage(c.handle(decodeServerMessage(e.payload), input(e.round)));
          if (e.phase === Phase.PHASE_MASKED_INPUT) await p.upload(e.runId, e.round, reply, 1024 * 1024);
          else await p.phase(({ [Phase.PHASE_SHARE_KEYS]: 'ShareKeys', [Phase.PHASE_CONSISTENCY_CHECK]: 'ConsistencyCheck', [Phase.PHASE_UNMASKING]: 'Unmasking' } as const)[e.phase as 3 | 5 | 6], e.runId, e.round, reply);
        })
        .catch((err) => {
          errors.push(err as Error);
          finished();
        });
    });
  });
  try {
    const h = policyHash(policy);
    await startRun(op.client, op.metadata, { policyYaml: stringify(policy), signatures: parties.map((p) => ({ party: p.name, signature: signPolicyHash(h, p.keys.secretKey) })) }, new Uint8Array(dim * 4));
    await allDone;
    if (errors.length) throw errors[0];
    const ms = [...Array(rounds).keys()].map((i) => Math.max(...completed.get(i + 1)!) - started.get(i + 1)!);
    ctx.record('secagg_round_ms', Number(median(ms).toFixed(1)), 'ms', { parties: parties.length, vectorLength: m, sharedParameters: dim, rounds, all: ms.map((x) => Number(x.toFixed(1))), transport: 'gRPC mutual TLS loopback', storage: 'sqlite', loadAvg1m: os.loadavg()[0], ...machineInfo() });
  } finally {
    for (const s of streams) s.cancel();
    op.client.close();
    for (const p of parties) p.client.close();
    await coord.close();
  }
}

export async function run(ctx: BenchContext): Promise<void> {
  await sodiumReady();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-bench-coord-'));
  try {
    ctx.log('chunked upload throughput (32 MiB, 5 reps per chunk size)');
    await uploadThroughput(ctx, path.join(dir, 'upload'));
    ctx.log('secure-aggregation rounds over gRPC, m = 2^16');
    await secaggRounds(ctx, path.join(dir, 'r16'), 1562, 3);
    ctx.log('secure-aggregation rounds over gRPC, m = 2^20');
    await secaggRounds(ctx, path.join(dir, 'r20'), 30047, 3);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
