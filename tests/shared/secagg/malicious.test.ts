/**
 * A malicious or faulty coordinator: the client refuses forged, replayed, inconsistent and
 * over-asking messages. Message-level faults (replay, bad signature, out of phase, misaddressed)
 * throw and leave the client's state unchanged; protocol violations in an authentic message abort
 * the client (secrets wiped) with code ABORTED.
 */
import { sodiumReady } from '../../../shared/crypto/sodium';
import { SecAggError } from '../../../shared/secagg/errors';
import {
  signMessage,
  type ConsistencyRequest,
  type ServerKeys,
  type ServerMessage,
  type ServerShares,
  type UnmaskRequest,
} from '../../../shared/secagg/messages';
import { makeFederation, randomInput, RoundDriver, seededRng, TEST_RUN } from './harness';

beforeAll(() => sodiumReady());

const n = 5;
const m = 32;
const params = { threshold: 3, degree: 0, bits: 32 };

function driver(drops = new Map<string, number>(), round = 7, runId = TEST_RUN) {
  const fed = makeFederation(n, 'mal');
  const rng = seededRng('mal-in');
  const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, 32)]));
  return { fed, d: new RoundDriver({ fed, params, m, inputs, drops, round, runId, rngLabel: `mal/${runId}/${round}` }), inputs };
}

/** Re-signs an edited coordinator message with the coordinator's key. */
function forge<M extends ServerMessage>(fed: ReturnType<typeof makeFederation>, msg: M, edit: Partial<M>): M {
  const { signature: _sig, ...rest } = { ...msg, ...edit };
  return signMessage<M>(rest as unknown as Omit<M, 'signature'>, fed.coordinator.secretKey, TEST_RUN);
}

function expectCode(fn: () => unknown, code: string, msg?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SecAggError);
    expect((e as SecAggError).code).toBe(code);
    if (msg) expect((e as Error).message).toMatch(msg);
    return;
  }
  throw new Error('expected a refusal');
}

describe('client refuses a malicious coordinator at unmasking', () => {
  const A = 'party-000';
  // party-004 drops after sharing keys: survivors 000..003, party-004's key shares are requested
  const setup = () => {
    const x = driver(new Map([['party-004', 3]]));
    x.d.runUntil('unmask');
    return { ...x, req: x.d.messageFor(A) as UnmaskRequest };
  };

  test('the honest request is accepted (control)', () => {
    const { d, req } = setup();
    expect(req.keySharesOf).toEqual(['party-004']);
    const out = d.clients.get(A)!.onUnmaskRequest(req);
    expect(out.type).toBe('unmask-shares');
    expect(d.clients.get(A)!.phase).toBe('done');
  });

  test('asked for both the self-mask share and the key share of one peer', () => {
    const { fed, d, req } = setup();
    const bad = forge(fed, req, { keySharesOf: ['party-001', 'party-004'] });
    expectCode(() => d.clients.get(A)!.onUnmaskRequest(bad), 'ABORTED', /both the self-mask share and the key share of party-001/);
    expect(d.clients.get(A)!.phase).toBe('aborted');
  });

  test('a party listed alive and dropped at once (key share of a survivor)', () => {
    const { fed, d, req } = setup();
    const bad = forge(fed, req, { selfMaskSharesOf: req.selfMaskSharesOf.filter((v) => v !== 'party-002'), keySharesOf: ['party-002', 'party-004'] });
    expectCode(() => d.clients.get(A)!.onUnmaskRequest(bad), 'ABORTED', /listed alive and dropped/);
  });

  test('a self-mask share of a party that is not on the signed survivor list', () => {
    const { fed, d, req } = setup();
    const bad = forge(fed, req, { selfMaskSharesOf: [...req.selfMaskSharesOf, 'party-004'], keySharesOf: [] });
    expectCode(() => d.clients.get(A)!.onUnmaskRequest(bad), 'ABORTED', /not on the survivor list/);
  });

  test('a survivor list different from the one the client signed', () => {
    const { fed, d, req } = setup();
    const bad = forge(fed, req, { survivors: req.survivors.slice(1) });
    expectCode(() => d.clients.get(A)!.onUnmaskRequest(bad), 'ABORTED', /differs from the one we signed/);
  });

  test('too few survivor signatures (< t)', () => {
    const { fed, d, req } = setup();
    const bad = forge(fed, req, { signatures: req.signatures.slice(0, 2) });
    expectCode(() => d.clients.get(A)!.onUnmaskRequest(bad), 'ABORTED', /only 2 survivors signed/);
  });

  test('survivor signatures replayed from the same round number of an earlier run', () => {
    // round numbers restart in every run; the run id in the signed bytes keeps run-A's signatures out of run-B
    const a = driver(new Map([['party-004', 3]]), 7, 'run-A');
    a.d.runUntil('unmask');
    const reqA = a.d.messageFor(A) as UnmaskRequest;
    const { fed, d, req } = setup();
    expect(reqA.survivors).toEqual(req.survivors);
    expectCode(() => d.clients.get(A)!.onUnmaskRequest(forge(fed, req, { signatures: reqA.signatures })), 'ABORTED', /does not verify/);
    expect(d.clients.get(A)!.phase).toBe('aborted');
  });

  test('a forged or swapped survivor signature', () => {
    const { fed, d, req } = setup();
    const sigs = req.signatures.map((s) => ({ ...s }));
    sigs[1] = { signer: sigs[1].signer, signature: sigs[2].signature };
    expectCode(() => d.clients.get(A)!.onUnmaskRequest(forge(fed, req, { signatures: sigs })), 'ABORTED', /does not verify/);
  });

  test('split views: parties were shown different survivor lists, so their signatures do not match ours', () => {
    // The coordinator tells A that party-003 dropped and tells the others it survived.
    const { fed, d } = driver(new Map([['party-004', 3]]));
    const step = d.runUntil('consistency');
    if (step.kind !== 'send') throw new Error('unexpected');
    const honest = step.messages[0].message as ConsistencyRequest;
    const sigs = new Map<string, Uint8Array>();
    for (const { to } of step.messages) {
      const list = to === A ? honest.survivors.filter((v) => v !== 'party-003') : honest.survivors;
      const out = d.clients.get(to)!.onConsistencyRequest(forge(fed, honest, { survivors: list }));
      sigs.set(to, out.signature);
    }
    const toA: UnmaskRequest = signMessage<UnmaskRequest>(
      {
        type: 'unmask-request',
        federationId: honest.federationId,
        round: honest.round,
        recipient: A,
        survivors: honest.survivors.filter((v) => v !== 'party-003'),
        signatures: ['party-000', 'party-001', 'party-002'].map((s) => ({ signer: s, signature: sigs.get(s)! })),
        selfMaskSharesOf: ['party-000', 'party-001', 'party-002'],
        keySharesOf: ['party-003', 'party-004'],
      },
      fed.coordinator.secretKey,
      TEST_RUN,
    );
    expectCode(() => d.clients.get(A)!.onUnmaskRequest(toA), 'ABORTED', /signature of party-001 does not verify over our survivor list/);
  });
});

