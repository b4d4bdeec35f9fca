/**
 * Durable privacy charges across a coordinator restart (README "Known gaps"): a masked input is
 * acknowledged only after its audit evidence is stored (round_masked_inputs, in the transaction
 * that hands it to the protocol), and a coordinator restarted inside the mask phase logs the stored
 * inputs as the round's `mask` round-phase entry, so exactly those parties are charged, before
 * round-aborted. Real secure-aggregation rounds over gRPC with MiniNodes whose replies are held
 * and released by the test; a real SQLite file, and PostgreSQL when a URL is configured (as
 * storage.test.ts: helpers/db.ts, required in CI). The repository's part is checked on both too.
 */
import { EventKind, Phase } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { encodedDimension } from '../../shared/dp/encode';
import type { Policy } from '../../shared/policy/schema';
import { verifyLog } from '../../shared/audit/verify';
import { exportLine } from '../../shared/audit/chain';
import { maskedInputEvidence } from '../../shared/audit/evidence';
import { decodeClientMessage } from '../../shared/secagg/wire';
import { sodiumReady } from '../../shared/crypto/sodium';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { composeEpsilon } from '../../participant-node/privacy/ledger';
import { roundCharge } from '../../participant-node/privacy/round';
import { coordinatorSealer, verifyAuditChain } from '../../coordinator/audit/log';
import type { RunningCoordinator } from '../../coordinator/main';
import { closedFromStored } from '../../coordinator/rounds/rounds.service';
import { migrate } from '../../coordinator/storage/migrations';
import { ConflictError, Repository } from '../../coordinator/storage/repository';
import { enrol, grpc, grpcError, makeEnv, ManualTimers, modelDim, operator, policyYaml, signaturesFor, startCoordinator, startRun, testPolicy, TestParty, unary, type Env } from './helpers/harness';
import { MiniNode } from './helpers/mini-node';
import { backends, PG_URL, pgSchemaUrl, requirePgInCi } from './helpers/db';

const PARTIES = ['platform', 'insurer', 'insurer2'];
const MASK = Phase.PHASE_MASKED_INPUT;
const CONSISTENCY = Phase.PHASE_CONSISTENCY_CHECK;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Entry = Record<string, any>;

beforeAll(async () => {
  await sodiumReady();
});

test('CI runs these tests on PostgreSQL for real (URL present when CI=true)', () => {
  expect(() => requirePgInCi()).not.toThrow();
});

interface Fed {
  env: Env;
  coord: RunningCoordinator;
  parties: TestParty[];
  nodes: MiniNode[];
  policy: Policy;
  dim: number;
  cleanup: () => Promise<void>;
}

function miniNodes(parties: TestParty[], policy: Policy, coord: RunningCoordinator): MiniNode[] {
  const length = encodedDimension(modelDim(policy), policy.secagg.rotation === 'hadamard');
  return parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, length));
}

/** A coordinator (secure aggregation) with three enrolled parties and a 1-round policy, t = 2. */
async function federation(backend: 'sqlite' | 'postgres'): Promise<Fed> {
  const pg = backend === 'postgres' ? await pgSchemaUrl(PG_URL, 'charges') : null;
  const env = await makeEnv(PARTIES, pg ? { databaseUrl: pg.url } : {});
  const coord = await startCoordinator(env, undefined as never, new ManualTimers());
  const parties = PARTIES.map((n) => new TestParty(n, env, coord.grpcPort));
  const op = operator(env, coord.grpcPort);
  await enrol(env, op, parties);
  op.client.close();
  const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
  policy.secagg.threshold = 2;
  const f: Fed = { env, coord, parties, nodes: [], policy, dim: modelDim(policy), cleanup: async () => undefined };
  f.nodes = miniNodes(parties, policy, coord);
  f.cleanup = async () => {
    for (const n of f.nodes) n.stream.cancel();
    for (const p of f.parties) p.close();
    await f.coord.close();
    await pg?.drop();
  };
  return f;
}

async function begin(f: Fed): Promise<string> {
  const op = operator(f.env, f.coord.grpcPort);
  try {
    const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(f.policy), signatures: signaturesFor(f.policy, f.parties) }, new Uint8Array(new Float32Array(f.dim).fill(0.01).buffer));
    return st.runId;
  } finally {
    op.client.close();
  }
}

