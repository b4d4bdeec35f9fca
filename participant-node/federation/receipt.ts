/**
 * The node's side of audit receipts (issue 6, shared/audit/receipt.ts). After a round this node
 * took part in completes, the coordinator's ROUND_COMPLETED event (signed with its pinned key)
 * carries the audit chain head and the BLAKE2b-256 of the new model as logged. The node
 *   1. checks that the model it downloaded and adopted (whose bytes it hashed itself) is that model,
 *   2. countersigns the head with its identity key (`signReceipt`),
 *   3. keeps its own copy under `<data dir>/receipts/<receiptFileName>` (the privacy ledger treats
 *      that folder as proof of participation), then
 *   4. submits it (SubmitReceipt) so it enters the log.
 * An auditor later verifies the exported log against these kept copies (`fedbridge audit verify
 * --receipts DIR`): a coordinator that rewrote or cut its history cannot match them.
 * A mismatch (a coordinator announcing another model than the one served) is never countersigned.
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import type { ModelInfo, PhaseEvent, ReceiptAck } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { receiptFileName, signReceipt } from '../../shared/audit/receipt';
import type { Receipt } from '../../shared/audit/entries';
import { writeFileAtomic } from '../../shared/util/atomic';

export function receiptsDir(dataDir: string): string {
  return path.join(dataDir, 'receipts');
}

/** The ReceiptBody fields (besides the header) for a receipt. */
export function receiptBodyFields(r: Receipt, modelVersion: number) {
  return {
    chainHead: new Uint8Array(Buffer.from(r.head, 'hex')),
    modelVersion,
    modelHash: new Uint8Array(Buffer.from(r.modelHash, 'hex')),
    headIdx: String(r.headIdx),
    receiptSignature: new Uint8Array(Buffer.from(r.signature, 'base64')),
  };
}

export async function countersignRound(o: {
  event: PhaseEvent;
  /** the model version this node downloaded (hash checked against its bytes) and adopted */
  info: ModelInfo;
  federationId: string;
  policyHash: string;
  party: string;
  secretKey: Uint8Array;
  dataDir: string;
  submit: (r: Receipt, modelVersion: number) => Promise<ReceiptAck>;
  log: (line: string) => void;
}): Promise<Receipt | null> {
  const e = o.event;
  if (e.auditHead.length !== 32) {
    o.log(`round ${e.round}: the coordinator sent no audit chain head; no receipt`);
    return null;
  }
  if (o.info.version !== e.modelVersion || e.modelHash.length !== 32 || Buffer.compare(Buffer.from(o.info.modelHash), Buffer.from(e.modelHash)) !== 0) {
    o.log(`round ${e.round}: NOT countersigning: the model served (v${o.info.version}, ${Buffer.from(o.info.modelHash).toString('hex')}) is not the one announced for the audit log (v${e.modelVersion}, ${Buffer.from(e.modelHash).toString('hex')})`);
    return null;
  }
  const r = signReceipt(
    { federationId: o.federationId, policyHash: o.policyHash, runId: e.runId, round: e.round, party: o.party, headIdx: Number(e.auditHeadIdx), head: e.auditHead, modelHash: o.info.modelHash },
    o.secretKey,
  );
  const dir = receiptsDir(o.dataDir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(path.join(dir, receiptFileName(r)), JSON.stringify(r, null, 2) + '\n', 0o600);
  try {
    const ack = await o.submit(r, o.info.version);
    o.log(`round ${e.round}: receipt over audit entry ${r.headIdx} recorded as entry ${ack.logIndex}`);
  } catch (err) {
    o.log(`round ${e.round}: the coordinator did not accept the receipt (kept locally): ${(err as Error).message}`);
  }
  return r;
}
