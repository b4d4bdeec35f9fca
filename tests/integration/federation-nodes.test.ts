/**
 * The whole federation in one process, over real gRPC with mutual TLS on loopback (port 0): the
 * NestJS coordinator with the secure-aggregation protocol and three REAL participant nodes
 * (`joinFederation`: generated data, import, DP-SGD training, encoding, SecAggClient, chunked
 * upload, model adoption, privacy ledger). Round 1: insurer2 leaves when masked input opens; the
 * others complete. Round 2: the coordinator's storage refuses the insurer's first masked input
 * (a SQLite trigger: a real storage fault, answered UNAVAILABLE) and the node sends the same bytes
 * again (uploadWithRetry); the two survivors complete. In round 1 the platform's first ShareKeys
 * answer is lost on the way back (a client interceptor turns it into UNAVAILABLE after the
 * coordinator took the message): the node sends the same message again and the coordinator answers
 * the identical resend with the same ack, so the platform keeps its round. Checks, computed here independently of
 * the coordinator: each new global model = FedAvg(base, decoded sum of the survivors' encoded
 * vectors); the nodes adopted it; each node's ledger was charged before it uploaded.
 * Audit (issue 6): the log exported over the coordinator's HTTP audit API with an auditor token
 * verifies clean against the policy and the receipts the nodes kept (library and `fedbridge audit
 * verify`); a one-byte change fails at that entry; the operator token is refused by the audit API.
 */
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { generateSynthetic } from '../../participant-node/data/generate';
import { initNode, loadIdentity } from '../../participant-node/identity';
import { importCsv } from '../../participant-node/data/import';
import { joinFederation, type JoinSummary, type RoundReport } from '../../participant-node/federation/client';
import { roundEncodeParams } from '../../participant-node/federation/update';
import { openLedger, readLedger } from '../../participant-node/privacy/ledger';
import { restoreLedgerFromAudit } from '../../participant-node/privacy/restore';
import { readModelMeta } from '../../participant-node/model/store';
import { loadDataset } from '../../participant-node/data/store';
import { nodeConnection, smallPolicy } from './policy';
import { policyHash } from '../../shared/policy/schema';
import { signPolicyHash } from '../../shared/policy/sign';
import { sharedParameterLayout, layoutSize } from '../../shared/model/layout';
import { initSharedParams } from '../../shared/model/init';
import { modularSum, nextGlobalModel } from '../../shared/fl/aggregate';
import { averagingDivisors } from '../../shared/fl/offers';
import { newServerState } from '../../shared/fl/server';
import { operator, startRun, unary, OPERATOR_TOKEN } from '../coordinator/helpers/harness';
import { realCoordinator } from '../coordinator/helpers/fixture';
import { fetchAuditArtifacts, fetchAuditLog, verifyLogFile } from '../../shared/cli/audit';
import { verifyLog } from '../../shared/audit/verify';
import { parsePolicyYaml } from '../../shared/policy/schema';
import { runCli as cli } from '../cli-run';

const PARTIES = ['platform', 'insurer', 'insurer2'];

/** Lets the first ShareKeys call reach the coordinator, then hands the caller UNAVAILABLE instead of its answer. */
function loseFirstShareKeysAnswer(): grpc.Interceptor {
  let lost = false;
  return (options, nextCall) => {
    const mine = !lost && options.method_definition.path.endsWith('/ShareKeys');
    if (mine) lost = true;
    return new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        next(metadata, {
          // the answer is passed on (grpc-js holds the status until it is), then reported as lost
          onReceiveStatus(status, nxt) {
            nxt(mine && status.code === grpc.status.OK ? { ...status, code: grpc.status.UNAVAILABLE, details: 'answer lost on the way back (test)' } : status);
          },
        });
      },
    });
  };
}

