import { epsilonFromRdp, rdpSampledGaussian, rdpDdg, roundedSensitivity, DEFAULT_ORDERS, INTEGER_ORDERS } from '../../../shared/dp/rdp';
import { LEDGER_ORDERS } from '../../../participant-node/privacy/ledger';
import { ACCOUNTANT_ORDERS } from '../../../shared/audit/accounting';
import { rationalizeVariance } from '../../../shared/dp/discrete';

/** What the node ledger and the auditor compose a local-dpsgd spend at. */
const ledgerEpsilon = (q: number, sigma: number, steps: number, delta: number) => epsilonFromRdp(LEDGER_ORDERS, rdpSampledGaussian(q, sigma, steps, LEDGER_ORDERS), delta);
import { runCli as run } from '../../cli-run';

describe('fedbridge privacy epsilon', () => {
  test('gaussian --json: {"epsilon","order"} equal to what the ledger and the auditor charge', async () => {
    expect([...ACCOUNTANT_ORDERS]).toEqual([...LEDGER_ORDERS]);
    for (const [q, sigma, steps, delta] of [
      [0.01, 1.1, 1000, 1e-5],
      // a case where a finer grid finds a smaller epsilon (16.23 at order 2.5) than the ledger's (17.81 at 3)
      [0.05, 0.8, 600, 1e-6],
    ]) {
      const r = await run(['privacy', 'epsilon', '--sigma', String(sigma), '--q', String(q), '--steps', String(steps), '--delta', String(delta), '--json']);
      expect(r.code).toBe(0);
      const j = JSON.parse(r.out);
      const want = ledgerEpsilon(q, sigma, steps, delta);
      expect([j.epsilon, j.order]).toEqual([want.epsilon, want.order]);
    }
    expect(ledgerEpsilon(0.05, 0.8, 600, 1e-6).epsilon).toBeGreaterThan(epsilonFromRdp(DEFAULT_ORDERS, rdpSampledGaussian(0.05, 0.8, 600), 1e-6).epsilon + 1);
  });
  test('ddg with explicit sensitivities and with --clip (derived exactly as the encoder bounds them)', async () => {
    const a = await run(['privacy', 'epsilon', '--mechanism', 'ddg', '--sigma', '1', '--gamma', '64', '--n-min', '3', '--dimension', '1024', '--l2', '80', '--l1', '2000', '--q', '1', '--steps', '10', '--delta', '1e-6', '--json']);
    expect(a.code).toBe(0);
    const want = epsilonFromRdp(
      INTEGER_ORDERS,
      // the rational variance the sampler uses and the ledger and auditor charge, not the requested 4096/3
      rdpDdg({ localVariance: rationalizeVariance(64 ** 2 / 3).num / rationalizeVariance(64 ** 2 / 3).den, parties: 3, l2: 80, l1: 2000, dimension: 1024, q: 1, steps: 10 }),
      1e-6,
    ).epsilon;
    expect(JSON.parse(a.out).epsilon).toBe(want);
    const b = await run(['privacy', 'epsilon', '--mechanism', 'ddg', '--sigma', '1', '--gamma', '64', '--dimension', '1024', '--clip', '1', '--q', '1', '--steps', '10', '--delta', '1e-6', '--json']);
    const jb = JSON.parse(b.out);
    const s = roundedSensitivity(64, 1024, Math.exp(-0.5));
    expect(jb.l2).toBeCloseTo(s.l2, 12);
    expect(jb.l1).toBeCloseTo(s.l1, 9);
    expect(jb.epsilon).toBeGreaterThan(0);
  });
  test('bad input: one-line reason, exit code 2', async () => {
    const r = await run(['privacy', 'epsilon', '--sigma', '1', '--q', '2', '--steps', '10', '--delta', '1e-5']);
    expect(r.code).toBe(2);
    expect(r.err).toBe('fedbridge: --q must be <= 1, got 2\n');
    const m = await run(['privacy', 'epsilon', '--sigma', '1', '--q', '0.1', '--steps', '10', '--delta', '1e-5', '--mechanism', 'laplace']);
    expect(m.err).toMatch(/--mechanism must be gaussian or ddg/);
    const g = await run(['privacy', 'epsilon', '--sigma', '1', '--q', '0.1', '--steps', '10', '--delta', '1e-5', '--gamma', '3']);
    expect(g.err).toMatch(/--gamma applies to --mechanism ddg only/);
    const d = await run(['privacy', 'epsilon', '--mechanism', 'ddg', '--sigma', '1', '--q', '0.1', '--steps', '10', '--delta', '1e-5', '--gamma', '3', '--dimension', '8']);
    expect(d.err).toMatch(/needs --l2/);
  });
});

describe('fedbridge privacy sigma', () => {
  test('returns the smallest sigma that meets the target as the ledger charges it; epsilon at it is <= target', async () => {
    for (const [target, q, steps, delta] of [
      [3, 0.02, 500, 1e-5],
      [17, 0.05, 600, 1e-6],
    ]) {
      const r = await run(['privacy', 'sigma', '--epsilon', String(target), '--delta', String(delta), '--q', String(q), '--steps', String(steps), '--json']);
      expect(r.code).toBe(0);
      const { sigma } = JSON.parse(r.out);
      const eps = (s: number) => ledgerEpsilon(q, s, steps, delta).epsilon;
      expect(eps(sigma)).toBeLessThanOrEqual(target);
      expect(eps(sigma * 0.999)).toBeGreaterThan(target);
      const e = await run(['privacy', 'epsilon', '--sigma', String(sigma), '--q', String(q), '--steps', String(steps), '--delta', String(delta), '--json']);
      expect(JSON.parse(e.out).epsilon).toBeLessThanOrEqual(target);
    }
  });
  test('bad input is refused', async () => {
    const r = await run(['privacy', 'sigma', '--epsilon', '0', '--delta', '1e-5', '--q', '0.02', '--steps', '5']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--epsilon must be > 0/);
  });
});
