/**
 * End-to-end rounds (no transport): exact modular sums under dropouts at every phase, abort exactly
 * when the threshold rule fails, never both shares of one party revealed; n = 2.
 */
import fc from 'fast-check';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { neighbourGraph } from '../../../shared/secagg/graph';
import { expectedAbortPhase, makeFederation, modSum, randomInput, revealedShares, RoundDriver, runRound, seededRng, type DropSchedule } from './harness';

beforeAll(() => sodiumReady());

const feds = new Map<number, ReturnType<typeof makeFederation>>();
const fedOf = (n: number) => feds.get(n) ?? feds.set(n, makeFederation(n)).get(n)!;

/** Random valid (n, t, k): k = 0 (full) or even in [2, n-2]; t a strict majority of N[u], <= |N[u]|. */
const configArb = fc
  .record({ n: fc.integer({ min: 3, max: 12 }), kSeed: fc.nat(), tSeed: fc.nat(), bits: fc.integer({ min: 8, max: 32 }), m: fc.integer({ min: 1, max: 300 }) })
  .map(({ n, kSeed, tSeed, bits, m }) => {
    const evens = [0];
    for (let k = 2; k <= n - 2; k += 2) evens.push(k);
    const k = evens[kSeed % evens.length];
    const s = k === 0 ? n : k + 1;
    const tMin = Math.floor(s / 2) + 1;
    const t = tMin + (tSeed % (s - tMin + 1));
    return { n, k, t, bits, m };
  });

describe('secure aggregation rounds', () => {
  test('property: output = exact sum mod 2^b of the survivors, or abort exactly when the threshold rule fails', () => {
    let done = 0;
    let aborted = 0;
    let doneSparse = 0;
    let doneKeyRecovery = 0;
    fc.assert(
      fc.property(
        configArb,
        fc.array(fc.integer({ min: 0, max: 30 }), { minLength: 12, maxLength: 12 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat(),
        ({ n, k, t, bits, m }, dropDraw, roundSeed, inputSeed) => {
          const fed = fedOf(n);
          // each party drops at phase 1..5 with probability ~1/6 each (values 1..5), else stays
          const drops: DropSchedule = new Map();
          fed.ids.forEach((id, i) => {
            if (dropDraw[i] >= 1 && dropDraw[i] <= 5) drops.set(id, dropDraw[i]);
          });
          const rng = seededRng(`inputs/${inputSeed}`);
          const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, bits)]));
          const params = { threshold: t, degree: k, bits };
          const run = runRound({ fed, params, m, inputs, drops, roundSeed });
          const expected = expectedAbortPhase(fed.ids, neighbourGraph(fed.ids, k, roundSeed), t, drops);
          const { self, key } = revealedShares(run.sent);
          for (const v of self) expect(key.has(v)).toBe(false);
          if (expected === 0) {
            done++;
            if (k !== 0) doneSparse++;
            if ([...drops.values()].includes(3)) doneKeyRecovery++; // a party dropped after sharing keys: its s_sk was rebuilt
            expect(run.result.kind).toBe('done');
            if (run.result.kind !== 'done') return;
            const survivors = fed.ids.filter((id) => (drops.get(id) ?? 99) > 3);
            expect(run.result.survivors).toEqual(survivors);
            const want = modSum(survivors.map((u) => inputs.get(u)!), m, bits);
            expect(Buffer.from(run.result.sum.buffer).equals(Buffer.from(want.buffer))).toBe(true);
          } else {
            aborted++;
            expect(run.result.kind).toBe('aborted');
            if (run.result.kind !== 'aborted') return;
            expect(run.result.reason).toMatch(new RegExp(`^R${expected} `));
            // no party got further than the phase that failed; honest clients never refused
            for (const c of run.clients.values()) expect(c.abortedBecause).toBeUndefined();
          }
        },
      ),
      { numRuns: 120 },
    );
    // the generator must exercise both outcomes
    expect(done).toBeGreaterThan(10);
    expect(aborted).toBeGreaterThan(10);
    expect(doneSparse).toBeGreaterThan(5);
    expect(doneKeyRecovery).toBeGreaterThan(3);
  });

  test('n = 2 works with t = 2 (full graph) and tolerates no dropout', () => {
    const fed = fedOf(2);
    const m = 1000;
    const rng = seededRng('n2');
    const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, 32)]));
    const params = { threshold: 2, degree: 0, bits: 32 };
    const ok = runRound({ fed, params, m, inputs });
    expect(ok.result.kind).toBe('done');
    if (ok.result.kind === 'done') {
      expect(Array.from(ok.result.sum)).toEqual(Array.from(modSum([...inputs.values()], m, 32)));
      // what the coordinator saw of each party was masked: y_u != x_u nearly everywhere
      for (const msg of ok.sent) {
        if (msg.type !== 'masked-input') continue;
        const x = inputs.get(msg.sender)!;
        let same = 0;
        for (let i = 0; i < m; i++) if (msg.vector[i] === x[i]) same++;
        expect(same).toBeLessThan(3);
      }
    }
    for (const p of [1, 2, 3, 4, 5]) {
      const r = runRound({ fed, params, m, inputs, drops: new Map([[fed.ids[1], p]]) });
      expect(r.result.kind).toBe('aborted');
    }
    expect(() => runRound({ fed, params: { threshold: 1, degree: 0, bits: 32 }, m, inputs })).toThrow(/threshold/);
  });

  test('the sum is exact at the modulus boundary for every b (all inputs 2^b - 1)', () => {
    const fed = fedOf(5);
    for (const bits of [8, 16, 31, 32]) {
      const m = 64;
      const inputs = new Map(fed.ids.map((id) => [id, new Uint32Array(m).fill(2 ** bits - 1)]));
      const r = runRound({ fed, params: { threshold: 3, degree: 0, bits }, m, inputs });
      expect(r.result.kind).toBe('done');
      if (r.result.kind === 'done') expect(r.result.sum[0]).toBe((5 * (2 ** bits - 1)) % 2 ** bits);
    }
  });
});

