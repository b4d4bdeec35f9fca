/**
 * grpc/wire-check.ts: bytes that protobufjs would read as a different message than the client
 * sent are refused with the reason; every message our generated encoders produce passes; the check
 * never throws on any input (it runs inside grpc-js's deserializer on every request).
 */
import * as protoLoader from '@grpc/proto-loader';
import fc from 'fast-check';
import * as protobuf from 'protobufjs';
import { FEDERATION_PROTO, LOADER_OPTIONS, PROTO_ROOT, SECAGG_PROTO } from '../../../shared/proto/files';
import { wireSchemaOf, wireViolation } from '../../../shared/proto/wire-check';
import { SecAggClientMessage } from '../../../proto/gen/grpc/fedbridge/v1/secagg';
import { AbortRunRequest, EnrollRequest, Phase, PhaseMessageBody, SignedRequest, StartRunChunk, UploadChunk } from '../../../proto/gen/grpc/fedbridge/v1/federation';

type Method = { requestDeserialize: (b: Buffer) => unknown };
const load = () => protoLoader.loadSync(FEDERATION_PROTO, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
const def = load();
const schema = wireSchemaOf(def);
/** protobufjs's own decoding, as grpc-js would do it without our guard */
const plain = (svc: string, m: string) => (def[`fedbridge.v1.${svc}`] as unknown as Record<string, Method>)[m].requestDeserialize;
const bytes = (...xs: (number | string | Uint8Array)[]) =>
  Buffer.concat(xs.map((x) => (typeof x === 'number' ? Buffer.from([x]) : typeof x === 'string' ? Buffer.from(x, 'utf8') : Buffer.from(x))));
const key = new Uint8Array(32).fill(7);

describe('bytes protobufjs reads as another message, and other damage', () => {
  test('a string cut short at the end of the message: protobufjs yields a shorter name; the check refuses', () => {
    // public_key (field 2), then name (field 1) declaring 9 bytes with 8 present
    const b = bytes(0x12, 32, key, 0x0a, 9, 'newparty');
    expect(plain('OperatorService', 'Enroll')(b)).toMatchObject({ name: 'newparty' });
    expect(wireViolation(b, 'fedbridge.v1.EnrollRequest', schema)).toBe('fedbridge.v1.EnrollRequest.name: 9 bytes declared, 8 left in its message');
  });

  test("a sub-message's last field running past the sub-message's length: refused by both, the check names the field", () => {
    // UploadChunk.open (SignedRequest) declares 4 bytes, but its body field declares 6
    const b = bytes(0x0a, 4, 0x0a, 6, 1, 2, 3, 4, 5, 6, 0x10, 0x01);
    expect(() => plain('ParticipantService', 'UploadMaskedInput')(b)).toThrow(/index out of range: 4 \+ 6 > 6/);
    expect(wireViolation(b, 'fedbridge.v1.UploadChunk', schema)).toBe('fedbridge.v1.UploadChunk.open.body: 6 bytes declared, 2 left in its message');
  });

  test('a known field with the wrong wire type: protobufjs reads it by the declared type; the check refuses', () => {
    // name (field 1, a string) sent as a varint 3, followed by "abc": protobufjs reads the string "abc"
    const b = bytes(0x08, 3, 'abc');
    expect(plain('OperatorService', 'Enroll')(b)).toMatchObject({ name: 'abc' });
    expect(wireViolation(b, 'fedbridge.v1.EnrollRequest', schema)).toBe('fedbridge.v1.EnrollRequest.name (field 1) arrived with wire type 0, its type TYPE_STRING needs 2');
  });

  test('a string that is not UTF-8: protobufjs substitutes characters; the check refuses', () => {
    const b = bytes(0x0a, 3, 0x61, 0xff, 0xfe);
    expect((plain('OperatorService', 'Enroll')(b) as { name: string }).name).toContain('\ufffd');
    expect(wireViolation(b, 'fedbridge.v1.EnrollRequest', schema)).toBe('fedbridge.v1.EnrollRequest.name: not valid UTF-8');
  });

  test('UTF-8: an ASCII prefix then damage, overlong forms, encoded surrogates and cut sequences are refused; any valid text passes (same verdict as a fatal TextDecoder)', () => {
    const name = (...xs: number[]) => wireViolation(bytes(0x0a, xs.length, new Uint8Array(xs)), 'fedbridge.v1.EnrollRequest', schema);
    expect(name(0x61, 0x62, 0xff)).toBe('fedbridge.v1.EnrollRequest.name: not valid UTF-8');
    expect(name(0x61, 0xc0, 0xaf)).toMatch(/not valid UTF-8/); // overlong "/"
    expect(name(0xed, 0xa0, 0x80)).toMatch(/not valid UTF-8/); // a UTF-16 surrogate encoded
    expect(name(0x61, 0xe2, 0x82)).toMatch(/not valid UTF-8/); // a 3-byte sequence cut short
    expect(name(...Buffer.from('a\u00e9\u20ac\u{1f600}', 'utf8'))).toBeNull();
    const fatal = new TextDecoder('utf-8', { fatal: true });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 8 }).map((t) => new Uint8Array(Buffer.from(t, 'utf8')))), fc.uint8Array({ maxLength: 4 }), (text, tail) => {
        const u = new Uint8Array([...text, ...tail]);
        let valid = true;
        try {
          fatal.decode(u);
        } catch {
          valid = false;
        }
        expect(name(...u) === null).toBe(valid);
      }),
      { numRuns: 3000 },
    );
  });

  test('groups, wire types 6 and 7, field number 0, a varint that never ends, trailing partial values', () => {
    const v = (b: Buffer) => wireViolation(b, 'fedbridge.v1.EnrollRequest', schema);
    expect(v(bytes(0x0b, 0x0c))).toMatch(/field 1.*wire type 3/); // name as a group start: refused by type first
    expect(v(bytes(0x2b))).toMatch(/field 5: wire type 3 at byte 0/);
    expect(v(bytes(0x2e))).toMatch(/wire type 6/);
    expect(v(bytes(0x02, 0x00))).toMatch(/field number 0 at byte 0/);
    expect(v(bytes(0x28, 0x80, 0x80))).toMatch(/field 5: varint runs past the end/);
    expect(v(bytes(0x28, ...new Array(10).fill(0x80), 0x01))).toMatch(/varint longer than 10 bytes/);
    expect(v(bytes(0x29, 1, 2, 3))).toMatch(/field 5: 8-byte value runs past/);
    expect(v(bytes(0x2d, 1, 2, 3, 4))).toBeNull(); // an unknown fixed32 field: skipped
  });

  test('a varint too wide for its field: protobufjs cuts or misreads it; the check refuses; in-range forms pass', () => {
    // UploadChunk.index (uint32) = 2^32 + 1 in 5 bytes: protobufjs keeps the low 32 bits
    const wide = bytes(0x10, 0x81, 0x80, 0x80, 0x80, 0x10);
    expect(plain('ParticipantService', 'UploadMaskedInput')(wide)).toMatchObject({ index: 1 });
    expect(wireViolation(wide, 'fedbridge.v1.UploadChunk', schema)).toBe('fedbridge.v1.UploadChunk.index: a 5-byte varint does not fit TYPE_UINT32 (32 bits)');
    // a 6-byte uint32 varint (found by FC_SEED=random, seed 1821162163): protobufjs skips 5 bytes
    // after the 5th as if it were a 10-byte varint (here past the end: it throws)
    const six = bytes(0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00);
    expect(() => plain('ParticipantService', 'UploadMaskedInput')(six)).toThrow(/index out of range/);
    expect(wireViolation(six, 'fedbridge.v1.UploadChunk', schema)).toMatch(/index: a 6-byte varint does not fit TYPE_UINT32/);
    // uint64 with bits beyond 64
    const u64 = bytes(0x10, ...new Array(9).fill(0xff), 0x02);
    expect(wireViolation(u64, 'fedbridge.v1.UploadOpenBody', schema)).toBe('fedbridge.v1.UploadOpenBody.totalBytes: a varint of more than 64 bits');
    expect(wireViolation(bytes(0x10, ...new Array(9).fill(0xff), 0x01), 'fedbridge.v1.UploadOpenBody', schema)).toBeNull(); // 2^64 - 1
    // an enum (int32) may be negative: the 10-byte two's complement form passes, a 10-byte value
    // that is not a sign-extended 32-bit one does not
    const neg = PhaseMessageBody.encode({ header: { federationId: 'f', party: 'p', runId: 'r', round: 1, phase: -1 as Phase, nonce: new Uint8Array(16), timestampMs: '-5' }, payload: new Uint8Array(0) }).finish();
    expect(wireViolation(neg, 'fedbridge.v1.PhaseMessageBody', schema)).toBeNull();
    const notSignExtended = bytes(0x28, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01);
    expect(wireViolation(notSignExtended, 'fedbridge.v1.PartyHeader', schema)).toBe('fedbridge.v1.PartyHeader.phase: a 10-byte varint does not fit TYPE_ENUM (32 bits)');
    // non-minimal but in range: 0 as two bytes
    expect(wireViolation(bytes(0x10, 0x80, 0x00), 'fedbridge.v1.UploadChunk', schema)).toBeNull();
  });

  test('a singular field twice: protobufjs keeps the last (C++ and Go merge a sub-message); the check refuses; a repeated field may recur', () => {
    // UploadChunk.index (field 2) = 1, then index = 2
    const b = bytes(0x10, 1, 0x10, 2);
    expect(plain('ParticipantService', 'UploadMaskedInput')(b)).toMatchObject({ index: 2 });
    expect(wireViolation(b, 'fedbridge.v1.UploadChunk', schema)).toBe('fedbridge.v1.UploadChunk.index (field 2) occurs twice at byte 2; it is not repeated');
    expect(wireViolation(bytes(0x20, 1, 0x20, 2), 'fedbridge.v1.PartyHeader', schema)).toBe('fedbridge.v1.PartyHeader.round (field 4) occurs twice at byte 2; it is not repeated');
    // a sub-message twice: protobufjs replaces the first header with the second
    const h1 = bytes(0x0a, 1, 'a');
    const h2 = bytes(0x12, 1, 'b');
    const body = bytes(0x0a, h1.length, h1, 0x0a, h2.length, h2);
    expect(wireViolation(body, 'fedbridge.v1.SubscribeBody', schema)).toBe('fedbridge.v1.SubscribeBody.header (field 1) occurs twice at byte 5; it is not repeated');
    // repeated strings (StartRunRequest.signatures, repeated messages) may recur
    const sigs = bytes(0x12, 3, 0x0a, 1, 'a', 0x12, 3, 0x0a, 1, 'b');
    expect(wireViolation(sigs, 'fedbridge.v1.StartRunRequest', schema)).toBeNull();
    // field numbers above 30 (tracked in a set rather than bits), from a schema made for the test
    const wide = wireSchemaOf(
      protoLoader.fromJSON({ nested: { t: { nested: { Wide: { fields: { a: { type: 'uint32', id: 31 }, b: { type: 'string', id: 1000 }, c: { rule: 'repeated', type: 'string', id: 40 } } } } } } }),
    );
    const tag = (n: number, wt: number) => {
      const out: number[] = [];
      for (let v = n * 8 + wt; ; v = Math.floor(v / 128)) {
        if (v < 128) return [...out, v];
        out.push((v & 0x7f) | 0x80);
      }
    };
    expect(wireViolation(bytes(...tag(31, 0), 1, ...tag(1000, 2), 1, 'x', ...tag(40, 2), 0, ...tag(40, 2), 0), 't.Wide', wide)).toBeNull();
    expect(wireViolation(bytes(...tag(31, 0), 1, ...tag(31, 0), 1), 't.Wide', wide)).toBe('t.Wide.a (field 31) occurs twice at byte 3; it is not repeated');
    expect(wireViolation(bytes(...tag(1000, 2), 0, ...tag(31, 0), 5, ...tag(1000, 2), 0), 't.Wide', wide)).toBe('t.Wide.b (field 1000) occurs twice at byte 6; it is not repeated');
  });

  test('two members of one oneof: protobufjs names the last as the value, ts-proto keeps both; the check refuses; one member per oneof passes', () => {
    // SecAggClientMessage.message: advertise_keys (1) and masked_input (3) in one envelope
    const ad = bytes(0x1a, 1, 'a'); // AdvertiseKeys.sender = "a"
    const mi = bytes(0x1a, 1, 'b'); // MaskedInput.sender = "b"
    const two = bytes(0x0a, ad.length, ad, 0x1a, mi.length, mi);
    const secagg = wireSchemaOf(protoLoader.loadSync(SECAGG_PROTO, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] }));
    expect(wireViolation(two, 'fedbridge.v1.SecAggClientMessage', secagg)).toBe(
      'fedbridge.v1.SecAggClientMessage.maskedInput (field 3) at byte 5: another member of oneof message is already set; at most one may be',
    );
    expect(wireViolation(bytes(0x0a, ad.length, ad), 'fedbridge.v1.SecAggClientMessage', secagg)).toBeNull();
    expect(wireViolation(bytes(0x1a, mi.length, mi), 'fedbridge.v1.SecAggClientMessage', secagg)).toBeNull();
    // protobufjs (oneofs: true) names only the last member as the oneof's value
    const root = protobuf.loadSync(SECAGG_PROTO);
    const decoded = root.lookupType('fedbridge.v1.SecAggClientMessage').toObject(root.lookupType('fedbridge.v1.SecAggClientMessage').decode(two), { oneofs: true }) as { message?: string };
    expect(decoded.message).toBe('maskedInput');
    const tsProto = SecAggClientMessage.decode(two);
    expect(tsProto.advertiseKeys?.sender).toBe('a');
    expect(tsProto.maskedInput?.sender).toBe('b');
    // plain fields beside oneofs (proto-loader's descriptor objects give them oneofIndex 0 too), a
    // second oneof, a proto3 optional (a synthetic one-member oneof), from a schema made for the test
    const mixed = wireSchemaOf(
      protoLoader.fromJSON({
        nested: {
          t: {
            nested: {
              Mixed: {
                oneofs: { a: { oneof: ['x', 'y'] }, b: { oneof: ['p', 'q'] }, _opt: { oneof: ['opt'] } },
                fields: { plain: { type: 'string', id: 1 }, x: { type: 'string', id: 2 }, y: { type: 'bytes', id: 3 }, other: { type: 'int32', id: 4 }, p: { type: 'int32', id: 5 }, q: { type: 't.Mixed', id: 6 }, opt: { type: 'int32', id: 7, options: { proto3_optional: true } } },
              },
            },
          },
        },
      }),
    );
    expect(wireViolation(bytes(0x0a, 1, 'a', 0x12, 1, 'x', 0x20, 4, 0x28, 5, 0x38, 7), 't.Mixed', mixed)).toBeNull();
    expect(wireViolation(bytes(0x0a, 1, 'a', 0x20, 4), 't.Mixed', mixed)).toBeNull();
    expect(wireViolation(bytes(0x12, 1, 'x', 0x1a, 1, 'y'), 't.Mixed', mixed)).toBe('t.Mixed.y (field 3) at byte 3: another member of oneof a is already set; at most one may be');
    expect(wireViolation(bytes(0x28, 5, 0x32, 0), 't.Mixed', mixed)).toBe('t.Mixed.q (field 6) at byte 2: another member of oneof b is already set; at most one may be');
    // oneofs are per message: a member set in the outer message and in the nested one is fine
    expect(wireViolation(bytes(0x32, 2, 0x28, 1), 't.Mixed', mixed)).toBeNull();
    expect(wireViolation(bytes(0x32, 4, 0x28, 1, 0x32, 0), 't.Mixed', mixed)).toBe('t.Mixed.q.q (field 6) at byte 4: another member of oneof b is already set; at most one may be');
  });
});

