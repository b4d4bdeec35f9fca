/**
 * State machines: every (phase, event) pair of the client and of the server. Legal pairs move to
 * the documented next phase; illegal ones throw FAILED_PRECONDITION (or are otherwise refused)
 * and leave the phase unchanged. Messages come from a deterministic reference round, so the only
 * thing wrong with an illegal event is its timing.
 */
import { sodiumReady } from '../../../shared/crypto/sodium';
import type { ClientPhase } from '../../../shared/secagg/client';
import { SecAggError } from '../../../shared/secagg/errors';
import type { ClientMessage, ServerMessage } from '../../../shared/secagg/messages';
import type { ServerPhase } from '../../../shared/secagg/server';
import { makeFederation, randomInput, RoundDriver, runRound, seededRng, type Federation, type RoundRun } from './harness';

const m = 16;
const params = { threshold: 3, degree: 0, bits: 32 };
const A = 'party-000';
let fed: Federation;
let inputs: Map<string, Uint32Array>;
let reference: RoundRun;
const setup = () => ({ fed, params, m, inputs, rngLabel: 'walk' });

beforeAll(async () => {
  await sodiumReady();
  fed = makeFederation(4, 'walk');
  const rng = seededRng('walk-in');
  inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, 32)]));
  /** Reference transcript (deterministic: same rng label, deterministic Ed25519). */
  reference = runRound(setup());
});

type ClientEvent = 'start' | ServerMessage['type'] | 'abort';
const CLIENT_EVENTS: ClientEvent[] = ['start', 'server-keys', 'server-shares', 'consistency-request', 'unmask-request', 'abort'];
const CLIENT_PHASES: ClientPhase[] = ['setup', 'advertised', 'shared', 'masked', 'signed', 'done', 'aborted'];
const CLIENT_NEXT: Partial<Record<ClientPhase, [ClientEvent, ClientPhase]>> = {
  setup: ['start', 'advertised'],
  advertised: ['server-keys', 'shared'],
  shared: ['server-shares', 'masked'],
  masked: ['consistency-request', 'signed'],
  signed: ['unmask-request', 'done'],
};

const refServerMsg = (type: string) => reference.broadcast.find((b) => b.to === A && b.message.type === type)!.message;
const refClientMsg = (type: string, sender: string) => reference.sent.find((s) => s.type === type && s.sender === sender)!;

/** A driver whose client A is in `phase`. */
function clientIn(phase: ClientPhase) {
  const d = new RoundDriver(setup());
  const c = d.clients.get(A)!;
  const order: ClientPhase[] = ['setup', 'advertised', 'shared', 'masked', 'signed', 'done'];
  if (phase === 'aborted') {
    c.abort('test');
    return c;
  }
  if (order.indexOf(phase) >= 1) d.start();
  const next: Record<string, 'share' | 'mask' | 'consistency' | 'unmask'> = { shared: 'mask', masked: 'consistency', signed: 'unmask' };
  if (phase === 'shared' || phase === 'masked' || phase === 'signed') d.runUntil(next[phase]);
  if (phase === 'done') {
    while (d.step.kind === 'send') d.deliver();
  }
  expect(c.phase).toBe(phase);
  return c;
}

describe('client (phase x event)', () => {
  for (const phase of CLIENT_PHASES) {
    for (const ev of CLIENT_EVENTS) {
      const legal = CLIENT_NEXT[phase]?.[0] === ev || (ev === 'abort' && phase !== 'done' && phase !== 'aborted');
      test(`${phase} + ${ev}: ${legal ? 'moves' : 'refused'}`, () => {
        const c = clientIn(phase);
        const fire = () => {
          if (ev === 'start') return c.start();
          if (ev === 'abort') return c.abort('operator');
          return c.handle(refServerMsg(ev), inputs.get(A));
        };
        if (legal) {
          fire();
          expect(c.phase).toBe(ev === 'abort' ? 'aborted' : CLIENT_NEXT[phase]![1]);
        } else if (ev === 'abort') {
          fire(); // idempotent / no-op after the end
          expect(c.phase).toBe(phase);
        } else {
          expect(fire).toThrow(SecAggError);
          try {
            fire();
          } catch (e) {
            expect((e as SecAggError).code).toBe('FAILED_PRECONDITION');
          }
          expect(c.phase).toBe(phase);
        }
      });
    }
  }
});

