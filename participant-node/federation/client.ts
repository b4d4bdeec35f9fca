/**
 * `fedbridge node join`: the participant side of the federation over gRPC (DESIGN §4, §7).
 *
 * The node subscribes to the coordinator's signed phase events (server stream, no polling) and
 * reacts to each, one at a time:
 *
 *   PHASE_STARTED advertise (round r, base model v, this party listed)
 *       refuse a round once the run completed the policy's training.rounds (as signed
 *       ROUND_COMPLETED events told this node) -> download model v in chunks (hash checked) ->
 *       check the round's privacy cost against the lifetime budget (refuse: do not advertise,
 *       drop cleanly) -> train under DP from model v ->
 *       encode the delta -> SecAggClient.start() -> AdvertiseKeys
 *   PHASE_STARTED share   (payload ServerKeys)        -> ShareKeys
 *   PHASE_STARTED mask    (payload ServerShares)      -> CHARGE THE LEDGER, then upload the masked
 *                                                        input in chunks (UploadMaskedInput); the
 *                                                        same bytes are sent again on UNAVAILABLE,
 *                                                        DEADLINE_EXCEEDED or CANCELLED (uploadWithRetry;
 *                                                        the coordinator acks an identical resend once more)
 *   PHASE_STARTED consistency (ConsistencyRequest)    -> ConsistencyCheck
 *   PHASE_STARTED unmask  (UnmaskRequest)             -> Unmasking
 *   ROUND_COMPLETED (model v')                        -> download v', adopt its shared parameters
 *                                                        (private embeddings kept), save the model
 *   ROUND_ABORTED                                     -> wipe the round's secrets; the next round
 *                                                        restarts from the same model
 *   RUN_FINISHED                                      -> return
 *
 * Every event is verified against the coordinator key pinned in the policy this node signed; every
 * request is signed with the node's identity key and bound to (federation, run, round, phase). The
 * node uses only its own copy of the policy: a coordinator cannot change a round's parameters (its
 * messages would not match), and cannot start a run the node did not sign.
 * Events wait for the one being handled in a bounded queue (in-order.ts): past EVENT_BACKLOG the
 * stream is paused and HTTP/2 flow control holds the rest at the coordinator, none lost.
 * A broken stream is re-opened with exponential backoff (1 s .. 30 s); a round in flight when the
 * stream broke is abandoned (its secrets wiped) — the coordinator drops the party from it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as tf from '@tensorflow/tfjs';
import {
  DownloadModelBody,
  EventKind,
  ParticipantServiceClient,
  ParticipantServiceService,
  Phase,
  PhaseEvent,
  PhaseMessageBody,
  ReceiptBody,
  SubscribeBody,
  UploadOpenBody,
  type ModelInfo,
  type PhaseAck,
  type ReceiptAck,
  type SignedEvent,
  type SignedRequest,
  type UploadAck,
  type UploadChunk,
} from '../../proto/gen/grpc/fedbridge/v1/federation';
import { UserError } from '../../shared/cli/errors';
import { admission } from './admission';
import { clientTlsFiles, connectionFailure } from '../../shared/cli/tls';
import { randomBytes, sodium, sodiumReady } from '../../shared/crypto/sodium';
import { roundSecAggInfo } from '../../shared/fl/round-params';
import { noiseFloorViolation } from '../../shared/fl/noise-floor';
import { layoutSize, sharedParameterLayout } from '../../shared/model/layout';
import { parsePolicyYaml, policyHash, PolicyError, type Policy } from '../../shared/policy/schema';
import { newHeader, signRequest, verifyEvent, type PartyMethod } from '../../shared/proto/envelope';
import { SecAggClient } from '../../shared/secagg/client';
import { decodeServerMessage, encodeClientMessage, VECTOR_CHUNK_BYTES } from '../../shared/secagg/wire';
import { federationWireSchema, strictClient, wireViolation } from '../../shared/proto/wire-check';
import { ExampleKey } from '../model/coins';
import { loadIdentity } from '../identity';
import { loadDataset } from '../data/store';
import { selectBackend, type BackendChoice } from '../model/backend';
import { TwoTowerModel } from '../model/twotower';
import { domainIndex, encodeFeatures, leaveOneOutSplit, allPositives } from '../model/train';
import { saveModel } from '../model/store';
import { evaluateUsers, sampleUsers } from '../model/pooled';
import { chargeRound, openLedger, previewCharge } from '../privacy/ledger';
import { computeLocalUpdate, roundCharge } from './update';
import { countersignRound, receiptBodyFields } from './receipt';
import { InOrder } from './in-order';
import type { Receipt } from '../../shared/audit/entries';

export interface JoinOptions {
  dataDir: string;
  /** host:port of the coordinator's gRPC endpoint */
  coordinator: string;
  policyFile: string;
  /** TLS: the federation CA, and this party's client certificate and key (mutual TLS) */
  caFile: string;
  certFile?: string;
  keyFile?: string;
  backend: BackendChoice;
  /** 'last' keeps each user's latest interaction out of training so `node evaluate` stays honest */
  holdout: 'last' | 'none';
  log?: (line: string) => void;
  /** stop after this many completed rounds (default: until RUN_FINISHED) */
  maxRounds?: number;
  /** give up after this many consecutive failed connection attempts (default 8) */
  maxReconnects?: number;
  /** TLS server name to expect (default localhost, as `coordinator certs` issues) */
  serverName?: string;
  /** called after each round with the node's view (tests, progress) */
  onRound?: (r: RoundReport) => void;
  /** called when a phase this node takes part in starts, before the node acts on it */
  onPhase?: (round: number, phase: string) => void;
  /** leave the federation when aborted (e.g. SIGINT): the current round's secrets are wiped */
  signal?: AbortSignal;
  /**
   * opt-in: after each adopted model, evaluate it (leave-one-out HR@10 / NDCG@10) on a fixed seeded
   * sample of at most 1000 of this node's users and append {round, modelVersion, hr@10, ndcg@10, users}
   * to DIR/federation/rounds.jsonl (local file; nothing is sent)
   */
  evalSample?: { users: number; seed: number };
  /**
   * tests/diagnostics: @grpc/grpc-js client interceptors and/or a channel factory for the client
   * this node creates (e.g. the wire test records every serialized message); the node's own TLS
   * credentials, target and channel options are still used. Default: none.
   */
  grpcClient?: Pick<grpc.ClientOptions, 'interceptors' | 'channelFactoryOverride'>;
  /** waits before each resend of a masked input or a phase message whose call ended in a RESEND_CODES status (default UPLOAD_RETRY_DELAYS_MS) */
  uploadRetryDelaysMs?: readonly number[];
  /**
   * HTTP/2 keepalive of the connection to the coordinator (default KEEPALIVE): a PING every
   * `timeMs`, the connection dropped when one is not answered within `timeoutMs`. The event stream
   * waits for the coordinator, so without it a connection that died half-open (the coordinator's
   * host or network gone, no FIN) would hold the node forever; with it the stream fails UNAVAILABLE
   * and the node reconnects with backoff.
   */
  keepalive?: { timeMs: number; timeoutMs: number };
}

