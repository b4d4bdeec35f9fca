/**
 * TEST-ONLY RoundProtocol: a plain (unmasked, no secrecy) sum, used to drive the coordinator's
 * transport and orchestration in tests without the secure-aggregation core. It keeps the shape of
 * the real protocol: five phases, each closed by the service when all expected parties sent or the
 * deadline passed; mask-phase payloads must be finite float32 vectors of the model's length; the round
 * aborts when fewer than `minParties` survive a phase; the result is base + mean of the inputs.
 */
import { invalid, failedPrecondition } from '../../../coordinator/grpc/errors';
import type { ProtocolStep, RoundPhase, RoundProtocol, RoundProtocolFactory, RoundStart } from '../../../coordinator/rounds/protocol';

const ORDER: RoundPhase[] = ['advertise', 'share', 'mask', 'consistency', 'unmask'];

export class PlainSumProtocol implements RoundProtocol {
  phase: RoundPhase | 'done' | 'aborted' = 'advertise';
  private expected: Set<string>;
  private got = new Map<string, Uint8Array>();
  private sum: Float64Array;
  private contributors: string[] = [];
  readonly received: { party: string; phase: RoundPhase; bytes: number }[] = [];

  constructor(private readonly start: RoundStart, private readonly minParties: number) {
    this.expected = new Set(start.parties);
    this.sum = new Float64Array(start.baseModel.bytes.length / 4);
  }

  waitingFor(): string[] {
    return [...this.expected].filter((p) => !this.got.has(p));
  }

  receive(party: string, phase: RoundPhase, payload: Uint8Array): { complete: boolean } {
    if (phase !== this.phase) throw failedPrecondition(`plain protocol is in ${this.phase}, not ${phase}`);
    if (!this.expected.has(party)) throw failedPrecondition(`${party} not expected`);
    if (phase === 'mask') {
      if (payload.length !== this.sum.length * 4) throw invalid(`masked input must be ${this.sum.length} float32 values (${this.sum.length * 4} bytes), got ${payload.length} bytes`);
      const v = new Float32Array(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.length));
      if (!v.every(Number.isFinite)) throw invalid('masked input holds a value that is not a finite float32');
      for (let i = 0; i < v.length; i++) this.sum[i] += v[i];
      this.contributors.push(party);
    } else if (payload.length > 1024) {
      throw invalid(`${phase} payload is ${payload.length} bytes, at most 1024`);
    }
    this.got.set(party, payload);
    this.received.push({ party, phase, bytes: payload.length });
    return { complete: this.got.size === this.expected.size };
  }

  closePhase(): ProtocolStep {
    const survivors = [...this.got.keys()];
    if (survivors.length < this.minParties) {
      this.phase = 'aborted';
      return { kind: 'aborted', reason: `only ${survivors.length} parties sent in phase ${ORDER[ORDER.indexOf(this.phase as RoundPhase)] ?? this.phase}, at least ${this.minParties} needed` };
    }
    const i = ORDER.indexOf(this.phase as RoundPhase);
    if (i === ORDER.length - 1) {
      this.phase = 'done';
      const base = new Float32Array(this.start.baseModel.bytes.buffer.slice(this.start.baseModel.bytes.byteOffset, this.start.baseModel.bytes.byteOffset + this.start.baseModel.bytes.length));
      const out = new Float32Array(base.length);
      for (let k = 0; k < out.length; k++) out[k] = base[k] + this.sum[k] / this.contributors.length;
      return { kind: 'done', model: new Uint8Array(out.buffer), survivors: this.contributors.slice().sort(), audit: { protocol: 'plain-sum-test' } };
    }
    const next = ORDER[i + 1];
    this.phase = next;
    this.expected = new Set(survivors);
    this.got = new Map();
    return { kind: 'next', phase: next, parties: survivors.sort(), messages: survivors.map((p) => ({ to: p, payload: new TextEncoder().encode(`${next}:${p}`) })) };
  }

  abort(reason: string): void {
    void reason;
    this.phase = 'aborted';
  }

  /** a masked input is the model's float32 vector */
  maskedInputBytes(): number {
    return this.sum.length * 4;
  }
}

export class PlainSumFactory implements RoundProtocolFactory {
  readonly protocols: PlainSumProtocol[] = [];
  constructor(private readonly minParties = 2) {}
  create(start: RoundStart) {
    const protocol = new PlainSumProtocol(start, this.minParties);
    this.protocols.push(protocol);
    return { protocol, first: { phase: 'advertise' as const, parties: start.parties.slice(), messages: [] } };
  }
}
