/**
 * The secure-aggregation core behind the RoundProtocol plug point (protocol.ts): one SecAggServer
 * (shared/secagg/server.ts, Bonawitz et al. 2017 §4 with the SecAgg+ graph) per round, its messages
 * carried as secagg.proto bytes (shared/secagg/wire.ts), and the decoded sum turned into the next
 * global model (shared/fl/aggregate.ts: signed lift, / gamma, inverse rotation, uniform average,
 * FedAvg/FedAdam).
 *
 * The adapter adds what only the transport knows: the sender inside a payload must be the party
 * that authenticated the request (else PERMISSION_DENIED), and the payload's type must be the
 * phase's (else INVALID_ARGUMENT). The server state machine checks everything else (signatures by
 * the enrolled identity keys, round, shapes, vector length, thresholds) and changes no state on a
 * bad message.
 *
 * Round parameters are derived from the policy and public values only, exactly as the nodes (and
 * the auditor's replay) derive them (all call shared/fl/round-params.ts `roundSecAggInfo` and
 * `roundEncodeParams`):
 *   secagg params  {threshold, degree = neighbourDegree, bits = bitWidth}
 *   graph seed     publicRoundSeed('graph', federationId, runId, round)
 *   rotation seed  shared/fl/round-params.ts roundEncodeParams (the nodes' encoder uses the same function)
 *   vector length  encodedDimension(shared parameter count, rotated)
 * The server optimizer's state (FedAdam moments, step count) is protocol state stored with each
 * model version (`encodeOptimizerState`); a round starts from the state stored with its base model,
 * so a retry after an abort or a restart continues exactly where the stored model left off.
 */
import { encodedDimension } from '../../shared/dp/encode';
import { noiseFloorViolation } from '../../shared/fl/noise-floor';
import { roundEncodeParams, roundNextModel, roundSecAggInfo } from '../../shared/fl/round-params';
import { newServerState, type ServerOptimizerState } from '../../shared/fl/server';
import { layoutSize, sharedParameterLayout } from '../../shared/model/layout';
import { SecAggServer } from '../../shared/secagg/server';
import { decodeClientMessage, encodeServerMessage, maskedInputWireBytes } from '../../shared/secagg/wire';
import type { ClientMessage } from '../../shared/secagg/messages';
import { u32LeBytes } from '../../shared/secagg/messages';
import { sodium } from '../../shared/crypto/sodium';
import { advertisementEvidence, maskedInputEvidence, survivorSignatureEvidence } from '../../shared/audit/evidence';
import { encodeServerView } from '../../shared/audit/server-view';
import { invalid, permissionDenied } from '../grpc/errors';
import type { PhaseEvidence, ProtocolStep, RoundPhase, RoundProtocol, RoundProtocolFactory, RoundStart, StagedMessage } from './protocol';

const STATE_FORMAT = 1;

/**
 * ServerOptimizerState as bytes: u32le format (1) | u32le steps | u32le n (0 = no moments) |
 * n float32le of m | n float32le of v.
 */
export function encodeOptimizerState(st: ServerOptimizerState): Uint8Array {
  const n = st.m && st.v ? st.m.length : 0;
  const out = new Uint8Array(12 + 8 * n);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, STATE_FORMAT, true);
  dv.setUint32(4, st.steps, true);
  dv.setUint32(8, n, true);
  for (let i = 0; i < n; i++) {
    dv.setFloat32(12 + 4 * i, st.m![i], true);
    dv.setFloat32(12 + 4 * n + 4 * i, st.v![i], true);
  }
  return out;
}

export function decodeOptimizerState(b: Uint8Array | null, dimension: number): ServerOptimizerState {
  if (!b || b.length === 0) return newServerState();
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 12 || dv.getUint32(0, true) !== STATE_FORMAT) throw new Error('stored optimizer state has an unknown format');
  const steps = dv.getUint32(4, true);
  const n = dv.getUint32(8, true);
  if (b.length !== 12 + 8 * n || (n !== 0 && n !== dimension)) throw new Error(`stored optimizer state has ${n} coordinates, the model has ${dimension}`);
  if (n === 0) return { m: null, v: null, steps };
  const m = new Float32Array(n);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    m[i] = dv.getFloat32(12 + 4 * i, true);
    v[i] = dv.getFloat32(12 + 4 * n + 4 * i, true);
  }
  return { m, v, steps };
}