describe('client refuses replays and forgeries without changing state', () => {
  test('a coordinator message of an earlier round (validly signed) is refused; the genuine one still works', () => {
    const old = driver(new Map(), 6);
    old.d.runUntil('share');
    const oldKeys = old.d.messageFor('party-000') as ServerKeys;
    const cur = driver(new Map(), 7);
    cur.d.runUntil('share');
    const c = cur.d.clients.get('party-000')!;
    expectCode(() => c.onServerKeys(oldKeys), 'UNAUTHENTICATED', /round 6.*replayed/);
    expect(c.phase).toBe('advertised');
    expect(c.onServerKeys(cur.d.messageFor('party-000') as ServerKeys).type).toBe('share-keys');
    expect(c.phase).toBe('shared');
    // the same message again (a replay within the round) is out of phase
    expectCode(() => c.onServerKeys(cur.d.messageFor('party-000') as ServerKeys), 'FAILED_PRECONDITION');
    expect(c.phase).toBe('shared');
  });

  test('a bad coordinator signature, a misaddressed message and a malformed message are refused', () => {
    const { d } = driver();
    d.runUntil('mask');
    const c = d.clients.get('party-000')!;
    const msg = d.messageFor('party-000') as ServerShares;
    const tampered = { ...msg, signature: msg.signature.slice() };
    tampered.signature[3] ^= 1;
    expectCode(() => c.onServerShares(tampered, new Uint32Array(m)), 'UNAUTHENTICATED', /coordinator signature/);
    expectCode(() => c.onServerShares(d.messageFor('party-001') as ServerShares, new Uint32Array(m)), 'INVALID_ARGUMENT', /addressed to "party-001"/);
    expectCode(() => c.onServerShares({ ...msg, shares: 'x' } as unknown as ServerShares, new Uint32Array(m)), 'INVALID_ARGUMENT', /"shares"/);
    expectCode(() => c.onServerShares(msg, new Uint32Array(m + 1)), 'INVALID_ARGUMENT');
    expect(c.phase).toBe('shared');
    expect(c.onServerShares(msg, new Uint32Array(m)).type).toBe('masked-input');
  });

  test('input entries >= 2^b are refused with the coordinate named, state unchanged', () => {
    const fed = makeFederation(3, 'bits');
    const inputs = new Map(fed.ids.map((id) => [id, new Uint32Array(4)]));
    const d = new RoundDriver({ fed, params: { threshold: 2, degree: 0, bits: 12 }, m: 4, inputs });
    d.runUntil('mask');
    const c = d.clients.get(fed.ids[0])!;
    expectCode(() => c.onServerShares(d.messageFor(fed.ids[0]) as ServerShares, Uint32Array.of(1, 2, 4096, 3)), 'INVALID_ARGUMENT', /"input"\[2\] = 4096 is not below 2\^12/);
    expect(c.phase).toBe('shared');
  });
});

