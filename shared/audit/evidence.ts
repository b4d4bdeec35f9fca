/**
 * The evidence a round-phase entry carries, taken from the secure-aggregation messages the
 * coordinator accepted (shared/secagg/messages.ts): each party's own signature travels with the
 * fields it covers, so the auditor can check it with the party's pinned key (secagg-sigs.ts) and
 * the coordinator cannot invent a participant or a survivor. Vectors are not logged: a masked
 * input is represented by the BLAKE2b-256 digest its signature covers.
 */
import type { AdvertiseKeys, ConsistencySignature, MaskedInput } from '../secagg/messages';
import { blake2b256 } from '../crypto/hash';
import { toBase64, toHex } from './bytes';

function u32Le(v: Uint32Array): Uint8Array {
  const out = new Uint8Array(v.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < v.length; i++) dv.setUint32(4 * i, v[i], true);
  return out;
}

export function advertisementEvidence(m: AdvertiseKeys): { party: string; cPk: string; sPk: string; selfMaskCommitment: string; signature: string } {
  return { party: m.sender, cPk: toBase64(m.cPk), sPk: toBase64(m.sPk), selfMaskCommitment: toHex(m.selfMaskCommitment), signature: toBase64(m.signature) };
}

export function maskedInputEvidence(m: MaskedInput): { party: string; bits: number; length: number; digest: string; signature: string } {
  return { party: m.sender, bits: m.bits, length: m.vector.length, digest: toHex(blake2b256(u32Le(m.vector))), signature: toBase64(m.signature) };
}

export function survivorSignatureEvidence(m: ConsistencySignature): { party: string; signature: string } {
  return { party: m.sender, signature: toBase64(m.signature) };
}
