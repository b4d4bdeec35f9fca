/**
 * Test harness: a real coordinator (NestJS, gRPC over mutual TLS on loopback port 0, SQLite or
 * PostgreSQL) plus typed party and operator clients built from the generated grpc-js code.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import {
  DownloadModelBody,
  EventKind,
  ParticipantServiceClient,
  Phase,
  ParticipantServiceService,
  PhaseEvent,
  PhaseMessageBody,
  SubscribeBody,
  UploadOpenBody,
  type ModelInfo,
  type PartyHeader,
  type PhaseAck,
  type SignedEvent,
  type SignedRequest,
  type UploadAck,
  type UploadChunk,
} from '../../../proto/gen/grpc/fedbridge/v1/federation';
import { makeCerts, type CertsResult } from '../../../coordinator/certs/certs';
import { validateConfig, type CoordinatorConfigInput } from '../../../coordinator/config/config';
import { createCoordinator, type RunningCoordinator } from '../../../coordinator/main';
import { operatorClient, startRun, unary } from '../../../coordinator/cli/operator-client';
import { tokenSha256Hex } from '../../../coordinator/identity/tokens';
import { signPolicyHash } from '../../../coordinator/policy/signatures';
import type { RoundProtocolFactory } from '../../../coordinator/rounds/protocol';
import type { Timers } from '../../../coordinator/rounds/rounds.service';
import { ed25519Keygen, type Ed25519KeyPair } from '../../../shared/crypto/sign';
import { sodium, sodiumReady } from '../../../shared/crypto/sodium';
import { defaultPolicy } from '../../../shared/policy/defaults';
import { policyHash, type Policy } from '../../../shared/policy/schema';
import { layoutSize, sharedParameterLayout } from '../../../shared/model/layout';
import { encodedDimension } from '../../../shared/dp/encode';
import { newHeader, signRequest, verifyEvent, type PartyMethod } from '../../../shared/proto/envelope';

export const FEDERATION = 'fb-test';
export const OPERATOR_TOKEN = 'fbt_test-operator-token-0123456789abcdef';

/** Deadlines fire only when the test says so (`fire()`); `now` is the real clock. */
export class ManualTimers implements Timers {
  private pending = new Map<number, () => void>();
  private id = 0;
  now(): number {
    return Date.now();
  }
  setTimeout(fn: () => void): unknown {
    const id = ++this.id;
    this.pending.set(id, fn);
    return id;
  }
  clearTimeout(h: unknown): void {
    this.pending.delete(h as number);
  }
  /** Runs every pending deadline callback (the phase deadline "passes"). */
  fire(): number {
    const fns = [...this.pending.values()];
    this.pending.clear();
    for (const f of fns) f();
    return fns.length;
  }
  get count(): number {
    return this.pending.size;
  }
}

export interface Env {
  dir: string;
  certs: CertsResult;
  configInput: CoordinatorConfigInput;
  coordinatorKeyFile: string;
}

export async function makeEnv(parties: string[], opts: { requireClientCert?: boolean; databaseUrl?: string; maxChunkBytes?: number } = {}): Promise<Env> {
  await sodiumReady();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-coord-'));
  const certs = await makeCerts({ out: path.join(dir, 'certs'), parties: [...parties, 'operator'] });
  const configInput: CoordinatorConfigInput = {
    federationId: FEDERATION,
    grpc: {
      listen: '127.0.0.1:0',
      tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca, requireClientCert: opts.requireClientCert ?? true },
      ...(opts.maxChunkBytes ? { maxChunkBytes: opts.maxChunkBytes } : {}),
    },
    http: { listen: '127.0.0.1:0' },
    storage: { dataDir: path.join(dir, 'data'), ...(opts.databaseUrl ? { databaseUrl: opts.databaseUrl } : {}) },
    identity: { keyFile: path.join(dir, 'coordinator.key') },
    operator: { tokenSha256: tokenSha256Hex(OPERATOR_TOKEN) },
  };
  return { dir, certs, configInput, coordinatorKeyFile: path.join(dir, 'coordinator.key') };
}

export async function startCoordinator(env: Env, protocol: RoundProtocolFactory | null, timers?: Timers, logs?: string[]): Promise<RunningCoordinator> {
  const config = validateConfig(env.configInput, env.dir, 'test', {});
  return createCoordinator(config, { protocol, timers, createKey: true, log: (l) => (logs?.push(l), process.env.FB_DEBUG && process.stderr.write(`[coord ${new Date().toISOString().slice(14, 23)}] ${l}\n`)) });
}

