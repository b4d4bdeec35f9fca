/**
 * The policy's training.rounds bounds a run: a coordinator that signs with its pinned key cannot
 * run more rounds than the parties agreed to and still verify. training.rounds counts completed
 * rounds (an aborted round is retried as the next round number, coordinator/rounds), so a retried
 * round past the number is fine; a round started after the planned ones completed is not, whether
 * the run then completes, is aborted or is left open. A run or round still open at the end of the
 * log, and a log verified without receipts, are notes.
 */
import { sodium, sodiumReady } from '../../../shared/crypto/sodium';
import { policyHash } from '../../../shared/policy/schema';
import { signPolicyHash } from '../../../shared/policy/sign';
import { verifyLog } from '../../../shared/audit';
import { makeFederation, generateLog, entriesOf, rechain, type Federation } from './fixture';

beforeAll(async () => {
  await sodiumReady();
});

const b64 = (b: Uint8Array) => sodium().to_base64(b, sodium().base64_variants.ORIGINAL);
const NO_RECEIPTS = /^completeness not checked: no party receipts given/;

/**
 * A log of `completed` completed rounds under `fed`'s policy (training.rounds smaller), every entry
 * and every party signature genuine: generated under a copy of the policy that plans `completed`
 * rounds, then carried over to `fed`'s policy hash (the parties signed it; the coordinator signs the rest).
 */
function overlongLog(fed: Federation, completed: number, end: 'run-aborted' | 'open'): Record<string, any>[] {
  const more = JSON.parse(JSON.stringify(fed.policy));
  more.training.rounds = completed;
  const fedMore = { ...fed, policy: more, policyHash: policyHash(more) };
  const out: Record<string, any>[] = [];
  for (const e0 of entriesOf(generateLog(fedMore, Array.from({ length: completed }, () => ({}))).text)) {
    const e = JSON.parse(JSON.stringify(e0).split(fedMore.policyHash).join(fed.policyHash));
    if (e.type === 'policy-registered') for (const s of e.signatures) s.signature = b64(signPolicyHash(fed.policyHash, fed.parties.get(s.party)!.secretKey));
    if (e.type === 'run-started') e.roundsPlanned = fed.policy.training.rounds;
    if (e.type === 'run-completed') {
      if (end === 'run-aborted') out.push({ type: 'run-aborted', idx: e.idx, at: e.at, runId: e.runId, policyHash: e.policyHash, reason: 'operator stop' });
      continue;
    }
    out.push(e);
  }
  // receipts after a dropped run-completed name the entry before it
  return out.map((e, i) => (e.type === 'receipt' && e.receipt.headIdx >= i ? { ...e, receipt: { ...e.receipt, headIdx: i - 1 } } : e)).map((e, i) => ({ ...e, idx: i }));
}

describe('verifyLog: the rounds a run may have', () => {
  test.each(['run-aborted', 'open'] as const)('5 completed rounds under a policy of 3, then %s: fails at the 4th and 5th round-started', async (end) => {
    const fed = await makeFederation({ rounds: 3 });
    const entries = overlongLog(fed, 5, end);
    const r = verifyLog(rechain(fed, entries, { resignReceipts: true }).bytes, { policy: fed.policy });
    const starts = entries.flatMap((e, i) => (e.type === 'round-started' && e.round > 3 ? [i] : []));
    expect(starts).toHaveLength(2);
    expect(r.ok).toBe(false);
    expect(r.failures).toEqual(
      starts.map((i, k) => ({ entry: i, field: 'entry.type', expected: "run-completed or run-aborted: the run's 3 planned rounds (policy training.rounds) have completed", found: `round-started of round ${4 + k} after ${3 + k} completed rounds` })),
    );
    if (end === 'open') expect(r.warnings).toContain('run-1: the run is still running at the end of the log (5 of 3 rounds completed): in progress, or the log was cut off');
  });

  test('aborted rounds are retried as the next number: round 5 completing the 3rd planned round verifies', async () => {
    const fed = await makeFederation({ rounds: 3 });
    const log = generateLog(fed, [{ abortAfter: 'share' }, {}, { abortAfter: 'advertise' }, {}, {}]);
    const r = verifyLog(log.bytes, { policy: fed.policy, receipts: log.receipts.map((x, i) => ({ source: `r${i}`, receipt: x })) });
    expect(r.failures).toEqual([]);
    expect(r.timeline.map((s) => [s.round, s.status])).toEqual([[1, 'aborted'], [2, 'completed'], [3, 'aborted'], [4, 'completed'], [5, 'completed']]);
    expect(r.runs).toEqual([{ runId: 'run-1', startIdx: 2, status: 'completed', roundsPlanned: 3 }]);
    expect(r.warnings).toEqual([]);
  });

  test('a log cut off in a round or between rounds verifies with notes saying so; without receipts a note says completeness was not checked', async () => {
    const fed = await makeFederation({ rounds: 3 });
    const log = generateLog(fed);
    const lines = log.text.split('\n').slice(0, -1);
    const r3 = lines.findIndex((l) => l.includes('"type":"round-started"') && l.includes('"round":3'));
    const cut = (n: number) => new TextEncoder().encode(lines.slice(0, n).join('\n') + '\n');

    const between = verifyLog(cut(r3), { policy: fed.policy });
    expect(between.ok).toBe(true);
    expect(between.warnings).toEqual(['run-1: the run is still running at the end of the log (2 of 3 rounds completed): in progress, or the log was cut off', expect.stringMatching(NO_RECEIPTS)]);

    const inRound = verifyLog(cut(r3 + 3), { policy: fed.policy });
    expect(inRound.ok).toBe(true);
    expect(inRound.warnings).toEqual([
      'run-1: the run is still running at the end of the log (2 of 3 rounds completed): in progress, or the log was cut off',
      'run-1 round 3: the round is still open at the end of the log',
      expect.stringMatching(NO_RECEIPTS),
    ]);

    // the whole log, no receipts: only the completeness note
    expect(verifyLog(log.bytes, { policy: fed.policy }).warnings).toEqual([expect.stringMatching(NO_RECEIPTS)]);
    // with the parties' receipts the cut fails (as before)
    expect(verifyLog(cut(r3), { policy: fed.policy, receipts: log.receipts.map((x, i) => ({ source: `r${i}`, receipt: x })) }).ok).toBe(false);
  });
});