describe('three real nodes federate through the coordinator', () => {
  const fx = realCoordinator(PARTIES);

  test('2 rounds with SecAgg + DP; a node leaves during masked input; models and ledgers agree', async () => {
    const { env, coord } = fx;
    const gen = path.join(env.dir, 'gen');
    await generateSynthetic({ out: gen, seed: 11, scale: 'small', parties: PARTIES, usersPerParty: 80, itemsPerParty: 40 });
    const dirs = Object.fromEntries(PARTIES.map((p) => [p, path.join(env.dir, 'nodes', p)]));
    const keys: Record<string, Uint8Array> = {};
    for (const p of PARTIES) {
      await initNode(dirs[p], p);
      await importCsv({ dataDir: dirs[p], users: path.join(gen, p, 'users.csv'), items: path.join(gen, p, 'items.csv'), interactions: path.join(gen, p, 'interactions.csv') });
      keys[p] = (await loadIdentity(dirs[p])).publicKey;
    }
    const ds = loadDataset(dirs.platform);
    // the parties release models, aggregates and the server view to auditors: the audit below
    // recomputes every aggregate from the signed masked inputs and replays the model chain
    const policy = { ...smallPolicy({ ds, parties: PARTIES, coordinatorKey: coord.publicKey, keys, samplingRate: 0.25, phaseSeconds: 20 }), audit: { auditorArtifacts: true, auditorServerView: true } };
    const policyFile = path.join(env.dir, 'policy.yaml');
    fs.writeFileSync(policyFile, stringify(policy));
    const hash = policyHash(policy);

    const op = operator(env, coord.grpcPort);
    for (const p of PARTIES) await unary(op.client.enroll.bind(op.client), { name: p, publicKey: keys[p], certSha256: env.certs.clients[p].sha256 }, op.metadata);

    // storage fault: the insurer's round-2 masked input cannot be stored until the node has
    // reported a resend; the trigger is dropped then, so the resend is stored
    const db = coord.ctx.repo.db;
    await db.query(`CREATE TRIGGER fault_insurer_r2 BEFORE INSERT ON round_masked_inputs WHEN NEW.party = 'insurer' AND NEW.round = 2 BEGIN SELECT RAISE(ABORT, 'injected storage fault'); END`);
    const resends: string[] = [];
    let dropped: Promise<unknown> | null = null;
    const leaver = new AbortController();
    const reports: Record<string, RoundReport[]> = Object.fromEntries(PARTIES.map((p) => [p, []]));
    const nodeLogs: Record<string, string[]> = Object.fromEntries(PARTIES.map((p) => [p, []]));
    const chargedAtUpload: Record<string, number> = {};
    const joins: Promise<JoinSummary>[] = PARTIES.map((p) =>
      joinFederation({
        ...nodeConnection(env, coord.grpcPort, dirs[p], p, policyFile),
        holdout: 'last',
        signal: p === 'insurer2' ? leaver.signal : undefined,
        uploadRetryDelaysMs: [1000],
        grpcClient: p === 'platform' ? { interceptors: [loseFirstShareKeysAnswer()] } : undefined,
        log: (line) => {
          nodeLogs[p].push(line);
          if (process.env.FB_DEBUG) process.stderr.write(`[${p}] ${line}\n`);
          if (p === 'insurer' && line.includes('masked input not accepted (UNAVAILABLE')) {
            resends.push(line);
            dropped ??= db.query('DROP TRIGGER fault_insurer_r2');
          }
        },
        onPhase: (round, phase) => {
          if (p === 'insurer2' && round === 1 && phase === 'mask') leaver.abort();
          if (phase === 'consistency') chargedAtUpload[`${p}:${round}`] = readLedger(dirs[p])?.entries.length ?? 0;
        },
        onRound: (r) => reports[p].push(r),
      }),
    );
    // subscriptions are open once each node is connected; give them a moment through HELLO
    await new Promise((r) => setTimeout(r, 1500));
    const dim = layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
    const initial = initSharedParams(sharedParameterLayout(policy.model, policy.vocabularies), 3);
    const run = await startRun(op.client, op.metadata, { policyYaml: stringify(policy), signatures: PARTIES.map((p) => ({ party: p, signature: signPolicyHash(hash, secretOf(dirs[p])) })) }, new Uint8Array(initial.buffer.slice(0)));
    expect(run.state).toBe('running');

    const leaverSummary = await joins[2]; // returns once aborted
    expect(leaverSummary.rounds.filter((r) => r.outcome === 'completed')).toHaveLength(0);
    const [plat, ins] = await Promise.all([joins[0], joins[1]]);
    expect(plat.rounds.map((r) => [r.round, r.outcome])).toEqual([[1, 'completed'], [2, 'completed']]);
    expect(ins.rounds.map((r) => [r.round, r.outcome])).toEqual([[1, 'completed'], [2, 'completed']]);
    // round 2 trains from the model adopted after round 1, whose hash matched the signed ROUND_COMPLETED (no second download)
    const v1 = plat.rounds[0].modelVersion;
    for (const p of ['platform', 'insurer']) expect(nodeLogs[p]).toContain(`round 2: starts from model v${v1}, adopted after the last round (its hash as signed)`);
    // the platform's lost ShareKeys answer: the same message sent again, acknowledged, the round kept
    expect(nodeLogs.platform.filter((l) => l.includes('not accepted'))).toEqual([expect.stringMatching(/^round 1: ShareKeys not accepted \(UNAVAILABLE: answer lost on the way back \(test\)\); sending the same message again in 1000 ms \(attempt 2\)$/)]);
    // the fault happened (once), the resend was stored: round 2 completed with the insurer in it
    await dropped;
    expect(resends).toEqual([expect.stringMatching(/^round 2: masked input not accepted \(UNAVAILABLE: the coordinator could not store the masked input of "insurer" for round 2; .*send it again\); sending the same bytes again in 1000 ms \(attempt 2\)$/)]);

    // recompute each global model from the survivors' encoded vectors (what SecAgg must sum)
    const state = newServerState();
    let global = initial;
    for (const round of [1, 2]) {
      const survivors = [reports.platform, reports.insurer].map((rs) => rs.find((r) => r.round === round)!.encoded!);
      const sum = modularSum(survivors, policy.secagg.bitWidth);
      const enc = roundEncodeParams(policy, run.runId, round);
      // offer scope: an item's rows averaged over its provider, the towers over both survivors
      const divisors = averagingDivisors(sharedParameterLayout(policy.model, policy.vocabularies), policy.catalogue.offers, ['platform', 'insurer']);
      global = nextGlobalModel(global, sum, 2, { gamma: enc.gamma, bits: enc.bits, rotationSeed: enc.rotationSeed }, { type: 'fedavg', learningRate: 1 }, state, divisors);
    }
    // each node drew its own initialisation of the private embeddings (never a shared fixed seed)
    expect(readModelMeta(dirs.platform).initSeed).not.toBe(readModelMeta(dirs.insurer).initSeed);
    // the nodes saved exactly that model (shared parameters), version 3 = initial + 2 rounds
    for (const p of ['platform', 'insurer']) {
      const meta = readModelMeta(dirs[p]);
      expect(meta.training.modelVersion).toBe(3);
      const saved = new Float32Array(new Uint8Array(fs.readFileSync(path.join(dirs[p], 'model', 'shared.f32'))).buffer);
      expect(saved.length).toBe(dim);
      let maxDiff = 0;
      for (let i = 0; i < dim; i++) maxDiff = Math.max(maxDiff, Math.abs(saved[i] - global[i]));
      expect(maxDiff).toBeLessThan(1e-6);
      // charged once per round, before the consistency phase (i.e. before/at upload)
      expect(readLedger(dirs[p])!.entries.map((e) => e.round)).toEqual([1, 2]);
      expect(chargedAtUpload[`${p}:1`]).toBe(1);
      expect(chargedAtUpload[`${p}:2`]).toBe(2);
      expect(plat.epsilon).toBeGreaterThan(0);
    }
    // the leaver never uploaded: it was not charged for round 1
    expect(readLedger(dirs.insurer2)?.entries.length ?? 0).toBe(0);
    const status = await unary(op.client.getRunStatus.bind(op.client), { runId: run.runId }, op.metadata);
    expect(status.state).toBe('completed');

    // ---- audit: export over HTTP with an auditor token, verify against the policy and the receipts
    const { token } = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'integration', expiresInSeconds: '0' }, op.metadata);
    const http = `http://127.0.0.1:${coord.httpPort}`;
    const exported = await fetchAuditLog(http, token, { limit: 7 }); // several pages
    const logFile = path.join(env.dir, 'audit.jsonl');
    fs.writeFileSync(logFile, exported.bytes);
    const receiptDirs = ['platform', 'insurer'].map((p) => path.join(dirs[p], 'receipts'));
    for (const d of receiptDirs) expect(fs.readdirSync(d).sort()).toEqual([expect.stringMatching(/-r1-/), expect.stringMatching(/-r2-/)]);
    const res = await verifyLogFile(logFile, policyFile, receiptDirs);
    expect(res.failures).toEqual([]);
    expect(res.warnings).toEqual([]);
    expect(res).toMatchObject({ ok: true, entries: exported.entries, rounds: 2, receiptsChecked: 4 });
    // the model chain: the run's initial model and both rounds' aggregates from the audit API; every
    // model the coordinator published is what the policy's step 5 makes of them
    const artifacts = path.join(env.dir, 'artifacts');
    expect(await fetchAuditArtifacts(http, token, exported.bytes, artifacts)).toEqual({ models: 1, aggregates: 2, serverViews: 2, fetched: 5 });
    const replayed = await verifyLogFile(logFile, policyFile, receiptDirs, artifacts);
    expect(replayed.failures).toEqual([]);
    expect(replayed.replay?.rounds.map((r) => [r.round, r.status, r.aggregateRecomputed])).toEqual([
      [1, 'replayed', true],
      [2, 'replayed', true],
    ]);
    expect(replayed.ok).toBe(true);
    const entries = exported.bytes.toString('utf8').trim().split('\n').map((l) => JSON.parse(l).entry);
    const types = entries.map((e) => e.type);
    expect(types.filter((t) => t === 'round-completed')).toHaveLength(2);
    expect(types.filter((t) => t === 'receipt')).toHaveLength(4);
    expect(types).toContain('run-completed');
    const mask2 = entries.find((e) => e.type === 'round-phase' && e.round === 2 && e.phase === 'mask');
    expect(mask2.parties).toEqual(['insurer', 'platform']); // the resent input, stored once
    const mask1 = entries.find((e) => e.type === 'round-phase' && e.round === 1 && e.phase === 'mask');
    expect(mask1.parties).toEqual(['insurer', 'platform']); // the leaver sent no masked input
    expect(mask1.maskedInputs.map((m: { party: string }) => m.party)).toEqual(['insurer', 'platform']);
    const done2 = entries.find((e) => e.type === 'round-completed' && e.round === 2);
    expect(Object.keys(done2.epsilon).sort()).toEqual(['insurer', 'platform']);
    // the logged epsilon is the nodes' own ledger value after the two rounds
    for (const p of ['platform', 'insurer']) expect(done2.epsilon[p]).toBeCloseTo(readLedger(dirs[p])!.entries[1].epsilonAfter, 9);
    // a node that lost its ledger can accept the spend recorded in the verified audit log (issue 4)
    const original = readLedger(dirs.insurer)!;
    fs.renameSync(path.join(dirs.insurer, 'privacy', 'ledger.json'), path.join(env.dir, 'insurer-ledger.bak'));
    expect(() => openLedger(dirs.insurer, { budget: 50, delta: policy.privacy.delta })).toThrow(/ledger .* is missing, but this node has taken part in rounds before/);
    const restored = restoreLedgerFromAudit(dirs.insurer, 'insurer', parsePolicyYaml(fs.readFileSync(policyFile, 'utf8')), res);
    expect(restored.rounds).toBe(2);
    expect(readLedger(dirs.insurer)!.entries.map((e) => [e.round, e.epsilonAfter])).toEqual(original.entries.map((e) => [e.round, expect.closeTo(e.epsilonAfter, 9)]));
    expect(() => restoreLedgerFromAudit(dirs.insurer, 'insurer', parsePolicyYaml(fs.readFileSync(policyFile, 'utf8')), res)).toThrow(/already has a privacy ledger/);

    // one byte changed anywhere fails verify at that entry
    const lines = exported.bytes.toString('utf8').split('\n');
    const k = types.indexOf('round-completed');
    const pos = lines.slice(0, k).reduce((n, l) => n + l.length + 1, 0) + Math.floor(lines[k].length / 2);
    const tampered = Buffer.from(exported.bytes);
    tampered[pos] = tampered[pos] === 0x30 ? 0x31 : 0x30;
    const bad = verifyLog(new Uint8Array(tampered), { policy: parsePolicyYaml(fs.readFileSync(policyFile, 'utf8')) });
    expect(bad.ok).toBe(false);
    expect(bad.failures[0].entry).toBe(k);

    // the CLI: audit export + audit verify (exit 0 on the real log, 1 on the tampered one)
    const cliLog = path.join(env.dir, 'cli-audit.jsonl');
    expect((await cli(['audit', 'export', '--coordinator', http, '--out', cliLog, '--token', token])).code).toBe(0);
    expect(fs.readFileSync(cliLog).equals(exported.bytes)).toBe(true);
    const v = await cli(['audit', 'verify', cliLog, '--policy', policyFile, ...receiptDirs.flatMap((d) => ['--receipts', d]), '--json']);
    expect(v.code).toBe(0);
    expect(JSON.parse(v.out)).toMatchObject({ ok: true, failures: [] });
    fs.writeFileSync(cliLog, tampered);
    expect((await cli(['audit', 'verify', cliLog, '--policy', policyFile])).code).toBe(1);

    // the audit API: operator token and no token refused; bad query 400; OpenAPI served
    expect((await httpGet(`${http}/audit/v1/log?from=0`, OPERATOR_TOKEN)).status).toBe(401);
    expect((await httpGet(`${http}/audit/v1/log?from=0`)).status).toBe(401);
    expect((await httpGet(`${http}/audit/v1/log?from=-1`, token)).status).toBe(400);
    expect((await httpGet(`${http}/audit/v1/log?from=${exported.entries}`, token)).body).toBe('');
    const head = await httpGet(`${http}/audit/v1/head`, token);
    expect(JSON.parse(head.body)).toEqual({ idx: exported.entries - 1, head: res.head });
    expect((await httpGet(`${http}/audit/openapi.yaml`)).body).toContain('/audit/v1/log');
    op.client.close();
  }, 240_000);
});

async function httpGet(url: string, token?: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: res.status, body: await res.text() };
}

function secretOf(dir: string): Uint8Array {
  return new Uint8Array(Buffer.from(fs.readFileSync(path.join(dir, 'identity.key'), 'utf8').trim(), 'base64'));
}
