/**
 * `fedbridge audit export | verify`, in-process: export pages through an HTTP server speaking the
 * audit API contract (proto/fedbridge/v1/audit-api.openapi.yaml) with an auditor bearer token;
 * verify exits 0 on a clean log, 1 with the failing entry on a tampered one, and uses the parties'
 * receipts from --receipts.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { stringify } from 'yaml';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { receiptFileName, parseLogQuery, auditLogPage, AuditApiError } from '../../../shared/audit';
import { makeFederation, generateLog, type Federation, type GeneratedLog } from './fixture';
import { runCli as run } from '../../cli-run';

const TOKEN = 'auditor-token-0123456789abcdef';
let fed: Federation;
let log: GeneratedLog;
let server: http.Server;
let url: string;
const requests: string[] = [];
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-audit-cli-'));
const policyFile = path.join(root, 'policy.yaml');

beforeAll(async () => {
  await sodiumReady();
  fed = await makeFederation();
  log = generateLog(fed, [{}, { drop: [{ party: 'insurer2', phase: 'mask' }] }, {}]);
  fs.writeFileSync(policyFile, stringify(fed.policy));
  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401).end('auditor token required');
      return;
    }
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname !== '/audit/v1/log') {
      res.writeHead(404).end();
      return;
    }
    try {
      const q = parseLogQuery({ from: u.searchParams.get('from'), limit: u.searchParams.get('limit') });
      const limit = Math.min(q.limit, 7); // the server caps pages: the client must page on
      const rows = log.recorder.writer.written().slice(q.from, q.from + limit);
      res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(auditLogPage(rows, q.from));
    } catch (e) {
      res.writeHead(e instanceof AuditApiError ? e.httpStatus : 500).end((e as Error).message);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  fs.rmSync(root, { recursive: true, force: true });
});

test('export pages through the API into a byte-identical log; verify passes with the receipts', async () => {
  const out = path.join(root, 'log.jsonl');
  const { fetchAuditLog } = await import('../../../shared/cli/audit');
  const page = await fetchAuditLog(url, TOKEN, { limit: 7 });
  expect(page.bytes.toString()).toBe(log.text);
  const tokenFile = path.join(root, 'auditor.token');
  fs.writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  let r = await run(['audit', 'export', '--coordinator', url, '--out', out, '--token-file', tokenFile, '--json']);
  expect(r.err).toBe('');
  expect(JSON.parse(r.out)).toEqual({ out, entries: log.text.split('\n').length - 1 });
  expect(fs.readFileSync(out, 'utf8')).toBe(log.text);
  const rdir = path.join(root, 'receipts');
  fs.mkdirSync(path.join(rdir, 'platform'), { recursive: true });
  for (const rc of log.receipts) fs.writeFileSync(path.join(rdir, 'platform', receiptFileName(rc)), JSON.stringify(rc));
  r = await run(['audit', 'verify', out, '--policy', policyFile, '--receipts', rdir, '--json']);
  expect(r.code).toBe(0);
  const v = JSON.parse(r.out);
  expect(v).toMatchObject({ ok: true, rounds: 3, failures: [], receipts: log.receipts.length });
  expect(v.entries).toBe(log.text.split('\n').length - 1);
  r = await run(['audit', 'verify', out, '--policy', policyFile]);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/verified: every check passed/);
  // without the parties' receipts a cut-off log would verify too: the output says so
  expect(r.out).toMatch(/\n  note: completeness not checked: no party receipts given/);
  expect(r.out).toMatch(/run-1 round 2: completed; survivors insurer, platform/);
});

test('export refuses a wrong token and says how to get one; a token on the command line is warned about', async () => {
  const r = await run(['audit', 'export', '--coordinator', url, '--out', path.join(root, 'x.jsonl'), '--token', 'wrong']);
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/^fedbridge: warning: --token puts the auditor token in the process list; prefer --token-file or FEDBRIDGE_AUDITOR_TOKEN\n/);
  expect(r.err).toMatch(/refused the auditor token \(HTTP 401\)/);
  const both = await run(['audit', 'export', '--coordinator', url, '--out', path.join(root, 'x.jsonl'), '--token', 'a', '--token-file', 'b']);
  expect([both.code, both.err]).toEqual([2, 'fedbridge: give the auditor token once: --token-file or --token, not both\n']);
  const missing = await run(['audit', 'export', '--coordinator', url, '--out', path.join(root, 'x.jsonl'), '--token-file', path.join(root, 'nope')]);
  expect([missing.code, missing.err]).toEqual([2, `fedbridge: --token-file: cannot read ${path.join(root, 'nope')} (ENOENT)\n`]);
  expect(fs.existsSync(path.join(root, 'x.jsonl'))).toBe(false);
});

test('verify of a tampered or truncated log exits 1 naming the entry', async () => {
  const bad = path.join(root, 'bad.jsonl');
  fs.writeFileSync(bad, log.text.replace('"survivors":["insurer","platform"]', '"survivors":["insurer", "platform"]'));
  let r = await run(['audit', 'verify', bad, '--policy', policyFile, '--json']);
  expect(r.code).toBe(1);
  const v = JSON.parse(r.out);
  expect(v.ok).toBe(false);
  const want = log.text.split('\n').findIndex((l) => l.includes('"survivors":["insurer","platform"]'));
  expect(v.failures[0]).toMatchObject({ entry: want, field: 'encoding' });
  expect(r.err).toMatch(new RegExp(`failed verification .*first at entry ${want}, encoding`));

  const lines = log.text.split('\n').slice(0, -1);
  fs.writeFileSync(bad, lines.slice(0, lines.length - 2).map((l) => l + '\n').join(''));
  const rdir = path.join(root, 'receipts');
  r = await run(['audit', 'verify', bad, '--policy', policyFile, '--receipts', rdir, '--json']);
  expect(r.code).toBe(1);
  expect(JSON.parse(r.out).failures[0]).toMatchObject({ entry: lines.length - 2 });
});

test('bad input: missing log, bad policy', async () => {
  let r = await run(['audit', 'verify', path.join(root, 'none.jsonl'), '--policy', policyFile]);
  expect(r.code).toBe(2);
  expect(r.err).toMatch(/cannot read audit log .*none.jsonl: ENOENT/);
  r = await run(['audit', 'verify', path.join(root, 'log.jsonl'), '--policy', path.join(root, 'none.yaml')]);
  expect(r.err).toMatch(/cannot read policy/);
  r = await run(['audit', 'export', '--coordinator', 'ftp://x', '--out', path.join(root, 'y'), '--token', TOKEN]);
  expect(r.err).toMatch(/must be an http\(s\) URL/);
  // no policy; a second policy of another coordinator (it cannot belong to the same log)
  const logFile = path.join(root, 'plain.jsonl');
  fs.writeFileSync(logFile, log.bytes);
  r = await run(['audit', 'verify', logFile]);
  expect([r.code, r.err]).toEqual([2, 'fedbridge: --policy <file> is required (the policy YAML the parties signed; repeat it for a log with runs of several policies)\n']);
  const foreign = path.join(root, 'foreign.yaml');
  fs.writeFileSync(foreign, stringify((await makeFederation()).policy));
  r = await run(['audit', 'verify', logFile, '--policy', policyFile, '--policy', foreign]);
  expect(r.code).toBe(2);
  expect(r.err).toMatch(/^fedbridge: --policy: policy [0-9a-f]{64} pins another coordinator key than policy [0-9a-f]{64}: one log has one coordinator\n$/);
  // the same policy twice is one policy: the log verifies
  r = await run(['audit', 'verify', logFile, '--policy', policyFile, '--policy', policyFile]);
  expect(r.code).toBe(0);
});
