import { DEFAULT_VOCABULARIES, itemFeatureDim, userFeatureDim } from '../../shared/data/vocab';
import { flattenParams, layoutSize, sharedParameterLayout, unflattenParams } from '../../shared/model/layout';

const model = { architecture: 'two-tower-v1' as const, embeddingDim: 8, hiddenDim: 16, numItems: 50 };

describe('shared parameter layout', () => {
  test('order, shapes and offsets are fixed and contiguous', () => {
    const l = sharedParameterLayout(model, DEFAULT_VOCABULARIES);
    expect(l.map((p) => p.name)).toEqual([
      'user_tower/dense1/kernel', 'user_tower/dense1/bias', 'user_tower/dense2/kernel', 'user_tower/dense2/bias',
      'item_tower/dense1/kernel', 'item_tower/dense1/bias', 'item_tower/dense2/kernel', 'item_tower/dense2/bias',
      'item_embedding', 'item_bias',
    ]);
    expect(l[0].shape).toEqual([userFeatureDim(DEFAULT_VOCABULARIES), 16]);
    expect(l[4].shape).toEqual([itemFeatureDim(DEFAULT_VOCABULARIES), 16]);
    expect(l[8].shape).toEqual([50, 8]);
    let off = 0;
    for (const p of l) {
      expect(p.offset).toBe(off);
      off += p.size;
    }
    expect(layoutSize(l)).toBe(off);
    // no private (per-user) parameter in the shared list
    expect(l.some((p) => /user_embedding/.test(p.name))).toBe(false);
  });

  test('flatten/unflatten round trip and precise errors', () => {
    const l = sharedParameterLayout(model, DEFAULT_VOCABULARIES);
    const values = new Map(l.map((p) => [p.name, Float32Array.from({ length: p.size }, (_, i) => p.offset + i)]));
    const flat = flattenParams(l, values);
    expect(Array.from(flat.subarray(0, 5))).toEqual([0, 1, 2, 3, 4]);
    const back = unflattenParams(l, flat);
    for (const p of l) expect(back.get(p.name)).toEqual(values.get(p.name));
    values.set('item_bias', new Float32Array(3));
    expect(() => flattenParams(l, values)).toThrow('shared parameter "item_bias" expected 50 values, got 3');
    expect(() => unflattenParams(l, new Float32Array(7))).toThrow(/expected length \d+, got 7/);
    const extra = new Map(l.map((p) => [p.name, new Float32Array(p.size)]));
    extra.set('user_embedding', new Float32Array(1));
    expect(() => flattenParams(l, extra)).toThrow(/unexpected parameters not in the shared layout: user_embedding/);
  });
});
