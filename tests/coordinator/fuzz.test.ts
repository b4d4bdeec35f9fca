/**
 * Fuzzing the party API: what a party's key holder (or anyone with a party's TLS certificate) can
 * send, in every phase of a real secure-aggregation round, over real gRPC with mutual TLS on
 * loopback. Seeded fast-check properties generate
 *   - outer frames: random bytes, and valid SignedRequest frames with bytes flipped, cut or added;
 *   - signed bodies: PhaseMessageBody with every header field either right or wrong (federation,
 *     party, run, round, phase, nonce, timestamp), signed by the sender's own key or another, with a
 *     payload of random bytes, of the held honest reply with one bit flipped, or of the sender's own
 *     honest reply again;
 *   - masked-input upload streams: a signed open with right or wrong sizes and hash, then chunks
 *     with random indices and sizes, carrying random bytes or the held masked input with a bit flipped.
 * One party (insurer2) holds its honest reply in each phase so the phase stays open while the fuzz
 * runs; the two others have sent theirs, so no generated message can be a legitimate one.
 *
 * Every request must be refused with a client-error status and a message (never OK, INTERNAL or
 * UNKNOWN, which would mean a handler threw something unplanned), change no stored row, and the
 * round must still complete with exactly the sum of the three honest inputs.
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { EventKind, Phase, PhaseMessageBody, SignedRequest, UploadChunk, UploadOpenBody, type PartyHeader } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { modularSum } from '../../shared/fl/aggregate';
import { ed25519Keygen } from '../../shared/crypto/sign';
import type { SecAggProtocolFactory } from '../../coordinator/rounds/secagg-protocol';
import { modelDim, operator, policyYaml, secaggFederation, signaturesFor, startRun, type TestParty, testPolicy, unary } from './helpers/harness';
import { MiniNode } from './helpers/mini-node';
import { secaggCoordinator } from './helpers/fixture';
import { decodeClientMessage, encodeClientMessage } from '../../shared/secagg/wire';
import { baseSeed } from '../fc-seed';

const { status } = grpc;
const SEED = baseSeed(); // FC_SEED (tests/fc-seed.ts)
/** Client errors a refusal may carry; anything else (OK, INTERNAL, UNKNOWN, ...) fails the test. */
const REFUSALS = new Set<number>([
  status.INVALID_ARGUMENT,
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.FAILED_PRECONDITION,
  status.ALREADY_EXISTS,
  status.RESOURCE_EXHAUSTED,
  status.NOT_FOUND,
]);
const PHASE_METHODS = ['AdvertiseKeys', 'ShareKeys', 'ConsistencyCheck', 'Unmasking'] as const;
const UNARY = [...PHASE_METHODS, 'SubmitReceipt'] as const;
/** The RPC of each phase (the masked input travels as an upload stream, fuzzed apart). */
const PHASE_RPC: Partial<Record<Phase, (typeof PHASE_METHODS)[number]>> = {
  [Phase.PHASE_ADVERTISE_KEYS]: 'AdvertiseKeys',
  [Phase.PHASE_SHARE_KEYS]: 'ShareKeys',
  [Phase.PHASE_CONSISTENCY_CHECK]: 'ConsistencyCheck',
  [Phase.PHASE_UNMASKING]: 'Unmasking',
};
const id = (b: Buffer) => b;

interface Outcome {
  code: number;
  details: string;
}

/** One raw unary call: the frame's bytes as they are. */
function rawUnary(p: TestParty, method: string, frame: Uint8Array): Promise<Outcome> {
  return new Promise((resolve) =>
    p.client.makeUnaryRequest(`/fedbridge.v1.ParticipantService/${method}`, id, id, Buffer.from(frame), new grpc.Metadata(), {}, (e) =>
      resolve(e ? { code: e.code, details: e.details } : { code: status.OK, details: 'accepted' }),
    ),
  );
}

