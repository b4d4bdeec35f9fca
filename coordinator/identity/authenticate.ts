/**
 * Authenticates a party's SignedRequest (shared/proto/envelope.ts) before anything else looks at
 * it. Checks, in order, each failing with its own status and a message naming the problem:
 *
 *   1. shape: body 1..maxBodyBytes bytes, signature 64 bytes            INVALID_ARGUMENT
 *   2. body decodes as the RPC's *Body message with a header,
 *      party name and run id well-formed, nonce 16 bytes                INVALID_ARGUMENT
 *   3. header.party is enrolled                                         UNAUTHENTICATED
 *   4. signature verifies under that party's enrolled key              UNAUTHENTICATED
 *   5. mutual TLS: the client certificate belongs to that party         PERMISSION_DENIED
 *      (also without grpc.tls.requireClientCert: a certificate presented anyway is checked, and
 *      a party enrolled bound to a certificate is refused rather than let in without one)
 *   6. header.federationId is this coordinator's federation,
 *      header.phase is the RPC's phase                                  FAILED_PRECONDITION
 *   7. header.timestampMs within the clock-skew window                  UNAUTHENTICATED
 *   8. nonce not seen before from this party (replay)                   ALREADY_EXISTS
 *   9. the party holds fewer than maxNoncesPerParty live nonces          RESOURCE_EXHAUSTED
 *
 * A nonce is remembered until the request's timestamp can no longer pass step 7 (2 x clock skew
 * after it was accepted), then forgotten. Every nonce gets that same lifetime, so expiries rise in
 * insertion order and forgetting walks the map from its oldest entry and stops at the first live
 * one: the cost per request is the number of nonces that expired, not the number held (a scan of
 * the whole map on every request took 38 ms with 1e6 live nonces). If the clock is set back, a
 * nonce is still forgotten no earlier than its expiry; some already expired may wait behind a
 * newer one. Step 9 bounds the memory one enrolled party can make the coordinator hold.
 *
 * Binding to the open run/round/phase is checked next by RoundsService.checkBinding.
 * Nothing here writes to storage.
 *
 * The one exception to step 8 (issue #5, an acknowledgement lost in transit): UploadMaskedInput,
 * and only it, may ask for `replay: 'report'`. A seen nonce is then not refused here but reported
 * (`replayed: true`, the nonce keeps its first expiry); steps 1..7 still apply in full (the
 * replayed open must still verify, be bound to this federation and phase, and be inside the
 * clock-skew window). The caller must then refuse it with `replayError` unless the upload turns out
 * to be a byte-identical resend of a masked input already accepted from that party in the round
 * that is still open (RoundsService.checkMaskedUpload / submitMaskedInput), which is answered with
 * the first acknowledgement and changes nothing. Every other RPC refuses a replay here, as before.
 */
import { createHash } from 'node:crypto';
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call';
import {
  DownloadModelBody,
  PhaseMessageBody,
  ReceiptBody,
  SubscribeBody,
  UploadOpenBody,
  type PartyHeader,
  type SignedRequest,
} from '../../proto/gen/grpc/fedbridge/v1/federation';
import { METHOD_PHASE, NONCE_LENGTH, verifyRequest, type PartyMethod } from '../../shared/proto/envelope';
import { alreadyExists, clientText, failedPrecondition, invalid, permissionDenied, resourceExhausted, unauthenticated, type StatusError } from '../grpc/errors';
import { federationWireSchema, wireViolation } from '../../shared/proto/wire-check';
import type { ParticipantRow, Repository } from '../storage/repository';

/**
 * The signed body of each RPC: its message type's full name, checked strictly before the body is
 * decoded (shared/proto/wire-check.ts), and the generated decoder. One table, so the two cannot
 * disagree (tests/coordinator/authenticate-bodies.test.ts checks each pair against the proto).
 */
export const METHOD_BODY = {
  Subscribe: { type: 'fedbridge.v1.SubscribeBody', fns: SubscribeBody },
  AdvertiseKeys: { type: 'fedbridge.v1.PhaseMessageBody', fns: PhaseMessageBody },
  ShareKeys: { type: 'fedbridge.v1.PhaseMessageBody', fns: PhaseMessageBody },
  UploadMaskedInput: { type: 'fedbridge.v1.UploadOpenBody', fns: UploadOpenBody },
  ConsistencyCheck: { type: 'fedbridge.v1.PhaseMessageBody', fns: PhaseMessageBody },
  Unmasking: { type: 'fedbridge.v1.PhaseMessageBody', fns: PhaseMessageBody },
  DownloadModel: { type: 'fedbridge.v1.DownloadModelBody', fns: DownloadModelBody },
  SubmitReceipt: { type: 'fedbridge.v1.ReceiptBody', fns: ReceiptBody },
} as const satisfies Record<PartyMethod, { type: string; fns: { decode(bytes: Uint8Array): { header?: PartyHeader | undefined } } }>;

