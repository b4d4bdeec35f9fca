/**
 * The unmasking step of one round (Bonawitz et al. 2017 §4), as a pure function of the server's
 * view, so that the coordinator (server.ts) and an auditor (shared/audit/replay.ts) compute the
 * aggregate with the same code:
 *
 *   sum = sum_{u in U3} y_u  -  sum_{u in U3} PRG(b_u)
 *         -  sum_{v dropped, w in N(v) ∩ U3} sign(w, v) · PRG(s_wv)          (mod 2^bits)
 *
 * where "dropped" = U2 \ U3 restricted to parties with a neighbour in U3 (`droppedWithNeighbours`),
 * s_wv = pairSeed(s_sk_v, v, w, s_pk_w) and sign(w, v) is the sign with which y_w carries PRG(s_wv).
 *
 * The server's view of a completed round: the survivors' masked inputs y_u, their self-mask seeds
 * b_u, and the mask keys s_sk_v of the dropped parties, all reconstructed by the server from the
 * shares the survivors revealed. `recomputeAggregate` checks each secret exactly as the server does
 * before using it: b_u against u's signed commitment H(b_u) (bound to federation, run, round, u),
 * s_sk_v against v's advertised s_pk_v; and it refuses a view that holds anything beyond what the
 * server reconstructs (a survivor's mask key would unmask its input on its own).
 *
 * What handing this view to an auditor reveals: exactly what the coordinator already sees in every
 * round, so (as for an honest-but-curious server) the sum and nothing more about any one input,
 * unless the auditor colludes with parties as a server could. The policy decides
 * (audit.auditorServerView).
 */
import { equalBytes } from '../crypto/hash';
import { MaskAccumulator, type MaskTerm } from '../crypto/prg';
import { wipe } from '../crypto/hash';
import { x25519PublicKey } from '../crypto/x25519';
import { RoundContext } from './round';

/** The dropped parties (U2 \ U3, sorted) whose pair masks appear in some survivor's input: they have a neighbour in U3. */
export function droppedWithNeighbours(ctx: RoundContext, U2: Iterable<string>, U3: ReadonlySet<string>): string[] {
  return [...U2]
    .filter((v) => !U3.has(v))
    .sort()
    .filter((v) => ctx.neighbours.get(v)!.some((w) => U3.has(w)));
}

/**
 * The mask terms to remove from the sum of the survivors' masked inputs: -PRG(b_u) for every
 * survivor, and for each dropped v with its key, -sign(w, v)·PRG(s_wv) for every neighbour w in U3.
 * The pair seeds are fresh arrays the caller wipes (`pairSeeds`); the self-mask seeds are the
 * caller's own.
 */
export function unmaskTerms(
  ctx: RoundContext,
  U3: ReadonlySet<string>,
  selfSeeds: readonly (readonly [string, Uint8Array])[],
  keys: readonly (readonly [string, Uint8Array])[],
  sPkOf: (party: string) => Uint8Array,
): { terms: MaskTerm[]; pairSeeds: MaskTerm[] } {
  const terms: MaskTerm[] = selfSeeds.map(([, b]) => ({ seed: b, sign: -1 }));
  const pairSeeds: MaskTerm[] = [];
  try {
    for (const [v, sSk] of keys) {
      for (const w of ctx.neighbours.get(v)!) {
        if (!U3.has(w)) continue;
        // y_w contains sign(w, v) * PRG(s_wv); remove it.
        pairSeeds.push({ seed: ctx.pairSeed(sSk, v, w, sPkOf(w)), sign: RoundContext.pairSign(w, v) === 1 ? -1 : 1 });
      }
    }
  } catch (e) {
    for (const t of pairSeeds) wipe(t.seed);
    throw e;
  }
  return { terms, pairSeeds };
}

export interface ServerView {
  /** y_u for every u in U3 */
  maskedInputs: ReadonlyMap<string, Uint32Array>;
  /** b_u for every u in U3 */
  selfMaskSeeds: ReadonlyMap<string, Uint8Array>;
  /** s_sk_v for every v of droppedWithNeighbours */
  maskKeys: ReadonlyMap<string, Uint8Array>;
}

