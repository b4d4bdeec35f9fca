/**
 * The audit module wired into the coordinator (issue 6), over real gRPC with the secure-aggregation
 * protocol and MiniNodes: the log of a real round, exported over the HTTP audit API with an auditor
 * token, verifies with shared/audit's verifyLog (chain, signatures, signed secagg evidence, policy
 * parameters, epsilon, Merkle roots, receipts). SubmitReceipt records a party's valid receipt and
 * refuses a receipt signed by another key, over another head, another model, an entry before the
 * round's completion, a round not completed, or a second one — each with its status and nothing
 * stored. A restarted coordinator continues the same chain. The auditor page and OpenAPI are served.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EventKind, Phase, ReceiptBody, type PhaseEvent, type ReceiptAck, type SignedRequest } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { encodedDimension } from '../../shared/dp/encode';
import { policyHash, type Policy } from '../../shared/policy/schema';
import { signReceipt } from '../../shared/audit/receipt';
import { verifyLog } from '../../shared/audit/verify';
import { auditChainHash } from '../../shared/audit/chain';
import type { Receipt } from '../../shared/audit/entries';
import { fetchAuditLog } from '../../shared/cli/audit';
import { receiptBodyFields } from '../../participant-node/federation/receipt';
import { verifyAuditChain } from '../../coordinator/audit/log';
import type { RunningCoordinator } from '../../coordinator/main';
import { enrol, FEDERATION, grpc, grpcError, makeEnv, modelDim, operator, OPERATOR_TOKEN, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, unary, type Env } from './helpers/harness';
import { MiniNode } from './helpers/mini-node';
import { secaggCoordinator } from './helpers/fixture';
import { runCli } from '../cli-run';

const PARTIES = ['platform', 'insurer', 'insurer2'];

function submit(p: TestParty, runId: string, round: number, r: Receipt, modelVersion: number): Promise<ReceiptAck> {
  const body = ReceiptBody.encode({ header: p.header('SubmitReceipt', runId, round), ...receiptBodyFields(r, modelVersion) }).finish();
  const req: SignedRequest = p.sign('SubmitReceipt', body);
  return new Promise((resolve, reject) => p.client.submitReceipt(req, (e, a) => (e ? reject(e) : resolve(a))));
}

async function get(url: string, token?: string): Promise<{ status: number; body: string; type: string }> {
  const res = await fetch(url, { redirect: 'manual', ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') ?? '' };
}

function miniNodes(parties: TestParty[], policy: Policy, coord: RunningCoordinator): MiniNode[] {
  const length = encodedDimension(modelDim(policy), policy.secagg.rotation === 'hadamard');
  return parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, length));
}

/** Enrols the three parties; a 1-round policy with t = 2; MiniNodes subscribed. */
async function enrolFederation(env: Env, coord: RunningCoordinator) {
  const parties = PARTIES.map((n) => new TestParty(n, env, coord.grpcPort));
  const op = operator(env, coord.grpcPort);
  await enrol(env, op, parties);
  const policy: Policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
  policy.secagg.threshold = 2;
  return { parties, op, policy, dim: modelDim(policy), nodes: miniNodes(parties, policy, coord) };
}