/** Default JoinOptions.keepalive: half-open connections found within about 50 s; a node busy for up to 20 s without turning its event loop still answers in time. */
export const KEEPALIVE = { timeMs: 30_000, timeoutMs: 20_000 } as const;

/** Waits before the 1st, 2nd and 3rd resend of a masked input whose upload ended in a RESEND_CODES status. */
export const UPLOAD_RETRY_DELAYS_MS: readonly number[] = [500, 1000, 2000];

/**
 * The statuses after which a masked input is sent again: each can end an upload whether or not the
 * coordinator stored it, and a resend is safe either way (see uploadWithRetry).
 *   UNAVAILABLE        the coordinator could not store it ("nothing changed: send it again"), or the
 *                      channel/connection went down, possibly after the commit (ack lost)
 *   DEADLINE_EXCEEDED  a deadline (a proxy's, or a caller's) passed, possibly between the commit
 *                      and the ack: the coordinator does not undo a committed input then
 *   CANCELLED          the stream was reset (HTTP/2 RST_STREAM CANCEL, e.g. by a proxy or a
 *                      connection teardown), again possibly after the commit; never resent once
 *                      the node itself is leaving (`signal` aborted)
 * Every other status is a verdict on the input (refused, wrong phase, bad request): no resend.
 */
export const RESEND_CODES: readonly grpc.status[] = [grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED];

/**
 * Uploads a masked input with `send`, and sends it again after each of `delaysMs` while the
 * upload ends in one of RESEND_CODES. `send` must upload the SAME masked input every time (the
 * caller encodes it once): a resend reveals nothing the first attempt did not, and the ledger was
 * charged once, before the first attempt. The coordinator's upload is idempotent (issue #5): if the
 * failed attempt was not stored, the resend is accepted as the input; if it WAS stored (only its
 * acknowledgement was lost), the byte-identical resend gets the same acknowledgement and changes
 * nothing there (no second row, audit entry or charge), even when it arrives after the mask phase
 * closed, as long as the round is open. So the party keeps its round either way. Any other error,
 * or a resend status after the last wait, is thrown (the party drops out of the round, as before);
 * so is the resend's own refusal, e.g. FAILED_PRECONDITION once the round is over.
 */