export interface AdvertisedKeys {
  sPk: Uint8Array;
  selfMaskCommitment: Uint8Array;
}

export type RecomputeResult = { ok: true; sum: Uint32Array } | { ok: false; problems: string[] };

const sameSet = (a: Iterable<string>, b: Iterable<string>) => {
  const x = [...a].sort();
  const y = [...b].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
};

/**
 * The round's aggregate from the server's view, after checking the view (every problem is
 * listed, none thrown): U2 ⊇ U3 are the parties that shared keys and sent masked inputs; `ads`
 * holds each U2 party's advertised s_pk and self-mask commitment.
 */
export function recomputeAggregate(ctx: RoundContext, U2: readonly string[], U3list: readonly string[], ads: ReadonlyMap<string, AdvertisedKeys>, view: ServerView): RecomputeResult {
  const problems: string[] = [];
  const U3 = new Set(U3list);
  const bits = ctx.params.bits;
  const names = (m: ReadonlyMap<string, unknown>) => [...m.keys()].sort().join(', ') || 'none';
  for (const u of U3) if (!U2.includes(u)) problems.push(`${u} sent a masked input but did not share keys`);
  for (const u of U2) if (!ads.has(u)) problems.push(`no advertised keys of ${u}`);
  if (problems.length) return { ok: false, problems };
  const dropped = droppedWithNeighbours(ctx, U2, U3);
  if (!sameSet(view.maskedInputs.keys(), U3)) problems.push(`masked inputs of ${names(view.maskedInputs)}, expected those of U3 = ${[...U3].sort().join(', ')}`);
  if (!sameSet(view.selfMaskSeeds.keys(), U3)) problems.push(`self-mask seeds of ${names(view.selfMaskSeeds)}, expected those of U3 = ${[...U3].sort().join(', ')}`);
  if (!sameSet(view.maskKeys.keys(), dropped)) problems.push(`mask keys of ${names(view.maskKeys)}, expected those of the dropped parties with a surviving neighbour: ${dropped.join(', ') || 'none'}`);
  for (const [u, y] of view.maskedInputs) {
    if (y.length !== ctx.vectorLength) problems.push(`the masked input of ${u} has ${y.length} entries, the round's vectors ${ctx.vectorLength}`);
    else if (bits < 32) {
      const k = y.findIndex((w) => w >= 2 ** bits);
      if (k >= 0) problems.push(`the masked input of ${u} has entry ${k} = ${y[k]}, not below 2^${bits}`);
    }
  }
  for (const [u, b] of view.selfMaskSeeds) {
    const ad = ads.get(u);
    if (b.length !== 32) problems.push(`the self-mask seed of ${u} has ${b.length} bytes, expected 32`);
    else if (ad && !equalBytes(ctx.selfMaskCommitment(u, b), ad.selfMaskCommitment)) problems.push(`the self-mask seed of ${u} does not match its signed commitment`);
  }
  for (const [v, s] of view.maskKeys) {
    const ad = ads.get(v);
    if (s.length !== 32) problems.push(`the mask key of ${v} has ${s.length} bytes, expected 32`);
    else if (ad && !equalBytes(x25519PublicKey(s), ad.sPk)) problems.push(`the mask key of ${v} does not match its advertised public key`);
  }
  if (problems.length) return { ok: false, problems };
  const acc = new MaskAccumulator(ctx.vectorLength, bits);
  for (const u of [...U3].sort()) acc.addVector(view.maskedInputs.get(u)!);
  const { terms, pairSeeds } = unmaskTerms(
    ctx,
    U3,
    [...U3].sort().map((u) => [u, view.selfMaskSeeds.get(u)!] as const),
    dropped.map((v) => [v, view.maskKeys.get(v)!] as const),
    (w) => ads.get(w)!.sPk,
  );
  try {
    acc.addMasks([...terms, ...pairSeeds]);
  } finally {
    for (const t of pairSeeds) wipe(t.seed);
  }
  const sum = acc.read();
  acc.wipe();
  return { ok: true, sum };
}
