/**
 * Pushes phase events to subscribed parties (server-streaming Subscribe; no polling). Each event is
 * a serialized PhaseEvent signed by the coordinator (shared/proto/envelope.ts `signEvent`), with a
 * sequence number strictly increasing per coordinator process. The newest event addressed to each
 * party in the current phase is kept, so a party that (re)subscribes mid-phase gets it at once.
 *
 * A party has at most `maxStreamsPerParty` open streams (one node holds one; a few more cover
 * reconnects the server has not yet seen to be dead). A stream beyond that closes the party's
 * OLDEST with RESOURCE_EXHAUSTED, so a reconnecting node always gets through, and a client opening
 * streams in a loop holds a bounded number; the node treats that status as final (two nodes
 * running under one identity would otherwise keep taking turns).
 */
import { Observable, Subject } from 'rxjs';
import { PhaseEvent, type SignedEvent } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { signEvent } from '../../shared/proto/envelope';
import type { CoordinatorMetrics } from '../http/metrics';
import { resourceExhausted } from '../grpc/errors';

export const DEFAULT_MAX_STREAMS_PER_PARTY = 4;

type AuditFields = 'auditHead' | 'auditHeadIdx' | 'modelHash';
/** An event's fields; the audit fields (ROUND_COMPLETED only) default to empty. */
export type EventFields = Omit<PhaseEvent, 'sequence' | 'federationId' | AuditFields> & Partial<Pick<PhaseEvent, AuditFields>>;

export class EventHub {
  private sequence = 0;
  private readonly subs = new Map<string, Set<Subject<SignedEvent>>>();
  private readonly latest = new Map<string, PhaseEvent>();
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly federationId: string,
    private readonly secretKey: Uint8Array,
    private readonly metrics?: CoordinatorMetrics,
    private readonly maxStreamsPerParty = DEFAULT_MAX_STREAMS_PER_PARTY,
  ) {}

  private seal(fields: EventFields): { event: PhaseEvent; signed: SignedEvent } {
    const event: PhaseEvent = { auditHead: new Uint8Array(0), auditHeadIdx: '0', modelHash: new Uint8Array(0), ...fields, federationId: this.federationId, sequence: String(++this.sequence) };
    const body = PhaseEvent.encode(event).finish();
    return { event, signed: signEvent(body, this.secretKey) };
  }

  /** Sends one event to one party (and remembers it as that party's current-phase event). */
  publish(party: string, fields: EventFields): void {
    const { event, signed } = this.seal(fields);
    this.latest.set(party, event);
    for (const l of this.listeners) l();
    const set = this.subs.get(party);
    if (!set) return;
    for (const s of set) s.next(signed);
    this.metrics?.bytesSent.inc({ kind: 'event' }, signed.body.length * set.size);
  }

  /**
   * Calls `listener` at every publish: the rounds service publishes at each phase move, round end
   * and run end, so this is where state held for the round in progress (uploads being received,
   * coordinator/participant/uploads.ts) learns that the round moved on.
   */
  onPublish(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Forgets remembered events (a round finished). */
  clearLatest(): void {
    this.latest.clear();
  }

  /** The current-phase event remembered for `party`, if any. */
  latestFor(party: string): PhaseEvent | undefined {
    return this.latest.get(party);
  }

  /**
   * A stream for `party`: first a HELLO built by `hello()` (the current state, or the remembered
   * phase event re-sealed with a new sequence number), then every published event.
   */
  subscribe(party: string, hello: () => EventFields, stillValid?: () => Promise<Error | null>): Observable<SignedEvent> {
    return new Observable<SignedEvent>((subscriber) => {
      const subject = new Subject<SignedEvent>();
      const inner = subject.subscribe(subscriber);
      let set = this.subs.get(party);
      if (!set) this.subs.set(party, (set = new Set()));
      set.add(subject);
      this.metrics?.subscribers.inc();
      if (set.size > this.maxStreamsPerParty) {
        const oldest = set.values().next().value!;
        oldest.error(resourceExhausted(`party "${party}" opened more than ${this.maxStreamsPerParty} event streams; this one, its oldest, was closed (is a second node running with this party's identity?)`));
      }
      subscriber.next(this.seal(hello()).signed);
      // the party was authenticated before this registration; a removal that committed in between
      // has already called disconnect(), which this stream missed: look again, now that it is
      // registered (a later removal's disconnect() will find it)
      stillValid?.().then(
        (err) => err && subject.error(err),
        (err: unknown) => subject.error(err),
      );
      return () => {
        inner.unsubscribe();
        set!.delete(subject);
        if (set!.size === 0 && this.subs.get(party) === set) this.subs.delete(party);
        this.metrics?.subscribers.dec();
      };
    });
  }

  /** Ends `party`'s open streams with `error` (it was removed from the federation). */
  disconnect(party: string, error: Error): void {
    const set = this.subs.get(party);
    if (!set) return;
    this.subs.delete(party);
    for (const s of [...set]) s.error(error);
  }

  /** Ends every stream (shutdown). */
  completeAll(): void {
    for (const set of this.subs.values()) for (const s of set) s.complete();
    this.subs.clear();
  }

  subscriberCount(party?: string): number {
    if (party) return this.subs.get(party)?.size ?? 0;
    let n = 0;
    for (const s of this.subs.values()) n += s.size;
    return n;
  }
}
