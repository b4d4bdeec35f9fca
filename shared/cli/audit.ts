/**
 * `fedbridge audit export` and `fedbridge audit verify` (issue 6, DESIGN §8).
 *
 *   audit export --coordinator URL --out F.jsonl [--token T] [--ca FILE] [--allow-plaintext]
 *     Pages through the coordinator's read-only audit API (proto/fedbridge/v1/audit-api.openapi.yaml:
 *     GET {URL}/audit/v1/log?from=N&limit=M, `Authorization: Bearer <auditor token>`, JSON Lines in
 *     the export format of shared/audit/chain.ts), checks each line parses and the indices are
 *     contiguous (the server may return fewer lines than asked; an empty page ends the log), and
 *     writes the log atomically. The token comes from --token or
 *     FEDBRIDGE_AUDITOR_TOKEN (never logged). Nothing is trusted here: `audit verify` decides.
 *     With --artifacts DIR it then downloads, for every run of the log, the initial model
 *     (GET audit/v1/models/{version} -> DIR/models/{version}.bin) and every completed round's
 *     unmasked aggregate (GET audit/v1/runs/{runId}/rounds/{round}/aggregate ->
 *     DIR/aggregates/{runId}/{round}.bin); only runs whose signed policy sets
 *     audit.auditorArtifacts are served (HTTP 403 otherwise, reported with the server's reason);
 *     and each round's server view (-> DIR/server-views/{runId}/{round}.json) where the policy also
 *     sets audit.auditorServerView (skipped for a run whose policy does not).
 *   audit verify F.jsonl --policy policy.yaml [--receipts DIR]... [--replay DIR] [--json]
 *     verifyLog (shared/audit/verify.ts) against the policy and the receipts the parties kept
 *     (every *.json under each DIR, recursively); with --replay, replayModelChain
 *     (shared/audit/replay.ts) over the artifacts in DIR: every model recomputed from the run's
 *     initial model and the aggregates, its hash checked against the log. Exits 1 on any failure. Text output: whatever
 *     comes from the log is written with its control characters escaped (forTerminal).
 *     JSON: {"ok","entries","rounds","failures":[{"entry","field","expected","found"}], "policyHash",
 *     "head","receipts","warnings","runs","timeline"}, with --replay also "replay":{"replayed","rounds"}.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { printJson, UserError } from './errors';
import { readFileAt } from './read-file';
import { clientTlsFiles, transportFailure } from './tls';
import { forTerminal } from '../util/text';

export const AUDIT_PAGE_LIMIT = 1000;

function listJson(dir: string): string[] {
  let out: string[] = [];
  let ents: fs.Dirent[];
  try {
    ents = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    throw new UserError(`cannot read receipts directory ${dir}`);
  }
  for (const e of ents.sort((a, b) => a.name.localeCompare(b.name))) {
    const f = path.join(dir, e.name);
    if (e.isDirectory()) out = out.concat(listJson(f));
    else if (e.isFile() && e.name.endsWith('.json')) out.push(f);
  }
  return out;
}

/** Runs the verification of a log file; returns the result (the CLI prints it). */
/**
 * Verifies an exported log against the policy file(s) (the first is the one reported; more for a
 * log with runs of several policies) and the receipts under `receiptDirs`.
 */
