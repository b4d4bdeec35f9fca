/**
 * ParticipantService: the gRPC face of enrolment-authenticated parties. Thin: every request is
 * authenticated (identity/authenticate.ts), bound to the open round (RoundsService.checkBinding)
 * and handed to the round orchestration; streams are chunked both ways.
 */
import { Controller, Inject } from '@nestjs/common';
import type { Metadata, sendUnaryData, ServerReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call';
import { Observable, from, mergeMap } from 'rxjs';
import {
  type ModelChunk,
  type ParticipantServiceController,
  type PhaseAck,
  type ReceiptAck,
  type SignedEvent,
  type SignedRequest,
  type UploadAck,
  type UploadChunk,
} from '../../proto/gen/nest/fedbridge/v1/federation';
import { CTX, type CoordinatorContext } from '../context';
import { StatusError, invalid, notFound, status, toRpcException, toStatusError, unauthenticated } from '../grpc/errors';
import { ChunkAssembler, consumeChunkStream } from '../grpc/chunks';
import { answer, guardedCallSource, GrpcController } from '../grpc/decorators';
import { PHASE_ENUM } from '../rounds/rounds.service';
import type { RoundPhase } from '../rounds/protocol';
import { acceptReceipt } from '../audit/receipts';
import { replayError } from '../identity/authenticate';
import { ModelAccess } from './model-access';

/** The RPCs whose signed body is a PhaseMessageBody (a SecAgg payload). */
type PhaseMethod = 'AdvertiseKeys' | 'ShareKeys' | 'ConsistencyCheck' | 'Unmasking';

type Call = Pick<ServerSurfaceCall, 'getAuthContext'>;

@Controller()
@GrpcController('ParticipantService', {
  unary: ['subscribe', 'advertiseKeys', 'shareKeys', 'consistencyCheck', 'unmasking', 'downloadModel', 'submitReceipt'],
  clientStream: ['uploadMaskedInput'],
})
export class ParticipantController implements Omit<ParticipantServiceController, 'uploadMaskedInput'> {
  /** who may download which model version (the parties of its run's policy) */
  private readonly modelAccess: ModelAccess;

  constructor(@Inject(CTX) private readonly ctx: CoordinatorContext) {
    this.modelAccess = new ModelAccess(ctx.repo);
  }

  private fail(e: unknown): never {
    const s = toStatusError(e, this.ctx.log);
    this.ctx.metrics.rejected.inc({ code: status[s.code] ?? String(s.code) });
    throw toRpcException(s);
  }

  subscribe(request: SignedRequest, _metadata?: Metadata, call?: Call): Observable<SignedEvent> {
    return from(this.ctx.auth.authenticate('Subscribe', request, call)).pipe(
      mergeMap(({ party }) =>
        this.ctx.events.subscribe(party.name, () => this.ctx.rounds.helloFor(party.name), async () => {
          const now = await this.ctx.repo.participantByName(party.name);
          return now && Buffer.compare(Buffer.from(now.publicKey), Buffer.from(party.publicKey)) === 0 ? null : unauthenticated(`party "${party.name}" was removed from the federation`);
        }) as Observable<SignedEvent>,
      ),
      (src) =>
        new Observable<SignedEvent>((sub) => {
          const s = src.subscribe({
            next: (v) => sub.next(v),
            complete: () => sub.complete(),
            error: (e) => {
              try {
                this.fail(e);
              } catch (rpc) {
                sub.error(rpc);
              }
            },
          });
          return () => s.unsubscribe();
        }),
    );
  }

  private async phaseMessage(method: PhaseMethod, phase: RoundPhase, request: SignedRequest, call?: Call): Promise<PhaseAck> {
    try {
      const { party, header, body } = await this.ctx.auth.authenticate(method, request, call);
      const r = await this.ctx.rounds.submit(party.name, phase, header.runId, header.round, body.payload);
      return { runId: header.runId, round: header.round, phase: PHASE_ENUM[phase], accepted: r.accepted };
    } catch (e) {
      this.fail(e);
    }
  }

  advertiseKeys(request: SignedRequest, _m?: Metadata, call?: Call): Promise<PhaseAck> {
    return this.phaseMessage('AdvertiseKeys', 'advertise', request, call);
  }

  shareKeys(request: SignedRequest, _m?: Metadata, call?: Call): Promise<PhaseAck> {
    return this.phaseMessage('ShareKeys', 'share', request, call);
  }

  consistencyCheck(request: SignedRequest, _m?: Metadata, call?: Call): Promise<PhaseAck> {
    return this.phaseMessage('ConsistencyCheck', 'consistency', request, call);
  }

  unmasking(request: SignedRequest, _m?: Metadata, call?: Call): Promise<PhaseAck> {
    return this.phaseMessage('Unmasking', 'unmask', request, call);
  }

  /**
   * Masked input, streamed: the first message carries only the signed UploadOpenBody (total size,
   * chunk count, BLAKE2b-256 of the data), then chunks with index 0..n-1, each at most
   * grpc.maxChunkBytes. Checked as it arrives (RESOURCE_EXHAUSTED for an oversize chunk or total,
   * INVALID_ARGUMENT for a gap, an extra chunk, a size or hash mismatch); the round sees the data
   * only after the whole upload checked out, so a rejected upload changes nothing.
   *
   * Idempotent (issue #5): a masked input sent again after its acknowledgement was lost gets the
   * same UploadAck (run_id, round, received_bytes) and changes nothing, whether it comes under a
   * freshly signed open or as a replay of the same signed open (the one RPC whose replayed nonce
   * the authenticator reports instead of refusing). The resend runs every check above: only a
   * complete stream that matches its signed hash reaches RoundsService.submitMaskedInput, which
   * compares the BLAKE2b-256 of the whole payload with the accepted input's (identical: the same
   * ack; different: ALREADY_EXISTS). A replayed open that is not such a resend is refused
   * ALREADY_EXISTS as before. See RoundsService.checkMaskedUpload for the window and the outcomes.
   */
  uploadMaskedInput(call: ServerReadableStream<UploadChunk, UploadAck>, callback: sendUnaryData<UploadAck>): Promise<void> {
    const cfg = this.ctx.config.grpc;
    let bound: { party: string; runId: string; round: number; replayed: StatusError | null } | null = null;
    let asm: ChunkAssembler | null = null;
    let release: () => void = () => undefined;
    // the first message within grpc.streamIdleMs, and each next one too; `guard.end` ends it from outside
    const guard = guardedCallSource(call, { what: 'UploadMaskedInput', idleMs: cfg.streamIdleMs });
    const done = consumeChunkStream<UploadChunk, UploadAck>(
      guard.source,
      {
        onFirst: async (msg) => {
          if (!msg.open) throw invalid('UploadMaskedInput: the first message must carry `open` (a signed UploadOpenBody)');
          if (msg.data && msg.data.length) throw invalid('UploadMaskedInput: the open message must not carry data');
          const { party, header, body, replayed } = await this.ctx.auth.authenticate('UploadMaskedInput', msg.open, call, { replay: 'report' });
          const replay = replayed ? replayError('UploadMaskedInput', party.name) : null;
          // binding, or an early refusal of what cannot be an identical resend (decided for good in onEnd)
          this.ctx.rounds.checkMaskedUpload(party.name, header.runId, header.round, body.dataHash, replay);
          const total = Number(body.totalBytes);
          if (total === 0) throw invalid('UploadMaskedInput: total_bytes must be positive');
          const a = new ChunkAssembler('UploadMaskedInput', total, body.chunkCount, body.dataHash, cfg.maxChunkBytes, cfg.maxUploadBytes);
          // the round's own size, before a single chunk is held (the upload limit alone allows 512 MiB)
          const expected = this.ctx.rounds.expectedMaskedInputBytes(party.name, header.runId, header.round);
          if (expected !== null && total !== expected) {
            throw invalid(`UploadMaskedInput: total_bytes is ${total}, the masked input of party "${party.name}" for round ${header.round} is ${expected} bytes`);
          }
          // one upload receiving per party and round (RESOURCE_EXHAUSTED for a second one)
          release = this.ctx.uploads.claim({
            party: party.name,
            runId: header.runId,
            round: header.round,
            dataHash: body.dataHash,
            replayed: replay,
            heldBytes: () => a.receivedBytes,
            end: (e) => guard.end(e),
          });
          bound = { party: party.name, runId: header.runId, round: header.round, replayed: replay };
          asm = a;
          return a;
        },
        chunk: (msg) => {
          this.ctx.uploads.sweep(); // a round that moved on without an event still ends this upload
          return { index: msg.index, data: msg.data, hasOpen: !!msg.open };
        },
        onEnd: async (data) => {
          // the stream is complete: its slot is free again (a resend racing this commit is decided
          // by submitMaskedInput under the rounds lock), and the chunks are one buffer now
          release();
          const b = bound!;
          const r = await this.ctx.rounds.submitMaskedInput(b.party, b.runId, b.round, data, b.replayed);
          // only accepted bytes are counted: an identical resend's apart, so `upload` counts each
          // input once; a refused upload (wrong length, protocol refusal, replay) not at all
          this.ctx.metrics.bytesReceived.inc({ kind: r.resent ? 'upload-resend' : 'upload' }, data.length);
          return { runId: b.runId, round: b.round, receivedBytes: String(data.length) };
        },
      },
      'UploadMaskedInput',
    )
      .catch((e) => {
        const s = toStatusError(e, this.ctx.log);
        this.ctx.metrics.rejected.inc({ code: status[s.code] ?? String(s.code) });
        throw s;
      })
      .finally(() => {
        guard.stop();
        release();
        (asm as ChunkAssembler | null)?.release();
      });
    return answer(callback, done, this.ctx.log);
  }

  /**
   * The model as a server stream: ModelInfo first, then chunks of at most grpc.maxChunkBytes, views
   * into the one cached buffer of that version (participant/downloads.ts). Chunks are produced as
   * the client reads: the next is written only once grpc-js accepts more (`drain`). Nest's
   * observable writer would buffer whatever the observable emits while the client does not read
   * (server-grpc.js valuesWaitingToBeDrained), so the chunks are written to the call here and the
   * observable carries only the end or the error. At most grpc.maxDownloadsPerParty downloads per
   * party (RESOURCE_EXHAUSTED); a client that reads nothing for grpc.streamIdleMs is ended
   * DEADLINE_EXCEEDED and the download's slot released. Only the parties of the policy of the run a
   * version belongs to may download it (participant/model-access.ts; PERMISSION_DENIED otherwise).
   */
  downloadModel(request: SignedRequest, _m?: Metadata, call?: Call & Partial<Pick<ServerWritableStream<SignedRequest, ModelChunk>, 'write' | 'once' | 'off' | 'on'>>): Observable<ModelChunk> {
    const cfg = this.ctx.config.grpc;
    return new Observable<ModelChunk>((sub) => {
      let stopped = false;
      let release = () => undefined as void;
      let wake: (() => void) | null = null;
      const onCancel = () => {
        stopped = true;
        wake?.();
      };
      call?.on?.('cancelled', onCancel);
      const waitDrain = () =>
        new Promise<boolean>((resolve) => {
          const t = setTimeout(() => done(false), cfg.streamIdleMs);
          const done = (ok: boolean) => {
            clearTimeout(t);
            call!.off!('drain', onDrain);
            wake = null;
            resolve(ok);
          };
          const onDrain = () => done(true);
          wake = () => done(true);
          call!.once!('drain', onDrain);
        });
      const work = async () => {
        const { party, body } = await this.ctx.auth.authenticate('DownloadModel', request, call);
        const row = await this.ctx.models.get(body.version);
        if (!row) throw notFound(body.version === 0 ? 'no model version exists yet' : `model version ${body.version} does not exist`);
        await this.modelAccess.check(party, row);
        const bytes = row.bytes;
        const count = Math.max(1, Math.ceil(bytes.length / cfg.maxChunkBytes));
        const slot = this.ctx.downloads.claim(party.name, row.version, count);
        release = slot.release;
        const messages = function* (): Generator<ModelChunk> {
          yield { info: { version: row.version, modelHash: row.hash, totalBytes: String(bytes.length), chunkCount: count, parentVersion: row.parent ?? 0 }, index: 0, data: new Uint8Array(0) };
          for (let i = 0; i < count; i++) yield { info: undefined, index: i, data: bytes.subarray(i * cfg.maxChunkBytes, Math.min(bytes.length, (i + 1) * cfg.maxChunkBytes)) };
        };
        if (!call?.write) {
          for (const m of messages()) sub.next(m); // no raw call (not over gRPC): the observable carries the chunks
        } else {
          for (const m of messages()) {
            if (stopped) return;
            const more = call.write(m);
            if (!m.info) slot.progress.written++;
            if (!more && !(await waitDrain()) && !stopped) {
              throw new StatusError(status.DEADLINE_EXCEEDED, `DownloadModel: the client read nothing for ${cfg.streamIdleMs} ms (grpc.streamIdleMs); the download was ended after ${slot.progress.written} of ${count} chunks`);
            }
          }
        }
        this.ctx.metrics.bytesSent.inc({ kind: 'model' }, bytes.length);
      };
      work().then(
        () => {
          release();
          if (!stopped) sub.complete();
        },
        (e) => {
          release();
          if (stopped) return;
          try {
            this.fail(e);
          } catch (rpc) {
            sub.error(rpc);
          }
        },
      );
      return () => {
        stopped = true;
        wake?.();
        release();
        call?.off?.('cancelled', onCancel);
      };
    });
  }

  /** A party's receipt over the audit chain head after a completed round (coordinator/audit/receipts.ts). */
  async submitReceipt(request: SignedRequest, _m?: Metadata, call?: Call): Promise<ReceiptAck> {
    try {
      const { party, header, body } = await this.ctx.auth.authenticate('SubmitReceipt', request, call);
      const logIndex = await acceptReceipt(this.ctx, party, header, body);
      this.ctx.log(`receipt of "${party.name}" for ${header.runId}/${header.round} recorded as audit entry ${logIndex}`);
      return { logIndex: String(logIndex) };
    } catch (e) {
      this.fail(e);
    }
  }
}

