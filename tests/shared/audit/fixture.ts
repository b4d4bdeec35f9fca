/**
 * Test helper: a federation (policy + coordinator and party identities) and a generator of
 * realistic audit logs written exactly as the coordinator writes them, through shared/audit's
 * AuditRecorder/AuditWriter: every party signs the policy, its key advertisement, its masked-input
 * digest and the survivor list with its own key; parties drop at chosen phases; rounds below the
 * threshold abort; survivors countersign the chain head after each completed round (after
 * run-completed for the last one) and keep their own copies of the receipts.
 */
import { sodiumReady, sodium } from '../../../shared/crypto/sodium';
import { ed25519Keygen, ed25519Sign, type Ed25519KeyPair } from '../../../shared/crypto/sign';
import { defaultPolicy } from '../../../shared/policy/defaults';
import { policyHash, validatePolicy, type Policy } from '../../../shared/policy/schema';
import { signPolicyHash } from '../../../shared/policy/sign';
import { encodedDimension } from '../../../shared/dp/encode';
import { roundNextModel, roundSecAggInfo } from '../../../shared/fl/round-params';
import { newServerState } from '../../../shared/fl/server';
import { float32LeBytes } from '../../../shared/audit/replay';
import { u32LeBytes, type ClientMessage } from '../../../shared/secagg/messages';
import { SecAggClient } from '../../../shared/secagg/client';
import { SecAggServer, type ServerStep } from '../../../shared/secagg/server';
import { advertisementEvidence, maskedInputEvidence, survivorSignatureEvidence } from '../../../shared/audit/evidence';
import { encodeServerView } from '../../../shared/audit/server-view';
import {
  AuditRecorder,
  AuditWriter,
  advertiseKeysBytes,
  maskedInputBytes,
  survivorListBytes,
  signReceipt,
  PHASES,
  type Phase,
  type Receipt,
} from '../../../shared/audit';

const b64 = (b: Uint8Array) => sodium().to_base64(b, sodium().base64_variants.ORIGINAL);
const hex = (b: Uint8Array) => sodium().to_hex(b);

export interface Federation {
  policy: Policy;
  policyHash: string;
  coordinator: Ed25519KeyPair;
  parties: Map<string, Ed25519KeyPair>;
}

export async function makeFederation(o: { parties?: string[]; rounds?: number; edit?: (p: Record<string, any>) => void } = {}): Promise<Federation> {
  await sodiumReady();
  const names = o.parties ?? ['platform', 'insurer', 'insurer2'];
  const coordinator = ed25519Keygen();
  const parties = new Map(names.map((n) => [n, ed25519Keygen()]));
  const base = defaultPolicy({
    federationId: 'demo-fed',
    coordinator: { name: 'coordinator', publicKey: b64(coordinator.publicKey) },
    parties: names.map((n) => ({ name: n, publicKey: b64(parties.get(n)!.publicKey) })),
    catalogue: { hash: 'ab'.repeat(32), numItems: 40 },
  }) as unknown as Record<string, any>;
  const obj = JSON.parse(JSON.stringify(base));
  obj.training.rounds = o.rounds ?? 3;
  obj.model.embeddingDim = 8;
  obj.model.hiddenDim = 8;
  o.edit?.(obj);
  const policy = validatePolicy(obj);
  return { policy, policyHash: policyHash(policy), coordinator, parties };
}

export interface RoundPlan {
  /** parties that stop sending from this phase on */
  drop?: { party: string; phase: Phase }[];
  /** operator abort after this phase closed */
  abortAfter?: Phase;
  /** survivors that do not send a receipt */
  noReceipt?: string[];
}

export interface GeneratedLog {
  text: string;
  bytes: Uint8Array;
  /** receipts as the parties keep them */
  receipts: Receipt[];
  recorder: AuditRecorder;
  /** the last model version in the log */
  modelVersion: number;
  /**
   * with `chain`: the initial model's bytes by version and each completed round's aggregate by
   * `${runId}/${round}` (what `audit export --artifacts` downloads)
   */
  artifacts: { models: Map<number, Uint8Array>; aggregates: Map<string, Uint8Array>; serverViews: Map<string, Uint8Array> };
}

/**
 * A log of one run of `fed.policy`. With `continueFrom` (a log of the same coordinator), the run is
 * appended to that log as a restarted coordinator would (AuditRecorder.replay: the charges of every
 * earlier round carry over), e.g. a run of a second policy; receipts are then those of both.
 */
