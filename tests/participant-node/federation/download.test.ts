/**
 * FederationClient.download (participant-node/federation/client.ts) against a coordinator that
 * serves what the test chooses, over real gRPC with mutual TLS on loopback: the node takes only the
 * model the policy's size and the announced (and, after a round, the signed) hash allow, refuses
 * everything else with the reason, and cancels a stream that sends more than was announced instead
 * of buffering it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { makeCerts } from '../../../coordinator/certs/certs';
import { FederationClient, type JoinOptions } from '../../../participant-node/federation/client';
import { ed25519Keygen } from '../../../shared/crypto/sign';
import { sodium, sodiumReady } from '../../../shared/crypto/sodium';
import type { Policy } from '../../../shared/policy/schema';
import { ModelChunk, type ModelInfo } from '../../../proto/gen/grpc/fedbridge/v1/federation';
import { rawParticipantService } from '../../raw-service';

const BYTES = 4096; // the policy's model: 1024 float32 parameters

describe('FederationClient.download', () => {
  let dir: string;
  let server: grpc.Server;
  let client: FederationClient;
  /** what the coordinator streams for the next download */
  let serve: Buffer[] = [];
  /** per download call: the messages the coordinator got out, and whether the node cancelled the call */
  const calls: { written: number; cancelled: boolean }[] = [];
  const model = new Uint8Array(BYTES).map((_, i) => (i * 31) & 0xff);
  let hash: Uint8Array;

  const info = (over: Partial<ModelInfo> = {}): Buffer =>
    Buffer.from(ModelChunk.encode({ info: { version: 3, modelHash: hash, totalBytes: String(BYTES), chunkCount: 2, parentVersion: 2, ...over }, index: 0, data: new Uint8Array(0) }).finish());
  const chunk = (index: number, data: Uint8Array): Buffer => Buffer.from(ModelChunk.encode({ info: undefined, index, data }).finish());
  const honest = () => [info(), chunk(0, model.subarray(0, BYTES / 2)), chunk(1, model.subarray(BYTES / 2))];

  beforeAll(async () => {
    await sodiumReady();
    hash = sodium().crypto_generichash(32, model, null);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-download-'));
    const certs = await makeCerts({ out: path.join(dir, 'certs'), parties: ['insurer'] });
    server = new grpc.Server();
    server.addService(rawParticipantService, {
      downloadModel: async (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const rec = { written: 0, cancelled: false };
        calls.push(rec);
        call.on('cancelled', () => (rec.cancelled = true));
        for (const m of serve) {
          if (rec.cancelled) return;
          call.write(m);
          rec.written++;
          await new Promise((r) => setTimeout(r, 1)); // one message a millisecond or so: a cancellation is seen in time
        }
        call.end();
      },
    } as unknown as grpc.UntypedServiceImplementation);
    const creds = grpc.ServerCredentials.createSsl(fs.readFileSync(certs.ca), [{ cert_chain: fs.readFileSync(certs.server.cert), private_key: fs.readFileSync(certs.server.key) }], true);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? reject(e) : resolve(p))));
    const opts = { coordinator: `127.0.0.1:${port}`, caFile: certs.ca, certFile: certs.clients.insurer.cert, keyFile: certs.clients.insurer.key } as JoinOptions;
    const policy = { federationId: 'fb-test', coordinator: { publicKey: Buffer.from(ed25519Keygen().publicKey).toString('base64') }, timeouts: { phaseSeconds: 30, roundSeconds: 600 } } as Policy;
    client = new FederationClient(opts, policy, { ...ed25519Keygen(), name: 'insurer' });
  });
  afterAll(() => {
    client.close();
    server.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const refusal = async (messages: Buffer[], version = 3, signed?: Uint8Array) => {
    serve = messages;
    const e = await client.download(version, { bytes: BYTES, hash: signed }).then(
      () => null,
      (err: Error) => err,
    );
    expect(e).toBeInstanceOf(Error);
    return e!.message;
  };

  test('the honest model: the announced size and hash, and the signed hash when given', async () => {
    serve = honest();
    const got = await client.download(3, { bytes: BYTES, hash });
    expect(Buffer.from(got.data).equals(Buffer.from(model))).toBe(true);
    expect(got.info.version).toBe(3);
    serve = honest();
    expect((await client.download(0, { bytes: BYTES })).data).toHaveLength(BYTES); // 0 = the newest, any version
  });

  test('a model other than the one the coordinator signed for the round is not adopted, even with a matching announced hash', async () => {
    const other = new Uint8Array(model);
    other[17] ^= 1;
    const otherHash = sodium().crypto_generichash(32, other, null);
    expect(await refusal([info({ modelHash: otherHash }), chunk(0, other)], 3, hash)).toBe(
      `model v3: BLAKE2b-256 ${Buffer.from(otherHash).toString('hex')} is not the hash the coordinator signed for it (${Buffer.from(hash).toString('hex')}); not adopted`,
    );
  });

  test('wrong size, wrong version, a second or a late ModelInfo, bytes that do not match the announced hash', async () => {
    expect(await refusal([info({ totalBytes: String(BYTES * 2) }), chunk(0, model)])).toBe(`model v3: announced ${BYTES * 2} bytes, the policy's model has ${BYTES}`);
    expect(await refusal(honest(), 4)).toBe('model v4: the coordinator served version 3');
    expect(await refusal([info(), info(), ...honest().slice(1)])).toBe('model v3: the coordinator sent a second ModelInfo');
    expect(await refusal([chunk(0, model), info()])).toBe('model v3: model data arrived before the ModelInfo');
    expect(await refusal([])).toBe('model v3: the download ended without a ModelInfo');
    const damaged = new Uint8Array(model);
    damaged[0] ^= 0x80;
    expect(await refusal([info(), chunk(0, damaged)])).toBe('model v3: BLAKE2b-256 does not match the announced hash');
    expect(await refusal([info(), chunk(0, model.subarray(0, 100))])).toBe(`model v3: received 100 bytes, announced ${BYTES}`);
  });

  test('a stream that sends more than it announced is cancelled at once, not buffered', async () => {
    const flood = Array.from({ length: 2000 }, (_, i) => chunk(i, new Uint8Array(1024)));
    expect(await refusal([info(), ...flood])).toBe(`model v3: more than the announced ${BYTES} bytes arrived`);
    await new Promise((r) => setTimeout(r, 100)); // the cancellation reaches the server
    const last = calls[calls.length - 1];
    expect(last.cancelled).toBe(true);
    expect(last.written).toBeLessThan(200); // the coordinator stopped long before its 2,001 messages
  });
});
