/**
 * `npm run bench -- audit`: cost of the audit log, one core.
 * - writing: entries/s through AuditRecorder (validation, canonical JSON, chain hash, coordinator
 *   Ed25519 signature, epsilon of each charged party), for a 3-party run with full evidence;
 * - verifying: entries/s of verifyLog (bytes, chain, every coordinator and party signature,
 *   policy checks, epsilon recomputation, receipts) for runs of 20 and 200 rounds;
 * - size: bytes of exported log per round;
 * - replay (`audit verify --replay`), per completed round at a given model size: reading the server
 *   view (JSON, base64), recomputing the aggregate from it (recomputeAggregate: 3 parties, one dropped
 *   after sharing keys, so its pair masks are removed with its rebuilt key), and the next model
 *   (roundNextModel, FedAvg and FedAdam). The round itself is a real in-memory SecAgg round (not timed);
 * - the coordinator's start-up over a stored log of 150,000 entries: time, heap kept, records held.
 * Medians of 5 repetitions after a warm-up; wall-clock and CPU-seconds both recorded.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import Database from 'better-sqlite3';
import { median, type BenchContext } from './lib';
import { CoordinatorAudit } from '../coordinator/audit/log';
import { migrate } from '../coordinator/storage/migrations';
import { Repository } from '../coordinator/storage/repository';
import { SqliteDriver } from '../coordinator/storage/sql';
import { AUDIT_GENESIS, auditChainHash } from '../shared/audit/chain';
import { sodiumReady, sodium } from '../shared/crypto/sodium';
import { ed25519Keygen, ed25519Sign } from '../shared/crypto/sign';
import { defaultPolicy } from '../shared/policy/defaults';
import { policyHash, validatePolicy } from '../shared/policy/schema';
import { signPolicyHash } from '../shared/policy/sign';
import { AuditRecorder, AuditWriter, advertiseKeysBytes, encodedLength, maskedInputBytes, signReceipt, survivorListBytes, verifyLog, PHASES } from '../shared/audit';
import { decodeServerView, encodeServerView } from '../shared/audit/server-view';
import { roundNextModel, roundSecAggInfo } from '../shared/fl/round-params';
import { newServerState } from '../shared/fl/server';
import { layoutSize, sharedParameterLayout } from '../shared/model/layout';
import type { AdvertiseKeys, ClientMessage } from '../shared/secagg/messages';
import { SecAggClient } from '../shared/secagg/client';
import { SecAggServer } from '../shared/secagg/server';
import { recomputeAggregate } from '../shared/secagg/unmask';
import type { Policy } from '../shared/policy/schema';

function timeBoth(fn: () => void): { wall: number; cpu: number } {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1e6 };
}

function makeRun(rounds: number) {
  const so = sodium();
  const b64 = (b: Uint8Array) => so.to_base64(b, so.base64_variants.ORIGINAL);
  const names = ['platform', 'insurer', 'insurer2'];
  const coord = ed25519Keygen();
  const keys = new Map(names.map((n) => [n, ed25519Keygen()]));
  const base = JSON.parse(JSON.stringify(defaultPolicy({ federationId: 'bench', coordinator: { name: 'coordinator', publicKey: b64(coord.publicKey) }, parties: names.map((n) => ({ name: n, publicKey: b64(keys.get(n)!.publicKey) })), catalogue: { hash: 'ab'.repeat(32), numItems: 1000 } })));
  base.training.rounds = rounds;
  const policy = validatePolicy(base);
  const hash = policyHash(policy);
  return () => {
    let now = 1_767_000_000_000;
    const rec = new AuditRecorder(policy, new AuditWriter(coord.secretKey), () => (now += 1000));
    const sk = (p: string) => keys.get(p)!.secretKey;
    rec.registerPolicy(names.map((p) => ({ party: p, publicKey: b64(keys.get(p)!.publicKey), signature: b64(signPolicyHash(hash, sk(p))) })));
    rec.startRun('run', 1, 'cd'.repeat(32));
    const len = encodedLength(rec.params);
    for (let r = 1; r <= rounds; r++) {
      rec.startRound({ runId: 'run', round: r, secaggRound: r, baseModelVersion: r, parties: names });
      for (const ph of PHASES) {
        if (ph === 'advertise') {
          rec.phase(ph, names, { advertisements: names.map((p) => { const k = so.randombytes_buf(32); return { party: p, cPk: b64(k), sPk: b64(k), selfMaskCommitment: so.to_hex(k), signature: b64(ed25519Sign(advertiseKeysBytes('bench', 'run', r, p, k, k, k), sk(p))) }; }) });
        } else if (ph === 'mask') {
          rec.phase(ph, names, { maskedInputs: names.map((p) => { const d = so.randombytes_buf(32); return { party: p, bits: rec.params.bits, length: len, digest: so.to_hex(d), signature: b64(ed25519Sign(maskedInputBytes('bench', 'run', r, p, rec.params.bits, len, d), sk(p))) }; }) });
        } else if (ph === 'consistency') {
          const sv = [...names].sort();
          rec.phase(ph, names, { survivors: sv, survivorSignatures: names.map((p) => ({ party: p, signature: b64(ed25519Sign(survivorListBytes('bench', 'run', r, p, sv), sk(p))) })) });
        } else rec.phase(ph, names);
      }
      const modelHash = so.to_hex(so.randombytes_buf(32));
      rec.completeRound({ survivors: [...names].sort(), aggregateHash: 'ef'.repeat(32), modelVersion: r + 1, modelHash });
      if (r === rounds) rec.completeRun('run', r + 1);
      const head = rec.writer.head();
      for (const p of names) rec.receipt(signReceipt({ federationId: 'bench', policyHash: hash, runId: 'run', round: r, party: p, headIdx: head.idx, head: head.hash, modelHash }, sk(p)));
    }
    return { policy, text: rec.writer.exportText(), entries: rec.writer.written().length };
  };
}

export async function run(ctx: BenchContext): Promise<void> {
  await sodiumReady();
  for (const rounds of [20, 200]) {
    const gen = makeRun(rounds);
    const first = gen(); // warm-up
    const bytes = new TextEncoder().encode(first.text);
    const check = verifyLog(bytes, { policy: first.policy });
    if (!check.ok) throw new Error(`benchmark log does not verify: ${JSON.stringify(check.failures[0])}`);
    const writes: { wall: number; cpu: number }[] = [];
    const verifies: { wall: number; cpu: number }[] = [];
    for (let rep = 0; rep < 5; rep++) {
      writes.push(timeBoth(() => gen()));
      verifies.push(timeBoth(() => verifyLog(bytes, { policy: first.policy })));
    }
    const params = { parties: 3, rounds, entries: first.entries, evidence: 'signed advertisements, masked-input digests, survivor signatures, receipts' };
    // writing includes the parties' signatures the fixture makes (about 3 per party per round), as a real round would on the parties' side
    ctx.record('write_entries_per_s', first.entries / median(writes.map((w) => w.wall)), 'entries/s', { ...params, clock: 'wall', includesPartySignatures: true });
    ctx.record('verify_entries_per_s', first.entries / median(verifies.map((w) => w.wall)), 'entries/s', { ...params, clock: 'wall' });
    ctx.record('verify_entries_per_cpu_s', first.entries / median(verifies.map((w) => w.cpu)), 'entries/s', { ...params, clock: 'cpu' });
    ctx.record('log_bytes_per_round', bytes.length / rounds, 'bytes', params);
  }
  // the default policy's model at 1,000 items, at 6,000 (about the demo's 206,448 parameters) and 20,000
  for (const numItems of [1000, 6000, 20000]) await replayFigures(ctx, numItems);
  await coordinatorOpenFigures(ctx, 150_000);
}

/**
 * A coordinator starting over a stored log of `n` entries (SQLite file; token entries, dummy
 * signatures: opening recomputes the chain, it does not check signatures): CoordinatorAudit.open
 * plus the first recorderFor (what start-up does), and the heap it keeps afterwards (garbage
 * collected before and after; the audit object alive). Median of 3.
 */
