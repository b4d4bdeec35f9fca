/**
 * `fedbridge audit export` never sends the auditor's bearer token over plain http to another
 * machine unless told to (--allow-plaintext): a real HTTP server listening on every interface,
 * addressed as http://0.0.0.0:PORT (not loopback by name), sees no request at all when the export
 * is refused; loopback http and the explicit flag still work.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { runCli as run } from '../../cli-run';

const TOKEN = 'auditor-token-0123456789abcdef';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-audit-plain-'));
const seen: string[] = [];
let server: http.Server;
let port: number;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(String(req.headers.authorization));
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
    res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(); // an empty log
  });
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', () => resolve()));
  port = (server.address() as AddressInfo).port;
  fs.writeFileSync(path.join(root, 'token'), TOKEN + '\n', { mode: 0o600 });
});
afterAll(() => {
  server.close();
  fs.rmSync(root, { recursive: true, force: true });
});

test('plain http to another host is refused before any request; loopback and --allow-plaintext export', async () => {
  const out = path.join(root, 'log.jsonl');
  const args = (url: string, ...more: string[]) => ['audit', 'export', '--coordinator', url, '--out', out, '--token-file', path.join(root, 'token'), ...more];
  for (const host of ['0.0.0.0', 'coordinator.example.org', '[::]']) {
    const r = await run(args(`http://${host}:${port}`));
    expect([r.code, r.err]).toEqual([2, `fedbridge: --coordinator http://${host}:${port} is plain http to another machine: the auditor token would travel in clear; use https:// (the coordinator's http.tls), or pass --allow-plaintext if the network is trusted\n`]);
  }
  expect(seen).toEqual([]);
  expect(fs.existsSync(out)).toBe(false);

  for (const url of [`http://127.0.0.1:${port}`, `http://localhost:${port}/`]) {
    const r = await run(args(url, '--json'));
    expect([r.code, JSON.parse(r.out)]).toEqual([0, { out, entries: 0 }]);
  }
  const allowed = await run(args(`http://0.0.0.0:${port}`, '--allow-plaintext', '--json'));
  expect([allowed.code, JSON.parse(allowed.out)]).toEqual([0, { out, entries: 0 }]);
  expect(seen).toEqual([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
});