describe('SecAgg+ partial-sum protection', () => {
  /** The k = 2 graph is a cycle; returns the parties in cycle order. */
  function cycleOrder(ids: string[], seed: Uint8Array): string[] {
    const g = neighbourGraph(ids, 2, seed);
    const order = [ids[0]];
    while (order.length < ids.length) {
      const last = order[order.length - 1];
      const next = g.get(last)!.find((v) => !order.includes(v))!;
      order.push(next);
    }
    return order;
  }

  test('survivors split into two components: the coordinator aborts (R3) instead of learning two partial sums', () => {
    const fed = fedOf(8);
    const seed = new Uint8Array(32).fill(9);
    const order = cycleOrder(fed.ids, seed);
    // drop cycle positions 0 and 4 after share-keys: survivors form two paths of 3, each party keeps
    // >= 2 of its 3 share holders (so only connectivity fails)
    const drops: DropSchedule = new Map([
      [order[0], 3],
      [order[4], 3],
    ]);
    const rng = seededRng('split');
    const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, 16, 32)]));
    const r = runRound({ fed, params: { threshold: 2, degree: 2, bits: 32 }, m: 16, inputs, drops, roundSeed: seed });
    expect(r.result.kind).toBe('aborted');
    if (r.result.kind === 'aborted') expect(r.result.reason).toMatch(/^R3 .*not connected/);
    // one drop only leaves a path: connected, so the round completes
    const ok = runRound({ fed, params: { threshold: 2, degree: 2, bits: 32 }, m: 16, inputs, drops: new Map([[order[0], 3]]), roundSeed: seed });
    expect(ok.result.kind).toBe('done');
  });
});

describe('secrets are wiped', () => {
  test('after unmasking, and after an abort, every secret buffer a client held is all zeros', () => {
    const fed = fedOf(4);
    const m = 8;
    const inputs = new Map(fed.ids.map((id) => [id, new Uint32Array(m).fill(3)]));
    const d = new RoundDriver({ fed, params: { threshold: 3, degree: 0, bits: 32 }, m, inputs });
    d.runUntil('unmask'); // every party has drawn keys, split and received shares
    type Inside = { cKeys: { secretKey: Uint8Array }; sKeys: { secretKey: Uint8Array }; selfSeed: Uint8Array; ownShares: { b: Uint8Array; s: Uint8Array }; received: Map<string, { b: Uint8Array; s: Uint8Array }> };
    const held = new Map<string, Uint8Array[]>();
    for (const [id, c] of d.clients) {
      const x = c as unknown as Inside;
      const bufs = [x.cKeys.secretKey, x.sKeys.secretKey, x.selfSeed, x.ownShares.b, x.ownShares.s];
      for (const r of x.received.values()) bufs.push(r.b, r.s);
      expect(bufs.some((b) => b.some((v) => v !== 0))).toBe(true); // they were really secrets
      held.set(id, bufs);
    }
    const victim = fed.ids[3];
    d.clients.get(victim)!.abort('operator stopped the round');
    d.drops.set(victim, 5); // it sends nothing more
    while (d.step.kind === 'send') d.deliver();
    expect(d.step.kind).toBe('done');
    for (const [id, bufs] of held) {
      for (const b of bufs) expect(b.every((v) => v === 0)).toBe(true);
      expect(d.clients.get(id)!.phase).toBe(id === victim ? 'aborted' : 'done');
    }
  });
});
