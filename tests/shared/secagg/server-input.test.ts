/**
 * Bad input at the coordinator: a precise error, no state change, and the round still completes
 * with the exact sum afterwards.
 */
import { sodiumReady } from '../../../shared/crypto/sodium';
import { SecAggError } from '../../../shared/secagg/errors';
import { signMessage, type ClientMessage, type MaskedInput, type ShareKeys, type UnmaskShares } from '../../../shared/secagg/messages';
import { SecAggServer } from '../../../shared/secagg/server';
import { makeFederation, modSum, randomInput, RoundDriver, seededRng, TEST_RUN } from './harness';

beforeAll(() => sodiumReady());

function resign<M extends ClientMessage>(fed: ReturnType<typeof makeFederation>, msg: M, edit: Partial<M>): M {
  const { signature: _s, ...rest } = { ...msg, ...edit };
  return signMessage<M>(rest as unknown as Omit<M, 'signature'>, fed.keys.get(msg.sender)!.secretKey, TEST_RUN);
}

function refused(fn: () => unknown, code: string, re: RegExp) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SecAggError);
  expect((err as SecAggError).code).toBe(code);
  expect((err as Error).message).toMatch(re);
}

test('hostile messages in every phase are refused precisely and change nothing', () => {
  const fed = makeFederation(5, 'srv');
  const m = 64;
  const bits = 24;
  const rng = seededRng('srv-in');
  const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, bits)]));
  const d = new RoundDriver({ fed, params: { threshold: 3, degree: 0, bits }, m, inputs });
  const s = d.server;
  const A = fed.ids[0];
  const other = makeFederation(5, 'stranger');

  // --- advertise
  const ad = d.clients.get(A)!.start();
  refused(() => s.receive({ ...ad, round: 6 }), 'UNAUTHENTICATED', /round 6.*replayed/);
  refused(() => s.receive({ ...ad, federationId: 'other' }), 'UNAUTHENTICATED', /federation "other"/);
  refused(() => s.receive({ ...ad, sender: 'mallory' }), 'PERMISSION_DENIED', /unknown party "mallory"/);
  refused(() => s.receive(signMessage({ ...ad, signature: undefined }, other.keys.get(A)!.secretKey, TEST_RUN)), 'UNAUTHENTICATED', /signature does not verify/);
  refused(() => s.receive({ ...ad, cPk: new Uint8Array(31) } as ClientMessage), 'INVALID_ARGUMENT', /"cPk" expected Uint8Array of length 32/);
  refused(() => s.receive({ ...ad, type: 'bogus' } as unknown as ClientMessage), 'INVALID_ARGUMENT', /unknown message type "bogus"/);
  refused(() => s.receive(null as unknown as ClientMessage), 'INVALID_ARGUMENT', /expected an object/);
  expect(s.waitingFor).toEqual(fed.ids);
  s.receive(ad);
  refused(() => s.receive(ad), 'FAILED_PRECONDITION', /duplicate advertise-keys/);
  const adB = d.clients.get(fed.ids[1])!.start();
  refused(() => s.receive(resign(fed, adB, { sPk: ad.sPk })), 'INVALID_ARGUMENT', /reuses a public key advertised by party-000/);
  s.receive(adB);
  for (const id of fed.ids.slice(2)) s.receive(d.clients.get(id)!.start());
  d.step = s.deadlinePassed();
  expect(s.phase).toBe('share');

  // --- share: wrong recipients
  const sk = d.clients.get(A)!.handle(d.messageFor(A)) as ShareKeys;
  refused(() => s.receive(resign(fed, sk, { shares: sk.shares.slice(1) })), 'INVALID_ARGUMENT', /one ciphertext for each advertising neighbour/);
  refused(() => s.receive(resign(fed, sk, { shares: [...sk.shares.slice(1), sk.shares[1]] })), 'INVALID_ARGUMENT', /one ciphertext for each/);
  refused(() => s.receive(ad), 'FAILED_PRECONDITION', /arrived in phase share; it belongs to phase advertise/);
  s.receive(sk);
  for (const id of fed.ids.slice(1)) s.receive(d.clients.get(id)!.handle(d.messageFor(id)));
  d.step = s.deadlinePassed();

  // --- mask: wrong length, out of range, wrong bits
  const y = d.clients.get(A)!.handle(d.messageFor(A), inputs.get(A)) as MaskedInput;
  refused(() => s.receive(resign(fed, y, { vector: y.vector.subarray(1) })), 'INVALID_ARGUMENT', /63 entries, expected 64/);
  const big = y.vector.slice();
  big[5] = 2 ** bits;
  refused(() => s.receive(resign(fed, y, { vector: big })), 'INVALID_ARGUMENT', /entry 5 = 16777216 is not below 2\^24/);
  refused(() => s.receive(resign(fed, y, { bits: 32 })), 'INVALID_ARGUMENT', /bits=32, the round uses 24/);
  refused(() => s.receive({ ...y, vector: big }), 'UNAUTHENTICATED', /signature/); // tampered in transit
  s.receive(y);
  for (const id of fed.ids.slice(1)) s.receive(d.clients.get(id)!.handle(d.messageFor(id), inputs.get(id)));
  d.step = s.deadlinePassed();

  // --- consistency: signing another list
  const cs = d.clients.get(A)!.handle(d.messageFor(A));
  refused(() => s.receive(resign(fed, cs as never, { survivors: fed.ids.slice(1) } as never)), 'INVALID_ARGUMENT', /different from the one sent/);
  s.receive(cs);
  for (const id of fed.ids.slice(1)) s.receive(d.clients.get(id)!.handle(d.messageFor(id)));
  d.step = s.deadlinePassed();

  // --- unmask: wrong owners
  const us = d.clients.get(A)!.handle(d.messageFor(A)) as UnmaskShares;
  refused(() => s.receive(resign(fed, us, { selfMaskShares: us.selfMaskShares.slice(1) })), 'INVALID_ARGUMENT', /self-mask shares must be exactly for/);
  refused(() => s.receive(resign(fed, us, { keyShares: [{ owner: fed.ids[1], share: new Uint8Array(32) }] })), 'INVALID_ARGUMENT', /key shares must be exactly for \(\)/);
  s.receive(us);
  for (const id of fed.ids.slice(1)) s.receive(d.clients.get(id)!.handle(d.messageFor(id)));
  const out = s.deadlinePassed();
  expect(out.kind).toBe('done');
  if (out.kind === 'done') expect(Array.from(out.sum)).toEqual(Array.from(modSum([...inputs.values()], m, bits)));
});

