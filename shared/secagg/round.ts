/**
 * What every party and the coordinator derive identically for one round: the sorted roster,
 * share points, neighbour graph, and the protocol's key derivations (pair seeds, share keys,
 * commitments). Pure functions of public data and the caller's own secrets.
 */
import { abytes, aint, astr } from '../util/check';
import { aeadOpen, aeadSeal } from '../crypto/aead';
import { concatBytes, encodeFields } from '../crypto/encode';
import { hashFields } from '../crypto/hash';
import { pairKdf } from '../crypto/kdf';
import { x25519 } from '../crypto/x25519';
import { SecAggError } from './errors';
import { neighbourGraph, neighbourhoodSize, sortedRoster, validateParams, type SecAggParams } from './graph';
import { PROTOCOL_TAG } from './messages';

export interface RoundInfo {
  federationId: string;
  /** the run the round belongs to: round numbers restart in every run, (run, round) does not repeat */
  runId: string;
  round: number;
  params: SecAggParams;
  /** public 32-byte seed of this round's neighbour graph (same for every party) */
  roundSeed: Uint8Array;
  /** length m of the aggregated vectors */
  vectorLength: number;
  /** Ed25519 identity public key of every party of the round, by party id */
  peers: Readonly<Record<string, Uint8Array>>;
}

/** The derived public structure of a round. */
export class RoundContext {
  readonly federationId: string;
  readonly runId: string;
  readonly round: number;
  readonly params: SecAggParams;
  readonly vectorLength: number;
  readonly roster: readonly string[];
  readonly peers: ReadonlyMap<string, Uint8Array>;
  /** N(u), sorted, without u */
  readonly neighbours: ReadonlyMap<string, readonly string[]>;
  /** number of share holders per party (|N[u]|) */
  readonly holders: number;
  private readonly index: Map<string, number>;

  constructor(info: RoundInfo) {
    if (typeof info !== 'object' || info === null) throw new TypeError('"info" expected an object');
    this.federationId = astr('federationId', info.federationId);
    this.runId = astr('runId', info.runId);
    this.round = aint('round', info.round, 0);
    this.vectorLength = aint('vectorLength', info.vectorLength, 1, 2 ** 31);
    abytes('roundSeed', info.roundSeed, 32);
    if (typeof info.peers !== 'object' || info.peers === null) throw new TypeError('"peers" expected an object of party id -> Ed25519 public key');
    this.roster = sortedRoster(Object.keys(info.peers));
    validateParams(this.roster.length, info.params);
    this.params = { threshold: info.params.threshold, degree: info.params.degree, bits: info.params.bits };
    const peers = new Map<string, Uint8Array>();
    for (const id of this.roster) peers.set(id, abytes(`peers[${id}]`, info.peers[id], 32));
    this.peers = peers;
    this.index = new Map(this.roster.map((id, i) => [id, i]));
    this.neighbours = neighbourGraph(this.roster, this.params.degree, info.roundSeed);
    this.holders = neighbourhoodSize(this.roster.length, this.params.degree);
  }

  has(id: string): boolean {
    return this.index.has(id);
  }

  /** Shamir share point of a party: roster position + 1 (1..255). */
  sharePoint(id: string): number {
    const i = this.index.get(id);
    if (i === undefined) throw new SecAggError('PERMISSION_DENIED', `unknown party ${JSON.stringify(id)}`);
    return i + 1;
  }

  isNeighbour(u: string, v: string): boolean {
    return u !== v && (this.neighbours.get(u)?.includes(v) ?? false);
  }

  /** N[u] = N(u) + {u}, sorted. */
  closed(u: string): string[] {
    return [...(this.neighbours.get(u) ?? []), u].sort();
  }

  /** Sign of the pair mask PRG(s_uv) in y_u: +1 if v > u, -1 if v < u (Bonawitz et al. §4). */
  static pairSign(u: string, v: string): 1 | -1 {
    return v > u ? 1 : -1;
  }

  /** s_uv = KDF(X25519(s_sk_u, s_pk_v)) bound to (federation, run, round, {u, v}). Caller wipes it. */
  pairSeed(sSk: Uint8Array, u: string, v: string, sPkV: Uint8Array): Uint8Array {
    const dh = x25519(sSk, sPkV);
    try {
      return pairKdf(dh, 'secagg/pair-mask', this.federationId, this.runId, this.round, u, v);
    } finally {
      dh.fill(0);
    }
  }

  /** AEAD key for shares between u and v: KDF(X25519(c_sk_u, c_pk_v)) bound to the round. */
  shareKey(cSk: Uint8Array, u: string, v: string, cPkV: Uint8Array): Uint8Array {
    const dh = x25519(cSk, cPkV);
    try {
      return pairKdf(dh, 'secagg/share-key', this.federationId, this.runId, this.round, u, v);
    } finally {
      dh.fill(0);
    }
  }

  /** Associated data of a share ciphertext: (protocol, phase, federation, run, round, sender, recipient). */
  shareAd(sender: string, recipient: string): Uint8Array {
    return encodeFields(PROTOCOL_TAG, 'share-keys', this.federationId, this.runId, this.round, sender, recipient);
  }

  /** Commitment H(b_u) bound to (federation, run, round, u); hiding because b_u is 256 random bits. */
  selfMaskCommitment(u: string, b: Uint8Array): Uint8Array {
    return hashFields('fedbridge/secagg/v2/self-mask-commitment', this.federationId, this.runId, this.round, u, b);
  }

  /** Encrypts (sender, recipient, share of b, share of s_sk) for the recipient. */
  sealShares(key: Uint8Array, sender: string, recipient: string, bShare: Uint8Array, sShare: Uint8Array, rng?: (n: number) => Uint8Array): Uint8Array {
    const header = encodeFields(sender, recipient);
    const pt = concatBytes(header, bShare, sShare);
    try {
      return aeadSeal(key, pt, this.shareAd(sender, recipient), rng);
    } finally {
      pt.fill(0);
    }
  }

  /** Decrypts shares sent by `sender` to `recipient`; null if not authentic or malformed. */
  openShares(key: Uint8Array, sender: string, recipient: string, sealed: Uint8Array): { bShare: Uint8Array; sShare: Uint8Array } | null {
    const pt = aeadOpen(key, sealed, this.shareAd(sender, recipient));
    if (pt === null) return null;
    const header = encodeFields(sender, recipient);
    try {
      if (pt.length !== header.length + 64) return null;
      for (let i = 0; i < header.length; i++) if (pt[i] !== header[i]) return null;
      return { bShare: pt.slice(header.length, header.length + 32), sShare: pt.slice(header.length + 32) };
    } finally {
      pt.fill(0);
    }
  }
}