export function generateLog(
  fed: Federation,
  plans: RoundPlan[] = [{}, {}, {}],
  o: {
    runId?: string;
    startAt?: number;
    continueFrom?: GeneratedLog;
    /** the run the parties' secure-aggregation signatures are bound to (default: runId) */
    evidenceRunId?: string;
    /**
     * a real model chain: a random initial model, each completed round's aggregate the modular sum
     * of small random encoded updates, its model roundNextModel of the previous one (the
     * coordinator's computation), with their true hashes in the log; `steer` may change a round's
     * model before it is hashed and logged (a coordinator publishing another model)
     */
    chain?: {
      steer?: (round: number, model: Float32Array) => void;
      /**
       * run every round as a real secure-aggregation round (shared/secagg server and clients with
       * the parties' keys): the log's evidence is the parties' real messages, the aggregate the
       * server's unmasked sum, and `artifacts.serverViews` the server view of each completed round
       */
      secagg?: boolean;
      /** a coordinator that logs (and applies) another aggregate than the unmasked sum */
      fakeAggregate?: (round: number, sum: Uint32Array) => void;
    };
  } = {},
): GeneratedLog {
  const { policy } = fed;
  let now = o.startAt ?? 1_767_000_000_000;
  const clock = () => (now += 1234);
  const rec = o.continueFrom ? AuditRecorder.replay(policy, fed.coordinator.secretKey, o.continueFrom.bytes, clock) : new AuditRecorder(policy, new AuditWriter(fed.coordinator.secretKey), clock);
  const writer = rec.writer;
  const receipts: Receipt[] = [...(o.continueFrom?.receipts ?? [])];
  const names = policy.parties.map((p) => p.name);
  const sk = (p: string) => fed.parties.get(p)!.secretKey;
  const rnd = (n: number) => sodium().randombytes_buf(n);
  const runId = o.runId ?? 'run-1';
  const evidenceRun = o.evidenceRunId ?? runId;
  const fedId = policy.federationId;
  const t = policy.secagg.threshold;

  if (!o.continueFrom) writer.append({ type: 'participant-enrolled', name: names[0], publicKey: policy.parties[0].publicKey, certSha256: null }, (now += 10));
  rec.registerPolicy(names.map((p) => ({ party: p, publicKey: policy.parties.find((x) => x.name === p)!.publicKey, signature: b64(signPolicyHash(fed.policyHash, sk(p))) })));
  let version = (o.continueFrom?.modelVersion ?? 0) + 1;
  const artifacts: GeneratedLog['artifacts'] = {
    models: new Map(o.continueFrom?.artifacts.models),
    aggregates: new Map(o.continueFrom?.artifacts.aggregates),
    serverViews: new Map(o.continueFrom?.artifacts.serverViews),
  };
  let weights: Float32Array | null = null;
  const optimizerState = newServerState();
  if (o.chain) {
    const raw = rnd(4 * rec.params.dimension);
    weights = new Float32Array(rec.params.dimension).map((_, i) => ((raw[4 * i] | (raw[4 * i + 1] << 8)) - 32768) / 65536);
    const bytes = float32LeBytes(weights);
    artifacts.models.set(version, bytes);
    rec.startRun(runId, version, hex(sodium().crypto_generichash(32, bytes, null)));
  } else rec.startRun(runId, version, hex(rnd(32)));
  let completed = 0;
  let round = 0;
  const dimLen = (() => {
    let d = 1;
    while (d < rec.params.dimension) d *= 2;
    return rec.params.rotation === 'hadamard' ? d : rec.params.dimension;
  })();
  for (const plan of plans) {
    if (completed >= policy.training.rounds) break;
    round++;
    rec.startRound({ runId, round, secaggRound: round, baseModelVersion: version, parties: names });
    let active = [...names];
    let aborted = false;
    let secaggDone: Extract<ServerStep, { kind: 'done' }> | null = null;
    if (o.chain?.secagg) {
      const r = realRound(fed, runId, round, plan, (reason, phase) => rec.abortRound(reason, phase), (phase, parties, ev) => rec.phase(phase, parties, ev), rnd);
      if (!r) continue;
      secaggDone = r;
      setMasked(rec, r.survivors);
    }
    for (const phase of secaggDone ? [] : PHASES) {
      active = active.filter((p) => !(plan.drop ?? []).some((d) => d.party === p && d.phase === phase));
      if (phase === 'advertise') {
        rec.phase(phase, active, {
          advertisements: active.map((p) => {
            const cPk = rnd(32);
            const sPk = rnd(32);
            const c = rnd(32);
            return { party: p, cPk: b64(cPk), sPk: b64(sPk), selfMaskCommitment: hex(c), signature: b64(ed25519Sign(advertiseKeysBytes(fedId, evidenceRun, round, p, cPk, sPk, c), sk(p))) };
          }),
        });
      } else if (phase === 'mask') {
        rec.phase(phase, active, {
          maskedInputs: active.map((p) => {
            const digest = rnd(32);
            return { party: p, bits: rec.params.bits, length: dimLen, digest: hex(digest), signature: b64(ed25519Sign(maskedInputBytes(fedId, evidenceRun, round, p, rec.params.bits, dimLen, digest), sk(p))) };
          }),
        });
      } else if (phase === 'consistency') {
        const masked = [...maskedOf(rec)].sort();
        rec.phase(phase, active, { survivors: masked, survivorSignatures: active.map((p) => ({ party: p, signature: b64(ed25519Sign(survivorListBytes(fedId, evidenceRun, round, p, masked), sk(p))) })) });
      } else {
        rec.phase(phase, active);
      }
      if (phase === 'mask') setMasked(rec, active);
      if (active.length < t) {
        rec.abortRound(`only ${active.length} parties in phase ${phase}, fewer than t=${t}`, phase);
        aborted = true;
        break;
      }
      if (plan.abortAfter === phase) {
        rec.abortRound('aborted by the operator', phase);
        aborted = true;
        break;
      }
    }
    if (aborted) continue;
    version++;
    const survivors = [...maskedOf(rec)].sort();
    let modelHash = hex(rnd(32));
    let aggregateHash = hex(rnd(32));
    if (o.chain && weights) {
      // each survivor's encoded update: small signed integers (|x| <= 300, about 300/gamma), mod 2^bits
      const words = encodedDimension(rec.params.dimension, rec.params.rotation === 'hadamard');
      const mod = 2 ** rec.params.bits;
      let sum: Uint32Array = new Uint32Array(words);
      if (secaggDone) {
        sum = secaggDone.sum;
        artifacts.serverViews.set(`${runId}/${round}`, encodeServerView(secaggDone.view!));
        o.chain.fakeAggregate?.(round, sum);
      } else {
        for (let k = 0; k < survivors.length; k++) {
          const r = rnd(2 * words);
          for (let i = 0; i < words; i++) sum[i] = (sum[i] + ((((r[2 * i] | (r[2 * i + 1] << 8)) % 601) - 300 + mod) % mod)) % mod;
        }
      }
      const agg = u32LeBytes(sum);
      artifacts.aggregates.set(`${runId}/${round}`, agg);
      aggregateHash = hex(sodium().crypto_generichash(32, agg, null));
      weights = roundNextModel(policy, runId, round, weights, sum, survivors, optimizerState);
      o.chain.steer?.(round, weights);
      modelHash = hex(sodium().crypto_generichash(32, float32LeBytes(weights), null));
    }
    rec.completeRound({ survivors, aggregateHash, modelVersion: version, modelHash });
    completed++;
    if (completed === policy.training.rounds) rec.completeRun(runId, version);
    const head = writer.head();
    for (const p of survivors) {
      if ((plan.noReceipt ?? []).includes(p)) continue;
      const r = signReceipt({ federationId: fedId, policyHash: fed.policyHash, runId, round, party: p, headIdx: head.idx, head: head.hash, modelHash }, sk(p));
      receipts.push(r);
      rec.receipt(r);
    }
  }
  const text = writer.exportText();
  return { text, bytes: new TextEncoder().encode(text), receipts, recorder: rec, modelVersion: version, artifacts };
}

