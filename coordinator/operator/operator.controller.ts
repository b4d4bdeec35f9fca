/**
 * OperatorService (federation operator, DESIGN §8): enrol, list and remove parties, start/abort/
 * watch runs, issue, list and revoke auditor tokens. Every call needs `authorization: Bearer
 * <operator token>` metadata whose SHA-256 matches the config; auditor tokens and party keys are
 * refused here.
 */
import { Controller, Inject } from '@nestjs/common';
import type { Metadata, sendUnaryData, ServerReadableStream } from '@grpc/grpc-js';
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call';

type Call = Pick<ServerSurfaceCall, 'getAuthContext'>;
import {
  type AbortRunRequest,
  type EnrollRequest,
  type EnrollResponse,
  type IssueTokenRequest,
  type IssueTokenResponse,
  type ListParticipantsResponse,
  type ListTokensResponse,
  type OperatorServiceController,
  type ParticipantRecord,
  type RemoveParticipantRequest,
  type RunStatus,
  type RevokeTokenRequest,
  type RunStatusRequest,
  type StartRunChunk,
  type TokenRecord,
} from '../../proto/gen/nest/fedbridge/v1/federation';
import { CTX, type CoordinatorContext } from '../context';
import { alreadyExists, clientText, failedPrecondition, invalid, notFound, permissionDenied, toRpcException, unauthenticated } from '../grpc/errors';
import { bearerToken, newToken, tokenMatches, tokenSha256 } from '../identity/tokens';
import { ConflictError, type ParticipantRow, type TokenRow } from '../storage/repository';
import { createHash, randomBytes } from 'node:crypto';
import { sodium } from '../../shared/crypto/sodium';
import { ChunkAssembler, consumeChunkStream } from '../grpc/chunks';
import { answer, guardedCallSource, GrpcController } from '../grpc/decorators';
import { freeTextProblem, MAX_FREE_TEXT } from '../../shared/util/text';

const NAME_RE = /^[a-z][a-z0-9_-]{0,62}$/;
/** token ids as issueToken makes them */
const TOKEN_ID_RE = /^tok-[0-9a-f]{12}$/;

/**
 * An operator's free text (a reason, a label): at most MAX_FREE_TEXT (200) characters, no control
 * characters (shared/util/text.ts), else INVALID_ARGUMENT naming the field and the rule, before
 * anything is done. It goes into the audit log, events and the operator's own log lines.
 */
function checkFreeText(field: string, text: string): void {
  if (text.length > MAX_FREE_TEXT) throw invalid(`${field} is longer than ${MAX_FREE_TEXT} characters`);
  const problem = freeTextProblem(text, MAX_FREE_TEXT);
  if (problem) throw invalid(`${field} ${problem}`);
}
/** the longest lifetime a token may be issued with: 10 years */
const MAX_TOKEN_SECONDS = 10 * 365 * 24 * 3600;

/** What the operator may see of a token: never its hash. */
function tokenRecord(t: TokenRow): TokenRecord {
  return { tokenId: t.id, role: t.role, label: t.label, createdAtMs: String(t.createdAt), revokedAtMs: String(t.revokedAt ?? 0), expiresAtMs: String(t.expiresAt ?? 0) };
}

function record(p: ParticipantRow): ParticipantRecord {
  return { name: p.name, publicKey: Buffer.from(p.publicKey), certSha256: p.certSha256 ?? '', enrolledAtMs: String(p.enrolledAt) };
}

@Controller()
@GrpcController('OperatorService', { unary: ['enroll', 'listParticipants', 'removeParticipant', 'abortRun', 'getRunStatus', 'issueToken', 'listTokens', 'revokeToken'], clientStream: ['startRun'] })
export class OperatorController implements Omit<OperatorServiceController, 'startRun'> {
  constructor(@Inject(CTX) private readonly ctx: CoordinatorContext) {}

