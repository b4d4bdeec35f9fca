/**
 * The coordinator's audit page and API over real HTTP: every answer carries nosniff, no-referrer,
 * X-Frame-Options DENY and a Content-Security-Policy (the page: only its own script, WebAssembly,
 * its inline stylesheet by hash, fetch to this origin; nothing may frame it), and no
 * "X-Powered-By: Express"; the bearer scheme is read in any case. (tests/web/audit-page.test.ts
 * runs the page in Chromium under these headers.)
 */
import type { RunningCoordinator } from '../../coordinator/main';
import { auditPageCsp } from '../../coordinator/http/security-headers';
import { makeEnv, operator, startCoordinator, unary, OPERATOR_TOKEN, type Env } from './helpers/harness';

describe('audit HTTP security headers', () => {
  let env: Env;
  let coord: RunningCoordinator;
  let op: ReturnType<typeof operator>;
  let token: string;
  let base: string;

  beforeAll(async () => {
    env = await makeEnv(['platform']);
    coord = await startCoordinator(env, null);
    op = operator(env, coord.grpcPort);
    ({ token } = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'headers', expiresInSeconds: '0' }, op.metadata));
    base = `http://127.0.0.1:${coord.httpPort}`;
  });
  afterAll(async () => {
    op?.client.close();
    await coord?.close();
  });

  const get = async (p: string, authorization?: string) => {
    const r = await fetch(`${base}${p}`, { redirect: 'manual', ...(authorization ? { headers: { authorization } } : {}) });
    const body = await r.text();
    return { status: r.status, body, h: (k: string) => r.headers.get(k) };
  };

  test('the page, its script, the API, its errors and the redirect: nosniff, no framing, a CSP, no X-Powered-By', async () => {
    const page = await get('/audit/');
    expect(page.status).toBe(200);
    const csp = page.h('content-security-policy')!;
    expect(csp).toBe(auditPageCsp(page.body));
    expect(csp).toMatch(/^default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'sha256-[A-Za-z0-9+/]{43}='; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'$/);
    const answers = [
      page,
      await get('/audit/index.html'),
      await get('/audit/audit-page.js'),
      await get('/audit/v1/head', `Bearer ${token}`),
      await get('/audit/v1/log?from=0', `Bearer ${token}`),
      await get('/audit/v1/log?from=x', `Bearer ${token}`),
      await get('/audit/v1/log?from=0'),
      await get('/audit/openapi.yaml'),
      await get('/audit'),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 400, 401, 200, 301]);
    for (const a of answers) {
      expect([a.h('x-content-type-options'), a.h('x-frame-options'), a.h('referrer-policy'), a.h('x-powered-by')]).toEqual(['nosniff', 'DENY', 'no-referrer', null]);
      expect(a.h('content-security-policy')).toMatch(/^default-src 'none'; .*frame-ancestors 'none'$/);
    }
    expect((await get('/healthz')).h('x-powered-by')).toBeNull();
  });

  test('a storage failure under the log, the head or a download is a 500 with the security headers (not the framework default), and the server goes on', async () => {
    const db = coord.ctx.repo.db;
    await db.query('ALTER TABLE audit_log RENAME TO audit_log_away');
    try {
      for (const p of ['/audit/v1/log?from=0', '/audit/v1/head']) {
        const r = await get(p, `Bearer ${token}`);
        expect([p, r.status, r.h('content-type')]).toEqual([p, 500, 'text/plain; charset=utf-8']);
        expect([r.h('x-content-type-options'), r.h('x-frame-options'), r.h('content-security-policy')]).toEqual(['nosniff', 'DENY', "default-src 'none'; frame-ancestors 'none'"]);
        expect(r.body).not.toMatch(/audit_log_away|SQLITE/); // the details go to the coordinator's log
      }
    } finally {
      await db.query('ALTER TABLE audit_log_away RENAME TO audit_log');
    }
    expect((await get('/audit/v1/log?from=0', `Bearer ${token}`)).status).toBe(200);
    // the downloads the same way (their model or run lookup fails here)
    await db.query('ALTER TABLE runs RENAME TO runs_away');
    await db.query('ALTER TABLE model_versions RENAME TO model_versions_away');
    try {
      for (const p of ['/audit/v1/models/1', '/audit/v1/runs/run-x/rounds/1/aggregate', '/audit/v1/runs/run-x/rounds/1/server-view']) {
        const r = await get(p, `Bearer ${token}`);
        expect([p, r.status, r.h('content-type'), r.h('x-content-type-options')]).toEqual([p, 500, 'text/plain; charset=utf-8', 'nosniff']);
        expect(r.body).not.toMatch(/_away|SQLITE/);
      }
    } finally {
      await db.query('ALTER TABLE runs_away RENAME TO runs');
      await db.query('ALTER TABLE model_versions_away RENAME TO model_versions');
    }
    expect((await get('/audit/v1/runs/run-x/rounds/1/aggregate', `Bearer ${token}`)).status).toBe(404);
  });

  test('the bearer scheme in any case; the operator token and a malformed header still 401', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) expect([scheme, (await get('/audit/v1/head', `${scheme} ${token}`)).status]).toEqual([scheme, 200]);
    for (const bad of [`Basic ${token}`, `Bearer${token}`, `bearer ${OPERATOR_TOKEN}`, token]) expect([bad, (await get('/audit/v1/head', bad)).status]).toEqual([bad, 401]);
  });
});
