/**
 * Protocol messages of one secure-aggregation round (Bonawitz et al. 2017 §4, Fig. 4), as
 * discriminated unions on `type`. Mirrored one to one in proto/fedbridge/v1/secagg.proto.
 *
 * Every message is signed with Ed25519 by its sender (a party's identity key, or the
 * coordinator's for server messages) over a canonical encoding (shared/crypto/encode.ts) that
 * starts with (protocol tag, message type, federation id, run id, round, sender) — so a signature
 * from another federation, run, round or phase never verifies here (replays are rejected). Round
 * numbers start again at 1 in every run, so the run id is what keeps a signature from an earlier
 * run's round 1 out of a later one's (and out of its audit log). The run id is not a message field:
 * both ends take it from the round they are in (RoundContext), and the audit log records it with
 * the round. Long vectors are signed through their BLAKE2b-256 digest over the little-endian word
 * encoding.
 *
 * Client -> coordinator: advertise-keys, share-keys, masked-input, consistency-signature,
 * unmask-shares. Coordinator -> client: server-keys, server-shares, consistency-request,
 * unmask-request.
 */
import { endianness } from 'node:os';
import { abytes, aint, au32, astr, describe } from '../util/check';
import { encodeFields, type Field } from '../crypto/encode';
import { blake2b256 } from '../crypto/hash';
import { ed25519Sign, ed25519Verify } from '../crypto/sign';
import { SecAggError } from './errors';
import { assertPartyId } from './graph';

export const PROTOCOL_TAG = 'fedbridge/secagg/v2';

interface Header {
  federationId: string;
  round: number;
  /** Ed25519 signature of `signedBytes(message)` by the sender */
  signature: Uint8Array;
}

// ---- client -> coordinator ----

/** AdvertiseKeys: two X25519 public keys and the commitment H(b_u) to the self-mask seed. */
export interface AdvertiseKeys extends Header {
  type: 'advertise-keys';
  sender: string;
  cPk: Uint8Array;
  sPk: Uint8Array;
  selfMaskCommitment: Uint8Array;
}

export interface EncryptedShare {
  /** the other party: recipient (in share-keys) or sender (in server-shares) */
  party: string;
  ciphertext: Uint8Array;
}

/** ShareKeys: one AEAD ciphertext per neighbour, holding that neighbour's shares of b_u and s_sk_u. */
export interface ShareKeys extends Header {
  type: 'share-keys';
  sender: string;
  shares: EncryptedShare[];
}

/** MaskedInput: y_u mod 2^bits. Sent in chunks by the transport; signed over its digest. */
export interface MaskedInput extends Header {
  type: 'masked-input';
  sender: string;
  bits: number;
  vector: Uint32Array;
}

/** ConsistencySignature: the sender's signature over the survivor list (the message signature itself). */
export interface ConsistencySignature extends Header {
  type: 'consistency-signature';
  sender: string;
  survivors: string[];
}

export interface PlainShare {
  /** whose secret this share is of */
  owner: string;
  /** the 32-byte Shamir share (its x is the sender's share point) */
  share: Uint8Array;
}

/** UnmaskShares: shares of b_v for listed survivors, shares of s_sk_v for listed dropped parties. */
export interface UnmaskShares extends Header {
  type: 'unmask-shares';
  sender: string;
  selfMaskShares: PlainShare[];
  keyShares: PlainShare[];
}

export type ClientMessage = AdvertiseKeys | ShareKeys | MaskedInput | ConsistencySignature | UnmaskShares;

// ---- coordinator -> client (sender = the coordinator) ----

/** ServerKeys: every advertisement received (each carries its own party signature). */
export interface ServerKeys extends Header {
  type: 'server-keys';
  advertisements: AdvertiseKeys[];
}

/** ServerShares: ciphertexts addressed to `recipient`, from parties that completed share-keys. */
export interface ServerShares extends Header {
  type: 'server-shares';
  recipient: string;
  shares: EncryptedShare[];
}

/** ConsistencyRequest: the survivor list U3 (parties whose masked input arrived). */
export interface ConsistencyRequest extends Header {
  type: 'consistency-request';
  survivors: string[];
}

export interface PartySignature {
  signer: string;
  signature: Uint8Array;
}

