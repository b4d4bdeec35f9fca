/**
 * The coordinator's secure-aggregation adapter (coordinator/rounds/secagg-protocol.ts) when a share
 * holder reveals a wrong unmask share: the round completes (the server corrected the share) and the
 * adapter logs one line per wrong share naming holder, owner and kind — no secret, no share value.
 */
import { SecAggRoundProtocol } from '../../coordinator/rounds/secagg-protocol';
import type { RoundPhase } from '../../coordinator/rounds/protocol';
import { sodiumReady } from '../../shared/crypto/sodium';
import { publicRoundSeed } from '../../shared/fl/seeds';
import { layoutSize, sharedParameterLayout } from '../../shared/model/layout';
import { defaultPolicy } from '../../shared/policy/defaults';
import { policyHash } from '../../shared/policy/schema';
import { SecAggClient } from '../../shared/secagg/client';
import { signMessage, type ClientMessage, type UnmaskShares } from '../../shared/secagg/messages';
import { decodeServerMessage, encodeClientMessage } from '../../shared/secagg/wire';
import { makeFederation } from '../shared/secagg/harness';

beforeAll(() => sodiumReady());

const PHASE_OF: Record<ClientMessage['type'], RoundPhase> = {
  'advertise-keys': 'advertise',
  'share-keys': 'share',
  'masked-input': 'mask',
  'consistency-signature': 'consistency',
  'unmask-shares': 'unmask',
};

function runRound(wrongHolder: string | null) {
  const fed = makeFederation(5, 'adapter-wrong');
  const policy = defaultPolicy({
    federationId: 'fed-adapter',
    coordinator: { name: 'coordinator', publicKey: Buffer.from(fed.coordinator.publicKey).toString('base64') },
    parties: fed.ids.map((name) => ({ name, publicKey: Buffer.from(fed.keys.get(name)!.publicKey).toString('base64') })),
    catalogue: { hash: 'ab'.repeat(32), numItems: 20 },
  });
  const dim = layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
  const runId = 'run-1';
  const round = 1;
  const lines: string[] = [];
  const proto = new SecAggRoundProtocol(
    { federationId: policy.federationId, runId, round, policy, policyHash: policyHash(policy), parties: fed.ids, baseModel: { version: 0, bytes: new Uint8Array(4 * dim), state: null } },
    fed.coordinator.secretKey,
    (line) => lines.push(line),
  );
  const ctx = proto.server.ctx;
  const clients = new Map(
    fed.ids.map((id) => [
      id,
      new SecAggClient({
        federationId: policy.federationId,
        runId,
        round,
        params: ctx.params,
        roundSeed: publicRoundSeed('graph', policy.federationId, runId, round),
        vectorLength: ctx.vectorLength,
        peers: fed.peers,
        identity: { partyId: id, secretKey: fed.keys.get(id)!.secretKey },
        coordinatorPublicKey: fed.coordinator.publicKey,
      }),
    ]),
  );
  const zero = new Uint32Array(ctx.vectorLength);
  const send = (m: ClientMessage) => {
    let msg = m;
    if (m.type === 'unmask-shares' && m.sender === wrongHolder) {
      const u = m as UnmaskShares;
      const selfMaskShares = u.selfMaskShares.map((s) => (s.owner === 'party-003' ? { owner: s.owner, share: s.share.map((b, i) => (i === 2 ? b ^ 0x40 : b)) } : s));
      const { signature: _s, ...rest } = { ...u, selfMaskShares };
      msg = signMessage<UnmaskShares>(rest, fed.keys.get(m.sender)!.secretKey, runId);
    }
    proto.receive(m.sender, PHASE_OF[m.type], encodeClientMessage(msg));
  };
  for (const id of fed.ids) send(clients.get(id)!.start());
  let step = proto.closePhase();
  while (step.kind === 'next') {
    for (const { to, payload } of step.messages) send(clients.get(to)!.handle(decodeServerMessage(payload), zero));
    step = proto.closePhase();
  }
  return { step, lines, sum: proto.lastSum };
}

test('a wrong self-mask share: the round completes with the exact sum and one log line names holder, owner, kind', () => {
  const { step, lines, sum } = runRound('party-001');
  expect(step.kind).toBe('done');
  expect(Array.from(sum!).every((v) => v === 0)).toBe(true); // every input was zero: the masks all came off
  const wrong = lines.filter((l) => l.includes('wrong share'));
  expect(wrong).toEqual(['secagg round 1: party party-001 revealed a wrong share of the self-mask seed of party-003 at unmask (party-001 altered it, or party-003 dealt it wrong); it was corrected by decoding the other shares']);
});

test('control: no wrong share, no such line', () => {
  const { step, lines } = runRound(null);
  expect(step.kind).toBe('done');
  expect(lines.filter((l) => l.includes('wrong share'))).toEqual([]);
});
