/**
 * `fedbridge audit export --artifacts DIR` and `audit verify --replay DIR`, in-process against an
 * HTTP server speaking the audit API contract (proto/fedbridge/v1/audit-api.openapi.yaml): the
 * export downloads each run's initial model and each completed round's aggregate, a second export
 * downloads only what changed, verify --replay recomputes the model chain, a substituted artifact
 * fails at its entry, and a refusal (HTTP 403: the policy does not release artifacts) is reported
 * with the server's reason after the log was written.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { stringify } from 'yaml';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { parseLogQuery, auditLogPage } from '../../../shared/audit';
import { makeFederation, generateLog, type Federation, type GeneratedLog } from './fixture';
import { runCli as run } from '../../cli-run';

const TOKEN = 'auditor-token-0123456789abcdef';
let fed: Federation;
let log: GeneratedLog;
let server: http.Server;
let url: string;
let release = true;
const requests: string[] = [];
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-replay-cli-'));
const policyFile = path.join(root, 'policy.yaml');
const tokenFile = path.join(root, 'token');

beforeAll(async () => {
  await sodiumReady();
  fed = await makeFederation({ rounds: 2 });
  log = generateLog(fed, [{}, { abortAfter: 'advertise' }, { drop: [{ party: 'insurer2', phase: 'mask' }] }], { chain: {} });
  fs.writeFileSync(policyFile, stringify(fed.policy));
  fs.writeFileSync(tokenFile, TOKEN + '\n');
  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end('auditor token required');
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/audit/v1/log') {
      const q = parseLogQuery({ from: u.searchParams.get('from'), limit: u.searchParams.get('limit') });
      return void res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(auditLogPage(log.recorder.writer.written().slice(q.from, q.from + q.limit), q.from));
    }
    if (!release) return void res.writeHead(403).end("run run-1's policy does not release models and aggregates to auditors (policy audit.auditorArtifacts)");
    const sv = /^\/audit\/v1\/runs\/([^/]+)\/rounds\/(\d+)\/server-view$/.exec(u.pathname);
    if (sv) {
      const view = log.artifacts.serverViews.get(`${decodeURIComponent(sv[1])}/${sv[2]}`);
      if (!view) return void res.writeHead(403).end(`run ${sv[1]}'s policy does not release the server view to auditors (policy audit.auditorServerView)`);
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(Buffer.from(view));
    }
    const m = /^\/audit\/v1\/models\/(\d+)$/.exec(u.pathname);
    const a = /^\/audit\/v1\/runs\/([^/]+)\/rounds\/(\d+)\/aggregate$/.exec(u.pathname);
    const body = m ? log.artifacts.models.get(Number(m[1])) : a ? log.artifacts.aggregates.get(`${decodeURIComponent(a[1])}/${a[2]}`) : undefined;
    if (!body) return void res.writeHead(404).end('not found');
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  fs.rmSync(root, { recursive: true, force: true });
});

test('export --artifacts, then verify --replay: both completed rounds recomputed; a substituted aggregate fails; a second export fetches only it', async () => {
  const out = path.join(root, 'log.jsonl');
  const dir = path.join(root, 'art');
  let r = await run(['audit', 'export', '--coordinator', url, '--out', out, '--artifacts', dir, '--json', '--token-file', tokenFile]);
  expect([r.code, r.err]).toEqual([0, '']);
  expect(JSON.parse(r.out).artifacts).toEqual({ dir, models: 1, aggregates: 2, serverViews: 0, fetched: 3 });
  expect(fs.readdirSync(path.join(dir, 'aggregates', 'run-1')).sort()).toEqual(['1.bin', '3.bin']);
  // the policy does not release server views (403): asked once, then skipped for the run
  expect(requests.filter((q) => !q.startsWith('/audit/v1/log'))).toEqual([
    '/audit/v1/models/1',
    '/audit/v1/runs/run-1/rounds/1/aggregate',
    '/audit/v1/runs/run-1/rounds/1/server-view',
    '/audit/v1/runs/run-1/rounds/3/aggregate',
  ]);

  r = await run(['audit', 'verify', out, '--policy', policyFile, '--replay', dir]);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/\n {2}model chain: 2 of 2 completed round\(s\) recomputed from the aggregates and matched the logged model hash\n/);
  expect(r.out).toMatch(/verified: every check passed\n$/);

  // the auditor's copy of round 3's aggregate is changed: that entry fails
  const agg3 = path.join(dir, 'aggregates', 'run-1', '3.bin');
  const good = fs.readFileSync(agg3);
  const bad = Buffer.from(good);
  bad[0] ^= 1;
  fs.writeFileSync(agg3, bad);
  r = await run(['audit', 'verify', out, '--policy', policyFile, '--replay', dir, '--json']);
  expect(r.code).toBe(1);
  const v = JSON.parse(r.out);
  const entry3 = log.text.split('\n').findIndex((l) => l.includes('"type":"round-completed"') && l.includes('"round":3'));
  expect(v.failures).toEqual([expect.objectContaining({ entry: entry3, field: 'replay.aggregateHash' })]);
  expect(v.replay.replayed).toBe(1);
  expect(r.err).toMatch(new RegExp(`first at entry ${entry3}, replay.aggregateHash`));

  // a second export keeps what matches the log and fetches the changed file again
  requests.length = 0;
  r = await run(['audit', 'export', '--coordinator', url, '--out', out, '--artifacts', dir, '--json', '--token-file', tokenFile]);
  expect(JSON.parse(r.out).artifacts.fetched).toBe(1);
  expect(requests.filter((q) => !q.startsWith('/audit/v1/log'))).toEqual(['/audit/v1/runs/run-1/rounds/1/server-view', '/audit/v1/runs/run-1/rounds/3/aggregate']);
  expect(fs.readFileSync(agg3).equals(good)).toBe(true);

  // without the directory's content every round is unverifiable: failures, not a pass
  const empty = path.join(root, 'empty');
  fs.mkdirSync(empty);
  r = await run(['audit', 'verify', out, '--policy', policyFile, '--replay', empty, '--json']);
  expect(r.code).toBe(1);
  expect(JSON.parse(r.out).failures.map((f: { field: string }) => f.field)).toEqual(['replay.initialModel']);
  r = await run(['audit', 'verify', out, '--policy', policyFile, '--replay', path.join(root, 'nope')]);
  expect([r.code, r.err]).toEqual([2, `fedbridge: --replay: ${path.join(root, 'nope')} is not a directory (write one with 'fedbridge audit export --artifacts DIR')\n`]);
});

test('a policy that does not release artifacts: the log is written, the refusal is reported with the reason', async () => {
  release = false;
  try {
    const out = path.join(root, 'log2.jsonl');
    const r = await run(['audit', 'export', '--coordinator', url, '--out', out, '--artifacts', path.join(root, 'art2'), '--token-file', tokenFile]);
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      `fedbridge: exported ${log.text.split('\n').length - 1} audit entries to ${out}, but not the artifacts: the audit API answered HTTP 403 for /audit/v1/models/1: run run-1's policy does not release models and aggregates to auditors (policy audit.auditorArtifacts)\n`,
    );
    expect(fs.readFileSync(out, 'utf8')).toBe(log.text);
  } finally {
    release = true;
  }
});

test('a policy that releases the server view: export writes each round\'s view, verify --replay recomputes every aggregate from the signed masked inputs', async () => {
  const saved = log;
  const viewFed = await makeFederation({ rounds: 2, edit: (p) => ((p.audit = { auditorArtifacts: true, auditorServerView: true }), (p.secagg.threshold = 2)) });
  log = generateLog(viewFed, [{ drop: [{ party: 'insurer', phase: 'mask' }] }, {}], { chain: { secagg: true } });
  try {
    const pf = path.join(root, 'view-policy.yaml');
    fs.writeFileSync(pf, stringify(viewFed.policy));
    const out = path.join(root, 'log3.jsonl');
    const dir = path.join(root, 'art3');
    let r = await run(['audit', 'export', '--coordinator', url, '--out', out, '--artifacts', dir, '--token-file', tokenFile]);
    expect([r.code, r.err]).toEqual([0, '']);
    expect(r.out).toBe(`exported ${log.text.split('\n').length - 1} audit entries to ${out}; artifacts in ${dir}: 1 initial model(s), 2 aggregate(s), 2 server view(s) (5 downloaded, the rest already there)\n`);
    expect(fs.readdirSync(path.join(dir, 'server-views', 'run-1')).sort()).toEqual(['1.json', '2.json']);
    r = await run(['audit', 'verify', out, '--policy', pf, '--replay', dir]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/\n {2}aggregates: 2 recomputed from the parties' signed masked inputs \(server view\) and matched the logged aggregate hash\n/);
    // a view whose masked input is not the one its party signed
    const f = path.join(dir, 'server-views', 'run-1', '2.json');
    const v = JSON.parse(fs.readFileSync(f, 'utf8'));
    const b = Buffer.from(v.maskedInputs.insurer2, 'base64');
    b[0] ^= 1;
    v.maskedInputs.insurer2 = b.toString('base64');
    fs.writeFileSync(f, JSON.stringify(v));
    r = await run(['audit', 'verify', out, '--policy', pf, '--replay', dir, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out).failures.map((x: { field: string }) => x.field)).toEqual(['replay.serverView.maskedInputs.insurer2']);
  } finally {
    log = saved;
  }
});
