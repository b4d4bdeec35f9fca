/**
 * replayModelChain (shared/audit/replay.ts): an honest chain replays round by round, for FedAvg,
 * FedAdam (its moments carried across rounds and across an aborted round) and offer scope `own`;
 * every way a coordinator could publish a model its aggregates do not give, or hand the auditor
 * other bytes than it logged, is a failure at the entry it concerns.
 */
import { sodium } from '../../../shared/crypto/sodium';
import { verifyLog } from '../../../shared/audit/verify';
import { replayModelChain, type ReplayArtifacts } from '../../../shared/audit/replay';
import { generateLog, makeFederation, type GeneratedLog } from './fixture';

const from = (g: GeneratedLog, edit: Partial<{ model: (v: number, b: Uint8Array | null) => Uint8Array | null; aggregate: (k: string, b: Uint8Array | null) => Uint8Array | null }> = {}): ReplayArtifacts => ({
  model: (v) => (edit.model ?? ((_, b) => b))(v, g.artifacts.models.get(v) ?? null),
  aggregate: (runId, round) => (edit.aggregate ?? ((_, b) => b))(`${runId}/${round}`, g.artifacts.aggregates.get(`${runId}/${round}`) ?? null),
});

const completedEntries = (g: GeneratedLog) =>
  g.text
    .split('\n')
    .map((l, i) => ({ i, l }))
    .filter(({ l }) => l.includes('"type":"round-completed"'))
    .map(({ i }) => i);

