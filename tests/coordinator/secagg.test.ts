/**
 * The real secure-aggregation round over gRPC on loopback (mutual TLS, port 0): 3 parties, 2
 * rounds, one party killed during masked input of round 1. Each test node runs the SecAggClient
 * state machine driven only by the coordinator's pushed events. The coordinator's unmasked sum
 * must equal the sum mod 2^b of the survivors' inputs, computed here from the parties' own inputs,
 * and the stored model must be the FedAvg step of that sum, computed here independently.
 */
import { EventKind, Phase } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { encodedDimension } from '../../shared/dp/encode';
import { modularSum, nextGlobalModel } from '../../shared/fl/aggregate';
import { publicRoundSeed } from '../../shared/fl/seeds';
import { newServerState } from '../../shared/fl/server';
import { sodium } from '../../shared/crypto/sodium';
import type { SecAggProtocolFactory } from '../../coordinator/rounds/secagg-protocol';
import { enrol, makeEnv, ManualTimers, modelDim, operator, policyYaml, secaggFederation, signaturesFor, startCoordinator, startRun, TestParty, testPolicy, unary } from './helpers/harness';
import { MiniNode } from './helpers/mini-node';
import { secaggCoordinator } from './helpers/fixture';

describe('secure aggregation over gRPC', () => {
  const fx = secaggCoordinator(['platform', 'insurer', 'insurer2']);

  test('3 parties, 2 rounds, one killed during masked input: the sum is exactly the survivors\' inputs', async () => {
    const { env, coord, timers } = fx;
    const fed = await secaggFederation(env, coord, 2);
    const { op, policy, dim, vectorLength } = fed;
    const parties = (fx.parties = fed.parties);
    const nodes = (fx.nodes = parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, vectorLength)));
    nodes[2].killAt = { round: 1, phase: Phase.PHASE_MASKED_INPUT };
    const initial = new Float32Array(dim).map((_, i) => ((i % 11) - 5) / 50);
    const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(initial.buffer));
    const runId = st.runId;
    const factory = coord.ctx.rounds['d'].factory as SecAggProtocolFactory;

    // round 1: all advertise and share; insurer2 dies when masked input opens; the deadline drops it
    await Promise.all(nodes.slice(0, 2).map((n) => n.sentIn(1, Phase.PHASE_MASKED_INPUT)));
    expect(nodes[2].dead).toBe(true);
    expect(timers.fire()).toBe(1);
    const r1 = await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1);
    const proto1 = factory.created.find((p) => p['start'].round === 1)!;
    const expectedSum1 = modularSum([nodes[0].input(1), nodes[1].input(1)], 32);
    expect(Buffer.compare(Buffer.from(proto1.lastSum!.buffer), Buffer.from(expectedSum1.buffer))).toBe(0);
    // the stored model is FedAvg of the decoded survivors' average, computed here independently
    const state = newServerState();
    const rotationSeed = publicRoundSeed('rotation', policy.federationId, runId, 1);
    const expected1 = nextGlobalModel(initial, expectedSum1, 2, { gamma: policy.secagg.scale, bits: 32, rotationSeed }, { type: 'fedavg', learningRate: 1 }, state);
    const m1 = await parties[0].download(r1.modelVersion);
    expect(Buffer.compare(Buffer.from(m1.data), Buffer.from(expected1.buffer))).toBe(0);
    expect(Buffer.compare(Buffer.from(m1.info.modelHash), Buffer.from(sodium().crypto_generichash(32, m1.data, null)))).toBe(0);

    // round 2 without insurer2: its advertise deadline passes, the two others complete the round
    await Promise.all(nodes.slice(0, 2).map((n) => n.sentIn(2, Phase.PHASE_ADVERTISE_KEYS)));
    expect(timers.fire()).toBe(1);
    const r2 = await nodes[1].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 2);
    const proto2 = factory.created.find((p) => p['start'].round === 2)!;
    const expectedSum2 = modularSum([nodes[0].input(2), nodes[1].input(2)], 32);
    expect(Buffer.compare(Buffer.from(proto2.lastSum!.buffer), Buffer.from(expectedSum2.buffer))).toBe(0);
    // the sum is not any single party's input (masks cancelled only in the sum)
    expect(Buffer.compare(Buffer.from(proto2.lastSum!.buffer), Buffer.from(nodes[0].input(2).buffer))).not.toBe(0);
    const expected2 = nextGlobalModel(expected1, expectedSum2, 2, { gamma: policy.secagg.scale, bits: 32, rotationSeed: publicRoundSeed('rotation', policy.federationId, runId, 2) }, { type: 'fedavg', learningRate: 1 }, state);
    const m2 = await parties[1].download(r2.modelVersion);
    expect(Buffer.compare(Buffer.from(m2.data), Buffer.from(expected2.buffer))).toBe(0);

    await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_RUN_FINISHED);
    const fin = await unary(op.client.getRunStatus.bind(op.client), { runId }, op.metadata);
    expect(fin).toMatchObject({ state: 'completed', roundsCompleted: 2, latestModelVersion: 3 });
    const audit = (await coord.ctx.repo.auditEntries()).map((e) => JSON.parse(Buffer.from(e.entry).toString()));
    const done1 = audit.find((a) => a.type === 'round-completed' && a.round === 1);
    // one round-phase audit entry per closed phase (shared/audit), with the accepted parties
    const phases1 = Object.fromEntries(audit.filter((a) => a.type === 'round-phase' && a.round === 1).map((a) => [a.phase, a.parties]));
    expect(phases1).toEqual({ advertise: ['insurer', 'insurer2', 'platform'], share: ['insurer', 'insurer2', 'platform'], mask: ['insurer', 'platform'], consistency: ['insurer', 'platform'], unmask: ['insurer', 'platform'] });
    expect(done1.survivors).toEqual(['insurer', 'platform']);
    expect(nodes.flatMap((n) => n.errors)).toEqual([]);
    op.client.close();
  });
});

