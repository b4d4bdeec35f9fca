/**
 * Masks are really there and really fresh: y_u - x_u equals the mask recomputed independently
 * (libsodium-sumo ChaCha20 over seeds re-derived from the party's replayed randomness), masks differ
 * across rounds and pairs, and the pair seed is bound to the round.
 */
import sumo from 'libsodium-wrappers-sumo';
import { equalBytes } from '../../../shared/crypto/hash';
import { pairKdf } from '../../../shared/crypto/kdf';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { x25519, x25519PublicKey } from '../../../shared/crypto/x25519';
import type { MaskedInput } from '../../../shared/secagg/messages';
import { makeFederation, randomInput, runRound, seededRng, TEST_RUN } from './harness';

beforeAll(async () => {
  await sodiumReady();
  await sumo.ready;
});

const FED = 'fed-test';

/** PRG(seed) mod 2^bits from libsodium-sumo (independent of shared/crypto/prg.ts). */
function refPrg(seed: Uint8Array, m: number, bits: number): number[] {
  const ks = sumo.crypto_stream_chacha20_ietf_xor_ic(new Uint8Array(4 * m), new Uint8Array(12), 0, seed);
  const dv = new DataView(ks.buffer, ks.byteOffset, ks.byteLength);
  return Array.from({ length: m }, (_, i) => dv.getUint32(4 * i, true) % 2 ** bits);
}

/** The secrets a client drew, replayed from its deterministic rng: c_sk, s_sk, b (in that order). */
function replaySecrets(label: string, id: string) {
  const rng = seededRng(`${label}/${id}`);
  const cSk = rng(32);
  const sSk = rng(32);
  const b = rng(32);
  return { cSk, sSk, sPk: x25519PublicKey(sSk), b };
}

function maskOf(run: ReturnType<typeof runRound>, inputs: Map<string, Uint32Array>, id: string, bits: number): number[] {
  const y = run.sent.find((msg) => msg.type === 'masked-input' && msg.sender === id) as MaskedInput;
  const x = inputs.get(id)!;
  return Array.from(y.vector, (v, i) => (v - x[i] + 2 ** bits) % 2 ** bits);
}

describe('masks', () => {
  for (const [graph, degree] of [['full graph', 0], ['SecAgg+ graph k=2', 2]] as const) {
    test(`y - x equals PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv) at every coordinate (${graph}, b=20)`, () => {
      const n = 5;
      const m = 700;
      const bits = 20;
      const fed = makeFederation(n);
      const rng = seededRng('mask-inputs');
      const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, bits)]));
      const run = runRound({ fed, params: { threshold: degree ? 2 : 3, degree, bits }, m, inputs, rngLabel: 'masks', round: 11 });
      expect(run.result.kind).toBe('done');
      for (const u of fed.ids) {
        const me = replaySecrets('masks', u);
        const want = refPrg(me.b, m, bits);
        const partners = run.clients.get(u)!.maskPartners;
        expect(partners.length).toBe(degree ? degree : n - 1);
        for (const v of partners) {
          const dh = x25519(me.sSk, replaySecrets('masks', v).sPk);
          const seed = pairKdf(dh, 'secagg/pair-mask', FED, TEST_RUN, 11, u, v);
          const p = refPrg(seed, m, bits);
          for (let i = 0; i < m; i++) want[i] = (want[i] + (v > u ? p[i] : 2 ** bits - p[i])) % 2 ** bits;
        }
        expect(maskOf(run, inputs, u, bits)).toEqual(want);
      }
    });
  }

  test('masks are fresh across rounds even with the same X25519 keys (pair seeds are bound to the round)', () => {
    // Same rng label => same c/s keys and the same self-mask seed b in both rounds (a worst case a
    // real client never hits: it draws fresh keys). Only the round binding of s_uv can make the
    // masks differ; a pair seed reused across rounds makes this test fail.
    const fed = makeFederation(4);
    const m = 256;
    const inputs = new Map(fed.ids.map((id) => [id, new Uint32Array(m)]));
    const params = { threshold: 3, degree: 0, bits: 32 };
    const r7 = runRound({ fed, params, m, inputs, rngLabel: 'reuse', round: 7 });
    const r8 = runRound({ fed, params, m, inputs, rngLabel: 'reuse', round: 8 });
    for (const u of fed.ids) {
      const a = maskOf(r7, inputs, u, 32);
      const b = maskOf(r8, inputs, u, 32);
      const { b: selfSeed } = replaySecrets('reuse', u);
      const self = refPrg(selfSeed, m, 32);
      // remove the (identical) self mask; the pair-mask sums must differ at (almost) every coordinate
      let same = 0;
      for (let i = 0; i < m; i++) if ((a[i] - self[i] + 2 ** 32) % 2 ** 32 === (b[i] - self[i] + 2 ** 32) % 2 ** 32) same++;
      expect(same).toBeLessThan(3);
    }
    const s = replaySecrets('reuse', fed.ids[0]);
    const t = replaySecrets('reuse', fed.ids[1]);
    const dh = x25519(s.sSk, t.sPk);
    expect(equalBytes(pairKdf(dh, 'secagg/pair-mask', FED, TEST_RUN, 7, fed.ids[0], fed.ids[1]), pairKdf(dh, 'secagg/pair-mask', FED, TEST_RUN, 8, fed.ids[0], fed.ids[1]))).toBe(false);
  });

  test('masks differ across pairs and from the self mask; masked inputs of zero vectors look uniform', () => {
    const fed = makeFederation(5);
    const m = 4096;
    const inputs = new Map(fed.ids.map((id) => [id, new Uint32Array(m)]));
    const run = runRound({ fed, params: { threshold: 3, degree: 0, bits: 32 }, m, inputs, rngLabel: 'pairs' });
    const seeds: Uint8Array[] = [];
    for (const u of fed.ids) {
      seeds.push(replaySecrets('pairs', u).b);
      for (const v of fed.ids) if (u < v) seeds.push(pairKdf(x25519(replaySecrets('pairs', u).sSk, replaySecrets('pairs', v).sPk), 'secagg/pair-mask', FED, TEST_RUN, 7, u, v));
    }
    const prgs = seeds.map((s) => refPrg(s, 64, 32).join(','));
    expect(new Set(prgs).size).toBe(seeds.length);
    // each masked zero vector: mean of the top bit near 1/2 (a missing mask would give all zeros)
    for (const u of fed.ids) {
      const y = maskOf(run, inputs, u, 32);
      const ones = y.filter((w) => w >= 2 ** 31).length;
      expect(Math.abs(ones / m - 0.5)).toBeLessThan(0.05);
    }
  });
});