export function operator(env: Env, port: number, token = OPERATOR_TOKEN) {
  return operatorClient({ address: `127.0.0.1:${port}`, caFile: env.certs.ca, token, certFile: env.certs.clients.operator.cert, keyFile: env.certs.clients.operator.key });
}

/**
 * Enrols each party over the operator API with its identity key and, unless `bindCert` is false,
 * the SHA-256 of its TLS client certificate (the mTLS binding).
 */
export async function enrol(env: Env, op: ReturnType<typeof operator>, parties: TestParty[], bindCert = true): Promise<void> {
  for (const p of parties) await unary(op.client.enroll.bind(op.client), { name: p.name, publicKey: p.keys.publicKey, certSha256: bindCert ? env.certs.clients[p.name].sha256 : '' }, op.metadata);
}

export { unary, startRun };

/** A queue of the events of one Subscribe stream, verified against the coordinator key. */
export class EventStream {
  readonly events: PhaseEvent[] = [];
  readonly raw: SignedEvent[] = [];
  error: grpc.ServiceError | null = null;
  private waiters: (() => void)[] = [];
  constructor(readonly call: grpc.ClientReadableStream<SignedEvent>, coordinatorKey: Uint8Array) {
    call.on('data', (ev: SignedEvent) => {
      if (!verifyEvent(ev, coordinatorKey)) throw new Error('event signature does not verify');
      this.raw.push(ev);
      this.events.push(PhaseEvent.decode(ev.body));
      this.wake();
    });
    call.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      this.wake();
    });
    call.on('end', () => this.wake());
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  /** Resolves with the first event (from index `from`) matching `pred`; waits for it. */
  async next(pred: (e: PhaseEvent) => boolean, from = 0, timeoutMs = 20_000): Promise<PhaseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(from).find(pred);
      if (hit) return hit;
      if (this.error) throw this.error;
      if (Date.now() > deadline) throw new Error(`no matching event within ${timeoutMs} ms; have ${JSON.stringify(this.events.map((e) => [e.kind, e.round, e.phase]))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  /** Resolves once the stream failed (for rejected subscriptions). */
  async failure(timeoutMs = 10_000): Promise<grpc.ServiceError> {
    const deadline = Date.now() + timeoutMs;
    while (!this.error) {
      if (Date.now() > deadline) throw new Error('stream did not fail');
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.error;
  }
  cancel() {
    this.call.cancel();
  }
}

export class TestParty {
  readonly keys: Ed25519KeyPair;
  readonly client: ParticipantServiceClient;
  constructor(
    readonly name: string,
    env: Env,
    port: number,
    opts: { keys?: Ed25519KeyPair; certAs?: string; interceptors?: grpc.Interceptor[]; capture?: (path: string, dir: 'out' | 'in', bytes: Uint8Array) => void } = {},
  ) {
    this.keys = opts.keys ?? ed25519Keygen();
    const certOf = env.certs.clients[opts.certAs ?? name];
    const creds = grpc.credentials.createSsl(fs.readFileSync(env.certs.ca), certOf ? fs.readFileSync(certOf.key) : null, certOf ? fs.readFileSync(certOf.cert) : null);
    const options = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost', interceptors: opts.interceptors ?? [] };
    if (opts.capture) {
      // the same service definition, recording the exact serialized bytes in both directions
      const cap = opts.capture;
      const wrapped: Record<string, unknown> = {};
      for (const [k, d] of Object.entries(ParticipantServiceService)) {
        const def = d as grpc.MethodDefinition<unknown, unknown>;
        wrapped[k] = {
          ...def,
          requestSerialize: (v: unknown) => {
            const b = def.requestSerialize(v);
            cap(def.path, 'out', new Uint8Array(b));
            return b;
          },
          responseDeserialize: (b: Buffer) => {
            cap(def.path, 'in', new Uint8Array(b));
            return def.responseDeserialize(b);
          },
        };
      }
      const Ctor = grpc.makeGenericClientConstructor(wrapped as grpc.ServiceDefinition, 'fedbridge.v1.ParticipantService');
      this.client = new Ctor(`127.0.0.1:${port}`, creds, options) as unknown as ParticipantServiceClient;
    } else {
      this.client = new ParticipantServiceClient(`127.0.0.1:${port}`, creds, options);
    }
  }
  close() {
    this.client.close();
  }
  header(method: PartyMethod, runId = '', round = 0, over: Partial<PartyHeader> = {}): PartyHeader {
    return { ...newHeader({ federationId: FEDERATION, party: this.name, runId, round, method }), ...over };
  }
  sign(method: PartyMethod, body: Uint8Array, key = this.keys.secretKey): SignedRequest {
    return signRequest(method, body, key);
  }
  subscribe(coordinatorKey: Uint8Array, over: Partial<PartyHeader> = {}): EventStream {
    const body = SubscribeBody.encode({ header: this.header('Subscribe', '', 0, over) }).finish();
    return new EventStream(this.client.subscribe(this.sign('Subscribe', body)), coordinatorKey);
  }
  rawPhase(method: 'AdvertiseKeys' | 'ShareKeys' | 'ConsistencyCheck' | 'Unmasking', req: SignedRequest): Promise<PhaseAck> {
    const fn = {
      AdvertiseKeys: this.client.advertiseKeys,
      ShareKeys: this.client.shareKeys,
      ConsistencyCheck: this.client.consistencyCheck,
      Unmasking: this.client.unmasking,
    }[method].bind(this.client) as (r: SignedRequest, cb: (e: grpc.ServiceError | null, a: PhaseAck) => void) => grpc.ClientUnaryCall;
    return new Promise((resolve, reject) => fn(req, (e, a) => (e ? reject(e) : resolve(a))));
  }
  phase(method: 'AdvertiseKeys' | 'ShareKeys' | 'ConsistencyCheck' | 'Unmasking', runId: string, round: number, payload: Uint8Array, over: Partial<PartyHeader> = {}): Promise<PhaseAck> {
    const body = PhaseMessageBody.encode({ header: this.header(method, runId, round, over), payload }).finish();
    return this.rawPhase(method, this.sign(method, body));
  }
  /** The UploadChunk messages upload() sends for `data`: a signed open, then chunks of `chunkBytes`. */
  uploadChunks(runId: string, round: number, data: Uint8Array, opts: { chunkBytes?: number; over?: Partial<PartyHeader>; openOver?: Partial<UploadOpenBody> } = {}): UploadChunk[] {
    const size = opts.chunkBytes ?? 1024 * 1024;
    const count = Math.ceil(data.length / size);
    const open: UploadOpenBody = {
      header: this.header('UploadMaskedInput', runId, round, opts.over),
      totalBytes: String(data.length),
      chunkCount: count,
      dataHash: sodium().crypto_generichash(32, data, null),
      ...opts.openOver,
    };
    const chunks: UploadChunk[] = [{ open: this.sign('UploadMaskedInput', UploadOpenBody.encode(open).finish()), index: 0, data: new Uint8Array(0) }];
    for (let i = 0; i < count; i++) chunks.push({ open: undefined, index: i, data: data.subarray(i * size, Math.min(data.length, (i + 1) * size)) });
    return chunks;
  }
  /** Streams `data` in chunks; `mutate` may alter the chunk list before sending (tests of bad uploads). */
  upload(
    runId: string,
    round: number,
    data: Uint8Array,
    opts: { chunkBytes?: number; mutate?: (chunks: UploadChunk[]) => UploadChunk[]; over?: Partial<PartyHeader>; openOver?: Partial<UploadOpenBody> } = {},
  ): Promise<UploadAck> {
    let chunks = this.uploadChunks(runId, round, data, opts);
    if (opts.mutate) chunks = opts.mutate(chunks);
    return new Promise((resolve, reject) => {
      const call = this.client.uploadMaskedInput((e, ack) => (e ? reject(e) : resolve(ack)));
      call.on('error', () => undefined);
      for (const c of chunks) call.write(c);
      call.end();
    });
  }
  /** Streams already-serialized frames to `method` (client streaming) as they are: tests of undecodable messages. */
  streamBytes(method: string, frames: Uint8Array[]): Promise<Buffer> {
    const id = (b: Buffer) => b;
    return new Promise((resolve, reject) => {
      const call = this.client.makeClientStreamRequest(`/fedbridge.v1.ParticipantService/${method}`, id, id, new grpc.Metadata(), {}, (e, ack) => (e ? reject(e) : resolve(ack!)));
      call.on('error', () => undefined);
      for (const f of frames) call.write(Buffer.from(f));
      call.end();
    });
  }
  download(version = 0): Promise<{ info: ModelInfo; data: Uint8Array; chunks: number }> {
    const body = DownloadModelBody.encode({ header: this.header('DownloadModel'), version }).finish();
    return new Promise((resolve, reject) => {
      const call = this.client.downloadModel(this.sign('DownloadModel', body));
      let info: ModelInfo | undefined;
      const parts: Uint8Array[] = [];
      call.on('data', (c) => {
        if (c.info) info = c.info;
        else parts.push(c.data);
      });
      call.on('error', reject);
      call.on('end', () => (info ? resolve({ info, data: new Uint8Array(Buffer.concat(parts)), chunks: parts.length }) : reject(new Error('no ModelInfo'))));
    });
  }
}

export function testPolicy(parties: TestParty[], coordinatorKey: Uint8Array, over: { numItems?: number; rounds?: number; phaseSeconds?: number } = {}): Policy {
  const p = defaultPolicy({
    federationId: FEDERATION,
    coordinator: { name: 'coordinator', publicKey: Buffer.from(coordinatorKey).toString('base64') },
    parties: parties.map((q) => ({ name: q.name, publicKey: Buffer.from(q.keys.publicKey).toString('base64') })),
    catalogue: { hash: 'ab'.repeat(32), numItems: over.numItems ?? 50 },
  });
  p.training.rounds = over.rounds ?? 2;
  p.timeouts.phaseSeconds = over.phaseSeconds ?? 60;
  if (parties.length >= 3) p.secagg.threshold = 2;
  return p;
}

export function modelDim(p: Policy): number {
  return layoutSize(sharedParameterLayout(p.model, p.vocabularies));
}

/**
 * What the secure-aggregation tests start from: platform, insurer and insurer2 (each with
 * `partyOpts(name)`) enrolled with their certificates bound, and a 50-item test policy of `rounds`
 * rounds with threshold 2; `dim` is the model's shared parameter count and `vectorLength` the
 * length of the encoded vectors the parties secure-aggregate.
 */
export async function secaggFederation(env: Env, coord: RunningCoordinator, rounds: number, partyOpts?: (name: string) => ConstructorParameters<typeof TestParty>[3]) {
  const parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort, partyOpts?.(n)));
  const op = operator(env, coord.grpcPort);
  await enrol(env, op, parties);
  const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds });
  policy.secagg.threshold = 2;
  const dim = modelDim(policy);
  return { parties, op, policy, dim, vectorLength: encodedDimension(dim, policy.secagg.rotation === 'hadamard') };
}

/**
 * Enrols `parties` (certificates bound), subscribes each to its events, and starts a one-round run
 * of the test policy (50 items) from a zero model uploaded in `chunkBytes` pieces; resolves once
 * every party has seen the round's first phase start.
 */
export async function startOneRoundRun(env: Env, coord: RunningCoordinator, parties: TestParty[], chunkBytes?: number): Promise<{ runId: string; dim: number; streams: EventStream[] }> {
  const op = operator(env, coord.grpcPort);
  await enrol(env, op, parties);
  const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
  const dim = modelDim(policy);
  const streams = parties.map((p) => p.subscribe(coord.publicKey));
  const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(dim * 4), chunkBytes);
  op.client.close();
  await Promise.all(streams.map((s) => s.next((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === 1)));
  return { runId: st.runId, dim, streams };
}

export function policyYaml(p: Policy): string {
  return stringify(p);
}

export function signaturesFor(p: Policy, parties: TestParty[]) {
  const h = policyHash(p);
  return parties.map((q) => ({ party: q.name, signature: signPolicyHash(h, q.keys.secretKey) }));
}

/** Waits (polling every 10 ms) until `cond()` holds; fails naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every party sends AdvertiseKeys and ShareKeys (one-byte payloads, as the plain-sum protocol takes them) for `round`; resolves once masked input is open. */
export async function throughShareKeys(parties: TestParty[], streams: EventStream[], runId: string, round = 1): Promise<void> {
  const phase = (ph: Phase) => Promise.all(streams.map((s) => s.next((e) => e.phase === ph && e.round === round)));
  await Promise.all(parties.map((p) => p.phase('AdvertiseKeys', runId, round, new Uint8Array([1]))));
  await phase(Phase.PHASE_SHARE_KEYS);
  await Promise.all(parties.map((p) => p.phase('ShareKeys', runId, round, new Uint8Array([2]))));
  await phase(Phase.PHASE_MASKED_INPUT);
}

export async function grpcError(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

export { grpc };