test.each([
  [[0], 'done'],
  [[0, 3], 'aborted'],
] as const)('wrong self-mask shares from holders %j (n = 4, t = 3): %s; a wrong share is never used for the sum', (badHolders, outcome) => {
  const fed = makeFederation(4, 'wrong');
  const m = 8;
  const inputs = new Map(fed.ids.map((id) => [id, new Uint32Array(m).fill(1)]));
  const d = new RoundDriver({ fed, params: { threshold: 3, degree: 0, bits: 32 }, m, inputs });
  d.runUntil('unmask');
  if (d.step.kind !== 'send') throw new Error('unexpected');
  const bad = badHolders.map((i) => fed.ids[i]);
  for (const { to, message } of d.step.messages) {
    let reply = d.clients.get(to)!.handle(message) as UnmaskShares;
    if (bad.includes(to)) {
      const wrong = reply.selfMaskShares.map((s) => ({ owner: s.owner, share: s.share.map((b, i) => (i === 0 ? b ^ 1 : b)) }));
      reply = resign(fed, reply, { selfMaskShares: wrong });
    }
    d.server.receive(reply);
  }
  const out = d.server.deadlinePassed();
  expect(out.kind).toBe(outcome);
  // 4 shares per seed, 1 spare: one wrong share is located with the seed known (H(b_u) fixes it), two are not
  if (out.kind === 'done') {
    expect(Array.from(out.sum)).toEqual(new Array(m).fill(4));
    expect(out.wrongShares).toEqual(fed.ids.map((owner) => ({ holder: fed.ids[0], owner, kind: 'self' })));
  }
  if (out.kind === 'aborted') {
    expect(out.reason).toMatch(/^wrong unmask shares: cannot recover the self-mask seed of party-000: more than floor\(\(m - t \+ 1\)\/2\) = 1 of the m = 4 shares are wrong .* No holder could be identified$/);
  }
});

test('an injected clock closes phases at their deadline (no timers inside)', () => {
  const fed = makeFederation(3, 'clock');
  let now = 1000;
  const s = new SecAggServer({
    federationId: 'f',
    runId: TEST_RUN,
    round: 1,
    params: { threshold: 2, degree: 0, bits: 32 },
    roundSeed: new Uint8Array(32),
    vectorLength: 4,
    peers: fed.peers,
    identity: { secretKey: fed.coordinator.secretKey },
    clock: { now: () => now },
    phaseTimeoutMs: 500,
  });
  expect(s.tick()).toBeNull();
  now += 499;
  expect(s.tick()).toBeNull();
  now += 1;
  const step = s.tick();
  expect(step?.kind).toBe('aborted'); // nobody advertised: R1 fails
  expect(s.phase).toBe('aborted');
  expect(s.tick()).toBeNull();
});
