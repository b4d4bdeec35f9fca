/**
 * `fedbridge node join` against a coordinator whose events do not verify under the coordinator
 * key pinned in the node's policy (a wrong or impersonating coordinator behind a valid TLS
 * certificate): the node refuses the first event (a RefusedEvent) and leaves at once with a
 * UserError naming the reason, instead of reconnecting with backoff, and takes no part in anything.
 * The same for a TLS set-up no retry can fix (no client certificate, a CA that did not sign the
 * coordinator's certificate); a refused connection is retried, with its reason in words.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
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

  test('a TLS set-up no retry can fix ends join at once with the flag to fix; a refused connection is retried with its reason in words', async () => {
    const { env, coord } = fx;
    const dir = path.join(env.dir, 'nodes', 'platform'); // initialised, imported and enrolled by the first test
    const identity = await loadIdentity(dir);
    const policy = smallPolicy({ ds: loadDataset(dir), parties: ['platform', 'insurer'], coordinatorKey: coord.publicKey, keys: { platform: identity.publicKey, insurer: ed25519Keygen().publicKey }, samplingRate: 0.25, phaseSeconds: 20 });
    const policyFile = path.join(env.dir, 'policy-tls.yaml');
    fs.writeFileSync(policyFile, stringify(policy));
    const conn = nodeConnection(env, coord.grpcPort, dir, 'platform', policyFile);
    const join = async (o: Partial<typeof conn>) => {
      const lines: string[] = [];
      const err = await joinFederation({ ...conn, ...o, holdout: 'last', maxReconnects: 1, log: (l) => lines.push(l) }).then(
        () => null,
        (e: Error) => e,
      );
      return { err: err as UserError | null, lines };
    };
    const addr = `127.0.0.1:${coord.grpcPort}`;
    // no client certificate, where the coordinator requires mutual TLS
    const noCert = await join({ certFile: undefined, keyFile: undefined });
    expect([noCert.err?.exitCode, noCert.err?.message]).toEqual([1, `cannot reach the coordinator: the coordinator at ${addr} requires a client certificate (mutual TLS): pass --cert and --key (the party's or operator's certificate from \`fedbridge coordinator certs\`/\`init\`)`]);
    expect(noCert.lines.filter((l) => /reconnecting/.test(l))).toEqual([]);
    // a CA that did not sign the coordinator's certificate (the party's own certificate)
    const wrongCa = await join({ caFile: conn.certFile });
    expect([wrongCa.err?.exitCode, wrongCa.err?.message]).toEqual([1, `cannot reach the coordinator: the coordinator's TLS certificate at ${addr} does not verify (self-signed certificate in certificate chain): is --ca ${conn.certFile} the CA that signed the coordinator's certificate?`]);
    expect(wrongCa.lines.filter((l) => /reconnecting/.test(l))).toEqual([]);
    // a key that is not the certificate's: refused before connecting, naming both flags
    const mismatch = await join({ keyFile: env.certs.clients.insurer.key });
    expect([mismatch.err?.exitCode, mismatch.err?.message]).toEqual([2, `--key: ${env.certs.clients.insurer.key} is not the private key of the certificate --cert ${conn.certFile}`]);
    expect(mismatch.lines.filter((l) => /connected:|joining|stream/.test(l))).toEqual([]);
    // nothing listening: transient (a coordinator restarting looks like this), retried, said in words
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const down = await join({ coordinator: `127.0.0.1:${closed}` });
    const refused = `nothing accepts connections at 127.0.0.1:${closed} (connection refused): is the coordinator running, and is this its gRPC address (grpc.listen)?`;
    expect(down.lines.filter((l) => /reconnecting/.test(l))).toEqual([expect.stringContaining(`stream failed (${refused}); reconnecting in 1 s`)]);
    expect([down.err?.exitCode, down.err?.message]).toEqual([1, `gave up after 1 reconnection attempts: ${refused}`]);
    expect(readLedger(dir)?.entries ?? []).toEqual([]);
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
