/**
 * SubmitReceipt only from the run's policy parties under the key the policy pins. The audit log is
 * append-only and auditors check every receipt against the pinned keys, so one receipt from a party
 * enrolled after the run, or from a policy party re-enrolled with a new key, would make every later
 * verification of the log fail. Both are refused and the log is left as it was.
 */
import { status } from '@grpc/grpc-js';
import { EventKind, ReceiptBody, type PhaseEvent, type ReceiptAck } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { policyHash, type Policy } from '../../shared/policy/schema';
import { signReceipt } from '../../shared/audit/receipt';
import { verifyLog } from '../../shared/audit/verify';
import { fetchAuditLog } from '../../shared/cli/audit';
import { encodedDimension } from '../../shared/dp/encode';
import { ed25519Keygen } from '../../shared/crypto/sign';
import type { Receipt } from '../../shared/audit/entries';
import { receiptBodyFields } from '../../participant-node/federation/receipt';
import { enrol, FEDERATION, modelDim, operator, policyYaml, signaturesFor, startRun, testPolicy, TestParty, unary } from './helpers/harness';
import { MiniNode } from './helpers/mini-node';
import { secaggCoordinator } from './helpers/fixture';

function submit(p: TestParty, runId: string, round: number, r: Receipt, modelVersion: number): Promise<ReceiptAck> {
  const body = ReceiptBody.encode({ header: p.header('SubmitReceipt', runId, round), ...receiptBodyFields(r, modelVersion) }).finish();
  return new Promise((resolve, reject) => p.client.submitReceipt(p.sign('SubmitReceipt', body), (e, a) => (e ? reject(e) : resolve(a!))));
}

async function refusal(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as { code: number; details: string };
    return { code: err.code, details: err.details };
  }
  throw new Error('expected a refusal');
}

describe('receipts only from the policy parties, under their pinned keys', () => {
  const fx = secaggCoordinator(['platform', 'insurer', 'insurer2', 'latecomer']);

  test('a party enrolled after the run, and a policy party re-enrolled with a new key, are refused; the log still verifies', async () => {
    const { env, coord } = fx;
    const parties = ['platform', 'insurer', 'insurer2'].map((n) => new TestParty(n, env, coord.grpcPort));
    fx.parties.push(...parties);
    const op = operator(env, coord.grpcPort);
    await enrol(env, op, parties);
    const policy: Policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
    policy.secagg.threshold = 2;
    const length = encodedDimension(modelDim(policy), policy.secagg.rotation === 'hadamard');
    const nodes = parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, length));
    fx.nodes.push(...nodes);
    const dim = modelDim(policy);
    const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(new Float32Array(dim).fill(0.01).buffer));
    const done: PhaseEvent = await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1);
    await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
    const { token } = await unary(op.client.issueToken.bind(op.client), { role: 'auditor', label: 'receipts', expiresInSeconds: '0' }, op.metadata);
    const http = `http://127.0.0.1:${coord.httpPort}`;
    const receiptOf = (party: string, secretKey: Uint8Array) =>
      signReceipt({ federationId: FEDERATION, policyHash: policyHash(policy), runId: st.runId, round: 1, party, headIdx: Number(done.auditHeadIdx), head: done.auditHead, modelHash: done.modelHash }, secretKey);

    const late = new TestParty('latecomer', env, coord.grpcPort);
    fx.parties.push(late);
    await enrol(env, op, [late]);
    const before = Buffer.from((await fetchAuditLog(http, token)).bytes);
    expect(verifyLog(new Uint8Array(before), { policy }).failures).toEqual([]);
    const r1 = await refusal(submit(late, st.runId, 1, receiptOf('latecomer', late.keys.secretKey), done.modelVersion));
    expect(r1.code).toBe(status.PERMISSION_DENIED);
    expect(r1.details).toMatch(/party "latecomer" is not a party of the policy of run/);

    await unary(op.client.removeParticipant.bind(op.client), { name: 'insurer', reason: 'key rotated' }, op.metadata);
    const rotated = new TestParty('insurer', env, coord.grpcPort, { keys: ed25519Keygen() });
    fx.parties.push(rotated);
    await enrol(env, op, [rotated]);
    const withRemoval = Buffer.from((await fetchAuditLog(http, token)).bytes);
    const r2 = await refusal(submit(rotated, st.runId, 1, receiptOf('insurer', rotated.keys.secretKey), done.modelVersion));
    expect(r2.code).toBe(status.FAILED_PRECONDITION);
    expect(r2.details).toMatch(/enrolled with another key than the one the policy of run .* pins/);

    // nothing was appended by either refusal; the log (with the removal and the new enrolment) verifies
    const after = Buffer.from((await fetchAuditLog(http, token)).bytes);
    expect(after.equals(withRemoval)).toBe(true);
    expect(withRemoval.subarray(0, before.length).equals(before)).toBe(true);
    expect(verifyLog(new Uint8Array(after), { policy }).failures).toEqual([]);
    op.client.close();
  });
});
