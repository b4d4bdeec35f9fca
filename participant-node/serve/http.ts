/**
 * The node's local recommendation endpoint, for the party's own services:
 *   GET /recommendations/:userId?k=10&domain=insurance
 *   GET /healthz
 * Bound to 127.0.0.1 by default (user ids and recommendations are the party's own data, and a
 * k=1000 answer reveals which items a user already has). Two modes:
 *   - loopback (no token): a request whose Host header is not localhost / 127.0.0.1 / [::1] with the
 *     bound port is refused with 421, so a web page cannot reach the port through DNS rebinding;
 *   - token (`--token-file`, required by the CLI to bind any other address): every request needs
 *     `Authorization: Bearer TOKEN` (compared in constant time), else 401.
 * Errors are JSON `{error}` with 400 (bad query or URL), 401, 404 (unknown user or path), 405
 * (method), 421 (Host); nothing a client sends can crash the server.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import { DOMAINS, type Domain } from '../../shared/data/vocab';
import { UserError } from '../../shared/cli/errors';
import type { Recommender } from './recommend';

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export interface ServeAccess {
  /** a bearer token every request must carry; without one, only loopback Host headers are served */
  token?: string;
}

/** Whether `host` (a --host value) is a loopback address, where the Host check suffices. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/** The refusal for a request this server must not answer, or undefined. */
function refusal(req: http.IncomingMessage, access: ServeAccess): { status: number; error: string; headers?: Record<string, string> } | undefined {
  if (access.token !== undefined) {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const digest = (t: string) => createHash('sha256').update(t, 'utf8').digest();
    if (!m || !timingSafeEqual(digest(m[1]), digest(access.token))) {
      return { status: 401, error: "missing or wrong 'Authorization: Bearer TOKEN' (the token of --token-file)", headers: { 'www-authenticate': 'Bearer' } };
    }
    return undefined;
  }
  // DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example
  const host = (req.headers.host ?? '').toLowerCase();
  const m = /^(localhost|127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?$/.exec(host);
  if (!m || !LOOPBACK_NAMES.has(m[1]) || (m[2] !== undefined && Number(m[2]) !== req.socket.localPort)) {
    return { status: 421, error: `this endpoint answers only requests for localhost, 127.0.0.1 or [::1] on port ${req.socket.localPort} (Host header ${JSON.stringify(req.headers.host ?? '')})` };
  }
  return undefined;
}

export function createRecommendationServer(rec: Recommender, log: (msg: string) => void = () => {}, access: ServeAccess = {}): http.Server {
  // the handler is async (scoring may read tensors asynchronously, model/reads.ts); a failure that
  // escapes it (it answers every error itself) closes that connection, never the server
  return http.createServer((req, res) => {
    const refused = refusal(req, access);
    if (refused) {
      res.setHeader('connection', 'close');
      for (const [k, v] of Object.entries(refused.headers ?? {})) res.setHeader(k, v);
      return send(res, refused.status, { error: refused.error });
    }
    handle(rec, log, req, res).catch((e) => {
      log(`internal error: ${(e as Error).stack ?? e}`);
      res.destroy();
    });
  });
}

async function handle(rec: Recommender, log: (msg: string) => void, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  try {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return send(res, 400, { error: 'the request target is not a valid URL path' });
    }
    if (req.method !== 'GET') return send(res, 405, { error: `method ${req.method} not allowed; use GET` });
    if (url.pathname === '/healthz') return send(res, 200, { ok: true });
    const m = /^\/recommendations\/([^/]+)$/.exec(url.pathname);
    if (!m) return send(res, 404, { error: `no such path ${url.pathname}; use /recommendations/:userId?k=10&domain=course|insurance|finance` });
    let userId: string;
    try {
      userId = decodeURIComponent(m[1]);
    } catch {
      return send(res, 400, { error: 'user id is not valid percent-encoding' });
    }
    const kRaw = url.searchParams.get('k') ?? '10';
    const k = Number(kRaw);
    if (!/^\d+$/.test(kRaw) || k < 1 || k > 1000) return send(res, 400, { error: `k must be an integer in [1, 1000], got "${kRaw}"` });
    const domain = url.searchParams.get('domain') ?? undefined;
    if (domain !== undefined && !DOMAINS.includes(domain as Domain)) return send(res, 400, { error: `domain must be one of ${DOMAINS.join('|')}, got "${domain}"` });
    if (!rec.hasUser(userId)) return send(res, 404, { error: `unknown user "${userId}"` });
    const out = await rec.recommend({ userId, k, domain: domain as Domain | undefined });
    log(`GET ${url.pathname} k=${k}${domain ? ` domain=${domain}` : ''} -> ${out.items.length} items`);
    return send(res, 200, out);
  } catch (e) {
    if (e instanceof UserError) return send(res, 400, { error: e.message });
    log(`internal error: ${(e as Error).stack ?? e}`);
    if (res.headersSent) return void res.destroy();
    return send(res, 500, { error: 'internal error' });
  }
}

/** Listens and resolves with the bound port (port 0 picks a free one). */
export function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
