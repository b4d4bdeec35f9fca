/**
 * Distributed noise (round-noise, noiseMode distributed): each party adds sigma^2/n_min and every
 * observer must see n_min shares; a party can remove its own, so a round whose masked inputs come
 * from fewer than n_min + 1 parties must never be unmasked. The coordinator aborts it when masked
 * input closes; the pure rule is also checked on its own, and against every valid policy.
 */
import { EventKind, Phase } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { noiseFloorViolation } from '../../shared/fl/noise-floor';
import { defaultPolicy } from '../../shared/policy/defaults';
import { policySchema } from '../../shared/policy/schema';
import { modelDim, policyYaml, secaggFederation, signaturesFor, startRun } from './helpers/harness';
import { MiniNode } from './helpers/mini-node';
import { secaggCoordinator } from './helpers/fixture';

describe('distributed-noise floor', () => {
  test('the rule: only round-noise + distributed, and only below n_min', () => {
    const key = (c: string) => c.repeat(43) + '=';
    const p = defaultPolicy({
      federationId: 'fb-test',
      coordinator: { name: 'coordinator', publicKey: key('C') },
      parties: ['A', 'B', 'D'].map((c, k) => ({ name: `p${k}`, publicKey: key(c) })),
      catalogue: { hash: 'ab'.repeat(32), numItems: 10 },
    });
    const base = { ...p, privacy: { ...p.privacy, mechanism: 'round-noise' as const, noiseMode: 'distributed' as const, nMin: 2 } };
    expect(noiseFloorViolation(base, 2)).toMatch(/at least n_min \+ 1 = 3 parties .* only 2 sent a masked input/);
    expect(noiseFloorViolation(base, 1)).not.toBeNull();
    expect(noiseFloorViolation(base, 3)).toBeNull();
    expect(noiseFloorViolation({ ...base, privacy: { ...base.privacy, noiseMode: 'per-party' } }, 1)).toBeNull();
    expect(noiseFloorViolation({ ...base, privacy: { ...base.privacy, mechanism: 'local-dpsgd' } }, 1)).toBeNull();
  });

  test('every valid policy: whatever round it lets be unmasked, each party still sees n_min noise shares besides its own', () => {
    const key = (k: number) => String.fromCharCode(65 + k).repeat(43) + '=';
    let valid = 0;
    for (let n = 2; n <= 8; n++) {
      for (let nMin = 1; nMin <= n + 1; nMin++) {
        const p = defaultPolicy({
          federationId: 'fb-test',
          coordinator: { name: 'coordinator', publicKey: key(25) },
          parties: Array.from({ length: n }, (_, k) => ({ name: `p${k}`, publicKey: key(k) })),
          catalogue: { hash: 'ab'.repeat(32), numItems: 10 },
        });
        const input = { ...p, secagg: { ...p.secagg, threshold: 2 }, privacy: { ...p.privacy, mechanism: 'round-noise' as const, noiseMode: 'distributed' as const, nMin } };
        const parsed = policySchema.safeParse(input);
        if (!parsed.success) continue;
        valid++;
        for (let survivors = 0; survivors <= n; survivors++) {
          if (noiseFloorViolation(parsed.data, survivors) !== null) continue;
          // the observer party subtracts its own input and noise share: survivors - 1 shares are left
          if (survivors - 1 < nMin) throw new Error(`n=${n} n_min=${nMin}: a round with ${survivors} masked inputs is unmasked, a party then sees ${survivors - 1} shares besides its own`);
        }
      }
    }
    expect(valid).toBeGreaterThan(10);
  });

  describe('over gRPC', () => {
    const fx = secaggCoordinator(['platform', 'insurer', 'insurer2']);

    test('a party dropping in masked input leaves 2 < n_min + 1 = 3 inputs: the round aborts, nothing is unmasked', async () => {
      const { env, coord, timers } = fx;
      const fed = await secaggFederation(env, coord, 1);
      const { op, policy, vectorLength } = fed;
      const parties = (fx.parties = fed.parties);
      policy.privacy = { ...policy.privacy, mechanism: 'round-noise', noiseMode: 'distributed', nMin: 2 };
      const nodes = (fx.nodes = parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, vectorLength)));
      nodes[2].killAt = { round: 1, phase: Phase.PHASE_MASKED_INPUT };
      await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(modelDim(policy) * 4));
      await Promise.all(nodes.slice(0, 2).map((n) => n.sentIn(1, Phase.PHASE_MASKED_INPUT)));
      expect(timers.fire()).toBe(1); // the masked-input deadline passes without insurer2
      const ab = await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_ABORTED && e.round === 1);
      expect(ab.abortReason).toMatch(/n_min \+ 1 = 3 parties .* only 2 sent a masked input/);
      // no consistency or unmask phase was ever opened for round 1
      expect(nodes[0].stream.events.some((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === 1 && e.phase === Phase.PHASE_UNMASKING)).toBe(false);
      expect(nodes[0].stream.events.some((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === 1 && e.phase === Phase.PHASE_CONSISTENCY_CHECK)).toBe(false);
      op.client.close();
    });
  });
});