export async function verifyLogFile(logFile: string, policyFiles: string | readonly string[], receiptDirs: string[], replayDir?: string) {
  const { sodiumReady } = await import('../crypto/sodium');
  const { parsePolicyYaml, PolicyError } = await import('../policy/schema');
  const { verifyLog } = await import('../audit/verify');
  await sodiumReady();
  const files = typeof policyFiles === 'string' ? [policyFiles] : [...policyFiles];
  if (!files.length) throw new UserError('--policy <file> is required (the policy YAML the parties signed; repeat it for a log with runs of several policies)');
  const policies = files.map((policyFile) => {
    try {
      return parsePolicyYaml(readFileAt(policyFile, 'utf8'));
    } catch (e) {
      if (e instanceof PolicyError) throw new UserError(`${policyFile}: ${e.message}`);
      throw new UserError(`cannot read policy ${policyFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  });
  let data: Uint8Array;
  try {
    data = new Uint8Array(readFileAt(logFile));
  } catch (e) {
    throw new UserError(`cannot read audit log ${logFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const receipts: { source: string; receipt: unknown }[] = [];
  for (const dir of receiptDirs) {
    for (const f of listJson(dir)) {
      let obj: unknown;
      try {
        obj = JSON.parse(readFileAt(f, 'utf8'));
      } catch {
        obj = null; // reported by verifyLog as an invalid receipt
      }
      receipts.push({ source: path.relative(dir, f) || path.basename(f), receipt: obj });
    }
  }
  let verified;
  try {
    verified = verifyLog(data, { policy: policies[0], otherPolicies: policies.slice(1), receipts });
  } catch (e) {
    // the given policies do not belong to one log (another coordinator or federation)
    if (e instanceof RangeError) throw new UserError(`--policy: ${e.message}`);
    throw e;
  }
  if (replayDir === undefined) return { ...verified, receiptsChecked: receipts.length, replay: null };
  if (!fs.existsSync(replayDir) || !fs.statSync(replayDir).isDirectory()) throw new UserError(`--replay: ${replayDir} is not a directory (write one with 'fedbridge audit export --artifacts DIR')`);
  const { replayModelChain } = await import('../audit/replay');
  const readOrNull = (f: () => string): Uint8Array | null => {
    try {
      return new Uint8Array(readFileAt(f()));
    } catch (e) {
      if (e instanceof UserError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      throw new UserError(`--replay: cannot read an artifact in ${replayDir}: ${code ?? (e as Error).message}`);
    }
  };
  const replay = replayModelChain(data, policies, {
    model: (v) => readOrNull(() => artifactPaths.model(replayDir, v)),
    aggregate: (runId, round) => readOrNull(() => artifactPaths.aggregate(replayDir, runId, round)),
    serverView: (runId, round) => readOrNull(() => artifactPaths.serverView(replayDir, runId, round)),
  });
  const failures = [...verified.failures, ...replay.failures].sort((a, b) => a.entry - b.entry);
  return {
    ...verified,
    ok: verified.ok && replay.ok,
    failures,
    warnings: [...verified.warnings, ...replay.warnings],
    receiptsChecked: receipts.length,
    replay: { replayed: replay.replayed, aggregatesRecomputed: replay.aggregatesRecomputed, rounds: replay.rounds },
  };
}

function get(url: URL, token: string, ca: Buffer | undefined, accept = 'application/x-ndjson'): Promise<{ status: number; body: Buffer; type: string }> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? require('node:https') : require('node:http');
    const req = mod.get(url, { headers: { authorization: `Bearer ${token}`, accept }, ...(ca ? { ca } : {}), timeout: 30_000 }, (res: import('node:http').IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), type: String(res.headers['content-type'] ?? '') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 30 s')));
    req.on('error', reject);
  });
}

/** localhost, 127.0.0.0/8 or [::1] (a URL's hostname): a token sent there stays on this machine. */
function isLoopbackHostname(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The audit API's base URL from --coordinator; refuses plain http to another machine unless allowed. */
function auditApiRoot(base: string, allowPlaintext: boolean | undefined): URL {
  let root: URL;
  try {
    root = new URL(base.endsWith('/') ? base : base + '/');
  } catch {
    throw new UserError(`--coordinator expects a URL such as https://127.0.0.1:8443, got "${base}"`);
  }
  if (root.protocol !== 'https:' && root.protocol !== 'http:') throw new UserError(`--coordinator must be an http(s) URL, got "${base}"`);
  // the bearer token would cross the network in clear: only to this machine, or when asked for
  if (root.protocol === 'http:' && !isLoopbackHostname(root.hostname) && !allowPlaintext) {
    throw new UserError(`--coordinator ${root.origin} is plain http to another machine: the auditor token would travel in clear; use https:// (the coordinator's http.tls), or pass --allow-plaintext if the network is trusted`);
  }
  return root;
}

/** The CA to trust for https (absent: the system's), and the file it came from (named in errors). */
interface ApiTls {
  ca?: Buffer;
  caFile?: string;
}

/**
 * GET of one audit API path; a 200 answer's body, else a UserError (exit 1) saying what the server
 * answered, except for the statuses in `allow`, answered as null.
 */
async function apiGet(root: URL, pathAndQuery: string, token: string, tls: ApiTls, accept?: string): Promise<Buffer>;
async function apiGet(root: URL, pathAndQuery: string, token: string, tls: ApiTls, accept: string, allow: number[]): Promise<Buffer | null>;
async function apiGet(root: URL, pathAndQuery: string, token: string, tls: ApiTls, accept?: string, allow: number[] = []): Promise<Buffer | null> {
  const url = new URL(pathAndQuery, root);
  let res;
  try {
    res = await get(url, token, tls.ca, accept);
  } catch (e) {
    // what the socket or TLS error means, and which flag or setting fixes it (shared/cli/tls.ts)
    const ctx = { address: url.origin, ca: tls.caFile ? { name: '--ca', file: tls.caFile } : undefined, api: url.protocol === 'https:' ? ('https' as const) : ('http' as const) };
    throw new UserError(`cannot reach the audit API: ${transportFailure((e as Error).message, ctx).message}`, 1);
  }
  if (allow.includes(res.status)) return null;
  if (res.status === 401) throw new UserError(`the audit API refused the auditor token (HTTP ${res.status}); issue one with 'fedbridge coordinator tokens issue --role auditor'`, 1);
  // what the server sends is quoted with its control characters escaped (forTerminal)
  if (res.status !== 200) throw new UserError(forTerminal(`the audit API answered HTTP ${res.status} for ${url.pathname}: ${res.body.toString('utf8').trim().slice(0, 300)}`), 1);
  return res.body;
}

/** Fetches the whole log from the audit API; returns its bytes (export format) and the number of entries. */
export async function fetchAuditLog(base: string, token: string, opts: { ca?: Buffer; caFile?: string; limit?: number; allowPlaintext?: boolean } = {}): Promise<{ bytes: Buffer; entries: number }> {
  const { sodiumReady } = await import('../crypto/sodium');
  const { parseExportLine, splitLines } = await import('../audit/chain');
  await sodiumReady();
  const root = auditApiRoot(base, opts.allowPlaintext);
  const limit = opts.limit ?? AUDIT_PAGE_LIMIT;
  const parts: Buffer[] = [];
  let next = 0;
  for (;;) {
    const body = await apiGet(root, `audit/v1/log?from=${next}&limit=${limit}`, token, opts);
    const { lines, endsWithNewline } = splitLines(new Uint8Array(body));
    if (body.length && !endsWithNewline) throw new UserError(`the audit API returned a page that does not end with a newline (from=${next})`, 1);
    for (const line of lines) {
      const p = parseExportLine(line);
      if (!p.ok) throw new UserError(forTerminal(`the audit API returned an invalid line at index ${next}: ${p.field}: expected ${p.expected}, found ${p.found}`), 1);
      if (p.record.idx !== next) throw new UserError(`the audit API returned entry ${p.record.idx} where ${next} was expected`, 1);
      next++;
    }
    if (lines.length === 0) break; // the server may cap a page below `limit`: only an empty page ends the log
    parts.push(body);
  }
  return { bytes: Buffer.concat(parts), entries: next };
}

/** A run id usable as a directory name under --artifacts (the coordinator's are run-<time>-<hex>). */
const SAFE_RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Where `audit export --artifacts DIR` keeps model version `v`, and the aggregate of (runId, round). */
export const artifactPaths = {
  model: (dir: string, version: number) => path.join(dir, 'models', `${version}.bin`),
  aggregate: (dir: string, runId: string, round: number) => path.join(dir, 'aggregates', safeRunId(runId), `${round}.bin`),
  serverView: (dir: string, runId: string, round: number) => path.join(dir, 'server-views', safeRunId(runId), `${round}.json`),
};

function safeRunId(runId: string): string {
  if (!SAFE_RUN_ID.test(runId)) throw new UserError(forTerminal(`run id ${JSON.stringify(runId)} cannot be a directory name under --artifacts (letters, digits, . _ - only)`));
  return runId;
}

/**
 * Downloads what `audit verify --replay DIR` needs for every run of an exported log into `dir`:
 * each run's initial model (GET audit/v1/models/{version}), each completed round's aggregate
 * (GET audit/v1/runs/{runId}/rounds/{round}/aggregate) and, where the run's policy releases it
 * (audit.auditorServerView; HTTP 403 otherwise, and the run's views are skipped), its server view
 * (GET audit/v1/runs/{runId}/rounds/{round}/server-view), written atomically. A file already there
 * whose BLAKE2b-256 is the logged hash is kept (a second export fetches only what is new). Nothing
 * is trusted: the bytes are written as received and `audit verify --replay` checks them. A run
 * whose policy does not release artifacts to auditors (audit.auditorArtifacts) fails with the
 * server's reason (HTTP 403), as does any other refusal; files fetched before stay.
 */
export async function fetchAuditArtifacts(
  base: string,
  token: string,
  log: Uint8Array,
  dir: string,
  opts: { ca?: Buffer; caFile?: string; allowPlaintext?: boolean } = {},
): Promise<{ models: number; aggregates: number; serverViews: number; fetched: number }> {
  const { sodiumReady, sodium } = await import('../crypto/sodium');
  const { parseExportLine, splitLines } = await import('../audit/chain');
  const { checkEntry } = await import('../audit/entries');
  const { writeFileAtomic } = await import('../util/atomic');
  await sodiumReady();
  const root = auditApiRoot(base, opts.allowPlaintext);
  const wanted: { kind: 'model' | 'aggregate' | 'view'; file: string; hash: string | null; api: string; runId: string }[] = [];
  for (const line of splitLines(log).lines) {
    const p = line.length ? parseExportLine(line) : null;
    const c = p?.ok ? checkEntry(p.entry) : null;
    if (!c?.ok) continue;
    const e = c.entry;
    if (e.type === 'run-started') wanted.push({ kind: 'model', file: artifactPaths.model(dir, e.initialModelVersion), hash: e.initialModelHash, api: `audit/v1/models/${e.initialModelVersion}`, runId: e.runId });
    else if (e.type === 'round-completed') {
      const round = `audit/v1/runs/${encodeURIComponent(e.runId)}/rounds/${e.round}`;
      wanted.push({ kind: 'aggregate', file: artifactPaths.aggregate(dir, e.runId, e.round), hash: e.aggregateHash, api: `${round}/aggregate`, runId: e.runId });
      // the logged serverViewHash (logs before it: none, so fetched every time); either way
      // `audit verify --replay` checks the view against the parties' signed digests
      wanted.push({ kind: 'view', file: artifactPaths.serverView(dir, e.runId, e.round), hash: e.serverViewHash ?? null, api: `${round}/server-view`, runId: e.runId });
    }
  }
  let fetched = 0;
  let serverViews = 0;
  const noViews = new Set<string>(); // runs whose policy does not release server views
  for (const w of wanted) {
    if (w.kind === 'view' && noViews.has(w.runId)) continue;
    let have: Buffer | null = null;
    try {
      have = fs.readFileSync(w.file);
    } catch {
      have = null;
    }
    if (have && w.hash !== null && sodium().crypto_generichash(32, have, null, 'hex') === w.hash) {
      if (w.kind === 'view') serverViews++;
      continue;
    }
    let body: Buffer | null;
    if (w.kind === 'view') {
      body = await apiGet(root, w.api, token, opts, 'application/json', [403]);
      if (body === null) {
        noViews.add(w.runId);
        continue;
      }
      serverViews++;
    } else body = await apiGet(root, w.api, token, opts, 'application/octet-stream');
    fs.mkdirSync(path.dirname(w.file), { recursive: true });
    writeFileAtomic(w.file, body, 0o644);
    fetched++;
  }
  return { models: wanted.filter((w) => w.kind === 'model').length, aggregates: wanted.filter((w) => w.kind === 'aggregate').length, serverViews, fetched };
}

export function registerAuditCommands(audit: Command): void {
  audit
    .command('export')
    .description("download the coordinator's audit log (read-only API, auditor token) as JSON Lines")
    .requiredOption('--coordinator <url>', 'base URL of the coordinator HTTP API, e.g. https://127.0.0.1:8443')
    .requiredOption('--out <file>', 'where to write the log (F.jsonl)')
    .option('--token-file <file>', 'file holding the auditor bearer token (else env FEDBRIDGE_AUDITOR_TOKEN)')
    .option('--token <token>', 'the token itself (visible to other users in the process list: prefer --token-file or the env)')
    .option('--ca <file>', 'CA certificate (PEM) to trust for https')
    .option('--allow-plaintext', 'send the token over plain http to a host other than this machine (refused without it)')
    .option('--artifacts <dir>', "also download each run's initial model and each completed round's aggregate into DIR, for 'audit verify --replay DIR' (the run's policy must set audit.auditorArtifacts)")
    .option('--json', 'print {"out","entries"} (and "artifacts" with --artifacts)')
    .action(async (o: { coordinator: string; out: string; token?: string; tokenFile?: string; ca?: string; allowPlaintext?: boolean; artifacts?: string; json?: boolean }) => {
      if (o.token !== undefined && o.tokenFile !== undefined) throw new UserError('give the auditor token once: --token-file or --token, not both');
      let token = o.token ?? process.env.FEDBRIDGE_AUDITOR_TOKEN;
      if (o.tokenFile !== undefined) {
        try {
          token = readFileAt(o.tokenFile, 'utf8').trim();
        } catch (e) {
          throw new UserError(`--token-file: cannot read ${o.tokenFile} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        }
        if (!token) throw new UserError(`--token-file: ${o.tokenFile} is empty`);
      } else if (o.token !== undefined) {
        process.stderr.write('fedbridge: warning: --token puts the auditor token in the process list; prefer --token-file or FEDBRIDGE_AUDITOR_TOKEN\n');
      }
      if (!token) throw new UserError('an auditor token is needed: --token-file F or FEDBRIDGE_AUDITOR_TOKEN');
      let ca: Buffer | undefined;
      if (o.ca) {
        // a file without a certificate would be ignored, and the coordinator's refused as unverified
        ca = clientTlsFiles({ ca: { name: '--ca', file: o.ca } }).ca;
      }
      const { bytes, entries } = await fetchAuditLog(o.coordinator, token, { ca, caFile: o.ca, allowPlaintext: o.allowPlaintext });
      const { writeFileAtomic } = await import('../util/atomic');
      fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
      writeFileAtomic(o.out, bytes, 0o644);
      if (o.artifacts === undefined) {
        if (o.json) printJson({ out: o.out, entries });
        else process.stdout.write(`exported ${entries} audit entries to ${o.out}\n`);
        return;
      }
      let art;
      try {
        art = await fetchAuditArtifacts(o.coordinator, token, bytes, o.artifacts, { ca, caFile: o.ca, allowPlaintext: o.allowPlaintext });
      } catch (e) {
        if (e instanceof UserError) throw new UserError(`exported ${entries} audit entries to ${o.out}, but not the artifacts: ${e.message}`, e.exitCode);
        throw e;
      }
      if (o.json) printJson({ out: o.out, entries, artifacts: { dir: o.artifacts, ...art } });
      else process.stdout.write(`exported ${entries} audit entries to ${o.out}; artifacts in ${o.artifacts}: ${art.models} initial model(s), ${art.aggregates} aggregate(s), ${art.serverViews} server view(s) (${art.fetched} downloaded, the rest already there)\n`);
    });

  audit
    .command('verify')
    .description('verify an exported audit log against the signed policy and the parties\' receipts')
    .argument('<log>', 'exported audit log (JSON Lines)')
    .option('--policy <file>', 'the policy YAML the parties signed (required); repeat it for a log with runs of several policies (each run is checked against the policy it names)', (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--receipts <dir>', "a directory of the parties' receipts (*.json, recursive); repeatable", (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--replay <dir>', "recompute every run's model chain from the artifacts 'audit export --artifacts DIR' wrote and check each model hash (shared/audit/replay.ts)")
    .option('--json', 'print {"ok","entries","rounds","failures",...} (and "replay" with --replay)')
    .action(async (logFile: string, o: { policy: string[]; receipts: string[]; replay?: string; json?: boolean }) => {
      const r = await verifyLogFile(logFile, o.policy, o.receipts, o.replay);
      if (o.json) {
        printJson({ ok: r.ok, entries: r.entries, rounds: r.rounds, failures: r.failures, policyHash: r.policyHash, head: r.head, receipts: r.receiptsChecked, warnings: r.warnings, runs: r.runs, timeline: r.timeline, ...(r.replay ? { replay: r.replay } : {}) });
      } else {
        // every line quotes the log (run ids, party names, reasons, the values of failures): each is
        // written through forTerminal, so nothing in the log can act on the terminal or fake a line
        const line = (text: string) => process.stdout.write(`${forTerminal(text)}\n`);
        line(`log ${logFile}: ${r.entries} entries, ${r.rounds} rounds, policy ${r.policyHash}, ${r.receiptsChecked} party receipts checked`);
        for (const s of r.timeline) {
          const eps = Object.entries(s.epsilon).map(([p, e]) => `${p} ${e.toFixed(3)}`).join(', ');
          line(`  ${s.runId} round ${s.round}: ${s.status}${s.reason ? ` (${s.reason})` : ''}; survivors ${s.survivors ? s.survivors.join(', ') : '-'}; epsilon ${eps || '-'}; receipts ${s.receipts.join(', ') || '-'}`);
        }
        if (r.replay) {
          const completed = r.replay.rounds.length;
          line(`  model chain: ${r.replay.replayed} of ${completed} completed round(s) recomputed from the aggregates and matched the logged model hash`);
          if (r.replay.aggregatesRecomputed) line(`  aggregates: ${r.replay.aggregatesRecomputed} recomputed from the parties' signed masked inputs (server view) and matched the logged aggregate hash`);
        }
        for (const x of r.warnings) line(`  note: ${x}`);
        for (const f of r.failures) line(`  FAIL entry ${f.entry} ${f.field}: expected ${f.expected}, found ${f.found}`);
        line(r.ok ? 'verified: every check passed' : `NOT verified: ${r.failures.length} failure(s)`);
      }
      if (!r.ok) throw new UserError(forTerminal(`audit log ${logFile} failed verification (${r.failures.length} failure(s); first at entry ${r.failures[0].entry}, ${r.failures[0].field})`), 1);
    });
}