/**
 * The parties sign a second policy (2 rounds, 1.5x the noise; same coordinator and keys) and its
 * run is appended to `first` as the coordinator would write it (run id run-2, a later clock).
 */
export function appendSecondPolicyRun(fed: Federation, first: GeneratedLog): { second: Policy; fed2: Federation; both: GeneratedLog } {
  const second = JSON.parse(JSON.stringify(fed.policy)) as Policy;
  second.training.rounds = 2;
  second.privacy.noiseMultiplier = fed.policy.privacy.noiseMultiplier * 1.5;
  const fed2 = { ...fed, policy: second, policyHash: policyHash(second) };
  return { second, fed2, both: generateLog(fed2, [{}, {}], { runId: 'run-2', startAt: 1_768_000_000_000, continueFrom: first }) };
}

const masked = new WeakMap<AuditRecorder, string[]>();
function setMasked(r: AuditRecorder, parties: string[]): void {
  masked.set(r, [...parties]);
}
function maskedOf(r: AuditRecorder): string[] {
  return masked.get(r) ?? [];
}

/** Entries of an exported log as objects (for mutation tests). */
export function entriesOf(text: string): Record<string, any>[] {
  return text
    .split('\n')
    .filter((l) => l.length)
    .map((l) => JSON.parse(l).entry);
}

/**
 * Re-chains and re-signs entry objects with the coordinator key (what a coordinator rewriting its
 * history can do). With `parties`, receipts are also re-signed over the new heads (every signature
 * valid: used to show that the policy checks, not the signatures, catch a mutation). Merkle roots
 * are recomputed over the new entries unless `fixMerkle` is false.
 */
