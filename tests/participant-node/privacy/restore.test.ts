/**
 * restoreLedgerFromAudit (participant-node/privacy/restore.ts) on a generated log with runs of two
 * policies (same coordinator and parties; the second with more noise and fewer rounds): the ledger
 * rebuilt from the verified log charges every round the log charged this party, each with its own
 * run's policy, and ends at the lifetime epsilon the log recorded; with one policy the log does
 * not verify and nothing is restored; an existing ledger is never replaced.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { verifyLog } from '../../../shared/audit/verify';
import { readLedger } from '../../../participant-node/privacy/ledger';
import { restoreLedgerFromAudit } from '../../../participant-node/privacy/restore';
import { appendSecondPolicyRun, generateLog, makeFederation } from '../../shared/audit/fixture';

const dirs: string[] = [];
const freshDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-restore-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

test('a log with runs of two policies: each round charged with its own policy, the lifetime epsilon as logged', async () => {
  const fed = await makeFederation();
  const first = generateLog(fed, [{}, { drop: [{ party: 'insurer2', phase: 'mask' }] }, {}]);
  const { second, both } = appendSecondPolicyRun(fed, first);

  const verified = verifyLog(both.bytes, { policy: second, otherPolicies: [fed.policy] });
  expect(verified.failures).toEqual([]);
  const dir = freshDir();
  const r = restoreLedgerFromAudit(dir, 'insurer2', [second, fed.policy], verified);
  // insurer2 dropped before its masked input in round 2 of run-1: charged in 4 of the 5 rounds
  const charged = verified.timeline.filter((s) => s.epsilon.insurer2 !== undefined);
  expect(charged).toHaveLength(4);
  expect(r.rounds).toBe(4);
  expect(r.epsilon).toBeCloseTo(charged[charged.length - 1].epsilon.insurer2, 9);
  const ledger = readLedger(dir)!;
  expect(ledger.entries.map((e) => [e.runId, e.round])).toEqual([['run-1', 1], ['run-1', 3], ['run-2', 1], ['run-2', 2]]);
  // the second policy's rounds were charged with its larger noise: each adds less than a first-policy round
  const steps = ledger.entries.map((e, i) => e.epsilonAfter - (i ? ledger.entries[i - 1].epsilonAfter : 0));
  expect(steps[2]).toBeLessThan(steps[1]);
  expect(ledger.budget).toBe(second.privacy.epsilonBudget);

  // the existing ledger is never replaced
  expect(() => restoreLedgerFromAudit(dir, 'insurer2', [second, fed.policy], verified)).toThrow(/already has a privacy ledger/);
  // with one policy the log does not verify, and nothing is restored
  const other = freshDir();
  expect(() => restoreLedgerFromAudit(other, 'insurer2', [second], verifyLog(both.bytes, { policy: second }))).toThrow(/does not verify/);
  // a verified log whose run names a policy that was not given to the restore: refused
  expect(() => restoreLedgerFromAudit(other, 'insurer2', [second], verified)).toThrow(/ran under policy [0-9a-f]{64}, which was not given/);
  expect(readLedger(other)).toBeNull();
});

test("a log that does not account for the node's own past is refused, and no ledger is written", async () => {
  const fed = await makeFederation();
  const first = generateLog(fed);
  const { second, both } = appendSecondPolicyRun(fed, first);
  const verifiedFirst = verifyLog(first.bytes, { policy: fed.policy });
  expect(verifiedFirst.failures).toEqual([]);

  // the node countersigned a round of run-2; the log given ends before run-2 (truncated or stale)
  const dir = freshDir();
  const kept = both.receipts.find((r) => r.party === 'insurer2' && r.runId === 'run-2');
  expect(kept).toBeDefined();
  fs.mkdirSync(path.join(dir, 'receipts'));
  fs.writeFileSync(path.join(dir, 'receipts', 'r.json'), JSON.stringify(kept));
  expect(() => restoreLedgerFromAudit(dir, 'insurer2', [fed.policy], verifiedFirst)).toThrow(/countersigned round 1 of run run-2 .* the audit log charges "insurer2" nothing for it/);
  expect(readLedger(dir)).toBeNull();
  // with the whole log the same node is restored
  const r = restoreLedgerFromAudit(dir, 'insurer2', [second, fed.policy], verifyLog(both.bytes, { policy: second, otherPolicies: [fed.policy] }));
  expect(r.rounds).toBeGreaterThan(2);

  // a node that took part (participation marker) and a verified log that charges it nothing: no zero-round ledger
  const never = generateLog(fed, [{ drop: [{ party: 'insurer2', phase: 'advertise' }] }]);
  const verifiedNever = verifyLog(never.bytes, { policy: fed.policy });
  expect(verifiedNever.failures).toEqual([]);
  const took = freshDir();
  fs.writeFileSync(path.join(took, '.participated'), JSON.stringify({ firstChargeAt: new Date().toISOString() }));
  expect(() => restoreLedgerFromAudit(took, 'insurer2', [fed.policy], verifiedNever)).toThrow(/has taken part in rounds before .* charges "insurer2" nothing/);
  expect(readLedger(took)).toBeNull();
  // a node that never took part gets the log's (empty) spend
  const fresh = freshDir();
  expect(restoreLedgerFromAudit(fresh, 'insurer2', [fed.policy], verifiedNever)).toEqual({ rounds: 0, epsilon: 0 });
});
