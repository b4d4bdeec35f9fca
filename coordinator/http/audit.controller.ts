/**
 * The read-only audit API and the auditor page (issue 6; proto/fedbridge/v1/audit-api.openapi.yaml),
 * on the coordinator's HTTP server next to /healthz and /metrics:
 *
 *   GET /audit/v1/log?from=N[&limit=M]  auditor bearer token; the stored entries [N, N+M) as export
 *                                       lines (shared/audit/api.ts: parseLogQuery + auditLogPage),
 *                                       built from the stored bytes verbatim; 400 on a bad query
 *   GET /audit/v1/head                  auditor bearer token; {idx, head} of the newest stored entry
 *   GET /audit/v1/models/{version}      auditor bearer token; the stored bytes of a model version
 *                                       (float32 little-endian) verbatim, as application/octet-stream
 *   GET /audit/v1/runs/{runId}/rounds/{round}/aggregate
 *                                       auditor bearer token; a completed round's stored unmasked sum
 *                                       (u32 little-endian) verbatim, as application/octet-stream
 *   GET /audit/v1/runs/{runId}/rounds/{round}/server-view
 *                                       auditor bearer token; a completed round's stored server view
 *                                       (shared/audit/server-view.ts JSON) verbatim, as application/json
 *   The downloads name the body's BLAKE2b-256 (hex) in X-Fedbridge-Blake2b-256 (for a model or an
 *   aggregate: the logged modelHash / initialModelHash / aggregateHash; the server view's hash is
 *   not logged: its masked inputs are checked against the logged digests instead), and answer only
 *   when the policy of the run the model or round belongs to sets audit.auditorArtifacts: true (the
 *   server view: and audit.auditorServerView: true) (403 otherwise, checked before any bytes are
 *   read); 400 for a malformed path parameter (shared/audit/api.ts), 404 for an unknown version,
 *   run or round, a model of no run, a round not completed or completed without a stored aggregate
 *   (before storage migration 6) or server view (before migration 7). Stored bytes are checked
 *   against their stored hash (damage: 500 with what to do); a store that is unavailable just
 *   now: 503.
 *   GET /audit/openapi.yaml             the OpenAPI description (no token: it is public)
 *   GET /audit/ (/audit/index.html), /audit/audit-page.js   the static auditor page (no token: it asks the auditor for
 *                                       one and verifies the exported log in the browser)
 *
 * Tokens: only auditor tokens (issued with `coordinator tokens issue --role auditor`; their SHA-256
 * is in the tokens table, not revoked) open the API. The operator token (SHA-256 in the config) and
 * party credentials are refused (401), with the same answer as an unknown token. Nothing here writes.
 *
 * Every response carries nosniff, no-referrer, X-Frame-Options DENY and a Content-Security-Policy
 * (security-headers.ts: the page may run only its own script, its inline styles by hash, and fetch
 * this origin; nothing may frame it). The bearer scheme is read in any case ("bearer" too).
 *
 * The page is built by coordinator/http/audit-page/build.js (esbuild). A prebuilt
 * `coordinator/http/audit-page/dist/` is served as is; otherwise the coordinator builds it once, on
 * the first request for the page, into a fresh temporary directory, and serves that.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Controller, Get, Inject, Param, Req, Res } from '@nestjs/common';
import { AUDIT_ARTIFACT_HASH_HEADER, AuditApiError, auditLogPage, parseLogQuery, parsePathInteger, parsePathRunId } from '../../shared/audit/api';
import { auditChainHash } from '../../shared/audit/chain';
import { sodium } from '../../shared/crypto/sodium';
import { CTX, type CoordinatorContext } from '../context';
import { status, toStatusError } from '../grpc/errors';
import { PROTO_ROOT } from '../grpc/options';
import { runOfModel } from '../participant/model-access';
import { StoredDataDamaged, type RunRow } from '../storage/repository';
import { bearerToken, tokenSha256 } from '../identity/tokens';
import { AUDIT_API_CSP, AUDIT_SECURITY_HEADERS, auditPageCsp } from './security-headers';

/** The parts of express's Request/Response used here (no @types/express dependency). */
interface HttpRequest {
  headers: Record<string, string | string[] | undefined>;
  query: Record<string, unknown>;
}
interface HttpResponse {
  status(code: number): HttpResponse;
  setHeader(name: string, value: string): void;
  send(body: string | Buffer): void;
}

