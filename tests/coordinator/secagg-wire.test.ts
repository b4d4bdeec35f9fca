/**
 * Wire test of a real secure-aggregation run: every gRPC message in both directions and all
 * metadata are captured at the parties' clients (interceptors, serialized bytes). Checks:
 *  - every field of every message — including the signed bodies, the secagg payloads inside them
 *    and the reassembled chunked uploads — is a field declared in federation.proto / secagg.proto
 *    (an allow-list derived from the contract; unknown fields fail);
 *  - metadata carries nothing but gRPC's own keys;
 *  - no party's unmasked input appears on the wire: distinctive 16-byte canaries planted in each
 *    input, and 32-byte slices of the inputs, are absent from every captured byte string.
 */
import * as grpc from '@grpc/grpc-js';
import { EventKind, Phase } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { modularSum } from '../../shared/fl/aggregate';
import { randomBytes } from '../../shared/crypto/sodium';
import type { SecAggProtocolFactory } from '../../coordinator/rounds/secagg-protocol';
import { policyYaml, secaggFederation, signaturesFor, startRun } from './helpers/harness';
import { MiniNode } from './helpers/mini-node';
import { secaggCoordinator } from './helpers/fixture';
import { BODY_OF, protoRoot, walkFields } from '../integration/wire-tap';

interface Captured {
  party: string;
  method: string; // e.g. /fedbridge.v1.ParticipantService/AdvertiseKeys
  dir: 'out' | 'in';
  bytes: Uint8Array;
}

const root = protoRoot;
/** The strict schema walk of the real-node wire test (declared field numbers and wire types). */
const walk = walkFields;

/** Records the metadata a party sends and receives (initial metadata and trailers). */
function metadataOf(party: string, metadata: { party: string; keys: string[] }[]): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(md, _listener, next) {
        metadata.push({ party, keys: Object.keys(md.getMap()) });
        next(md, {
          onReceiveMetadata(m, n) {
            metadata.push({ party, keys: Object.keys(m.getMap()) });
            n(m);
          },
          onReceiveStatus(st, n) {
            metadata.push({ party, keys: Object.keys(st.metadata.getMap()) });
            n(st);
          },
        });
      },
    });
}