/** UnmaskRequest: the signed survivor list and which shares `recipient` must reveal. */
export interface UnmaskRequest extends Header {
  type: 'unmask-request';
  recipient: string;
  survivors: string[];
  signatures: PartySignature[];
  selfMaskSharesOf: string[];
  keySharesOf: string[];
}

export type ServerMessage = ServerKeys | ServerShares | ConsistencyRequest | UnmaskRequest;
export type SecAggMessage = ClientMessage | ServerMessage;

export const COORDINATOR = '@coordinator';

const LE = endianness() === 'LE';

/** The little-endian byte encoding of a word vector (a view on little-endian hosts). */
export function u32LeBytes(v: Uint32Array): Uint8Array {
  if (LE) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const out = new Uint8Array(v.byteLength);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < v.length; i++) dv.setUint32(4 * i, v[i], true);
  return out;
}

/** Inverse of u32LeBytes (always a copy, so the result is aligned). */
export function u32FromLeBytes(b: Uint8Array): Uint32Array {
  if (b.length % 4 !== 0) throw new RangeError(`"bytes" length ${b.length} is not a multiple of 4`);
  const out = new Uint32Array(b.length / 4);
  if (LE) new Uint8Array(out.buffer).set(b);
  else {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(4 * i, true);
  }
  return out;
}

function shareFields(list: readonly (EncryptedShare | PlainShare)[]): Field[] {
  const out: Field[] = [list.length];
  for (const s of list) {
    if ('party' in s) out.push(s.party, s.ciphertext);
    else out.push(s.owner, s.share);
  }
  return out;
}

/** Who signs a message: the party id, or COORDINATOR for server messages. */
export function signerOf(m: SecAggMessage): string {
  return 'sender' in m ? m.sender : COORDINATOR;
}

/** The canonical bytes a message's signature covers in run `runId` (everything except the signature). */
export function signedBytes(m: SecAggMessage, runId: string): Uint8Array {
  astr('runId', runId);
  const head: Field[] = [PROTOCOL_TAG, m.type, m.federationId, runId, m.round, signerOf(m)];
  switch (m.type) {
    case 'advertise-keys':
      return encodeFields(...head, m.cPk, m.sPk, m.selfMaskCommitment);
    case 'share-keys':
      return encodeFields(...head, ...shareFields(m.shares));
    case 'masked-input':
      return encodeFields(...head, m.bits, m.vector.length, blake2b256(u32LeBytes(m.vector)));
    case 'consistency-signature':
      return encodeFields(...head, m.survivors);
    case 'unmask-shares':
      return encodeFields(...head, ...shareFields(m.selfMaskShares), ...shareFields(m.keyShares));
    case 'server-keys': {
      const f: Field[] = [m.advertisements.length];
      for (const a of m.advertisements) f.push(signedBytes(a, runId), a.signature);
      return encodeFields(...head, ...f);
    }
    case 'server-shares':
      return encodeFields(...head, m.recipient, ...shareFields(m.shares));
    case 'consistency-request':
      return encodeFields(...head, m.survivors);
    case 'unmask-request': {
      const f: Field[] = [m.recipient, m.survivors, m.signatures.length];
      for (const s of m.signatures) f.push(s.signer, s.signature);
      return encodeFields(...head, ...f, m.selfMaskSharesOf, m.keySharesOf);
    }
    default:
      throw new SecAggError('INVALID_ARGUMENT', `unknown message type ${JSON.stringify((m as { type?: unknown }).type)}`);
  }
}

/** Signs `m` for run `runId` (sets m.signature) with an Ed25519 secret key and returns it. */
export function signMessage<M extends SecAggMessage>(m: Omit<M, 'signature'> & { signature?: Uint8Array }, secretKey: Uint8Array, runId: string): M {
  const full = { ...m, signature: new Uint8Array(0) } as unknown as M;
  full.signature = ed25519Sign(signedBytes(full, runId), secretKey);
  return full;
}

/** True iff the message's signature verifies under `publicKey` for run `runId`. */
export function verifyMessage(m: SecAggMessage, publicKey: Uint8Array, runId: string): boolean {
  return ed25519Verify(m.signature, signedBytes(m, runId), publicKey);
}

/** Signature over a survivor list (what consistency-signature messages carry). */
export function survivorListBytes(federationId: string, runId: string, round: number, signer: string, survivors: readonly string[]): Uint8Array {
  return signedBytes({ type: 'consistency-signature', federationId, round, sender: signer, survivors: [...survivors], signature: new Uint8Array(0) }, runId);
}

