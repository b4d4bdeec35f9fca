/**
 * One message, one meaning (shared/proto/wire-check.ts): whatever bytes pass the strict check, the
 * two decoders in this system read alike — the ts-proto decoders (proto/gen/grpc; the node, the
 * coordinator's signed bodies, the SecAgg payloads, the strict clients) and protobufjs (under
 * grpc-js and proto-loader, given a Buffer as grpc-js gives it). Without the check they disagree
 * (a field with the wrong wire type, a string cut short, a singular field twice: wire-check.test.ts,
 * events.test.ts); the property is that no input the check lets through does.
 *
 * Inputs are drawn from the proto itself: messages of every type the parties and the coordinator
 * exchange, built field by field from the schema (fields in any order, repeated fields 0-3 times,
 * packed or not, int32 negatives in their 10-byte form, 64-bit values over the whole range, any
 * Unicode string, unknown fields of every wire type, sub-messages to depth 3), then either left
 * whole or damaged (a byte replaced, inserted or removed, or the bytes cut short), plus random bytes.
 */
import fc from 'fast-check';
import * as protobuf from 'protobufjs';
import * as fed from '../../../proto/gen/grpc/fedbridge/v1/federation';
import * as sa from '../../../proto/gen/grpc/fedbridge/v1/secagg';
import { FEDERATION_PROTO, SECAGG_PROTO } from '../../../shared/proto/files';
import { federationWireSchema, secaggWireSchema, wireViolation, type WireSchema } from '../../../shared/proto/wire-check';

type Decoder = { decode(b: Uint8Array): unknown };

/** The message types checked, with their ts-proto decoders: everything that crosses the wire between party and coordinator. */
const TYPES: Array<[string, Decoder, 'federation' | 'secagg']> = [
  ['PhaseEvent', fed.PhaseEvent, 'federation'],
  ['SignedEvent', fed.SignedEvent, 'federation'],
  ['SignedRequest', fed.SignedRequest, 'federation'],
  ['SubscribeBody', fed.SubscribeBody, 'federation'],
  ['PhaseMessageBody', fed.PhaseMessageBody, 'federation'],
  ['UploadOpenBody', fed.UploadOpenBody, 'federation'],
  ['UploadChunk', fed.UploadChunk, 'federation'],
  ['DownloadModelBody', fed.DownloadModelBody, 'federation'],
  ['ModelChunk', fed.ModelChunk, 'federation'],
  ['ReceiptBody', fed.ReceiptBody, 'federation'],
  ['PhaseAck', fed.PhaseAck, 'federation'],
  ['UploadAck', fed.UploadAck, 'federation'],
  ['ReceiptAck', fed.ReceiptAck, 'federation'],
  ['RunStatus', fed.RunStatus, 'federation'],
  ['StartRunChunk', fed.StartRunChunk, 'federation'],
  ['SecAggClientMessage', sa.SecAggClientMessage, 'secagg'],
  ['SecAggServerMessage', sa.SecAggServerMessage, 'secagg'],
];

const roots = { federation: protobuf.loadSync(FEDERATION_PROTO), secagg: protobuf.loadSync(SECAGG_PROTO) };
const schemas: Record<'federation' | 'secagg', WireSchema> = { federation: federationWireSchema(), secagg: secaggWireSchema() };

// ---- encoding by hand (so that the inputs do not come from either decoder's own encoder)
function varint(v: bigint): number[] {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  while (x >= 128n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}
const tag = (n: number, wt: number) => varint(BigInt(n * 8 + wt));
const lenDelimited = (n: number, body: number[]) => [...tag(n, 2), ...varint(BigInt(body.length)), ...body];

/** A value of a scalar field type, encoded without its tag, with its wire type. */
function scalar(type: string): fc.Arbitrary<{ wt: number; b: number[] }> {
  switch (type) {
    case 'TYPE_UINT32':
      return fc.nat({ max: 2 ** 32 - 1 }).map((v) => ({ wt: 0, b: varint(BigInt(v)) }));
    case 'TYPE_INT32':
    case 'TYPE_ENUM':
      return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v) => ({ wt: 0, b: varint(BigInt(v)) }));
    case 'TYPE_UINT64':
    case 'TYPE_INT64':
      return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }).map((v) => ({ wt: 0, b: varint(v) }));
    case 'TYPE_BOOL':
      return fc.constantFrom(0n, 1n).map((v) => ({ wt: 0, b: varint(v) }));
    case 'TYPE_STRING':
      return fc.string({ unit: 'binary', maxLength: 12 }).map((s) => {
        const u = [...Buffer.from(s, 'utf8')];
        return { wt: 2, b: [...varint(BigInt(u.length)), ...u] };
      });
    case 'TYPE_BYTES':
      return fc.uint8Array({ maxLength: 24 }).map((u) => ({ wt: 2, b: [...varint(BigInt(u.length)), ...u] }));
    default:
      throw new Error(`no generator for ${type}: extend the test`);
  }
}

const unknownField = fc
  .record({ n: fc.integer({ min: 100, max: 2000 }), wt: fc.constantFrom(0, 1, 2, 5), v: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), bytes: fc.uint8Array({ maxLength: 8 }) })
  .map(({ n, wt, v, bytes }) => {
    if (wt === 0) return [...tag(n, 0), ...varint(v)];
    if (wt === 1) return [...tag(n, 1), ...new Array(8).fill(0).map((_, k) => Number((v >> BigInt(8 * k)) & 0xffn))];
    if (wt === 5) return [...tag(n, 5), ...new Array(4).fill(0).map((_, k) => Number((v >> BigInt(8 * k)) & 0xffn))];
    return lenDelimited(n, [...bytes]);
  });

