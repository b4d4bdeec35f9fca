/**
 * Public per-round seeds, derived by every party and the coordinator alike from public values, so
 * nobody can pick them: BLAKE2b-256 keyed by a domain label over (federation id, run id, round).
 * Used for the randomized Hadamard rotation of the encoder. Requires `await sodiumReady()`.
 */
import { aint, astr } from '../util/check';
import { sodium } from '../crypto/sodium';

export function publicRoundSeed(label: 'rotation' | 'graph', federationId: string, runId: string, round: number): Uint8Array {
  astr('federationId', federationId);
  astr('runId', runId);
  aint('round', round, 0);
  const enc = new TextEncoder();
  const msg = enc.encode(JSON.stringify([federationId, runId, round]));
  return sodium().crypto_generichash(32, msg, enc.encode(`fedbridge/v1/${label}-seed`));
}
