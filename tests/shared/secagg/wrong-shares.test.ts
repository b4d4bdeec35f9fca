/**
 * Wrong unmask shares at the coordinator: a holder that reveals a wrong share of a survivor's
 * self-mask seed or of a dropped party's mask key is named and corrected (Reed-Solomon decoding of
 * the revealed shares), and the round completes with the exact sum; with more wrong shares than
 * decoding can locate, the round aborts and the reason names what could be named.
 */
import { sodiumReady } from '../../../shared/crypto/sodium';
import { signMessage, type UnmaskShares } from '../../../shared/secagg/messages';
import { ERASURE_SEARCH_MAX_SHARES, type ServerStep } from '../../../shared/secagg/server';
import { makeFederation, modSum, randomInput, RoundDriver, seededRng, TEST_RUN } from './harness';

beforeAll(() => sodiumReady());

const m = 16;

/** `corrupt(holder, kind, owner)` says whether that share is sent wrong (one byte flipped). */
type Corruption = (holder: string, kind: 'self' | 'key', owner: string) => number | undefined;

/**
 * Runs a full-graph round of n parties with threshold t (`drops`: party -> phase it drops at), delivering
 * the unmask replies with the chosen shares corrupted (re-signed by their sender: a faulty or malicious
 * holder, not a forger). Returns the result and the exact modular sum of the survivors' inputs.
 */
function roundWithWrongShares(n: number, t: number, corrupt: Corruption, drops = new Map<string, number>(), label = 'ws') {
  const fed = makeFederation(n, label);
  const rng = seededRng(`${label}-in`);
  const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, 32)]));
  const d = new RoundDriver({ fed, params: { threshold: t, degree: 0, bits: 32 }, m, inputs, drops, rngLabel: label });
  d.runUntil('unmask');
  if (d.step.kind !== 'send') throw new Error(`round ended early: ${JSON.stringify(d.step)}`);
  const flip = (holder: string, kind: 'self' | 'key') => (s: { owner: string; share: Uint8Array }) => {
    const byte = corrupt(holder, kind, s.owner);
    if (byte === undefined) return s;
    const share = s.share.slice();
    share[byte] ^= 0x21;
    return { owner: s.owner, share };
  };
  for (const { to, message } of d.step.messages) {
    if (!d.alive(to, 5)) continue;
    const reply = d.clients.get(to)!.handle(message) as UnmaskShares;
    const { signature: _s, ...rest } = { ...reply, selfMaskShares: reply.selfMaskShares.map(flip(to, 'self')), keyShares: reply.keyShares.map(flip(to, 'key')) };
    d.server.receive(signMessage<UnmaskShares>(rest, fed.keys.get(to)!.secretKey, TEST_RUN));
  }
  const result: ServerStep = d.server.deadlinePassed();
  const survivors = fed.ids.filter((id) => d.alive(id, 3));
  return { result, expected: modSum(survivors.map((id) => inputs.get(id)!), m, 32), survivors, server: d.server };
}

function expectDone(r: ReturnType<typeof roundWithWrongShares>) {
  expect(r.result.kind).toBe('done');
  if (r.result.kind !== 'done') throw new Error((r.result as { reason?: string }).reason);
  expect(Array.from(r.result.sum)).toEqual(Array.from(r.expected));
  expect(r.result.survivors).toEqual(r.survivors);
  return r.result;
}

describe('n = 5, t = 3 (full graph): one wrong share is named and corrected', () => {
  test('control: all shares right -> done, exact sum, nobody named', () => {
    const done = expectDone(roundWithWrongShares(5, 3, () => undefined));
    expect(done.wrongShares).toEqual([]);
  });

  test('a wrong self-mask share of a survivor (among the t the fast path uses) -> done, exact sum, holder named', () => {
    const r = roundWithWrongShares(5, 3, (holder, kind, owner) => (holder === 'party-001' && kind === 'self' && owner === 'party-003' ? 7 : undefined));
    expect(expectDone(r).wrongShares).toEqual([{ holder: 'party-001', owner: 'party-003', kind: 'self' }]);
  });

  test('a wrong share among those the fast path does not use is still reported', () => {
    // holders sort party-000..party-004; the fast path combines the first t = 3, so party-004's share
    // is not used to reconstruct and the commitment check alone would pass.
    const r = roundWithWrongShares(5, 3, (holder, kind, owner) => (holder === 'party-004' && kind === 'self' && owner === 'party-000' ? 31 : undefined));
    expect(expectDone(r).wrongShares).toEqual([{ holder: 'party-004', owner: 'party-000', kind: 'self' }]);
  });

  test('one holder wrong for every owner: each wrong share is named, the sum is exact', () => {
    const r = roundWithWrongShares(5, 3, (holder) => (holder === 'party-002' ? 0 : undefined));
    expect(expectDone(r).wrongShares).toEqual(['party-000', 'party-001', 'party-002', 'party-003', 'party-004'].map((owner) => ({ holder: 'party-002', owner, kind: 'self' })));
  });

  test('different holders wrong for different owners (one per owner) are all named, sorted', () => {
    const bad: Record<string, string> = { 'party-000': 'party-004', 'party-003': 'party-001', 'party-004': 'party-000' };
    const r = roundWithWrongShares(5, 3, (holder, _k, owner) => (bad[owner] === holder ? 3 : undefined));
    expect(expectDone(r).wrongShares).toEqual([
      { holder: 'party-000', owner: 'party-004', kind: 'self' },
      { holder: 'party-001', owner: 'party-003', kind: 'self' },
      { holder: 'party-004', owner: 'party-000', kind: 'self' },
    ]);
  });
});

