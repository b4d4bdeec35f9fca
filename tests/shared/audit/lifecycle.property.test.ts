/**
 * The operator entries (participant-enrolled / -removed, token-issued / -revoked) against a model of
 * the rules: random sequences over two party names (not in the policy), two keys and three token ids,
 * signed and chained as the coordinator writes them. The verifier fails exactly the entries the model
 * says break a rule, each at its own index:
 *   enrol   a name that is enrolled                  -> entry.name
 *   remove  a name that is not enrolled              -> entry.name     (then it is not enrolled)
 *           under another key than the enrolled one  -> entry.publicKey (then it is not enrolled)
 *   issue   an id issued before                      -> entry.tokenId
 *   revoke  an id never issued, or already revoked   -> entry.tokenId
 */
import fc from 'fast-check';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { ed25519Keygen } from '../../../shared/crypto/sign';
import { AuditWriter, exportLine, verifyLog } from '../../../shared/audit';
import { makeFederation } from './fixture';

beforeAll(async () => {
  await sodiumReady();
});

type Op =
  | { type: 'participant-enrolled'; name: string; publicKey: string; certSha256: null }
  | { type: 'participant-removed'; name: string; publicKey: string; reason: string }
  | { type: 'token-issued'; tokenId: string; role: string; label: string }
  | { type: 'token-revoked'; tokenId: string; reason: string };

/** The entries that break a rule, with the field the verifier should name. */
function model(ops: Op[]): { entry: number; field: string }[] {
  const enrolled = new Map<string, string>();
  const tokens = new Map<string, boolean>(); // id -> revoked
  const bad: { entry: number; field: string }[] = [];
  ops.forEach((op, i) => {
    switch (op.type) {
      case 'participant-enrolled':
        if (enrolled.has(op.name)) bad.push({ entry: i, field: 'entry.name' });
        enrolled.set(op.name, op.publicKey);
        break;
      case 'participant-removed':
        if (!enrolled.has(op.name)) bad.push({ entry: i, field: 'entry.name' });
        else if (enrolled.get(op.name) !== op.publicKey) bad.push({ entry: i, field: 'entry.publicKey' });
        enrolled.delete(op.name);
        break;
      case 'token-issued':
        if (tokens.has(op.tokenId)) bad.push({ entry: i, field: 'entry.tokenId' });
        else tokens.set(op.tokenId, false);
        break;
      case 'token-revoked':
        if (!tokens.has(op.tokenId) || tokens.get(op.tokenId)) bad.push({ entry: i, field: 'entry.tokenId' });
        else tokens.set(op.tokenId, true);
        break;
    }
  });
  return bad;
}

test('operator entries: the verifier fails exactly the entries that break the enrolment and token rules', async () => {
  const fed = await makeFederation();
  const keys = [ed25519Keygen(), ed25519Keygen()].map((k) => Buffer.from(k.publicKey).toString('base64'));
  const name = fc.constantFrom('bank', 'fund');
  const key = fc.constantFrom(...keys);
  const id = fc.constantFrom('tok-1', 'tok-2', 'tok-3');
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ name, publicKey: key }).map(({ name, publicKey }) => ({ type: 'participant-enrolled' as const, name, publicKey, certSha256: null })),
    fc.record({ name, publicKey: key }).map(({ name, publicKey }) => ({ type: 'participant-removed' as const, name, publicKey, reason: 'left' })),
    id.map((tokenId) => ({ type: 'token-issued' as const, tokenId, role: 'auditor', label: '' })),
    id.map((tokenId) => ({ type: 'token-revoked' as const, tokenId, reason: '' })),
  );
  let sawBad = 0;
  let sawClean = 0;
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 14 }), (ops) => {
      const w = new AuditWriter(fed.coordinator.secretKey);
      ops.forEach((o, k) => w.append(o, 1000 + k));
      const r = verifyLog(new TextEncoder().encode(w.written().map(exportLine).join('')), { policy: fed.policy });
      const want = model(ops);
      expect(r.failures.map((f) => ({ entry: f.entry, field: f.field }))).toEqual(want);
      if (want.length) sawBad++;
      else sawClean++;
    }),
    { numRuns: 300 },
  );
  // both kinds of sequence were drawn
  expect(sawBad).toBeGreaterThan(30);
  expect(sawClean).toBeGreaterThan(10); // non-empty clean sequences (an empty log fails: verify.test.ts)
});
