import fc from 'fast-check';
import { sodiumReady, sodium } from '../../../shared/crypto/sodium';
import { ed25519Keygen } from '../../../shared/crypto/sign';
import { signedBytes, signMessage, survivorListBytes as secaggSurvivorListBytes, type AdvertiseKeys, type MaskedInput, type ConsistencySignature } from '../../../shared/secagg/messages';
import { ed25519Verify } from '../../../shared/crypto/sign';
import { composeEpsilon as ledgerCompose, LEDGER_ORDERS } from '../../../participant-node/privacy/ledger';
import { localDpsgdCharge, roundNoiseCharge } from '../../../participant-node/privacy/charge';
import { DEFAULT_BETA } from '../../../shared/dp/encode';
import {
  ACCOUNTANT_ORDERS,
  AuditRecorder,
  AuditWriter,
  advertiseKeysBytes,
  composeEpsilon,
  exportLine,
  expectedRoundParams,
  maskedInputBytes,
  merkleProof,
  merkleRoot,
  parseExportLine,
  survivorListBytes,
  verifyMerkleProof,
  verifyLog,
  signReceipt,
  advertisementEvidence,
  maskedInputEvidence,
  survivorSignatureEvidence,
  parseLogQuery,
  auditLogPage,
  AuditApiError,
  verifyReceiptSignature,
  type RoundParams,
} from '../../../shared/audit';
import { makeFederation, generateLog } from './fixture';

beforeAll(async () => {
  await sodiumReady();
});

describe('Merkle tree (RFC 6962 shape)', () => {
  test('every leaf has a valid audit path; a wrong leaf, index or root fails', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 20 }), { minLength: 1, maxLength: 17 }), fc.nat(), (leaves, k) => {
        const m = k % leaves.length;
        const root = merkleRoot(leaves);
        const proof = merkleProof(leaves, m);
        expect(verifyMerkleProof(leaves[m], m, leaves.length, proof, root)).toBe(true);
        expect(verifyMerkleProof(new Uint8Array([...leaves[m], 1]), m, leaves.length, proof, root)).toBe(false);
        const m2 = (m + 1) % leaves.length;
        if (leaves.length > 1 && merkleProof(leaves, m2).length === proof.length) {
          // the same path for another index only verifies if that leaf is byte-identical and sits symmetrically
          const same = leaves[m].join() === leaves[m2].join();
          if (!same) expect(verifyMerkleProof(leaves[m], m2, leaves.length, proof, root)).toBe(false);
        }
        expect(verifyMerkleProof(leaves[m], m, leaves.length, proof, new Uint8Array(32))).toBe(false);
      }),
      { numRuns: 60 },
    );
  });

  test('order and count matter; leaves and inner nodes are domain-separated', () => {
    const a = new Uint8Array([1]);
    const b = new Uint8Array([2]);
    expect(sodium().to_hex(merkleRoot([a, b]))).not.toBe(sodium().to_hex(merkleRoot([b, a])));
    expect(sodium().to_hex(merkleRoot([a]))).not.toBe(sodium().to_hex(merkleRoot([a, a])));
    expect(merkleRoot([]).length).toBe(32);
  });
});

describe('secure-aggregation signature bytes match shared/secagg', () => {
  test('advertise-keys, masked-input and consistency-signature', () => {
    const cPk = sodium().randombytes_buf(32);
    const sPk = sodium().randombytes_buf(32);
    const c = sodium().randombytes_buf(32);
    const adv = signedBytes({ type: 'advertise-keys', federationId: 'f', round: 7, sender: 'platform', cPk, sPk, selfMaskCommitment: c, signature: new Uint8Array(0) }, 'run-1');
    expect(advertiseKeysBytes('f', 'run-1', 7, 'platform', cPk, sPk, c)).toEqual(adv);
    const vec = new Uint32Array([1, 2, 3, 4294967295]);
    const mi = signedBytes({ type: 'masked-input', federationId: 'f', round: 7, sender: 'insurer', bits: 32, vector: vec, signature: new Uint8Array(0) }, 'run-1');
    const digest = sodium().crypto_generichash(32, new Uint8Array(vec.buffer), null);
    expect(maskedInputBytes('f', 'run-1', 7, 'insurer', 32, 4, digest)).toEqual(mi);
    expect(survivorListBytes('f', 'run-1', 7, 'insurer', ['a', 'b'])).toEqual(secaggSurvivorListBytes('f', 'run-1', 7, 'insurer', ['a', 'b']));
    // the run is bound: the same round of another run signs other bytes
    expect(survivorListBytes('f', 'run-2', 7, 'insurer', ['a', 'b'])).not.toEqual(survivorListBytes('f', 'run-1', 7, 'insurer', ['a', 'b']));
  });
});

