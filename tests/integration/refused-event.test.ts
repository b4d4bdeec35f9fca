/**
 * `fedbridge node join` against a coordinator whose events do not verify under the coordinator
 * key pinned in the node's policy (a wrong or impersonating coordinator behind a valid TLS
 * certificate): the node refuses the first event (a RefusedEvent) and leaves at once with a
 * UserError naming the reason, instead of reconnecting with backoff, and takes no part in anything.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { EventKind } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { generateSynthetic } from '../../participant-node/data/generate';
import { initNode, loadIdentity } from '../../participant-node/identity';
import { importCsv } from '../../participant-node/data/import';
import { joinFederation } from '../../participant-node/federation/client';
import { loadDataset } from '../../participant-node/data/store';
import { readLedger } from '../../participant-node/privacy/ledger';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { UserError } from '../../shared/cli/errors';
import { operator, TestParty, unary } from '../coordinator/helpers/harness';
import { realCoordinator } from '../coordinator/helpers/fixture';
import { nodeConnection, smallPolicy } from './policy';

describe('a node facing events it cannot verify', () => {
  const fx = realCoordinator(['platform', 'insurer']);

  test('the first event fails verification under the pinned key: join ends with the reason, no retries', async () => {
    const { env, coord } = fx;
    const gen = path.join(env.dir, 'gen');
    await generateSynthetic({ out: gen, seed: 5, scale: 'small', parties: ['platform', 'insurer'], usersPerParty: 40, itemsPerParty: 20 });
    const dir = path.join(env.dir, 'nodes', 'platform');
    await initNode(dir, 'platform');
    await importCsv({ dataDir: dir, users: path.join(gen, 'platform', 'users.csv'), items: path.join(gen, 'platform', 'items.csv'), interactions: path.join(gen, 'platform', 'interactions.csv') });
    const key = (await loadIdentity(dir)).publicKey;
    const op = operator(env, coord.grpcPort);
    await unary(op.client.enroll.bind(op.client), { name: 'platform', publicKey: key, certSha256: env.certs.clients.platform.sha256 }, op.metadata);
    op.client.close();
    // the policy pins another coordinator key than the one this coordinator signs with
    const policy = smallPolicy({ ds: loadDataset(dir), parties: ['platform', 'insurer'], coordinatorKey: ed25519Keygen().publicKey, keys: { platform: key, insurer: ed25519Keygen().publicKey }, samplingRate: 0.25, phaseSeconds: 20 });
    const policyFile = path.join(env.dir, 'policy.yaml');
    fs.writeFileSync(policyFile, stringify(policy));

    const lines: string[] = [];
    const t0 = Date.now();
    const err = await joinFederation({ ...nodeConnection(env, coord.grpcPort, dir, 'platform', policyFile), holdout: 'last', maxReconnects: 3, log: (l) => lines.push(l) }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect(err!.message).toBe('an event from the coordinator failed signature verification (pinned key in the policy)');
    expect((err as UserError).exitCode).toBe(1);
    // no reconnection attempt (the first backoff would wait 1 s and log it), nothing charged
    expect(lines.filter((l) => /reconnecting/.test(l))).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(readLedger(dir)?.entries ?? []).toEqual([]);
  }, 60_000);

  test('newer event streams under its identity closed the node\'s stream (RESOURCE_EXHAUSTED): join ends with the reason, no retries', async () => {
    const { env, coord } = fx;
    const dir = path.join(env.dir, 'nodes', 'platform'); // initialised, imported and enrolled by the test above
    const identity = await loadIdentity(dir);
    const policy = smallPolicy({ ds: loadDataset(dir), parties: ['platform', 'insurer'], coordinatorKey: coord.publicKey, keys: { platform: identity.publicKey, insurer: ed25519Keygen().publicKey }, samplingRate: 0.25, phaseSeconds: 20 });
    const policyFile = path.join(env.dir, 'policy-2.yaml');
    fs.writeFileSync(policyFile, stringify(policy));
    const lines: string[] = [];
    const joined = joinFederation({ ...nodeConnection(env, coord.grpcPort, dir, 'platform', policyFile), holdout: 'last', maxReconnects: 3, log: (l) => lines.push(l) }).then(
      () => null,
      (e: Error) => e,
    );
    let settled = false;
    void joined.then(() => (settled = true));
    for (let i = 0; i < 400 && !lines.some((l) => l.startsWith('connected:')); i++) await new Promise((r) => setTimeout(r, 25));
    expect(lines.some((l) => l.startsWith('connected:'))).toBe(true);
    // a second holder of the party's identity opens streams: at the fifth the oldest is closed, and
    // so on (a stream of the first test that the server has not yet seen end may be older than the node's)
    const twin = new TestParty('platform', env, coord.grpcPort, { keys: { publicKey: identity.publicKey, secretKey: identity.secretKey } });
    const streams = [];
    for (let i = 0; i < 8 && !settled; i++) {
      const s = twin.subscribe(coord.publicKey);
      await s.next((e) => e.kind === EventKind.EVENT_KIND_HELLO);
      streams.push(s);
      await new Promise((r) => setTimeout(r, 50));
    }
    const err = await joined;
    expect(err).toBeInstanceOf(UserError);
    expect(err!.message).toMatch(/^the coordinator closed this node's event stream: .*opened more than 4 event streams; this one, its oldest, was closed/);
    expect(lines.filter((l) => /reconnecting/.test(l))).toEqual([]);
    for (const s of streams) s.cancel();
    twin.close();
  }, 60_000);

  test("a round-noise policy whose maxUsersPerParty is below the node's users: join refuses before connecting", async () => {
    const { env, coord } = fx;
    const dir = path.join(env.dir, 'nodes', 'platform'); // initialised, imported and enrolled by the first test
    const identity = await loadIdentity(dir);
    const base = smallPolicy({ ds: loadDataset(dir), parties: ['platform', 'insurer'], coordinatorKey: coord.publicKey, keys: { platform: identity.publicKey, insurer: ed25519Keygen().publicKey }, samplingRate: 0.25, phaseSeconds: 20 });
    const policy = { ...base, privacy: { ...base.privacy, mechanism: 'round-noise' as const, maxUsersPerParty: 5 } };
    const policyFile = path.join(env.dir, 'policy-capped.yaml');
    fs.writeFileSync(policyFile, stringify(policy));
    const lines: string[] = [];
    const err = await joinFederation({ ...nodeConnection(env, coord.grpcPort, dir, 'platform', policyFile), holdout: 'last', maxReconnects: 3, log: (l) => lines.push(l) }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect(err!.message).toMatch(/^not joining: this party has \d+ users with training data, more than the policy's privacy.maxUsersPerParty \(5\)/);
    expect(lines.filter((l) => /connected:|joining/.test(l))).toEqual([]);
    expect(readLedger(dir)?.entries ?? []).toEqual([]);
  }, 60_000);
});