/**
 * Runs `body` on a fresh federation whose nodes hold their round-1 reply to `hold` (computed, not
 * sent); the run is started and every held reply computed before `body` runs.
 */
async function withRound(backend: 'sqlite' | 'postgres', hold: Phase, body: (f: Fed, runId: string, held: Uint8Array[]) => Promise<void>): Promise<void> {
  const f = await federation(backend);
  try {
    for (const n of f.nodes) n.holdAt = { round: 1, phase: hold };
    const runId = await begin(f);
    const held = await Promise.all(f.nodes.map((n) => n.heldReply(1, hold)));
    await body(f, runId, held);
  } finally {
    await f.cleanup();
  }
}

/** The coordinator process goes away (its in-memory round state with it); a fresh one starts on the same store; the nodes reconnect. */
async function restart(f: Fed): Promise<void> {
  for (const n of f.nodes) n.stream.cancel();
  for (const p of f.parties) p.close();
  await f.coord.close();
  f.coord = await startCoordinator(f.env, undefined as never, new ManualTimers());
  f.parties = f.parties.map((p) => new TestParty(p.name, f.env, f.coord.grpcPort, { keys: p.keys }));
  f.nodes = miniNodes(f.parties, f.policy, f.coord);
}

/** The stored log, exported exactly as the audit API serves it, and its entries. */
async function logOf(coord: RunningCoordinator): Promise<{ bytes: Uint8Array; entries: Entry[] }> {
  const rows = await coord.ctx.repo.auditEntries();
  expect(verifyAuditChain(rows, coord.publicKey).failures).toEqual([]);
  const text = rows.map((r) => exportLine(r)).join('');
  return { bytes: new TextEncoder().encode(text), entries: rows.map((r) => JSON.parse(Buffer.from(r.entry).toString('utf8')) as Entry) };
}

/** The masked-input evidence of a reply's bytes, computed independently of the coordinator. */
function evidenceOf(bytes: Uint8Array) {
  const m = decodeClientMessage(bytes);
  if (m.type !== 'masked-input') throw new Error(`held reply is a ${m.type} message`);
  return maskedInputEvidence(m);
}

/** What a node's own ledger holds after the given charged rounds (participant-node/privacy). */
function nodeEpsilon(f: Fed, runId: string, rounds: number[]): number {
  return composeEpsilon(rounds.map((r) => roundCharge(f.policy, runId, r, f.dim)), f.policy.privacy.delta).epsilon;
}

function expectEpsilon(logged: Record<string, number>, want: Record<string, number>): void {
  expect(Object.keys(logged).sort()).toEqual(Object.keys(want).sort());
  for (const [p, v] of Object.entries(want)) {
    expect(v).toBeGreaterThan(0);
    expect([p, Math.abs(logged[p] - v) <= 1e-9 * Math.max(1, v)]).toEqual([p, true]);
  }
}

const ofRound = (entries: Entry[], runId: string, round: number) => entries.filter((e) => e.runId === runId && e.round === round);
const shape = (es: Entry[]) => es.map((e) => `${e.type}${e.phase ? `/${e.phase}` : ''}`);

