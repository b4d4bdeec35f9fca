/**
 * Issue 6 "Done means": a table test mutating each policy-governed field of a round, one at a time.
 * Each mutated log is re-chained and re-signed with the coordinator's key and every receipt is
 * re-signed by its party over the new heads, so every coordinator signature and every receipt is
 * valid: only the policy checks can catch the change, at the mutated entry, on the named field.
 */
import { sodiumReady } from '../../../shared/crypto/sodium';
import { verifyLog } from '../../../shared/audit';
import { makeFederation, generateLog, entriesOf, rechain, type Federation } from './fixture';

type E = Record<string, any>;
let fed: Federation;
let base: E[];

beforeAll(async () => {
  await sodiumReady();
  fed = await makeFederation();
  base = entriesOf(generateLog(fed, [{}, { drop: [{ party: 'insurer2', phase: 'consistency' }] }, { abortAfter: 'consistency' }, {}]).text);
});

const find = (es: E[], pred: (e: E) => boolean): number => {
  const i = es.findIndex(pred);
  if (i < 0) throw new Error('fixture lacks the entry to mutate');
  return i;
};
const started = (r: number) => (e: E) => e.type === 'round-started' && e.round === r;
const phase = (r: number, p: string) => (e: E) => e.type === 'round-phase' && e.round === r && e.phase === p;
const completed = (r: number) => (e: E) => e.type === 'round-completed' && e.round === r;
const aborted = (r: number) => (e: E) => e.type === 'round-aborted' && e.round === r;

interface Row {
  name: string;
  at: (e: E) => boolean;
  mutate: (e: E) => void;
  field: string;
  fixMerkle?: boolean;
  /** where the failure is reported, when not at the mutated entry */
  failAt?: (e: E) => boolean;
}

const PARAM_CHANGES: Record<string, unknown> = {
  mechanism: 'round-noise',
  clipNorm: 2,
  noiseMultiplier: 0.5,
  samplingRate: 0.02,
  steps: 49,
  delta: 1e-5,
  noiseMode: 'distributed',
  nMin: 3,
  gamma: 512,
  bits: 24,
  dimension: 100,
  rotation: 'none',
  threshold: 1,
};

const rows: Row[] = [
  ...Object.entries(PARAM_CHANGES).map(([k, v]): Row => ({ name: `round-started params.${k}`, at: started(2), mutate: (e) => (e.params[k] = v), field: `entry.params.${k}` })),
  ...Object.entries(PARAM_CHANGES).map(([k, v]): Row => ({ name: `round-completed params.${k}`, at: completed(1), mutate: (e) => (e.params[k] = v), field: `entry.params.${k}` })),
  { name: 'round policy hash', at: started(1), mutate: (e) => (e.policyHash = 'cd'.repeat(32)), field: 'entry.policyHash' },
  { name: 'phase policy hash', at: phase(1, 'share'), mutate: (e) => (e.policyHash = 'cd'.repeat(32)), field: 'entry.policyHash' },
  { name: 'a party outside the policy', at: started(1), mutate: (e) => e.parties.push('mallory'), field: 'entry.parties' },
  { name: 'fewer parties than the minimum', at: started(1), mutate: (e) => (e.parties = ['platform']), field: 'entry.parties' },
  { name: 'a phase party that skipped the previous phase', at: phase(2, 'unmask'), mutate: (e) => e.parties.push('insurer2'), field: 'entry.parties' },
  { name: 'phases out of order', at: phase(1, 'share'), mutate: (e) => (e.phase = 'mask'), field: 'entry.phase' },
  { name: 'completed below the threshold', at: phase(1, 'unmask'), mutate: (e) => (e.parties = ['platform']), field: 'parties.unmask', failAt: completed(1) },
  { name: 'survivors differ from the masked inputs', at: completed(2), mutate: (e) => (e.survivors = ['insurer', 'platform']), field: 'entry.survivors' },
  { name: 'a server view kept although the policy does not release it (audit.auditorServerView)', at: completed(1), mutate: (e) => (e.serverViewHash = 'ef'.repeat(32)), field: 'entry.serverViewHash' },
  { name: 'consistency survivor list', at: phase(1, 'consistency'), mutate: (e) => (e.survivors = ['insurer', 'platform']), field: 'entry.survivors' },
  { name: 'masked input bit width', at: phase(1, 'mask'), mutate: (e) => (e.maskedInputs[0].bits = 16), field: 'entry.maskedInputs.platform.bits' },
  { name: 'masked input length', at: phase(1, 'mask'), mutate: (e) => (e.maskedInputs[0].length = 7), field: 'entry.maskedInputs.platform.length' },
  { name: 'a masked input without its party signature', at: phase(1, 'mask'), mutate: (e) => (e.maskedInputs[1].signature = e.maskedInputs[0].signature), field: 'entry.maskedInputs.insurer.signature' },
  { name: 'a key advertisement without its party signature', at: phase(1, 'advertise'), mutate: (e) => (e.advertisements[2].cPk = e.advertisements[1].cPk), field: 'entry.advertisements.insurer2.signature' },
  { name: 'epsilon understated', at: completed(1), mutate: (e) => (e.epsilon.platform *= 0.9), field: 'entry.epsilon.platform' },
  { name: 'a charged party left out of epsilon', at: completed(2), mutate: (e) => delete e.epsilon.insurer2, field: 'entry.epsilon' },
  { name: 'an aborted round charged nobody', at: aborted(3), mutate: (e) => (e.epsilon = {}), field: 'entry.epsilon' },
  { name: 'model version lineage', at: completed(2), mutate: (e) => (e.parentModelVersion = 1), field: 'entry.parentModelVersion' },
  { name: 'round numbering', at: started(2), mutate: (e) => (e.round = 5), field: 'entry.round' },
  // round 2 logged under round 1's secure-aggregation number, so that round 1's evidence would verify in it
  { name: 'secure-aggregation round number', at: started(2), mutate: (e) => (e.secaggRound = 1), field: 'entry.secaggRound' },
  { name: 'rounds planned', at: (e) => e.type === 'run-started', mutate: (e) => (e.roundsPlanned = 99), field: 'entry.roundsPlanned' },
  { name: 'a missing policy signature', at: (e) => e.type === 'policy-registered', mutate: (e) => e.signatures.pop(), field: 'entry.signatures.insurer2' },
  { name: 'a party enrolled under another key', at: (e) => e.type === 'participant-enrolled', mutate: (e) => (e.publicKey = fed.policy.parties[1].publicKey), field: 'enrolled.platform', failAt: (e) => e.type === 'policy-registered' },
  { name: 'Merkle root of a round', at: completed(1), mutate: (e) => (e.merkle.root = '00'.repeat(32)), field: 'entry.merkle.root', fixMerkle: false },
  { name: 'run completed early', at: (e) => e.type === 'run-completed', mutate: (e) => (e.finalModelVersion = 2), field: 'entry.finalModelVersion' },
];

