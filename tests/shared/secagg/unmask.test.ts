/**
 * recomputeAggregate (shared/secagg/unmask.ts): from the server's view of a completed round (the
 * survivors' masked inputs, their self-mask seeds, the dropped parties' mask keys) an auditor gets
 * exactly the server's sum, for full and sparse graphs and dropouts at every phase; a view with a
 * wrong seed, a wrong key, a missing or an extra secret is refused with the reason, never summed.
 */
import fc from 'fast-check';
import { sodiumReady } from '../../../shared/crypto/sodium';
import type { AdvertiseKeys } from '../../../shared/secagg/messages';
import type { SecAggServer, ServerStep } from '../../../shared/secagg/server';
import { recomputeAggregate, droppedWithNeighbours, type AdvertisedKeys, type ServerView } from '../../../shared/secagg/unmask';
import { makeFederation, modSum, randomInput, runRound, seededRng, type DropSchedule, type RoundRun } from './harness';

beforeAll(() => sodiumReady());

const feds = new Map<number, ReturnType<typeof makeFederation>>();
const fedOf = (n: number) => feds.get(n) ?? feds.set(n, makeFederation(n)).get(n)!;

function adsOf(run: RoundRun): Map<string, AdvertisedKeys> {
  return new Map(run.sent.filter((m): m is AdvertiseKeys => m.type === 'advertise-keys').map((m) => [m.sender, { sPk: m.sPk, selfMaskCommitment: m.selfMaskCommitment }]));
}

function recompute(server: SecAggServer, run: RoundRun, view: ServerView) {
  const sets = server.survivorsByPhase;
  return recomputeAggregate(server.ctx, [...sets.U2!], [...sets.U3!], adsOf(run), view);
}

const done = (s: ServerStep) => {
  if (s.kind !== 'done') throw new Error(`round did not complete: ${s.kind === 'aborted' ? s.reason : s.kind}`);
  return s;
};

describe('recomputeAggregate', () => {
  test('property: the server view gives the server sum (= the survivors\' inputs mod 2^bits), full and sparse graphs, any dropouts', () => {
    let withKeys = 0;
    let checked = 0;
    fc.assert(
      fc.property(
        fc.record({ n: fc.integer({ min: 3, max: 9 }), sparse: fc.boolean(), bits: fc.integer({ min: 8, max: 32 }), m: fc.integer({ min: 1, max: 200 }) }),
        fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 9, maxLength: 9 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat(),
        ({ n, sparse, bits, m }, dropDraw, roundSeed, inputSeed) => {
          const k = sparse && n >= 5 ? 2 * Math.floor((n - 2) / 2) : 0;
          const s = k === 0 ? n : k + 1;
          const t = Math.floor(s / 2) + 1;
          const fed = fedOf(n);
          const drops: DropSchedule = new Map();
          fed.ids.forEach((id, i) => dropDraw[i] >= 2 && dropDraw[i] <= 5 && drops.set(id, dropDraw[i]));
          const rng = seededRng(`unmask/${inputSeed}`);
          const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, bits)]));
          const run = runRound({ fed, params: { threshold: t, degree: k, bits }, m, inputs, drops, roundSeed, keepServerView: true });
          if (run.result.kind !== 'done') return; // the threshold rule (protocol.test.ts) decides aborts
          const view = run.result.view!;
          expect(view).toBeDefined();
          const r = recompute(run.server, run, view);
          if (!r.ok) throw new Error(r.problems.join('; '));
          expect(Array.from(r.sum)).toEqual(Array.from(run.result.sum));
          expect(Array.from(r.sum)).toEqual(Array.from(modSum(run.result.survivors.map((u) => inputs.get(u)!), m, bits)));
          checked++;
          if (view.maskKeys.size) withKeys++;
        },
      ),
      { numRuns: 60 },
    );
    // the runs exercised the interesting case: a dropped party's pair masks removed with its rebuilt key
    expect(checked).toBeGreaterThan(20);
    expect(withKeys).toBeGreaterThan(3);
  });

  test('a view that is not the server view is refused with the reason', () => {
    const fed = fedOf(5);
    const rng = seededRng('unmask/tamper');
    const m = 64;
    const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, m, 32)]));
    // party-004 shares keys, then drops before its masked input: its mask key is rebuilt
    const run = runRound({ fed, params: { threshold: 3, degree: 0, bits: 32 }, m, inputs, drops: new Map([['party-004', 3]]), keepServerView: true });
    const res = done(run.result);
    const view = res.view!;
    expect([...view.maskKeys.keys()]).toEqual(['party-004']);
    expect(droppedWithNeighbours(run.server.ctx, run.server.survivorsByPhase.U2!, new Set(run.server.survivorsByPhase.U3!))).toEqual(['party-004']);
    const ok = recompute(run.server, run, view);
    expect(ok.ok && Array.from(ok.sum)).toEqual(Array.from(res.sum));

    // byte 1: X25519 clamps bits of bytes 0 and 31, which give the same key
    const flip = (b: Uint8Array) => {
      const c = b.slice();
      c[1] ^= 1;
      return c;
    };
    const problems = (v: Partial<ServerView>) => {
      const r = recompute(run.server, run, { ...view, ...v });
      return r.ok ? [] : r.problems;
    };
    const seeds = new Map(view.selfMaskSeeds);
    seeds.set('party-001', flip(seeds.get('party-001')!));
    expect(problems({ selfMaskSeeds: seeds })).toEqual(['the self-mask seed of party-001 does not match its signed commitment']);
    expect(problems({ maskKeys: new Map([['party-004', flip(view.maskKeys.get('party-004')!)]]) })).toEqual(['the mask key of party-004 does not match its advertised public key']);
    expect(problems({ maskKeys: new Map() })).toEqual(['mask keys of none, expected those of the dropped parties with a surviving neighbour: party-004']);
    // a survivor's mask key is never part of the view (it would unmask that survivor's input)
    expect(problems({ maskKeys: new Map([...view.maskKeys, ['party-000', new Uint8Array(32)]]) })).toEqual([
      'mask keys of party-000, party-004, expected those of the dropped parties with a surviving neighbour: party-004',
      'the mask key of party-000 does not match its advertised public key',
    ]);
    const lessInputs = new Map(view.maskedInputs);
    lessInputs.delete('party-002');
    expect(problems({ maskedInputs: lessInputs })).toEqual(['masked inputs of party-000, party-001, party-003, expected those of U3 = party-000, party-001, party-002, party-003']);
    const shortInput = new Map(view.maskedInputs);
    shortInput.set('party-002', view.maskedInputs.get('party-002')!.subarray(1));
    expect(problems({ maskedInputs: shortInput })).toEqual(['the masked input of party-002 has 63 entries, the round\'s vectors 64']);
    // an altered masked input sums to another value: the audit layer catches it by its signed digest
    const altered = new Map(view.maskedInputs);
    const y = altered.get('party-002')!.slice();
    y[0] ^= 1;
    altered.set('party-002', y);
    const r = recompute(run.server, run, { ...view, maskedInputs: altered });
    expect(r.ok && Array.from(r.sum)).not.toEqual(Array.from(res.sum));
  });

  test('without keepServerView the server keeps no copies and hands out no view', () => {
    const fed = fedOf(3);
    const rng = seededRng('unmask/none');
    const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, 8, 32)]));
    const res = done(runRound({ fed, params: { threshold: 2, degree: 0, bits: 32 }, m: 8, inputs }).result);
    expect(res.view).toBeUndefined();
  });
});