describe('client refuses authentic but inconsistent key material', () => {
  test('forged advertisement, duplicate party, altered own keys, too few advertisers', () => {
    const cases: [string, (k: ServerKeys) => Partial<ServerKeys>, RegExp][] = [
      ['forged ad', (k) => ({ advertisements: k.advertisements.map((a, i) => (i === 1 ? { ...a, cPk: k.advertisements[2].cPk } : a)) }), /invalid signature/],
      ['duplicate ad', (k) => ({ advertisements: [...k.advertisements, k.advertisements[1]] }), /two advertisements/],
      ['own ad dropped', (k) => ({ advertisements: k.advertisements.slice(1) }), /our own advertisement/],
      ['too few', (k) => ({ advertisements: k.advertisements.slice(0, 2) }), /fewer than t=3/],
    ];
    for (const [, edit, re] of cases) {
      const { fed, d } = driver();
      d.runUntil('share');
      const k = d.messageFor('party-000') as ServerKeys;
      const c = d.clients.get('party-000')!;
      expectCode(() => c.onServerKeys(forge(fed, k, edit(k))), 'ABORTED', re);
      expect(c.phase).toBe('aborted');
      // after aborting, everything else is refused
      expectCode(() => c.onServerKeys(k), 'FAILED_PRECONDITION');
    }
  });

  test('a share ciphertext that does not decrypt, or from a non-neighbour', () => {
    const { fed, d } = driver();
    d.runUntil('mask');
    const msg = d.messageFor('party-000') as ServerShares;
    const bad = msg.shares.map((s, i) => (i === 0 ? { ...s, ciphertext: s.ciphertext.map((b, j) => (j === 30 ? b ^ 1 : b)) } : s));
    const c = d.clients.get('party-000')!;
    expectCode(() => c.onServerShares(forge(fed, msg, { shares: bad }), new Uint32Array(m)), 'ABORTED', /does not decrypt/);
    const d2 = driver().d;
    d2.runUntil('mask');
    const msg2 = d2.messageFor('party-000') as ServerShares;
    expectCode(
      () => d2.clients.get('party-000')!.onServerShares(forge(fed, msg2, { shares: [...msg2.shares, { party: 'party-000', ciphertext: msg2.shares[0].ciphertext }] }), new Uint32Array(m)),
      'ABORTED',
      /not our neighbour/,
    );
  });

  test('consistency request that omits us, or names a neighbour that never shared keys', () => {
    const { fed, d } = driver(new Map([['party-004', 2]]));
    d.runUntil('consistency');
    const req = d.messageFor('party-000') as ConsistencyRequest;
    expect(req.survivors).toEqual(['party-000', 'party-001', 'party-002', 'party-003']);
    expectCode(() => d.clients.get('party-000')!.onConsistencyRequest(forge(fed, req, { survivors: ['party-001', 'party-002', 'party-003'] })), 'ABORTED', /omits us/);
    expectCode(
      () => d.clients.get('party-001')!.onConsistencyRequest(forge(fed, req, { survivors: [...req.survivors, 'party-004'] })),
      'ABORTED',
      /party-004, which never shared keys with us/,
    );
  });
});

describe('client refuses a disconnected survivor list (SecAgg+)', () => {
  test('a coordinator that claims the cycle broke in two is refused at the consistency check', () => {
    const fed = makeFederation(8, 'cyc');
    const seed = new Uint8Array(32).fill(9);
    const inputs = new Map(fed.ids.map((id) => [id, new Uint32Array(4)]));
    const d = new RoundDriver({ fed, params: { threshold: 2, degree: 2, bits: 32 }, m: 4, inputs, roundSeed: seed });
    d.runUntil('consistency');
    const g = d.server.ctx.neighbours;
    const order = [fed.ids[0]];
    while (order.length < 8) order.push(g.get(order[order.length - 1])!.find((v) => !order.includes(v))!);
    const req = d.messageFor(order[1]) as ConsistencyRequest;
    const split = req.survivors.filter((v) => v !== order[0] && v !== order[4]);
    expectCode(() => d.clients.get(order[1])!.onConsistencyRequest(forge(fed, req, { survivors: split })), 'ABORTED', /not connected/);
  });

  test('in a SecAgg+ graph a forged advertisement of a non-neighbour is ignored, of a neighbour refused', () => {
    const fed = makeFederation(8, 'nb');
    const inputs = new Map(fed.ids.map((id) => [id, new Uint32Array(4)]));
    const mk = () => new RoundDriver({ fed, params: { threshold: 2, degree: 2, bits: 32 }, m: 4, inputs });
    const d = mk();
    d.runUntil('share');
    const A = fed.ids[0];
    const nbs = d.server.ctx.neighbours.get(A)!;
    const stranger = fed.ids.find((v) => v !== A && !nbs.includes(v))!;
    const k = d.messageFor(A) as ServerKeys;
    const tamper = (who: string) => forge(fed, k, { advertisements: k.advertisements.map((a) => (a.sender === who ? { ...a, selfMaskCommitment: new Uint8Array(32) } : a)) });
    expect(d.clients.get(A)!.onServerKeys(tamper(stranger)).type).toBe('share-keys');
    const d2 = mk();
    d2.runUntil('share');
    expectCode(() => d2.clients.get(A)!.onServerKeys(tamper(nbs[0])), 'ABORTED', /invalid signature/);
  });
});
