/**
 * CoordinatorAudit keeps its memory bounded however long the log grows (README "Known gaps"): over
 * a log of thousands of entries (token batches between and inside rounds, rounds of two runs under
 * two policies, written through the repository exactly as the coordinator writes them) it holds no
 * record between rounds and at most the open round's entries inside one; a coordinator reopened
 * with a round open streams the stored log, holds that round's entries and completes it with the
 * right Merkle root; a later run under another policy logs the lifetime epsilon a replay of the
 * whole log gives (composed from each round's logged parameters); SubmitReceipt for an old round
 * (its entries long forgotten) checks the chain hash from storage and refuses a duplicate with the
 * same status and message as before. The whole log verifies (verifyLog: chain, Merkle roots,
 * epsilon, receipts). SQLite, and PostgreSQL when a URL is configured.
 */
import { status } from '@grpc/grpc-js';
import { sodium, sodiumReady } from '../../shared/crypto/sodium';
import { newHeader } from '../../shared/proto/envelope';
import { exportLine } from '../../shared/audit/chain';
import { composeEpsilon, encodedLength, expectedRoundParams } from '../../shared/audit/accounting';
import { advertiseKeysBytes, maskedInputBytes, survivorListBytes } from '../../shared/audit/secagg-sigs';
import { ed25519Sign } from '../../shared/crypto/sign';
import { AuditRecorder } from '../../shared/audit/recorder';
import { signReceipt } from '../../shared/audit/receipt';
import { verifyLog } from '../../shared/audit/verify';
import { PHASES, type Phase } from '../../shared/audit/entries';
import { canonicalPolicyJson, policyHash, validatePolicy, type Policy } from '../../shared/policy/schema';
import { signPolicyHash } from '../../shared/policy/sign';
import { receiptBodyFields } from '../../participant-node/federation/receipt';
import { CoordinatorAudit, verifyAuditChain } from '../../coordinator/audit/log';
import { acceptReceipt } from '../../coordinator/audit/receipts';
import { migrate } from '../../coordinator/storage/migrations';
import { modelBytesHash, Repository } from '../../coordinator/storage/repository';
import { makeFederation, type Federation } from '../shared/audit/fixture';
import { backends } from './helpers/db';

const PARTIES = ['insurer', 'platform'];
const ROUNDS = 6; // per run under the first policy
const BATCH = 100; // token entries per write
const INSIDE = 40; // token entries appended while a round is open
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
type Entry = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

beforeAll(async () => {
  await sodiumReady();
});

/** The coordinator's writes, through the repository and one CoordinatorAudit (swappable: a restart). */
class Coordinator {
  maxHeld = 0;
  private tokens = 0;
  private model = 0;
  constructor(
    readonly repo: Repository,
    public audit: CoordinatorAudit,
    readonly fed: Federation,
  ) {}

  private async write<T>(fn: () => Promise<T>): Promise<T> {
    const out = await this.audit.write(fn);
    this.maxHeld = Math.max(this.maxHeld, this.audit.heldRecords());
    return out;
  }

  tokenBatch(n = BATCH): Promise<void> {
    return this.write(() => this.repo.appendAuditRecords({ emit: () => Array.from({ length: n }, () => this.audit.append({ type: 'token-issued', tokenId: `t${this.tokens++}`, role: 'auditor', label: 'bulk' })) }));
  }

  async enrol(): Promise<void> {
    for (const name of PARTIES) {
      const publicKey = this.fed.parties.get(name)!.publicKey;
      await this.write(() => this.repo.enrollParticipant({ name, publicKey }, { emit: (row) => [this.audit.append({ type: 'participant-enrolled', name: row.name, publicKey: b64(row.publicKey), certSha256: null })] }));
    }
  }

  private nextModel(): { bytes: Uint8Array; hash: Uint8Array } {
    const bytes = new Uint8Array(16).fill(++this.model);
    return { bytes, hash: modelBytesHash(bytes) };
  }