const TYPE_OF: Record<RoundPhase, ClientMessage['type']> = {
  advertise: 'advertise-keys',
  share: 'share-keys',
  mask: 'masked-input',
  consistency: 'consistency-signature',
  unmask: 'unmask-shares',
};

export class SecAggRoundProtocol implements RoundProtocol {
  readonly server: SecAggServer;
  /** the unmasked sum of the last completed round (mod 2^bits), for tests and the audit hash */
  lastSum: Uint32Array | null = null;
  private readonly global: Float32Array;
  private readonly rotationSeed: Uint8Array | null;
  private readonly dimension: number;
  /** audit evidence of the accepted messages, by phase (shared/audit/evidence.ts) */
  private readonly ads: NonNullable<PhaseEvidence['advertisements']> = [];
  private readonly masked: NonNullable<PhaseEvidence['maskedInputs']> = [];
  private readonly sigs: NonNullable<PhaseEvidence['survivorSignatures']> = [];

  private readonly optimizerState: ServerOptimizerState;

  constructor(
    private readonly start: RoundStart,
    coordinatorSecretKey: Uint8Array,
    private readonly log?: (line: string) => void,
  ) {
    const p = start.policy;
    this.dimension = layoutSize(sharedParameterLayout(p.model, p.vocabularies));
    this.optimizerState = decodeOptimizerState(start.baseModel.state, this.dimension); // a private copy
    const b = start.baseModel.bytes;
    if (b.length !== this.dimension * 4) throw invalid(`base model has ${b.length} bytes, the policy's model needs ${this.dimension * 4}`);
    this.global = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
    this.rotationSeed = roundEncodeParams(p, start.runId, start.round).rotationSeed;
    this.server = new SecAggServer({
      ...roundSecAggInfo(p, start.runId, start.round),
      identity: { secretKey: coordinatorSecretKey },
      log,
      // the policy lets auditors recompute the aggregate from the server's view (audit.auditorServerView)
      keepServerView: p.audit?.auditorServerView === true,
    });
  }

  get phase(): RoundProtocol['phase'] {
    return this.server.phase;
  }

  waitingFor(): string[] {
    return this.server.waitingFor;
  }

  receive(party: string, phase: RoundPhase, payload: Uint8Array): { complete: boolean } {
    return this.stage(party, phase, payload).apply();
  }

  /**
   * Decodes and checks the transport binding (type, sender) and takes the message's evidence,
   * changing no state; `apply()` hands it to the server state machine (which checks signature,
   * round, shapes and ranges, and throws with no state change on a bad message) and keeps the
   * evidence only if the server accepted it.
   */
  stage(party: string, phase: RoundPhase, payload: Uint8Array): StagedMessage {
    const m = decodeClientMessage(payload);
    if (m.type !== TYPE_OF[phase]) throw invalid(`payload is a ${m.type} message, phase ${phase} takes ${TYPE_OF[phase]}`);
    if (m.sender !== party) throw permissionDenied(`payload is from "${m.sender}" but the request was signed by party "${party}"`);
    // evidence is taken before the server absorbs the message (it may reuse the vector) and kept only if accepted
    const masked = m.type === 'masked-input' ? maskedInputEvidence(m) : null;
    const add =
      m.type === 'advertise-keys'
        ? ((e) => () => this.ads.push(e))(advertisementEvidence(m))
        : masked
          ? () => this.masked.push(masked)
          : m.type === 'consistency-signature'
            ? ((e) => () => this.sigs.push(e))(survivorSignatureEvidence(m))
            : () => 0;
    let applied = false;
    return {
      evidence: masked ? { ...masked } : null,
      apply: () => {
        if (applied) throw new Error('a staged message is applied at most once');
        applied = true;
        const r = this.server.receive(m);
        add();
        return r;
      },
    };
  }

