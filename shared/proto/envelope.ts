/**
 * Signed envelopes of the federation contract (proto/fedbridge/v1/federation.proto), shared by the
 * coordinator (verifies) and the participant node (signs).
 *
 * A party request is SignedRequest{body, signature}: `body` is the serialized *Body message whose
 * first field is a PartyHeader binding it to (federation, party, run, round, phase, nonce,
 * timestamp); the signature is Ed25519 (RFC 8032) by the party's enrolled identity key over
 *
 *     "fedbridge/v1/" || method || 0x00 || body
 *
 * where `method` is the RPC name (e.g. "AdvertiseKeys"), so a body signed for one RPC can never be
 * replayed on another. The coordinator verifies the exact bytes it received before decoding, and
 * signs the events it pushes the same way with method "event".
 */
import { ed25519Sign, ed25519Verify } from '../crypto/sign';
import { randomBytes } from '../crypto/sodium';
import { abytes, astr } from '../util/check';
import { Phase, type PartyHeader, type SignedEvent, type SignedRequest } from '../../proto/gen/grpc/fedbridge/v1/federation';

export { Phase };

export const NONCE_LENGTH = 16;

export type PartyMethod =
  | 'Subscribe'
  | 'AdvertiseKeys'
  | 'ShareKeys'
  | 'UploadMaskedInput'
  | 'ConsistencyCheck'
  | 'Unmasking'
  | 'DownloadModel'
  | 'SubmitReceipt';

/** The phase each RPC's header must carry. */
export const METHOD_PHASE: Record<PartyMethod, Phase> = {
  Subscribe: Phase.PHASE_SUBSCRIBE,
  AdvertiseKeys: Phase.PHASE_ADVERTISE_KEYS,
  ShareKeys: Phase.PHASE_SHARE_KEYS,
  UploadMaskedInput: Phase.PHASE_MASKED_INPUT,
  ConsistencyCheck: Phase.PHASE_CONSISTENCY_CHECK,
  Unmasking: Phase.PHASE_UNMASKING,
  DownloadModel: Phase.PHASE_MODEL_DOWNLOAD,
  SubmitReceipt: Phase.PHASE_RECEIPT,
};

const enc = new TextEncoder();

/** The exact bytes a signature covers: "fedbridge/v1/" || method || 0x00 || body. */
export function signingMessage(method: string, body: Uint8Array): Uint8Array {
  astr('method', method);
  abytes('body', body);
  const prefix = enc.encode(`fedbridge/v1/${method}\0`);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

/** A fresh header for `method` (nonce from libsodium's CSPRNG, timestamp from `now`). */
export function newHeader(args: { federationId: string; party: string; runId?: string; round?: number; method: PartyMethod; now?: number }): PartyHeader {
  return {
    federationId: args.federationId,
    party: args.party,
    runId: args.runId ?? '',
    round: args.round ?? 0,
    phase: METHOD_PHASE[args.method],
    nonce: randomBytes(NONCE_LENGTH),
    timestampMs: String(args.now ?? Date.now()),
  };
}

/** Signs serialized body bytes for `method`. */
export function signRequest(method: PartyMethod, body: Uint8Array, secretKey: Uint8Array): SignedRequest {
  return { body, signature: ed25519Sign(signingMessage(method, body), secretKey) };
}

export function verifyRequest(method: PartyMethod, req: SignedRequest, publicKey: Uint8Array): boolean {
  return ed25519Verify(req.signature, signingMessage(method, req.body), publicKey);
}

/** Signs a serialized PhaseEvent with the coordinator's key. */
export function signEvent(body: Uint8Array, secretKey: Uint8Array): SignedEvent {
  return { body, signature: ed25519Sign(signingMessage('event', body), secretKey) };
}

/** True iff the event was signed by the pinned coordinator key. */
export function verifyEvent(ev: SignedEvent, coordinatorPublicKey: Uint8Array): boolean {
  return ed25519Verify(ev.signature, signingMessage('event', ev.body), coordinatorPublicKey);
}