/** An encoded message of `typeName`, drawn from the schema: each field 0/1 times (repeated: 0-3), at most one member per oneof, in any order. */
function message(schema: WireSchema, typeName: string, depth: number): fc.Arbitrary<number[]> {
  const fields = [...schema.get(typeName)!.entries()];
  const parts = fields.map(([n, f]) => {
    let one: fc.Arbitrary<number[]>;
    if (f.type === 'TYPE_MESSAGE') {
      one = depth >= 3 ? fc.constant(lenDelimited(n, [])) : message(schema, f.typeName, depth + 1).map((body) => lenDelimited(n, body));
    } else {
      one = scalar(f.type).map(({ wt, b }) => [...tag(n, wt), ...b]);
    }
    if (!f.repeated) return fc.option(one, { nil: undefined }).map((x) => (x ? [x] : []));
    if (f.type !== 'TYPE_STRING' && f.type !== 'TYPE_BYTES' && f.type !== 'TYPE_MESSAGE') {
      // a repeated number: unpacked occurrences or one packed run
      return fc.oneof(
        fc.array(one, { maxLength: 3 }),
        fc.array(scalar(f.type), { minLength: 1, maxLength: 3 }).map((vs) => [lenDelimited(n, vs.flatMap((x) => x.b))]),
      );
    }
    return fc.array(one, { maxLength: 3 });
  });
  const oneofs = new Map<number, number[]>(); // oneof index -> its members' positions in `fields`
  fields.forEach(([, f], k) => f.oneof >= 0 && oneofs.set(f.oneof, [...(oneofs.get(f.oneof) ?? []), k]));
  const kept = fc.tuple(...[...oneofs.values()].map((ks) => fc.constantFrom(...ks)));
  return fc
    .tuple(fc.tuple(...parts), kept, fc.array(unknownField, { maxLength: 2 }))
    .map(([drawn, keep, unknown]) => [drawn.filter((_, k) => fields[k][1].oneof < 0 || keep.includes(k)), unknown] as const)
    .chain(([chosen, unknown]) => fc.shuffledSubarray([...chosen.flat(), ...unknown], { minLength: chosen.flat().length + unknown.length }))
    .map((pieces) => pieces.flat());
}

/** A plain, comparable view of a decoded message: bytes as base64, absent sub-messages left out. */
function plain(v: unknown): unknown {
  if (v === null || v === undefined) return undefined;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const p = plain(x);
      if (p !== undefined) out[k] = p;
    }
    return out;
  }
  return v;
}

function decodeBoth(type: string, dec: Decoder, root: protobuf.Root, b: Uint8Array): { tsProto: unknown; protobufjs: unknown } {
  const T = root.lookupType(`fedbridge.v1.${type}`);
  const pj = T.toObject(T.decode(Buffer.from(b)), { longs: String, enums: Number, bytes: String, defaults: true, arrays: true });
  return { tsProto: plain(dec.decode(b)), protobufjs: plain(pj) };
}

test('whatever passes the strict check, ts-proto and protobufjs decode to the same message', () => {
  let passedWhole = 0;
  let passedDamaged = 0;
  let refusedDamaged = 0;
  const damage = fc.oneof(
    { weight: 4, arbitrary: fc.constant((b: number[]) => b) },
    fc.tuple(fc.nat(), fc.nat({ max: 255 })).map(([at, v]) => (b: number[]) => (b.length ? b.map((x, i) => (i === at % b.length ? v : x)) : b)),
    fc.tuple(fc.nat(), fc.nat({ max: 255 })).map(([at, v]) => (b: number[]) => [...b.slice(0, at % (b.length + 1)), v, ...b.slice(at % (b.length + 1))]),
    fc.nat().map((at) => (b: number[]) => (b.length ? b.filter((_, i) => i !== at % b.length) : b)),
    fc.nat().map((at) => (b: number[]) => b.slice(0, at % (b.length + 1))),
  ) as fc.Arbitrary<(b: number[]) => number[]>;
  const input = fc.constantFrom(...TYPES).chain(([type, dec, pkg]) =>
    fc.oneof(
      { weight: 4, arbitrary: fc.tuple(message(schemas[pkg], `fedbridge.v1.${type}`, 0), damage).map(([m, d]) => {
        const bytes = d(m);
        return { type, dec, pkg, bytes, whole: bytes.length === m.length && bytes.every((x, i) => x === m[i]) };
      }) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 60 }).map((u) => ({ type, dec, pkg, bytes: [...u], whole: false })) },
    ),
  );
  fc.assert(
    fc.property(input, ({ type, dec, pkg, bytes, whole }) => {
      const b = new Uint8Array(bytes);
      const violation = wireViolation(b, `fedbridge.v1.${type}`, schemas[pkg]);
      if (whole) expect({ type, violation }).toEqual({ type, violation: null }); // the generator draws only well-formed messages
      if (violation !== null) {
        refusedDamaged++;
        return;
      }
      if (whole) passedWhole++;
      else passedDamaged++;
      const { tsProto, protobufjs } = decodeBoth(type, dec, roots[pkg], b);
      expect({ type, decoded: tsProto }).toEqual({ type, decoded: protobufjs });
    }),
    { numRuns: 4000 },
  );
  // both outcomes are common, and damaged inputs that still pass (a changed value, an unknown field) are checked too
  expect(passedWhole).toBeGreaterThan(1500);
  expect(passedDamaged).toBeGreaterThan(100);
  expect(refusedDamaged).toBeGreaterThan(300);
});
