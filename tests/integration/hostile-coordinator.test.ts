/**
 * A real `node join` facing a coordinator that signs with the pinned key but misbehaves (a fake
 * ParticipantService over mutual TLS on loopback, running the real secure-aggregation server and a
 * real second party). The node is charged for a round only when its masked input leaves it, once:
 *   - a masked-input event the secure-aggregation state machine refuses (here: sent before
 *     share-keys) charges nothing and uploads nothing;
 *   - the same signed masked-input event sent again after the upload is ignored: one charge, one
 *     upload, and the node stays in the round;
 *   - a model download that stalls is given up after a phase's time (the policy's phaseSeconds):
 *     the round is abandoned and the node goes on with the next event instead of hanging;
 *   - a ROUND_COMPLETED without the new model's hash: the model is not downloaded nor adopted;
 *   - a round started after the run completed the policy's training.rounds (2): refused, nothing
 *     charged nor sent; a retried round whose number passes 2 after an aborted one is taken part in.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { EventKind, Phase, PhaseEvent, ParticipantServiceService, PhaseMessageBody, type SignedEvent } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { generateSynthetic } from '../../participant-node/data/generate';
import { initNode, loadIdentity } from '../../participant-node/identity';
import { importCsv } from '../../participant-node/data/import';
import { joinFederation } from '../../participant-node/federation/client';
import { loadDataset } from '../../participant-node/data/store';
import { readLedger } from '../../participant-node/privacy/ledger';
import { roundEncodeParams } from '../../participant-node/federation/update';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { sodium, sodiumReady } from '../../shared/crypto/sodium';
import { signEvent } from '../../shared/proto/envelope';
import { parsePolicyYaml } from '../../shared/policy/schema';
import { layoutSize, sharedParameterLayout } from '../../shared/model/layout';
import { SecAggServer, type ServerStep } from '../../shared/secagg/server';
import { SecAggClient } from '../../shared/secagg/client';
import { publicRoundSeed } from '../../shared/fl/seeds';
import { encodedDimension } from '../../shared/dp/encode';
import { decodeClientMessage, encodeServerMessage } from '../../shared/secagg/wire';
import { makeCerts } from '../../coordinator/certs/certs';
import { until } from '../coordinator/helpers/harness';
import { smallPolicy } from './policy';

type Mode = 'mask-before-share' | 'mask-replayed' | 'download-stalls' | 'completed-unpinned' | 'rounds-exceeded' | 'retried-round';

async function hostile(mode: Mode) {
  await sodiumReady();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-hostile-'));
  const certs = await makeCerts({ out: path.join(dir, 'certs'), parties: ['platform', 'insurer'] });
  const gen = path.join(dir, 'gen');
  await generateSynthetic({ out: gen, seed: 5, scale: 'small', parties: ['platform', 'insurer'], usersPerParty: 40, itemsPerParty: 20 });
  const nd = path.join(dir, 'node');
  await initNode(nd, 'platform');
  await importCsv({ dataDir: nd, users: path.join(gen, 'platform', 'users.csv'), items: path.join(gen, 'platform', 'items.csv'), interactions: path.join(gen, 'platform', 'interactions.csv') });
  const id = await loadIdentity(nd);
  const coord = ed25519Keygen();
  const ins = ed25519Keygen();
  const policyFile = path.join(dir, 'policy.yaml');
  fs.writeFileSync(policyFile, stringify(smallPolicy({ ds: loadDataset(nd), parties: ['platform', 'insurer'], coordinatorKey: coord.publicKey, keys: { platform: id.publicKey, insurer: ins.publicKey }, samplingRate: 0.25, phaseSeconds: mode === 'download-stalls' ? 2 : 20 })));
  const policy = parsePolicyYaml(fs.readFileSync(policyFile, 'utf8'));
  const dim = layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
  const model = new Uint8Array(dim * 4);
  const RUN = 'run-1';
  const R = 1;
  const vlen = encodedDimension(dim, roundEncodeParams(policy, RUN, R).rotationSeed !== null);
  const info = { federationId: policy.federationId, runId: RUN, round: R, params: { threshold: 2, degree: policy.secagg.neighbourDegree, bits: policy.secagg.bitWidth }, roundSeed: publicRoundSeed('graph', policy.federationId, RUN, R), vectorLength: vlen, peers: { platform: id.publicKey, insurer: ins.publicKey } };
  const server = new SecAggServer({ ...info, identity: { secretKey: coord.secretKey } });
  const insurer = new SecAggClient({ ...info, identity: { partyId: 'insurer', secretKey: ins.secretKey }, coordinatorPublicKey: coord.publicKey });
  let stream: grpc.ServerWritableStream<unknown, SignedEvent> | null = null;
  let seq = 0;
  const event = (p: Partial<PhaseEvent>) => {
    const s = signEvent(PhaseEvent.encode(PhaseEvent.fromPartial({ federationId: policy.federationId, runId: RUN, round: R, parties: ['platform', 'insurer'], sequence: String(++seq), ...p })).finish(), coord.secretKey);
    stream!.write(s);
    return s;
  };
  const state = { uploads: 0, replayed: false, downloads: [] as number[], advertised: [] as number[] };
  // the protocol's next step: the second party answers in process, the node gets a signed event
  const step = (st: ServerStep, phase: Phase) => {
    if (st.kind !== 'send') return;
    for (const m of st.messages) {
      if (m.to === 'insurer') {
        const r = server.receive(insurer.handle(m.message, m.message.type === 'server-shares' ? new Uint32Array(vlen) : undefined));
        if (r.complete) setImmediate(() => step(server.deadlinePassed(), phase + 1));
      } else {
        const sent = event({ kind: EventKind.EVENT_KIND_PHASE_STARTED, phase, payload: encodeServerMessage(m.message) });
        if (mode === 'mask-replayed' && phase === Phase.PHASE_MASKED_INPUT) {
          // once the masked input is in, the same signed event again
          void until('the upload', () => state.uploads === 1, 30_000).then(() => {
            stream!.write(sent);
            state.replayed = true;
          });
        }
      }
    }
  };
  const ack = (phase: Phase) => ({ runId: RUN, round: R, phase, accepted: 1 });
  const onPhase = (phase: Phase) => (call: grpc.ServerUnaryCall<{ body: Uint8Array }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
    const r = server.receive(decodeClientMessage(PhaseMessageBody.decode(call.request.body).payload));
    cb(null, ack(phase));
    if (r.complete) setImmediate(() => step(server.deadlinePassed(), phase + 1));
  };
  const impl = {
    subscribe(call: grpc.ServerWritableStream<unknown, SignedEvent>) {
      stream = call;
      setImmediate(() => {
        event({ kind: EventKind.EVENT_KIND_HELLO });
        if (mode === 'completed-unpinned') {
          event({ kind: EventKind.EVENT_KIND_ROUND_COMPLETED, modelVersion: 2 }); // no modelHash, no audit head
          event({ kind: EventKind.EVENT_KIND_RUN_FINISHED });
          return;
        }
        if (mode === 'rounds-exceeded' || mode === 'retried-round') {
          // the policy plans 2 rounds: both completed (signed, with the model's hash), then a 3rd;
          // or round 2 aborted and retried as round 3
          const modelHash = sodium().crypto_generichash(32, model, null);
          event({ kind: EventKind.EVENT_KIND_ROUND_COMPLETED, round: 1, modelVersion: 1, modelHash });
          if (mode === 'rounds-exceeded') event({ kind: EventKind.EVENT_KIND_ROUND_COMPLETED, round: 2, modelVersion: 1, modelHash });
          else event({ kind: EventKind.EVENT_KIND_ROUND_ABORTED, round: 2, abortReason: 'only 1 parties in phase share, fewer than t=2', modelVersion: 1 });
          event({ kind: EventKind.EVENT_KIND_PHASE_STARTED, phase: Phase.PHASE_ADVERTISE_KEYS, round: 3, modelVersion: 1 });
          return;
        }
        event({ kind: EventKind.EVENT_KIND_PHASE_STARTED, phase: Phase.PHASE_ADVERTISE_KEYS, modelVersion: 1 });
        if (mode !== 'mask-before-share') server.receive(insurer.start());
      });
    },
    downloadModel(call: grpc.ServerWritableStream<{ body: Uint8Array }, unknown>) {
      state.downloads.push(1);
      call.write({ info: { version: 1, modelHash: sodium().crypto_generichash(32, model, null), totalBytes: String(dim * 4), chunkCount: 1, parentVersion: 0 }, index: 0, data: new Uint8Array(0) });
      if (mode === 'download-stalls') return; // the announced bytes never come, the stream never ends
      call.write({ info: undefined, index: 0, data: model });
      call.end();
    },
    advertiseKeys: (call: grpc.ServerUnaryCall<{ body: Uint8Array }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      state.advertised.push(PhaseMessageBody.decode(call.request.body).header!.round);
      if (mode === 'rounds-exceeded' || mode === 'retried-round') return cb(null, { runId: RUN, round: 3, phase: Phase.PHASE_ADVERTISE_KEYS, accepted: 1 });
      if (mode !== 'mask-before-share') return onPhase(Phase.PHASE_ADVERTISE_KEYS)(call, cb);
      cb(null, ack(Phase.PHASE_ADVERTISE_KEYS));
      // straight to masked input, with a well-formed server-shares payload, skipping share-keys
      const bogus = { type: 'server-shares', federationId: policy.federationId, round: R, recipient: 'platform', shares: [{ party: 'insurer', ciphertext: new Uint8Array(80) }], signature: new Uint8Array(64) };
      setImmediate(() => event({ kind: EventKind.EVENT_KIND_PHASE_STARTED, phase: Phase.PHASE_MASKED_INPUT, payload: encodeServerMessage(bogus as never) }));
    },
    shareKeys: onPhase(Phase.PHASE_SHARE_KEYS),
    consistencyCheck: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, ack(Phase.PHASE_CONSISTENCY_CHECK)),
    unmasking: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, ack(Phase.PHASE_UNMASKING)),
    uploadMaskedInput(call: grpc.ServerReadableStream<{ data: Uint8Array }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      let n = 0;
      call.on('data', (c: { data: Uint8Array }) => (n += c.data.length));
      call.on('end', () => {
        state.uploads++;
        cb(null, { runId: RUN, round: R, receivedBytes: String(n) });
      });
    },
    submitReceipt: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { logIndex: '1' }),
  };
  const srv = new grpc.Server();
  srv.addService(ParticipantServiceService, impl as never);
  const creds = grpc.ServerCredentials.createSsl(fs.readFileSync(certs.ca), [{ cert_chain: fs.readFileSync(certs.server.cert), private_key: fs.readFileSync(certs.server.key) }], true);
  const port = await new Promise<number>((res, rej) => srv.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? rej(e) : res(p))));
  const ac = new AbortController();
  const lines: string[] = [];
  const joined = joinFederation({ dataDir: nd, coordinator: `127.0.0.1:${port}`, policyFile, caFile: certs.ca, certFile: certs.clients.platform.cert, keyFile: certs.clients.platform.key, backend: 'cpu', holdout: 'last', maxReconnects: 0, signal: ac.signal, log: (l) => lines.push(l) }).catch((e: Error) => e);
  return {
    lines,
    state,
    joined,
    finish: () => {
      event({ kind: EventKind.EVENT_KIND_RUN_FINISHED });
      stream!.end();
    },
    ledger: () => readLedger(nd)?.entries ?? [],
    stop: async () => {
      ac.abort();
      await joined;
      srv.forceShutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('a node facing a coordinator that misbehaves with the pinned key', () => {
  test('a masked-input event the secure-aggregation client refuses charges nothing and uploads nothing', async () => {
    const h = await hostile('mask-before-share');
    try {
      await until('the refusal', () => h.lines.some((l) => /server-shares not accepted in phase advertised/.test(l)), 30_000);
      expect(h.ledger()).toEqual([]);
      expect(h.state.uploads).toBe(0);
    } finally {
      await h.stop();
    }
  }, 60_000);

  test('the same signed masked-input event again after the upload: ignored, one charge, one upload', async () => {
    const h = await hostile('mask-replayed');
    try {
      await until('the replay', () => h.state.replayed, 30_000);
      await until('the node to see it', () => h.lines.some((l) => /a repeated masked-input event is ignored/.test(l)), 10_000);
      expect(h.ledger().map((e) => [e.runId, e.round])).toEqual([['run-1', 1]]);
      expect(h.state.uploads).toBe(1);
      expect(h.lines.filter((l) => /abandon|not accepted in phase/.test(l))).toEqual([]);
    } finally {
      await h.stop();
    }
  }, 60_000);

  test('a ROUND_COMPLETED without the model hash: the model is not downloaded nor adopted; the run\'s end is handled', async () => {
    const h = await hostile('completed-unpinned');
    try {
      const r = await h.joined;
      expect(r).not.toBeInstanceOf(Error);
      expect(h.lines.some((l) => /round 1 completed, but the signed event carries no model hash: model v2 is not adopted/.test(l))).toBe(true);
      expect(h.state.downloads).toEqual([]);
      expect(h.ledger()).toEqual([]);
    } finally {
      await h.stop();
    }
  }, 60_000);

  test('a round started after the run completed training.rounds is refused: nothing charged, nothing sent', async () => {
    const h = await hostile('rounds-exceeded');
    try {
      await until('the refusal', () => h.lines.some((l) => /refusing round 3: the policy's training.rounds: run run-1 already completed 2 round\(s\) of the 2 this node agreed to/.test(l)), 30_000);
      h.finish();
      const r = await h.joined;
      if (r instanceof Error) throw r;
      expect(r.rounds.map((x) => [x.round, x.outcome])).toEqual([[1, 'completed'], [2, 'completed'], [3, 'refused']]);
      expect(h.state.advertised).toEqual([]);
      expect(h.ledger()).toEqual([]);
      expect(h.state.uploads).toBe(0);
    } finally {
      await h.stop();
    }
  }, 60_000);

  test('an aborted round retried under the next number (3 of a 2-round policy, 1 completed) is taken part in', async () => {
    const h = await hostile('retried-round');
    try {
      await until('the advertisement', () => h.state.advertised.length === 1, 30_000);
      expect(h.state.advertised).toEqual([3]);
      expect(h.lines.filter((l) => /refusing round/.test(l))).toEqual([]);
    } finally {
      await h.stop();
    }
  }, 60_000);

  test('a model download that stalls is given up after phaseSeconds; the node then handles the run\'s end', async () => {
    const h = await hostile('download-stalls');
    try {
      await until('the download to be given up', () => h.lines.some((l) => /no data for 2000 ms \(the policy's phaseSeconds\); download given up/.test(l)), 30_000);
      h.finish();
      const r = await h.joined;
      expect(r).not.toBeInstanceOf(Error);
      expect(h.ledger()).toEqual([]);
      expect(h.state.uploads).toBe(0);
    } finally {
      await h.stop();
    }
  }, 60_000);
});