for (const backend of PG_URL ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const)) {
  describe(`privacy charges across a coordinator restart (${backend})`, () => {
    test('restart with 2 of 3 masked inputs accepted (the third one refused by storage): exactly those 2 are logged and charged, the log verifies, the retried round completes', () =>
      withRound(backend, MASK, async (f, runId, held) => {
        await f.nodes[0].release(1, MASK, runId); // platform: acknowledged
        await f.nodes[1].release(1, MASK, runId); // insurer: acknowledged
        const repo = f.coord.ctx.repo;
        const expected = [evidenceOf(held[1]), evidenceOf(held[0])]; // sorted by party: insurer, platform
        expect((await repo.maskedInputs(runId, 1)).map((r) => [r.party, r.evidence])).toEqual([['insurer', expected[0]], ['platform', expected[1]]]);
        // no audit entry holds them yet: this is what a restart used to lose
        expect(shape(ofRound((await logOf(f.coord)).entries, runId, 1))).toEqual(['round-started', 'round-phase/advertise', 'round-phase/share']);

        // the third input's insert fails: refused with UNAVAILABLE, nothing stored or logged
        const counts = await repo.snapshotCounts();
        await repo.db.query('ALTER TABLE round_masked_inputs RENAME TO round_masked_inputs_away');
        const err = await grpcError(f.nodes[2].release(1, MASK, runId));
        await repo.db.query('ALTER TABLE round_masked_inputs_away RENAME TO round_masked_inputs');
        expect(err.code).toBe(grpc.status.UNAVAILABLE);
        expect(err.details).toBe('the coordinator could not store the masked input of "insurer2" for round 1; it was not accepted and nothing changed: send it again');
        expect(await repo.snapshotCounts()).toEqual(counts);
        expect(f.coord.ctx.rounds.binding()).toMatchObject({ runId, round: 1, phase: 'mask' });

        await restart(f);
        const log = await logOf(f.coord);
        const res = verifyLog(log.bytes, { policy: f.policy });
        expect(res.failures).toEqual([]);
        expect(res.ok).toBe(true);
        const r1 = ofRound(log.entries, runId, 1);
        expect(shape(r1)).toEqual(['round-started', 'round-phase/advertise', 'round-phase/share', 'round-phase/mask', 'round-aborted/mask']);
        const [mask, aborted] = r1.slice(3);
        expect(aborted.idx).toBe(mask.idx + 1); // the mask entry is followed directly by round-aborted
        expect(mask.parties).toEqual(['insurer', 'platform']);
        expect(mask.maskedInputs).toEqual(expected);
        expect(aborted.reason).toMatch(/^coordinator restarted during round 1 \(phase mask\)/);
        const one = nodeEpsilon(f, runId, [1]);
        expectEpsilon(aborted.epsilon, { insurer: one, platform: one });
        const t1 = res.timeline.find((r) => r.runId === runId && r.round === 1)!;
        expect(t1.status).toBe('aborted');
        expect(t1.phases.mask).toEqual(['insurer', 'platform']);
        expectEpsilon(t1.epsilon, { insurer: one, platform: one });
        expect(await f.coord.ctx.repo.maskedInputs(runId, 1)).toEqual([]); // deleted with the abort that logged them

        // the retry (round 2, same base model) completes with every party
        await f.nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 2);
        await f.nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
        const log2 = await logOf(f.coord);
        const res2 = verifyLog(log2.bytes, { policy: f.policy });
        expect(res2.failures).toEqual([]);
        expect(res2.runs.map((r) => [r.runId, r.status])).toEqual([[runId, 'completed']]);
        const completed = ofRound(log2.entries, runId, 2).find((e) => e.type === 'round-completed')!;
        const two = nodeEpsilon(f, runId, [1, 2]);
        expectEpsilon(completed.epsilon, { insurer: two, platform: two, insurer2: one });
        expect(await f.coord.ctx.repo.snapshotCounts()).toMatchObject({ round_masked_inputs: 0 });
      }), 120_000);

    test('a masked input whose insert failed changed nothing: the same bytes sent again are accepted once, and the round completes', () =>
      withRound(backend, MASK, async (f, runId, held) => {
        await f.nodes[0].release(1, MASK, runId);
        const repo = f.coord.ctx.repo;
        const counts = await repo.snapshotCounts();
        await repo.db.query('ALTER TABLE round_masked_inputs RENAME TO round_masked_inputs_away');
        expect((await grpcError(f.nodes[1].release(1, MASK, runId))).code).toBe(grpc.status.UNAVAILABLE);
        await repo.db.query('ALTER TABLE round_masked_inputs_away RENAME TO round_masked_inputs');
        expect(await repo.snapshotCounts()).toEqual(counts);
        // the protocol never saw it: the same message is not a duplicate
        await f.nodes[1].release(1, MASK, runId);
        expect((await repo.maskedInputs(runId, 1)).map((r) => r.party)).toEqual(['insurer', 'platform']);
        // a second copy (an acknowledgement lost) gets the same acknowledgement and stores no second row (issue #5)
        expect(await f.nodes[1].release(1, MASK, runId)).toEqual({ runId, round: 1, receivedBytes: String(held[1].length) });
        expect((await repo.maskedInputs(runId, 1)).map((r) => r.party)).toEqual(['insurer', 'platform']);
        await f.nodes[2].release(1, MASK, runId);
        await f.nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
        const log = await logOf(f.coord);
        expect(verifyLog(log.bytes, { policy: f.policy }).failures).toEqual([]);
        const r1 = ofRound(log.entries, runId, 1);
        const mask = r1.find((e) => e.phase === 'mask')!;
        expect(mask.maskedInputs).toEqual([evidenceOf(held[1]), evidenceOf(held[2]), evidenceOf(held[0])]);
        const one = nodeEpsilon(f, runId, [1]);
        expectEpsilon(r1.find((e) => e.type === 'round-completed')!.epsilon, { insurer: one, insurer2: one, platform: one });
        expect(await repo.maskedInputs(runId, 1)).toEqual([]);
      }), 120_000);

    test('restart after the mask phase closed: its entry was written with the phase move, no second one; round-aborted charges all three', () =>
      withRound(backend, CONSISTENCY, async (f, runId) => {
        // every masked input went and the phase moved on (the nodes hold their consistency replies)
        expect(await f.coord.ctx.repo.maskedInputs(runId, 1)).toEqual([]); // deleted in the phase move's transaction
        await restart(f);
        const log = await logOf(f.coord);
        expect(verifyLog(log.bytes, { policy: f.policy }).failures).toEqual([]);
        const r1 = ofRound(log.entries, runId, 1);
        expect(shape(r1)).toEqual(['round-started', 'round-phase/advertise', 'round-phase/share', 'round-phase/mask', 'round-aborted/consistency']);
        const one = nodeEpsilon(f, runId, [1]);
        expectEpsilon(r1[4].epsilon, { insurer: one, insurer2: one, platform: one });
      }), 120_000);

    test('damaged stored evidence: the restarted coordinator still starts and charges the party; the verifier names the entry', () =>
      withRound(backend, MASK, async (f, runId, held) => {
        await f.nodes[0].release(1, MASK, runId);
        await f.nodes[1].release(1, MASK, runId);
        await f.coord.ctx.repo.db.query("UPDATE round_masked_inputs SET evidence = ? WHERE party = 'insurer'", ['{"party":"insurer","digest":"not hex"']); // not even JSON
        await restart(f);
        const log = await logOf(f.coord);
        const r1 = ofRound(log.entries, runId, 1);
        expect(shape(r1)).toEqual(['round-started', 'round-phase/advertise', 'round-phase/share', 'round-phase/mask', 'round-aborted/mask']);
        expect(r1[3].parties).toEqual(['insurer', 'platform']);
        expect(r1[3].maskedInputs).toEqual([evidenceOf(held[0])]);
        const one = nodeEpsilon(f, runId, [1]);
        expectEpsilon(r1[4].epsilon, { insurer: one, platform: one });
        const res = verifyLog(log.bytes, { policy: f.policy });
        expect(res.failures.map((x) => [x.entry, x.field])).toEqual([[r1[3].idx, 'entry.maskedInputs']]);
      }), 120_000);

    test('a commit that fails after the protocol absorbed the input aborts the round at once, charging that party; the retry completes', () =>
      withRound(backend, MASK, async (f, runId) => {
        await f.nodes[0].release(1, MASK, runId);
        const db = f.coord.ctx.repo.db;
        const real = db.transaction.bind(db);
        // the next transaction (the insurer's masked input) runs fully, then its commit fails
        const spy = jest.spyOn(db, 'transaction').mockImplementationOnce(((fn: Parameters<typeof real>[0]) =>
          real(async (tx) => {
            await fn(tx);
            throw new Error('disk I/O error (simulated at commit)');
          })) as never);
        const err = await grpcError(f.nodes[1].release(1, MASK, runId));
        spy.mockRestore();
        expect(err.code).toBe(grpc.status.UNAVAILABLE);
        expect(err.details).toMatch(/the round was aborted/);
        await f.nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
        const log = await logOf(f.coord);
        expect(verifyLog(log.bytes, { policy: f.policy }).failures).toEqual([]);
        const r1 = ofRound(log.entries, runId, 1);
        expect(shape(r1)).toEqual(['round-started', 'round-phase/advertise', 'round-phase/share', 'round-phase/mask', 'round-aborted/mask']);
        expect(r1[3].parties).toEqual(['insurer', 'platform']);
        const one = nodeEpsilon(f, runId, [1]);
        expectEpsilon(r1[4].epsilon, { insurer: one, platform: one });
        const done = ofRound(log.entries, runId, 2).find((e) => e.type === 'round-completed')!;
        const two = nodeEpsilon(f, runId, [1, 2]);
        expectEpsilon(done.epsilon, { insurer: two, platform: two, insurer2: one });
      }), 120_000);
  });
}