/** The headers every /audit/ response carries (security-headers.ts); the page replaces the CSP with its own. */
function secured(res: HttpResponse): HttpResponse {
  for (const [k, v] of Object.entries(AUDIT_SECURITY_HEADERS)) res.setHeader(k, v);
  res.setHeader('Content-Security-Policy', AUDIT_API_CSP);
  return res;
}

/** `authorization` values with the scheme in any case ("bearer", "BEARER": RFC 9110 11.1) as bearerToken reads them. */
function normalizedAuthorization(h: string | string[] | undefined): unknown[] {
  const values = h === undefined ? [] : Array.isArray(h) ? h : [h];
  return values.map((v) => (typeof v === 'string' ? v.replace(/^bearer +/i, 'Bearer ') : v));
}

const PAGE_SRC = path.resolve(__dirname, '..', '..', '..', 'coordinator', 'http', 'audit-page');
const PAGE_SRC_LOCAL = path.join(__dirname, 'audit-page');
export const AUDIT_OPENAPI_FILE = path.join(PROTO_ROOT, 'fedbridge', 'v1', 'audit-api.openapi.yaml');

let pageDir: Promise<string> | null = null;

/** The directory holding the built page: a prebuilt dist/, else one build into a temp dir (once per process). */
function auditPageDir(): Promise<string> {
  return (pageDir ??= (async () => {
    const src = fs.existsSync(path.join(PAGE_SRC_LOCAL, 'build.js')) ? PAGE_SRC_LOCAL : PAGE_SRC;
    const dist = path.join(src, 'dist');
    if (fs.existsSync(path.join(dist, 'index.html')) && fs.existsSync(path.join(dist, 'audit-page.js'))) return dist;
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-audit-page-'));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { build } = require(path.join(src, 'build.js')) as { build: (dir: string) => Promise<{ outDir: string }> };
    await build(out);
    return out;
  })().catch((e) => {
    pageDir = null;
    throw e;
  }));
}

function single(v: unknown): string | null | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  return null; // repeated or nested parameters: reported as invalid by parseLogQuery
}

/** The policy's optional `audit` section (shared/policy/schema.ts) as stored. */
interface PolicyAudit {
  auditorArtifacts?: unknown;
  auditorServerView?: unknown;
}

/** What a policy must say for an artifact to be released to auditors, and how a refusal names it. */
interface ReleaseRule {
  released: (audit: PolicyAudit | undefined) => boolean;
  what: string;
  field: string;
}
const ARTIFACTS: ReleaseRule = { released: (a) => a?.auditorArtifacts === true, what: 'models and aggregates', field: 'audit.auditorArtifacts' };
const SERVER_VIEW: ReleaseRule = { released: (a) => a?.auditorArtifacts === true && a.auditorServerView === true, what: 'the server view', field: 'audit.auditorServerView' };

@Controller('audit')
export class AuditController {
  constructor(@Inject(CTX) private readonly ctx: CoordinatorContext) {}

  private text(res: HttpResponse, code: number, body: string): void {
    secured(res).status(code);
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.send(body + '\n');
  }

  /** True if the request carries a valid, unrevoked auditor token; answers 401 otherwise. */
  private async auditor(req: HttpRequest, res: HttpResponse): Promise<boolean> {
    const token = bearerToken(normalizedAuthorization(req.headers.authorization));
    const row = token ? await this.ctx.repo.tokenByHash(tokenSha256(token)) : null;
    if (!row || row.role !== 'auditor') {
      res.setHeader('WWW-Authenticate', 'Bearer realm="fedbridge-audit"');
      this.text(res, 401, 'an auditor bearer token is required (fedbridge coordinator tokens issue --role auditor)');
      return false;
    }
    return true;
  }

  @Get('v1/log')
  async log(@Req() req: HttpRequest, @Res() res: HttpResponse): Promise<void> {
    try {
      if (!(await this.auditor(req, res))) return;
      const from = single(req.query.from);
      const limit = single(req.query.limit);
      if (from === null || limit === null) throw new AuditApiError('"from" and "limit" may be given once each');
      const q = parseLogQuery({ from, limit });
      const rows = await this.ctx.repo.auditEntries(q.from, q.limit);
      secured(res).status(200);
      res.setHeader('Content-Type', 'application/x-ndjson');
      res.setHeader('Cache-Control', 'no-store');
      res.send(auditLogPage(rows, q.from));
    } catch (e) {
      this.failed(res, e);
    }
  }

