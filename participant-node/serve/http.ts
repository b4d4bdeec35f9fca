/**
 * The node's local recommendation endpoint, for the party's own services:
 *   GET /recommendations/:userId?k=10&domain=insurance
 *   GET /healthz
 * Bound to 127.0.0.1 by default (user ids and recommendations are the party's own data; exposing
 * it is an explicit operator decision). Errors are JSON `{error}` with 400 (bad query), 404 (unknown
 * user or path), 405 (method); nothing a client sends can crash the server.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DOMAINS, type Domain } from '../../shared/data/vocab';
import { UserError } from '../../shared/cli/errors';
import type { Recommender } from './recommend';

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export function createRecommendationServer(rec: Recommender, log: (msg: string) => void = () => {}): http.Server {
  // the handler is async (scoring may read tensors asynchronously, model/reads.ts); a failure that
  // escapes it (it answers every error itself) closes that connection, never the server
  return http.createServer((req, res) => {
    handle(rec, log, req, res).catch((e) => {
      log(`internal error: ${(e as Error).stack ?? e}`);
      res.destroy();
    });
  });
}

async function handle(rec: Recommender, log: (msg: string) => void, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  try {
    const url = new URL(req.url ?? '/', 'http://localhost');
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