/** The decoded signed body of RPC `M`. */
export type BodyOf<M extends PartyMethod> = ReturnType<(typeof METHOD_BODY)[M]['fns']['decode']>;

const NAME_RE = /^[a-z][a-z0-9_-]{0,62}$/;
/**
 * header.run_id: empty (no run: Subscribe, DownloadModel) or the shape of the ids RoundsService.startRun
 * draws (`run-<UTC yyyymmddThhmmss>-<6 hex>`, 26 characters), loosened to any 1..64 characters of
 * that alphabet so an unknown run is still answered NOT_FOUND / FAILED_PRECONDITION by name.
 */
export const RUN_ID_RE = /^(|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$/;

export interface Authenticated<T> {
  party: ParticipantRow;
  header: PartyHeader;
  body: T;
  /** the nonce was seen before; only ever true for a caller that asked for `replay: 'report'` */
  replayed: boolean;
}

/** The ALREADY_EXISTS refusal of a replayed request (step 8). */
export function replayError(method: PartyMethod, party: string): StatusError {
  return alreadyExists(`${method}: replayed request (nonce already used by party "${party}")`);
}

export interface AuthOptions {
  federationId: string;
  clockSkewMs: number;
  requireClientCert: boolean;
  maxBodyBytes: number;
  /** live nonces one party may hold (step 9); DEFAULT_MAX_NONCES_PER_PARTY when not given */
  maxNoncesPerParty?: number;
  now?: () => number;
}

/**
 * 65,536 requests in 2 x grpc.clockSkewSeconds (10 minutes by default: about 109 a second,
 * sustained) is far above what a node sends (a few RPCs per round phase) and bounds what a flooding
 * party costs to about 7 MB.
 */
export const DEFAULT_MAX_NONCES_PER_PARTY = 65_536;

export class PartyAuthenticator {
  /** party|nonce -> expiry, in insertion order, which is the order of expiry (see above) */
  private readonly seen = new Map<string, number>();
  /** party -> how many of its nonces `seen` holds */
  private readonly liveByParty = new Map<string, number>();
  private readonly maxNoncesPerParty: number;
  private readonly now: () => number;
  /** parsed from the proto once, at construction (41 ms), not on the first request of a round */
  private readonly bodySchema = federationWireSchema();

  constructor(
    private readonly repo: Repository,
    private readonly opts: AuthOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.maxNoncesPerParty = opts.maxNoncesPerParty ?? DEFAULT_MAX_NONCES_PER_PARTY;
  }

  async authenticate<M extends PartyMethod>(
    method: M,
    req: SignedRequest | null | undefined,
    call?: Pick<ServerSurfaceCall, 'getAuthContext'>,
    opts: { replay?: 'refuse' | 'report' } = {},
  ): Promise<Authenticated<BodyOf<M>>> {
    if (opts.replay === 'report' && method !== 'UploadMaskedInput') throw new Error(`${method}: only UploadMaskedInput may have a replayed nonce reported instead of refused`);
    if (!req || !(req.body instanceof Uint8Array) || req.body.length === 0) throw invalid(`${method}: request body is empty`);
    if (req.body.length > this.opts.maxBodyBytes) throw invalid(`${method}: request body is ${req.body.length} bytes, the limit is ${this.opts.maxBodyBytes}`);
    if (!(req.signature instanceof Uint8Array) || req.signature.length !== 64) throw invalid(`${method}: signature must be 64 bytes (Ed25519), got ${req.signature?.length ?? 0}`);
    // the generated decoder reads some damaged bytes as another message (a truncated last string,
    // a sub-message's last field running past it): a signer's bytes must mean one thing
    const { type, fns } = METHOD_BODY[method];
    const violation = wireViolation(req.body, type, this.bodySchema);
    if (violation !== null) throw invalid(`${method}: body does not decode: ${violation}`);
    let body: BodyOf<M>;
    try {
      body = fns.decode(req.body) as BodyOf<M>;
    } catch (e) {
      throw invalid(`${method}: body does not decode: ${(e as Error).message}`);
    }
    const h = body.header;
    if (!h) throw invalid(`${method}: body has no header`);
    if (!NAME_RE.test(h.party)) throw invalid(`${method}: header.party must be a lowercase party name, got "${clientText(h.party)}"`);
    if (!RUN_ID_RE.test(h.runId)) throw invalid(`${method}: header.run_id must be empty or a run id (1..64 letters, digits, '.', '_' or '-', like run-20260101T120000-a1b2c3), got "${clientText(h.runId)}" (${h.runId.length} characters)`);
    if (!(h.nonce instanceof Uint8Array) || h.nonce.length !== NONCE_LENGTH) throw invalid(`${method}: header.nonce must be ${NONCE_LENGTH} bytes, got ${h.nonce?.length ?? 0}`);

    const party = await this.repo.participantByName(h.party);
    if (!party) throw unauthenticated(`${method}: party "${h.party}" is not enrolled in this federation`);
    if (!verifyRequest(method, req, party.publicKey)) throw unauthenticated(`${method}: signature does not verify under the enrolled key of party "${h.party}"`);

    if (this.opts.requireClientCert) this.checkClientCert(method, party, call);
    else if (party.certSha256) {
      // the binding cannot be checked without a certificate, and is never ignored
      if (!peerCertificate(call)) throw permissionDenied(`${method}: party "${party.name}" is enrolled bound to a client certificate, and this coordinator does not ask for client certificates (grpc.tls.requireClientCert is false); turn mutual TLS on, or enrol the party again without a certificate`);
      this.checkClientCert(method, party, call);
    } else if (peerCertificate(call)) this.checkClientCert(method, party, call);

    if (h.federationId !== this.opts.federationId) throw failedPrecondition(`${method}: message is bound to federation "${clientText(h.federationId)}", this coordinator serves "${this.opts.federationId}"`);
    if (h.phase !== METHOD_PHASE[method]) throw failedPrecondition(`${method}: message is bound to phase ${h.phase}, this RPC takes phase ${METHOD_PHASE[method]}`);

    const ts = Number(h.timestampMs);
    const now = this.now();
    if (!Number.isSafeInteger(ts) || Math.abs(now - ts) > this.opts.clockSkewMs) {
      throw unauthenticated(`${method}: request timestamp ${h.timestampMs} is outside the accepted window of ±${this.opts.clockSkewMs / 1000} s around the coordinator's clock (${now})`);
    }
    this.expireNonces(now);
    const key = `${h.party}|${Buffer.from(h.nonce).toString('hex')}`;
    if (this.seen.has(key)) {
      if (opts.replay !== 'report') throw replayError(method, h.party);
      return { party, header: h, body, replayed: true };
    }
    const live = this.liveByParty.get(h.party) ?? 0;
    if (live >= this.maxNoncesPerParty) {
      throw resourceExhausted(`${method}: party "${h.party}" sent more than ${this.maxNoncesPerParty} requests in the last ${(2 * this.opts.clockSkewMs) / 1000} s (each nonce is remembered that long to refuse replays); send fewer and try again later`);
    }
    this.seen.set(key, now + 2 * this.opts.clockSkewMs);
    this.liveByParty.set(h.party, live + 1);
    return { party, header: h, body, replayed: false };
  }

  private checkClientCert(method: string, party: ParticipantRow, call?: Pick<ServerSurfaceCall, 'getAuthContext'>): void {
    const peer = peerCertificate(call);
    if (!peer) throw permissionDenied(`${method}: a client certificate is required (mutual TLS)`);
    if (party.certSha256) {
      const got = createHash('sha256').update(peer.raw).digest('hex');
      if (got !== party.certSha256) throw permissionDenied(`${method}: the client certificate is not the one enrolled for party "${party.name}"`);
    } else if (peer.subject?.CN !== party.name) {
      throw permissionDenied(`${method}: the client certificate is issued to "${String(peer.subject?.CN)}", not to party "${party.name}"`);
    }
  }

  /** Forgets the expired nonces at the head of `seen`; stops at the first live one. */
  private expireNonces(now: number): void {
    for (const [k, exp] of this.seen) {
      if (exp >= now) return;
      this.seen.delete(k);
      const party = k.slice(0, k.indexOf('|'));
      const left = (this.liveByParty.get(party) ?? 1) - 1;
      if (left > 0) this.liveByParty.set(party, left);
      else this.liveByParty.delete(party);
    }
  }
}

/** The client certificate of the call's TLS connection, if one was presented. */
function peerCertificate(call?: Pick<ServerSurfaceCall, 'getAuthContext'>) {
  const peer = call?.getAuthContext?.()?.sslPeerCertificate;
  return peer && peer.raw ? peer : null;
}
