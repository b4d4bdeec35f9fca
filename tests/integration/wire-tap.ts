/**
 * Wire-test tools for REAL participant nodes (tests/integration/wire-canary.test.ts):
 *
 *  - `tapChannelFactory`: a grpc-js `channelFactoryOverride` (JoinOptions.grpcClient). It builds the
 *    node's channel from the node's own target, TLS credentials and options, and wraps every call
 *    at the byte level: the serialized request messages exactly as handed to HTTP/2, the response
 *    messages exactly as received (before deserialization: an unknown field the coordinator sent
 *    would still be there), the request metadata after every interceptor ran, the response
 *    headers and trailers, and the status details.
 *  - `countingInterceptor`: a client interceptor that counts the messages the node's code sends and
 *    receives; the test compares it with the tap, so a message that bypassed the tap is noticed.
 *  - `walkFields`: walks raw protobuf bytes against federation.proto / secagg.proto (an allow-list
 *    derived from the contract): every field number must be declared in the message type and
 *    carry the declared wire type; nested messages and the opaque `bytes` fields that hold a
 *    serialized message (signed bodies, secagg payloads) are walked too.
 *  - `NeedleSearch`: finds any of many byte strings (needles, >= 4 bytes) in byte strings
 *    (haystacks) at every byte offset: the needles are bucketed by their first 4 bytes.
 */
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import { PROTO_ROOT } from '../../coordinator/grpc/options';

export type Dir = 'out' | 'in';

export interface CapturedMessage {
  party: string;
  /** full method path, e.g. /fedbridge.v1.ParticipantService/AdvertiseKeys */
  method: string;
  /** per-party call sequence number (chunks of one streaming call share it) */
  call: number;
  dir: Dir;
  bytes: Uint8Array;
}

export interface CapturedMetadata {
  party: string;
  method: string;
  /** 'request' (sent), 'headers' (response initial metadata), 'trailers' */
  kind: 'request' | 'headers' | 'trailers';
  entries: [string, string | Buffer][];
}

export interface CapturedStatus {
  party: string;
  method: string;
  code: number;
  details: string;
}

export interface WireLog {
  messages: CapturedMessage[];
  metadata: CapturedMetadata[];
  statuses: CapturedStatus[];
}

type Call = ReturnType<grpc.ChannelInterface['createCall']>;
type Listener = Parameters<Call['start']>[1];

function entriesOf(md: grpc.Metadata): [string, string | Buffer][] {
  const out: [string, string | Buffer][] = [];
  for (const [k, vs] of Object.entries(md.toJSON())) for (const v of vs as (string | Buffer)[]) out.push([k, v]);
  return out;
}

let callSeq = 0;

/** Wraps one call: records what crosses it in both directions, delegates everything. */
function tapCall(inner: Call, party: string, method: string, log: WireLog): Call {
  const call = ++callSeq;
  return {
    cancelWithStatus: (status, details) => inner.cancelWithStatus(status, details),
    getPeer: () => inner.getPeer(),
    startRead: () => inner.startRead(),
    halfClose: () => inner.halfClose(),
    getCallNumber: () => inner.getCallNumber(),
    setCredentials: (c) => inner.setCredentials(c),
    getAuthContext: () => inner.getAuthContext(),
    sendMessageWithContext: (context, message: Buffer) => {
      log.messages.push({ party, method, call, dir: 'out', bytes: new Uint8Array(message) });
      inner.sendMessageWithContext(context, message);
    },
    start: (metadata: grpc.Metadata, listener: Listener) => {
      log.metadata.push({ party, method, kind: 'request', entries: entriesOf(metadata) });
      inner.start(metadata, {
        onReceiveMetadata: (md: grpc.Metadata) => {
          log.metadata.push({ party, method, kind: 'headers', entries: entriesOf(md) });
          listener.onReceiveMetadata(md);
        },
        onReceiveMessage: (message: Buffer) => {
          log.messages.push({ party, method, call, dir: 'in', bytes: new Uint8Array(message) });
          listener.onReceiveMessage(message);
        },
        onReceiveStatus: (status: grpc.StatusObject) => {
          log.metadata.push({ party, method, kind: 'trailers', entries: entriesOf(status.metadata) });
          log.statuses.push({ party, method, code: status.code, details: status.details });
          listener.onReceiveStatus(status);
        },
      });
    },
  };
}

/** A `channelFactoryOverride` that records every byte of every call `party`'s client makes. */
export function tapChannelFactory(party: string, log: WireLog): NonNullable<grpc.ClientOptions['channelFactoryOverride']> {
  return (address, credentials, options) => {
    const inner = new grpc.Channel(address, credentials, options);
    return {
      close: () => inner.close(),
      getTarget: () => inner.getTarget(),
      getConnectivityState: (tryToConnect) => inner.getConnectivityState(tryToConnect),
      watchConnectivityState: (state, deadline, cb) => inner.watchConnectivityState(state, deadline, cb),
      getChannelzRef: () => inner.getChannelzRef(),
      createCall: (method, deadline, host, parentCall, flags) => tapCall(inner.createCall(method, deadline, host, parentCall, flags), party, method, log),
    };
  };
}

/** Counts, per `party dir method`, the messages the node's code sends and receives. */
export function countingInterceptor(party: string, counts: Map<string, number>): grpc.Interceptor {
  const bump = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
  return (options, nextCall) => {
    const method = options.method_definition.path;
    return new grpc.InterceptingCall(nextCall(options), {
      sendMessage(message, next) {
        bump(`${party} out ${method}`);
        next(message);
      },
      start(metadata, listener, next) {
        next(metadata, {
          onReceiveMessage(message, n) {
            bump(`${party} in ${method}`);
            n(message);
          },
        });
      },
    });
  };
}