describe('replayModelChain', () => {
  test('FedAvg: an aborted round and a dropped party; every completed round recomputed', async () => {
    const fed = await makeFederation({ rounds: 3 });
    const g = generateLog(fed, [{}, { abortAfter: 'share' }, { drop: [{ party: 'insurer2', phase: 'mask' }] }, {}], { chain: {} });
    expect(verifyLog(g.bytes, { policy: fed.policy, receipts: g.receipts.map((r, k) => ({ source: `r${k}`, receipt: r })) }).ok).toBe(true);
    const r = replayModelChain(g.bytes, [fed.policy], from(g));
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.replayed).toBe(3);
    expect(r.rounds.map((x) => [x.round, x.status])).toEqual([
      [1, 'replayed'],
      [3, 'replayed'],
      [4, 'replayed'],
    ]);
    expect(r.warnings).toEqual([]);
  });

  test('FedAdam: the moments carry over rounds; offer scope own averages item rows per provider', async () => {
    const fed = await makeFederation({
      rounds: 3,
      edit: (p) => {
        p.training.serverOptimizer = { type: 'fedadam', learningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 0.001 };
        p.catalogue.offers = { platform: [[0, 20]], insurer: [[20, 30]], insurer2: [[30, 40]] };
        p.training.offerScope = 'own';
      },
    });
    const g = generateLog(fed, [{}, { abortAfter: 'mask' }, { drop: [{ party: 'platform', phase: 'mask' }] }, {}], { chain: {} });
    const r = replayModelChain(g.bytes, [fed.policy], from(g));
    expect(r.failures).toEqual([]);
    expect(r.replayed).toBe(3);
    // the same log replayed under the FedAvg policy (another policy hash): the run's policy is not given
    const other = await makeFederation({ rounds: 3 });
    const r2 = replayModelChain(g.bytes, [other.policy], from(g));
    expect(r2.replayed).toBe(0);
    expect(r2.warnings.join('\n')).toMatch(/3 completed round\(s\) not replayed: its policy [0-9a-f]{64} is not among the given policies/);
  });

  test('a coordinator that publishes a model its aggregate does not give fails at that round; later rounds are not replayed', async () => {
    const fed = await makeFederation({ rounds: 3 });
    const g = generateLog(fed, [{}, {}, {}], { chain: { steer: (round, m) => round === 2 && (m[5] += 1e-3) } });
    // the log itself is consistent: verifyLog cannot see this
    expect(verifyLog(g.bytes, { policy: fed.policy, receipts: g.receipts.map((r, k) => ({ source: `r${k}`, receipt: r })) }).ok).toBe(true);
    const r = replayModelChain(g.bytes, [fed.policy], from(g));
    const [, second] = completedEntries(g);
    expect(r.ok).toBe(false);
    expect(r.failures).toHaveLength(1);
    expect(r.failures[0]).toMatchObject({ entry: second, field: 'replay.modelHash' });
    expect(r.rounds.map((x) => x.status)).toEqual(['replayed', 'failed', 'not-replayed']);
    expect(r.warnings.join('\n')).toMatch(/1 completed round\(s\) not replayed: round 2's logged model is not the one its aggregate gives/);
  });

  test('a one-ulp change of one parameter is caught', async () => {
    const fed = await makeFederation({ rounds: 1 });
    const g = generateLog(fed, [{}], {
      chain: {
        steer: (_, m) => {
          const b = new Float32Array([m[0]]);
          new Uint32Array(b.buffer)[0] ^= 1;
          m[0] = b[0];
        },
      },
    });
    expect(replayModelChain(g.bytes, [fed.policy], from(g)).failures.map((f) => f.field)).toEqual(['replay.modelHash']);
  });

  test('other bytes than the logged ones: aggregate, initial model, missing, wrong size, unreduced words', async () => {
    const fed = await makeFederation({ rounds: 2 });
    const g = generateLog(fed, [{}, {}], { chain: {} });
    const [first] = completedEntries(g);
    const flip = (b: Uint8Array | null) => {
      const c = Uint8Array.from(b!);
      c[7] ^= 1;
      return c;
    };
    const fields = (a: ReplayArtifacts) => replayModelChain(g.bytes, [fed.policy], a).failures.map((f) => [f.entry, f.field]);
    expect(fields(from(g, { aggregate: (k, b) => (k.endsWith('/1') ? flip(b) : b) }))).toEqual([[first, 'replay.aggregateHash']]);
    expect(fields(from(g, { aggregate: (k, b) => (k.endsWith('/2') ? null : b) }))).toEqual([[completedEntries(g)[1], 'replay.aggregate']]);
    expect(fields(from(g, { aggregate: (_, b) => b!.subarray(4) }))).toEqual([[first, 'replay.aggregate.length']]);
    const startIdx = g.text.split('\n').findIndex((l) => l.includes('"type":"run-started"'));
    expect(fields(from(g, { model: (_, b) => flip(b) }))).toEqual([[startIdx, 'replay.initialModelHash']]);
    expect(fields(from(g, { model: () => null }))).toEqual([[startIdx, 'replay.initialModel']]);
    expect(fields(from(g, { model: (_, b) => b!.subarray(0, 8) }))).toEqual([[startIdx, 'replay.initialModel.length']]);
    // a missing initial model leaves every round unreplayed, with a warning that says why
    const none = replayModelChain(g.bytes, [fed.policy], from(g, { model: () => null }));
    expect(none.replayed).toBe(0);
    expect(none.warnings.join('\n')).toMatch(/2 completed round\(s\) not replayed: its initial model is missing/);
  });

  test('with bitWidth < 32 a word at or above 2^bits is refused even when its hash is the logged one', async () => {
    const fed = await makeFederation({ rounds: 1, edit: (p) => (p.secagg.bitWidth = 30) });
    const g = generateLog(fed, [{}], { chain: {} });
    expect(replayModelChain(g.bytes, [fed.policy], from(g)).ok).toBe(true);
    // an unreduced aggregate whose hash the coordinator logged: rewrite the log's aggregateHash
    const agg = Uint8Array.from(g.artifacts.aggregates.get('run-1/1')!);
    agg[3] |= 0xc0; // word 0 >= 2^30
    const bad = g.text.replace(/"aggregateHash":"[0-9a-f]{64}"/, `"aggregateHash":"${sodium().to_hex(sodium().crypto_generichash(32, agg, null))}"`);
    const r = replayModelChain(new TextEncoder().encode(bad), [fed.policy], from(g, { aggregate: () => agg }));
    expect(r.failures.map((f) => [f.field, f.found])).toEqual([['replay.aggregate', expect.stringMatching(/^word 0 = \d+$/)]]);
  });
});

