/**
 * Honest logs verify clean: random federations (2-4 parties) and random round plans (parties
 * dropping at any phase, operator aborts) written through the recorder always verify, and what the
 * verifier reports agrees with the plan: rounds below the threshold abort, epsilon never decreases
 * and is charged exactly to the parties whose masked input arrived.
 */
import fc from 'fast-check';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { verifyLog, PHASES } from '../../../shared/audit';
import { makeFederation, generateLog, type RoundPlan } from './fixture';

beforeAll(async () => {
  await sodiumReady();
});

const NAMES = ['platform', 'insurer', 'insurer2', 'bank'];

test('random honest runs verify clean and the timeline matches the plan', async () => {
  const feds = await Promise.all([2, 3, 4].map((n) => makeFederation({ parties: NAMES.slice(0, n) })));
  const plan = (n: number): fc.Arbitrary<RoundPlan> =>
    fc.record({
      drop: fc.array(fc.record({ party: fc.constantFrom(...NAMES.slice(0, n)), phase: fc.constantFrom(...PHASES) }), { maxLength: 2 }),
      abortAfter: fc.option(fc.constantFrom(...PHASES), { nil: undefined }),
      noReceipt: fc.array(fc.constantFrom(...NAMES.slice(0, n)), { maxLength: 1 }),
    });
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 2 }).chain((k) => fc.tuple(fc.constant(k), fc.array(plan(k + 2), { minLength: 1, maxLength: 5 }))), async ([k, plans]) => {
      const fed = feds[k];
      const log = generateLog(fed, plans);
      const r = verifyLog(log.bytes, { policy: fed.policy, receipts: log.receipts.map((x, i) => ({ source: String(i), receipt: x })) });
      expect(r.failures).toEqual([]);
      const last = new Map<string, number>();
      for (const s of r.timeline) {
        expect(Object.keys(s.epsilon).sort()).toEqual([...(s.phases.mask ?? [])].sort());
        for (const [p, e] of Object.entries(s.epsilon)) {
          expect(e).toBeGreaterThan(last.get(p) ?? 0);
          last.set(p, e);
        }
        if (s.status === 'completed') {
          for (const ph of PHASES) expect((s.phases[ph] ?? []).length).toBeGreaterThanOrEqual(fed.policy.secagg.threshold);
        }
      }
    }),
    { numRuns: 25 },
  );
});
