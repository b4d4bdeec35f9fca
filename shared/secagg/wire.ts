/**
 * Wire codec: shared/secagg messages <-> protobuf bytes of proto/fedbridge/v1/secagg.proto
 * (envelopes SecAggClientMessage / SecAggServerMessage, TypeScript from ts-proto in proto/gen).
 *
 * Decoding trusts nothing: bytes that break the protobuf wire format (checked strictly before the
 * ts-proto decoder runs, shared/proto/wire-check.ts), an envelope with no or several messages, a
 * round beyond 2^53 - 1, vector chunks that do not add up to `length` words — all throw SecAggError
 * INVALID_ARGUMENT, and every decoded message then passes `validateShape`. Signatures are not
 * checked here (the state machines do that) and sign canonical content (messages.ts), independent
 * of the protobuf encoding. The strict check matters anyway: the ts-proto decoder
 * (@bufbuild/protobuf's BinaryReader) lets a sub-message's last field run past the sub-message's
 * declared length, so damaged bytes decoded to the honest message (tests/coordinator/fuzz.test.ts
 * met 13 such bit flips in about 400); with the check, one message has one meaning for every
 * decoder, and damage is reported where it is.
 */
import * as pb from '../../proto/gen/grpc/fedbridge/v1/secagg';
import { secaggWireSchema, wireViolation } from '../proto/wire-check';
import { SecAggError } from './errors';
import {
  u32FromLeBytes,
  u32LeBytes,
  validateShape,
  type AdvertiseKeys,
  type ClientMessage,
  type ServerMessage,
} from './messages';

/** Largest vector chunk written (bytes); the coordinator's gRPC chunk limit is 1 MiB. */
export const VECTOR_CHUNK_BYTES = 1 << 20;

function bad(msg: string): never {
  throw new SecAggError('INVALID_ARGUMENT', msg);
}

function roundOut(r: number): string {
  return String(r);
}

function roundIn(s: string): number {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(s)) bad(`"round" ${JSON.stringify(s)} is not an unsigned integer`);
  const r = Number(s);
  if (!Number.isSafeInteger(r)) bad(`"round" ${s} exceeds 2^53 - 1`);
  return r;
}

function adOut(a: AdvertiseKeys): pb.AdvertiseKeys {
  return { federationId: a.federationId, round: roundOut(a.round), sender: a.sender, cPk: a.cPk, sPk: a.sPk, selfMaskCommitment: a.selfMaskCommitment, signature: a.signature };
}

function adIn(a: pb.AdvertiseKeys): AdvertiseKeys {
  return { type: 'advertise-keys', federationId: a.federationId, round: roundIn(a.round), sender: a.sender, cPk: a.cPk, sPk: a.sPk, selfMaskCommitment: a.selfMaskCommitment, signature: a.signature };
}

/** Encodes a party's message as a SecAggClientMessage (vectors split into <= 1 MiB chunks). */
export function encodeClientMessage(m: ClientMessage): Uint8Array {
  validateShape(m);
  const env: pb.SecAggClientMessage = {};
  const base = { federationId: m.federationId, round: roundOut(m.round), sender: m.sender, signature: m.signature };
  switch (m.type) {
    case 'advertise-keys':
      env.advertiseKeys = adOut(m);
      break;
    case 'share-keys':
      env.shareKeys = { ...base, shares: m.shares.map((s) => ({ party: s.party, ciphertext: s.ciphertext })) };
      break;
    case 'masked-input': {
      const bytes = u32LeBytes(m.vector);
      const vectorChunks: Uint8Array[] = [];
      for (let off = 0; off < bytes.length; off += VECTOR_CHUNK_BYTES) vectorChunks.push(bytes.subarray(off, Math.min(bytes.length, off + VECTOR_CHUNK_BYTES)));
      env.maskedInput = { ...base, bits: m.bits, length: String(m.vector.length), vectorChunks };
      break;
    }
    case 'consistency-signature':
      env.consistencySignature = { ...base, survivors: [...m.survivors] };
      break;
    case 'unmask-shares':
      env.unmaskShares = {
        ...base,
        selfMaskShares: m.selfMaskShares.map((s) => ({ owner: s.owner, share: s.share })),
        keyShares: m.keyShares.map((s) => ({ owner: s.owner, share: s.share })),
      };
      break;
  }
  return pb.SecAggClientMessage.encode(env).finish();
}

