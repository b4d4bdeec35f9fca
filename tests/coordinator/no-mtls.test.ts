/**
 * grpc.tls.requireClientCert: false — a certificate binding is never silently ignored, over real
 * gRPC on loopback:
 *   - Enroll with cert_sha256 is refused FAILED_PRECONDITION (it could not be enforced), storing
 *     nothing; the same party enrols without one and is served by signature alone;
 *   - a party enrolled bound to its certificate while mutual TLS was on is refused
 *     PERMISSION_DENIED once the coordinator runs without it, with or without a client
 *     certificate offered, instead of being let in by its key alone.
 */
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { makeEnv, startCoordinator, operator, unary, TestParty, grpcError, type Env } from './helpers/harness';
import { PlainSumFactory } from './helpers/plain-protocol';
import type { RunningCoordinator } from '../../coordinator/main';

let env: Env;
let coord: RunningCoordinator | null = null;
beforeAll(async () => {
  env = await makeEnv(['platform', 'insurer', 'carol']);
});
afterAll(async () => {
  await coord?.close();
  fs.rmSync(env.dir, { recursive: true, force: true });
});

/** The status of a DownloadModel: authenticated parties get NOT_FOUND (no model version exists yet). */
const answer = (p: TestParty) => grpcError(p.download(0)).then((e) => `${grpc.status[e.code]}: ${e.details}`);
const SERVED = 'NOT_FOUND: no model version exists yet';

async function restart(requireClientCert: boolean): Promise<RunningCoordinator> {
  await coord?.close();
  env.configInput.grpc.tls.requireClientCert = requireClientCert;
  coord = await startCoordinator(env, new PlainSumFactory(2));
  return coord;
}

test('a binding made under mutual TLS is enforced (refused) after it is turned off; Enroll with a binding is refused while off', async () => {
  let c = await restart(true);
  let op = operator(env, c.grpcPort);
  const platform = new TestParty('platform', env, c.grpcPort);
  await unary(op.client.enroll.bind(op.client), { name: 'platform', publicKey: platform.keys.publicKey, certSha256: env.certs.clients.platform.sha256 }, op.metadata);
  expect(await answer(platform)).toBe(SERVED);
  op.client.close();
  platform.client.close();

  c = await restart(false);
  op = operator(env, c.grpcPort);
  const denied = `party "platform" is enrolled bound to a client certificate, and this coordinator does not ask for client certificates (grpc.tls.requireClientCert is false); turn mutual TLS on, or enrol the party again without a certificate`;
  for (const certAs of ['platform', 'insurer', 'nobody']) {
    const p = new TestParty('platform', env, c.grpcPort, { keys: platform.keys, certAs });
    expect([certAs, await answer(p)]).toEqual([certAs, `PERMISSION_DENIED: DownloadModel: ${denied}`]);
    p.client.close();
  }

  const before = await c.ctx.repo.snapshotCounts();
  const carol = new TestParty('carol', env, c.grpcPort, { certAs: 'nobody' });
  const e = await grpcError(unary(op.client.enroll.bind(op.client), { name: 'carol', publicKey: carol.keys.publicKey, certSha256: env.certs.clients.carol.sha256 }, op.metadata));
  expect([grpc.status[e.code], e.details]).toEqual(['FAILED_PRECONDITION', 'cert_sha256: this coordinator does not ask for client certificates (grpc.tls.requireClientCert is false), so a certificate binding could not be enforced; enrol without a certificate, or turn mutual TLS on']);
  expect(await c.ctx.repo.snapshotCounts()).toEqual(before);
  await unary(op.client.enroll.bind(op.client), { name: 'carol', publicKey: carol.keys.publicKey, certSha256: '' }, op.metadata);
  expect(await answer(carol)).toBe(SERVED);
  carol.client.close();
  op.client.close();
});
