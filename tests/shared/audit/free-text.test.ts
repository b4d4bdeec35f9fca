/**
 * Free text in the audit log (round-aborted / run-aborted reasons, token labels, removal and
 * revocation reasons) is at most 256 characters without control characters: a hostile coordinator's
 * log breaking that fails verification (the failure never quotes the text); the coordinator's
 * recorder logs only valid text, whatever reason it is handed. `audit verify` prints everything from
 * the log with its control characters escaped, so a reason cannot hide the verdict or fake lines.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { verifyLog } from '../../../shared/audit';
import { restoreLedgerFromAudit } from '../../../participant-node/privacy/restore';
import { makeFederation, generateLog, entriesOf, rechain } from './fixture';
import { runCli } from '../../cli-run';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-audit-text-'));
beforeAll(async () => {
  await sodiumReady();
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const EXPECTED = 'free text of at most 256 characters without control characters';
const FAKE = 'operator)\n  run-1 round 2: completed; survivors insurer, insurer2, platform\nverified: every check passed\n\u001b[8m';

test('a reason or label too long or holding control characters fails at its entry; the failure does not quote it', async () => {
  const fed = await makeFederation({ rounds: 2 });
  const entries = entriesOf(generateLog(fed, [{ abortAfter: 'share' }, {}, {}]).text);
  const ab = entries.findIndex((e) => e.type === 'round-aborted');
  entries[ab].reason = FAKE;
  const end = entries.findIndex((e) => e.type === 'run-completed');
  entries[end] = { type: 'run-aborted', idx: end, at: entries[end].at, runId: entries[end].runId, policyHash: entries[end].policyHash, reason: 'x'.repeat(3_000_000) };
  const at = entries[entries.length - 1].at;
  entries.push({ type: 'token-issued', idx: entries.length, at, tokenId: 'tok-1', role: 'auditor', label: 'ok\u009b2J' });
  entries.push({ type: 'token-revoked', idx: entries.length, at, tokenId: 'tok-1', reason: 'gone\u202e' });
  const r = verifyLog(rechain(fed, entries, { resignReceipts: true }).bytes, { policy: fed.policy });
  expect(r.failures).toEqual([
    { entry: ab, field: 'entry.reason', expected: EXPECTED, found: expect.stringMatching(/^holds the control character U\+000A at position 9 /) },
    { entry: end, field: 'entry.reason', expected: EXPECTED, found: 'is 3000000 characters long, at most 256' },
    { entry: entries.length - 2, field: 'entry.label', expected: EXPECTED, found: expect.stringMatching(/^holds the control character U\+009B at position 2 /) },
    { entry: entries.length - 1, field: 'entry.reason', expected: EXPECTED, found: expect.stringMatching(/^holds the control character U\+202E at position 4 /) },
  ]);
});

test("the recorder logs any reason it is handed as valid free text (controls as spaces, cut at 256)", async () => {
  const fed = await makeFederation({ rounds: 3 });
  const log = generateLog(fed, [{}]);
  log.recorder.startRound({ runId: 'run-1', round: 2, secaggRound: 2, baseModelVersion: log.modelVersion, parties: fed.policy.parties.map((p) => p.name) });
  log.recorder.abortRun('run-1', `the store refused the commit:\n${'SQLITE_IOERR '.repeat(100)}\u001b[0m`);
  const r = verifyLog(new TextEncoder().encode(log.recorder.writer.exportText()), { policy: fed.policy });
  expect(r.failures).toEqual([]);
  const reasons = entriesOf(log.recorder.writer.exportText()).filter((e) => e.type === 'round-aborted' || e.type === 'run-aborted').map((e) => e.reason as string);
  expect(reasons).toHaveLength(2);
  for (const x of reasons) {
    expect(x).toHaveLength(256);
    expect(x.startsWith('the store refused the commit: SQLITE_IOERR')).toBe(true);
  }
});

test('audit verify prints the log\'s text with control characters escaped: no fake line, no hidden verdict', async () => {
  const fed = await makeFederation({ rounds: 2 });
  const entries = entriesOf(generateLog(fed, [{ abortAfter: 'share' }, {}, {}]).text);
  entries.find((e) => e.type === 'round-aborted')!.reason = FAKE;
  const logFile = path.join(root, 'ansi.jsonl');
  const policyFile = path.join(root, 'policy.yaml');
  fs.writeFileSync(logFile, rechain(fed, entries, { resignReceipts: true }).bytes);
  fs.writeFileSync(policyFile, stringify(fed.policy));
  const r = await runCli(['audit', 'verify', logFile, '--policy', policyFile]);
  expect(r.code).toBe(1);
  for (const s of [r.out, r.err]) expect(s).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  // every line the command wrote is one of its own: the reason stays inside its round's line
  const lines = r.out.split('\n').slice(0, -1);
  expect(lines.filter((l) => /verified: every check passed/.test(l))).toEqual([expect.stringContaining('run-1 round 1: aborted (operator)\\u000a  run-1 round 2: completed')]);
  expect(lines.filter((l) => /^  run-1 round \d+: /.test(l))).toHaveLength(3);
  expect(lines[lines.length - 1]).toBe('NOT verified: 1 failure(s)');
  expect(r.out).toContain('\\u001b[8m');
});

test('restoring a ledger from a log that does not verify: the error escapes what it quotes from the log', async () => {
  const fed = await makeFederation({ rounds: 2 });
  const verified = { ...verifyLog(generateLog(fed).bytes, { policy: fed.policy }), ok: false, failures: [{ entry: 3, field: 'entry.epsilon.\u001b]0;x\u0007', expected: '1', found: '2' }] };
  const dir = fs.mkdtempSync(path.join(root, 'node-'));
  let msg = '';
  try {
    restoreLedgerFromAudit(dir, 'platform', fed.policy, verified);
  } catch (e) {
    msg = (e as Error).message;
  }
  expect(msg).toMatch(/^the audit log does not verify \(1 failure\(s\): entry 3 entry\.epsilon\.\\u001b\]0;x\\u0007: expected "1", found "2"\); refusing to restore from it$/);
});

test('audit export quotes a server\'s error text with its control characters escaped', async () => {
  const http = await import('node:http');
  const { fetchAuditLog } = await import('../../../shared/cli/audit');
  const server = http.createServer((_req, res) => res.writeHead(500).end('boom\u001b[2J\nfedbridge: exported 0 entries'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as import('node:net').AddressInfo).port;
    await expect(fetchAuditLog(`http://127.0.0.1:${port}`, 'auditor-token-0123456789')).rejects.toThrow(/^the audit API answered HTTP 500 for \/audit\/v1\/log: boom\\u001b\[2J\\u000afedbridge: exported 0 entries$/);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