/** Bytes of an unsigned varint. */
function varintBytes(n: number): number {
  let k = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    k++;
  }
  return k;
}

/**
 * The exact length of `encodeClientMessage` for a masked input of `length` words from `sender`
 * (its vector in VECTOR_CHUNK_BYTES chunks, a 64-byte signature), without building the vector:
 * the coordinator refuses an upload announcing any other size before reading a byte of it.
 */
export function maskedInputWireBytes(m: { federationId: string; round: number; sender: string; bits: number; length: number }): number {
  const head = pb.MaskedInput.encode({ federationId: m.federationId, round: roundOut(m.round), sender: m.sender, bits: m.bits, length: String(m.length), vectorChunks: [], signature: new Uint8Array(64) }).finish().length;
  let inner = head;
  for (let left = 4 * m.length; left > 0; left -= VECTOR_CHUNK_BYTES) {
    const c = Math.min(left, VECTOR_CHUNK_BYTES);
    inner += 1 + varintBytes(c) + c; // field 6, length-delimited
  }
  return 1 + varintBytes(inner) + inner; // SecAggClientMessage field 3, length-delimited
}

function decodeEnvelope<T extends object>(fns: { decode(b: Uint8Array): T }, bytes: Uint8Array, what: string): T {
  if (!(bytes instanceof Uint8Array)) bad(`${what} expected Uint8Array bytes`);
  const violation = wireViolation(bytes, `fedbridge.v1.${what}`, secaggWireSchema());
  if (violation !== null) bad(`${what} is not valid protobuf: ${violation}`);
  try {
    return fns.decode(bytes);
  } catch (e) {
    return bad(`${what} is not valid protobuf: ${(e as Error).message}`);
  }
}

function single<T extends object>(env: T, what: string): [keyof T, NonNullable<T[keyof T]>] {
  const set = (Object.keys(env) as (keyof T)[]).filter((k) => env[k] !== undefined);
  if (set.length !== 1) bad(`${what} must carry exactly one message, got ${set.length}`);
  return [set[0], env[set[0]] as NonNullable<T[keyof T]>];
}

/** Decodes and shape-checks a SecAggClientMessage. Throws SecAggError INVALID_ARGUMENT. */
export function decodeClientMessage(bytes: Uint8Array): ClientMessage {
  const env = decodeEnvelope(pb.SecAggClientMessage, bytes, 'SecAggClientMessage');
  const [kind] = single(env, 'SecAggClientMessage');
  let out: ClientMessage;
  if (env.advertiseKeys) out = adIn(env.advertiseKeys);
  else if (env.shareKeys) {
    const s = env.shareKeys;
    out = { type: 'share-keys', federationId: s.federationId, round: roundIn(s.round), sender: s.sender, shares: s.shares.map((x) => ({ party: x.party, ciphertext: x.ciphertext })), signature: s.signature };
  } else if (env.maskedInput) {
    const s = env.maskedInput;
    if (!/^(0|[1-9][0-9]{0,9})$/.test(s.length)) bad(`"length" ${JSON.stringify(s.length)} is not a vector length`);
    const words = Number(s.length);
    let total = 0;
    for (const c of s.vectorChunks) {
      if (c.length > VECTOR_CHUNK_BYTES) bad(`vector chunk of ${c.length} bytes exceeds ${VECTOR_CHUNK_BYTES}`);
      total += c.length;
    }
    if (total !== 4 * words) bad(`vector chunks hold ${total} bytes, "length" says ${words} words (${4 * words} bytes)`);
    const all = new Uint8Array(total);
    let off = 0;
    for (const c of s.vectorChunks) {
      all.set(c, off);
      off += c.length;
    }
    out = { type: 'masked-input', federationId: s.federationId, round: roundIn(s.round), sender: s.sender, bits: s.bits, vector: u32FromLeBytes(all), signature: s.signature };
  } else if (env.consistencySignature) {
    const s = env.consistencySignature;
    out = { type: 'consistency-signature', federationId: s.federationId, round: roundIn(s.round), sender: s.sender, survivors: s.survivors, signature: s.signature };
  } else if (env.unmaskShares) {
    const s = env.unmaskShares;
    out = {
      type: 'unmask-shares',
      federationId: s.federationId,
      round: roundIn(s.round),
      sender: s.sender,
      selfMaskShares: s.selfMaskShares.map((x) => ({ owner: x.owner, share: x.share })),
      keyShares: s.keyShares.map((x) => ({ owner: x.owner, share: x.share })),
      signature: s.signature,
    };
  } else {
    return bad(`SecAggClientMessage: unknown message ${String(kind)}`);
  }
  validateShape(out);
  return out;
}

