/**
 * The masked-input uploads being received (ParticipantController.uploadMaskedInput), so that none
 * can hold the coordinator's memory beyond what its round needs:
 *
 *   - at most one upload per (party, run, round) is receiving at a time: a second one opened while
 *     the first still streams is refused RESOURCE_EXHAUSTED at its opening message. The slot is
 *     given back when the stream ends (complete, failed or cancelled), BEFORE its payload is
 *     committed, so a resend after a lost acknowledgement (issue #5) is never refused for its own
 *     first attempt still committing: RoundsService.submitMaskedInput decides between the two
 *     under its lock, as before;
 *   - `sweep()` (called whenever the rounds service publishes an event, i.e. at every phase move,
 *     round end and run abort, and before each chunk) asks the rounds service again whether each
 *     upload may go on (RoundsService.checkMaskedUpload, which changes nothing): an upload whose
 *     round left phase mask (other than an identical resend of an accepted input, still welcome
 *     until its round ends), or whose round completed or aborted, is ended with that refusal
 *     (FAILED_PRECONDITION) and its chunks are dropped;
 *   - `endAll` ends every upload (shutdown).
 * The idle limit (grpc.streamIdleMs) is the stream's own (grpc/decorators.ts guardedCallSource).
 */
import { resourceExhausted, status, StatusError, toStatusError } from '../grpc/errors';

export interface UploadSlot {
  party: string;
  runId: string;
  round: number;
  /** the BLAKE2b-256 its signed open announced */
  dataHash: Uint8Array;
  /** the open was a replayed nonce (PartyAuthenticator replay: 'report') */
  replayed: StatusError | null;
  /** bytes of chunks held by this upload now */
  heldBytes(): number;
  /** ends the upload's stream with `err` (its consumer drops what it holds) */
  end(err: StatusError): void;
}

export class UploadRegistry {
  private readonly open = new Map<string, UploadSlot>();

  /** `check` throws (a StatusError) when `slot` may no longer go on. */
  constructor(private readonly check: (slot: UploadSlot) => void) {}

  private static key(s: Pick<UploadSlot, 'party' | 'runId' | 'round'>): string {
    return `${s.party}\u0000${s.runId}\u0000${s.round}`;
  }

  /** Registers a receiving upload; RESOURCE_EXHAUSTED when that party already has one for the round. Returns the release. */
  claim(slot: UploadSlot): () => void {
    const k = UploadRegistry.key(slot);
    if (this.open.has(k)) {
      throw resourceExhausted(
        `UploadMaskedInput: party "${slot.party}" already has an upload in progress for round ${slot.round} of run ${slot.runId} (one at a time); send it again once that one has ended`,
      );
    }
    this.open.set(k, slot);
    return () => {
      if (this.open.get(k) === slot) this.open.delete(k);
    };
  }

  /** Ends every upload the rounds service no longer accepts (see the file comment). */
  sweep(): void {
    for (const [k, slot] of [...this.open]) {
      try {
        this.check(slot);
      } catch (e) {
        this.open.delete(k);
        const s = toStatusError(e);
        slot.end(new StatusError(s.code, `UploadMaskedInput: the upload was ended before it completed: ${s.message}`));
      }
    }
  }

  /** Ends every open upload with UNAVAILABLE `why` (shutdown: a node sends it again later). */
  endAll(why: string): void {
    for (const [k, slot] of [...this.open]) {
      this.open.delete(k);
      slot.end(new StatusError(status.UNAVAILABLE, `UploadMaskedInput: ${why}`));
    }
  }

  /** Uploads receiving now (all parties, or one). */
  count(party?: string): number {
    let n = 0;
    for (const s of this.open.values()) if (!party || s.party === party) n++;
    return n;
  }

  /** Bytes of chunks held by the uploads receiving now. */
  heldBytes(): number {
    let n = 0;
    for (const s of this.open.values()) n += s.heldBytes();
    return n;
  }
}
