/**
 * The plug point between round orchestration (coordinator/rounds/rounds.service.ts: transport,
 * deadlines, storage, events) and the protocol that decides what a round computes.
 *
 * A RoundProtocol is a state machine with no I/O and no timers — exactly the shape of the
 * secure-aggregation server in shared/secagg/server.ts (`receive` / `deadlinePassed` / `abort`).
 * The rounds service owns the clock: it calls `closePhase()` when every expected party has sent
 * (`receive` returned complete) or when the phase deadline passes, whichever comes first, and
 * persists/pushes whatever the step says.
 *
 * WHERE THE SECURE-AGGREGATION CORE PLUGS IN: an adapter `coordinator/rounds/secagg-protocol.ts`
 * implementing RoundProtocolFactory around SecAggServer: decode each payload (secagg.proto) into a
 * ClientMessage for `receive`, encode the ServerStep's messages as payloads, and on `done` turn the
 * sum into the next model (decode, divide by gamma, undo rotation, average, FedAvg/FedAdam) with
 * the audit fields (survivor sets, DP parameters, aggregate hash). Pass it to createCoordinator().
 */
import type { Policy } from '../../shared/policy/schema';
import type { EntryOf } from '../../shared/audit/entries';

/**
 * The signed evidence of the current phase's accepted messages, for its audit `round-phase` entry
 * (shared/audit/evidence.ts): key advertisements, masked-input digests, the survivor list and the
 * survivors' signatures over it. One item per accepted party, each carrying that party's signature.
 */
export type PhaseEvidence = Partial<Pick<EntryOf<'round-phase'>, 'advertisements' | 'maskedInputs' | 'survivors' | 'survivorSignatures'>>;

/** Round phases, in order (DESIGN §4). Same names as shared/secagg's ServerPhase. */
export type RoundPhase = 'advertise' | 'share' | 'mask' | 'consistency' | 'unmask';
export const ROUND_PHASES: readonly RoundPhase[] = ['advertise', 'share', 'mask', 'consistency', 'unmask'];

export interface OutgoingPayload {
  to: string;
  payload: Uint8Array;
}

export type ProtocolStep =
  /** the next phase opens: `parties` are expected to send; `messages` go to individual parties */
  | { kind: 'next'; phase: RoundPhase; parties: string[]; messages: OutgoingPayload[]; audit?: Record<string, unknown> }
  /** the round produced the next global model (flat parameter bytes) */
  | {
      kind: 'done';
      model: Uint8Array;
      survivors: string[];
      audit: Record<string, unknown>;
      /** stored with the new model version, handed back as RoundStart.baseModel.state */
      state?: Uint8Array | null;
      /**
       * the round's unmasked sum (u32 little-endian; its BLAKE2b-256 is the audit entry's
       * aggregateHash), stored with the round for `audit verify --replay`; absent for a protocol
       * that does not expose one (the test-only plain-sum protocol)
       */
      aggregate?: Uint8Array;
      /**
       * the server's view of the round (shared/audit/server-view.ts encoding), when the policy lets
       * auditors recompute the aggregate (audit.auditorServerView); stored with the round
       */
      serverView?: Uint8Array;
    }
  | { kind: 'aborted'; reason: string };

export interface RoundProtocol {
  /** the phase currently collecting messages */
  readonly phase: RoundPhase | 'done' | 'aborted';
  /** parties expected in the current phase that have not sent yet */
  waitingFor(): string[];
  /**
   * Absorbs one party's message for the current phase. Throws an error with a gRPC status name in
   * `code` (StatusError / SecAggError) for a bad or out-of-phase message, changing no state.
   */
  receive(party: string, phase: RoundPhase, payload: Uint8Array): { complete: boolean };
  /**
   * Optional two-step form of `receive`, so the caller can make a message durable before the
   * protocol absorbs it (rounds.service.ts: a masked input is stored, then acknowledged).
   * `stage` runs the checks that need no state change and returns the audit evidence the message
   * will add to its phase's round-phase entry (null when the protocol has none for this phase);
   * it changes NO state. `apply()` then does exactly what `receive` does (it may still throw,
   * changing no state); call it at most once, before any other call on the protocol.
   */
  stage?(party: string, phase: RoundPhase, payload: Uint8Array): StagedMessage;
  /** Closes the current phase (all sent, or deadline): parties that did not send are dropped. */
  closePhase(): ProtocolStep;
  /** Aborts the round (operator, restart, shutdown). */
  abort(reason: string): void;
  /** The audit evidence of the phase collecting now (call before closePhase); none when the protocol has no signed messages. */
  evidence?(): PhaseEvidence;
  /**
   * The exact byte size of `party`'s masked-input payload in this round, when the protocol knows
   * it (null or absent: only the coordinator's grpc.maxUploadBytes bounds an upload). An upload
   * announcing another size is refused at its opening message, before any chunk is held.
   */
  maskedInputBytes?(party: string): number | null;
}

/** One masked-input evidence item, exactly as a `mask` round-phase entry's `maskedInputs` carries it. */
export type MaskedInputEvidence = NonNullable<PhaseEvidence['maskedInputs']>[number];

export interface StagedMessage {
  /** for a `mask` message, the item `evidence().maskedInputs` will hold for it once applied */
  evidence: MaskedInputEvidence | null;
  apply(): { complete: boolean };
}

export interface RoundStart {
  federationId: string;
  runId: string;
  round: number;
  policy: Policy;
  policyHash: string;
  parties: string[];
  /** the round's starting model and the protocol state stored with it (null for the initial model) */
  baseModel: { version: number; bytes: Uint8Array; state: Uint8Array | null };
}

export interface RoundProtocolFactory {
  /** A fresh protocol for one round, and what the first phase announces. */
  create(start: RoundStart): { protocol: RoundProtocol; first: { phase: RoundPhase; parties: string[]; messages: OutgoingPayload[] } };
}
