/**
 * Test harness: runs whole secure-aggregation rounds in memory (no transport) with a drop
 * schedule, and an independent oracle of the threshold rule. Not a test file itself.
 */
import { createHash } from 'node:crypto';
import { ed25519FromSeed, type Ed25519KeyPair } from '../../../shared/crypto/sign';
import { SecAggClient } from '../../../shared/secagg/client';
import type { SecAggParams } from '../../../shared/secagg/graph';
import type { ClientMessage, ServerMessage, UnmaskShares } from '../../../shared/secagg/messages';
import { SecAggServer, type ServerStep } from '../../../shared/secagg/server';

/** Deterministic byte source for tests (SHA-256 in counter mode over a label); never product code. */
export function seededRng(label: string): (n: number) => Uint8Array {
  let counter = 0;
  return (n: number) => {
    const out = new Uint8Array(n);
    for (let off = 0; off < n; off += 32) {
      const h = createHash('sha256').update(`${label}/${counter++}`).digest();
      out.set(h.subarray(0, Math.min(32, n - off)), off);
    }
    return out;
  };
}

export interface Federation {
  ids: string[];
  keys: Map<string, Ed25519KeyPair>;
  peers: Record<string, Uint8Array>;
  coordinator: Ed25519KeyPair;
}

export function makeFederation(n: number, label = 'fed'): Federation {
  const rng = seededRng(`identities/${label}`);
  const ids = Array.from({ length: n }, (_, i) => `party-${String(i).padStart(3, '0')}`);
  const keys = new Map<string, Ed25519KeyPair>();
  const peers: Record<string, Uint8Array> = {};
  for (const id of ids) {
    const kp = ed25519FromSeed(rng(32));
    keys.set(id, kp);
    peers[id] = kp.publicKey;
  }
  return { ids, keys, peers, coordinator: ed25519FromSeed(rng(32)) };
}

/** 1 = advertise, 2 = share, 3 = mask, 4 = consistency, 5 = unmask; a party dropping at p sends nothing from p on. */
export type DropSchedule = Map<string, number>;

export const PHASE_INDEX: Record<string, number> = { share: 2, mask: 3, consistency: 4, unmask: 5 };

/** The run id of every harness round unless RoundSetup.runId says otherwise. */
export const TEST_RUN = 'run-test';

export interface RoundSetup {
  fed: Federation;
  params: SecAggParams;
  m: number;
  inputs: Map<string, Uint32Array>;
  drops?: DropSchedule;
  round?: number;
  federationId?: string;
  runId?: string;
  roundSeed?: Uint8Array;
  rngLabel?: string;
  /** the server keeps its view of the round for an auditor (SecAggServerOptions.keepServerView) */
  keepServerView?: boolean;
  /** passes every message through a transport (e.g. the protobuf codec) */
  transport?: { toClient(m: ServerMessage): ServerMessage; toServer(m: ClientMessage): ClientMessage };
}

export interface RoundRun {
  result: ServerStep;
  server: SecAggServer;
  clients: Map<string, SecAggClient>;
  /** every message a party sent, in order */
  sent: ClientMessage[];
  /** every message the coordinator sent */
  broadcast: { to: string; message: ServerMessage }[];
}

/**
 * Drives one round step by step: `start()` (advertise-keys from every party still alive), then
 * `deliver()` hands the coordinator's pending messages to the parties and closes the phase.
 * Tests may edit `step.messages` before delivering (a malicious coordinator).
 */
export class RoundDriver {
  readonly server: SecAggServer;
  readonly clients = new Map<string, SecAggClient>();
  readonly sent: ClientMessage[] = [];
  readonly broadcast: { to: string; message: ServerMessage }[] = [];
  readonly drops: DropSchedule;
  step!: ServerStep;

  constructor(readonly s: RoundSetup) {
    const round = s.round ?? 7;
    const federationId = s.federationId ?? 'fed-test';
    const roundSeed = s.roundSeed ?? new Uint8Array(32).fill(9);
    this.drops = s.drops ?? new Map();
    const base = { federationId, runId: s.runId ?? TEST_RUN, round, params: s.params, roundSeed, vectorLength: s.m, peers: s.fed.peers };
    this.server = new SecAggServer({ ...base, identity: { secretKey: s.fed.coordinator.secretKey }, keepServerView: s.keepServerView });
    for (const id of s.fed.ids) {
      this.clients.set(
        id,
        new SecAggClient({
          ...base,
          identity: { partyId: id, secretKey: s.fed.keys.get(id)!.secretKey },
          coordinatorPublicKey: s.fed.coordinator.publicKey,
          rng: s.rngLabel ? seededRng(`${s.rngLabel}/${id}`) : undefined,
        }),
      );
    }
  }