export function rechain(fed: Federation, entries: Record<string, any>[], o: { resignReceipts: boolean; fixMerkle?: boolean }): { text: string; bytes: Uint8Array } {
  const writer = new AuditWriter(fed.coordinator.secretKey);
  const heads: string[] = [];
  let roundFrom = 0;
  for (const e0 of entries) {
    const e = JSON.parse(JSON.stringify(e0));
    if (e.type === 'round-started') roundFrom = heads.length;
    if ((e.type === 'round-completed' || e.type === 'round-aborted') && o.fixMerkle !== false) e.merkle = writer.merkleSince(roundFrom);
    if (e.type === 'receipt' && o.resignReceipts) {
      const r = e.receipt;
      const { signature: _s, format: _f, ...fields } = r;
      e.receipt = signReceipt({ ...fields, head: heads[r.headIdx] ?? r.head }, fed.parties.get(r.party)!.secretKey);
    }
    writer.appendUnchecked(e);
    heads.push(sodium().to_hex(writer.head().hash));
  }
  const text = writer.exportText();
  return { text, bytes: new TextEncoder().encode(text) };
}

/** One party's encoded update for realRound: small signed integers (|x| <= 300) mod 2^bits. */
function smallInput(rnd: (n: number) => Uint8Array, words: number, bits: number): Uint32Array {
  const mod = 2 ** bits;
  const r = rnd(2 * words);
  const v = new Uint32Array(words);
  for (let i = 0; i < words; i++) v[i] = ((((r[2 * i] | (r[2 * i + 1] << 8)) % 601) - 300 + mod) % mod);
  return v;
}

/**
 * A real secure-aggregation round of the policy (the coordinator's round context, as
 * coordinator/rounds/secagg-protocol.ts builds it) with the parties' identity keys, following
 * `plan` (drops; operator abort after a phase). Each closed phase is logged through `phase` with
 * the evidence the coordinator takes from the accepted messages; an abort through `abort`.
 * Returns the server's done step (sum and server view), or null when the round aborted.
 */
function realRound(
  fed: Federation,
  runId: string,
  round: number,
  plan: RoundPlan,
  abort: (reason: string, phase: Phase) => void,
  phase: (p: Phase, parties: string[], evidence?: Record<string, unknown>) => void,
  rnd: (n: number) => Uint8Array,
): Extract<ServerStep, { kind: 'done' }> | null {
  const policy = fed.policy;
  const names = policy.parties.map((p) => p.name);
  const info = roundSecAggInfo(policy, runId, round);
  const server = new SecAggServer({ ...info, identity: { secretKey: fed.coordinator.secretKey }, keepServerView: true });
  const clients = new Map(names.map((n) => [n, new SecAggClient({ ...info, identity: { partyId: n, secretKey: fed.parties.get(n)!.secretKey }, coordinatorPublicKey: fed.coordinator.publicKey })]));
  const dropsAt = (p: Phase) => new Set((plan.drop ?? []).filter((d) => PHASES.indexOf(d.phase) <= PHASES.indexOf(p)).map((d) => d.party));
  let accepted: ClientMessage[] = [];
  const deliver = (msgs: ClientMessage[]) => {
    accepted = [];
    for (const m of msgs) {
      server.receive(m);
      accepted.push(m);
    }
  };
  deliver(names.filter((n) => !dropsAt('advertise').has(n)).map((n) => clients.get(n)!.start()));
  for (const p of PHASES) {
    const step = server.deadlinePassed();
    const parties = accepted.map((m) => m.sender).sort();
    const evidence =
      p === 'advertise'
        ? { advertisements: accepted.map((m) => advertisementEvidence(m as Extract<ClientMessage, { type: 'advertise-keys' }>)) }
        : p === 'mask'
          ? { maskedInputs: accepted.map((m) => maskedInputEvidence(m as Extract<ClientMessage, { type: 'masked-input' }>)) }
          : p === 'consistency'
            ? { survivors: [...server.survivorsByPhase.U3!], survivorSignatures: accepted.map((m) => survivorSignatureEvidence(m as Extract<ClientMessage, { type: 'consistency-signature' }>)) }
            : undefined;
    phase(p, parties, evidence);
    if (step.kind === 'aborted') {
      abort(step.reason, p);
      return null;
    }
    if (plan.abortAfter === p) {
      abort('aborted by the operator', p);
      return null;
    }
    if (step.kind === 'done') return step;
    const next = PHASES[PHASES.indexOf(p) + 1];
    deliver(
      step.messages
        .filter(({ to }) => !dropsAt(next).has(to))
        .map(({ to, message }) => clients.get(to)!.handle(message, next === 'mask' ? smallInput(rnd, info.vectorLength, info.params.bits) : undefined)),
    );
  }
  throw new Error('the round did not end');
}
