/**
 * EventHub (coordinator/rounds/events.ts): a party's streams end when it is removed
 * (disconnect), also a stream that registered just after the removal's disconnect (its party was
 * authenticated before the removal committed): the check that runs once the stream is registered
 * ends it; a stream whose party is still enrolled stays open and gets what is published to it.
 */
import type { Subscription } from 'rxjs';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { sodiumReady } from '../../shared/crypto/sodium';
import { EventKind, Phase, PhaseEvent, type SignedEvent } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { EventHub, type EventFields } from '../../coordinator/rounds/events';

const fields = (kind: EventKind, round = 0): EventFields => ({ kind, runId: 'run-1', round, phase: Phase.PHASE_UNSPECIFIED, deadlineMs: '0', parties: [], modelVersion: 0, abortReason: '', payload: new Uint8Array(0) });

function watch(hub: EventHub, party: string, stillValid?: () => Promise<Error | null>) {
  const got: PhaseEvent[] = [];
  const state: { error: Error | null; sub: Subscription | null } = { error: null, sub: null };
  state.sub = hub.subscribe(party, () => fields(EventKind.EVENT_KIND_HELLO), stillValid).subscribe({
    next: (e: SignedEvent) => got.push(PhaseEvent.decode(e.body)),
    error: (e: Error) => (state.error = e),
  });
  return { got, state };
}

const tick = () => new Promise((r) => setImmediate(r));

test('removal ends the party\'s streams, also one registered after the disconnect; the others keep theirs', async () => {
  await sodiumReady();
  const hub = new EventHub('fed', ed25519Keygen().secretKey);
  const removed = new Error('party "insurer2" was removed from the federation');
  let enrolled = true;
  const check = async () => (enrolled ? null : removed);

  const early = watch(hub, 'insurer2', check); // registered before the removal
  const other = watch(hub, 'platform', async () => null);
  await tick();
  expect([early.state.error, other.state.error]).toEqual([null, null]);

  enrolled = false; // the removal commits ...
  hub.disconnect('insurer2', removed); // ... then disconnects what is registered
  expect(early.state.error).toBe(removed);

  // authenticated before the removal committed, registered after the disconnect
  const late = watch(hub, 'insurer2', check);
  expect(late.got.map((e) => e.kind)).toEqual([EventKind.EVENT_KIND_HELLO]);
  await tick();
  expect(late.state.error).toBe(removed);
  expect(hub.subscriberCount('insurer2')).toBe(0);

  // the other party's stream is untouched and still receives
  hub.publish('platform', fields(EventKind.EVENT_KIND_PHASE_STARTED, 1));
  expect(other.got.map((e) => e.kind)).toEqual([EventKind.EVENT_KIND_HELLO, EventKind.EVENT_KIND_PHASE_STARTED]);
  expect(other.state.error).toBeNull();
  expect(hub.subscriberCount('platform')).toBe(1);
  other.state.sub?.unsubscribe();
  expect(hub.subscriberCount()).toBe(0);
});

test('a party holds at most 4 streams: a fifth closes its oldest with RESOURCE_EXHAUSTED; the newer ones keep receiving', async () => {
  await sodiumReady();
  const hub = new EventHub('fed', ed25519Keygen().secretKey);
  const streams = Array.from({ length: 5 }, () => watch(hub, 'platform'));
  expect(streams[0].state.error).toMatchObject({ code: 8, message: 'party "platform" opened more than 4 event streams; this one, its oldest, was closed (is a second node running with this party\'s identity?)' });
  expect(streams.slice(1).map((s) => s.state.error)).toEqual([null, null, null, null]);
  expect(hub.subscriberCount('platform')).toBe(4);
  hub.publish('platform', fields(EventKind.EVENT_KIND_PHASE_STARTED, 1));
  expect(streams.map((s) => s.got.length)).toEqual([1, 2, 2, 2, 2]);
  // another party's streams are counted apart
  const other = watch(hub, 'insurer');
  expect(other.state.error).toBeNull();
  for (const s of [...streams, other]) s.state.sub?.unsubscribe();
  expect(hub.subscriberCount()).toBe(0);
});

describe('over gRPC', () => {
  test('the closed stream ends with RESOURCE_EXHAUSTED at the client', async () => {
    const { makeEnv, startCoordinator, operator, enrol, TestParty } = await import('./helpers/harness');
    const env = await makeEnv(['platform']);
    const coord = await startCoordinator(env, null);
    const p = new TestParty('platform', env, coord.grpcPort);
    try {
      const op = operator(env, coord.grpcPort);
      await enrol(env, op, [p], false);
      op.client.close();
      const streams = [];
      for (let i = 0; i < 5; i++) {
        const s = p.subscribe(coord.publicKey);
        await s.next((e) => e.kind === EventKind.EVENT_KIND_HELLO); // registered, in order
        streams.push(s);
      }
      await expect(streams[0].next(() => false)).rejects.toMatchObject({ code: 8, details: expect.stringMatching(/opened more than 4 event streams; this one, its oldest, was closed/) });
      expect(streams.slice(1).map((s) => s.error)).toEqual([null, null, null, null]);
      expect(coord.ctx.events.subscriberCount('platform')).toBe(4);
      for (const s of streams) s.cancel();
    } finally {
      p.close();
      await coord.close();
    }
  });
});