describe('audit log of the coordinator', () => {
  let served: { policy: Policy; token: string; entries: number } | null = null;
  const fx = secaggCoordinator(PARTIES);

  test('a real secagg round verifies; receipts checked and logged; restart continues the chain; API and page served', async () => {
    const { env } = fx;
    let { coord } = fx;
    const fed = await enrolFederation(env, coord);
    const { parties, nodes } = fed;
    Object.assign(fx, { parties, nodes });
    const { op, policy, dim } = fed;
    const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(new Float32Array(dim).fill(0.01).buffer));
    const runId = st.runId;
    const done: PhaseEvent = await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1);
    await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
    expect(done.auditHead).toHaveLength(32);
    expect(done.modelHash).toHaveLength(32);
    const model = await parties[0].download(done.modelVersion);
    expect(Buffer.from(model.info.modelHash).equals(Buffer.from(done.modelHash))).toBe(true);

    const pHash = policyHash(policy);
    const headIdx = Number(done.auditHeadIdx);
    const receiptOf = (p: TestParty, over: Partial<Parameters<typeof signReceipt>[0]> = {}, key = p.keys.secretKey) =>
      signReceipt({ federationId: FEDERATION, policyHash: pHash, runId, round: 1, party: p.name, headIdx, head: done.auditHead, modelHash: done.modelHash, ...over }, key);
    const stored = () => coord.ctx.repo.snapshotCounts();

    // refused receipts: precise status, nothing stored
    const before = await stored();
    const rows = await coord.ctx.repo.auditEntries();
    const head0 = auditChainHash(rows[0].idx, rows[0].prevHash, rows[0].entry);
    const refused: [string, Promise<unknown>, grpc.status][] = [
      ['signed by another key', submit(parties[0], runId, 1, receiptOf(parties[0], {}, parties[1].keys.secretKey), done.modelVersion), grpc.status.UNAUTHENTICATED],
      ['another head', submit(parties[0], runId, 1, receiptOf(parties[0], { head: new Uint8Array(32).fill(7) }), done.modelVersion), grpc.status.FAILED_PRECONDITION],
      ['another model', submit(parties[0], runId, 1, receiptOf(parties[0], { modelHash: new Uint8Array(32).fill(9) }), done.modelVersion), grpc.status.FAILED_PRECONDITION],
      ['another model version', submit(parties[0], runId, 1, receiptOf(parties[0]), done.modelVersion + 1), grpc.status.FAILED_PRECONDITION],
      ['an entry before the round completed', submit(parties[0], runId, 1, receiptOf(parties[0], { headIdx: 0, head: head0 }), done.modelVersion), grpc.status.FAILED_PRECONDITION],
      ['a round that did not complete', submit(parties[0], runId, 2, receiptOf(parties[0], { round: 2 }), done.modelVersion), grpc.status.FAILED_PRECONDITION],
      ['another run', submit(parties[0], 'run-nope', 1, receiptOf(parties[0], { runId: 'run-nope' }), done.modelVersion), grpc.status.NOT_FOUND],
    ];
    for (const [why, call, code] of refused) {
      const e = await grpcError(call);
      expect([why, e.code]).toEqual([why, code]);
    }
    expect(await stored()).toEqual(before);

    // good receipts are logged; a second one for the same round is refused
    const acks = [];
    for (const p of parties) acks.push(await submit(p, runId, 1, receiptOf(p), done.modelVersion));
    expect(acks.map((a) => Number(a.logIndex))).toEqual([0, 1, 2].map((k) => before.audit_log + k));
    expect((await grpcError(submit(parties[1], runId, 1, receiptOf(parties[1]), done.modelVersion))).code).toBe(grpc.status.ALREADY_EXISTS);

    // exported over HTTP with an auditor token, the log verifies against the policy and the receipts
    const { token } = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'audit-test', expiresInSeconds: '0' }, op.metadata);
    const http = `http://127.0.0.1:${coord.httpPort}`;
    const exported = await fetchAuditLog(http, token, { limit: 5 });
    const receipts = parties.map((p) => ({ source: p.name, receipt: receiptOf(p) }));
    const res = verifyLog(new Uint8Array(exported.bytes), { policy, receipts });
    expect(res.failures).toEqual([]);
    expect(res.warnings).toEqual([]);
    expect(res.ok).toBe(true);
    const entries = exported.bytes.toString('utf8').trim().split('\n').map((l) => JSON.parse(l).entry);
    expect(entries.map((e) => e.type)).toEqual([
      'participant-enrolled', 'participant-enrolled', 'participant-enrolled',
      'policy-registered', 'run-started', 'round-started',
      'round-phase', 'round-phase', 'round-phase', 'round-phase', 'round-phase',
      'round-completed', 'run-completed', 'receipt', 'receipt', 'receipt', 'token-issued',
    ]);
    const advertise = entries.find((e) => e.phase === 'advertise');
    expect(advertise.advertisements.map((a: { party: string }) => a.party)).toEqual(['insurer', 'insurer2', 'platform']);
    const completed = entries.find((e) => e.type === 'round-completed');
    expect(Object.keys(completed.epsilon).sort()).toEqual(['insurer', 'insurer2', 'platform']);
    expect(completed.merkle).toMatchObject({ from: 5, count: 6 });

    // the operator token and no token are refused; bad queries get 400; head and OpenAPI served
    expect((await get(`${http}/audit/v1/log?from=0`, OPERATOR_TOKEN)).status).toBe(401);
    expect((await get(`${http}/audit/v1/log?from=0`)).status).toBe(401);
    expect((await get(`${http}/audit/v1/head`, OPERATOR_TOKEN)).status).toBe(401);
    for (const q of ['', '?from=x', '?from=0&limit=0', '?from=0&limit=10001', '?from=0&from=1']) expect([q, (await get(`${http}/audit/v1/log${q}`, token)).status]).toEqual([q, 400]);
    const page = await get(`${http}/audit/v1/log?from=3&limit=2`, token);
    expect(page.type).toContain('application/x-ndjson');
    expect(page.body).toBe(exported.bytes.toString('utf8').split('\n').slice(3, 5).join('\n') + '\n');
    expect(JSON.parse((await get(`${http}/audit/v1/head`, token)).body)).toEqual({ idx: entries.length - 1, head: res.head });
    expect((await get(`${http}/audit/openapi.yaml`)).body).toContain('operationId: getAuditLog');

    // a restarted coordinator continues the same chain (the writer and recorder are replayed)
    coord = await fx.restart();
    const op2 = operator(env, coord.grpcPort);
    await unary(op2.client.issueToken.bind(op2.client), { role: 'auditor', label: 'after restart', expiresInSeconds: '0' }, op2.metadata);
    const after = await fetchAuditLog(`http://127.0.0.1:${coord.httpPort}`, token);
    expect(after.entries).toBe(exported.entries + 1);
    expect(after.bytes.subarray(0, exported.bytes.length).equals(exported.bytes)).toBe(true);
    expect(verifyLog(new Uint8Array(after.bytes), { policy, receipts }).failures).toEqual([]);
    expect(verifyAuditChain(await coord.ctx.repo.auditEntries(), coord.publicKey).failures).toEqual([]);

    // the auditor page: /audit redirects to /audit/, which loads its script
    const http2 = `http://127.0.0.1:${coord.httpPort}`;
    expect((await get(`${http2}/audit`)).status).toBe(301);
    const html = await get(`${http2}/audit/`);
    expect(html.status).toBe(200);
    expect(html.body).toContain('audit-page.js');
    const js = await get(`${http2}/audit/audit-page.js`);
    expect(js.status).toBe(200);
    expect(js.body.length).toBeGreaterThan(10_000);
    op.client.close();
    op2.client.close();
    served = { policy, token, entries: after.entries };
  }, 120_000);

  test('the auditor page served by the coordinator verifies the real log in headless Chromium', async () => {
    const { env, coord } = fx;
    const { chromium } = await import('playwright-core');
    const s = served!;
    const polPath = path.join(env.dir, 'page-policy.yaml');
    fs.writeFileSync(polPath, policyYaml(s.policy));
    const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${coord.httpPort}/audit/`);
      await page.setInputFiles('#policyFile', polPath);
      await page.fill('#token', OPERATOR_TOKEN); // operator credentials do not open the audit API
      await page.click('#verify');
      await page.locator('#status[data-status="failed"]').waitFor({ timeout: 30_000 });
      expect(await page.locator('#status').textContent()).toContain('HTTP 401');
      await page.fill('#token', s.token);
      await page.click('#verify');
      await page.locator('#status[data-status="verified"]').waitFor({ timeout: 30_000 });
      expect(await page.locator('#status').textContent()).toContain(`verified: ${s.entries} entries, 1 rounds`);
      expect(await page.locator('#timeline tr.round').count()).toBe(1);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 120_000);
});

describe('audit log of aborted rounds', () => {
  let firstPolicy: Policy | null = null;
  const fx = secaggCoordinator(PARTIES);

  test('two parties vanish at advertise: three aborted rounds, then the run is aborted; the log verifies', async () => {
    const { env, coord, timers } = fx;
    const fed = await enrolFederation(env, coord);
    const { parties, nodes } = fed;
    Object.assign(fx, { parties, nodes });
    const { op, policy, dim } = fed;
    nodes[1].killAt = { round: 1, phase: Phase.PHASE_ADVERTISE_KEYS };
    nodes[2].killAt = { round: 1, phase: Phase.PHASE_ADVERTISE_KEYS };
    await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(new Float32Array(dim).fill(0.01).buffer));
    for (const round of [1, 2, 3]) {
      await nodes[0].sentIn(round, Phase.PHASE_ADVERTISE_KEYS);
      expect(timers.fire()).toBe(1);
      await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_ABORTED && e.round === round);
    }
    await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
    const { token } = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'abort-test', expiresInSeconds: '0' }, op.metadata);
    const exported = await fetchAuditLog(`http://127.0.0.1:${coord.httpPort}`, token);
    const res = verifyLog(new Uint8Array(exported.bytes), { policy });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(true);
    expect(res.timeline.map((r) => [r.round, r.status, r.phases.advertise])).toEqual([1, 2, 3].map((r) => [r, 'aborted', ['platform']]));
    expect(res.runs.map((r) => r.status)).toEqual(['aborted']);
    const entries = exported.bytes.toString('utf8').trim().split('\n').map((l) => JSON.parse(l).entry);
    const aborted = entries.filter((e) => e.type === 'round-aborted');
    expect(aborted.map((e) => [e.phase, e.epsilon])).toEqual([1, 2, 3].map(() => ['advertise', {}])); // nobody sent a masked input: nobody charged
    op.client.close();
    firstPolicy = policy;
  }, 120_000);

  test('a coordinator restarted during masked input aborts the round and retries it; the log of both runs verifies', async () => {
    const { env, parties } = fx;
    let { coord } = fx;
    const policy = firstPolicy!;
    for (const n of fx.nodes) n.stream.cancel(); // the first run's nodes
    fx.nodes = [];
    const op = operator(env, coord.grpcPort);
    const ps = parties.map((p) => new TestParty(p.name, env, coord.grpcPort, { keys: p.keys }));
    const dim = modelDim(policy);
    const ns = miniNodes(ps, policy, coord);
    ns[2].killAt = { round: 1, phase: Phase.PHASE_MASKED_INPUT };
    const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(new Float32Array(dim).fill(0.02).buffer));
    await Promise.all(ns.slice(0, 2).map((n) => n.sentIn(1, Phase.PHASE_MASKED_INPUT)));
    for (const n of ns) n.stream.cancel();
    op.client.close();
    coord = await fx.restart();
    const op2 = operator(env, coord.grpcPort);
    const { token } = await unary(op2.client.issueToken.bind(op2.client), { role: 'auditor', label: 'restart-test', expiresInSeconds: '0' }, op2.metadata);
    const exported = await fetchAuditLog(`http://127.0.0.1:${coord.httpPort}`, token);
    const res = verifyLog(new Uint8Array(exported.bytes), { policy });
    expect(res.failures).toEqual([]);
    expect(res.runs.map((r) => [r.runId === st.runId, r.status])).toEqual([[false, 'aborted'], [true, 'running']]);
    const last = res.timeline.filter((r) => r.runId === st.runId);
    expect(last.map((r) => [r.round, r.status])).toEqual([[1, 'aborted'], [2, 'open']]);
    expect(last[0].reason).toContain('coordinator restarted during round 1 (phase mask)');
    for (const p of ps) p.close();
    op2.client.close();
  }, 120_000);

  test('an operator abort during masked input logs the inputs received so far (charged) and verifies', async () => {
    const { env, coord, parties } = fx;
    const policy = firstPolicy!;
    const op = operator(env, coord.grpcPort);
    // the run recovered above is still running: abort it first (its retried round has no nodes)
    await unary(op.client.abortRun.bind(op.client), { runId: '', reason: 'test cleanup' }, op.metadata);
    const ps = parties.map((p) => new TestParty(p.name, env, coord.grpcPort, { keys: p.keys }));
    const dim = modelDim(policy);
    const ns = miniNodes(ps, policy, coord);
    ns[2].killAt = { round: 1, phase: Phase.PHASE_MASKED_INPUT };
    const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(new Float32Array(dim).fill(0.03).buffer));
    await Promise.all(ns.slice(0, 2).map((n) => n.sentIn(1, Phase.PHASE_MASKED_INPUT)));
    await unary(op.client.abortRun.bind(op.client), { runId: st.runId, reason: 'stop' }, op.metadata);
    const { token } = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'operator-abort', expiresInSeconds: '0' }, op.metadata);
    const exported = await fetchAuditLog(`http://127.0.0.1:${coord.httpPort}`, token);
    const res = verifyLog(new Uint8Array(exported.bytes), { policy });
    expect(res.failures).toEqual([]);
    const entries = exported.bytes.toString('utf8').trim().split('\n').map((l) => JSON.parse(l).entry);
    const mine = entries.filter((e) => e.runId === st.runId);
    const mask = mine.find((e) => e.type === 'round-phase' && e.phase === 'mask');
    expect(mask.parties).toEqual(['insurer', 'platform']);
    const aborted = mine.find((e) => e.type === 'round-aborted');
    expect(aborted.phase).toBe('mask');
    expect(Object.keys(aborted.epsilon).sort()).toEqual(['insurer', 'platform']);
    expect(mine[mine.length - 1]).toMatchObject({ type: 'run-aborted', reason: 'operator: stop' });
    for (const n of ns) n.stream.cancel();
    for (const p of ps) p.close();
    op.client.close();
  }, 120_000);
});