export async function uploadWithRetry<T>(
  send: () => Promise<T>,
  delaysMs: readonly number[],
  onRetry: (attempt: number, err: grpc.ServiceError, waitMs: number) => void,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (e) {
      const err = e as grpc.ServiceError;
      if (!RESEND_CODES.includes(err?.code) || attempt >= delaysMs.length || signal?.aborted) throw e;
      const wait = delaysMs[attempt];
      onRetry(attempt + 1, err, wait);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

export interface RoundReport {
  runId: string;
  round: number;
  outcome: 'completed' | 'aborted' | 'refused';
  modelVersion?: number;
  epsilon?: number;
  reason?: string;
  /** the encoded vector this node submitted (for integration tests that recompute the sum) */
  encoded?: Uint32Array;
}

export interface JoinSummary {
  party: string;
  rounds: RoundReport[];
  finalModelVersion: number | null;
  epsilon: number;
}

interface RoundState {
  runId: string;
  round: number;
  client: SecAggClient;
  encoded: Uint32Array;
  charged: boolean;
}

function loadPolicy(file: string): Policy {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read --policy ${file}: ${(e as Error).message}`);
  }
  try {
    return parsePolicyYaml(text);
  } catch (e) {
    if (e instanceof PolicyError) throw new UserError(`${file}: ${e.message}`);
    throw e;
  }
}

/** An event from the coordinator that this node will not act on (bad signature, malformed, another federation): fatal, never retried. */
export class RefusedEvent extends Error {}

/**
 * Opens one event of the Subscribe stream: verifies the coordinator's signature (its key pinned in
 * the policy), then checks the signed bytes strictly against the proto (shared/proto/wire-check.ts)
 * before decoding, and refuses an event of another federation. The strict check matters because
 * the decoders disagree on malformed bytes (the ts-proto decoder skips a known field that arrives
 * with the wrong wire type where protobufjs reads it by its declared type, and both let the last of
 * two occurrences of a singular field win where other implementations merge), so one signed event
 * could otherwise mean different things to this node and to another holder of the same bytes.
 * Every refusal is a RefusedEvent.
 */
export function openSignedEvent(ev: SignedEvent, coordinatorKey: Uint8Array, federationId: string): PhaseEvent {
  if (!verifyEvent(ev, coordinatorKey)) throw new RefusedEvent('an event from the coordinator failed signature verification (pinned key in the policy)');
  const violation = wireViolation(ev.body, 'fedbridge.v1.PhaseEvent', federationWireSchema());
  if (violation !== null) throw new RefusedEvent(`a signed event from the coordinator is not a valid PhaseEvent protobuf message (${violation})`);
  let e: PhaseEvent;
  try {
    e = PhaseEvent.decode(ev.body);
  } catch (err) {
    throw new RefusedEvent(`a signed event from the coordinator does not decode as a PhaseEvent (${(err as Error).message})`);
  }
  if (e.federationId && e.federationId !== federationId) throw new RefusedEvent(`event for federation "${e.federationId}", this node is in "${federationId}"`);
  return e;
}

/** A node's connection to the coordinator's ParticipantService. */
export class FederationClient {
  readonly party: string;
  private readonly client: ParticipantServiceClient;
  readonly coordinatorKey: Uint8Array;

  constructor(
    private readonly opts: JoinOptions,
    private readonly policy: Policy,
    private readonly identity: { publicKey: Uint8Array; secretKey: Uint8Array; name: string },
  ) {
    this.party = identity.name;
    this.coordinatorKey = new Uint8Array(Buffer.from(policy.coordinator.publicKey, 'base64'));
    // checked before connecting (UserError naming the flag): a key that is not the certificate's would
    // otherwise throw from inside Node's TLS stack, a CA file without a certificate be ignored
    const { ca, cert, key } = clientTlsFiles({
      ca: { name: '--ca', file: opts.caFile },
      cert: opts.certFile ? { name: '--cert', file: opts.certFile } : undefined,
      key: opts.keyFile ? { name: '--key', file: opts.keyFile } : undefined,
    });
    const serverName = opts.serverName ?? 'localhost';
    // every response checked strictly before it is decoded (shared/proto/wire-check.ts): a malformed one ends its call with INTERNAL and the reason
    const Client = strictClient<typeof ParticipantServiceClient>(ParticipantServiceService, 'fedbridge.v1.ParticipantService');
    this.client = new Client(opts.coordinator, grpc.credentials.createSsl(ca, key, cert), {
      'grpc.ssl_target_name_override': serverName,
      'grpc.default_authority': serverName,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      'grpc.keepalive_time_ms': (opts.keepalive ?? KEEPALIVE).timeMs,
      'grpc.keepalive_timeout_ms': (opts.keepalive ?? KEEPALIVE).timeoutMs,
      // the event stream is open between rounds, so a call is always in flight; pings also while idle
      'grpc.keepalive_permit_without_calls': 1,
      ...opts.grpcClient,
    });
  }

  close(): void {
    this.client.close();
  }

  private sign(method: PartyMethod, body: Uint8Array): SignedRequest {
    return signRequest(method, body, this.identity.secretKey);
  }

  private header(method: PartyMethod, runId = '', round = 0) {
    return newHeader({ federationId: this.policy.federationId, party: this.party, runId, round, method });
  }

  subscribe(): grpc.ClientReadableStream<SignedEvent> {
    const body = SubscribeBody.encode({ header: this.header('Subscribe') }).finish();
    return this.client.subscribe(this.sign('Subscribe', body));
  }

  /** Verifies and decodes one event of the Subscribe stream (openSignedEvent). */
  openEvent(ev: SignedEvent): PhaseEvent {
    return openSignedEvent(ev, this.coordinatorKey, this.policy.federationId);
  }

  /**
   * How long one call may take: a phase of the policy (timeouts.phaseSeconds). The coordinator's
   * phase is over by then, so a later answer is of no use, and a coordinator that never answers
   * (or a download that stalls) must not hold the node: the call ends DEADLINE_EXCEEDED, the round
   * is abandoned, and the node goes on with the next event.
   */
  private get callMs(): number {
    return Math.round(this.policy.timeouts.phaseSeconds * 1000);
  }

  private callOptions(): [grpc.Metadata, grpc.CallOptions] {
    return [new grpc.Metadata(), { deadline: Date.now() + this.callMs }];
  }

  phase(method: 'AdvertiseKeys' | 'ShareKeys' | 'ConsistencyCheck' | 'Unmasking', runId: string, round: number, payload: Uint8Array): Promise<PhaseAck> {
    const body = PhaseMessageBody.encode({ header: this.header(method, runId, round), payload }).finish();
    const req = this.sign(method, body);
    const fn = {
      AdvertiseKeys: this.client.advertiseKeys,
      ShareKeys: this.client.shareKeys,
      ConsistencyCheck: this.client.consistencyCheck,
      Unmasking: this.client.unmasking,
    }[method].bind(this.client) as (r: SignedRequest, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, a: PhaseAck) => void) => grpc.ClientUnaryCall;
    return new Promise((resolve, reject) => fn(req, ...this.callOptions(), (e, a) => (e ? reject(e) : resolve(a))));
  }

  upload(runId: string, round: number, data: Uint8Array): Promise<UploadAck> {
    const size = VECTOR_CHUNK_BYTES;
    const count = Math.max(1, Math.ceil(data.length / size));
    const open: UploadOpenBody = {
      header: this.header('UploadMaskedInput', runId, round),
      totalBytes: String(data.length),
      chunkCount: count,
      dataHash: sodium().crypto_generichash(32, data, null),
    };
    return new Promise((resolve, reject) => {
      const call = this.client.uploadMaskedInput(...this.callOptions(), (e, ack) => (e ? reject(e) : resolve(ack)));
      call.on('error', () => undefined);
      const first: UploadChunk = { open: this.sign('UploadMaskedInput', UploadOpenBody.encode(open).finish()), index: 0, data: new Uint8Array(0) };
      call.write(first);
      for (let i = 0; i < count; i++) call.write({ open: undefined, index: i, data: data.subarray(i * size, Math.min(data.length, (i + 1) * size)) });
      call.end();
    });
  }

  /** Submits an audit receipt for a completed round (participant-node/federation/receipt.ts). */
  submitReceipt(r: Receipt, modelVersion: number): Promise<ReceiptAck> {
    const body = ReceiptBody.encode({ header: this.header('SubmitReceipt', r.runId, r.round), ...receiptBodyFields(r, modelVersion) }).finish();
    const req = this.sign('SubmitReceipt', body);
    return new Promise((resolve, reject) => this.client.submitReceipt(req, ...this.callOptions(), (e, a) => (e ? reject(e) : resolve(a))));
  }

  /**
   * Downloads model `version` (0 = the newest) and checks it before anything uses it: the first
   * message must carry the ModelInfo (once), for the version asked for, announcing exactly the
   * policy's model size (`expect.bytes`); the call is cancelled as soon as more bytes arrive than
   * announced, so a faulty or hostile coordinator cannot make the node buffer without bound; at the
   * end the bytes must number as announced and hash (BLAKE2b-256) to the announced hash and, when
   * given, to `expect.hash` (the hash the coordinator signed into a ROUND_COMPLETED event and its
   * audit log, so the node never adopts a model other than the logged one).
   */
  download(version: number, expect: { bytes: number; hash?: Uint8Array }): Promise<{ info: ModelInfo; data: Uint8Array }> {
    const body = DownloadModelBody.encode({ header: this.header('DownloadModel'), version }).finish();
    const stallMs = this.callMs; // before the call exists: nothing after it may throw before its listeners are on
    return new Promise((resolve, reject) => {
      const call = this.client.downloadModel(this.sign('DownloadModel', body));
      let info: ModelInfo | undefined;
      const parts: Uint8Array[] = [];
      let received = 0;
      let failed = false;
      // a download that makes no progress for a phase's time is given up (it may take longer in all)
      let stall: NodeJS.Timeout | undefined;
      const watch = () => {
        clearTimeout(stall);
        stall = setTimeout(() => fail(`no data for ${stallMs} ms (the policy's phaseSeconds); download given up`), stallMs);
      };
      const fail = (why: string) => {
        if (failed) return;
        failed = true;
        clearTimeout(stall);
        call.cancel();
        reject(new Error(`model v${version || 'newest'}: ${why}`));
      };
      watch();
      call.on('data', (c: { info?: ModelInfo; data: Uint8Array }) => {
        if (failed) return;
        watch();
        if (c.info) {
          if (info) return fail('the coordinator sent a second ModelInfo');
          if (version !== 0 && c.info.version !== version) return fail(`the coordinator served version ${c.info.version}`);
          if (String(c.info.totalBytes) !== String(expect.bytes)) return fail(`announced ${c.info.totalBytes} bytes, the policy's model has ${expect.bytes}`);
          info = c.info;
          return;
        }
        if (!info) return fail('model data arrived before the ModelInfo');
        received += c.data.length;
        if (received > expect.bytes) return fail(`more than the announced ${expect.bytes} bytes arrived`);
        parts.push(c.data);
      });
      call.on('error', (e) => {
        clearTimeout(stall);
        if (!failed) reject(e);
      });
      call.on('end', () => {
        clearTimeout(stall);
        if (failed) return;
        if (!info) return reject(new Error(`model v${version || 'newest'}: the download ended without a ModelInfo`));
        const data = new Uint8Array(Buffer.concat(parts));
        if (data.length !== expect.bytes) return reject(new Error(`model v${info.version}: received ${data.length} bytes, announced ${info.totalBytes}`));
        const h = sodium().crypto_generichash(32, data, null);
        if (Buffer.compare(Buffer.from(h), Buffer.from(info.modelHash)) !== 0) return reject(new Error(`model v${info.version}: BLAKE2b-256 does not match the announced hash`));
        if (expect.hash && Buffer.compare(Buffer.from(h), Buffer.from(expect.hash)) !== 0) {
          return reject(new Error(`model v${info.version}: BLAKE2b-256 ${Buffer.from(h).toString('hex')} is not the hash the coordinator signed for it (${Buffer.from(expect.hash).toString('hex')}); not adopted`));
        }
        resolve({ info, data });
      });
    });
  }
}