describe('well-formed messages pass', () => {
  const str = fc.string({ unit: 'binary', maxLength: 40 });
  const bin = fc.uint8Array({ maxLength: 300 });
  const u32 = fc.nat({ max: 2 ** 32 - 1 });
  const signed = fc.record({ body: bin, signature: bin });
  const cases: [string, fc.Arbitrary<Uint8Array>][] = [
    ['fedbridge.v1.EnrollRequest', fc.record({ name: str, publicKey: bin, certSha256: str }).map((m) => EnrollRequest.encode(m).finish())],
    ['fedbridge.v1.SignedRequest', signed.map((m) => SignedRequest.encode(m).finish())],
    ['fedbridge.v1.UploadChunk', fc.record({ open: fc.option(signed, { nil: undefined }), index: u32, data: bin }).map((m) => UploadChunk.encode(m).finish())],
    ['fedbridge.v1.AbortRunRequest', fc.record({ runId: str, reason: str }).map((m) => AbortRunRequest.encode(m).finish())],
    [
      'fedbridge.v1.StartRunChunk',
      fc
        .record({
          start: fc.option(fc.record({ policyYaml: str, signatures: fc.array(fc.record({ party: str, signature: bin }), { maxLength: 4 }), initialModelBytes: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String), initialModelHash: bin }), { nil: undefined }),
          index: u32,
          data: bin,
        })
        .map((m) => StartRunChunk.encode(StartRunChunk.fromPartial(m)).finish()),
    ],
  ];
  test.each(cases)('%s made by the generated encoder', (type, arb) => {
    fc.assert(
      fc.property(arb, (b) => {
        expect(wireViolation(b, type, schema)).toBeNull();
      }),
      { numRuns: 300 },
    );
  });

  test('every message type of the package is covered by the schema, every request type is one of them', () => {
    const services = ['fedbridge.v1.ParticipantService', 'fedbridge.v1.OperatorService'];
    for (const s of services) {
      for (const m of Object.values(def[s] as unknown as Record<string, { requestType: { type: { name: string } } }>)) {
        expect(schema.has(`fedbridge.v1.${m.requestType.type.name}`)).toBe(true);
      }
    }
  });
});

