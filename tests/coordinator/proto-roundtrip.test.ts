/**
 * ts-proto's generated codecs (what nodes and the CLI send) and @grpc/proto-loader with the
 * coordinator's LOADER_OPTIONS (what NestJS decodes and encodes) must agree on every message that
 * crosses the wire: field names (camelCase), 64-bit integers as strings, numeric enums, bytes,
 * nested and repeated fields, defaults. Both directions, for every RPC's request and response type.
 */
import * as protoLoader from '@grpc/proto-loader';
import * as gen from '../../proto/gen/grpc/fedbridge/v1/federation';
import { FEDERATION_PROTO, LOADER_OPTIONS, PROTO_ROOT } from '../../coordinator/grpc/options';

const def = protoLoader.loadSync(FEDERATION_PROTO, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
type Method = protoLoader.MethodDefinition<object, object>;
const svc = (name: string) => def[`fedbridge.v1.${name}`] as unknown as Record<string, Method>;

const b = (...x: number[]) => new Uint8Array(x);
const samples: Record<string, object> = {
  SignedRequest: { body: b(1, 2, 3), signature: new Uint8Array(64).fill(7) },
  SignedEvent: { body: b(9), signature: new Uint8Array(64).fill(1) },
  PhaseAck: { runId: 'run-1', round: 3, phase: gen.Phase.PHASE_MASKED_INPUT, accepted: 2 },
  UploadChunk: { open: { body: b(5), signature: b(6) }, index: 4, data: b(8, 9) },
  UploadAck: { runId: 'r', round: 1, receivedBytes: '9007199254740993' },
  ModelChunk: { info: { version: 2, modelHash: new Uint8Array(32).fill(3), totalBytes: '5000000000', chunkCount: 5, parentVersion: 1 }, index: 0, data: b() },
  ReceiptAck: { logIndex: '18446744073709551615' },
  EnrollRequest: { name: 'platform', publicKey: new Uint8Array(32).fill(4), certSha256: 'ab'.repeat(32) },
  EnrollResponse: { participant: { name: 'p', publicKey: b(1), certSha256: '', enrolledAtMs: '1763856000000' } },
  ListParticipantsRequest: {},
  ListParticipantsResponse: { participants: [{ name: 'a', publicKey: b(1), certSha256: 'x', enrolledAtMs: '1' }, { name: 'b', publicKey: b(2), certSha256: '', enrolledAtMs: '2' }] },
  StartRunChunk: { start: { policyYaml: 'version: 1', signatures: [{ party: 'p', signature: b(1, 2) }], initialModelBytes: '4294967297', initialModelHash: new Uint8Array(32).fill(5) }, index: 0, data: b() },
  AbortRunRequest: { runId: 'r', reason: 'why' },
  RunStatusRequest: { runId: '' },
  RunStatus: {
    runId: 'r', state: 'running', policyHash: 'ff'.repeat(32), roundsPlanned: 20, roundsCompleted: 3,
    currentRound: { round: 4, state: 'open', phase: 'mask', deadlineMs: '1763856000123', abortReason: '', parties: ['a', 'b'], modelVersion: 4 },
    latestModelVersion: 4, abortReason: '',
  },
  IssueTokenRequest: { role: 'auditor', label: 'l', expiresInSeconds: '7776000' },
  IssueTokenResponse: { token: 't', tokenId: 'i', role: 'auditor', expiresAtMs: '1771632000000' },
  RemoveParticipantRequest: { name: 'insurer2', reason: 'left the federation' },
  ParticipantRecord: { name: 'insurer2', publicKey: new Uint8Array(32).fill(6), certSha256: 'cd'.repeat(32), enrolledAtMs: '1763856000000' },
  ListTokensRequest: {},
  ListTokensResponse: { tokens: [{ tokenId: 'tok-0123456789ab', role: 'auditor', label: 'l', createdAtMs: '1763856000000', revokedAtMs: '0', expiresAtMs: '1771632000000' }, { tokenId: 'tok-ba9876543210', role: 'auditor', label: '', createdAtMs: '1', revokedAtMs: '9007199254740993', expiresAtMs: '0' }] },
  RevokeTokenRequest: { tokenId: 'tok-0123456789ab', reason: 'left the audit firm' },
  TokenRecord: { tokenId: 'tok-0123456789ab', role: 'auditor', label: 'l', createdAtMs: '1763856000000', revokedAtMs: '1763856000001', expiresAtMs: '9007199254740993' },
};

const norm = (v: unknown): unknown => {
  if (v instanceof Uint8Array) return Array.from(v);
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'part').map(([k, x]) => [k, norm(x)]));
  return v;
};