describe('the self-mask seed is fixed by H(b_u): one more wrong share is located when m - t is odd', () => {
  // n = 5, t = 3, party-004 drops after share-keys: each survivor's seed has m = 4 shares (1 spare);
  // decoding alone locates floor(1/2) = 0 wrong shares, with the seed known floor(2/2) = 1.
  const drops = new Map([['party-004', 3]]);
  test('wrong share outside the fast path (the fast path finds the seed) -> done, named', () => {
    const r = roundWithWrongShares(5, 3, (holder, kind, owner) => (holder === 'party-003' && kind === 'self' && owner === 'party-001' ? 4 : undefined), drops, 'wd5');
    expect(expectDone(r).wrongShares).toEqual([{ holder: 'party-003', owner: 'party-001', kind: 'self' }]);
  });

  test('wrong share inside the fast path (found by leaving out one share at a time) -> done, named', () => {
    const r = roundWithWrongShares(5, 3, (holder, kind, owner) => (holder === 'party-000' && kind === 'self' && owner === 'party-002' ? 30 : undefined), drops, 'wd5b');
    expect(expectDone(r).wrongShares).toEqual([{ holder: 'party-000', owner: 'party-002', kind: 'self' }]);
  });

  test(`beyond ${ERASURE_SEARCH_MAX_SHARES} shares the search is not run: n = 19, t = 10, five wrong shares are named only if the fast path finds the seed`, () => {
    // m = 19, m - t = 9: decoding locates 4, with the seed known 5. Each holder errs in its own byte
    // (equal errors in one byte could cancel in the fast path's Lagrange sum).
    const byteOf = (holder: string) => Number(holder.slice(6));
    const late = ['party-010', 'party-012', 'party-014', 'party-016', 'party-018'];
    const ok = roundWithWrongShares(19, 10, (holder, kind, owner) => (late.includes(holder) && kind === 'self' && owner === 'party-005' ? byteOf(holder) : undefined), new Map(), 'w19');
    expect(expectDone(ok).wrongShares).toEqual(late.map((holder) => ({ holder, owner: 'party-005', kind: 'self' })));
    const early = ['party-000', 'party-002', 'party-004', 'party-006', 'party-008'];
    const no = roundWithWrongShares(19, 10, (holder, kind, owner) => (early.includes(holder) && kind === 'self' && owner === 'party-005' ? byteOf(holder) : undefined), new Map(), 'w19');
    expect(no.result.kind).toBe('aborted');
    if (no.result.kind === 'aborted') expect(no.result.reason).toMatch(/self-mask seed of party-005: more than floor\(\(m - t\)\/2\) = 4 of the m = 19 shares are wrong/);
  });
});

describe('a wrong key share of a dropped party', () => {
  test('n = 7, t = 4, party-006 drops after share-keys (6 key holders, 1 correctable) -> done, exact sum, holder named', () => {
    const drops = new Map([['party-006', 3]]);
    const r = roundWithWrongShares(7, 4, (holder, kind, owner) => (holder === 'party-002' && kind === 'key' && owner === 'party-006' ? 0 : undefined), drops, 'wk7');
    expect(expectDone(r).wrongShares).toEqual([{ holder: 'party-002', owner: 'party-006', kind: 'key' }]);
  });

  test('n = 7, t = 4: wrong key share and wrong self-mask shares from different holders in one round', () => {
    const drops = new Map([['party-006', 3]]);
    const r = roundWithWrongShares(7, 4, (holder, kind, owner) => ((holder === 'party-005' && kind === 'key') || (holder === 'party-000' && kind === 'self' && owner === 'party-001') ? 12 : undefined), drops, 'wk7b');
    expect(expectDone(r).wrongShares).toEqual([
      { holder: 'party-000', owner: 'party-001', kind: 'self' },
      { holder: 'party-005', owner: 'party-006', kind: 'key' },
    ]);
  });

  test('n = 5, t = 3, party-004 drops: 4 key holders leave 1 spare share, so a wrong one is detected, not located -> abort says why', () => {
    const drops = new Map([['party-004', 3]]);
    const r = roundWithWrongShares(5, 3, (holder, kind) => (holder === 'party-003' && kind === 'key' ? 5 : undefined), drops, 'wk5');
    expect(r.result.kind).toBe('aborted');
    if (r.result.kind !== 'aborted') return;
    expect(r.result.reason).toMatch(/cannot recover the mask key of dropped party party-004: more than floor\(\(m - t\)\/2\) = 0 of the m = 4 shares are wrong/);
    expect(r.result.reason).toMatch(/with 1 spare share beyond t, a wrong share can at most be detected, not located/);
    expect(r.result.reason).toMatch(/No holder could be identified/);
    expect(r.server.phase).toBe('aborted');
  });
});