  @Get('v1/head')
  async head(@Req() req: HttpRequest, @Res() res: HttpResponse): Promise<void> {
    try {
      if (!(await this.auditor(req, res))) return;
      const last = await this.ctx.repo.db.query('SELECT idx FROM audit_log ORDER BY idx DESC LIMIT 1');
      let body = { idx: -1, head: '0'.repeat(64) };
      if (last.length) {
        const [r] = await this.ctx.repo.auditEntries(Number(last[0].idx), 1);
        body = { idx: r.idx, head: Buffer.from(auditChainHash(r.idx, r.prevHash, r.entry)).toString('hex') };
      }
      secured(res).status(200);
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Cache-Control', 'no-store');
      res.send(JSON.stringify(body));
    } catch (e) {
      this.failed(res, e);
    }
  }

  @Get('v1/models/:version')
  async model(@Req() req: HttpRequest, @Param('version') versionParam: string, @Res() res: HttpResponse): Promise<void> {
    try {
      if (!(await this.auditor(req, res))) return;
      const version = parsePathInteger('version', versionParam);
      const repo = this.ctx.repo;
      const info = await repo.modelVersionInfo(version);
      if (!info) return this.text(res, 404, `no model version ${version} on this coordinator`);
      const run = await runOfModel(repo, info);
      if (!run) return this.text(res, 404, `model version ${version} belongs to no run (neither produced by a round nor the initial model of a run)`);
      const refused = await this.refused(run, ARTIFACTS);
      if (refused) return this.text(res, 403, `model version ${version} belongs to run ${run.id}, and ${refused}`);
      const row = await repo.modelVersion(version); // its bytes checked against its stored hash
      if (!row) return this.text(res, 404, `no model version ${version} on this coordinator`);
      this.bytes(res, row.bytes, row.hash);
    } catch (e) {
      this.failed(res, e);
    }
  }

  @Get('v1/runs/:runId/rounds/:round/aggregate')
  async aggregate(@Req() req: HttpRequest, @Param('runId') runIdParam: string, @Param('round') roundParam: string, @Res() res: HttpResponse): Promise<void> {
    await this.roundArtifact(req, res, runIdParam, roundParam, {
      what: 'aggregate',
      release: ARTIFACTS,
      read: (runId, r) => this.ctx.repo.roundAggregate(runId, r),
      missing: 'completed before this coordinator kept aggregates, storage migration 6, or by a round protocol that exposes none',
      type: 'application/octet-stream',
    });
  }

  @Get('v1/runs/:runId/rounds/:round/server-view')
  async serverView(@Req() req: HttpRequest, @Param('runId') runIdParam: string, @Param('round') roundParam: string, @Res() res: HttpResponse): Promise<void> {
    await this.roundArtifact(req, res, runIdParam, roundParam, {
      what: 'server view',
      release: SERVER_VIEW,
      read: (runId, r) => this.ctx.repo.roundServerView(runId, r),
      missing: 'completed before this coordinator kept server views, storage migration 7',
      type: 'application/json',
    });
  }

  /** A completed round's stored aggregate or server view, if the run's policy releases it. */
  private async roundArtifact(
    req: HttpRequest,
    res: HttpResponse,
    runIdParam: string,
    roundParam: string,
    o: { what: string; release: ReleaseRule; read: (runId: string, r: number) => Promise<Uint8Array | null>; missing: string; type: string },
  ): Promise<void> {
    try {
      if (!(await this.auditor(req, res))) return;
      const runId = parsePathRunId(runIdParam);
      const r = parsePathInteger('round', roundParam);
      const repo = this.ctx.repo;
      const run = await repo.run(runId);
      if (!run) return this.text(res, 404, `no run ${JSON.stringify(runId)} on this coordinator`);
      const refused = await this.refused(run, o.release);
      if (refused) return this.text(res, 403, refused);
      const row = await repo.roundRow(run.id, r);
      if (!row) return this.text(res, 404, `run ${run.id} has no round ${r}`);
      if (row.state !== 'completed') return this.text(res, 404, `round ${r} of run ${run.id} is ${row.state}, not completed: only a completed round has ${o.what === 'aggregate' ? 'an aggregate' : `a ${o.what}`}`);
      const bytes = await o.read(run.id, r); // checked against its stored hash
      if (!bytes) return this.text(res, 404, `round ${r} of run ${run.id} was completed without a stored ${o.what} (${o.missing})`);
      this.bytes(res, bytes, sodium().crypto_generichash(32, bytes, null), o.type);
    } catch (e) {
      this.failed(res, e);
    }
  }

