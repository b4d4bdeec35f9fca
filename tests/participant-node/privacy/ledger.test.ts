import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { UserError } from '../../../shared/cli/errors';
import {
  chargeRound,
  openLedger,
  readLedger,
  composeEpsilon,
  summarizeLedger,
  ledgerFile,
  participationMarker,
  LEDGER_ORDERS,
  type RoundCharge,
} from '../../../participant-node/privacy/ledger';
import { localDpsgdCharge, roundNoiseCharge } from '../../../participant-node/privacy/charge';
import { epsilonPlotSvg } from '../../../participant-node/privacy/plot';
import { epsilonFromRdp, rdpSampledGaussian } from '../../../shared/dp/rdp';
import { encodeUpdate, DEFAULT_BETA, type EncodeParams } from '../../../shared/dp/encode';
import { initNode } from '../../../participant-node/identity';
import { main } from '../../../bin/fedbridge';

let dir: string;
beforeAll(async () => {
  await sodiumReady();
});
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-ledger-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const dpsgd = (round: number): RoundCharge => localDpsgdCharge({ round, noiseMultiplier: 1.1, q: 0.01, steps: 100, clip: 1, delta: 1e-6 });

describe('charging rounds', () => {
  test('each charge records every accountant parameter and the lifetime epsilon after it, which matches a recomputation', () => {
    const e1 = chargeRound(dir, dpsgd(1), { budget: 50 });
    const e2 = chargeRound(dir, dpsgd(2), { budget: 50 });
    const e3 = chargeRound(dir, dpsgd(3), { budget: 50 });
    expect(e1.epsilonAfter).toBeGreaterThan(0);
    expect(e2.epsilonAfter).toBeGreaterThan(e1.epsilonAfter);
    expect(e3.epsilonAfter).toBeGreaterThan(e2.epsilonAfter);
    // three rounds of 100 steps = 300 compositions of the sampled Gaussian
    const want = epsilonFromRdp(LEDGER_ORDERS, rdpSampledGaussian(0.01, 1.1, 300, LEDGER_ORDERS), 1e-6).epsilon;
    expect(e3.epsilonAfter).toBeCloseTo(want, 10);
    const led = readLedger(dir)!;
    expect(led.entries.map((e) => e.round)).toEqual([1, 2, 3]);
    expect(led.entries[0]).toMatchObject({ mechanism: 'local-dpsgd', sigma: 1.1, q: 0.01, steps: 100, clip: 1, delta: 1e-6 });
    expect(fs.statSync(ledgerFile(dir)).mode & 0o777).toBe(0o600);
    expect(fs.existsSync(participationMarker(dir))).toBe(true);
    expect(composeEpsilon(led.entries, 1e-6).epsilon).toBeCloseTo(e3.epsilonAfter, 12);
  });

  test('a round of a run is charged once: a second charge of it is refused and nothing is written', () => {
    const c = { ...dpsgd(4), federationId: 'fb', runId: 'run-9' };
    chargeRound(dir, c, { budget: 50 });
    const bytes = fs.readFileSync(ledgerFile(dir));
    expect(() => chargeRound(dir, c, { budget: 50 })).toThrow(/^round 4 of run run-9 is already charged \(ledger entry 1\); a round is charged once$/);
    expect(fs.readFileSync(ledgerFile(dir)).equals(bytes)).toBe(true);
    // the retry of that round (a new round number) and the same round number in another run are charged
    chargeRound(dir, { ...c, round: 5 }, { budget: 50 });
    chargeRound(dir, { ...c, runId: 'run-10' }, { budget: 50 });
    expect(readLedger(dir)!.entries).toHaveLength(3);
  });

  test('refuses a round that would exceed the budget, says so, and writes nothing', () => {
    chargeRound(dir, dpsgd(1), { budget: 10 });
    const before = fs.readFileSync(ledgerFile(dir));
    const big = localDpsgdCharge({ round: 2, noiseMultiplier: 0.6, q: 0.5, steps: 200, clip: 1, delta: 1e-6 });
    expect(() => chargeRound(dir, big, { budget: 10 })).toThrow(/privacy budget exceeded: round 2 would raise .* above the budget 10; refusing to join/);
    expect(fs.readFileSync(ledgerFile(dir)).equals(before)).toBe(true);
    expect(fs.existsSync(path.join(dir, 'privacy', 'ledger.lock'))).toBe(false);
  });

  test('a new policy (other budget) never resets the spend', () => {
    chargeRound(dir, dpsgd(1), { budget: 50 });
    chargeRound(dir, dpsgd(2), { budget: 100 });
    const led = readLedger(dir)!;
    expect(led.entries).toHaveLength(2);
    expect(led.budget).toBe(100);
    // a smaller budget than what is spent refuses further rounds
    const spent = led.entries[1].epsilonAfter;
    expect(() => chargeRound(dir, dpsgd(3), { budget: spent })).toThrow(/privacy budget exceeded/);
  });

  test('missing ledger after taking part: refuses to start (marker or receipts)', () => {
    chargeRound(dir, dpsgd(1), { budget: 50 });
    fs.rmSync(ledgerFile(dir));
    expect(() => openLedger(dir, { budget: 50, delta: 1e-6 })).toThrow(/is missing, but this node has taken part in rounds before/);
    expect(() => chargeRound(dir, dpsgd(2), { budget: 50 })).toThrow(UserError);
    expect(fs.existsSync(ledgerFile(dir))).toBe(false);
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-ledger-'));
    try {
      expect(openLedger(other, { budget: 5, delta: 1e-6 }).entries).toEqual([]); // fresh node: fine
      fs.mkdirSync(path.join(other, 'receipts'));
      fs.writeFileSync(path.join(other, 'receipts', 'round-1.json'), '{}');
      expect(() => openLedger(other, { budget: 5, delta: 1e-6 })).toThrow(/refuses to start/);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test('a corrupt ledger is an error, never an empty ledger', () => {
    chargeRound(dir, dpsgd(1), { budget: 50 });
    fs.writeFileSync(ledgerFile(dir), '{"format":"fedbridge-privacy-ledger/1","budget":5');
    expect(() => chargeRound(dir, dpsgd(2), { budget: 50 })).toThrow(/not valid JSON.*restore it from a backup/);
    fs.writeFileSync(ledgerFile(dir), JSON.stringify({ format: 'fedbridge-privacy-ledger/1', budget: -1, delta: 1e-6, createdAt: 'x', entries: [] }));
    expect(() => readLedger(dir)).toThrow(/invalid \(budget/);
  });

  test('invalid charges and a held lock are refused without writing', () => {
    expect(() => chargeRound(dir, { ...dpsgd(1), q: 2 }, { budget: 5 })).toThrow(/invalid privacy charge: q/);
    expect(() => chargeRound(dir, dpsgd(1), { budget: 0 })).toThrow(/invalid privacy budget/);
    expect(fs.existsSync(ledgerFile(dir))).toBe(false);
    fs.mkdirSync(path.join(dir, 'privacy'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'privacy', 'ledger.lock'), '123\n');
    expect(() => chargeRound(dir, dpsgd(1), { budget: 5 })).toThrow(/locked by another process/);
    expect(fs.existsSync(ledgerFile(dir))).toBe(false);
  });
});

describe('round-noise: the encoder, the ledger and the accountant agree', () => {
  test('all-zero update through the real encoder, sigma and gamma read back from the ledger: variance = gamma^2 sigma^2 within 5%', () => {
    const seed = new Uint8Array(32).fill(3);
    const policyEncode: EncodeParams = { clip: 0.5, gamma: 40, bits: 32, rotationSeed: seed, beta: DEFAULT_BETA, noise: { sigma: 0.3, mode: 'per-party', nMin: 1 } };
    const charge = roundNoiseCharge({ round: 1, encode: policyEncode, dimension: 30000, q: 1, delta: 1e-6 });
    chargeRound(dir, charge, { budget: 1e6 });
    const e = readLedger(dir)!.entries[0];
    if (e.mechanism !== 'round-noise') throw new Error('expected a round-noise entry');
    const p: EncodeParams = { clip: e.clip, gamma: e.gamma!, bits: 32, rotationSeed: seed, beta: DEFAULT_BETA, noise: { sigma: e.sigma, mode: e.mode, nMin: e.nMin ?? 1 } };
    const enc = encodeUpdate(new Float64Array(30000), p);
    expect(enc.dimension).toBe(e.dimension);
    expect(enc.noiseVariance).toBe(e.localVariance); // the accountant was told the exact variance used
    let s = 0;
    let ss = 0;
    for (const v of enc.data) {
      const x = v >= 2 ** 31 ? v - 2 ** 32 : v;
      s += x;
      ss += x * x;
    }
    const n = enc.data.length;
    const variance = (ss - (s * s) / n) / (n - 1);
    const want = (e.gamma! * e.sigma) ** 2;
    expect(Math.abs(variance / want - 1)).toBeLessThan(0.05);
  });
  test('distributed mode records n_min shares of variance (gamma sigma)^2 / n_min, and epsilon grows with rounds', () => {
    const encode: EncodeParams = { clip: 1, gamma: 100, bits: 32, rotationSeed: null, beta: DEFAULT_BETA, noise: { sigma: 2, mode: 'distributed', nMin: 4 } };
    const c1 = roundNoiseCharge({ round: 1, encode, dimension: 1000, q: 0.5, delta: 1e-5 });
    expect(c1).toMatchObject({ shares: 4, nMin: 4, mode: 'distributed' });
    if (c1.mechanism !== 'round-noise') throw new Error('unreachable');
    expect(c1.localVariance / ((100 * 2) ** 2 / 4) - 1).toBeLessThan(1e-6);
    const a = chargeRound(dir, c1, { budget: 100 });
    const b = chargeRound(dir, { ...c1, round: 2 }, { budget: 100 });
    expect(b.epsilonAfter).toBeGreaterThan(a.epsilonAfter);
    expect(() => roundNoiseCharge({ round: 1, encode: { ...encode, noise: null }, dimension: 10, q: 1, delta: 1e-5 })).toThrow(/"encode.noise"/);
  });
});

describe('fedbridge node privacy', () => {
  function capture(): { out: () => string; err: () => string; restore: () => void } {
    let o = '';
    let e = '';
    const so = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((o += String(s)), true));
    const se = jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((e += String(s)), true));
    return { out: () => o, err: () => e, restore: () => (so.mockRestore(), se.mockRestore()) };
  }
  test('--json has the DESIGN §8 shape and the SVG plot shows every round', async () => {
    await initNode(dir, 'platform');
    for (let r = 1; r <= 4; r++) chargeRound(dir, dpsgd(r), { budget: 20 });
    const c = capture();
    let code: number;
    try {
      code = await main(['node', 'privacy', '--data-dir', dir, '--json']);
    } finally {
      c.restore();
    }
    expect(code).toBe(0);
    const j = JSON.parse(c.out().trim());
    const led = readLedger(dir)!;
    expect(j.epsilon).toBeCloseTo(led.entries[3].epsilonAfter, 12);
    expect(j.delta).toBe(1e-6);
    expect(j.budget).toBe(20);
    expect(j.rounds.map((r: { round: number }) => r.round)).toEqual([1, 2, 3, 4]);
    expect(j.rounds[2].epsilon).toBe(led.entries[2].epsilonAfter);
    const svg = fs.readFileSync(j.plot, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<circle /g)).toHaveLength(4);
    expect(svg).toContain('budget 20');
  });
  test('a node without a ledger shows zero spent; a node that lost its ledger is refused', async () => {
    await initNode(dir, 'insurer');
    let c = capture();
    try {
      expect(await main(['node', 'privacy', '--data-dir', dir, '--json'])).toBe(0);
    } finally {
      c.restore();
    }
    expect(JSON.parse(c.out().trim())).toMatchObject({ epsilon: 0, budget: null, rounds: [] });
    fs.writeFileSync(participationMarker(dir), '{}');
    c = capture();
    try {
      expect(await main(['node', 'privacy', '--data-dir', dir])).toBe(1);
    } finally {
      c.restore();
    }
    expect(c.err()).toMatch(/privacy ledger .* is missing/);
  });
  test('the plot of an empty summary says so', () => {
    expect(epsilonPlotSvg(summarizeLedger(null))).toContain('no rounds charged yet');
  });
});