test('any bytes as any request type: a reason or null, never an exception; what passes, protobufjs decodes', () => {
  const requestTypes = new Map<string, (b: Buffer) => unknown>();
  for (const svc of ['ParticipantService', 'OperatorService']) {
    for (const m of Object.values(def[`fedbridge.v1.${svc}`] as unknown as Record<string, Method & { requestType: { type: { name: string } } }>)) {
      requestTypes.set(`fedbridge.v1.${m.requestType.type.name}`, m.requestDeserialize);
    }
  }
  // two thirds of the inputs are well-formed messages with one byte changed (strings, bytes, varints
  // of every width), so both outcomes are common
  const damage = (b: Uint8Array, at: number, v: number) => {
    if (b.length > 0) b[at % b.length] = v;
    return b;
  };
  const anyBytes = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    fc
      .tuple(fc.record({ name: fc.string(), publicKey: fc.uint8Array({ maxLength: 40 }), certSha256: fc.string() }), fc.nat(), fc.nat({ max: 255 }))
      .map(([m, at, v]) => damage(EnrollRequest.encode(m).finish(), at, v)),
    fc
      .tuple(fc.record({ index: fc.nat({ max: 2 ** 32 - 1 }), data: fc.uint8Array({ maxLength: 20 }) }), fc.nat(), fc.nat({ max: 255 }))
      .map(([m, at, v]) => damage(UploadChunk.encode({ open: undefined, ...m }).finish(), at, v)),
  );
  let passed = 0;
  fc.assert(
    fc.property(fc.constantFrom(...requestTypes.keys()), anyBytes, (type, b) => {
      const r = wireViolation(b, type, schema);
      expect(r === null || typeof r === 'string').toBe(true);
      if (r === null) {
        passed++;
        expect(() => requestTypes.get(type)!(Buffer.from(b))).not.toThrow();
      }
    }),
    { numRuns: 3000 },
  );
  expect(passed).toBeGreaterThan(100);
});
