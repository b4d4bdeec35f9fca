/**
 * The protobuf codec (shared/secagg/wire.ts over proto/gen secagg.ts): whole rounds through it give
 * the exact sum; decoding hostile bytes always fails with INVALID_ARGUMENT, never anything else.
 */
import fc from 'fast-check';
import * as pb from '../../../proto/gen/grpc/fedbridge/v1/secagg';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { SecAggError } from '../../../shared/secagg/errors';
import type { MaskedInput } from '../../../shared/secagg/messages';
import { decodeClientMessage, decodeServerMessage, encodeClientMessage, encodeServerMessage, maskedInputWireBytes, VECTOR_CHUNK_BYTES } from '../../../shared/secagg/wire';
import { makeFederation, modSum, randomInput, runRound, seededRng } from './harness';

beforeAll(() => sodiumReady());

const wire = {
  toClient: (m: Parameters<typeof encodeServerMessage>[0]) => decodeServerMessage(encodeServerMessage(m)),
  toServer: (m: Parameters<typeof encodeClientMessage>[0]) => decodeClientMessage(encodeClientMessage(m)),
};

test('a round with dropouts through the protobuf codec gives the exact sum (vector in several chunks)', () => {
  const fed = makeFederation(6, 'wire');
  const m = VECTOR_CHUNK_BYTES / 4 + 1000; // two chunks
  const bits = 30;
  const rng = seededRng('wire-in');
  const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, bits)]));
  const drops = new Map([['party-005', 3]]);
  const r = runRound({ fed, params: { threshold: 4, degree: 0, bits }, m, inputs, drops, transport: wire });
  expect(r.result.kind).toBe('done');
  if (r.result.kind === 'done') {
    const want = modSum(r.result.survivors.map((u) => inputs.get(u)!), m, bits);
    expect(Buffer.from(r.result.sum.buffer).equals(Buffer.from(want.buffer))).toBe(true);
  }
  const y = r.sent.find((x) => x.type === 'masked-input') as MaskedInput;
  const env = pb.SecAggClientMessage.decode(encodeClientMessage(y));
  expect(env.maskedInput!.vectorChunks.map((c) => c.length)).toEqual([VECTOR_CHUNK_BYTES, 4000]);
});

/** The message of the SecAggError INVALID_ARGUMENT that `fn` throws (anything else fails the test). */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SecAggError);
    expect((e as SecAggError).code).toBe('INVALID_ARGUMENT');
    return (e as Error).message;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

const invalid = (fn: () => unknown): void => void refusal(fn);

test('maskedInputWireBytes is the length encodeClientMessage gives (the size the coordinator requires of an upload)', () => {
  const words = [0, 1, 127, VECTOR_CHUNK_BYTES / 4 - 1, VECTOR_CHUNK_BYTES / 4, VECTOR_CHUNK_BYTES / 4 + 1, 2 * (VECTOR_CHUNK_BYTES / 4) + 31, 10_098];
  for (const length of words) {
    for (const [federationId, sender, round, bits] of [['fb-test', 'platform', 1, 32], ['a-much-longer-federation-name', 'x', 2 ** 40, 8]] as const) {
      const m: MaskedInput = { type: 'masked-input', federationId, round, sender, bits, vector: new Uint32Array(length).fill(0xffffffff >>> (32 - bits)), signature: new Uint8Array(64).fill(7) };
      expect(maskedInputWireBytes({ federationId, round, sender, bits, length })).toBe(encodeClientMessage(m).length);
    }
  }
});

test('hostile envelopes are refused with INVALID_ARGUMENT', () => {
  invalid(() => decodeClientMessage(new Uint8Array(0))); // no message
  invalid(() => decodeServerMessage(new Uint8Array(0)));
  invalid(() => decodeClientMessage(Uint8Array.of(0x0a, 0xff))); // truncated
  invalid(() => decodeClientMessage('abc' as unknown as Uint8Array));
  const sig = new Uint8Array(64);
  const ad = { federationId: 'f', round: '1', sender: 'a', cPk: new Uint8Array(32), sPk: new Uint8Array(32), selfMaskCommitment: new Uint8Array(32), signature: sig };
  const enc = (e: pb.SecAggClientMessage) => pb.SecAggClientMessage.encode(e).finish();
  expect(decodeClientMessage(enc({ advertiseKeys: ad })).type).toBe('advertise-keys');
  invalid(() => decodeClientMessage(enc({ advertiseKeys: { ...ad, round: '9007199254740993' } })));
  invalid(() => decodeClientMessage(enc({ advertiseKeys: { ...ad, cPk: new Uint8Array(31) } })));
  invalid(() => decodeClientMessage(enc({ advertiseKeys: { ...ad, sender: 'has space' } })));
  const mi = { federationId: 'f', round: '1', sender: 'a', bits: 32, length: '3', vectorChunks: [new Uint8Array(8)], signature: sig };
  invalid(() => decodeClientMessage(enc({ maskedInput: mi }))); // 8 bytes for 3 words
  expect((decodeClientMessage(enc({ maskedInput: { ...mi, vectorChunks: [new Uint8Array(8), new Uint8Array(4)] } })) as MaskedInput).vector.length).toBe(3);
  invalid(() => decodeClientMessage(enc({ maskedInput: { ...mi, bits: 40, vectorChunks: [new Uint8Array(12)] } })));
  // two envelopes concatenated = one envelope with two members set: refused, not guessed
  const two = new Uint8Array([...enc({ advertiseKeys: ad }), ...enc({ maskedInput: { ...mi, vectorChunks: [new Uint8Array(12)] } })]);
  invalid(() => decodeClientMessage(two));
});

