/**
 * strictResponses / strictClient (shared/proto/wire-check.ts), over real gRPC on loopback: a client built on it
 * (as the node's FederationClient and the operator client are) refuses a response the decoders
 * would read differently, with INTERNAL and the reason, and takes well-formed responses exactly as
 * the generated client does. The server here answers with raw bytes of the test's choosing, as a
 * faulty or hostile coordinator could.
 */
import * as grpc from '@grpc/grpc-js';
import { strictClient, strictResponses } from '../../../shared/proto/wire-check';
import { ModelChunk, PhaseAck, ParticipantServiceClient, ParticipantServiceService, SignedRequest } from '../../../proto/gen/grpc/fedbridge/v1/federation';
import { rawParticipantService } from '../../raw-service';

const bytes = (...xs: (number | string)[]) => Buffer.concat(xs.map((x) => (typeof x === 'number' ? Buffer.from([x]) : Buffer.from(x, 'utf8'))));

describe('a client built on strictResponses', () => {
  let server: grpc.Server;
  let address: string;
  /** what the server answers next: unary replies and the messages of a DownloadModel stream */
  let reply: Buffer = Buffer.alloc(0);
  let stream: Buffer[] = [];
  const Strict = strictClient<typeof ParticipantServiceClient>(ParticipantServiceService, 'fedbridge.v1.ParticipantService');
  let strict: ParticipantServiceClient;
  let plain: ParticipantServiceClient;

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(rawParticipantService, {
      advertiseKeys: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, reply),
      downloadModel: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        for (const m of stream) call.write(m);
        call.end();
      },
    } as unknown as grpc.UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    address = `127.0.0.1:${port}`;
    strict = new Strict(address, grpc.credentials.createInsecure());
    plain = new ParticipantServiceClient(address, grpc.credentials.createInsecure());
  });
  afterAll(() => {
    strict.close();
    plain.close();
    server.forceShutdown();
  });

  const unaryCall = (c: ParticipantServiceClient) =>
    new Promise<PhaseAck | grpc.ServiceError>((resolve) => c.advertiseKeys(SignedRequest.fromPartial({}), (e, r) => resolve(e ?? r)));

  test('a well-formed reply decodes as with the generated client', async () => {
    const ack: PhaseAck = { runId: 'run-1', round: 2, phase: 3, accepted: 4 };
    reply = Buffer.from(PhaseAck.encode(ack).finish());
    expect(await unaryCall(strict)).toEqual(ack);
    expect(await unaryCall(plain)).toEqual(ack);
  });

  test('a reply the decoders disagree on: the generated client reads it, the strict one ends the call with INTERNAL and the reason', async () => {
    // run_id (field 1, a string) as the varint 2, then round (field 2) = 7: ts-proto skips the
    // mistyped field and reads round 7 (protobufjs would read a two-byte run id and no round)
    reply = bytes(0x08, 2, 0x10, 7);
    expect(await unaryCall(plain)).toMatchObject({ runId: '', round: 7 });
    const e = (await unaryCall(strict)) as grpc.ServiceError;
    expect(e.code).toBe(grpc.status.INTERNAL);
    expect(e.details).toBe(
      'Response message parsing error: malformed response: the bytes are not a valid fedbridge.v1.PhaseAck protobuf message (fedbridge.v1.PhaseAck.runId (field 1) arrived with wire type 0, its type TYPE_STRING needs 2)',
    );
    // a singular field twice (round 1, then round 2)
    reply = bytes(0x10, 1, 0x10, 2);
    expect(await unaryCall(plain)).toMatchObject({ round: 2 });
    expect(((await unaryCall(strict)) as grpc.ServiceError).details).toMatch(/PhaseAck\.round \(field 2\) occurs twice at byte 2; it is not repeated\)$/);
  });

  test('a server stream: the messages before a malformed one arrive, then the call ends with INTERNAL naming the damage', async () => {
    const first = Buffer.from(ModelChunk.encode({ info: { version: 1, modelHash: new Uint8Array(32), totalBytes: '3', chunkCount: 1, parentVersion: 0 }, index: 0, data: new Uint8Array(0) }).finish());
    // the second chunk's info is 3 bytes long, and the model_hash inside it declares 32
    const second = bytes(0x0a, 3, 0x12, 32, 0x00, 0x10, 0x00);
    stream = [first, second];
    const got: ModelChunk[] = [];
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = strict.downloadModel(SignedRequest.fromPartial({}));
      call.on('data', (m: ModelChunk) => got.push(m));
      call.on('error', (e: grpc.ServiceError) => resolve(e));
      call.on('end', () => resolve(null));
    });
    expect(got).toEqual([ModelChunk.decode(first)]);
    expect(err?.code).toBe(grpc.status.INTERNAL);
    expect(err?.details).toMatch(/malformed response: the bytes are not a valid fedbridge\.v1\.ModelChunk protobuf message \(fedbridge\.v1\.ModelChunk\.info\.modelHash: 32 bytes declared, 1 left in its message\)$/);
  });

  test('a definition with a method that is not in federation.proto is refused when the client is built', () => {
    const other = { ...ParticipantServiceService, extra: { ...ParticipantServiceService.advertiseKeys, path: '/fedbridge.v1.ParticipantService/Extra' as const } };
    expect(() => strictResponses(other)).toThrow(/Extra is not a method of .*federation\.proto/);
    expect(strictClient<typeof ParticipantServiceClient>(ParticipantServiceService, 'fedbridge.v1.ParticipantService')).toBe(Strict); // built once per service
  });
});