/** One raw server-streaming call: any message it streams back counts as accepted. */
function rawServerStream(p: TestParty, method: string, frame: Uint8Array): Promise<Outcome> {
  return new Promise((resolve) => {
    const call = p.client.makeServerStreamRequest(`/fedbridge.v1.ParticipantService/${method}`, id, id, Buffer.from(frame), new grpc.Metadata(), {});
    call.on('data', () => {
      call.cancel();
      resolve({ code: status.OK, details: 'streamed a message' });
    });
    call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
    call.on('end', () => resolve({ code: status.OK, details: 'ended without error' }));
  });
}

/**
 * True if `b` decodes to the same secagg message as `held`: the held message itself, or the same
 * content in another well-formed encoding (wire.ts accepts any such encoding, the signatures covering
 * the canonical bytes of messages.ts). Before the strict wire check ran on SecAgg payloads
 * (shared/proto/wire-check.ts) damaged bytes could qualify too: the ts-proto decoder let a
 * sub-message's last field run past the sub-message's declared length, and 13 of about 400 bit flips
 * decoded to the signed message; those are now sent, and refused.
 */
function sameContent(b: Uint8Array, held: Uint8Array): boolean {
  try {
    return Buffer.compare(Buffer.from(encodeClientMessage(decodeClientMessage(b))), Buffer.from(encodeClientMessage(decodeClientMessage(held)))) === 0;
  } catch {
    return false;
  }
}

/** `b` with bit number `at mod (8 * length)` flipped: any bit of any byte. */
function flipBit(b: Uint8Array, at: number): Uint8Array {
  const out = new Uint8Array(b);
  if (out.length) {
    const bit = at % (out.length * 8);
    out[bit >> 3] ^= 1 << (bit & 7);
  }
  return out;
}

