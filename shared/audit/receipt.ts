/**
 * Party receipts (issue 6, DESIGN §4 step 6). After a round a party checks that the model version
 * it received hashes to the value the coordinator announced, then countersigns the chain head it
 * was given. The receipt goes into the log (a `receipt` entry) and the party keeps its own copy
 * (`<node data dir>/receipts/`). Since the head covers every earlier entry — survivor lists, DP
 * parameters, epsilon, aborts — a coordinator that later rewrites or truncates its history, even
 * re-signing everything with its own key, cannot make the log match the receipts the parties hold.
 *
 * Signed message (Ed25519 by the party's identity key, pinned in the policy), with the injective
 * field encoding of shared/crypto/encode.ts:
 *   encodeFields("fedbridge/v1/audit-receipt", federationId, policyHash(32 bytes), runId, round,
 *                party, headIdx, head(32 bytes), modelHash(32 bytes))
 */
import { encodeFields } from '../crypto/encode';
import { ed25519Sign, ed25519Verify } from '../crypto/sign';
import { fromBase64, fromHex, toBase64, toHex } from './bytes';
import { receiptBodySchema, type Receipt } from './entries';
import { formatZodIssues } from '../util/zod-issues';

export const RECEIPT_DOMAIN = 'fedbridge/v1/audit-receipt';
export const RECEIPT_FORMAT = 'fedbridge-audit-receipt/1' as const;

export type ReceiptFields = Omit<Receipt, 'signature' | 'format'>;

export function receiptSigningMessage(r: ReceiptFields): Uint8Array {
  return encodeFields(
    RECEIPT_DOMAIN,
    r.federationId,
    fromHex('policyHash', r.policyHash, 32),
    r.runId,
    r.round,
    r.party,
    r.headIdx,
    fromHex('head', r.head, 32),
    fromHex('modelHash', r.modelHash, 32),
  );
}

/** A party's receipt over `head` (the chain hash of entry `headIdx`). */
export function signReceipt(fields: { federationId: string; policyHash: string; runId: string; round: number; party: string; headIdx: number; head: Uint8Array | string; modelHash: Uint8Array | string }, partySecretKey: Uint8Array): Receipt {
  const body: ReceiptFields = {
    federationId: fields.federationId,
    policyHash: fields.policyHash,
    runId: fields.runId,
    round: fields.round,
    party: fields.party,
    headIdx: fields.headIdx,
    head: typeof fields.head === 'string' ? fields.head : toHex(fields.head),
    modelHash: typeof fields.modelHash === 'string' ? fields.modelHash : toHex(fields.modelHash),
  };
  const signature = ed25519Sign(receiptSigningMessage(body), partySecretKey);
  return { format: RECEIPT_FORMAT, ...body, signature: toBase64(signature) };
}

/** True iff the receipt is well formed and signed by `partyPublicKey` (base64 or bytes). Never throws. */
export function verifyReceiptSignature(r: unknown, partyPublicKey: Uint8Array | string): boolean {
  const p = receiptBodySchema.safeParse(r);
  if (!p.success) return false;
  try {
    const pk = typeof partyPublicKey === 'string' ? fromBase64('publicKey', partyPublicKey, 32) : partyPublicKey;
    return ed25519Verify(fromBase64('signature', p.data.signature, 64), receiptSigningMessage(p.data), pk);
  } catch {
    return false;
  }
}

/** Parses a receipt file's JSON text; throws RangeError with the schema problems. */
export function parseReceipt(text: string): Receipt {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new RangeError(`not JSON: ${(e as Error).message}`);
  }
  const r = receiptBodySchema.safeParse(obj);
  if (!r.success) throw new RangeError(formatZodIssues(r.error).join('; '));
  return r.data;
}

/** File name a party stores a receipt under (unique per run, round and head). */
export function receiptFileName(r: Receipt): string {
  return `${r.runId}-r${r.round}-${r.headIdx}-${r.party}.json`.replace(/[^A-Za-z0-9._-]/g, '_');
}
