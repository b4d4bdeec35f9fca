/**
 * SubmitReceipt (issue 6): a party's countersignature over the audit chain head after a round it
 * took part in (shared/audit/receipt.ts). The coordinator records a receipt only if
 *   - the party is a party of the run's policy and its ENROLLED key is the key that policy pins
 *     (auditors check receipts against the pinned keys: a receipt from a party enrolled after the
 *     run, or re-enrolled with a new key, would fail every later verification of the log, which is
 *     append-only), and the receipt signature verifies under it (the request signature was already
 *     checked by the authenticator; the receipt signature is what auditors verify),
 *   - the round (header run_id, round) is completed and the receipt's model version and BLAKE2b-256
 *     are the ones that round produced,
 *   - `head` is the chain hash of the stored entry `head_idx`, at or after the round's
 *     round-completed entry,
 *   - the party has no receipt for that round in the log yet (ALREADY_EXISTS otherwise).
 * It is then appended as a `receipt` entry; the answer carries its log index. A refused receipt
 * stores nothing.
 */
import type { ParticipantRow } from '../storage/repository';
import type { ReceiptBody, PartyHeader } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { RECEIPT_FORMAT, verifyReceiptSignature } from '../../shared/audit/receipt';
import type { Receipt } from '../../shared/audit/entries';
import { alreadyExists, clientText, failedPrecondition, invalid, notFound, permissionDenied, unauthenticated } from '../grpc/errors';
import { validatePolicy } from '../../shared/policy/schema';
import type { CoordinatorContext } from '../context';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function entryOf(bytes: Uint8Array): Record<string, unknown> | null {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export async function acceptReceipt(ctx: Pick<CoordinatorContext, 'repo' | 'audit'>, party: ParticipantRow, header: PartyHeader, body: ReceiptBody): Promise<number> {
  if (body.chainHead.length !== 32) throw invalid(`SubmitReceipt: chain_head must be 32 bytes, got ${body.chainHead.length}`);
  if (body.modelHash.length !== 32) throw invalid(`SubmitReceipt: model_hash must be 32 bytes, got ${body.modelHash.length}`);
  if (body.receiptSignature.length !== 64) throw invalid(`SubmitReceipt: receipt_signature must be 64 bytes (Ed25519), got ${body.receiptSignature.length}`);
  const headIdx = Number(body.headIdx);
  if (!Number.isSafeInteger(headIdx) || headIdx < 0) throw invalid(`SubmitReceipt: head_idx ${body.headIdx} is out of range`);
  if (header.round < 1) throw invalid('SubmitReceipt: header.round must name the completed round (>= 1)');

  const run = await ctx.repo.run(header.runId);
  if (!run) throw notFound(`SubmitReceipt: no run "${clientText(header.runId)}"`);
  const round = await ctx.repo.roundRow(run.id, header.round);
  if (!round || round.state !== 'completed' || round.resultModelVersion === null) throw failedPrecondition(`SubmitReceipt: round ${header.round} of run ${run.id} is not completed`);
  const stored = await ctx.repo.policy(run.policyHash);
  if (!stored) throw failedPrecondition(`SubmitReceipt: the policy ${run.policyHash} of run ${run.id} is missing`);
  const pinned = validatePolicy(JSON.parse(stored.canonicalJson)).parties.find((p) => p.name === party.name);
  if (!pinned) throw permissionDenied(`SubmitReceipt: party "${party.name}" is not a party of the policy of run ${run.id}; only its parties countersign its rounds`);
  if (Buffer.from(party.publicKey).toString('base64') !== pinned.publicKey) {
    throw failedPrecondition(`SubmitReceipt: party "${party.name}" is enrolled with another key than the one the policy of run ${run.id} pins (re-enrolled since); receipts for that run are checked against the pinned key`);
  }
  const model = await ctx.repo.modelVersion(round.resultModelVersion);
  if (!model) throw failedPrecondition(`SubmitReceipt: model version ${round.resultModelVersion} is missing`);
  if (body.modelVersion !== model.version) throw failedPrecondition(`SubmitReceipt: round ${header.round} produced model version ${model.version}, the receipt names ${body.modelVersion}`);
  if (hex(body.modelHash) !== hex(model.hash)) throw failedPrecondition(`SubmitReceipt: the receipt's model hash ${hex(body.modelHash)} is not the hash ${hex(model.hash)} of model version ${model.version}`);

  const receipt: Receipt = {
    format: RECEIPT_FORMAT,
    federationId: header.federationId,
    policyHash: run.policyHash,
    runId: run.id,
    round: header.round,
    party: party.name,
    headIdx,
    head: hex(body.chainHead),
    modelHash: hex(body.modelHash),
    signature: Buffer.from(body.receiptSignature).toString('base64'),
  };
  if (!verifyReceiptSignature(receipt, party.publicKey)) throw unauthenticated(`SubmitReceipt: the receipt signature does not verify under the enrolled key of party "${party.name}"`);

  let idx = -1;
  await ctx.audit.write(async () => {
    // from the newest entry back to the round's round-completed (read from storage: the coordinator
    // does not hold its whole log), refusing a second receipt of this party for the round
    let closeIdx = -1;
    await ctx.audit.scanBack((i, bytes) => {
      const e = entryOf(bytes);
      if (!e) return false;
      if (e.type === 'receipt') {
        const r = e.receipt as Receipt;
        if (r.party === party.name && r.runId === run.id && r.round === header.round) throw alreadyExists(`SubmitReceipt: party "${party.name}" already has a receipt for round ${header.round} of run ${run.id} (entry ${i})`);
      }
      if (e.type === 'round-completed' && e.runId === run.id && e.round === header.round) {
        closeIdx = i;
        return true;
      }
      return false;
    });
    const newest = ctx.audit.head().idx;
    if (closeIdx < 0) throw failedPrecondition(`SubmitReceipt: the audit log has no round-completed entry for round ${header.round} of run ${run.id}`);
    if (headIdx < closeIdx || headIdx > newest) throw failedPrecondition(`SubmitReceipt: head_idx ${headIdx} must be in [${closeIdx}, ${newest}] (from the round's round-completed entry to the newest entry)`);
    const h = await ctx.audit.chainHashAt(headIdx);
    if (!h || hex(h) !== receipt.head) throw failedPrecondition(`SubmitReceipt: chain_head is not the chain hash of entry ${headIdx}`);
    await ctx.repo.appendAuditRecords({
      emit: () => {
        const rec = ctx.audit.append({ type: 'receipt', receipt });
        idx = rec.idx;
        return [rec];
      },
    });
  });
  return idx;
}