  private async guarded<T>(metadata: Metadata | undefined, call: Call | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      // operator.certSha256: the operator's own client certificate, not only one the CA signed (a
      // party's); checked first, so a token sent on another certificate learns nothing of itself
      const pinned = this.ctx.config.operator.certSha256;
      if (pinned) {
        const peer = call?.getAuthContext?.()?.sslPeerCertificate;
        if (!peer?.raw) throw permissionDenied("operator API: a client certificate is required (the operator's, from `fedbridge coordinator init`: certs/operator.crt)");
        if (createHash('sha256').update(peer.raw).digest('hex') !== pinned) {
          throw permissionDenied(`operator API: the client certificate (${String(peer.subject?.CN ?? '?')}) is not the operator's (operator.certSha256 in the coordinator config); use certs/operator.crt and certs/operator.key`);
        }
      }
      const values = metadata?.get('authorization') ?? [];
      const token = bearerToken(values);
      if (!token) {
        throw unauthenticated(
          values.length === 0
            ? 'operator API: missing "authorization: Bearer <operator token>" metadata'
            : 'operator API: the authorization metadata is not one "Bearer <operator token>" (a token of 16-512 characters from the token file); check FEDBRIDGE_OPERATOR_TOKEN or --token-file',
        );
      }
      if (!tokenMatches(token, this.ctx.config.operator.tokenSha256)) throw unauthenticated('operator API: the bearer token is not the operator token');
      return await fn();
    } catch (e) {
      throw toRpcException(e, this.ctx.log);
    }
  }

  enroll(request: EnrollRequest, metadata?: Metadata, call?: Call): Promise<EnrollResponse> {
    return this.guarded(metadata, call, async () => {
      if (!NAME_RE.test(request.name)) throw invalid(`name must be lowercase letters, digits, '-' or '_', starting with a letter (got "${clientText(request.name)}")`);
      if (!(request.publicKey instanceof Uint8Array) || request.publicKey.length !== 32) throw invalid(`public_key must be a 32-byte Ed25519 key, got ${request.publicKey?.length ?? 0} bytes`);
      if (request.certSha256 && !/^[0-9a-f]{64}$/.test(request.certSha256)) throw invalid('cert_sha256 must be 64 lowercase hex characters (SHA-256 of the client certificate DER)');
      // a binding that could never be checked would only look like protection
      if (request.certSha256 && !this.ctx.config.grpc.tls.requireClientCert) throw failedPrecondition('cert_sha256: this coordinator does not ask for client certificates (grpc.tls.requireClientCert is false), so a certificate binding could not be enforced; enrol without a certificate, or turn mutual TLS on');
      // the policy pins the coordinator's key apart from every party's: a party signing as the coordinator would forge its audit entries and events
      if (Buffer.compare(Buffer.from(request.publicKey), Buffer.from(this.ctx.identity.publicKey)) === 0) throw alreadyExists("public_key is the coordinator's own identity key; each party enrols with its own key (fedbridge node init prints it)");
      try {
        const audit = this.ctx.audit;
        const emit = (row: { name: string; publicKey: Uint8Array; certSha256: string | null }) => [audit.append({ type: 'participant-enrolled', name: row.name, publicKey: Buffer.from(row.publicKey).toString('base64'), certSha256: row.certSha256 })];
        const p = await audit.write(() => this.ctx.repo.enrollParticipant({ name: request.name, publicKey: new Uint8Array(request.publicKey), certSha256: request.certSha256 || null }, { emit }));
        this.ctx.log(`enrolled party "${p.name}"`);
        return { participant: record(p) };
      } catch (e) {
        if (e instanceof ConflictError) throw alreadyExists(e.message);
        throw e;
      }
    });
  }

  listParticipants(_request: unknown, metadata?: Metadata, call?: Call): Promise<ListParticipantsResponse> {
    return this.guarded(metadata, call, async () => ({ participants: (await this.ctx.repo.listParticipants()).map(record) }));
  }

  /**
   * Removes a party (it left, or its key is compromised): from the commit on every request it signs
   * is UNAUTHENTICATED ("not enrolled"), its open event streams end with UNAUTHENTICATED, and a run
   * can start with a policy without it. Refused while a run whose policy names the party is
   * running (FAILED_PRECONDITION: abort it or let it finish); a party outside the running run's
   * policy may be removed. The removal and its participant-removed audit entry commit together.
   */
  removeParticipant(request: RemoveParticipantRequest, metadata?: Metadata, call?: Call): Promise<ParticipantRecord> {
    return this.guarded(metadata, call, async () => {
      if (!NAME_RE.test(request.name)) throw invalid(`name must be lowercase letters, digits, '-' or '_', starting with a letter (got "${clientText(request.name)}")`);
      checkFreeText('reason', request.reason);
      const audit = this.ctx.audit;
      const emit = (row: ParticipantRow) => [audit.append({ type: 'participant-removed', name: row.name, publicKey: Buffer.from(row.publicKey).toString('base64'), reason: request.reason })];
      const r = await audit.write(() => this.ctx.repo.removeParticipant(request.name, request.reason, { emit }));
      if (r.outcome === 'unknown') throw notFound(`no party "${clientText(request.name)}" is enrolled (fedbridge coordinator parties)`);
      if (r.outcome === 'running') throw failedPrecondition(`run ${r.runId} is running and its policy names "${request.name}"; abort it (fedbridge coordinator runs abort) or let it finish, then remove "${request.name}"`);
      this.ctx.events.disconnect(r.row.name, unauthenticated(`party "${r.row.name}" was removed from the federation`));
      this.ctx.log(`removed party "${r.row.name}"${request.reason ? ` (${request.reason})` : ''}`);
      return record(r.row);
    });
  }

  /** Client stream: StartRunRequest first, then the initial model in chunks (no 4 MiB ceiling). */
  startRun(call: ServerReadableStream<StartRunChunk, RunStatus>, callback: sendUnaryData<RunStatus>): Promise<void> {
    const cfg = this.ctx.config.grpc;
    let start: StartRunChunk['start'];
    // the first message within grpc.streamIdleMs, and each next one too (an operator client that
    // opens the stream and goes silent holds nothing for longer)
    const guard = guardedCallSource(call, { what: 'StartRun', idleMs: cfg.streamIdleMs });
    return answer(callback, this.guarded(call.metadata, call, async () => {
      const model = await consumeChunkStream<StartRunChunk, Uint8Array>(
        guard.source,
        {
          onFirst: async (m) => {
            if (!m.start) throw invalid('StartRun: the first message must carry `start`');
            if (!m.start.policyYaml) throw invalid('StartRun: policy_yaml is empty');
            start = m.start;
            const total = Number(m.start.initialModelBytes);
            if (total === 0) return new ChunkAssembler('StartRun initial model', 0, 0, sodium().crypto_generichash(32, new Uint8Array(0), null), cfg.maxChunkBytes, 0);
            return new ChunkAssembler('StartRun initial model', total, null, m.start.initialModelHash, cfg.maxChunkBytes, cfg.maxUploadBytes);
          },
          chunk: (m) => ({ index: m.index, data: m.data, hasOpen: !!m.start }),
          onEnd: async (data) => {
            guard.stop();
            return data;
          },
        },
        'StartRun',
      ).finally(() => guard.stop());
      return this.ctx.rounds.startRun({
        policyYaml: start!.policyYaml,
        signatures: (start!.signatures ?? []).map((s) => ({ party: s.party, signature: new Uint8Array(s.signature ?? []) })),
        initialModel: model,
      });
    }), this.ctx.log);
  }

  /** Aborts a run; the reason (free text, checked before anything is done) goes into the audit log and the parties' events. */
  abortRun(request: AbortRunRequest, metadata?: Metadata, call?: Call): Promise<RunStatus> {
    return this.guarded(metadata, call, async () => {
      checkFreeText('reason', request.reason);
      return this.ctx.rounds.abortRun(request.runId, request.reason);
    });
  }

  getRunStatus(request: RunStatusRequest, metadata?: Metadata, call?: Call): Promise<RunStatus> {
    return this.guarded(metadata, call, () => this.ctx.rounds.status(request.runId));
  }

  issueToken(request: IssueTokenRequest, metadata?: Metadata, call?: Call): Promise<IssueTokenResponse> {
    return this.guarded(metadata, call, async () => {
      if (request.role !== 'auditor') throw invalid(`role must be "auditor" (operator credentials are not issued over the API), got "${request.role.slice(0, 32)}"`);
      checkFreeText('label', request.label);
      const seconds = Number(request.expiresInSeconds || '0');
      if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > MAX_TOKEN_SECONDS) throw invalid(`expires_in_seconds must be 0 (never) or a whole number of seconds up to ${MAX_TOKEN_SECONDS} (10 years), got ${String(request.expiresInSeconds).slice(0, 24)}`);
      const token = newToken();
      const id = `tok-${randomBytes(6).toString('hex')}`;
      const audit = this.ctx.audit;
      const emit = (row: TokenRow) => [audit.append({ type: 'token-issued', tokenId: row.id, role: row.role, label: row.label, ...(row.expiresAt !== null ? { expiresAt: row.expiresAt } : {}) })];
      const row = await audit.write(() => this.ctx.repo.insertToken({ id, role: 'auditor', tokenHash: tokenSha256(token), label: request.label, expiresInMs: seconds * 1000 }, { emit }));
      return { token, tokenId: id, role: 'auditor', expiresAtMs: String(row.expiresAt ?? 0) };
    });
  }

  listTokens(_request: unknown, metadata?: Metadata, call?: Call): Promise<ListTokensResponse> {
    return this.guarded(metadata, call, async () => ({ tokens: (await this.ctx.repo.listTokens()).map(tokenRecord) }));
  }

  /**
   * Revokes an auditor token: from the commit on, the audit API answers it 401 (every request looks
   * the token up; nothing is cached). The revocation and its audit entry commit together. An unknown
   * id is NOT_FOUND, a token already revoked FAILED_PRECONDITION; neither changes anything.
   */
  revokeToken(request: RevokeTokenRequest, metadata?: Metadata, call?: Call): Promise<TokenRecord> {
    return this.guarded(metadata, call, async () => {
      if (!TOKEN_ID_RE.test(request.tokenId)) throw invalid(`token_id must look like "tok-" and 12 hex digits, as issued (got "${request.tokenId.slice(0, 32)}")`);
      checkFreeText('reason', request.reason);
      const audit = this.ctx.audit;
      const emit = (row: TokenRow) => [audit.append({ type: 'token-revoked', tokenId: row.id, reason: request.reason })];
      const r = await audit.write(() => this.ctx.repo.revokeToken(request.tokenId, request.reason, { emit }));
      if (r.outcome === 'unknown') throw notFound(`no token with id ${request.tokenId} (fedbridge coordinator tokens list)`);
      if (r.outcome === 'already-revoked') throw failedPrecondition(`token ${request.tokenId} was already revoked at ${new Date(r.row.revokedAt!).toISOString()}`);
      this.ctx.log(`revoked token ${r.row.id} (${r.row.role}${r.row.label ? `, "${r.row.label}"` : ''})`);
      return tokenRecord(r.row);
    });
  }
}
