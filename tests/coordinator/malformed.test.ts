/**
 * grpc/malformed.ts, the deserializer half (the interceptor half runs over real gRPC in
 * status-codes.test.ts): every method of both services is guarded, decodable bytes decode exactly as
 * before, undecodable bytes come back as a MalformedRequest naming the type instead of throwing.
 */
import * as protoLoader from '@grpc/proto-loader';
import { FEDERATION_PROTO, LOADER_OPTIONS, PROTO_ROOT } from '../../coordinator/grpc/options';
import { guardRequestDeserializers, MalformedRequest } from '../../coordinator/grpc/malformed';
import { EnrollRequest } from '../../proto/gen/grpc/fedbridge/v1/federation';

type Method = { requestDeserialize: (b: Buffer) => unknown };

describe('guardRequestDeserializers', () => {
  const load = () => protoLoader.loadSync(FEDERATION_PROTO, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });

  test('guards every method once; good bytes decode as before; bad bytes give a MalformedRequest', () => {
    const def = load();
    const plain = load();
    const methods = (d: typeof def, svc: string) => d[svc] as unknown as Record<string, Method>;
    const count = Object.keys(methods(def, 'fedbridge.v1.ParticipantService')).length + Object.keys(methods(def, 'fedbridge.v1.OperatorService')).length;
    expect(count).toBeGreaterThanOrEqual(14);
    expect(guardRequestDeserializers(def)).toBe(count);
    expect(guardRequestDeserializers(def)).toBe(0); // already guarded: not wrapped twice

    const good = Buffer.from(EnrollRequest.encode({ name: 'platform', publicKey: new Uint8Array(32).fill(7), certSha256: 'ab' }).finish());
    const enroll = methods(def, 'fedbridge.v1.OperatorService').Enroll;
    expect(enroll.requestDeserialize(good)).toEqual(methods(plain, 'fedbridge.v1.OperatorService').Enroll.requestDeserialize(good));

    const junk = Buffer.from([0xff, 0x01]); // field 31 with wire type 7
    expect(() => methods(plain, 'fedbridge.v1.OperatorService').Enroll.requestDeserialize(junk)).toThrow(/invalid wire type 7/);
    const bad = enroll.requestDeserialize(junk);
    expect(bad).toBeInstanceOf(MalformedRequest);
    expect((bad as MalformedRequest).details).toBe(
      'malformed request: the bytes are not a valid fedbridge.v1.EnrollRequest protobuf message (fedbridge.v1.EnrollRequest field 31: wire type 7 at byte 0 (groups and types 6, 7 do not exist in proto3))',
    );
    const upload = methods(def, 'fedbridge.v1.ParticipantService').UploadMaskedInput.requestDeserialize(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    expect((upload as MalformedRequest).messageType).toBe('fedbridge.v1.UploadChunk');
  });

  test('bytes protobufjs would read as a shorter name (shared/proto/wire-check.ts): a MalformedRequest with the reason, never the shortened message', () => {
    const guarded = load();
    guardRequestDeserializers(guarded);
    const enroll = (guarded['fedbridge.v1.OperatorService'] as unknown as Record<string, Method>).Enroll.requestDeserialize;
    const r = enroll(Buffer.concat([Buffer.from([0x12, 32]), Buffer.from(new Uint8Array(32).fill(7)), Buffer.from([0x0a, 9]), Buffer.from('newparty')]));
    expect(r).toBeInstanceOf(MalformedRequest);
    expect((r as MalformedRequest).details).toBe(
      'malformed request: the bytes are not a valid fedbridge.v1.EnrollRequest protobuf message (fedbridge.v1.EnrollRequest.name: 9 bytes declared, 8 left in its message)',
    );
  });
});