describe('secure-aggregation payload checks over gRPC', () => {
  test('a payload from another sender, undecodable, or with a broken inner signature is refused and stores nothing', async () => {
    const env = await makeEnv(['platform', 'insurer']);
    const timers = new ManualTimers();
    const coord = await startCoordinator(env, undefined as never, timers);
    const parties = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
    try {
      const op = operator(env, coord.grpcPort);
      await enrol(env, op, parties, false);
      const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
      const dim = modelDim(policy);
      const m = encodedDimension(dim, true);
      const streams = parties.map((p) => p.subscribe(coord.publicKey));
      const st = await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(dim * 4));
      await Promise.all(streams.map((s) => s.next((e) => e.kind === EventKind.EVENT_KIND_PHASE_STARTED && e.round === 1)));
      const { SecAggClient } = await import('../../shared/secagg/client');
      const { encodeClientMessage } = await import('../../shared/secagg/wire');
      const peers = Object.fromEntries(policy.parties.map((q) => [q.name, new Uint8Array(Buffer.from(q.publicKey, 'base64'))]));
      const clientOf = (p: TestParty) =>
        new SecAggClient({
          federationId: policy.federationId,
          runId: st.runId,
          round: 1,
          params: { threshold: policy.secagg.threshold, degree: 0, bits: 32 },
          roundSeed: publicRoundSeed('graph', policy.federationId, st.runId, 1),
          vectorLength: m,
          peers,
          identity: { partyId: p.name, secretKey: p.keys.secretKey },
          coordinatorPublicKey: coord.publicKey,
        });
      const insurerAd = encodeClientMessage(clientOf(parties[1]).start());
      const counts = await coord.ctx.repo.snapshotCounts();
      const bad = async (payload: Uint8Array, code: number, re: RegExp) => {
        const e = await parties[0].phase('AdvertiseKeys', st.runId, 1, payload).then(
          () => null,
          (err) => err,
        );
        expect({ code: e?.code, details: e?.details }).toEqual({ code, details: expect.stringMatching(re) });
      };
      await bad(insurerAd, 7, /payload is from "insurer" but the request was signed by party "platform"/); // PERMISSION_DENIED
      await bad(new Uint8Array([0xde, 0xad, 0xbe, 0xef]), 3, /./); // INVALID_ARGUMENT (undecodable)
      const platformClient = clientOf(parties[0]);
      const ad = platformClient.start();
      await bad(encodeClientMessage({ ...ad, federationId: 'other' }), 16, /./); // signature no longer verifies: UNAUTHENTICATED
      expect(await coord.ctx.repo.snapshotCounts()).toEqual(counts);
      expect(coord.ctx.rounds.binding()?.phase).toBe('advertise');
      // the genuine advertisements are still accepted afterwards
      expect((await parties[0].phase('AdvertiseKeys', st.runId, 1, encodeClientMessage(ad))).accepted).toBe(1);
      expect((await parties[1].phase('AdvertiseKeys', st.runId, 1, insurerAd)).accepted).toBe(2);
      await streams[0].next((e) => e.phase === Phase.PHASE_SHARE_KEYS && e.round === 1);
      for (const s of streams) s.cancel();
      op.client.close();
    } finally {
      for (const p of parties) p.close();
      await coord.close();
    }
  });
});