async function coordinatorOpenFigures(ctx: BenchContext, n: number): Promise<void> {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-bench-audit-'));
  try {
    const file = path.join(dir, 'coordinator.sqlite');
    const db = SqliteDriver.open(file);
    await migrate(db);
    const bulk = new Database(file);
    const ins = bulk.prepare('INSERT INTO audit_log (idx, prev_hash, entry, signature, created_at) VALUES (?, ?, ?, ?, 1)');
    const sig = Buffer.alloc(64);
    let prev: Uint8Array = AUDIT_GENESIS;
    bulk.transaction(() => {
      for (let i = 0; i < n; i++) {
        const entry = Buffer.from(`{"at":1,"idx":${i},"label":"a","role":"auditor","tokenId":"t${i}","type":"token-issued"}`);
        ins.run(i, Buffer.from(prev), entry, sig);
        prev = auditChainHash(i, prev, entry);
      }
    })();
    bulk.close();
    const repo = new Repository(db);
    const policy = makeRun(1)().policy;
    const times: number[] = [];
    const heaps: number[] = [];
    let held = 0;
    for (let rep = 0; rep < 3; rep++) {
      gc();
      const h0 = process.memoryUsage().heapUsed;
      const t0 = process.hrtime.bigint();
      const audit = await CoordinatorAudit.open(repo, ed25519Keygen().secretKey);
      audit.recorderFor(policy);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      gc();
      heaps.push((process.memoryUsage().heapUsed - h0) / 2 ** 20);
      held = audit.heldRecords();
      if (audit.head().idx !== n - 1) throw new Error('bench log did not open to its last entry');
    }
    const params = { entries: n, store: 'sqlite', entryBytes: 90 };
    ctx.record('coordinator_open_ms', median(times), 'ms', params);
    ctx.record('coordinator_open_heap_mb', median(heaps), 'MiB', { ...params, note: 'heap kept after start-up, garbage collected' });
    ctx.record('coordinator_open_held_records', held, 'records', params);
    await db.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A real 3-party SecAgg round of `policy` in memory, insurer2 dropping after sharing keys; its done step and the advertisements. */
function viewRound(policy: Policy, coord: { publicKey: Uint8Array; secretKey: Uint8Array }, keys: Map<string, { publicKey: Uint8Array; secretKey: Uint8Array }>) {
  const names = policy.parties.map((p) => p.name);
  const d = layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
  const info = roundSecAggInfo(policy, 'run', 1);
  const server = new SecAggServer({ ...info, identity: { secretKey: coord.secretKey }, keepServerView: true });
  const clients = new Map(names.map((n) => [n, new SecAggClient({ ...info, identity: { partyId: n, secretKey: keys.get(n)!.secretKey }, coordinatorPublicKey: coord.publicKey })]));
  const ads = names.map((n) => clients.get(n)!.start());
  for (const m of ads) server.receive(m);
  let step = server.deadlinePassed();
  const input = new Uint32Array(info.vectorLength).map((_, i) => (i * 2654435761) >>> 0);
  while (step.kind === 'send') {
    const phase = step.phase;
    for (const { to, message } of step.messages) {
      if (to === 'insurer2' && phase !== 'share') continue; // insurer2 drops before its masked input
      server.receive(clients.get(to)!.handle(message, phase === 'mask' ? input : undefined) as ClientMessage);
    }
    step = server.deadlinePassed();
  }
  if (step.kind !== 'done') throw new Error(`bench round did not complete: ${step.kind === 'aborted' ? step.reason : 'still sending'}`);
  const sets = server.survivorsByPhase;
  return { d, info, step, U2: [...sets.U2!], U3: [...sets.U3!], ads: new Map((ads as AdvertiseKeys[]).map((m) => [m.sender, { sPk: m.sPk, selfMaskCommitment: m.selfMaskCommitment }])), ctx: server.ctx };
}

/** Per-round replay cost at a model of about `numItems` items. */
export async function replayFigures(ctx: BenchContext, numItems: number): Promise<void> {
  const so = sodium();
  const b64 = (b: Uint8Array) => so.to_base64(b, so.base64_variants.ORIGINAL);
  const names = ['platform', 'insurer', 'insurer2'];
  const coord = ed25519Keygen();
  const keys = new Map(names.map((n) => [n, ed25519Keygen()]));
  const base = JSON.parse(JSON.stringify(defaultPolicy({ federationId: 'bench', coordinator: { name: 'coordinator', publicKey: b64(coord.publicKey) }, parties: names.map((n) => ({ name: n, publicKey: b64(keys.get(n)!.publicKey) })), catalogue: { hash: 'ab'.repeat(32), numItems } })));
  base.secagg.threshold = 2;
  const policy = validatePolicy(base);
  const r = viewRound(policy, coord, keys);
  const view = encodeServerView(r.step.view!);
  const reads: number[] = [];
  const recomputes: number[] = [];
  const models: Record<'fedavg' | 'fedadam', number[]> = { fedavg: [], fedadam: [] };
  const global = new Float32Array(r.d).map((_, i) => ((i % 17) - 8) / 100);
  for (let rep = 0; rep < 6; rep++) {
    let decoded!: ReturnType<typeof decodeServerView>;
    reads.push(timeBoth(() => (decoded = decodeServerView(view))).wall);
    if (!decoded.ok) throw new Error(decoded.problem);
    const dv = decoded.view;
    let got!: ReturnType<typeof recomputeAggregate>;
    recomputes.push(timeBoth(() => (got = recomputeAggregate(r.ctx, r.U2, r.U3, r.ads, dv))).wall);
    if (!got.ok || got.sum.some((w, i) => w !== r.step.sum[i])) throw new Error('the recomputed aggregate differs from the server sum');
    for (const type of ['fedavg', 'fedadam'] as const) {
      const p = { ...policy, training: { ...policy.training, serverOptimizer: type === 'fedavg' ? { type, learningRate: 1 } : { type, learningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 } } } as Policy;
      models[type].push(timeBoth(() => roundNextModel(p, 'run', 1, global, r.step.sum, r.U3, newServerState())).wall);
    }
  }
  const params = { parties: 3, survivors: r.U3.length, droppedWithKey: 1, dimension: r.d, encodedDimension: r.info.vectorLength, viewBytes: view.length, reps: 5, clock: 'wall' };
  const ms = (xs: number[]) => median(xs.slice(1)) * 1e3; // first repetition is the warm-up
  ctx.record('replay_read_view_ms', ms(reads), 'ms', params);
  ctx.record('replay_recompute_aggregate_ms', ms(recomputes), 'ms', params);
  ctx.record('replay_next_model_fedavg_ms', ms(models.fedavg), 'ms', params);
  ctx.record('replay_next_model_fedadam_ms', ms(models.fedadam), 'ms', params);
  ctx.record('server_view_bytes_per_round', view.length, 'bytes', params);
}
