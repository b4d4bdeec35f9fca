/**
 * proto/fedbridge/v1/secagg.proto mirrors shared/secagg/messages.ts: every field of every message a
 * real round produces exists in the proto (camelCase <-> snake_case), and nothing else does.
 */
import * as path from 'node:path';
import { loadSync } from '@grpc/proto-loader';
import { sodiumReady } from '../../../shared/crypto/sodium';
import type { SecAggMessage } from '../../../shared/secagg/messages';
import { makeFederation, randomInput, runRound, seededRng } from './harness';

beforeAll(() => sodiumReady());

const PROTO_NAME: Record<SecAggMessage['type'], string> = {
  'advertise-keys': 'AdvertiseKeys',
  'share-keys': 'ShareKeys',
  'masked-input': 'MaskedInput',
  'consistency-signature': 'ConsistencySignature',
  'unmask-shares': 'UnmaskShares',
  'server-keys': 'ServerKeys',
  'server-shares': 'ServerShares',
  'consistency-request': 'ConsistencyRequest',
  'unmask-request': 'UnmaskRequest',
};

test('every message type and field of a real round exists in secagg.proto, and vice versa', () => {
  const def = loadSync(path.resolve(__dirname, '../../../proto/fedbridge/v1/secagg.proto'), { keepCase: false });
  const fieldsOf = (name: string): string[] => {
    const t = def[`fedbridge.v1.${name}`] as unknown as { type: { field: { name: string }[] } };
    if (!t) throw new Error(`secagg.proto has no message ${name}`);
    return t.type.field.map((f) => f.name).sort();
  };
  const fed = makeFederation(5, 'proto');
  const rng = seededRng('proto-in');
  const inputs = new Map(fed.ids.map((id) => [id, randomInput(rng, 8, 32)]));
  const run = runRound({ fed, params: { threshold: 3, degree: 0, bits: 32 }, m: 8, inputs, drops: new Map([['party-004', 3]]) });
  expect(run.result.kind).toBe('done');
  const seen = new Set<string>();
  for (const msg of [...run.sent, ...run.broadcast.map((b) => b.message)]) {
    seen.add(msg.type);
    let keys = Object.keys(msg).filter((k) => k !== 'type');
    if (msg.type === 'masked-input') keys = [...keys.filter((k) => k !== 'vector'), 'length', 'vectorChunks'];
    expect([msg.type, keys.sort()]).toEqual([msg.type, fieldsOf(PROTO_NAME[msg.type])]);
    const nested: [string, unknown[]][] = [];
    if (msg.type === 'share-keys' || msg.type === 'server-shares') nested.push(['EncryptedShare', msg.shares]);
    if (msg.type === 'unmask-shares') nested.push(['PlainShare', msg.selfMaskShares], ['PlainShare', msg.keyShares]);
    if (msg.type === 'unmask-request') nested.push(['PartySignature', msg.signatures]);
    for (const [name, list] of nested) {
      expect(list.length).toBeGreaterThan(0);
      for (const el of list) expect(Object.keys(el as object).sort()).toEqual(fieldsOf(name));
    }
  }
  expect([...seen].sort()).toEqual(Object.keys(PROTO_NAME).sort());
  // the envelopes name every message once
  expect(fieldsOf('SecAggClientMessage')).toEqual(['advertiseKeys', 'consistencySignature', 'maskedInput', 'shareKeys', 'unmaskShares']);
  expect(fieldsOf('SecAggServerMessage')).toEqual(['consistencyRequest', 'serverKeys', 'serverShares', 'unmaskRequest']);
});