/** Encodes a coordinator message as a SecAggServerMessage. */
export function encodeServerMessage(m: ServerMessage): Uint8Array {
  validateShape(m);
  const env: pb.SecAggServerMessage = {};
  const base = { federationId: m.federationId, round: roundOut(m.round), signature: m.signature };
  switch (m.type) {
    case 'server-keys':
      env.serverKeys = { ...base, advertisements: m.advertisements.map(adOut) };
      break;
    case 'server-shares':
      env.serverShares = { ...base, recipient: m.recipient, shares: m.shares.map((s) => ({ party: s.party, ciphertext: s.ciphertext })) };
      break;
    case 'consistency-request':
      env.consistencyRequest = { ...base, survivors: [...m.survivors] };
      break;
    case 'unmask-request':
      env.unmaskRequest = {
        ...base,
        recipient: m.recipient,
        survivors: [...m.survivors],
        signatures: m.signatures.map((s) => ({ signer: s.signer, signature: s.signature })),
        selfMaskSharesOf: [...m.selfMaskSharesOf],
        keySharesOf: [...m.keySharesOf],
      };
      break;
  }
  return pb.SecAggServerMessage.encode(env).finish();
}

/** Decodes and shape-checks a SecAggServerMessage. Throws SecAggError INVALID_ARGUMENT. */
export function decodeServerMessage(bytes: Uint8Array): ServerMessage {
  const env = decodeEnvelope(pb.SecAggServerMessage, bytes, 'SecAggServerMessage');
  const [kind] = single(env, 'SecAggServerMessage');
  let out: ServerMessage;
  if (env.serverKeys) {
    const s = env.serverKeys;
    out = { type: 'server-keys', federationId: s.federationId, round: roundIn(s.round), advertisements: s.advertisements.map(adIn), signature: s.signature };
  } else if (env.serverShares) {
    const s = env.serverShares;
    out = { type: 'server-shares', federationId: s.federationId, round: roundIn(s.round), recipient: s.recipient, shares: s.shares.map((x) => ({ party: x.party, ciphertext: x.ciphertext })), signature: s.signature };
  } else if (env.consistencyRequest) {
    const s = env.consistencyRequest;
    out = { type: 'consistency-request', federationId: s.federationId, round: roundIn(s.round), survivors: s.survivors, signature: s.signature };
  } else if (env.unmaskRequest) {
    const s = env.unmaskRequest;
    out = {
      type: 'unmask-request',
      federationId: s.federationId,
      round: roundIn(s.round),
      recipient: s.recipient,
      survivors: s.survivors,
      signatures: s.signatures.map((x) => ({ signer: x.signer, signature: x.signature })),
      selfMaskSharesOf: s.selfMaskSharesOf,
      keySharesOf: s.keySharesOf,
      signature: s.signature,
    };
  } else {
    return bad(`SecAggServerMessage: unknown message ${String(kind)}`);
  }
  validateShape(out);
  return out;
}