export const protoRoot = protobuf.loadSync([path.join(PROTO_ROOT, 'fedbridge/v1/federation.proto'), path.join(PROTO_ROOT, 'fedbridge/v1/secagg.proto')]);
protoRoot.resolveAll();

/** The wire type a declared field must use (packed repeated scalars: length-delimited). */
function expectedWireTypes(field: protobuf.Field): number[] {
  if (field.resolvedType instanceof protobuf.Type) return [2];
  const scalar = field.resolvedType instanceof protobuf.Enum ? 0 : (protobuf.types.basic as Record<string, number | undefined>)[field.type];
  const base = scalar ?? 2; // string, bytes
  return field.repeated && scalar !== undefined ? [base, 2] : [base];
}

/** Which message an opaque `bytes` field holds, per RPC (federation.proto comments). */
export const BODY_OF: Record<string, string> = {
  Subscribe: 'SubscribeBody',
  AdvertiseKeys: 'PhaseMessageBody',
  ShareKeys: 'PhaseMessageBody',
  ConsistencyCheck: 'PhaseMessageBody',
  Unmasking: 'PhaseMessageBody',
  UploadMaskedInput: 'UploadOpenBody',
  DownloadModel: 'DownloadModelBody',
  SubmitReceipt: 'ReceiptBody',
};

/**
 * Walks `bytes` as a `typeName` message: every field number must be declared in that type and use
 * its declared wire type (throws naming `where` otherwise); records `Type.field` in `seen`.
 * `nested(Type.field)` names the message type held in an opaque bytes field, or null.
 */
export function walkFields(bytes: Uint8Array, typeName: string, where: string, seen: Set<string>, nested: (field: string) => string | null): void {
  const type = protoRoot.lookupType(`fedbridge.v1.${typeName}`);
  const r = protobuf.Reader.create(bytes);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const id = tag >>> 3;
    const wt = tag & 7;
    const field = type.fieldsById[id];
    if (!field) throw new Error(`${where}: field number ${id} is not declared in ${typeName}`);
    const name = `${typeName}.${field.name}`;
    if (!expectedWireTypes(field).includes(wt)) throw new Error(`${where}: ${name} arrived with wire type ${wt}, declared ${field.type}`);
    seen.add(name);
    const inner = field.resolvedType instanceof protobuf.Type ? field.resolvedType.name : wt === 2 ? nested(name) : null;
    if (inner) {
      const sub = r.bytes();
      if (sub.length) walkFields(sub, inner, `${where}.${field.name}`, seen, nested);
    } else {
      r.skipType(wt);
    }
  }
}

export interface Hit {
  needle: string;
  haystack: string;
  offset: number;
}

/** Many-needle exact search at every byte offset (needles bucketed by their first 4 bytes). */
export class NeedleSearch {
  private readonly buckets = new Map<number, { name: string; bytes: Buffer }[]>();
  private count = 0;
  add(name: string, needle: Uint8Array): void {
    if (needle.length < 4) throw new RangeError(`needle "${name}" expected at least 4 bytes, got ${needle.length}`);
    const b = Buffer.from(needle);
    const key = b.readUInt32LE(0);
    const list = this.buckets.get(key) ?? [];
    if (!list.some((n) => n.bytes.equals(b))) {
      list.push({ name, bytes: b });
      this.count++;
    }
    this.buckets.set(key, list);
  }
  get size(): number {
    return this.count;
  }
  /** Every occurrence of every needle in every haystack. */
  find(haystacks: { name: string; bytes: Uint8Array }[]): Hit[] {
    const hits: Hit[] = [];
    for (const h of haystacks) {
      const b = Buffer.from(h.bytes.buffer, h.bytes.byteOffset, h.bytes.byteLength);
      for (let i = 0; i + 4 <= b.length; i++) {
        const list = this.buckets.get(b.readUInt32LE(i));
        if (!list) continue;
        for (const n of list) {
          if (i + n.bytes.length <= b.length && b.compare(n.bytes, 0, n.bytes.length, i, i + n.bytes.length) === 0) hits.push({ needle: n.name, haystack: h.name, offset: i });
        }
      }
    }
    return hits;
  }
}

/**
 * The encodings a byte string could take on the wire: raw, hex (both cases), and base64 / base64url
 * at each of the 3 alignments it could have inside a longer base64 text (only the characters
 * that depend on `bytes` alone: no padding, no characters shared with neighbouring bytes).
 */
export function encodingsOf(name: string, bytes: Uint8Array): [string, Uint8Array][] {
  const b = Buffer.from(bytes);
  const out: [string, Uint8Array][] = [
    [`${name} (raw)`, b],
    [`${name} (hex)`, Buffer.from(b.toString('hex'), 'utf8')],
    [`${name} (HEX)`, Buffer.from(b.toString('hex').toUpperCase(), 'utf8')],
  ];
  for (const k of [0, 1, 2]) {
    const from = Math.ceil((8 * k) / 6);
    const to = Math.floor((8 * (k + b.length)) / 6);
    for (const enc of ['base64', 'base64url'] as const) {
      out.push([`${name} (${enc}@${k})`, Buffer.from(Buffer.concat([Buffer.alloc(k), b]).toString(enc).slice(from, to), 'utf8')]);
    }
  }
  return out;
}
