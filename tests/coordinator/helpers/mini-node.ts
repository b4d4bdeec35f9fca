/**
 * A minimal test node: the SecAggClient state machine driven only by the coordinator's pushed,
 * signed events, replying over the party's gRPC client. No training, no DP: inputs are given.
 */
import { EventKind, Phase, PhaseEvent, type SignedEvent } from '../../../proto/gen/grpc/fedbridge/v1/federation';
import { SecAggClient } from '../../../shared/secagg/client';
import { decodeServerMessage, encodeClientMessage } from '../../../shared/secagg/wire';
import { publicRoundSeed } from '../../../shared/fl/seeds';
import { verifyEvent } from '../../../shared/proto/envelope';
import type { Policy } from '../../../shared/policy/schema';
import type { EventStream, TestParty } from './harness';

const METHOD: Record<number, 'AdvertiseKeys' | 'ShareKeys' | 'ConsistencyCheck' | 'Unmasking'> = {
  [Phase.PHASE_ADVERTISE_KEYS]: 'AdvertiseKeys',
  [Phase.PHASE_SHARE_KEYS]: 'ShareKeys',
  [Phase.PHASE_CONSISTENCY_CHECK]: 'ConsistencyCheck',
  [Phase.PHASE_UNMASKING]: 'Unmasking',
};

export class MiniNode {
  readonly inputs = new Map<number, Uint32Array>();
  readonly sent = new Map<string, Promise<unknown>>(); // `${round}/${phase}` -> the send
  private chain: Promise<void> = Promise.resolve();
  private clients = new Map<number, SecAggClient>();
  dead = false;
  killAt: { round: number; phase: Phase } | null = null;
  errors: Error[] = [];
  /** the reply to this phase is computed but not sent until `release` (what the coordinator holds when) */
  holdAt: { round: number; phase: Phase } | null = null;
  readonly held = new Map<string, Uint8Array>(); // `${round}/${phase}` -> the reply's bytes
  /** optional input generator (else a fixed small-integer pattern) */
  makeInput: ((round: number) => Uint32Array) | null = null;

  constructor(readonly party: TestParty, readonly stream: EventStream, private readonly policy: Policy, private readonly coordinatorKey: Uint8Array, private readonly vectorLength: number) {
    stream.call.on('data', (ev: SignedEvent) => {
      if (!verifyEvent(ev, coordinatorKey)) throw new Error('bad coordinator signature');
      const e = PhaseEvent.decode(ev.body);
      this.chain = this.chain.then(() => this.onEvent(e)).catch((err) => void this.errors.push(err as Error));
    });
  }

  input(round: number): Uint32Array {
    let v = this.inputs.get(round);
    if (!v && this.makeInput) this.inputs.set(round, (v = this.makeInput(round)));
    if (!v) {
      // small signed integers mod 2^32, as an encoded model delta would be
      const k = this.party.name.length + round * 7;
      v = new Uint32Array(this.vectorLength);
      for (let i = 0; i < v.length; i++) v[i] = (((i * 31 + k * 101) % 2001) - 1000) >>> 0;
      this.inputs.set(round, v);
    }
    return v;
  }

  private async onEvent(e: PhaseEvent): Promise<void> {
    if (this.dead || e.kind !== EventKind.EVENT_KIND_PHASE_STARTED) return;
    if (this.killAt && this.killAt.round === e.round && this.killAt.phase === e.phase) {
      this.dead = true; // crash: no reply, connection gone
      this.stream.cancel();
      return;
    }
    const p = this.policy;
    let client = this.clients.get(e.round);
    if (e.phase === Phase.PHASE_ADVERTISE_KEYS) {
      const peers: Record<string, Uint8Array> = {};
      for (const q of p.parties) peers[q.name] = new Uint8Array(Buffer.from(q.publicKey, 'base64'));
      client = new SecAggClient({
        federationId: p.federationId,
        runId: e.runId,
        round: e.round,
        params: { threshold: p.secagg.threshold, degree: p.secagg.neighbourDegree, bits: p.secagg.bitWidth },
        roundSeed: publicRoundSeed('graph', p.federationId, e.runId, e.round),
        vectorLength: this.vectorLength,
        peers,
        identity: { partyId: this.party.name, secretKey: this.party.keys.secretKey },
        coordinatorPublicKey: this.coordinatorKey,
      });
      this.clients.set(e.round, client);
    }
    if (!client) throw new Error(`${this.party.name}: no client for round ${e.round}`);
    const bytes = encodeClientMessage(e.phase === Phase.PHASE_ADVERTISE_KEYS ? client.start() : client.handle(decodeServerMessage(e.payload), this.input(e.round)));
    if (this.holdAt && this.holdAt.round === e.round && this.holdAt.phase === e.phase) {
      this.held.set(`${e.round}/${e.phase}`, bytes);
      return;
    }
    const send = e.phase === Phase.PHASE_MASKED_INPUT ? this.party.upload(e.runId, e.round, bytes) : this.party.phase(METHOD[e.phase], e.runId, e.round, bytes);
    this.sent.set(`${e.round}/${e.phase}`, send);
    await send;
  }

  /** The held reply of (round, phase), once computed. */
  async heldReply(round: number, phase: Phase, timeoutMs = 20_000): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const b = this.held.get(`${round}/${phase}`);
      if (b) return b;
      if (this.errors.length) throw this.errors[0];
      if (Date.now() > deadline) throw new Error(`${this.party.name} computed no reply in round ${round} phase ${phase}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Sends the held reply of (round, phase) (again, when called twice); resolves with the ack. */
  release(round: number, phase: Phase, runId: string): Promise<unknown> {
    const bytes = this.held.get(`${round}/${phase}`);
    if (!bytes) throw new Error(`${this.party.name} holds no reply for round ${round} phase ${phase}`);
    const send = phase === Phase.PHASE_MASKED_INPUT ? this.party.upload(runId, round, bytes) : this.party.phase(METHOD[phase], runId, round, bytes);
    this.sent.set(`${round}/${phase}`, send);
    return send;
  }

  async sentIn(round: number, phase: Phase, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.sent.has(`${round}/${phase}`)) {
      if (this.errors.length) throw this.errors[0];
      if (Date.now() > deadline) throw new Error(`${this.party.name} sent nothing in round ${round} phase ${phase}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await this.sent.get(`${round}/${phase}`);
  }
}

