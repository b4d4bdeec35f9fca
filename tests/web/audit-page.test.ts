/**
 * The auditor page in headless Chromium (Debian's, driven by playwright-core; STACK.md): served
 * standalone from a node:http server on port 0 with a real exported log, it shows the rounds, the
 * parties per phase, the epsilon chart and "verified" — computed in the browser — and, when one byte
 * of the log is changed, shows the failure at that entry.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { stringify } from 'yaml';
import { sodiumReady } from '../../shared/crypto/sodium';
import { makeFederation, generateLog, appendSecondPolicyRun, type Federation, type GeneratedLog } from '../shared/audit/fixture';
import { auditLogPage, parseLogQuery, AuditApiError } from '../../shared/audit';
import { AUDIT_API_CSP, AUDIT_SECURITY_HEADERS, auditPageCsp } from '../../coordinator/http/security-headers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { build } = require('../../coordinator/http/audit-page/build.js') as { build: (out: string) => Promise<{ outDir: string; bytes: number }> };

const TOKEN = 'auditor-token-for-the-page-test';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-audit-page-'));
const files = new Map<string, { body: Buffer; type: string }>();
let server: http.Server;
let base: string;
let browser: Browser;
let fed: Federation;
let log: GeneratedLog;
let tamperedEntry: number;

beforeAll(async () => {
  await sodiumReady();
  const dist = path.join(root, 'dist');
  await build(dist);
  files.set('/index.html', { body: fs.readFileSync(path.join(dist, 'index.html')), type: 'text/html; charset=utf-8' });
  files.set('/audit-page.js', { body: fs.readFileSync(path.join(dist, 'audit-page.js')), type: 'text/javascript' });
  fed = await makeFederation();
  log = generateLog(fed, [{}, { drop: [{ party: 'insurer2', phase: 'mask' }] }, { abortAfter: 'share' }, {}]);
  files.set('/log.jsonl', { body: Buffer.from(log.text), type: 'application/x-ndjson' });
  files.set('/policy.yaml', { body: Buffer.from(stringify(fed.policy)), type: 'text/yaml' });
  files.set('/receipts.json', { body: Buffer.from(JSON.stringify(log.receipts)), type: 'application/json' });
  // the same coordinator and parties, then a run of a second policy appended to the log
  const { second, both } = appendSecondPolicyRun(fed, log);
  files.set('/both.jsonl', { body: Buffer.from(both.text), type: 'application/x-ndjson' });
  files.set('/policy2.yaml', { body: Buffer.from(stringify(second)), type: 'text/yaml' });
  // one byte changed: a digit of an epsilon value in a round-completed entry
  const lines = log.text.split('\n');
  tamperedEntry = lines.findIndex((l) => l.includes('"type":"round-completed"') && l.includes('"round":2'));
  const at = lines[tamperedEntry].indexOf('"epsilon":{"insurer":') + '"epsilon":{"insurer":'.length + 3;
  const bad = Buffer.from(log.text);
  const offset = Buffer.byteLength(lines.slice(0, tamperedEntry).map((l) => l + '\n').join('')) + at;
  bad[offset] = bad[offset] === 0x35 ? 0x36 : 0x35;
  files.set('/bad.jsonl', { body: bad, type: 'application/x-ndjson' });
  server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    // the coordinator's security headers (audit.controller.ts): the page must work under its CSP
    for (const [k, v] of Object.entries(AUDIT_SECURITY_HEADERS)) res.setHeader(k, v);
    res.setHeader('Content-Security-Policy', u.pathname.endsWith('/index.html') ? auditPageCsp(files.get('/index.html')!.body.toString('utf8')) : AUDIT_API_CSP);
    if (u.pathname === '/audit/v1/log') {
      // the coordinator's read-only audit API, as the contract says (auditor token, paging)
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end('auditor token required');
      try {
        const q = parseLogQuery({ from: u.searchParams.get('from'), limit: u.searchParams.get('limit') });
        const rows = log.recorder.writer.written().slice(q.from, q.from + Math.min(q.limit, 5));
        return void res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(auditLogPage(rows, q.from));
      } catch (e) {
        return void res.writeHead(e instanceof AuditApiError ? e.httpStatus : 500).end((e as Error).message);
      }
    }
    const f = files.get(u.pathname.replace(/^\/audit\//, '/'));
    if (!f) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': f.type }).end(f.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
  fs.rmSync(root, { recursive: true, force: true });
});

test('shows the rounds of a real run and "verified", computed in the browser', async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // a Content-Security-Policy refusal is reported on the console
  page.on('console', (m) => /Content Security Policy/i.test(m.text()) && errors.push(m.text()));
  await page.goto(`${base}/index.html?log=/log.jsonl&policy=/policy.yaml&receipts=/receipts.json`);
  const status = page.locator('#status:is([data-status="verified"], [data-status="failed"])');
  await status.waitFor({ timeout: 30_000 });
  expect(await page.locator('#status').getAttribute('data-status')).toBe('verified');
  expect(await page.locator('#status').textContent()).toMatch(/^verified: \d+ entries, 4 rounds/);
  const rows = page.locator('#timeline tr.round');
  expect(await rows.count()).toBe(4);
  expect(await rows.evaluateAll((rs) => rs.map((r) => r.getAttribute('data-status')))).toEqual(['completed', 'completed', 'aborted', 'completed']);
  expect(await rows.nth(1).textContent()).toContain('mask: platform, insurer');
  expect(await rows.nth(1).textContent()).not.toContain('mask: platform, insurer, insurer2');
  expect(await page.locator('#eps-chart polyline').count()).toBe(3);
  expect(await page.locator('#policy-hash').textContent()).toBe(fed.policyHash);
  expect(await page.locator('#failures').textContent()).toBe('none');
  // the inline stylesheet applied under the CSP (allowed by its hash): the verified banner's colour
  expect(await page.locator('#status').evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(227, 246, 232)');
  expect(errors).toEqual([]);
  await page.close();
});

test('a log with runs of two policies: verified with both policies given, not with one', async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const status = async (q: string) => {
    await page.goto(`${base}/index.html?${q}`);
    await page.locator('#status:is([data-status="verified"], [data-status="failed"])').waitFor({ timeout: 30_000 });
    return [await page.locator('#status').getAttribute('data-status'), await page.locator('#status').textContent()];
  };
  const [ok, text] = await status('log=/both.jsonl&policy=/policy2.yaml&policy=/policy.yaml');
  expect([ok, text]).toEqual(['verified', expect.stringMatching(/^verified: \d+ entries, 6 rounds/)]);
  expect(await page.locator('#timeline tr.round').count()).toBe(6);
  const [one, why] = await status('log=/both.jsonl&policy=/policy2.yaml');
  expect(one).toBe('failed');
  expect(why).toMatch(/\(entry\.policyHash\)/);
  expect(errors).toEqual([]);
  await page.close();
});

test('shows the failure when one byte of the log is changed', async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/index.html?log=/bad.jsonl&policy=/policy.yaml`);
  await page.locator('#status:is([data-status="verified"], [data-status="failed"])').waitFor({ timeout: 30_000 });
  expect(await page.locator('#status').getAttribute('data-status')).toBe('failed');
  expect(await page.locator('#status').textContent()).toMatch(new RegExp(`the first at entry ${tamperedEntry} \\((signature|encoding)\\)`));
  const first = page.locator('#failures tr.failure').first();
  expect(await first.locator('td').first().textContent()).toBe(String(tamperedEntry));
  await page.close();
});

test('the file pickers verify a log chosen locally', async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/index.html`);
  const logPath = path.join(root, 'picked.jsonl');
  const polPath = path.join(root, 'picked.yaml');
  fs.writeFileSync(logPath, files.get('/bad.jsonl')!.body);
  fs.writeFileSync(polPath, files.get('/policy.yaml')!.body);
  await page.setInputFiles('#logFile', logPath);
  await page.setInputFiles('#policyFile', polPath);
  await page.click('#verify');
  await page.locator('#status[data-status="failed"]').waitFor({ timeout: 30_000 });
  fs.writeFileSync(logPath, files.get('/log.jsonl')!.body);
  await page.setInputFiles('#logFile', logPath);
  await page.click('#verify');
  await page.locator('#status[data-status="verified"]').waitFor({ timeout: 30_000 });
  await page.close();
});

test('served under /audit/ by the coordinator: fetches the log with an auditor token and verifies it', async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/audit/index.html`);
  const polPath = path.join(root, 'served.yaml');
  fs.writeFileSync(polPath, files.get('/policy.yaml')!.body);
  await page.setInputFiles('#policyFile', polPath);
  await page.fill('#token', 'wrong-token');
  await page.click('#verify');
  await page.locator('#status[data-status="failed"]').waitFor({ timeout: 30_000 });
  expect(await page.locator('#status').textContent()).toContain('HTTP 401');
  await page.fill('#token', TOKEN);
  await page.click('#verify');
  await page.locator('#status[data-status="verified"]').waitFor({ timeout: 30_000 });
  expect(await page.locator('#timeline tr.round').count()).toBe(4);
  await page.close();
});