describe('server optimizer state across a restart', () => {
  test('optimizer state codec round-trips and refuses a foreign shape', async () => {
    const { encodeOptimizerState, decodeOptimizerState } = await import('../../coordinator/rounds/secagg-protocol');
    const st = { m: new Float32Array([0.5, -1.25, 3]), v: new Float32Array([0.25, 2, 9]), steps: 7 };
    const back = decodeOptimizerState(encodeOptimizerState(st), 3);
    expect(back.steps).toBe(7);
    expect(Array.from(back.m!)).toEqual([0.5, -1.25, 3]);
    expect(Array.from(back.v!)).toEqual([0.25, 2, 9]);
    expect(decodeOptimizerState(null, 3)).toEqual(newServerState());
    expect(() => decodeOptimizerState(encodeOptimizerState(st), 4)).toThrow(/3 coordinates, the model has 4/);
    expect(() => decodeOptimizerState(new Uint8Array(12).fill(9), 3)).toThrow(/unknown format/);
  });

  test('FedAdam: a restart between rounds resumes the moments stored with the model (same bytes as an uninterrupted run)', async () => {
    const env = await makeEnv(['platform', 'insurer']);
    let timers = new ManualTimers();
    let coord = await startCoordinator(env, undefined as never, timers);
    let parties = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
    const keys = parties.map((p) => p.keys);
    let nodes: MiniNode[] = [];
    try {
      const op = operator(env, coord.grpcPort);
      await enrol(env, op, parties, false);
      op.client.close();
      const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 2 });
      policy.training.serverOptimizer = { type: 'fedadam', learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
      const dim = modelDim(policy);
      const m = encodedDimension(dim, true);
      nodes = parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, m));
      const initial = new Float32Array(dim).map((_, i) => (i % 5) / 10);
      const op1 = operator(env, coord.grpcPort);
      const st = await startRun(op1.client, op1.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(initial.buffer));
      op1.client.close();
      const r1 = await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1);
      // restart while round 2 is open: it is aborted and round 3 starts from version 2 and its stored moments
      for (const n of nodes) n.stream.cancel();
      for (const p of parties) p.close();
      await coord.close();
      timers = new ManualTimers();
      coord = await startCoordinator(env, undefined as never, timers);
      parties = ['platform', 'insurer'].map((n, i) => new TestParty(n, env, coord.grpcPort, { keys: keys[i] }));
      nodes = parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, m));
      const r3 = await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 3);
      expect((await coord.ctx.repo.roundRow(st.runId, 2))?.abortReason).toMatch(/coordinator restarted/);
      // the same two FedAdam steps computed here with one continuous optimizer state
      const state = newServerState();
      const opt = { type: 'fedadam' as const, learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
      const enc = (round: number) => ({ gamma: policy.secagg.scale, bits: 32, rotationSeed: publicRoundSeed('rotation', policy.federationId, st.runId, round) });
      const w1 = nextGlobalModel(initial, modularSum(nodes.map((n) => n.input(1)), 32), 2, enc(1), opt, state);
      const w3 = nextGlobalModel(w1, modularSum(nodes.map((n) => n.input(3)), 32), 2, enc(3), opt, state);
      const got1 = await parties[0].download(r1.modelVersion);
      const got3 = await parties[1].download(r3.modelVersion);
      expect(Buffer.compare(Buffer.from(got1.data), Buffer.from(w1.buffer))).toBe(0);
      expect(Buffer.compare(Buffer.from(got3.data), Buffer.from(w3.buffer))).toBe(0);
      expect(state.steps).toBe(2);
      expect(nodes.flatMap((n) => n.errors)).toEqual([]);
    } finally {
      for (const n of nodes) n.stream.cancel();
      for (const p of parties) p.close();
      await coord.close();
    }
  });
});
