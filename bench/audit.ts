/**
 * `npm run bench -- audit`: cost of the audit log, one core.
 * - writing: entries/s through AuditRecorder (validation, canonical JSON, chain hash, coordinator
 *   Ed25519 signature, epsilon of each charged party), for a 3-party run with full evidence;
 * - verifying: entries/s of verifyLog (bytes, chain, every coordinator and party signature,
 *   policy checks, epsilon recomputation, receipts) for runs of 20 and 200 rounds;
 * - size: bytes of exported log per round.
 * Medians of 5 repetitions after a warm-up; wall-clock and CPU-seconds both recorded.
 */
import { median, type BenchContext } from './lib';
import { sodiumReady, sodium } from '../shared/crypto/sodium';
import { ed25519Keygen, ed25519Sign } from '../shared/crypto/sign';
import { defaultPolicy } from '../shared/policy/defaults';
import { policyHash, validatePolicy } from '../shared/policy/schema';
import { signPolicyHash } from '../shared/policy/sign';
import { AuditRecorder, AuditWriter, advertiseKeysBytes, encodedLength, maskedInputBytes, signReceipt, survivorListBytes, verifyLog, PHASES } from '../shared/audit';

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
}