function toFloat32(bytes: Uint8Array, expected: number, what: string): Float32Array {
  if (bytes.length !== expected * 4) throw new Error(`${what}: ${bytes.length} bytes, the policy's model needs ${expected * 4}`);
  const out = new Float32Array(expected);
  new Uint8Array(out.buffer).set(bytes);
  for (let i = 0; i < expected; i++) if (!Number.isFinite(out[i])) throw new Error(`${what}: parameter ${i} is not finite`);
  return out;
}

/** coordinator events waiting to be handled before the event stream is paused (in-order.ts); a round brings about six */
const EVENT_BACKLOG = 64;

const PHASE_NAME: Partial<Record<Phase, string>> = {
  [Phase.PHASE_ADVERTISE_KEYS]: 'advertise',
  [Phase.PHASE_SHARE_KEYS]: 'share',
  [Phase.PHASE_MASKED_INPUT]: 'mask',
  [Phase.PHASE_CONSISTENCY_CHECK]: 'consistency',
  [Phase.PHASE_UNMASKING]: 'unmask',
};

/** Joins the federation and takes part in rounds until the run finishes. */
export async function joinFederation(opts: JoinOptions): Promise<JoinSummary> {
  const log = opts.log ?? (() => undefined);
  await sodiumReady();
  const identity = await loadIdentity(opts.dataDir);
  const policy = loadPolicy(opts.policyFile);
  const me = policy.parties.find((p) => p.name === identity.name);
  if (!me) throw new UserError(`party "${identity.name}" is not in the policy's parties (${policy.parties.map((p) => p.name).join(', ')})`);
  if (me.publicKey !== Buffer.from(identity.publicKey).toString('base64')) {
    throw new UserError(`the policy lists another public key for "${identity.name}" than this node's identity; this node did not agree to this policy`);
  }
  const ds = loadDataset(opts.dataDir);
  const positives = opts.holdout === 'last' ? leaveOneOutSplit(ds).train : allPositives(ds);
  // the data checks `policy sign --data-dir` made too: the policy's catalogue, offers, user cap
  const { problem, scope } = admission(ds, identity.name, policy, positives);
  if (problem) throw new UserError(problem.kind === 'users' ? `not joining: ${problem.message}` : problem.message);
  const budget = me.epsilonBudget ?? policy.privacy.epsilonBudget;
  openLedger(opts.dataDir, { budget, delta: policy.privacy.delta }); // refuses to start if the ledger went missing
  await selectBackend(tf, opts.backend, { ...(await import('../model/backend')).defaultBackendDeps, log });
  const layout = sharedParameterLayout(policy.model, policy.vocabularies);
  const dimension = layoutSize(layout);
  // The shared parameters come from the global model; only the private embeddings e_u keep this
  // initialisation, so each node draws its own seed (a fixed one gave every node the same rows).
  const seedBytes = randomBytes(4);
  const initSeed = new DataView(seedBytes.buffer, seedBytes.byteOffset, 4).getUint32(0, true);
  const model = TwoTowerModel.forPolicy(policy.model, policy.vocabularies, ds.users.length, { learningRate: policy.training.learningRate, initSeed });
  const f = encodeFeatures(ds, policy.vocabularies);
  model.setFeatures(f.users, f.items);
  const domains = domainIndex(ds);
  if (scope) {
    let outside = 0;
    for (const i of positives.item) if (!scope.own[i]) outside++;
    if (outside > 0) log(`offer scope: ${outside} training interaction(s) with other providers' items are not used (the policy trains each party on its own offers)`);
  }
  const exampleKey = ExampleKey.fresh(); // secret per-user example coins of DP training (model/coins.ts)
  const fc = new FederationClient(opts, policy, identity);
  const hash = policyHash(policy);
  log(`node ${identity.name}: joining ${policy.federationId} at ${opts.coordinator} (policy ${hash.slice(0, 16)}…, budget epsilon ${budget})`);

  const reports: RoundReport[] = [];
  let current: RoundState | null = null;
  /** the shared parameters of the model adopted last (its hash checked against the signed ROUND_COMPLETED when there was one): the next round trains from them without a second download */
  let adopted = null as { version: number; global: Float32Array; pinned: boolean } | null; // assigned in closures (`as`: not narrowed to null)
  let finished = false;
  let completed = 0;
  /** per run, the rounds a signed ROUND_COMPLETED announced (this session): the policy's training.rounds bounds them */
  const completedRounds = new Map<string, Set<number>>();

  const charge = (runId: string, round: number) => roundCharge(policy, runId, round, dimension);

  const abandon = (reason: string) => {
    if (current) {
      current.client.abort(reason);
      current = null;
    }
  };

  /** Downloads and adopts model `version`; `signedHash`: the hash a signed ROUND_COMPLETED event announced for it (32 bytes), which the bytes must match. */
  const adoptModel = async (version: number, runId: string, signedHash?: Uint8Array) => {
    const pinned = signedHash?.length === 32;
    const { info, data } = await fc.download(version, { bytes: dimension * 4, hash: pinned ? signedHash : undefined });
    const global = toFloat32(data, dimension, `model v${info.version}`);
    model.setSharedFlat(global);
    await saveModel(
      opts.dataDir,
      model,
      {
        model: policy.model,
        vocabularies: policy.vocabularies,
        catalogueHash: ds.catalogueHash,
        learningRate: policy.training.learningRate,
        initSeed,
        training: { kind: 'federated', federationId: policy.federationId, runId, modelVersion: info.version, modelHash: Buffer.from(info.modelHash).toString('hex'), holdout: opts.holdout },
      },
      ds.users.map((u) => u.id),
    );
    adopted = { version: info.version, global, pinned };
    return info;
  };

  if (opts.evalSample && opts.holdout !== 'last') throw new UserError('per-round evaluation needs holdout "last" (else the held-out items are trained on)');
  const evalUsers = opts.evalSample ? sampleUsers(ds.users.length, Math.min(1000, opts.evalSample.users), opts.evalSample.seed) : null;
  const evalSplit = opts.evalSample ? leaveOneOutSplit(ds) : null;
  const recordRoundQuality = async (round: number, modelVersion: number, epsilon: number) => {
    const r = await evaluateUsers(model, ds, evalSplit!, evalUsers!, { seed: opts.evalSample!.seed });
    const line = { round, modelVersion, 'hr@10': r.loo.metrics['hr@10'], 'ndcg@10': r.loo.metrics['ndcg@10'], users: r.loo.metrics.count, epsilon };
    fs.mkdirSync(path.join(opts.dataDir, 'federation'), { recursive: true });
    fs.appendFileSync(path.join(opts.dataDir, 'federation', 'rounds.jsonl'), JSON.stringify(line) + '\n');
    log(`round ${round}: model v${modelVersion} on ${line.users} sampled held-out users: HR@10 ${line['hr@10'].toFixed(4)} NDCG@10 ${line['ndcg@10'].toFixed(4)}`);
  };

  /**
   * Sends one phase message; the SAME bytes again (under a freshly signed header) after each of the
   * upload waits while the call ends in a RESEND_CODES status: the coordinator could not store or
   * reach its state (UNAVAILABLE "send the request again shortly") or the answer was lost. The
   * coordinator answers a byte-identical resend of a message it already accepted with the same
   * acknowledgement and changes nothing (RoundsService.submit), so the party keeps its round either
   * way; the secure-aggregation client produced the message once.
   */
  const sendPhase = (method: 'AdvertiseKeys' | 'ShareKeys' | 'ConsistencyCheck' | 'Unmasking', runId: string, round: number, payload: Uint8Array) =>
    uploadWithRetry(
      () => fc.phase(method, runId, round, payload),
      opts.uploadRetryDelaysMs ?? UPLOAD_RETRY_DELAYS_MS,
      (attempt, err, wait) => log(`round ${round}: ${method} not accepted (${grpc.status[err.code]}: ${err.details}); sending the same message again in ${wait} ms (attempt ${attempt + 1})`),
      opts.signal,
    );

  const handle = async (e: PhaseEvent): Promise<void> => {
    if (e.kind === EventKind.EVENT_KIND_HELLO) {
      log(`connected: run ${e.runId || '-'} round ${e.round} ${PHASE_NAME[e.phase] ?? ''}`);
      return;
    }
    if (e.kind === EventKind.EVENT_KIND_RUN_FINISHED) {
      finished = true;
      log(`run ${e.runId} finished`);
      return;
    }
    if (e.kind === EventKind.EVENT_KIND_ROUND_ABORTED) {
      if (current && current.round === e.round && current.runId === e.runId) {
        reports.push({ runId: e.runId, round: e.round, outcome: 'aborted', reason: e.abortReason, encoded: current.encoded });
        opts.onRound?.(reports[reports.length - 1]);
      }
      abandon(`coordinator aborted round ${e.round}: ${e.abortReason}`);
      log(`round ${e.round} aborted: ${e.abortReason}`);
      return;
    }
    if (e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED) {
      // counted as soon as the coordinator signs it, whether or not its model is adopted below
      completedRounds.set(e.runId, (completedRounds.get(e.runId) ?? new Set<number>()).add(e.round));
      const mine = current && current.round === e.round && current.runId === e.runId ? current : null;
      abandon('round completed');
      // the coordinator signs the new model's hash into this event and its audit log; a model that
      // cannot be matched with that log is not adopted (nor trained on, nor countersigned)
      if (e.modelHash.length !== 32) throw new Error(`round ${e.round} completed, but the signed event carries no model hash: model v${e.modelVersion} is not adopted`);
      const info = await adoptModel(e.modelVersion, e.runId, e.modelHash);
      if (mine) {
        const submit = (r: Receipt, v: number) => fc.submitReceipt(r, v);
        await countersignRound({ event: e, info, federationId: policy.federationId, policyHash: hash, party: identity.name, secretKey: identity.secretKey, dataDir: opts.dataDir, submit, log });
      }
      const eps = openLedger(opts.dataDir, { budget, delta: policy.privacy.delta });
      const epsilon = eps.entries.length ? eps.entries[eps.entries.length - 1].epsilonAfter : 0;
      const rep: RoundReport = { runId: e.runId, round: e.round, outcome: 'completed', modelVersion: e.modelVersion, epsilon, encoded: mine?.encoded };
      reports.push(rep);
      opts.onRound?.(rep);
      completed++;
      if (opts.evalSample) await recordRoundQuality(e.round, e.modelVersion, epsilon);
      log(`round ${e.round} completed: model v${e.modelVersion}${mine ? '' : ' (without this party)'}; lifetime epsilon ${epsilon.toFixed(3)}`);
      return;
    }
    if (e.kind !== EventKind.EVENT_KIND_PHASE_STARTED) return;
    const phase = PHASE_NAME[e.phase];
    if (!e.parties.includes(identity.name)) {
      if (current && current.round === e.round) abandon(`dropped by the coordinator in phase ${phase}`);
      return;
    }
    opts.onPhase?.(e.round, phase ?? String(e.phase));
    if (opts.signal?.aborted) return;
    if (e.phase === Phase.PHASE_ADVERTISE_KEYS) {
      abandon('a new round started');
      // the parties agreed to training.rounds completed rounds per run (an aborted round is retried
      // under the next number, so the number itself may pass it): no round after those, nothing charged
      const done = completedRounds.get(e.runId)?.size ?? 0;
      if (done >= policy.training.rounds) {
        const reason = `the policy's training.rounds: run ${e.runId} already completed ${done} round(s) of the ${policy.training.rounds} this node agreed to`;
        log(`refusing round ${e.round}: ${reason}`);
        reports.push({ runId: e.runId, round: e.round, outcome: 'refused', reason });
        opts.onRound?.(reports[reports.length - 1]);
        return;
      }
      const preview = previewCharge(openLedger(opts.dataDir, { budget, delta: policy.privacy.delta }), charge(e.runId, e.round), budget);
      if (!preview.withinBudget) {
        const reason = `privacy budget: round ${e.round} would raise epsilon from ${preview.epsilonBefore.toFixed(3)} to ${preview.epsilonAfter.toFixed(3)} > budget ${budget}`;
        log(`refusing round ${e.round}: ${reason}`);
        reports.push({ runId: e.runId, round: e.round, outcome: 'refused', reason });
        opts.onRound?.(reports[reports.length - 1]);
        return;
      }
      let global: Float32Array;
      if (adopted && adopted.version === e.modelVersion) {
        global = adopted.global; // read only (computeLocalUpdate copies it into the model)
        log(`round ${e.round}: starts from model v${e.modelVersion}, adopted after the last round${adopted.pinned ? ' (its hash as signed)' : ''}`);
      } else {
        const { data } = await fc.download(e.modelVersion, { bytes: dimension * 4 });
        global = toFloat32(data, dimension, `model v${e.modelVersion}`);
      }
      const t0 = Date.now();
      const up = await computeLocalUpdate(model, positives, domains, { policy, runId: e.runId, round: e.round, global, scope }, exampleKey);
      log(`round ${e.round}: ${policy.privacy.mechanism} update (${up.privacy.steps} step${up.privacy.steps > 1 ? 's' : ''}, ${up.sampledUsers} user samples, loss ${up.meanLoss.toFixed(4)}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const client = new SecAggClient({
        ...roundSecAggInfo(policy, e.runId, e.round),
        identity: { partyId: identity.name, secretKey: identity.secretKey },
        coordinatorPublicKey: fc.coordinatorKey,
      });
      current = { runId: e.runId, round: e.round, client, encoded: up.encoded, charged: false };
      await sendPhase('AdvertiseKeys', e.runId, e.round, encodeClientMessage(client.start()));
      return;
    }
    if (!current || current.round !== e.round || current.runId !== e.runId) return; // not our round
    const st: RoundState = current;
    const msg = decodeServerMessage(e.payload);
    if (e.phase === Phase.PHASE_SHARE_KEYS) {
      await sendPhase('ShareKeys', e.runId, e.round, encodeClientMessage(st.client.handle(msg)));
    } else if (e.phase === Phase.PHASE_MASKED_INPUT) {
      // a repeated masked-input event: this round's input was built, charged and sent once
      if (st.charged) return log(`round ${e.round}: masked input already sent for this round; a repeated masked-input event is ignored`);
      // build the masked input first (on this node: nothing leaves it), so an event the secure-
      // aggregation state machine refuses charges nothing; then charge BEFORE the input leaves
      // the node (a refusal: the party drops out here, the built input is discarded with the round)
      const masked = encodeClientMessage(st.client.handle(msg, st.encoded));
      chargeRound(opts.dataDir, charge(e.runId, e.round), { budget, delta: policy.privacy.delta });
      st.charged = true;
      await uploadWithRetry(
        () => fc.upload(e.runId, e.round, masked),
        opts.uploadRetryDelaysMs ?? UPLOAD_RETRY_DELAYS_MS,
        (attempt, err, wait) => log(`round ${e.round}: masked input not accepted (${grpc.status[err.code]}: ${err.details}); sending the same bytes again in ${wait} ms (attempt ${attempt + 1})`),
        opts.signal,
      );
    } else if (e.phase === Phase.PHASE_CONSISTENCY_CHECK) {
      if (msg.type === 'consistency-request') {
        const floor = noiseFloorViolation(policy, msg.survivors.length);
        if (floor) throw new UserError(`refusing to sign the survivor list of round ${e.round}: ${floor}`, 1);
      }
      await sendPhase('ConsistencyCheck', e.runId, e.round, encodeClientMessage(st.client.handle(msg)));
    } else if (e.phase === Phase.PHASE_UNMASKING) {
      await sendPhase('Unmasking', e.runId, e.round, encodeClientMessage(st.client.handle(msg)));
    }
  };

  const maxReconnects = opts.maxReconnects ?? 8;
  let failures = 0;
  try {
    while (!finished && !opts.signal?.aborted && !(opts.maxRounds !== undefined && completed >= opts.maxRounds)) {
      const outcome = await new Promise<'ended' | 'stop' | grpc.ServiceError | Error>((resolve) => {
        const call = fc.subscribe();
        let settled = false;
        const settle = (v: 'ended' | 'stop' | grpc.ServiceError | Error) => {
          if (!settled) {
            settled = true;
            resolve(v);
          }
        };
        const onAbort = () => {
          call.cancel();
          settle('stop');
        };
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        // one event at a time, in order; at most EVENT_BACKLOG wait before the stream is paused
        // (HTTP/2 flow control then holds the rest at the coordinator). Handlers catch their own
        // errors; anything else that escapes one is a bug: end the stream with it.
        const queue = new InOrder(call, (err) => {
          call.cancel();
          settle(err instanceof Error ? err : new Error(String(err)));
        }, EVENT_BACKLOG);
        call.on('data', (ev: SignedEvent) => {
          failures = 0;
          let e: PhaseEvent;
          try {
            e = fc.openEvent(ev);
          } catch (err) {
            call.cancel();
            return settle(err as Error);
          }
          queue.push(async () => {
            if (settled) return;
            try {
              await handle(e);
            } catch (err) {
              const m = (err as Error).message;
              log(`round ${e.round} ${PHASE_NAME[e.phase] ?? ''}: ${m}`);
              if (err instanceof UserError && /privacy budget exceeded/.test(m)) {
                reports.push({ runId: e.runId, round: e.round, outcome: 'refused', reason: m });
              }
              abandon(m);
            }
            if (finished || (opts.maxRounds !== undefined && completed >= opts.maxRounds)) {
              call.cancel();
              settle('stop');
            }
          });
        });
        call.on('error', (err: grpc.ServiceError) => void queue.idle().then(() => settle(err.code === grpc.status.CANCELLED ? 'stop' : err)));
        call.on('end', () => void queue.idle().then(() => settle('ended')));
      });
      if (outcome === 'stop' || opts.signal?.aborted) break;
      abandon('connection lost');
      if (outcome instanceof RefusedEvent) throw new UserError(outcome.message, 1);
      const code = (outcome as grpc.ServiceError).code;
      if (code === grpc.status.UNAUTHENTICATED || code === grpc.status.PERMISSION_DENIED) {
        throw new UserError(`the coordinator refused this node: ${(outcome as Error).message} (is "${identity.name}" enrolled with this key, and is the client certificate this party's?)`, 1);
      }
      if (code === grpc.status.RESOURCE_EXHAUSTED) {
        // newer event streams of this party replaced this one: reconnecting would take a stream from them in turn
        throw new UserError(`the coordinator closed this node's event stream: ${(outcome as Error).message}`, 1);
      }
      // a connection that failed: a TLS set-up no retry can fix ends the join with what to change;
      // otherwise (coordinator down, restarting, reset) the reason in words, and reconnect
      const failed = typeof code === 'number' ? connectionFailure(code, (outcome as grpc.ServiceError).details ?? '', { address: opts.coordinator, ca: { name: '--ca', file: opts.caFile }, clientCertFlags: '--cert and --key' }) : null;
      if (failed?.permanent) throw new UserError(`cannot reach the coordinator: ${failed.message}`, 1);
      const why = failed ? failed.message : outcome instanceof Error ? outcome.message : String(outcome);
      failures++;
      if (failures > maxReconnects) throw new UserError(`gave up after ${maxReconnects} reconnection attempts: ${why}`, 1);
      const wait = Math.min(30_000, 1000 * 2 ** (failures - 1));
      log(`stream ${outcome instanceof Error ? `failed (${why})` : 'ended'}; reconnecting in ${wait / 1000} s`);
      await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    abandon('leaving');
    fc.close();
    model.dispose();
  }
  const ledger = openLedger(opts.dataDir, { budget, delta: policy.privacy.delta });
  return {
    party: identity.name,
    rounds: reports,
    finalModelVersion: adopted?.version ?? null,
    epsilon: ledger.entries.length ? ledger.entries[ledger.entries.length - 1].epsilonAfter : 0,
  };
}
