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
 * Round parameters are derived from the policy and public values only, exactly as the nodes derive
 * them (participant-node/federation/update.ts `roundEncodeParams`; the two must stay identical):
 *   secagg params  {threshold, degree = neighbourDegree, bits = bitWidth}
 *   graph seed     publicRoundSeed('graph', federationId, runId, round)
 *   rotation seed  publicRoundSeed('rotation', ...) when secagg.rotation = hadamard, else none
 *   vector length  encodedDimension(shared parameter count, rotated)
 * FedAdam moments live in the factory (per run, in memory): a restarted coordinator restarts them.
 */
import { encodedDimension } from '../../shared/dp/encode';
import { nextGlobalModel } from '../../shared/fl/aggregate';
import { publicRoundSeed } from '../../shared/fl/seeds';
import { newServerState, type ServerOptimizerState } from '../../shared/fl/server';
import { layoutSize, sharedParameterLayout } from '../../shared/model/layout';
import { SecAggServer } from '../../shared/secagg/server';
import { decodeClientMessage, encodeServerMessage } from '../../shared/secagg/wire';
import type { ClientMessage } from '../../shared/secagg/messages';
import { u32LeBytes } from '../../shared/secagg/messages';
import { sodium } from '../../shared/crypto/sodium';
import { invalid, permissionDenied } from '../grpc/errors';
import type { ProtocolStep, RoundPhase, RoundProtocol, RoundProtocolFactory, RoundStart } from './protocol';

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

  constructor(
    private readonly start: RoundStart,
    coordinatorSecretKey: Uint8Array,
    private readonly optimizerState: ServerOptimizerState,
    log?: (line: string) => void,
  ) {
    const p = start.policy;
    this.dimension = layoutSize(sharedParameterLayout(p.model, p.vocabularies));
    const b = start.baseModel.bytes;
    if (b.length !== this.dimension * 4) throw invalid(`base model has ${b.length} bytes, the policy's model needs ${this.dimension * 4}`);
    this.global = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
    this.rotationSeed = p.secagg.rotation === 'hadamard' ? publicRoundSeed('rotation', p.federationId, start.runId, start.round) : null;
    const peers: Record<string, Uint8Array> = {};
    for (const party of p.parties) peers[party.name] = new Uint8Array(Buffer.from(party.publicKey, 'base64'));
    this.server = new SecAggServer({
      federationId: p.federationId,
      round: start.round,
      params: { threshold: p.secagg.threshold, degree: p.secagg.neighbourDegree, bits: p.secagg.bitWidth },
      roundSeed: publicRoundSeed('graph', p.federationId, start.runId, start.round),
      vectorLength: encodedDimension(this.dimension, this.rotationSeed !== null),
      peers,
      identity: { secretKey: coordinatorSecretKey },
      log,
    });
  }

  get phase(): RoundProtocol['phase'] {
    return this.server.phase;
  }

  waitingFor(): string[] {
    return this.server.waitingFor;
  }

  receive(party: string, phase: RoundPhase, payload: Uint8Array): { complete: boolean } {
    const m = decodeClientMessage(payload);
    if (m.type !== TYPE_OF[phase]) throw invalid(`payload is a ${m.type} message, phase ${phase} takes ${TYPE_OF[phase]}`);
    if (m.sender !== party) throw permissionDenied(`payload is from "${m.sender}" but the request was signed by party "${party}"`);
    return this.server.receive(m);
  }

  closePhase(): ProtocolStep {
    const step = this.server.deadlinePassed();
    if (step.kind === 'aborted') return step;
    if (step.kind === 'send') {
      const encoded = new Map<unknown, Uint8Array>();
      const messages = step.messages.map(({ to, message }) => {
        let payload = encoded.get(message);
        if (!payload) encoded.set(message, (payload = encodeServerMessage(message)));
        return { to, payload };
      });
      return { kind: 'next', phase: step.phase as RoundPhase, parties: this.server.waitingFor.sort(), messages };
    }
    this.lastSum = step.sum;
    const p = this.start.policy;
    const opt = p.training.serverOptimizer;
    const next = nextGlobalModel(
      this.global,
      step.sum,
      step.survivors.length,
      { gamma: p.secagg.scale, bits: p.secagg.bitWidth, rotationSeed: this.rotationSeed },
      opt.type === 'fedavg' ? { type: 'fedavg', learningRate: opt.learningRate } : { type: 'fedadam', learningRate: opt.learningRate, beta1: opt.beta1, beta2: opt.beta2, tau: opt.tau },
      this.optimizerState,
    );
    const sets = this.server.survivorsByPhase;
    return {
      kind: 'done',
      model: new Uint8Array(next.buffer, next.byteOffset, next.byteLength),
      survivors: step.survivors,
      audit: {
        partiesByPhase: { advertise: sets.U1 ?? [], share: sets.U2 ?? [], mask: sets.U3 ?? [], consistency: sets.U4 ?? [], unmask: sets.U5 ?? [] },
        aggregateHash: Buffer.from(sodium().crypto_generichash(32, u32LeBytes(step.sum), null)).toString('hex'),
        secagg: { threshold: p.secagg.threshold, degree: p.secagg.neighbourDegree, bits: p.secagg.bitWidth, gamma: p.secagg.scale, rotation: p.secagg.rotation },
        dimension: this.dimension,
        serverOptimizer: opt.type,
      },
    };
  }

  abort(reason: string): void {
    if (this.server.phase !== 'done' && this.server.phase !== 'aborted') this.server.abort(reason);
  }
}

export class SecAggProtocolFactory implements RoundProtocolFactory {
  private readonly optimizer = new Map<string, ServerOptimizerState>();
  /** the protocols created, newest last (tests read `lastSum`) */
  readonly created: SecAggRoundProtocol[] = [];

  constructor(
    private readonly coordinatorSecretKey: Uint8Array,
    private readonly log?: (line: string) => void,
    private readonly keep = 4,
  ) {}

  create(start: RoundStart) {
    let state = this.optimizer.get(start.runId);
    if (!state) {
      this.optimizer.clear(); // one run at a time
      this.optimizer.set(start.runId, (state = newServerState()));
    }
    const protocol = new SecAggRoundProtocol(start, this.coordinatorSecretKey, state, this.log);
    this.created.push(protocol);
    if (this.created.length > this.keep) this.created.shift();
    return { protocol, first: { phase: 'advertise' as const, parties: protocol.waitingFor().sort(), messages: [] } };
  }
}
