/**
 * A node's round update: DP-SGD from the global model, the delta covers shared parameters only,
 * and encode -> modular sum -> decode gives back the average delta (up to quantization).
 */
import * as tf from '@tensorflow/tfjs';
import { TwoTowerModel } from '../../../participant-node/model/twotower';
import { computeLocalUpdate, roundEncodeParams } from '../../../participant-node/federation/update';
import { defaultPolicy } from '../../../shared/policy/defaults';
import { initSharedParams } from '../../../shared/model/init';
import { sharedParameterLayout } from '../../../shared/model/layout';
import { modularSum, nextGlobalModel } from '../../../shared/fl/aggregate';
import { newServerState } from '../../../shared/fl/server';
import { decodeAggregate } from '../../../shared/dp/encode';
import { DEFAULT_VOCABULARIES, itemFeatureDim, userFeatureDim } from '../../../shared/data/vocab';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { Xoshiro128 } from '../../../shared/util/prng';

const key = (c: string) => c.repeat(43) + '=';
const NI = 50;
const NU = 60;

function policy() {
  const p = defaultPolicy({
    federationId: 'fb-test',
    coordinator: { name: 'coordinator', publicKey: key('C') },
    parties: [
      { name: 'platform', publicKey: key('P') },
      { name: 'insurer', publicKey: key('I') },
    ],
    catalogue: { hash: 'ab'.repeat(32), numItems: NI },
  });
  return { ...p, model: { ...p.model, embeddingDim: 8, hiddenDim: 8 }, privacy: { ...p.privacy, samplingRate: 0.3, stepsPerRound: 3, maxInteractionsPerUser: 4 } };
}

function party(seed: number, pol: ReturnType<typeof policy>) {
  const m = TwoTowerModel.forPolicy(pol.model, DEFAULT_VOCABULARIES, NU, { learningRate: 0.01, initSeed: seed });
  const rng = new Xoshiro128(seed);
  m.setFeatures(
    Float32Array.from({ length: NU * userFeatureDim(DEFAULT_VOCABULARIES) }, () => rng.nextInt(2)),
    Float32Array.from({ length: NI * itemFeatureDim(DEFAULT_VOCABULARIES) }, () => rng.nextInt(2)),
  );
  const user = Uint32Array.from({ length: 300 }, (_, j) => j % NU);
  const item = Uint32Array.from({ length: 300 }, () => rng.nextInt(NI));
  const domains = { byDomain: new Map([['course', Uint32Array.from({ length: NI }, (_, i) => i)]]), domainOf: Array(NI).fill('course') };
  return { m, positives: { user, item }, domains, rng };
}

beforeAll(async () => {
  await sodiumReady();
  await tf.setBackend('cpu');
});

test('encode -> modular sum -> decode returns the average delta; private embeddings stay out', () => {
  const pol = policy();
  const layout = sharedParameterLayout(pol.model, pol.vocabularies);
  const global = initSharedParams(layout, 7);
  const parties = [party(1, pol), party(2, pol)];
  const userEmbBefore = parties.map((p) => Float32Array.from(p.m.userEmbedding));
  const ups = parties.map((p) => computeLocalUpdate(p.m, p.positives, p.domains, { policy: pol, runId: 'r1', round: 1, global }, p.rng));
  for (const u of ups) {
    expect(u.delta.length).toBe(global.length); // shared parameters only: no user rows
    expect(u.privacy).toMatchObject({ mechanism: 'local-dpsgd', steps: 3, samplingRate: 0.3, gamma: pol.secagg.scale, bits: 32 });
    expect(u.encoded.length).toBeGreaterThanOrEqual(global.length); // padded to a power of two by the rotation
  }
  // the private embeddings were trained locally (they moved) but are not in any released vector
  parties.forEach((p, k) => expect(p.m.userEmbedding).not.toEqual(userEmbBefore[k]));
  const enc = roundEncodeParams(pol, 'r1', 1);
  const avg = decodeAggregate(modularSum(ups.map((u) => u.encoded), 32), enc, global.length, 2);
  let maxErr = 0;
  for (let i = 0; i < global.length; i++) maxErr = Math.max(maxErr, Math.abs(avg[i] - (ups[0].delta[i] + ups[1].delta[i]) / 2));
  // stochastic rounding error of 2 parties' vectors at gamma = 65536, after the inverse rotation
  expect(maxErr).toBeLessThan(1e-3);
  expect(maxErr).toBeGreaterThan(0);
  const next = nextGlobalModel(global, modularSum(ups.map((u) => u.encoded), 32), 2, enc, { type: 'fedavg', learningRate: 1 }, newServerState());
  for (let i = 0; i < global.length; i++) expect(Math.abs(next[i] - (global[i] + avg[i]))).toBeLessThan(1e-5);
  parties.forEach((p) => p.m.dispose());
});

test('the node refuses a mechanism it cannot run instead of training without it', () => {
  const pol = policy();
  const p = party(3, pol);
  const global = initSharedParams(sharedParameterLayout(pol.model, pol.vocabularies), 1);
  const rn = { ...pol, privacy: { ...pol.privacy, mechanism: 'round-noise' as const } };
  expect(() => computeLocalUpdate(p.m, p.positives, p.domains, { policy: rn, runId: 'r', round: 1, global }, p.rng)).toThrow(/"round-noise" is not supported by this node yet/);
  p.m.dispose();
});
