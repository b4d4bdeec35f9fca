/**
 * Per-round Merkle tree over audit entries (RFC 6962 §2.1 structure, BLAKE2b-256, domain-separated):
 *
 *   leaf(d)      = BLAKE2b-256( "fedbridge/v1/audit-merkle" || 0x00 || 0x00 || d )
 *   node(l, r)   = BLAKE2b-256( "fedbridge/v1/audit-merkle" || 0x00 || 0x01 || l || r )
 *   MTH({})      = BLAKE2b-256( "fedbridge/v1/audit-merkle" || 0x00 )
 *   MTH(D[0:n])  = node( MTH(D[0:k]), MTH(D[k:n]) ), k = largest power of two < n   (n > 1)
 *
 * The leaves are the canonical bytes of the round's entries; the root is written into the entry
 * that closes the round (round-completed / round-aborted), so one entry of a round can be shown to
 * a third party with an audit path (RFC 6962 §2.1.1) without handing over the whole log.
 */
import { sodium } from '../crypto/sodium';
import { bytesEqual, concat, utf8 } from './bytes';

const DOMAIN = utf8.encode('fedbridge/v1/audit-merkle\0');
const LEAF = new Uint8Array([0]);
const NODE = new Uint8Array([1]);

function h(...parts: Uint8Array[]): Uint8Array {
  return sodium().crypto_generichash(32, concat(DOMAIN, ...parts), null);
}

export function merkleLeaf(data: Uint8Array): Uint8Array {
  return h(LEAF, data);
}

function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function rootOfLeaves(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return h();
  if (leaves.length === 1) return leaves[0];
  const k = split(leaves.length);
  return h(NODE, rootOfLeaves(leaves.slice(0, k)), rootOfLeaves(leaves.slice(k)));
}

/** MTH over the given entries' bytes. */
export function merkleRoot(entries: readonly Uint8Array[]): Uint8Array {
  return rootOfLeaves(entries.map(merkleLeaf));
}

/** Audit path of leaf m in a tree of the given entries (RFC 6962 §2.1.1 PATH(m, D[n])). */
export function merkleProof(entries: readonly Uint8Array[], m: number): Uint8Array[] {
  if (!Number.isInteger(m) || m < 0 || m >= entries.length) throw new RangeError(`"m" expected an index in [0, ${entries.length}), got ${m}`);
  const leaves = entries.map(merkleLeaf);
  const path = (lo: number, hi: number, i: number): Uint8Array[] => {
    if (hi - lo <= 1) return [];
    const k = split(hi - lo);
    if (i < lo + k) return [...path(lo, lo + k, i), rootOfLeaves(leaves.slice(lo + k, hi))];
    return [...path(lo + k, hi, i), rootOfLeaves(leaves.slice(lo, lo + k))];
  };
  return path(0, leaves.length, m);
}

/** True iff `entry` is leaf m of a tree of size n with this root, given its audit path. */
export function verifyMerkleProof(entry: Uint8Array, m: number, n: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 0 || m >= n) return false;
  // recompute the root top-down: the split points of [0, n) determine which side each sibling is on
  const sides: boolean[] = []; // true: sibling on the right
  let lo = 0;
  let hi = n;
  while (hi - lo > 1) {
    const k = split(hi - lo);
    if (m < lo + k) {
      sides.push(true);
      hi = lo + k;
    } else {
      sides.push(false);
      lo = lo + k;
    }
  }
  if (sides.length !== proof.length) return false;
  let acc = merkleLeaf(entry);
  // proof runs bottom-up (RFC 6962 order), sides top-down
  for (let j = 0; j < proof.length; j++) {
    const right = sides[sides.length - 1 - j];
    acc = right ? h(NODE, acc, proof[j]) : h(NODE, proof[j], acc);
  }
  return bytesEqual(acc, root);
}
