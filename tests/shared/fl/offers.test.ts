/**
 * Offer-aware averaging (shared/fl/offers.ts) and the policy's catalogue.offers validation: an
 * item's rows are averaged over its provider alone, the towers over every survivor; the schema
 * refuses overlapping, out-of-range or unknown-party offers, and offerScope "own" without offers.
 */
import { averagingDivisors, offerRanges, ownOfferMask } from '../../../shared/fl/offers';
import { nextGlobalModel, modularSum } from '../../../shared/fl/aggregate';
import { newServerState } from '../../../shared/fl/server';
import { encodeUpdate } from '../../../shared/dp/encode';
import { sharedParameterLayout, layoutSize } from '../../../shared/model/layout';
import { DEFAULT_VOCABULARIES } from '../../../shared/data/vocab';
import { defaultPolicy } from '../../../shared/policy/defaults';
import { validatePolicy, PolicyError } from '../../../shared/policy/schema';
import { sodiumReady } from '../../../shared/crypto/sodium';

const key = (b: number) => Buffer.alloc(32, b).toString('base64');

beforeAll(async () => {
  await sodiumReady();
});

test('offerRanges compresses runs of each provider; ownOfferMask expands them back', () => {
  const items = ['a', 'a', 'b', 'b', 'b', undefined, 'a', 'c'].map((provider) => ({ provider }));
  const r = offerRanges(items);
  expect(r).toEqual({ a: [[0, 2], [6, 7]], b: [[2, 5]], c: [[7, 8]] });
  expect(Array.from(ownOfferMask(r, 'a', 8))).toEqual([1, 1, 0, 0, 0, 0, 1, 0]);
  expect(() => ownOfferMask(r, 'z', 8)).toThrow(/no offers for party "z"/);
  expect(() => ownOfferMask({ a: [[3, 9]] }, 'a', 8)).toThrow(/outside the catalogue/);
});

test('nextGlobalModel with divisors: item rows averaged over their provider, towers over the survivors', () => {
  const model = { architecture: 'two-tower-v1' as const, embeddingDim: 4, hiddenDim: 3, numItems: 6 };
  const layout = sharedParameterLayout(model, DEFAULT_VOCABULARIES);
  const D = layoutSize(layout);
  const emb = layout.find((p) => p.name === 'item_embedding')!;
  const bias = layout.find((p) => p.name === 'item_bias')!;
  const offers = { p1: [[0, 3]] as Array<[number, number]>, p2: [[3, 6]] as Array<[number, number]> };
  // each party's delta: 1 on every tower coordinate, 2 on its own items' rows, 0 on the other's rows
  const delta = (own: [number, number]) => {
    const d = new Float32Array(D);
    for (const p of layout) if (p.name !== 'item_embedding' && p.name !== 'item_bias') d.fill(1, p.offset, p.offset + p.size);
    d.fill(2, emb.offset + own[0] * 4, emb.offset + own[1] * 4);
    d.fill(2, bias.offset + own[0], bias.offset + own[1]);
    return d;
  };
  const enc = { gamma: 1024, bits: 32, rotationSeed: null, clip: 1e6, beta: 0 };
  const ups = [encodeUpdate(delta([0, 3]), { ...enc, noise: null }).data, encodeUpdate(delta([3, 6]), { ...enc, noise: null }).data];
  const global = new Float32Array(D);
  const div = averagingDivisors(layout, offers, ['p1', 'p2']);
  const next = nextGlobalModel(global, modularSum(ups, 32), 2, enc, { type: 'fedavg', learningRate: 1 }, newServerState(), div);
  for (let i = 0; i < D; i++) {
    const isItem = (i >= emb.offset && i < emb.offset + emb.size) || (i >= bias.offset && i < bias.offset + bias.size);
    expect(next[i]).toBeCloseTo(isItem ? 2 : 1, 2);
  }
  // plain uniform FedAvg halves the item rows
  const plain = nextGlobalModel(global, modularSum(ups, 32), 2, enc, { type: 'fedavg', learningRate: 1 }, newServerState());
  expect(plain[emb.offset]).toBeCloseTo(1, 2);
  expect(() => nextGlobalModel(global, modularSum(ups, 32), 2, enc, { type: 'fedavg', learningRate: 1 }, newServerState(), new Float64Array(3))).toThrow(/divisors/);
});

describe('policy catalogue.offers', () => {
  const base = () =>
    defaultPolicy({
      federationId: 'f',
      coordinator: { name: 'coordinator', publicKey: key(9) },
      parties: [
        { name: 'platform', publicKey: key(1) },
        { name: 'insurer', publicKey: key(2) },
      ],
      catalogue: { hash: 'ab'.repeat(32), numItems: 10 },
    });
  const withOffers = (offers: unknown, offerScope: 'own' | 'catalogue' = 'own') => {
    const p = base();
    return validatePolicy({ ...p, catalogue: { ...p.catalogue, offers }, training: { ...p.training, offerScope } });
  };

  test('valid offers pass; the default scope stays the whole catalogue', () => {
    expect(base().training.offerScope).toBe('catalogue');
    expect(withOffers({ platform: [[0, 6]], insurer: [[6, 10]] }).catalogue.offers).toEqual({ platform: [[0, 6]], insurer: [[6, 10]] });
  });
  test.each([
    [{ platform: [[0, 6]], insurer: [[5, 10]] }, /overlaps/],
    [{ platform: [[0, 6]], insurer: [[6, 11]] }, /numItems \(10\)/],
    [{ platform: [[0, 6]], insurer: [[6, 6]] }, /start < end/],
    [{ platform: [[0, 6]], other: [[6, 10]] }, /"other" is not one of the policy's parties/],
    [{ platform: [[0, 6]] }, /"insurer" has none/],
  ])('refused: %j', (offers, msg) => {
    expect(() => withOffers(offers)).toThrow(PolicyError);
    expect(() => withOffers(offers)).toThrow(msg);
  });
});