  async startRun(policy: Policy, runId: string, rounds: number): Promise<void> {
    const h = policyHash(policy);
    const signatures = PARTIES.map((party) => ({ party, publicKey: this.fed.parties.get(party)!.publicKey, signature: signPolicyHash(h, this.fed.parties.get(party)!.secretKey) }));
    const initial = this.nextModel();
    await this.write(() =>
      this.repo.startRun({
        runId, policyHash: h, canonicalPolicyJson: canonicalPolicyJson(policy), signatures, roundsPlanned: rounds, initialModel: initial,
        firstRound: { state: 'open', phase: 'advertise', phaseDeadline: null },
        sealer: {
          emit: ({ newPolicy, modelVersion }) => {
            const rec = this.audit.recorderFor(policy);
            return [
              ...(newPolicy ? [rec.registerPolicy(signatures.map((s) => ({ party: s.party, publicKey: b64(s.publicKey), signature: b64(s.signature) })))] : []),
              rec.startRun(runId, modelVersion, hex(initial.hash)),
              rec.startRound({ runId, round: 1, secaggRound: 1, baseModelVersion: modelVersion, parties: PARTIES }),
            ];
          },
        },
      }),
    );
  }

  /** The signed evidence a phase's entry carries (as the parties would sign it; digests and keys are stand-ins). */
  private evidence(policy: Policy, runId: string, round: number, phase: Phase) {
    const fedId = policy.federationId;
    const sk = (p: string) => this.fed.parties.get(p)!.secretKey;
    const bytes = (p: string, what: string) => sodium().crypto_generichash(32, new TextEncoder().encode(`${runId}/${round}/${p}/${what}`), null);
    if (phase === 'advertise') {
      return {
        advertisements: PARTIES.map((p) => {
          const [cPk, sPk, c] = [bytes(p, 'c'), bytes(p, 's'), bytes(p, 'commit')];
          return { party: p, cPk: b64(cPk), sPk: b64(sPk), selfMaskCommitment: hex(c), signature: b64(ed25519Sign(advertiseKeysBytes(fedId, runId, round, p, cPk, sPk, c), sk(p))) };
        }),
      };
    }
    if (phase === 'mask') {
      const params = expectedRoundParams(policy);
      const len = encodedLength(params);
      return {
        maskedInputs: PARTIES.map((p) => {
          const digest = bytes(p, 'masked');
          return { party: p, bits: params.bits, length: len, digest: hex(digest), signature: b64(ed25519Sign(maskedInputBytes(fedId, runId, round, p, params.bits, len, digest), sk(p))) };
        }),
      };
    }
    if (phase === 'consistency') return { survivors: PARTIES, survivorSignatures: PARTIES.map((p) => ({ party: p, signature: b64(ed25519Sign(survivorListBytes(fedId, runId, round, p, PARTIES), sk(p))) })) };
    return {};
  }

  /** Closes the phases of the open round from `from` up to (not including) `until`. */
  async phases(policy: Policy, runId: string, round: number, from: Phase, until: Phase): Promise<void> {
    for (let k = PHASES.indexOf(from); k < PHASES.indexOf(until); k++) {
      const phase = PHASES[k];
      await this.write(() => this.repo.setRoundPhase(runId, round, { state: 'open', phase }, { state: 'open', phase: PHASES[k + 1], phaseDeadline: null }, { emit: () => [this.audit.recorderFor(policy).phase(phase, PARTIES, this.evidence(policy, runId, round, phase))] }));
    }
  }

  /** Closes unmask and completes the round (then the next round-started, or run-completed). */
  async complete(policy: Policy, runId: string, round: number, last: boolean): Promise<void> {
    const model = this.nextModel();
    await this.write(() =>
      this.repo.completeRound({
        runId, round, model, audit: {}, next: last ? null : { state: 'open', phase: 'advertise', phaseDeadline: null },
        sealer: {
          emit: ({ modelVersion, nextRound }) => {
            const rec = this.audit.recorderFor(policy);
            return [
              rec.phase('unmask', PARTIES),
              rec.completeRound({ survivors: PARTIES, aggregateHash: hex(model.hash), modelVersion, modelHash: hex(model.hash) }),
              nextRound === null ? rec.completeRun(runId, modelVersion) : rec.startRound({ runId, round: nextRound, secaggRound: nextRound, baseModelVersion: modelVersion, parties: PARTIES }),
            ];
          },
        },
      }),
    );
  }