describe('replayModelChain with the server view (audit.auditorServerView): the aggregate recomputed from the signed masked inputs', () => {
  const viewFed = () =>
    makeFederation({
      rounds: 2,
      edit: (p) => {
        p.audit = { auditorArtifacts: true, auditorServerView: true };
        p.secagg.threshold = 2;
      },
    });
  const withViews = (g: GeneratedLog, edit: (k: string, b: Uint8Array | null) => Uint8Array | null = (_, b) => b): ReplayArtifacts => ({
    ...from(g),
    serverView: (runId, round) => edit(`${runId}/${round}`, g.artifacts.serverViews.get(`${runId}/${round}`) ?? null),
  });
  const editView = (b: Uint8Array | null, f: (v: Record<string, Record<string, string>>) => void) => {
    const v = JSON.parse(new TextDecoder().decode(b!));
    f(v);
    return new TextEncoder().encode(JSON.stringify(v));
  };
  const flipB64 = (s: string, at = 1) => {
    const b = Buffer.from(s, 'base64');
    b[at] ^= 1;
    return b.toString('base64');
  };

  test('real secure-aggregation rounds (a party dropped after sharing keys, an aborted round): every aggregate and model recomputed', async () => {
    const fed = await viewFed();
    const g = generateLog(fed, [{ drop: [{ party: 'insurer2', phase: 'mask' }] }, { abortAfter: 'consistency' }, {}], { chain: { secagg: true } });
    // the log carries the parties' own signatures over their real messages
    const v = verifyLog(g.bytes, { policy: fed.policy, receipts: g.receipts.map((r, k) => ({ source: `r${k}`, receipt: r })) });
    expect(v.failures).toEqual([]);
    expect(JSON.parse(new TextDecoder().decode(g.artifacts.serverViews.get('run-1/1')!)).maskKeys).toHaveProperty('insurer2');
    const r = replayModelChain(g.bytes, [fed.policy], withViews(g));
    expect(r.failures).toEqual([]);
    expect(r.rounds.map((x) => [x.round, x.status, x.aggregateRecomputed])).toEqual([
      [1, 'replayed', true],
      [3, 'replayed', true],
    ]);
    expect(r.aggregatesRecomputed).toBe(2);
  });

  test('a coordinator that logs and applies another aggregate than the unmasked sum: the model chain alone holds, the server view does not', async () => {
    const fed = await viewFed();
    const g = generateLog(fed, [{}, {}], { chain: { secagg: true, fakeAggregate: (round, sum) => round === 2 && (sum[3] = (sum[3] + 65536) >>> 0) } });
    const r = replayModelChain(g.bytes, [fed.policy], withViews(g));
    const second = completedEntries(g)[1];
    expect(r.failures.map((f) => [f.entry, f.field])).toEqual([[second, 'replay.serverView.aggregateHash']]);
    expect(r.rounds.map((x) => x.status)).toEqual(['replayed', 'failed']);
  });

  test('a server view that is not what the parties signed or committed to fails; so does a missing one', async () => {
    const fed = await viewFed();
    const g = generateLog(fed, [{}, {}], { chain: { secagg: true } });
    const [first] = completedEntries(g);
    const fails = (edit: (k: string, b: Uint8Array | null) => Uint8Array | null) => replayModelChain(g.bytes, [fed.policy], withViews(g, edit)).failures.map((f) => [f.entry, f.field, f.found]);
    const at1 = (f: (v: Record<string, Record<string, string>>) => void) => (k: string, b: Uint8Array | null) => (k.endsWith('/1') ? editView(b, f) : b);
    expect(fails(at1((v) => (v.maskedInputs.platform = flipB64(v.maskedInputs.platform))))).toEqual([[first, 'replay.serverView.maskedInputs.platform', expect.stringMatching(/^[0-9a-f]{64}$/)]]);
    expect(fails(at1((v) => (v.selfMaskSeeds.insurer = flipB64(v.selfMaskSeeds.insurer))))).toEqual([[first, 'replay.serverView', 'the self-mask seed of insurer does not match its signed commitment']]);
    expect(fails(at1((v) => delete v.selfMaskSeeds.insurer))).toEqual([[first, 'replay.serverView', 'self-mask seeds of insurer2, platform, expected those of U3 = insurer, insurer2, platform']]);
    expect(fails(at1((v) => (v.extra = {})))).toEqual([[first, 'replay.serverView', expect.stringMatching(/Unrecognized key/)]]);
    expect(fails((k, b) => (k.endsWith('/2') ? null : b))).toEqual([[completedEntries(g)[1], 'replay.serverView', 'missing']]);
  });
});