describe('evidence from real secure-aggregation messages verifies under the party key', () => {
  test('advertise-keys, masked-input, consistency-signature', () => {
    const kp = ed25519Keygen();
    const so = sodium();
    const b = (s: string) => so.from_base64(s, so.base64_variants.ORIGINAL);
    const adv = signMessage<AdvertiseKeys>({ type: 'advertise-keys', federationId: 'f', round: 3, sender: 'platform', cPk: so.randombytes_buf(32), sPk: so.randombytes_buf(32), selfMaskCommitment: so.randombytes_buf(32) }, kp.secretKey, 'run-1');
    const a = advertisementEvidence(adv);
    expect(ed25519Verify(b(a.signature), advertiseKeysBytes('f', 'run-1', 3, a.party, b(a.cPk), b(a.sPk), so.from_hex(a.selfMaskCommitment)), kp.publicKey)).toBe(true);
    const mi = signMessage<MaskedInput>({ type: 'masked-input', federationId: 'f', round: 3, sender: 'platform', bits: 32, vector: new Uint32Array([5, 6, 7, 8]) }, kp.secretKey, 'run-1');
    const m = maskedInputEvidence(mi);
    expect(m.length).toBe(4);
    expect(ed25519Verify(b(m.signature), maskedInputBytes('f', 'run-1', 3, m.party, m.bits, m.length, so.from_hex(m.digest)), kp.publicKey)).toBe(true);
    const cs = signMessage<ConsistencySignature>({ type: 'consistency-signature', federationId: 'f', round: 3, sender: 'platform', survivors: ['insurer', 'platform'] }, kp.secretKey, 'run-1');
    const c = survivorSignatureEvidence(cs);
    expect(ed25519Verify(b(c.signature), survivorListBytes('f', 'run-1', 3, c.party, ['insurer', 'platform']), kp.publicKey)).toBe(true);
    expect(ed25519Verify(b(c.signature), survivorListBytes('f', 'run-2', 3, c.party, ['insurer', 'platform']), kp.publicKey)).toBe(false);
    expect(ed25519Verify(b(c.signature), survivorListBytes('f', 'run-1', 3, c.party, ['platform']), kp.publicKey)).toBe(false);
  });
});

describe('audit API page logic', () => {
  test('query parsing: precise errors; pages are contiguous export lines', async () => {
    expect(parseLogQuery({ from: '0' })).toEqual({ from: 0, limit: 1000 });
    expect(parseLogQuery({ from: '12', limit: '5' })).toEqual({ from: 12, limit: 5 });
    expect(() => parseLogQuery({})).toThrow(AuditApiError);
    expect(() => parseLogQuery({ from: '-1' })).toThrow(/"from" must be a non-negative integer/);
    expect(() => parseLogQuery({ from: '1', limit: '0' })).toThrow(/"limit" must be in \[1, 10000\]/);
    expect(() => parseLogQuery({ from: '1e3' })).toThrow(/"from"/);
    const fed = await makeFederation();
    const log = generateLog(fed);
    const w = log.recorder.writer.written();
    expect(auditLogPage(w.slice(3, 8), 3)).toBe(log.text.split('\n').slice(3, 8).map((l) => l + '\n').join(''));
    expect(() => auditLogPage(w.slice(3, 8), 2)).toThrow(/not contiguous/);
  });
});

describe('accountant: the audit composes epsilon exactly as the node ledger', () => {
  test('orders are the ledger orders', () => {
    expect([...ACCOUNTANT_ORDERS]).toEqual([...LEDGER_ORDERS]);
  });

  test('local-dpsgd and round-noise (per-party and distributed) agree with the ledger over several rounds', async () => {
    const fed = await makeFederation();
    const p = expectedRoundParams(fed.policy);
    const dp = localDpsgdCharge({ round: 1, noiseMultiplier: p.noiseMultiplier, q: p.samplingRate, steps: p.steps, clip: p.clipNorm, delta: p.delta });
    expect(composeEpsilon([p, p, p], p.delta)).toBeCloseTo(ledgerCompose([dp, dp, dp], p.delta).epsilon, 12);
    for (const mode of ['per-party', 'distributed'] as const) {
      const rn: RoundParams = { ...p, mechanism: 'round-noise', noiseMode: mode, nMin: 3, noiseMultiplier: 3, steps: 1 };
      const charge = roundNoiseCharge({
        round: 1,
        encode: { clip: rn.clipNorm, gamma: rn.gamma, bits: rn.bits, rotationSeed: new Uint8Array(32).fill(9), beta: DEFAULT_BETA, noise: { sigma: rn.noiseMultiplier * rn.clipNorm, mode, nMin: 3 } },
        dimension: rn.dimension,
        q: rn.samplingRate,
        delta: rn.delta,
      });
      const ours = composeEpsilon([rn, rn], rn.delta);
      expect(ours).toBeGreaterThan(0);
      expect(ours).toBeCloseTo(ledgerCompose([charge, charge], rn.delta).epsilon, 12);
    }
  });
});