test('damaged bytes that the ts-proto decoder reads as the honest message are refused, the damage named (strict wire check)', () => {
  const sig = new Uint8Array(64).fill(9);
  const ad = { federationId: 'f', round: '1', sender: 'a', cPk: new Uint8Array(32), sPk: new Uint8Array(32), selfMaskCommitment: new Uint8Array(32), signature: sig };
  const honest = pb.SecAggClientMessage.encode({ advertiseKeys: ad }).finish();
  // the envelope's advertise_keys declares one byte less: its last field (the 64-byte signature)
  // runs one byte past the sub-message; @bufbuild's BinaryReader reads it whole and resumes the
  // envelope after it, which is the end: the honest message
  expect(honest[0]).toBe(0x0a);
  expect(honest[1] & 0x7f).toBeGreaterThan(0); // the length's low 7 bits, in its first byte: decremented in place
  const short = new Uint8Array(honest);
  short[1] -= 1;
  expect(pb.SecAggClientMessage.decode(short)).toEqual(pb.SecAggClientMessage.decode(honest));
  expect(decodeClientMessage(honest).type).toBe('advertise-keys');
  expect(refusal(() => decodeClientMessage(short))).toMatch(/^SecAggClientMessage is not valid protobuf: fedbridge\.v1\.SecAggClientMessage\.advertiseKeys\.signature: 64 bytes declared, 63 left in its message/);

  // a singular field twice inside the sub-message (sender "a", then sender "b"): the decoder keeps "b"
  const twice = pb.SecAggClientMessage.encode({ advertiseKeys: { ...ad, sender: 'b' } }).finish();
  const inner = pb.AdvertiseKeys.encode({ ...ad, sender: 'b' }).finish();
  const withFirst = new Uint8Array([0x1a, 1, 0x61, ...inner]); // sender (field 3) = "a" before the rest
  const lengthVarint = withFirst.length < 128 ? [withFirst.length] : [(withFirst.length & 0x7f) | 0x80, withFirst.length >> 7];
  const envTwice = new Uint8Array([0x0a, ...lengthVarint, ...withFirst]);
  expect(pb.SecAggClientMessage.decode(envTwice)).toEqual(pb.SecAggClientMessage.decode(twice));
  expect(refusal(() => decodeClientMessage(envTwice))).toMatch(/advertiseKeys\.sender \(field 3\) occurs twice at byte \d+; it is not repeated/);

  // and the other direction: a server message whose member is damaged the same way
  const req = { federationId: 'f', round: '1', survivors: ['a', 'b'], signature: sig };
  const sHonest = pb.SecAggServerMessage.encode({ consistencyRequest: req }).finish();
  const sShort = new Uint8Array(sHonest);
  expect(sShort[0]).toBe(0x1a);
  expect(sShort[1] & 0x7f).toBeGreaterThan(0);
  sShort[1] -= 1;
  expect(pb.SecAggServerMessage.decode(sShort)).toEqual(pb.SecAggServerMessage.decode(sHonest));
  expect(decodeServerMessage(sHonest).type).toBe('consistency-request');
  expect(refusal(() => decodeServerMessage(sShort))).toMatch(/consistencyRequest\.signature: 64 bytes declared, 63 left in its message/);
});

test('property: random bytes never decode into anything but a valid message or INVALID_ARGUMENT', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
      for (const dec of [decodeClientMessage, decodeServerMessage]) {
        try {
          dec(b);
        } catch (e) {
          if (!(e instanceof SecAggError) || e.code !== 'INVALID_ARGUMENT') throw e;
        }
      }
    }),
    { numRuns: 2000 },
  );
});
