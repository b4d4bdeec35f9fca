/**
 * The bytes a party signs in three secure-aggregation messages (shared/secagg/messages.ts
 * `signedBytes`), rebuilt here from the fields the audit log keeps, so the auditor can check each
 * party's own signature without the secure-aggregation module (which needs Node's crypto) and
 * without the vectors themselves. tests/shared/audit/secagg-sigs.test.ts checks byte equality with
 * shared/secagg's encoder.
 *   advertise-keys:        (tag, type, federationId, runId, round, party, cPk, sPk, selfMaskCommitment)
 *   masked-input:          (tag, type, federationId, runId, round, party, bits, length, BLAKE2b-256(y_u LE))
 *   consistency-signature: (tag, type, federationId, runId, round, party, survivors)
 */
import { encodeFields } from '../crypto/encode';

const TAG = 'fedbridge/secagg/v2';

export function advertiseKeysBytes(federationId: string, runId: string, round: number, party: string, cPk: Uint8Array, sPk: Uint8Array, selfMaskCommitment: Uint8Array): Uint8Array {
  return encodeFields(TAG, 'advertise-keys', federationId, runId, round, party, cPk, sPk, selfMaskCommitment);
}

export function maskedInputBytes(federationId: string, runId: string, round: number, party: string, bits: number, length: number, digest: Uint8Array): Uint8Array {
  return encodeFields(TAG, 'masked-input', federationId, runId, round, party, bits, length, digest);
}

export function survivorListBytes(federationId: string, runId: string, round: number, party: string, survivors: readonly string[]): Uint8Array {
  return encodeFields(TAG, 'consistency-signature', federationId, runId, round, party, [...survivors]);
}