describe('writer, export lines, receipts, replay', () => {
  test('the writer refuses an invalid entry and appends nothing', async () => {
    const fed = await makeFederation();
    const w = new AuditWriter(fed.coordinator.secretKey);
    expect(() => w.append({ type: 'run-started', runId: 'r', policyHash: 'nothex', roundsPlanned: 1, initialModelVersion: 1, initialModelHash: 'ab'.repeat(32) }, 1)).toThrow(/entry.policyHash/);
    expect(w.written()).toHaveLength(0);
    expect(w.head().idx).toBe(-1);
  });

  test('an export line keeps the stored bytes verbatim; a non-canonical stored entry is reported at its index', async () => {
    const fed = await makeFederation();
    const w = new AuditWriter(fed.coordinator.secretKey);
    const rec = w.append({ type: 'token-issued', tokenId: 't1', role: 'auditor', label: 'x' }, 5);
    const line = exportLine(rec);
    const p = parseExportLine(new TextEncoder().encode(line.slice(0, -1)));
    expect(p.ok && Buffer.from(p.record.entry).equals(Buffer.from(rec.entry))).toBe(true);
    // a coordinator storing pretty-printed JSON (signed as stored) is caught
    const pretty = new TextEncoder().encode(new TextDecoder().decode(rec.entry).replace(/":/g, '": '));
    const { signAuditEntry } = await import('../../../shared/audit');
    const bad = exportLine({ idx: 0, prevHash: new Uint8Array(32), entry: pretty, signature: signAuditEntry(0, new Uint8Array(32), pretty, fed.coordinator.secretKey) });
    const r = verifyLog(new TextEncoder().encode(bad), { policy: fed.policy });
    expect(r.failures[0]).toMatchObject({ entry: 0, field: 'encoding' });
  });

  test('receipts: signed by the party key, bound to every field', async () => {
    const kp = ed25519Keygen();
    const other = ed25519Keygen();
    const r = signReceipt({ federationId: 'f', policyHash: 'aa'.repeat(32), runId: 'run', round: 2, party: 'platform', headIdx: 10, head: 'bb'.repeat(32), modelHash: 'cc'.repeat(32) }, kp.secretKey);
    expect(verifyReceiptSignature(r, kp.publicKey)).toBe(true);
    expect(verifyReceiptSignature(r, other.publicKey)).toBe(false);
    for (const [k, v] of Object.entries({ federationId: 'g', runId: 'run2', round: 3, party: 'insurer', headIdx: 11, head: 'bc'.repeat(32), modelHash: 'cd'.repeat(32), policyHash: 'ab'.repeat(32) })) {
      expect(verifyReceiptSignature({ ...r, [k]: v }, kp.publicKey)).toBe(false);
    }
    expect(verifyReceiptSignature({ ...r, extra: 1 }, kp.publicKey)).toBe(false);
  });

  test('a recorder replayed from the stored log continues the same chain (restart)', async () => {
    const fed = await makeFederation();
    const full = generateLog(fed, [{}, {}, {}]);
    // stop in the middle of round 2 (after its mask phase), restart, finish the round
    const lines = full.text.split('\n').slice(0, -1);
    const cut = lines.findIndex((l) => l.includes('"phase":"mask"') && l.includes('"round":2'));
    const stored = lines.slice(0, cut + 1).map((l) => l + '\n').join('');
    const rec = AuditRecorder.replay(fed.policy, fed.coordinator.secretKey, new TextEncoder().encode(stored), () => 1_800_000_000_000);
    const writer = rec.writer;
    const names = fed.policy.parties.map((p) => p.name);
    rec.abortRound('coordinator restarted', 'consistency');
    const text = writer.exportText(); // the stored records and the new ones
    expect(text.startsWith(stored)).toBe(true);
    const r = verifyLog(new TextEncoder().encode(text), { policy: fed.policy });
    expect(r.failures).toEqual([]);
    // the aborted round still charged every party whose masked input was accepted
    expect(Object.keys(r.timeline[1].epsilon).sort()).toEqual([...names].sort());
    expect(r.timeline[1].epsilon.platform).toBeGreaterThan(r.timeline[0].epsilon.platform);
  });
});