  /** Null when the run's signed policy releases what `rule` covers to auditors, else the reason for the 403. */
  private async refused(run: RunRow, rule: ReleaseRule): Promise<string | null> {
    if (rule.released(await this.runAudit(run))) return null;
    return `run ${run.id}'s policy does not release ${rule.what} to auditors (policy ${rule.field})`;
  }

  /**
   * The `audit` section of the run's signed policy. The stored policy must hash to the run's policy
   * hash (what the parties signed): otherwise the store is damaged and nothing is released.
   */
  private async runAudit(run: RunRow): Promise<PolicyAudit | undefined> {
    const stored = await this.ctx.repo.policy(run.policyHash);
    if (!stored) throw new StoredDataDamaged(`the policy ${run.policyHash} of run ${run.id} is missing from the coordinator's store; restore the store from a backup`);
    if (sodium().crypto_generichash(32, new TextEncoder().encode(stored.canonicalJson), null, 'hex') !== run.policyHash) {
      throw new StoredDataDamaged(`the stored policy of run ${run.id} does not hash to its policy hash ${run.policyHash} (the one its parties signed): it is damaged in the coordinator's store; restore the store from a backup`);
    }
    return (JSON.parse(stored.canonicalJson) as { audit?: PolicyAudit }).audit;
  }

  private bytes(res: HttpResponse, body: Uint8Array, hash: Uint8Array, type = 'application/octet-stream'): void {
    secured(res).status(200);
    res.setHeader('Content-Type', type);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader(AUDIT_ARTIFACT_HASH_HEADER, Buffer.from(hash).toString('hex'));
    res.send(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  }

  /**
   * A failed audit API request: 400 for a malformed query or path, 500 with what to do for damaged stored
   * data, 503 for a store unavailable just now, else 500 with a generic message (the details go
   * to the coordinator's log). The server goes on.
   */
  private failed(res: HttpResponse, e: unknown): void {
    if (e instanceof AuditApiError) return this.text(res, e.httpStatus, e.message);
    const s = toStatusError(e, this.ctx.log);
    if (s.code === status.UNAVAILABLE) {
      res.setHeader('Retry-After', '1');
      return this.text(res, 503, s.message);
    }
    this.text(res, 500, s.message);
  }

  @Get('openapi.yaml')
  openapi(@Res() res: HttpResponse): void {
    secured(res).status(200);
    res.setHeader('Content-Type', 'application/yaml; charset=utf-8');
    res.send(fs.readFileSync(AUDIT_OPENAPI_FILE));
  }

  @Get()
  async page(@Req() req: HttpRequest & { originalUrl?: string }, @Res() res: HttpResponse): Promise<void> {
    // the page loads its script and the API relative to /audit/: send /audit there
    if (!/^\/audit\/(\?|$)/.test(req.originalUrl ?? '/audit/')) {
      secured(res).status(301);
      res.setHeader('Location', '/audit/');
      return res.send('');
    }
    await this.pageFile(res, 'index.html', 'text/html; charset=utf-8');
  }

  @Get('index.html')
  async index(@Res() res: HttpResponse): Promise<void> {
    await this.pageFile(res, 'index.html', 'text/html; charset=utf-8');
  }

  @Get('audit-page.js')
  async script(@Res() res: HttpResponse): Promise<void> {
    await this.pageFile(res, 'audit-page.js', 'text/javascript; charset=utf-8');
  }

  private async pageFile(res: HttpResponse, name: string, type: string): Promise<void> {
    let dir: string;
    try {
      dir = await auditPageDir();
    } catch (e) {
      this.ctx.log(`auditor page build failed: ${(e as Error).message}`);
      return this.text(res, 503, 'the auditor page could not be built on this coordinator (node coordinator/http/audit-page/build.js)');
    }
    const body = fs.readFileSync(path.join(dir, name));
    secured(res).status(200);
    if (name === 'index.html') res.setHeader('Content-Security-Policy', auditPageCsp(body.toString('utf8')));
    res.setHeader('Content-Type', type);
    res.send(body);
  }
}
