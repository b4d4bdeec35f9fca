/**
 * The recommendation endpoint over real HTTP on loopback: a foreign Host header (DNS rebinding) is
 * 421, a token-protected server answers only the right bearer token, a request target that is no
 * URL is 400 (not a 500 with a logged stack), and `node serve` refuses a non-loopback --host
 * without a --token-file.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as http from 'node:http';
import { createRecommendationServer, isLoopbackHost, listen } from '../../../participant-node/serve/http';
import type { Recommender } from '../../../participant-node/serve/recommend';
import { runCli } from '../../cli-run';

/** A stand-in for the model: one user, one item (the HTTP layer is what is tested here). */
const rec = {
  hasUser: (id: string) => id === 'u1',
  recommend: async () => ({ userId: 'u1', coldStart: false, items: [{ itemId: 'i1', score: 1 }] }),
} as unknown as Recommender;

/** Sends a raw HTTP/1.1 request (any Host header, any target) and returns the status and body. */
function raw(port: number, lines: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(lines.join('\r\n') + '\r\n\r\n'));
    let data = '';
    sock.on('data', (c) => (data += c.toString('utf8')));
    sock.on('end', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1]);
      resolve({ status, body: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
    sock.on('error', reject);
  });
}
const get = (port: number, target: string, headers: string[]) => raw(port, [`GET ${target} HTTP/1.1`, ...headers, 'Connection: close']);

let servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  servers = [];
});
async function start(token?: string, log: (m: string) => void = () => {}): Promise<number> {
  const s = createRecommendationServer(rec, log, { token });
  servers.push(s);
  return listen(s, 0, '127.0.0.1');
}

describe('loopback mode: the Host header must name this machine', () => {
  it.each(['localhost', '127.0.0.1', '[::1]', 'LOCALHOST'])('Host %s with the bound port (or none) is served', async (name) => {
    const port = await start();
    expect((await get(port, '/recommendations/u1', [`Host: ${name}:${port}`])).status).toBe(200);
    expect((await get(port, '/healthz', [`Host: ${name}`])).status).toBe(200);
  });

  it.each([
    ['a rebinding name', (p: number) => `Host: evil.example:${p}`],
    ['a lookalike', (p: number) => `Host: localhost.evil.example:${p}`],
    ['another port', (p: number) => `Host: 127.0.0.1:${p === 1 ? 2 : 1}`],
  ])('%s: 421, no recommendations', async (_name, host) => {
    const port = await start();
    const r = await get(port, '/recommendations/u1', [host(port)]);
    expect(r.status).toBe(421);
    expect(JSON.parse(r.body).error).toMatch(/answers only requests for localhost, 127\.0\.0\.1 or \[::1\]/);
    expect(r.body).not.toContain('i1');
  });

  it('an HTTP/1.0 request without Host: 421 (HTTP/1.1 ones Node refuses itself)', async () => {
    const port = await start();
    const r = await raw(port, ['GET /recommendations/u1 HTTP/1.0']);
    expect(r.status).toBe(421);
    expect(JSON.parse(r.body).error).toMatch(/answers only requests for localhost, 127\.0\.0\.1 or \[::1\]/);
    expect(r.body).not.toContain('i1');
  });
});

describe('token mode', () => {
  const token = 'k'.repeat(20) + 'Z9';
  it('the right bearer token is served, a missing or wrong one is 401', async () => {
    const port = await start(token);
    expect((await get(port, '/recommendations/u1', ['Host: reco.internal', `Authorization: Bearer ${token}`])).status).toBe(200);
    for (const auth of [[], [`Authorization: Bearer ${token}x`], [`Authorization: Bearer ${token.slice(1)}`], [`Authorization: Basic ${token}`]]) {
      const r = await get(port, '/recommendations/u1', ['Host: reco.internal', ...auth]);
      expect(r.status).toBe(401);
      expect(r.body).not.toContain('i1');
    }
  });
});

it('a request target that is no URL is 400 and logs nothing', async () => {
  const logged: string[] = [];
  const port = await start(undefined, (m) => logged.push(m));
  for (const target of ['//[', '//a%20b:99999/x']) {
    const r = await get(port, target, [`Host: 127.0.0.1:${port}`]);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error).toBe('the request target is not a valid URL path');
  }
  expect(logged).toEqual([]);
  expect((await get(port, '/healthz', [`Host: 127.0.0.1:${port}`])).status).toBe(200);
});

it('isLoopbackHost', () => {
  expect(['127.0.0.1', '127.1.2.3', 'localhost', '::1'].every(isLoopbackHost)).toBe(true);
  expect(['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', 'example.com'].some(isLoopbackHost)).toBe(false);
});

describe('node serve --host', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-serve-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a non-loopback address without --token-file: refused with one line, before anything is opened', async () => {
    const r = await runCli(['node', 'serve', '--data-dir', path.join(dir, 'none'), '--host', '0.0.0.0', '--port', '0']);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/--host 0\.0\.0\.0 serves the party's users' recommendations beyond this machine: give --token-file F/);
    expect(r.err.trim().split('\n')).toHaveLength(1);
  });

  it.each([
    ['readable by others', 0o644, 'a'.repeat(32), /is readable by other users \(mode 644\); run 'chmod 600/],
    ['too short', 0o600, 'short', /expected one token of at least 16 printable ASCII characters/],
  ])('a token file %s is refused', async (_name, mode, content, expected) => {
    const f = path.join(dir, `token-${mode}-${content.length}`);
    fs.writeFileSync(f, content, { mode });
    fs.chmodSync(f, mode);
    const r = await runCli(['node', 'serve', '--data-dir', path.join(dir, 'none'), '--host', '0.0.0.0', '--port', '0', '--token-file', f]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(expected);
  });
});