describe('verify catches each policy-governed field, with every signature valid', () => {
  test.each(rows.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    const es = JSON.parse(JSON.stringify(base)) as E[];
    const i = find(es, row.at);
    row.mutate(es[i]);
    const log = rechain(fed, es, { resignReceipts: true, fixMerkle: row.fixMerkle });
    const r = verifyLog(log.bytes, { policy: fed.policy });
    expect(r.ok).toBe(false);
    expect(r.failures).toContainEqual(expect.objectContaining({ entry: row.failAt ? find(es, row.failAt) : i, field: row.field }));
    // the coordinator's signatures, the chain and the receipts are all valid
    expect(r.failures.filter((f) => ['signature', 'prevHash', 'idx', 'encoding'].includes(f.field) || ['entry.receipt.signature', 'entry.receipt.head'].includes(f.field))).toEqual([]);
  });

  test('the unmutated entries re-chained the same way verify clean', () => {
    const log = rechain(fed, base, { resignReceipts: true });
    expect(verifyLog(log.bytes, { policy: fed.policy }).failures).toEqual([]);
  });

  test('a coordinator that keeps running rounds past a party budget fails on that party epsilon', async () => {
    const tight = await makeFederation({ edit: (p) => (p.parties[1].epsilonBudget = 0.9) });
    const log = generateLog(tight);
    const r = verifyLog(log.bytes, { policy: tight.policy });
    const over = r.failures.filter((f) => f.field === 'entry.epsilon.insurer');
    expect(over.length).toBeGreaterThan(0);
    expect(over[0].expected).toBe('<= budget 0.9');
    expect(Number(over[0].found)).toBeGreaterThan(0.9);
    expect(r.failures.every((f) => f.field === 'entry.epsilon.insurer')).toBe(true);
  });

  test('secure-aggregation evidence signed in another run (round numbers restart per run) fails on every party signature', async () => {
    const replayed = generateLog(fed, [{}, {}], { runId: 'run-2', evidenceRunId: 'run-1' });
    const r = verifyLog(replayed.bytes, { policy: fed.policy });
    const bad = new Set(r.failures.map((f) => f.field));
    for (const p of fed.policy.parties.map((q) => q.name)) {
      for (const field of ['entry.advertisements', 'entry.maskedInputs', 'entry.survivorSignatures']) expect(bad).toContain(`${field}.${p}.signature`);
    }
    expect(verifyLog(generateLog(fed, [{}, {}], { runId: 'run-2' }).bytes, { policy: fed.policy }).failures).toEqual([]);
  });

  test('distributed noise: a round completed with fewer than n_min + 1 masked inputs fails; round-noise epsilon is recomputed', async () => {
    const dist = await makeFederation({
      edit: (p) => {
        p.privacy.mechanism = 'round-noise';
        p.privacy.noiseMode = 'distributed';
        p.privacy.nMin = 2;
        p.privacy.noiseMultiplier = 4;
      },
    });
    const ok = generateLog(dist);
    const clean = verifyLog(ok.bytes, { policy: dist.policy });
    expect(clean.failures).toEqual([]);
    expect(clean.timeline[2].epsilon.platform).toBeGreaterThan(0);
    const bad = generateLog(dist, [{}, { drop: [{ party: 'insurer2', phase: 'mask' }] }, {}, {}]);
    const r = verifyLog(bad.bytes, { policy: dist.policy });
    expect(r.failures).toContainEqual(expect.objectContaining({ field: 'parties.mask', expected: 'at least n_min + 1=3 masked inputs (distributed noise; each party can remove its own share)', found: '2' }));
  });
});
