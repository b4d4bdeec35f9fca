import { canonicalCatalogue, catalogueHash, type CatalogueItem } from '../../../shared/data/catalogue';
import { sodium, sodiumReady } from '../../../shared/crypto/sodium';

const items: CatalogueItem[] = [
  { id: 'platform-c1', provider: 'platform', domain: 'course', priceBand: 'low', topics: ['programming', 'design'] },
  { id: 'insurer-i1', provider: 'insurer', domain: 'insurance', priceBand: 'high', topics: ['home'] },
];

beforeAll(async () => {
  await sodiumReady();
});

describe('catalogueHash', () => {
  it('encodes canonically: fixed format, catalogue order, topics sorted, missing provider as ""', () => {
    expect(canonicalCatalogue(items)).toBe(
      '{"format":"fedbridge-catalogue/1","items":[["platform-c1","platform","course","low",["design","programming"]],["insurer-i1","insurer","insurance","high",["home"]]]}',
    );
    expect(canonicalCatalogue([{ id: 'x', domain: 'finance', priceBand: 'mid', topics: [] }])).toBe(
      '{"format":"fedbridge-catalogue/1","items":[["x","","finance","mid",[]]]}',
    );
  });

  it('is BLAKE2b-256 of the canonical encoding (hex)', () => {
    const h = catalogueHash(items);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(h).toBe(sodium().crypto_generichash(32, new TextEncoder().encode(canonicalCatalogue(items)), null, 'hex'));
  });

  it('ignores topic order within an item but not anything else', () => {
    const h = catalogueHash(items);
    expect(catalogueHash([{ ...items[0], topics: ['design', 'programming'] }, items[1]])).toBe(h);
    const variants: CatalogueItem[][] = [
      [items[1], items[0]], // order = embedding row order
      [{ ...items[0], id: 'platform-c2' }, items[1]],
      [{ ...items[0], provider: 'insurer' }, items[1]],
      [{ ...items[0], provider: undefined }, items[1]],
      [{ ...items[0], domain: 'finance' }, items[1]],
      [{ ...items[0], priceBand: 'mid' }, items[1]],
      [{ ...items[0], topics: ['programming'] }, items[1]],
      [items[0]],
    ];
    const hashes = new Set(variants.map((v) => catalogueHash(v)));
    expect(hashes.size).toBe(variants.length);
    expect(hashes.has(h)).toBe(false);
  });

  it('does not mutate its input', () => {
    const copy = JSON.parse(JSON.stringify(items));
    catalogueHash(items);
    expect(items).toEqual(copy);
  });

  it('rejects hostile input with a TypeError naming the field', () => {
    expect(() => catalogueHash('x' as never)).toThrow(TypeError);
    expect(() => catalogueHash([null] as never)).toThrow(/"items\[0\]"/);
    expect(() => catalogueHash([{ ...items[0], id: 5 }] as never)).toThrow(/"items\[0\]\.id"/);
    expect(() => catalogueHash([{ ...items[0], topics: 'design' }] as never)).toThrow(/"items\[0\]\.topics"/);
    expect(() => catalogueHash([{ ...items[0], topics: [1] }] as never)).toThrow(TypeError);
    expect(() => catalogueHash([{ ...items[0], provider: 3 }] as never)).toThrow(/provider/);
  });
});