describe('audit API over HTTPS (config http.tls)', () => {
  test('the log is exported over TLS with the gRPC certificate; plain HTTP is not served; a wrong set-up is one line saying what to fix', async () => {
    const env = await makeEnv(PARTIES);
    env.configInput.http = { ...env.configInput.http, tls: true };
    const coord = await startCoordinator(env, null);
    try {
      const op = operator(env, coord.grpcPort);
      const { token } = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'tls', expiresInSeconds: '0' }, op.metadata);
      op.client.close();
      const base = `https://127.0.0.1:${coord.httpPort}`;
      const got = await fetchAuditLog(base, token, { ca: fs.readFileSync(env.certs.ca) });
      expect(got.entries).toBe(1);
      expect(JSON.parse(got.bytes.toString('utf8')).entry).toMatchObject({ type: 'token-issued', label: 'tls' });
      // without the CA the server certificate is not trusted; plain HTTP gets no answer
      await expect(fetchAuditLog(base, token)).rejects.toThrow();
      await expect(fetch(`http://127.0.0.1:${coord.httpPort}/audit/v1/log?from=0`, { headers: { authorization: `Bearer ${token}` } })).rejects.toThrow();
      // `audit export`: a set-up problem is one line saying what to fix; nothing is written
      const tokenFile = path.join(env.dir, 'auditor.token');
      fs.writeFileSync(tokenFile, token, { mode: 0o600 });
      fs.writeFileSync(path.join(env.dir, 'junk.pem'), 'not a certificate\n');
      const out = path.join(env.dir, 'export.jsonl');
      const party = env.certs.clients.platform.cert;
      const cases: [string, string[], number, string][] = [
        ['no --ca (the system CAs)', ['--coordinator', base], 1, `fedbridge: cannot reach the audit API: the coordinator's TLS certificate at ${base} does not verify (unable to verify the first certificate): pass --ca with the CA that signed the coordinator's certificate\n`],
        ['a CA that did not sign it', ['--coordinator', base, '--ca', party], 1, `fedbridge: cannot reach the audit API: the coordinator's TLS certificate at ${base} does not verify (unable to verify the first certificate): is --ca ${party} the CA that signed the coordinator's certificate?\n`],
        ['a --ca with no certificate', ['--coordinator', base, '--ca', path.join(env.dir, 'junk.pem')], 2, `fedbridge: --ca: ${path.join(env.dir, 'junk.pem')}: not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)\n`],
        ['http:// to the https port', ['--coordinator', `http://127.0.0.1:${coord.httpPort}`], 1, `fedbridge: cannot reach the audit API: the connection to http://127.0.0.1:${coord.httpPort} was closed without an answer (socket hang up): does this port expect https (the coordinator's http.tls)?\n`],
        ['the gRPC port', ['--coordinator', `https://127.0.0.1:${coord.grpcPort}`, '--ca', env.certs.ca], 1, `fedbridge: cannot reach the audit API: https://127.0.0.1:${coord.grpcPort} asks for a client certificate: that is the coordinator's gRPC port (mutual TLS); the audit API answers at its HTTP address (http.listen)\n`],
      ];
      for (const [what, args, code, err] of cases) {
        const r = await runCli(['audit', 'export', ...args, '--out', out, '--token-file', tokenFile]);
        expect([what, r.code, r.err]).toEqual([what, code, err]);
        expect(fs.existsSync(out)).toBe(false);
      }
      expect((await runCli(['audit', 'export', '--coordinator', base, '--ca', env.certs.ca, '--out', out, '--token-file', tokenFile])).code).toBe(0);
    } finally {
      await coord.close();
    }
  }, 60_000);
});
