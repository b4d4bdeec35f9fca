/**
 * Offers: which party offers which catalogue items (DESIGN §3: the catalogue is public; items.csv
 * names each item's provider). Under the policy's training.offerScope `own`, a party's update can
 * be non-zero only on the towers and on the rows (e_i, b_i) of its own offers (participant-node/
 * model/dpsgd.ts, "Offer scope"). FedAvg then averages every coordinate over the parties whose
 * updates can touch it: the towers over every survivor, an item's rows over its provider alone (the
 * other survivors' updates are zero there by construction). Averaging those rows over all survivors
 * instead would shrink every party's item-row progress by the number of parties each round.
 * Pure functions over public data: no I/O, nothing secret.
 */
import type { ParamSpec } from '../model/layout';

export type OfferRanges = Record<string, Array<[number, number]>>;

/** Run-length ranges [start, end) of each provider's items, in catalogue order (items without a provider are left out). */
export function offerRanges(items: ReadonlyArray<{ provider?: string }>): OfferRanges {
  const out: OfferRanges = {};
  let k = 0;
  while (k < items.length) {
    const p = items[k].provider;
    let e = k + 1;
    while (e < items.length && items[e].provider === p) e++;
    if (p) (out[p] ??= []).push([k, e]);
    k = e;
  }
  return out;
}

/** 1 for each catalogue item offered by `party`. */
export function ownOfferMask(offers: OfferRanges, party: string, numItems: number): Uint8Array {
  const ranges = offers[party];
  if (!ranges || ranges.length === 0) throw new RangeError(`the policy lists no offers for party "${party}"`);
  const m = new Uint8Array(numItems);
  for (const [a, b] of ranges) {
    if (!(Number.isSafeInteger(a) && Number.isSafeInteger(b) && 0 <= a && a < b && b <= numItems)) throw new RangeError(`offer range [${a}, ${b}) of "${party}" is outside the catalogue (${numItems} items)`);
    m.fill(1, a, b);
  }
  return m;
}

/**
 * Per shared coordinate, the number of survivors whose update can touch it: `survivors.length` for
 * the towers and for items no party offers, 1 for the rows of an item whose provider survived (0
 * would divide a zero sum: 1 is used, the average is then 0 as it must be).
 */
export function averagingDivisors(layout: ParamSpec[], offers: OfferRanges, survivors: readonly string[]): Float64Array {
  if (survivors.length === 0) throw new RangeError('no survivors');
  const size = layout.reduce((a, p) => a + p.size, 0);
  const div = new Float64Array(size).fill(survivors.length);
  const emb = layout.find((p) => p.name === 'item_embedding');
  const bias = layout.find((p) => p.name === 'item_bias');
  if (!emb || !bias) throw new Error('averagingDivisors: the layout has no item_embedding / item_bias');
  const d = emb.shape[1];
  const n = emb.shape[0];
  for (const ranges of Object.values(offers)) {
    for (const [a, b] of ranges) {
      if (!(0 <= a && a < b && b <= n)) throw new RangeError(`offer range [${a}, ${b}) is outside the catalogue (${n} items)`);
      div.fill(1, emb.offset + a * d, emb.offset + b * d);
      div.fill(1, bias.offset + a, bias.offset + b);
    }
  }
  return div;
}