  async entries(): Promise<Entry[]> {
    return (await this.rows()).map((r) => JSON.parse(Buffer.from(r.entry).toString('utf8')) as Entry);
  }

  async rows() {
    const out = [];
    for (;;) {
      const page = await this.repo.auditEntries(out.length, 10_000);
      out.push(...page);
      if (page.length < 10_000) return out;
    }
  }
}

for (const backend of backends()) {
  describe(`CoordinatorAudit memory on ${backend.name}`, () => {
    afterAll(() => backend.cleanup());

    test('bounded over thousands of entries; reopened mid-round it continues; another policy gets the replayed epsilon; an old round still takes a receipt', async () => {
      const fed = await makeFederation({ parties: PARTIES, rounds: ROUNDS });
      const p1 = fed.policy;
      // a second policy: same parties and keys, other privacy parameters (noise and delta)
      const p2 = validatePolicy({ ...JSON.parse(JSON.stringify(p1)), training: { ...p1.training, rounds: 1 }, privacy: { ...p1.privacy, noiseMultiplier: p1.privacy.noiseMultiplier * 1.5, delta: p1.privacy.delta / 10 } });
      expect(policyHash(p2)).not.toBe(policyHash(p1));
      const key = fed.coordinator;
      const db = await backend.open();
      try {
        await migrate(db);
        const repo = new Repository(db);
        const c = new Coordinator(repo, await CoordinatorAudit.open(repo, key.secretKey), fed);
        await c.enrol();
        await c.tokenBatch();
        expect(c.audit.heldRecords()).toBe(0);

        // run 1: ROUNDS rounds (each completing write opens the next round), tokens inside round 3
        await c.startRun(p1, 'run-1', ROUNDS);
        for (let r = 1; r <= ROUNDS; r++) {
          await c.phases(p1, 'run-1', r, 'advertise', 'unmask');
          if (r === 3) await c.tokenBatch(INSIDE);
          await c.complete(p1, 'run-1', r, r === ROUNDS);
          expect(c.audit.heldRecords()).toBe(r < ROUNDS ? 1 : 0); // the next round's round-started, or nothing after the run
        }
        for (let k = 0; k < 40; k++) {
          await c.tokenBatch();
          expect(c.audit.heldRecords()).toBe(0); // between runs, nothing
        }
        // a round's entries: round-started, 4 phases (the 5th, round-completed and what follows are one write), and the tokens inside
        expect(c.maxHeld).toBe(1 + 4 + INSIDE);

        // run 2 under the same policy, its first round left open after its mask phase (parties charged)
        await c.startRun(p1, 'run-2', ROUNDS);
        await c.phases(p1, 'run-2', 1, 'advertise', 'consistency');
        await c.tokenBatch(INSIDE);
        const beforeRestart = c.audit.head();
        const open = (await c.entries()).findIndex((e) => e.type === 'round-started' && e.runId === 'run-2');
        expect(c.audit.heldRecords()).toBe(beforeRestart.idx - open + 1);
        expect(beforeRestart.idx + 1).toBeGreaterThan(4000);

        // a coordinator reopened over that log: same head, the open round's entries held, the round completes
        c.audit = await CoordinatorAudit.open(repo, key.secretKey);
        expect(c.audit.head().idx).toBe(beforeRestart.idx);
        expect(hex(c.audit.head().hash)).toBe(hex(beforeRestart.hash));
        expect(c.audit.heldRecords()).toBe(beforeRestart.idx - open + 1);
        await c.phases(p1, 'run-2', 1, 'consistency', 'unmask');
        await c.complete(p1, 'run-2', 1, false);
        for (let r = 2; r <= ROUNDS; r++) {
          await c.phases(p1, 'run-2', r, 'advertise', 'unmask');
          await c.complete(p1, 'run-2', r, r === ROUNDS);
        }
        expect(c.audit.heldRecords()).toBe(0);

        // run 3 under another policy, first used after all those rounds: its epsilon is the whole-log replay's
        const exported = new TextEncoder().encode((await c.rows()).map(exportLine).join(''));
        const replayed = AuditRecorder.replay(p2, key.secretKey, exported);
        replayed.startRound({ runId: 'run-3', round: 1, secaggRound: 1, baseModelVersion: 1, parties: PARTIES });
        replayed.phase('mask', PARTIES);
        const fromReplay = (JSON.parse(Buffer.from(replayed.abortRound('compare', 'mask').entry).toString('utf8')) as Entry).epsilon;
        await c.startRun(p2, 'run-3', 1);
        await c.phases(p2, 'run-3', 1, 'advertise', 'unmask');
        await c.complete(p2, 'run-3', 1, true);
        const entries = await c.entries();
        const logged = entries.find((e) => e.type === 'round-completed' && e.runId === 'run-3')!.epsilon;
        expect(logged).toEqual(fromReplay);
        // and what the accountant composes from the rounds each party was charged for: 2 ROUNDS under p1, 1 under p2
        const charged = [...Array(2 * ROUNDS).fill(expectedRoundParams(p1)), expectedRoundParams(p2)];
        for (const party of PARTIES) expect(logged[party]).toBeCloseTo(composeEpsilon(charged, p2.privacy.delta), 12);
        expect(logged.platform).toBeGreaterThan(entries.find((e) => e.type === 'round-completed' && e.runId === 'run-2' && e.round === ROUNDS)!.epsilon.platform);

        // a receipt for round 1 of run 1, over its round-completed entry (thousands of entries back)
        await c.tokenBatch();
        const close = entries.findIndex((e) => e.type === 'round-completed' && e.runId === 'run-1' && e.round === 1);
        const rows = await c.rows();
        const headAt = (i: number) => rows[i + 1].prevHash;
        const party = (await repo.participantByName('platform'))!;
        const closeEntry = entries[close];
        const model = (await repo.modelVersion(closeEntry.modelVersion))!;
        const submit = (headIdx: number, head: Uint8Array) => {
          const r = signReceipt({ federationId: p1.federationId, policyHash: policyHash(p1), runId: 'run-1', round: 1, party: 'platform', headIdx, head, modelHash: model.hash }, fed.parties.get('platform')!.secretKey);
          const header = newHeader({ federationId: p1.federationId, party: 'platform', runId: 'run-1', round: 1, method: 'SubmitReceipt' });
          return acceptReceipt({ repo, audit: c.audit }, party, header, { header, ...receiptBodyFields(r, model.version) });
        };
        const last = rows.length - 1;
        await expect(submit(close - 1, headAt(close - 1))).rejects.toMatchObject({ code: status.FAILED_PRECONDITION, message: `SubmitReceipt: head_idx ${close - 1} must be in [${close}, ${last}] (from the round's round-completed entry to the newest entry)` });
        await expect(submit(close + 1, headAt(close))).rejects.toMatchObject({ code: status.FAILED_PRECONDITION, message: `SubmitReceipt: chain_head is not the chain hash of entry ${close + 1}` });
        expect(await repo.auditEntries(last + 1)).toEqual([]); // refused: nothing stored
        const at = await submit(close + 1, headAt(close + 1));
        expect(at).toBe(last + 1);
        await expect(submit(close, headAt(close))).rejects.toMatchObject({ code: status.ALREADY_EXISTS, message: `SubmitReceipt: party "platform" already has a receipt for round 1 of run run-1 (entry ${at})` });
        // ... and the same after a restart (the bookkeeping is rebuilt from storage)
        c.audit = await CoordinatorAudit.open(repo, key.secretKey);
        await expect(submit(close, headAt(close))).rejects.toMatchObject({ code: status.ALREADY_EXISTS, message: `SubmitReceipt: party "platform" already has a receipt for round 1 of run run-1 (entry ${at})` });
        expect(c.audit.heldRecords()).toBe(0);

        // the whole log verifies: chain and signatures, every round's Merkle root, epsilon under each run's policy, the receipt
        const final = await c.rows();
        expect(verifyAuditChain(final, key.publicKey).failures).toEqual([]);
        const res = verifyLog(new TextEncoder().encode(final.map(exportLine).join('')), { policy: p2, otherPolicies: [p1] });
        expect(res.failures).toEqual([]);
        expect(res.runs.map((r) => [r.runId, r.status])).toEqual([['run-1', 'completed'], ['run-2', 'completed'], ['run-3', 'completed']]);
      } finally {
        await db.close();
      }
    }, 180_000);
  });
}