describe('fuzzing the party API in every phase of a real SecAgg round', () => {
  const fx = secaggCoordinator(['platform', 'insurer', 'insurer2']);
  let runId: string;
  const refusedCodes = new Map<number, number>();

  const counts = () => fx.coord.ctx.repo.snapshotCounts();

  function expectRefused(what: string, o: Outcome): void {
    refusedCodes.set(o.code, (refusedCodes.get(o.code) ?? 0) + 1);
    if (process.env.FB_FUZZ_DETAILS) process.stderr.write(`DETAIL ${status[o.code]} ${o.details.replace(/"[^"]*"/g, "\"…\"").replace(/[0-9]+/g, "N").slice(0, 90)}\n`);
    if (!REFUSALS.has(o.code) || o.details.length === 0 || /internal error/i.test(o.details)) {
      throw new Error(`${what}: got ${status[o.code] ?? o.code} "${o.details}"`);
    }
  }

  test('every generated request is refused with a client-error status, nothing is stored, the round completes with the exact sum', async () => {
    const { env, coord, timers } = fx;
    const fed = await secaggFederation(env, coord, 1);
    const { op, policy, dim } = fed;
    const parties = (fx.parties = fed.parties);
    const nodes = (fx.nodes = parties.map((p) => new MiniNode(p, p.subscribe(coord.publicKey), policy, coord.publicKey, fed.vectorLength)));
    const holder = nodes[2];
    const [platform, insurer, insurer2] = parties;
    holder.holdAt = { round: 1, phase: Phase.PHASE_ADVERTISE_KEYS };
    runId = (await startRun(op.client, op.metadata, { policyYaml: policyYaml(policy), signatures: signaturesFor(policy, parties) }, new Uint8Array(dim * 4))).runId;
    op.client.close();
    const wrongKey = ed25519Keygen().secretKey;
    const phases = [Phase.PHASE_ADVERTISE_KEYS, Phase.PHASE_SHARE_KEYS, Phase.PHASE_MASKED_INPUT, Phase.PHASE_CONSISTENCY_CHECK, Phase.PHASE_UNMASKING];
    let generated = 0;
    let reachedProtocol = 0;
    let reencoded = 0; // damaged payloads that decode to the holder's own message (not sent)

    for (const [k, phase] of phases.entries()) {
      const held = await holder.heldReply(1, phase);
      await Promise.all(nodes.slice(0, 2).map((n) => n.sentIn(1, phase)));
      const before = await counts();

      // a valid frame of this phase (platform's, already accepted once) to mutate
      const rpc = PHASE_RPC[phase] ?? 'ConsistencyCheck';
      const template = platform.sign(rpc, PhaseMessageBody.encode({ header: platform.header(rpc, runId, 1), payload: held }).finish());
      const templateFrame = SignedRequest.encode(template).finish();

      // ---- outer frames, on every RPC
      const frame = fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        fc.record({ at: fc.nat(), cut: fc.nat(), extra: fc.uint8Array({ maxLength: 20 }) }).map(({ at, cut, extra }) => {
          const f = flipBit(templateFrame, at);
          return Uint8Array.from([...f.subarray(0, f.length - (cut % 4)), ...extra]);
        }),
      );
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...UNARY, 'Subscribe', 'DownloadModel'), frame, fc.constantFrom(0, 1, 2), async (method, bytes, who) => {
          generated++;
          const p = parties[who];
          const o = method === 'Subscribe' || method === 'DownloadModel' ? await rawServerStream(p, method, bytes) : await rawUnary(p, method, bytes);
          expectRefused(`${p.name} ${method} frame ${Buffer.from(bytes).toString('hex').slice(0, 80)}`, o);
        }),
        { seed: SEED + k, numRuns: 60 },
      );

      // ---- signed PhaseMessageBody with header fields right or wrong, on the four phase RPCs
      // header overrides: none (the payload is what is fuzzed), one field, or every field at once
      const fields = {
        federationId: fc.string({ maxLength: 40 }),
        party: fc.oneof(fc.constantFrom('platform', 'insurer', 'insurer2', 'intruder', ''), fc.string({ maxLength: 30 })),
        runId: fc.oneof(fc.constant(''), fc.string({ maxLength: 40 })),
        round: fc.oneof(fc.constantFrom(0, 2, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 })),
        phase: fc.integer({ min: 0, max: 12 }),
        nonce: fc.uint8Array({ maxLength: 40 }),
        timestampMs: fc.oneof(fc.constantFrom('0', '-1', '9223372036854775807', '-9223372036854775808'), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String)),
      };
      const header: fc.Arbitrary<Partial<PartyHeader>> = fc.oneof(
        { weight: 4, arbitrary: fc.constant({}) },
        { weight: 4, arbitrary: fc.oneof(...Object.entries(fields).map(([k, a]) => (a as fc.Arbitrary<unknown>).map((v) => ({ [k]: v }) as Partial<PartyHeader>))) },
        { weight: 1, arbitrary: fc.record(fields) as fc.Arbitrary<Partial<PartyHeader>> },
      );
      const payload = fc.oneof(
        fc.uint8Array({ maxLength: 400 }).map((b) => ({ kind: 'random', b })),
        fc.nat().map((at) => ({ kind: 'held with a bit flipped', b: flipBit(held, at) })),
        fc.constant({ kind: "the holder's reply itself", b: held }),
      );
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...PHASE_METHODS), header, payload, fc.constantFrom(0, 1, 2), fc.constantFrom('own', 'random', 'another party'), async (method, over, pl, who, key) => {
          const p = parties[who];
          const h: Partial<PartyHeader> = { ...over };
          const ownKey = key === 'own';
          // signed by another enrolled party's key, in its name, over this party's TLS connection
          const as = key === 'another party' ? parties[(who + 1) % 3] : null;
          if (as && h.party === undefined) h.party = as.name;
          // the one legitimate message left in this phase is the holder's own reply, signed by itself,
          // on this phase's RPC: a header that only draws a fresh nonce would make it valid, so it is
          // never sent (every other combination must be refused)
          if (p === insurer2 && ownKey && method === PHASE_RPC[phase] && sameContent(pl.b, held)) return void reencoded++;
          generated++;
          const body = PhaseMessageBody.encode({ header: p.header(method, runId, 1, h), payload: pl.b }).finish();
          const o = await rawUnary(p, method, SignedRequest.encode(p.sign(method, body, ownKey ? undefined : as ? as.keys.secretKey : wrongKey)).finish());
          expectRefused(`${p.name} ${method} header ${JSON.stringify({ ...h, nonce: h.nonce ? Buffer.from(h.nonce).toString('hex') : undefined })} payload ${pl.kind} key ${key}`, o);
        }),
        { seed: SEED + 100 + k, numRuns: 150 },
      );

      // ---- the holder's own, correctly bound and signed request, its secagg payload damaged: this
      // reaches the round protocol's decoding, shape and inner-signature checks
      const damaged = fc.oneof(
        fc.uint8Array({ maxLength: 400 }).map((b) => ({ kind: 'random bytes', b })),
        fc.nat().map((at) => ({ kind: `bit ${at % (held.length * 8)} flipped`, b: flipBit(held, at) })),
        fc.integer({ min: 0, max: held.length - 1 }).map((n) => ({ kind: `cut to ${n} bytes`, b: held.subarray(0, n) })),
      );
      if (phase === Phase.PHASE_MASKED_INPUT) {
        await fc.assert(
          fc.asyncProperty(damaged, fc.integer({ min: 256, max: 70_000 }), async (d, chunkBytes) => {
            if (d.b.length === 0) return; // an empty upload is refused before the protocol (covered above)
            if (sameContent(d.b, held)) return void reencoded++; // the legitimate message itself, in another encoding
            generated++;
            reachedProtocol++;
            const o = await insurer2.upload(runId, 1, d.b, { chunkBytes }).then(
              () => ({ code: status.OK, details: 'accepted' }),
              (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
            );
            expectRefused(`insurer2 masked input, ${d.kind}`, o);
          }),
          { seed: SEED + 500 + k, numRuns: 80 },
        );
      } else {
        const method = PHASE_RPC[phase]!;
        await fc.assert(
          fc.asyncProperty(damaged, async (d) => {
            if (sameContent(d.b, held)) return void reencoded++; // the legitimate message itself, in another encoding
            generated++;
            reachedProtocol++;
            const o = await insurer2.phase(method, runId, 1, d.b).then(
              () => ({ code: status.OK, details: 'accepted' }),
              (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
            );
            expectRefused(`insurer2 ${method}, ${d.kind}`, o);
          }),
          { seed: SEED + 500 + k, numRuns: 80 },
        );
      }

      // ---- masked-input upload streams
      if (phase === Phase.PHASE_MASKED_INPUT) {
        const upload = fc.record({
          who: fc.constantFrom(0, 1, 2),
          data: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.nat().map((at) => flipBit(held, at))),
          chunkBytes: fc.integer({ min: 1, max: 70_000 }),
          total: fc.option(fc.oneof(fc.constantFrom('0', '1', '18446744073709551615'), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String)), { nil: undefined }),
          count: fc.option(fc.nat({ max: 2 ** 32 - 1 }), { nil: undefined }),
          hash: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
          reorder: fc.option(fc.array(fc.nat(), { maxLength: 6 }), { nil: undefined }),
          ownKey: fc.boolean(),
        });
        await fc.assert(
          fc.asyncProperty(upload, async (u) => {
            const p = parties[u.who];
            const openOver: Partial<UploadOpenBody> = {};
            if (u.total !== undefined) openOver.totalBytes = u.total;
            if (u.count !== undefined) openOver.chunkCount = u.count;
            if (u.hash !== undefined) openOver.dataHash = u.hash;
            let chunks = p.uploadChunks(runId, 1, u.data, { chunkBytes: u.chunkBytes, openOver });
            if (!u.ownKey) chunks[0] = { ...chunks[0], open: p.sign('UploadMaskedInput', chunks[0].open!.body, wrongKey) };
            // drop or repeat chunks; once every chunk is dropped the stream stays empty (also refused)
            if (u.reorder) for (const r of u.reorder) if (chunks.length > 0) chunks = r % 2 ? chunks.filter((_, i) => i !== r % chunks.length) : [...chunks, chunks[r % chunks.length]];
            generated++;
            const frames = chunks.map((c) => UploadChunk.encode(c).finish());
            let o: Outcome;
            try {
              await p.streamBytes('UploadMaskedInput', frames);
              o = { code: status.OK, details: 'accepted' };
            } catch (e) {
              o = { code: (e as grpc.ServiceError).code, details: (e as grpc.ServiceError).details };
            }
            expectRefused(`${p.name} upload of ${u.data.length} bytes in ${chunks.length} messages (${JSON.stringify({ ...u, data: undefined, hash: u.hash?.length })})`, o);
          }),
          { seed: SEED + 200, numRuns: 60 },
        );
      }

      expect(await counts()).toEqual(before);
      holder.holdAt = phases[k + 1] ? { round: 1, phase: phases[k + 1] } : null;
      await holder.release(1, phase, runId);
    }

    const done = await nodes[0].stream.next((e) => e.kind === EventKind.EVENT_KIND_ROUND_COMPLETED && e.round === 1);
    expect(done.modelVersion).toBe(2);
    const factory = coord.ctx.rounds['d'].factory as SecAggProtocolFactory;
    expect(Buffer.compare(Buffer.from(factory.created[0].lastSum!.buffer), Buffer.from(modularSum(nodes.map((n) => n.input(1)), 32).buffer))).toBe(0);
    for (const n of nodes) expect(n.errors).toEqual([]);
    if (process.env.FB_DEBUG) process.stderr.write(`party fuzz: ${generated} requests (${reencoded} damaged payloads decoded to the legitimate message and were not sent), ${JSON.stringify(Object.fromEntries([...refusedCodes].map(([k, v]) => [status[k], v])))}\n`);
    // the fuzz reached more than the signature check: several distinct refusals
    expect(generated).toBeGreaterThan(1400);
    expect(reachedProtocol).toBeGreaterThan(5 * 75);
    expect([...refusedCodes.keys()].sort()).toEqual(expect.arrayContaining([status.INVALID_ARGUMENT, status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.FAILED_PRECONDITION]));
  }, 120_000);

  test('operator API with the operator token: edited policy YAML, odd signatures, sizes, names, ids, roles and token ids get a status with a message, never INTERNAL', async () => {
    const { env, coord, parties } = fx; // the parties enrolled by the test above
    const op = operator(env, coord.grpcPort);
    const policy = testPolicy(parties, coord.publicKey, { numItems: 50, rounds: 1 });
    const yaml = policyYaml(policy);
    const sigs = signaturesFor(policy, parties);
    const dim = modelDim(policy);
    const outcome = async (p: Promise<unknown>): Promise<Outcome> => {
      try {
        await p;
        return { code: status.OK, details: 'ok' };
      } catch (e) {
        return { code: (e as grpc.ServiceError).code, details: (e as grpc.ServiceError).details };
      }
    };
    const seen = new Map<number, number>();
    const check = (what: string, o: Outcome) => {
      seen.set(o.code, (seen.get(o.code) ?? 0) + 1);
      if (o.code === status.OK) return;
      if (!REFUSALS.has(o.code) || o.details.length === 0 || /internal error/i.test(o.details)) throw new Error(`${what}: got ${status[o.code] ?? o.code} "${o.details}"`);
    };
    // a YAML edit: cut a span, insert text, or replace one line's value
    const edit = fc.oneof(
      fc.record({ at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }).map(({ at, len }) => (y: string) => y.slice(0, at % y.length) + y.slice((at % y.length) + len)),
      fc.record({ at: fc.nat(), text: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom(': ', '\n  - ', '{', ']', '&a', '*a', '!!binary', '\t', '\u0000', '-1', '1e309', 'NaN')) }).map(
        ({ at, text }) => (y: string) => y.slice(0, at % y.length) + text + y.slice(at % y.length),
      ),
      fc.record({ line: fc.nat(), value: fc.oneof(fc.constantFrom('-1', '0', '1e309', '.nan', 'null', '[]', '{}', '"x"', 'true', '99999999999999999999'), fc.string({ maxLength: 12 })) }).map(({ line, value }) => (y: string) => {
        const lines = y.split('\n');
        const i = line % lines.length;
        lines[i] = lines[i].replace(/:.*$/, `: ${value}`);
        return lines.join('\n');
      }),
    );
    const sigArb = fc.oneof(
      fc.constant(sigs),
      fc.constant(sigs.slice(1)),
      fc.array(fc.record({ party: fc.oneof(fc.constantFrom('platform', 'insurer', 'insurer2', 'x'), fc.string({ maxLength: 10 })), signature: fc.uint8Array({ maxLength: 70 }) }), { maxLength: 4 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(edit, { minLength: 1, maxLength: 3 }), sigArb, fc.constantFrom(dim * 4, 0, dim * 4 - 4, 3), async (edits, signatures, modelBytes) => {
        const y = edits.reduce((acc, f) => f(acc), yaml);
        check(`StartRun with edited policy (${modelBytes} model bytes)`, await outcome(startRun(op.client, op.metadata, { policyYaml: y, signatures }, new Uint8Array(modelBytes))));
      }),
      { seed: SEED + 300, numRuns: 200 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ rpc: fc.constant('enroll' as const), name: fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom('platform', '', 'a'.repeat(200))), key: fc.uint8Array({ maxLength: 40 }), cert: fc.oneof(fc.constant(''), fc.string({ maxLength: 70 }), fc.stringMatching(/^[0-9a-f]{64}$/)) }),
          fc.record({ rpc: fc.constant('abort' as const), runId: fc.string({ maxLength: 60 }), reason: fc.string({ maxLength: 300 }) }),
          fc.record({ rpc: fc.constant('status' as const), runId: fc.string({ maxLength: 60 }) }),
          fc.record({ rpc: fc.constant('token' as const), role: fc.oneof(fc.constantFrom('auditor', 'operator', 'party', ''), fc.string({ maxLength: 20 })), label: fc.string({ maxLength: 300 }), expires: fc.oneof(fc.constantFrom('0', '1', '315360000', '315360001', '-1', '9223372036854775807'), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String)) }),
          fc.record({ rpc: fc.constant('revoke' as const), tokenId: fc.oneof(fc.stringMatching(/^tok-[0-9a-f]{12}$/), fc.string({ maxLength: 40 }), fc.constant('')), reason: fc.string({ maxLength: 300 }) }),
          fc.record({ rpc: fc.constant('tokens' as const) }),
          // names of parties that are not enrolled (the enrolled ones must stay for the final check)
          fc.record({ rpc: fc.constant('unenroll' as const), name: fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom('nobody', '', 'a'.repeat(200), 'Platform')).filter((n) => !['platform', 'insurer', 'insurer2'].includes(n)), reason: fc.string({ maxLength: 300 }) }),
        ),
        async (r) => {
          const c = op.client;
          const o =
            r.rpc === 'enroll'
              ? await outcome(unary(c.enroll.bind(c), { name: r.name, publicKey: r.key, certSha256: r.cert }, op.metadata))
              : r.rpc === 'abort'
                ? await outcome(unary(c.abortRun.bind(c), { runId: r.runId, reason: r.reason }, op.metadata))
                : r.rpc === 'status'
                  ? await outcome(unary(c.getRunStatus.bind(c), { runId: r.runId }, op.metadata))
                  : r.rpc === 'revoke'
                    ? await outcome(unary(c.revokeToken.bind(c), { tokenId: r.tokenId, reason: r.reason }, op.metadata))
                    : r.rpc === 'tokens'
                      ? await outcome(unary(c.listTokens.bind(c), {}, op.metadata))
                      : r.rpc === 'unenroll'
                        ? await outcome(unary(c.removeParticipant.bind(c), { name: r.name, reason: r.reason }, op.metadata))
                      : await outcome(unary(c.issueToken.bind(c), { role: r.role, label: r.label, expiresInSeconds: r.expires }, op.metadata));
          check(`${r.rpc} ${JSON.stringify(r, (_k, v) => (v instanceof Uint8Array ? `${v.length} bytes` : v))}`, o);
        },
      ),
      { seed: SEED + 400, numRuns: 300 },
    );
    op.client.close();
    if (process.env.FB_DEBUG) process.stderr.write(`operator fuzz outcomes: ${JSON.stringify(Object.fromEntries([...seen].map(([k, v]) => [status[k], v])))}\n`);
    // the refusals were specific, not one catch-all
    expect(seen.get(status.INVALID_ARGUMENT) ?? 0).toBeGreaterThan(0);
    expect(seen.size).toBeGreaterThan(2);
    // still serving
    const s = parties[0].subscribe(coord.publicKey);
    await s.next(() => true);
    s.cancel();
  }, 120_000);
});
