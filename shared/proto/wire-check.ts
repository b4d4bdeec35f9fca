/**
 * Strict protobuf wire-format check for bytes from the other side, run before they are decoded.
 *
 * protobufjs (under grpc-js and proto-loader) decodes leniently, so some damaged bytes become a
 * different message instead of an error:
 *  - a string or bytes field at the end of the message whose declared length runs past the end is
 *    cut there (a truncated name decodes as a shorter name);
 *  - a known field is read by its declared type whatever wire type it arrived with (a varint where
 *    a string belongs is read as a length prefix);
 *  - strings with invalid UTF-8 decode with replacement characters;
 *  - a varint too wide for its field is cut (a uint32 index of 2^32 + 1 reads as 1), and a uint32
 *    varint of 6 to 9 bytes makes protobufjs skip bytes that belong to the next field.
 * The ts-proto decoders (@bufbuild/protobuf's BinaryReader) used for the signed bodies inside
 * SignedRequest are lenient in one more way: a sub-message's last field may run past the
 * sub-message's declared length (the outer message then resumes after it), so differently damaged
 * bytes can decode to the honest message.
 * The two decoders also disagree with each other: ts-proto skips a known field that arrives with
 * the wrong wire type (and reads what follows), where protobufjs reads it by its declared type.
 * A production system should refuse such bytes rather than act on a message the sender did not
 * send, or let one signed message mean two things to two holders. This module scans the bytes
 * against the message types of the .proto files and returns the first violation, or null. It runs
 * on the coordinator on every request (coordinator/grpc/malformed.ts) and every signed body
 * (coordinator/identity/authenticate.ts); on the node on every coordinator-signed event
 * (participant-node/federation/client.ts); on both sides on every SecAgg payload
 * (shared/secagg/wire.ts); and in the node's and the operator's gRPC clients on every response
 * (strictResponses, below):
 *
 *   scan(range, type):
 *     while pos < end of range:
 *       tag = varint (at most 10 bytes, inside the range); field = tag >> 3 >= 1; wt = tag & 7
 *       wt 0: a varint inside the range, in its field type's range (checkVarintRange)
 *       wt 1: 8 bytes      wt 5: 4 bytes
 *       wt 2: len = varint, pos + len <= end of range (never past its own message; protobufjs
 *             already refuses this inside sub-messages, @bufbuild's BinaryReader does not)
 *       wt 3, 4 (groups), 6, 7: refused (proto3 has no groups)
 *       a field the type declares must arrive with its wire type (2 also for a packed repeated
 *       scalar); a message-typed field is scanned recursively inside its own range; a string
 *       field must be valid UTF-8; a singular (not repeated) field at most once per message
 *       (protobuf lets the last occurrence win, or merges sub-messages, and implementations differ:
 *       protobufjs and ts-proto replace a repeated sub-message, C++ and Go merge it). Unknown
 *       field numbers are skipped (forward compatibility).
 *     the scan ends exactly at the end of the range
 *
 *       at most one member of a oneof per message (two members: protobufjs names the last as the
 *       oneof's value, the ts-proto decoder fills both, so the signed bytes' meaning would depend
 *       on the reader). Which fields belong to which oneof is read from the serialized
 *       FileDescriptorProtos of the package definition: proto-loader's descriptor objects give
 *       every field oneofIndex 0, members or not.
 *
 * It is a check, not a decoder: what passes is then decoded by the same decoders as before, and
 * whatever passes, protobufjs and the ts-proto decoders read alike (property:
 * tests/shared/proto/differential.property.test.ts). Nesting is bounded by MAX_DEPTH (grpc-js
 * already bounds the message size).
 */
import { makeGenericClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';
import { FileDescriptorProto, type IDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { FEDERATION_PROTO, LOADER_OPTIONS, PROTO_PACKAGE, PROTO_ROOT, SECAGG_PROTO } from './files';

/** A field as proto-loader's descriptor output gives it (FieldDescriptorProto). */
interface FieldDescriptor {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}

interface FieldInfo {
  name: string;
  type: string;
  /** full name without the leading dot, for TYPE_MESSAGE */
  typeName: string;
  repeated: boolean;
  /** index of its oneof in the message (< 31), or -1 */
  oneof: number;
  /** the oneof's name, '' when none */
  oneofName: string;
}

/** Message type full name -> its fields by number. */
export type WireSchema = ReadonlyMap<string, ReadonlyMap<number, FieldInfo>>;

const MAX_DEPTH = 32;

const WIRE_TYPE: Record<string, number> = {
  TYPE_DOUBLE: 1,
  TYPE_FIXED64: 1,
  TYPE_SFIXED64: 1,
  TYPE_FLOAT: 5,
  TYPE_FIXED32: 5,
  TYPE_SFIXED32: 5,
  TYPE_INT32: 0,
  TYPE_INT64: 0,
  TYPE_UINT32: 0,
  TYPE_UINT64: 0,
  TYPE_SINT32: 0,
  TYPE_SINT64: 0,
  TYPE_BOOL: 0,
  TYPE_ENUM: 0,
  TYPE_STRING: 2,
  TYPE_BYTES: 2,
  TYPE_MESSAGE: 2,
};

/** The message types of a proto-loader package definition (loaded with its default descriptor output). */
export function wireSchemaOf(def: PackageDefinition): WireSchema {
  const messages = new Map<string, FieldDescriptor[]>();
  for (const [name, entry] of Object.entries(def)) {
    const t = entry as { format?: unknown; type?: { field?: FieldDescriptor[] } };
    if (t.format === 'Protocol Buffer 3 DescriptorProto' && Array.isArray(t.type?.field)) messages.set(name, t.type.field);
  }
  const oneofs = oneofMembers(def);
  const schema = new Map<string, Map<number, FieldInfo>>();
  for (const [name, descriptors] of messages) {
    const fields = new Map<number, FieldInfo>();
    const members = oneofs.get(name);
    for (const f of descriptors) {
      if (!(f.type in WIRE_TYPE)) throw new Error(`${name}.${f.name}: field type ${f.type} is not supported by the wire check`);
      const typeName = f.type === 'TYPE_MESSAGE' ? resolve(f.typeName, name, messages) : '';
      const o = members?.get(f.number);
      if (o && o.index > 30) throw new Error(`${name}.${f.name}: more than 31 oneofs in one message are not supported by the wire check`);
      fields.set(f.number, { name: f.name, type: f.type, typeName, repeated: f.label === 'LABEL_REPEATED', oneof: o?.index ?? -1, oneofName: o?.name ?? '' });
    }
    schema.set(name, fields);
  }
  return schema;
}

/**
 * Message type full name -> field number -> its oneof (index, name), for the oneof members only, from
 * the FileDescriptorProtos the definition carries (serialized, so an unset oneof_index is absent
 * rather than 0). A proto3 `optional` field is the one member of a synthetic oneof: harmless here.
 */
function oneofMembers(def: PackageDefinition): Map<string, Map<number, { index: number; name: string }>> {
  const out = new Map<string, Map<number, { index: number; name: string }>>();
  const seen = new Set<string>();
  const visit = (m: IDescriptorProto, scope: string) => {
    const full = scope ? `${scope}.${m.name}` : String(m.name);
    if (out.has(full)) return;
    const members = new Map<number, { index: number; name: string }>();
    for (const f of m.field ?? []) {
      if (Object.prototype.hasOwnProperty.call(f, 'oneofIndex') && f.oneofIndex != null) members.set(Number(f.number), { index: f.oneofIndex, name: String(m.oneofDecl?.[f.oneofIndex]?.name ?? f.oneofIndex) });
    }
    out.set(full, members);
    for (const n of m.nestedType ?? []) visit(n, full);
  };
  for (const entry of Object.values(def)) {
    for (const buf of (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) {
      const key = buf.toString('base64');
      if (seen.has(key)) continue;
      seen.add(key);
      const file = FileDescriptorProto.decode(buf) as unknown as IFileDescriptorProto;
      for (const m of file.messageType ?? []) visit(m, file.package ?? '');
    }
  }
  return out;
}

/**
 * A field's message type as protobuf resolves it: fully qualified with a leading dot, else relative
 * to the enclosing scopes, innermost first (proto-loader gives "SignedRequest" inside fedbridge.v1).
 */
function resolve(typeName: string, from: string, messages: ReadonlyMap<string, unknown>): string {
  if (typeName.startsWith('.')) {
    if (messages.has(typeName.slice(1))) return typeName.slice(1);
  } else {
    const scope = from.split('.');
    for (let k = scope.length; k >= 0; k--) {
      const candidate = [...scope.slice(0, k), typeName].join('.');
      if (messages.has(candidate)) return candidate;
    }
  }
  throw new Error(`wire check: ${from} refers to message type ${typeName}, which the package definition does not contain`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** True iff b[start, end) is valid UTF-8: ASCII checked in a loop (most strings here: names, ids), the rest by a fatal TextDecoder (about 0.5 us a call). */
function validUtf8(b: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end && b[i] < 0x80) i++;
  if (i === end) return true;
  try {
    utf8.decode(b.subarray(i, end)); // i is a character boundary: everything before it was ASCII
    return true;
  } catch {
    return false;
  }
}

class WireError extends Error {}

/**
 * The first wire-format violation of `bytes` as a message of type `typeName` (full name, e.g.
 * "fedbridge.v1.SignedRequest"), or null if the bytes are well formed.
 */
export function wireViolation(bytes: Uint8Array, typeName: string, schema: WireSchema): string | null {
  if (!schema.has(typeName)) throw new Error(`wire check: unknown message type ${typeName}`);
  try {
    scan(bytes, 0, bytes.length, typeName, schema, 0, typeName);
    return null;
  } catch (e) {
    if (e instanceof WireError) return e.message;
    throw e;
  }
}

function varint(b: Uint8Array, pos: number, end: number, what: string): { value: number; pos: number } {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new WireError(`${what}: varint runs past the end of its message at byte ${pos}`);
    const byte = b[pos++];
    value += (byte & 0x7f) * mul; // exact below 2^53; larger values only matter as lengths, which are then refused
    mul *= 128;
    if ((byte & 0x80) === 0) return { value, pos };
  }
  throw new WireError(`${what}: varint longer than 10 bytes at byte ${pos - 10}`);
}

const VARINT32 = new Set(['TYPE_UINT32', 'TYPE_SINT32', 'TYPE_INT32', 'TYPE_ENUM']);
const VARINT64 = new Set(['TYPE_UINT64', 'TYPE_SINT64', 'TYPE_INT64']);

/**
 * A varint value of a known scalar type must fit it, as protobufjs would otherwise cut it silently
 * (a uint32 of 2^32 + 1 reads as 1; a 64-bit varint's 10th byte above 1 loses bits) or misread it:
 *   uint32, sint32: at most 5 bytes, the 5th <= 0x0f (32 bits)
 *   int32, enum: as uint32, or the 10-byte two's complement form of a negative 32-bit value
 *                (5th byte 0xf8..0xff, then 0xff x 4, then 0x01)
 *   bool: 0 or 1 (one or more bytes)
 *   int64, uint64, sint64: the 10th byte, if any, <= 0x01 (64 bits)
 * Non-minimal encodings of in-range values (e.g. 0 as 0x80 0x00) are allowed, as protobuf allows.
 */
function checkVarintRange(b: Uint8Array, start: number, next: number, type: string, where: string): void {
  const n = next - start;
  if (VARINT32.has(type)) {
    if (n <= 5 && (n < 5 || b[start + 4] <= 0x0f)) return;
    const neg =
      (type === 'TYPE_INT32' || type === 'TYPE_ENUM') && n === 10 && b[start + 4] >= 0xf8 && b[start + 9] === 0x01 && [5, 6, 7, 8].every((k) => b[start + k] === 0xff);
    if (!neg) throw new WireError(`${where}: a ${n}-byte varint does not fit ${type} (32 bits)`);
  } else if (VARINT64.has(type)) {
    if (n === 10 && b[start + 9] > 0x01) throw new WireError(`${where}: a varint of more than 64 bits`);
  } else if (type === 'TYPE_BOOL') {
    for (let k = start; k < next; k++) if ((b[k] & 0x7f) !== (k === start ? b[k] & 0x01 : 0)) throw new WireError(`${where}: a bool must be 0 or 1`);
  }
}

function scan(b: Uint8Array, start: number, end: number, typeName: string, schema: WireSchema, depth: number, path: string): void {
  if (depth > MAX_DEPTH) throw new WireError(`${path}: messages nested deeper than ${MAX_DEPTH}`);
  const fields = schema.get(typeName);
  if (!fields) throw new Error(`wire check: unknown message type ${typeName}`);
  let pos = start;
  let seenLow = 0; // singular fields 1..30 seen, as bits
  let seenHigh: Set<number> | undefined;
  let oneofsSet = 0; // oneofs (by index) with a member seen, as bits
  while (pos < end) {
    const at = pos;
    const tag = varint(b, pos, end, `${path} tag`);
    pos = tag.pos;
    const number = Math.floor(tag.value / 8);
    const wt = tag.value % 8;
    if (number < 1 || number > 536870911) throw new WireError(`${path}: field number ${number} at byte ${at} is out of range`);
    const f = fields.get(number);
    const where = f ? `${path}.${f.name}` : `${path} field ${number}`;
    if (f) {
      const want = WIRE_TYPE[f.type];
      const packed = f.repeated && want !== 2 && wt === 2;
      if (wt !== want && !packed) throw new WireError(`${where} (field ${number}) arrived with wire type ${wt}, its type ${f.type} needs ${want}`);
      if (!f.repeated) {
        const twice = number <= 30 ? (seenLow & (1 << number)) !== 0 : (seenHigh?.has(number) ?? false);
        if (twice) throw new WireError(`${where} (field ${number}) occurs twice at byte ${at}; it is not repeated`);
        if (number <= 30) seenLow |= 1 << number;
        else (seenHigh ??= new Set()).add(number);
      }
      if (f.oneof >= 0) {
        if ((oneofsSet & (1 << f.oneof)) !== 0) throw new WireError(`${where} (field ${number}) at byte ${at}: another member of oneof ${f.oneofName} is already set; at most one may be`);
        oneofsSet |= 1 << f.oneof;
      }
    }
    switch (wt) {
      case 0: {
        const next = varint(b, pos, end, where).pos;
        if (f) checkVarintRange(b, pos, next, f.type, where);
        pos = next;
        break;
      }
      case 1:
      case 5: {
        const n = wt === 1 ? 8 : 4;
        if (pos + n > end) throw new WireError(`${where}: ${n}-byte value runs past the end of its message`);
        pos += n;
        break;
      }
      case 2: {
        const len = varint(b, pos, end, `${where} length`);
        pos = len.pos;
        if (len.value > end - pos) throw new WireError(`${where}: ${len.value} bytes declared, ${end - pos} left in its message`);
        const next = pos + len.value;
        if (f?.type === 'TYPE_MESSAGE') scan(b, pos, next, f.typeName, schema, depth + 1, where);
        else if (f?.type === 'TYPE_STRING' && !validUtf8(b, pos, next)) throw new WireError(`${where}: not valid UTF-8`); else if (f && f.repeated && WIRE_TYPE[f.type] !== 2) packedScalars(b, pos, next, f.type, where);
        pos = next;
        break;
      }
      default:
        throw new WireError(`${where}: wire type ${wt} at byte ${at} (groups and types 6, 7 do not exist in proto3)`);
    }
  }
}

function packedScalars(b: Uint8Array, start: number, end: number, type: string, where: string): void {
  const wt = WIRE_TYPE[type];
  if (wt === 0) {
    let pos = start;
    while (pos < end) {
      const next = varint(b, pos, end, where).pos;
      checkVarintRange(b, pos, next, type, where);
      pos = next;
    }
    return;
  }
  const n = wt === 1 ? 8 : 4;
  if ((end - start) % n !== 0) throw new WireError(`${where}: packed ${n}-byte values do not fill ${end - start} bytes`);
}

let federationDef: PackageDefinition | undefined;
let federation: WireSchema | undefined;
let secagg: WireSchema | undefined;

const load = (file: string) => protoLoader.loadSync(file, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });

/** proto/fedbridge/v1/federation.proto as proto-loader reads it (parsed once per process). */
function federationDefinition(): PackageDefinition {
  federationDef ??= load(FEDERATION_PROTO);
  return federationDef;
}

/** The schema of proto/fedbridge/v1/federation.proto (built once; for bytes decoded outside grpc-js's server, like signed bodies, events and responses). */
export function federationWireSchema(): WireSchema {
  federation ??= wireSchemaOf(federationDefinition());
  return federation;
}

/** The schema of proto/fedbridge/v1/secagg.proto (built once; for the SecAgg payloads inside phase messages and events). */
export function secaggWireSchema(): WireSchema {
  secagg ??= wireSchemaOf(load(SECAGG_PROTO));
  return secagg;
}

/** A method of a ts-proto grpc-js service definition, as far as the strict client needs it. */
interface ClientMethod {
  path: string;
  responseDeserialize: (value: Buffer) => unknown;
}

let responseTypes: Map<string, string> | undefined;

/** Method path ("/fedbridge.v1.ParticipantService/Subscribe") -> full name of its response message type. */
function federationResponseTypes(): Map<string, string> {
  if (responseTypes) return responseTypes;
  const out = new Map<string, string>();
  for (const entry of Object.values(federationDefinition())) {
    if ((entry as { format?: unknown }).format !== undefined) continue; // a message or enum type, not a service
    for (const m of Object.values(entry as Record<string, { path?: string; responseType?: { type?: { name?: string } } }>)) {
      if (m.path && m.responseType?.type?.name) out.set(m.path, `${PROTO_PACKAGE}.${m.responseType.type.name}`);
    }
  }
  responseTypes = out;
  return out;
}

/**
 * A copy of a generated service definition (proto/gen/grpc, ts-proto's `outputServices=grpc-js`)
 * whose response deserializers run the strict check before the ts-proto decoder: a client built on
 * it (`grpc.makeGenericClientConstructor(strictResponses(XService), name)`) takes no response from
 * the other side that the decoders would read differently. A violation throws inside grpc-js's
 * deserializer, which ends the call with INTERNAL "Response message parsing error: malformed
 * response: ... (the reason)". Every method must be one of federation.proto's.
 */
export function strictResponses<S extends Record<string, ClientMethod>>(service: S): S {
  const schema = federationWireSchema();
  const types = federationResponseTypes();
  const out: Record<string, ClientMethod> = {};
  for (const [name, m] of Object.entries(service)) {
    const type = types.get(m.path);
    if (type === undefined || !schema.has(type)) throw new Error(`strict client: ${m.path} is not a method of ${FEDERATION_PROTO}`);
    const decode = m.responseDeserialize;
    out[name] = {
      ...m,
      responseDeserialize: (value: Buffer) => {
        const violation = wireViolation(value, type, schema);
        if (violation !== null) throw new Error(`malformed response: the bytes are not a valid ${type} protobuf message (${violation})`);
        return decode(value);
      },
    };
  }
  return out as S;
}

const strictConstructors = new WeakMap<object, unknown>();

/**
 * The grpc-js client constructor of a generated service (e.g. ParticipantServiceService) whose
 * responses are checked strictly (strictResponses), built once per service:
 * `new (strictClient<typeof XClient>(XService, 'fedbridge.v1.X'))(address, credentials, options)`.
 */
export function strictClient<C>(service: Record<string, ClientMethod>, serviceName: string): C {
  let ctor = strictConstructors.get(service);
  if (!ctor) {
    ctor = makeGenericClientConstructor(strictResponses(service) as unknown as ServiceDefinition, serviceName);
    strictConstructors.set(service, ctor);
  }
  return ctor as C;
}