  evidence(): PhaseEvidence {
    const byParty = <T extends { party: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.party < b.party ? -1 : a.party > b.party ? 1 : 0));
    switch (this.server.phase) {
      case 'advertise':
        return { advertisements: byParty(this.ads) };
      case 'mask':
        return { maskedInputs: byParty(this.masked) };
      case 'consistency':
        return { survivors: [...(this.server.survivorsByPhase.U3 ?? [])], survivorSignatures: byParty(this.sigs) };
      default:
        return {};
    }
  }

  closePhase(): ProtocolStep {
    const step = this.server.deadlinePassed();
    if (step.kind === 'aborted') return step;
    if (step.kind === 'send') {
      if (step.phase === 'consistency') {
        const floor = noiseFloorViolation(this.start.policy, this.server.survivorsByPhase.U3?.length ?? 0);
        if (floor) {
          this.server.abort(floor);
          return { kind: 'aborted', reason: floor };
        }
      }
      const encoded = new Map<unknown, Uint8Array>();
      const messages = step.messages.map(({ to, message }) => {
        let payload = encoded.get(message);
        if (!payload) encoded.set(message, (payload = encodeServerMessage(message)));
        return { to, payload };
      });
      return { kind: 'next', phase: step.phase as RoundPhase, parties: this.server.waitingFor.sort(), messages };
    }
    this.lastSum = step.sum;
    // Wrong unmask shares were corrected (the sum is exact); name the holder and the dealer of each,
    // one line each: the holder revealed a share that is not on the dealer's polynomial, which it
    // altered or the dealer encrypted to it (shares carry no dealer commitment, so the two cannot be
    // told apart here). No secret and no share value is logged; the audit format is unchanged.
    for (const w of step.wrongShares) {
      this.log?.(
        `secagg round ${this.start.round}: party ${w.holder} revealed a wrong share of the ${w.kind === 'self' ? 'self-mask seed' : 'mask key'} of ${w.owner} at unmask (${w.holder} altered it, or ${w.owner} dealt it wrong); it was corrected by decoding the other shares`,
      );
    }
    const p = this.start.policy;
    const next = roundNextModel(p, this.start.runId, this.start.round, this.global, step.sum, step.survivors.map(String), this.optimizerState);
    const sets = this.server.survivorsByPhase;
    const aggregate = u32LeBytes(step.sum);
    return {
      kind: 'done',
      aggregate,
      ...(step.view ? { serverView: encodeServerView(step.view) } : {}),
      model: new Uint8Array(next.buffer, next.byteOffset, next.byteLength),
      survivors: step.survivors,
      state: encodeOptimizerState(this.optimizerState),
      audit: {
        partiesByPhase: { advertise: sets.U1 ?? [], share: sets.U2 ?? [], mask: sets.U3 ?? [], consistency: sets.U4 ?? [], unmask: sets.U5 ?? [] },
        aggregateHash: Buffer.from(sodium().crypto_generichash(32, aggregate, null)).toString('hex'),
        secagg: { threshold: p.secagg.threshold, degree: p.secagg.neighbourDegree, bits: p.secagg.bitWidth, gamma: p.secagg.scale, rotation: p.secagg.rotation },
        dimension: this.dimension,
        serverOptimizer: p.training.serverOptimizer.type,
      },
    };
  }

  abort(reason: string): void {
    if (this.server.phase !== 'done' && this.server.phase !== 'aborted') this.server.abort(reason);
  }

  /** What encodeClientMessage gives for this round's masked input of `party` (the nodes' encoder). */
  maskedInputBytes(party: string): number | null {
    if (!this.start.parties.includes(party)) return null;
    const p = this.start.policy;
    return maskedInputWireBytes({ federationId: p.federationId, round: this.start.round, sender: party, bits: p.secagg.bitWidth, length: encodedDimension(this.dimension, this.rotationSeed !== null) });
  }
}

export class SecAggProtocolFactory implements RoundProtocolFactory {
  /** the protocols created, newest last (tests read `lastSum`) */
  readonly created: SecAggRoundProtocol[] = [];

  constructor(
    private readonly coordinatorSecretKey: Uint8Array,
    private readonly log?: (line: string) => void,
    private readonly keep = 4,
  ) {}

  create(start: RoundStart) {
    const protocol = new SecAggRoundProtocol(start, this.coordinatorSecretKey, this.log);
    this.created.push(protocol);
    if (this.created.length > this.keep) this.created.shift();
    return { protocol, first: { phase: 'advertise' as const, parties: protocol.waitingFor().sort(), messages: [] } };
  }
}
