/**
 * openSignedEvent (participant-node/federation/client.ts): the node acts only on events signed by
 * the pinned coordinator key whose signed bytes are one well-formed PhaseEvent. The cases below
 * are bytes the coordinator's key could sign that two decoders read differently (the ts-proto
 * decoder the node uses, and protobufjs, which grpc-js and proto-loader use): without the strict
 * check the node would act on one reading while another holder of the same signed bytes (an
 * auditor, another implementation) sees another.
 */
import * as protobuf from 'protobufjs';
import { ed25519Keygen } from '../../../shared/crypto/sign';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { signEvent } from '../../../shared/proto/envelope';
import { FEDERATION_PROTO } from '../../../shared/proto/files';
import { openSignedEvent, RefusedEvent } from '../../../participant-node/federation/client';
import { EventKind, Phase, PhaseEvent, type SignedEvent } from '../../../proto/gen/grpc/fedbridge/v1/federation';

/**
 * protobufjs's reading of a PhaseEvent from the same .proto file (protobufjs is what grpc-js and
 * proto-loader decode with; it is proto-loader's dependency, not one of ours). It is given a Buffer,
 * as grpc-js does: protobufjs's Buffer reader cuts a string that runs past the end, its Uint8Array
 * reader throws.
 */
const PhaseEventType = protobuf.loadSync(FEDERATION_PROTO).lookupType('fedbridge.v1.PhaseEvent');
const protobufjsEvent = (b: Uint8Array) => PhaseEventType.toObject(PhaseEventType.decode(Buffer.from(b))) as Partial<PhaseEvent>; // a Buffer, as grpc-js hands it over

const bytes = (...xs: (number | string)[]) => new Uint8Array(Buffer.concat(xs.map((x) => (typeof x === 'number' ? Buffer.from([x]) : Buffer.from(x, 'utf8')))));

describe('openSignedEvent', () => {
  let coordinator: { publicKey: Uint8Array; secretKey: Uint8Array };
  let other: { publicKey: Uint8Array; secretKey: Uint8Array };
  const open = (ev: SignedEvent) => openSignedEvent(ev, coordinator.publicKey, 'fed');
  const refusal = (ev: SignedEvent) => {
    try {
      open(ev);
    } catch (e) {
      expect(e).toBeInstanceOf(RefusedEvent);
      return (e as Error).message;
    }
    throw new Error('the event was accepted');
  };

  beforeAll(async () => {
    await sodiumReady();
    coordinator = ed25519Keygen();
    other = ed25519Keygen();
  });

  test('an honest event opens to what was encoded', () => {
    const honest: PhaseEvent = {
      ...PhaseEvent.fromPartial({}),
      kind: EventKind.EVENT_KIND_PHASE_STARTED,
      federationId: 'fed',
      runId: 'run-1',
      round: 3,
      phase: Phase.PHASE_SHARE_KEYS,
      deadlineMs: '1700000000000',
      parties: ['platform', 'insurer'],
      payload: new Uint8Array([1, 2, 3]),
      sequence: '42',
    };
    expect(open(signEvent(PhaseEvent.encode(honest).finish(), coordinator.secretKey))).toEqual(honest);
  });

  test('a field with the wrong wire type: ts-proto skips it and reads round 7, protobufjs reads a run id and round 0; refused', () => {
    // federation_id "fed", run_id (field 3, a string) sent as the varint 2, then round (field 4) = 7
    const b = bytes(0x12, 3, 'fed', 0x18, 2, 0x20, 7);
    expect(PhaseEvent.decode(b)).toMatchObject({ federationId: 'fed', runId: '', round: 7 });
    expect(protobufjsEvent(b)).toEqual({ federationId: 'fed', runId: ' \u0007' });
    expect(refusal(signEvent(b, coordinator.secretKey))).toBe(
      'a signed event from the coordinator is not a valid PhaseEvent protobuf message (fedbridge.v1.PhaseEvent.runId (field 3) arrived with wire type 0, its type TYPE_STRING needs 2)',
    );
  });

  test('a singular field twice (round 1, then round 2): both decoders keep the last; refused', () => {
    const b = bytes(0x12, 3, 'fed', 0x20, 1, 0x20, 2);
    expect(PhaseEvent.decode(b).round).toBe(2);
    expect(protobufjsEvent(b).round).toBe(2);
    expect(refusal(signEvent(b, coordinator.secretKey))).toBe(
      'a signed event from the coordinator is not a valid PhaseEvent protobuf message (fedbridge.v1.PhaseEvent.round (field 4) occurs twice at byte 7; it is not repeated)',
    );
  });

  test('a federation id that is not UTF-8: the decoders substitute U+FFFD; refused', () => {
    const b = bytes(0x12, 3, 0x66, 0xff, 0xfe);
    expect(PhaseEvent.decode(b).federationId).toContain('\ufffd');
    expect(refusal(signEvent(b, coordinator.secretKey))).toMatch(/PhaseEvent\.federationId: not valid UTF-8\)$/);
  });

  test('a string cut short: protobufjs reads "fed", ts-proto throws; refused with the reason either way', () => {
    const b = bytes(0x12, 5, 'fed');
    expect(protobufjsEvent(b).federationId).toBe('fed');
    expect(() => PhaseEvent.decode(b)).toThrow();
    expect(refusal(signEvent(b, coordinator.secretKey))).toMatch(/PhaseEvent\.federationId: 5 bytes declared, 3 left in its message\)$/);
  });

  test("another key's signature, a damaged signature, and another federation's event are refused", () => {
    const body = PhaseEvent.encode(PhaseEvent.fromPartial({ federationId: 'fed', round: 1 })).finish();
    expect(refusal(signEvent(body, other.secretKey))).toMatch(/failed signature verification/);
    const ev = signEvent(body, coordinator.secretKey);
    const damaged = { body: ev.body, signature: new Uint8Array(ev.signature) };
    damaged.signature[5] ^= 1;
    expect(refusal(damaged)).toMatch(/failed signature verification/);
    const elsewhere = signEvent(PhaseEvent.encode(PhaseEvent.fromPartial({ federationId: 'other', round: 1 })).finish(), coordinator.secretKey);
    expect(refusal(elsewhere)).toBe('event for federation "other", this node is in "fed"');
  });
});