// ---- shape validation (messages arrive decoded from the wire; trust no field) ----

function bad(msg: string): never {
  throw new SecAggError('INVALID_ARGUMENT', msg);
}

function guard(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) bad(e.message);
    throw e;
  }
}

function idList(name: string, v: unknown): void {
  if (!Array.isArray(v)) bad(`"${name}" expected an array of party ids, got ${describe(v)}`);
  for (const id of v) assertPartyId(`${name}[i]`, id);
  if (new Set(v).size !== v.length) bad(`"${name}" has duplicate party ids`);
}

function encShares(name: string, v: unknown): void {
  if (!Array.isArray(v)) bad(`"${name}" expected an array, got ${describe(v)}`);
  for (const s of v) {
    if (typeof s !== 'object' || s === null) bad(`"${name}[i]" expected an object`);
    assertPartyId(`${name}[i].party`, (s as EncryptedShare).party);
    abytes(`${name}[i].ciphertext`, (s as EncryptedShare).ciphertext);
  }
}

function plainShares(name: string, v: unknown): void {
  if (!Array.isArray(v)) bad(`"${name}" expected an array, got ${describe(v)}`);
  for (const s of v) {
    if (typeof s !== 'object' || s === null) bad(`"${name}[i]" expected an object`);
    assertPartyId(`${name}[i].owner`, (s as PlainShare).owner);
    abytes(`${name}[i].share`, (s as PlainShare).share, 32);
  }
}

/**
 * Checks the runtime shape of any message (types, lengths, id syntax). Throws SecAggError
 * INVALID_ARGUMENT naming the field. Does not check signatures or protocol rules.
 */
export function validateShape(m: unknown): asserts m is SecAggMessage {
  if (typeof m !== 'object' || m === null) bad(`message expected an object, got ${describe(m)}`);
  const x = m as Record<string, unknown>;
  guard(() => {
    astr('type', x.type);
    astr('federationId', x.federationId);
    aint('round', x.round, 0);
    abytes('signature', x.signature, 64);
    switch (x.type) {
      case 'advertise-keys':
        assertPartyId('sender', x.sender);
        abytes('cPk', x.cPk, 32);
        abytes('sPk', x.sPk, 32);
        abytes('selfMaskCommitment', x.selfMaskCommitment, 32);
        break;
      case 'share-keys':
        assertPartyId('sender', x.sender);
        encShares('shares', x.shares);
        break;
      case 'masked-input':
        assertPartyId('sender', x.sender);
        aint('bits', x.bits, 8, 32);
        au32('vector', x.vector);
        break;
      case 'consistency-signature':
        assertPartyId('sender', x.sender);
        idList('survivors', x.survivors);
        break;
      case 'unmask-shares':
        assertPartyId('sender', x.sender);
        plainShares('selfMaskShares', x.selfMaskShares);
        plainShares('keyShares', x.keyShares);
        break;
      case 'server-keys':
        if (!Array.isArray(x.advertisements)) bad('"advertisements" expected an array');
        for (const a of x.advertisements as unknown[]) {
          validateShape(a);
          if ((a as SecAggMessage).type !== 'advertise-keys') bad('"advertisements[i]" expected advertise-keys messages');
        }
        break;
      case 'server-shares':
        assertPartyId('recipient', x.recipient);
        encShares('shares', x.shares);
        break;
      case 'consistency-request':
        idList('survivors', x.survivors);
        break;
      case 'unmask-request':
        assertPartyId('recipient', x.recipient);
        idList('survivors', x.survivors);
        if (!Array.isArray(x.signatures)) bad('"signatures" expected an array');
        for (const s of x.signatures as unknown[]) {
          if (typeof s !== 'object' || s === null) bad('"signatures[i]" expected an object');
          assertPartyId('signatures[i].signer', (s as PartySignature).signer);
          abytes('signatures[i].signature', (s as PartySignature).signature, 64);
        }
        idList('selfMaskSharesOf', x.selfMaskSharesOf);
        idList('keySharesOf', x.keySharesOf);
        break;
      default:
        bad(`unknown message type ${JSON.stringify(x.type)}`);
    }
  });
}
