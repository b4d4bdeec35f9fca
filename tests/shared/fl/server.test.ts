import { applyServerUpdate, newServerState } from '../../../shared/fl/server';
import { modularSum } from '../../../shared/fl/aggregate';
import { initSharedParams } from '../../../shared/model/init';
import { sharedParameterLayout } from '../../../shared/model/layout';
import { DEFAULT_VOCABULARIES } from '../../../shared/data/vocab';

describe('server optimizers', () => {
  test('FedAvg: w + lr * avg', () => {
    const next = applyServerUpdate(Float32Array.of(1, 2), [0.5, -1], { type: 'fedavg', learningRate: 2 }, newServerState());
    expect(Array.from(next)).toEqual([2, 0]);
  });

  test('FedAdam follows Reddi et al. Alg. 2 step by step', () => {
    const st = newServerState();
    const cfg = { type: 'fedadam' as const, learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
    let w: Float32Array = Float32Array.of(0);
    w = applyServerUpdate(w, [1], cfg, st);
    // m = 0.1, v = 0.01 -> w = 0.1 * 0.1 / (0.1 + 0.001)
    expect(w[0]).toBeCloseTo((0.1 * 0.1) / (0.1 + 0.001), 6);
    w = applyServerUpdate(w, [-1], cfg, st);
    const m = 0.9 * 0.1 - 0.1;
    const v = 0.99 * 0.01 + 0.01;
    expect(w[0]).toBeCloseTo((0.1 * 0.1) / (0.1 + 0.001) + (0.1 * m) / (Math.sqrt(v) + 1e-3), 6);
    expect(st.steps).toBe(2);
  });

  test('rejects a wrong length and a non-finite result', () => {
    expect(() => applyServerUpdate(Float32Array.of(1), [1, 2], { type: 'fedavg', learningRate: 1 }, newServerState())).toThrow(/"avg" expected length 1, got 2/);
    expect(() => applyServerUpdate(Float32Array.of(1), [Infinity], { type: 'fedavg', learningRate: 1 }, newServerState())).toThrow(/non-finite parameter at coordinate 0/);
  });
});

describe('modular sum and initial model', () => {
  test('sum mod 2^b is exact, including wrap-around', () => {
    const a = Uint32Array.of(0xffffffff, 5, 0x80000000);
    const b = Uint32Array.of(2, 0xfffffffb, 0x80000000);
    expect(Array.from(modularSum([a, b], 32))).toEqual([1, 0, 0]);
    expect(Array.from(modularSum([Uint32Array.of(200), Uint32Array.of(100)], 8))).toEqual([44]);
    expect(() => modularSum([a, Uint32Array.of(1)], 32)).toThrow(/length 1 differs from 3/);
  });

  test('initial shared parameters: deterministic per seed, Glorot kernels, zero biases', () => {
    const layout = sharedParameterLayout({ architecture: 'two-tower-v1', embeddingDim: 8, hiddenDim: 16, numItems: 30 }, DEFAULT_VOCABULARIES);
    const a = initSharedParams(layout, 3);
    expect(initSharedParams(layout, 3)).toEqual(a);
    expect(initSharedParams(layout, 4)).not.toEqual(a);
    for (const p of layout) {
      const v = a.subarray(p.offset, p.offset + p.size);
      if (p.name.endsWith('bias')) expect(v.every((x) => x === 0)).toBe(true);
      if (p.name.endsWith('kernel')) {
        const lim = Math.sqrt(6 / (p.shape[0] + p.shape[1]));
        expect(v.every((x) => Math.abs(x) <= lim)).toBe(true);
        expect(v.some((x) => x !== 0)).toBe(true);
      }
    }
  });
});