describe('too many wrong shares: abort, naming what can be named', () => {
  test('two wrong shares of one seed (e = 1) and one of another: the first cannot be recovered, the second holder is named', () => {
    const r = roundWithWrongShares(5, 3, (holder, kind, owner) =>
      (owner === 'party-002' && (holder === 'party-000' || holder === 'party-004')) || (owner === 'party-001' && holder === 'party-003') ? 9 : undefined,
    );
    expect(r.result.kind).toBe('aborted');
    if (r.result.kind !== 'aborted') return;
    expect(r.result.reason).toMatch(/cannot recover the self-mask seed of party-002: .*more than floor\(\(m - t\)\/2\) = 1 of/);
    expect(r.result.reason).toMatch(/Holders that revealed wrong shares \(altered by them, or dealt wrong by the secret.s owner\): party-003 \(self-mask share of party-001\)$/);
    expect(r.result.reason).not.toMatch(/party-000 \(|party-004 \(/);
    expect(r.result.reason).not.toMatch(/self-mask seed of party-001/);
    expect(r.server.phase).toBe('aborted');
  });

  test('every holder but one wrong: nothing recovered, nobody named, no sum', () => {
    const r = roundWithWrongShares(5, 3, (holder, kind, owner) => (kind === 'self' && owner === 'party-000' && holder !== 'party-001' ? 1 : undefined));
    // (the fast path's three shares, at x = 1, 2, 3, carry the same error with Lagrange weights 1 and 1 for
    // x = 1 and 3: it cancels, the seed passes H(b_u), and the shares still cannot be attributed)
    expect(r.result).toEqual({ kind: 'aborted', reason: expect.stringMatching(/^wrong unmask shares: cannot recover the self-mask seed of party-000 .* No holder could be identified$/) });
  });

  test('wrong shares that together form ANOTHER sharing decode, fail the commitment, and abort without blaming the honest holder', () => {
    // holders 000..003 send a consistent sharing of a different seed for party-003 (4 of 5 wrong, beyond
    // e = 1): the decoder lands on their sharing and would blame the one honest holder, party-004; the
    // commitment check rejects the decoded seed, so nobody is blamed and no sum is output.
    const fed = makeFederation(5, 'forge');
    const rng = seededRng('forge-in');
    const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, 32)]));
    const d = new RoundDriver({ fed, params: { threshold: 3, degree: 0, bits: 32 }, m, inputs, rngLabel: 'forge' });
    d.runUntil('unmask');
    if (d.step.kind !== 'send') throw new Error('unexpected');
    // a degree-1 sharing of the all-zero seed: the share at point x is x * 0x11 in every byte
    const fake = (x: number) => new Uint8Array(32).fill(mul(x, 0x11));
    for (const { to, message } of d.step.messages) {
      const reply = d.clients.get(to)!.handle(message) as UnmaskShares;
      const x = fed.ids.indexOf(to) + 1;
      const self = ['party-000', 'party-001', 'party-002', 'party-003'].includes(to) ? reply.selfMaskShares.map((s) => (s.owner === 'party-003' ? { owner: s.owner, share: fake(x) } : s)) : reply.selfMaskShares;
      const { signature: _s, ...rest } = { ...reply, selfMaskShares: self };
      d.server.receive(signMessage<UnmaskShares>(rest, fed.keys.get(to)!.secretKey, TEST_RUN));
    }
    const out = d.server.deadlinePassed();
    expect(out.kind).toBe('aborted');
    if (out.kind !== 'aborted') return;
    expect(out.reason).toMatch(/cannot recover the self-mask seed of party-003: its 5 shares decode to a value that does not match its signed commitment, so more than floor\(\(m - t\)\/2\) = 1 of them are wrong \(t = 3\) and none can be identified/);
    expect(out.reason).toMatch(/No holder could be identified$/);
    expect(out.reason).not.toMatch(/party-004 \(/);
  });
});

/** GF(2^8) product (AES polynomial), written out again for the test. */
function mul(a: number, b: number): number {
  let p = 0;
  for (let i = 0; i < 8; i++) if ((b >> i) & 1) p ^= a << i;
  for (let i = 15; i >= 8; i--) if ((p >> i) & 1) p ^= 0x11b << (i - 8);
  return p;
}