  alive(id: string, phase: number): boolean {
    return (this.drops.get(id) ?? 99) > phase;
  }

  start(): ServerStep {
    for (const id of this.s.fed.ids) {
      if (!this.alive(id, 1)) continue;
      const msg = this.clients.get(id)!.start();
      this.sent.push(msg);
      this.server.receive(this.s.transport ? this.s.transport.toServer(msg) : msg);
    }
    return (this.step = this.server.deadlinePassed());
  }

  deliver(): ServerStep {
    if (this.step.kind !== 'send') throw new Error('nothing to deliver');
    const p = PHASE_INDEX[this.step.phase];
    for (const { to, message } of this.step.messages) {
      this.broadcast.push({ to, message });
      if (!this.alive(to, p)) continue;
      const reply = this.clients.get(to)!.handle(this.s.transport ? this.s.transport.toClient(message) : message, this.s.inputs.get(to));
      this.sent.push(reply);
      this.server.receive(this.s.transport ? this.s.transport.toServer(reply) : reply);
    }
    return (this.step = this.server.deadlinePassed());
  }

  /** Runs until the coordinator's next messages belong to `phase` (or the round ends). */
  runUntil(phase: 'share' | 'mask' | 'consistency' | 'unmask'): ServerStep {
    if (!this.step) this.start();
    while (this.step.kind === 'send' && this.step.phase !== phase) this.deliver();
    return this.step;
  }

  messageFor(to: string): ServerMessage {
    if (this.step.kind !== 'send') throw new Error('no pending messages');
    const m = this.step.messages.find((x) => x.to === to);
    if (!m) throw new Error(`no message for ${to}`);
    return m.message;
  }
}

export function runRound(s: RoundSetup): RoundRun {
  const d = new RoundDriver(s);
  d.start();
  while (d.step.kind === 'send') d.deliver();
  return { result: d.step, server: d.server, clients: d.clients, sent: d.sent, broadcast: d.broadcast };
}

/** Closed neighbourhoods from a neighbour map. */
function closed(nb: ReadonlyMap<string, readonly string[]>, u: string): string[] {
  return [...nb.get(u)!, u];
}

/**
 * Independent statement of the threshold rule: returns the phase (1..5) at which the round must
 * abort, or 0 when it must complete. U_p = parties that did not drop at or before phase p.
 */
export function expectedAbortPhase(ids: string[], nb: ReadonlyMap<string, readonly string[]>, t: number, drops: DropSchedule): number {
  const U = (p: number) => new Set(ids.filter((id) => (drops.get(id) ?? 99) > p));
  const each = (set: Set<string>, alive: Set<string>) => set.size >= t && [...set].every((u) => closed(nb, u).filter((v) => alive.has(v)).length >= t);
  for (const p of [1, 2, 3]) if (!each(U(p), U(p))) return p;
  // survivors of the masked-input phase must form one connected component (BFS, written again here)
  const U3c = U(3);
  if (U3c.size) {
    const start = [...U3c][0];
    const seen = new Set([start]);
    const queue = [start];
    while (queue.length) for (const v of nb.get(queue.shift()!)!) if (U3c.has(v) && !seen.has(v)) (seen.add(v), queue.push(v));
    if (seen.size !== U3c.size) return 3;
  }
  if (U(4).size < t) return 4;
  const U2 = U(2);
  const U3 = U(3);
  const U5 = U(5);
  if (!each(U3, U5)) return 5;
  for (const v of U2) {
    if (U3.has(v)) continue;
    if (!nb.get(v)!.some((w) => U3.has(w))) continue;
    if (nb.get(v)!.filter((w) => U5.has(w)).length < t) return 5;
  }
  return 0;
}

/** Owners whose self-mask share, and owners whose key share, reached the coordinator. */
export function revealedShares(sent: ClientMessage[]): { self: Set<string>; key: Set<string> } {
  const self = new Set<string>();
  const key = new Set<string>();
  for (const m of sent) {
    if (m.type !== 'unmask-shares') continue;
    for (const s of (m as UnmaskShares).selfMaskShares) self.add(s.owner);
    for (const s of (m as UnmaskShares).keyShares) key.add(s.owner);
  }
  return { self, key };
}

export function modSum(vectors: Uint32Array[], m: number, bits: number): Uint32Array {
  const out = new Uint32Array(m);
  const mod = 2 ** bits;
  for (const v of vectors) for (let i = 0; i < m; i++) out[i] = (out[i] + v[i]) % mod;
  return out;
}

export function randomInput(rng: (n: number) => Uint8Array, m: number, bits: number): Uint32Array {
  const b = rng(4 * m);
  const v = new Uint32Array(m);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < m; i++) v[i] = bits === 32 ? dv.getUint32(4 * i, true) : dv.getUint32(4 * i, true) % 2 ** bits;
  return v;
}