const cases: [string, string, 'request' | 'response', string][] = [];
for (const service of ['ParticipantService', 'OperatorService']) {
  for (const [name, m] of Object.entries(svc(service))) {
    const typeName = (t: protoLoader.MessageTypeDefinition<object, object>) => (t.type as unknown as { name: string }).name;
    cases.push([service, name, 'request', typeName(m.requestType)]);
    cases.push([service, name, 'response', typeName(m.responseType)]);
  }
}

test('every RPC of both services is covered', () => {
  expect(cases.length).toBe(2 * (8 + 9));
  for (const [, , , type] of cases) expect(Object.keys(samples)).toContain(type);
});

test.each(cases)('%s.%s %s (%s): ts-proto <-> proto-loader', (service, name, dir, type) => {
  const m = svc(service)[name];
  const codec = (gen as unknown as Record<string, gen.MessageFns<object>>)[type];
  const sample = samples[type];
  const serialize = dir === 'request' ? m.requestSerialize : m.responseSerialize;
  const deserialize = dir === 'request' ? m.requestDeserialize : m.responseDeserialize;
  // ts-proto encodes -> proto-loader decodes (a node talking to the NestJS coordinator)
  const wire = codec.encode(sample).finish();
  const loaded = deserialize(Buffer.from(wire));
  expect(norm(loaded)).toEqual(norm(codec.decode(wire)));
  expect(norm(loaded)).toEqual(norm({ ...codec.decode(codec.encode(codec.fromPartial({})).finish()), ...sample }));
  // proto-loader encodes the ts-proto-typed object -> ts-proto decodes (the coordinator answering)
  const back = codec.decode(serialize(sample as never));
  expect(norm(back)).toEqual(norm(codec.decode(wire)));
  // (the bytes themselves may differ: protobufjs also writes fields explicitly set to their default)
});

test('the decoded shape is what ts-proto types promise: 64-bit as decimal strings, enums as numbers, bytes as Uint8Array', () => {
  const m = svc('OperatorService').GetRunStatus;
  const loaded = m.responseDeserialize(Buffer.from(gen.RunStatus.encode(samples.RunStatus as gen.RunStatus).finish())) as gen.RunStatus;
  expect(loaded.currentRound?.deadlineMs).toBe('1763856000123');
  const ack = svc('ParticipantService').AdvertiseKeys.responseDeserialize(Buffer.from(gen.PhaseAck.encode(samples.PhaseAck as gen.PhaseAck).finish())) as gen.PhaseAck;
  expect(ack.phase).toBe(gen.Phase.PHASE_MASKED_INPUT);
  const req = svc('ParticipantService').Subscribe.requestDeserialize(Buffer.from(gen.SignedRequest.encode(samples.SignedRequest as gen.SignedRequest).finish())) as gen.SignedRequest;
  expect(req.body).toBeInstanceOf(Uint8Array);
  // defaults: true — an absent scalar decodes to its default, not undefined
  const empty = svc('OperatorService').GetRunStatus.requestDeserialize(Buffer.alloc(0)) as gen.RunStatusRequest;
  expect(empty.runId).toBe('');
});