describe('wire: only declared fields, no canary, no unmasked input', () => {
  const fx = secaggCoordinator(['platform', 'insurer', 'insurer2']);
  const captured: Captured[] = [];
  const metadata: { party: string; keys: string[] }[] = [];

  test('a 3-party round with a dropout, captured in both directions', async () => {
    const { env, coord, timers } = fx;
    const fed = await secaggFederation(env, coord, 1, (n) => ({ interceptors: [metadataOf(n, metadata)], capture: (method, dir, bytes) => captured.push({ party: n, method, dir, bytes }) }));
    const { op, policy, dim } = fed;
    const m = fed.vectorLength;
    const parties = (fx.parties = fed.parties);
    const canaries = new Map<string, Uint8Array>();
    const nodes = (fx.nodes = parties.map((p) => {
      const n = new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, m);
      const canary = randomBytes(16);
      canaries.set(p.name, canary);
      n.makeInput = () => {
        const v = new Uint32Array(m);
        for (let i = 0; i < m; i++) v[i] = ((i * 7919 + p.name.length * 104729) % 4001) - 2000 >>> 0;
        // plant the canary 4 times along the vector (distinctive 16-byte strings)
        for (const at of [0, 1000, 5000, m - 4]) new Uint8Array(v.buffer).set(canary, at * 4);
        return v;
      };
      return n;
    }));
    nodes[2].killAt = { round: 1, phase: Phase.PHASE_CONSISTENCY_CHECK }; // dies after sending its masked input
    await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(dim * 4));
    await Promise.all(nodes.slice(0, 2).map((n) => n.sentIn(1, Phase.PHASE_CONSISTENCY_CHECK)));
    expect(timers.fire()).toBe(1);
    const done = await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1);
    await parties[1].download(done.modelVersion);
    const factory = coord.ctx.rounds['d'].factory as SecAggProtocolFactory;
    // all three masked inputs reached the sum (insurer2 dropped only after masked input)
    expect(Buffer.compare(Buffer.from(factory.created[0].lastSum!.buffer), Buffer.from(modularSum(nodes.map((n) => n.input(1)), 32).buffer))).toBe(0);
    op.client.close();

    // ---- every field declared; nested bodies and payloads walked too
    const seen = new Set<string>();
    const uploads = new Map<string, Uint8Array[]>();
    for (const c of captured) {
      const rpc = c.method.split('/').pop()!;
      const outer = root.lookupService('fedbridge.v1.ParticipantService').methods[rpc];
      const typeName = (c.dir === 'out' ? outer.resolvedRequestType : outer.resolvedResponseType)!.name;
      const nested = (f: string): string | null => {
        if (f === 'SignedRequest.body') return BODY_OF[rpc];
        if (f === 'SignedEvent.body') return 'PhaseEvent';
        if (f === 'PhaseMessageBody.payload') return 'SecAggClientMessage';
        if (f === 'PhaseEvent.payload') return 'SecAggServerMessage';
        return null;
      };
      walk(c.bytes, typeName, `${c.party} ${rpc} ${c.dir}`, seen, nested);
      if (rpc === 'UploadMaskedInput' && c.dir === 'out') {
        const chunk = root.lookupType('fedbridge.v1.UploadChunk').decode(c.bytes) as unknown as { data: Uint8Array; open?: unknown };
        if (!chunk.open) uploads.set(c.party, [...(uploads.get(c.party) ?? []), chunk.data]);
      }
    }
    for (const [party, chunks] of uploads) walk(Buffer.concat(chunks), 'SecAggClientMessage', `${party} reassembled upload`, seen, () => null);
    expect(uploads.size).toBe(3);
    // the run exercised the whole contract of a round
    for (const f of ['SignedRequest.body', 'PartyHeader.nonce', 'PhaseEvent.payload', 'SecAggServerMessage.serverKeys', 'SecAggServerMessage.serverShares', 'SecAggServerMessage.unmaskRequest', 'SecAggClientMessage.maskedInput', 'MaskedInput.vectorChunks', 'UnmaskShares.selfMaskShares', 'ModelChunk.info']) {
      expect(seen).toContain(f);
    }

    // ---- metadata: only gRPC's own keys, nothing a party or the coordinator added
    const allowed = new Set(['content-type', 'date', 'grpc-accept-encoding', 'grpc-encoding', 'user-agent']);
    const extra = metadata.flatMap((m) => m.keys.filter((k) => !allowed.has(k)));
    expect(extra).toEqual([]);

    // ---- no canary, no slice of any unmasked input, in any captured byte string
    const all = captured.map((c) => Buffer.from(c.bytes)).concat([...uploads.values()].map((u) => Buffer.concat(u)));
    const needles: [string, Buffer][] = [];
    for (const n of nodes) {
      needles.push([`${n.party.name} canary`, Buffer.from(canaries.get(n.party.name)!)]);
      const raw = Buffer.from(n.input(1).buffer);
      for (const at of [64, 8192, raw.length / 2, raw.length - 96]) needles.push([`${n.party.name} input@${at}`, raw.subarray(at, at + 32)]);
    }
    for (const [what, needle] of needles) {
      const hit = all.findIndex((b) => b.indexOf(needle) >= 0);
      expect([what, hit]).toEqual([what, -1]);
    }
    // the checks can fail: an undeclared field is caught, and the canary is in the plain input itself
    const extraField = Buffer.concat([Buffer.from(captured[0].bytes), Buffer.from([0x48, 0x01])]); // field 9, varint 1
    expect(() => walk(extraField, 'SignedRequest', 'self-check', new Set(), () => null)).toThrow(/field number 9 is not declared in SignedRequest/);
    expect(Buffer.from(nodes[0].input(1).buffer).indexOf(Buffer.from(canaries.get('platform')!))).toBe(0);
  });
});