type ServerEvent = ClientMessage['type'] | 'deadline' | 'abort';
const SERVER_EVENTS: ServerEvent[] = ['advertise-keys', 'share-keys', 'masked-input', 'consistency-signature', 'unmask-shares', 'deadline', 'abort'];
const SERVER_PHASES: ServerPhase[] = ['advertise', 'share', 'mask', 'consistency', 'unmask', 'done', 'aborted'];
const SERVER_ACCEPTS: Partial<Record<ServerPhase, ServerEvent>> = {
  advertise: 'advertise-keys',
  share: 'share-keys',
  mask: 'masked-input',
  consistency: 'consistency-signature',
  unmask: 'unmask-shares',
};
const SERVER_NEXT: Partial<Record<ServerPhase, ServerPhase>> = { advertise: 'share', share: 'mask', mask: 'consistency', consistency: 'unmask', unmask: 'done' };

/** A driver whose server is in `phase`, with every message of that phase received except A's. */
function serverIn(phase: ServerPhase) {
  const d = new RoundDriver({ ...setup(), drops: new Map([[A, 99]]) });
  if (phase === 'aborted') {
    d.server.abort('test');
    return d.server;
  }
  if (phase === 'done') {
    d.start();
    while (d.step.kind === 'send') d.deliver();
    return d.server;
  }
  // every party but A sends normally; A's message is delivered by the test from the reference run
  const order: ServerPhase[] = ['advertise', 'share', 'mask', 'consistency', 'unmask'];
  const target = order.indexOf(phase);
  for (const id of fed.ids) if (id !== A) d.server.receive(d.clients.get(id)!.start());
  if (target === 0) return d.server;
  d.server.receive(refClientMsg('advertise-keys', A) as ClientMessage);
  d.step = d.server.deadlinePassed();
  for (let p = 1; p < target; p++) {
    // deliver to all; A's client was never started, so replay A's reference messages instead
    if (d.step.kind !== 'send') throw new Error('unexpected end');
    for (const { to, message } of d.step.messages) {
      if (to === A) continue;
      d.server.receive(d.clients.get(to)!.handle(message, inputs.get(to)));
    }
    d.server.receive(refClientMsg(['share-keys', 'masked-input', 'consistency-signature', 'unmask-shares'][p - 1], A) as ClientMessage);
    d.step = d.server.deadlinePassed();
  }
  if (d.step.kind !== 'send') throw new Error('unexpected end');
  for (const { to, message } of d.step.messages) if (to !== A) d.server.receive(d.clients.get(to)!.handle(message, inputs.get(to)));
  expect(d.server.phase).toBe(phase);
  return d.server;
}

describe('server (phase x event)', () => {
  for (const phase of SERVER_PHASES) {
    for (const ev of SERVER_EVENTS) {
      const legal = SERVER_ACCEPTS[phase] === ev || (ev === 'deadline' && SERVER_NEXT[phase] !== undefined) || (ev === 'abort' && phase !== 'done');
      test(`${phase} + ${ev}: ${legal ? 'accepted' : 'refused'}`, () => {
        const s = serverIn(phase);
        if (ev === 'deadline') {
          if (legal) {
            s.deadlinePassed();
            expect(s.phase).toBe(SERVER_NEXT[phase]);
          } else {
            expect(() => s.deadlinePassed()).toThrow(SecAggError);
            expect(s.phase).toBe(phase);
          }
          return;
        }
        if (ev === 'abort') {
          if (legal) {
            expect(s.abort('operator').kind).toBe('aborted');
            expect(s.phase).toBe('aborted');
          } else {
            expect(() => s.abort('operator')).toThrow(SecAggError);
            expect(s.phase).toBe(phase);
          }
          return;
        }
        const msg = refClientMsg(ev, A) as ClientMessage;
        if (legal) {
          expect(s.receive(msg)).toEqual({ complete: true });
          expect(s.phase).toBe(phase);
          // and the same message again is a duplicate
          expect(() => s.receive(msg)).toThrow(/duplicate/);
        } else {
          let err: unknown;
          try {
            s.receive(msg);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(SecAggError);
          expect((err as SecAggError).code).toBe('FAILED_PRECONDITION');
          expect(s.phase).toBe(phase);
        }
      });
    }
  }
});
