/**
 * The protobuf codec (shared/secagg/wire.ts over proto/gen secagg.ts): whole rounds through it give
 * the exact sum; decoding hostile bytes always fails with INVALID_ARGUMENT, never anything else.
 */
import fc from 'fast-check';
import * as pb from '../../../proto/gen/grpc/fedbridge/v1/secagg';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { SecAggError } from '../../../shared/secagg/errors';
import type { MaskedInput } from '../../../shared/secagg/messages';
import { decodeClientMessage, decodeServerMessage, encodeClientMessage, encodeServerMessage, VECTOR_CHUNK_BYTES } from '../../../shared/secagg/wire';
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

function invalid(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SecAggError);
    expect((e as SecAggError).code).toBe('INVALID_ARGUMENT');
    return;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

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
