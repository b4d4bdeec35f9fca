/**
 * Hostile logs: verifyLog is given whatever an attacker can produce — any JSON value in place of any
 * field of any entry, re-chained and re-signed with the coordinator key — and must never throw;
 * every failure it reports is well formed and points at an existing entry (or just past the end).
 */
import fc from 'fast-check';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { verifyLog } from '../../../shared/audit';
import { makeFederation, generateLog, entriesOf, rechain, type Federation } from './fixture';

let fed: Federation;
let base: Record<string, any>[];

beforeAll(async () => {
  await sodiumReady();
  fed = await makeFederation();
  base = entriesOf(generateLog(fed, [{}, { drop: [{ party: 'insurer', phase: 'share' }] }, {}, {}]).text);
});

function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(v)) return [prefix, ...v.flatMap((x, i) => paths(x, [...prefix, i]))];
  if (v && typeof v === 'object') return [prefix, ...Object.entries(v).flatMap(([k, x]) => paths(x, [...prefix, k]))];
  return [prefix];
}

const hostile = fc.oneof(
  fc.constantFrom(null, true, 0, -1, 1e308, 2 ** 53, 0.1, '', 'AAAA', 'A'.repeat(86) + '==', 'B'.repeat(43) + '=', 'ff'.repeat(32), [], {}, ['platform'], { platform: 1e9 }),
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);

// 400 runs: cheap since the accountant binds Math once (42 s for 100 runs before, under jest)
test('any value in any field of any entry: no exception, well-formed failures', () => {
  fc.assert(
    fc.property(fc.nat(), fc.nat(), hostile, fc.boolean(), (ei, pi, value, dropKey) => {
      const es = JSON.parse(JSON.stringify(base));
      const e = es[ei % es.length];
      const ps = paths(e).filter((p) => p.length > 0);
      const p = ps[pi % ps.length];
      let cur = e;
      for (const k of p.slice(0, -1)) cur = cur[k];
      const last = p[p.length - 1];
      if (dropKey && !Array.isArray(cur)) delete cur[last];
      else cur[last] = value;
      const log = rechain(fed, es, { resignReceipts: false });
      const r = verifyLog(log.bytes, { policy: fed.policy, receipts: [{ source: 'junk', receipt: value }] });
      for (const f of r.failures) {
        expect(Number.isInteger(f.entry) && f.entry >= 0 && f.entry <= r.entries).toBe(true);
        expect(typeof f.field).toBe('string');
        expect(typeof f.expected).toBe('string');
        expect(typeof f.found).toBe('string');
      }
      // the junk receipt alone is always reported
      expect(r.ok).toBe(false);
    }),
    { numRuns: 400 },
  );
});