for (const backend of backends()) {
  describe(`stored masked inputs (repository, ${backend.name})`, () => {
    afterAll(() => backend.cleanup());

    test('stored with the acceptance in one transaction; one per party; only while the round is in phase mask; deleted when the phase entry is written', async () => {
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db, () => 1000);
        const sealer = coordinatorSealer(ed25519Keygen().secretKey);
        const h = new Uint8Array(32);
        await repo.startRun({ runId: 'r', policyHash: 'ab'.repeat(32), canonicalPolicyJson: '{}', signatures: [], roundsPlanned: 3, initialModel: { bytes: new Uint8Array(4), hash: h }, firstRound: { state: 'open', phase: 'share', phaseDeadline: null }, sealer });
        const ev = (party: string) => ({ party, bits: 32, length: 8, digest: 'cd'.repeat(32), signature: `${'A'.repeat(86)}==` });
        // not in phase mask: refused, accept never runs
        let ran = 0;
        await expect(repo.storeMaskedInput({ runId: 'r', round: 1, party: 'a', evidence: ev('a') }, () => ++ran)).rejects.toThrow(ConflictError);
        await repo.setRoundPhase('r', 1, { state: 'open', phase: 'share' }, { state: 'open', phase: 'mask', phaseDeadline: null });
        expect(await repo.storeMaskedInput({ runId: 'r', round: 1, party: 'b', evidence: ev('b') }, () => ++ran)).toBe(1);
        expect(await repo.storeMaskedInput({ runId: 'r', round: 1, party: 'a', evidence: null }, () => ++ran)).toBe(2);
        // a second input of a party: ConflictError, accept not run, one row
        await expect(repo.storeMaskedInput({ runId: 'r', round: 1, party: 'b', evidence: ev('b') }, () => ++ran)).rejects.toThrow(/already sent its masked input/);
        // the protocol refusing it: its error, the row rolled back
        await expect(repo.storeMaskedInput({ runId: 'r', round: 1, party: 'c', evidence: ev('c') }, () => {
          throw new RangeError('bad signature');
        })).rejects.toThrow('bad signature');
        expect(ran).toBe(2);
        const rows = await repo.maskedInputs('r', 1);
        expect(rows.map((r) => [r.party, r.evidence, r.receivedAt])).toEqual([['a', null, 1000], ['b', ev('b'), 1000]]);
        expect(closedFromStored(rows)).toEqual({ phase: 'mask', parties: ['a', 'b'], evidence: { maskedInputs: [ev('b')] }, invalid: [] });
        expect(closedFromStored([])).toBeUndefined();
        // damaged stored evidence (wrong party, bad digest): left out and named, the party still listed (charged)
        const damaged = [{ ...rows[1], evidence: ev('z') }, { ...rows[1], party: 'c', evidence: { ...ev('c'), digest: 'xyz' } }, { ...rows[1], party: 'd', evidence: ev('d') }];
        expect(closedFromStored(damaged)).toEqual({ phase: 'mask', parties: ['b', 'c', 'd'], evidence: { maskedInputs: [ev('d')] }, invalid: ['b', 'c'] });
        // the phase move off mask (which writes the mask entry) deletes them in its transaction
        await repo.setRoundPhase('r', 1, { state: 'open', phase: 'mask' }, { state: 'open', phase: 'consistency', phaseDeadline: null });
        expect(await repo.maskedInputs('r', 1)).toEqual([]);
        await expect(repo.storeMaskedInput({ runId: 'r', round: 1, party: 'c', evidence: ev('c') }, () => ++ran)).rejects.toThrow(/not collecting masked inputs/);
        // an abort deletes them too (retry: round 2)
        await repo.abortRound({ runId: 'r', round: 1, reason: 'x', retry: { state: 'open', phase: 'mask', phaseDeadline: null }, abortRun: false, sealer });
        await repo.storeMaskedInput({ runId: 'r', round: 2, party: 'a', evidence: ev('a') }, () => 0);
        const before = await repo.snapshotCounts();
        expect(before.round_masked_inputs).toBe(1);
        await repo.abortRound({ runId: 'r', round: 2, reason: 'y', retry: null, abortRun: true, sealer });
        expect(await repo.maskedInputs('r', 2)).toEqual([]);
      } finally {
        await db.close();
      }
    });
  });
}
