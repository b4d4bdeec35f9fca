/**
 * A node connection that dies half-open (its host or network gone, no FIN or RST reaches the
 * coordinator) is found by the coordinator's HTTP/2 keepalive PING (grpc.keepaliveMs,
 * grpc.keepaliveTimeoutMs) and dropped: its event stream ends and its masked-input upload slot is
 * freed long before grpc.streamIdleMs (left at its 60 s default here), so a resend over a new
 * connection is accepted. Real gRPC with mutual TLS on loopback; the half-open connection is made by
 * a TCP relay that stops passing bytes in both directions without closing either socket.
 * The node's side likewise: its client pings the coordinator (JoinOptions.keepalive), so its event
 * stream over a silenced connection fails UNAVAILABLE (the node then reconnects) instead of waiting
 * forever.
 */
import * as net from 'node:net';
import type { RunningCoordinator } from '../../coordinator/main';
import { PlainSumFactory } from './helpers/plain-protocol';
import { enrol, makeEnv, ManualTimers, operator, startCoordinator, startOneRoundRun, TestParty, testPolicy, throughShareKeys, until, type Env, type EventStream } from './helpers/harness';
import { FederationClient } from '../../participant-node/federation/client';
import { grpc } from './helpers/harness';

/** A loopback TCP relay to `port` whose connections can be silenced (half-open) on demand. */
async function relay(port: number) {
  const pairs: { client: net.Socket; upstream: net.Socket; upstreamClosed: boolean }[] = [];
  let silent = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    const pair = { client, upstream, upstreamClosed: false };
    pairs.push(pair);
    client.on('data', (b) => void (silent || upstream.write(b)));
    upstream.on('data', (b) => void (silent || client.write(b)));
    // while silent, an end on one side is not passed on either: the other side must not learn of it
    client.on('close', () => void (silent || upstream.destroy()));
    upstream.on('close', () => {
      pair.upstreamClosed = true;
      if (!silent) client.destroy();
    });
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    silence: () => void (silent = true),
    /** every relayed connection closed by the coordinator's side */
    allDroppedByServer: () => pairs.length > 0 && pairs.every((p) => p.upstreamClosed),
    close: async () => {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('half-open connections', () => {
  let env: Env;
  let coord: RunningCoordinator;
  let parties: TestParty[];
  let streams: EventStream[];
  let proxy: Awaited<ReturnType<typeof relay>>;
  const timers = new ManualTimers();

  beforeAll(async () => {
    env = await makeEnv(['platform', 'insurer', 'insurer2', 'node-ka']);
    Object.assign(env.configInput.grpc, { keepaliveMs: 300, keepaliveTimeoutMs: 700 });
    coord = await startCoordinator(env, new PlainSumFactory(2), timers);
    proxy = await relay(coord.grpcPort);
  });
  afterAll(async () => {
    for (const s of streams ?? []) s.cancel();
    for (const p of parties ?? []) p.close();
    await proxy?.close();
    await coord?.close();
  });

  test('a silenced connection is dropped by keepalive: its upload slot and event stream are freed, a resend over a new connection is received', async () => {
    expect(coord.ctx.config.grpc.streamIdleMs).toBe(60_000);
    // the platform's node reaches the coordinator through the relay, the insurers directly
    const viaRelay = new TestParty('platform', env, proxy.port);
    parties = [viaRelay, new TestParty('insurer', env, coord.grpcPort), new TestParty('insurer2', env, coord.grpcPort)];
    let runId: string;
    let dim: number;
    ({ runId, dim, streams } = await startOneRoundRun(env, coord, parties, 64 * 1024));
    await throughShareKeys(parties, streams, runId);
    expect(coord.ctx.events.subscriberCount('platform')).toBe(1);

    // an upload opened and one chunk sent, then the connection goes silent both ways
    const input = new Uint8Array(dim * 4).fill(1);
    const chunks = viaRelay.uploadChunks(runId, 1, input, { chunkBytes: 4096 });
    const call = viaRelay.client.uploadMaskedInput(() => undefined);
    call.on('error', () => undefined);
    call.write(chunks[0]);
    call.write(chunks[1]);
    await until('the upload is receiving', () => coord.ctx.uploads.count() === 1);
    proxy.silence();

    // dropped after about keepaliveMs + keepaliveTimeoutMs (1 s), far inside streamIdleMs (60 s)
    await until('the coordinator drops the silent connection', () => proxy.allDroppedByServer(), 10_000);
    await until('the upload slot is freed', () => coord.ctx.uploads.count() === 0 && coord.ctx.uploads.heldBytes() === 0, 5_000);
    await until('its event stream is gone', () => coord.ctx.events.subscriberCount('platform') === 0, 5_000);

    // the node reconnects (a new connection, not through the dead relay) and sends its input again
    const again = new TestParty('platform', env, coord.grpcPort, { keys: viaRelay.keys });
    parties.push(again);
    const ack = await again.upload(runId, 1, input, { chunkBytes: 4096 });
    expect(ack.receivedBytes).toBe(String(input.length));
  });

  test("the node's event stream over a silenced connection fails UNAVAILABLE (client keepalive)", async () => {
    const node = await relay(coord.grpcPort);
    const party = new TestParty('node-ka', env, coord.grpcPort, {});
    const other = new TestParty('other', env, coord.grpcPort);
    const op = operator(env, coord.grpcPort);
    try {
      await enrol(env, op, [party]);
      const policy = testPolicy([party, other], coord.ctx.identity.publicKey);
      const fc = new FederationClient(
        { dataDir: '/nonexistent', coordinator: `127.0.0.1:${node.port}`, policyFile: '', caFile: env.certs.ca, certFile: env.certs.clients['node-ka'].cert, keyFile: env.certs.clients['node-ka'].key, backend: 'cpu', holdout: 'last', keepalive: { timeMs: 300, timeoutMs: 700 } },
        policy,
        { publicKey: party.keys.publicKey, secretKey: party.keys.secretKey, name: 'node-ka' },
      );
      const call = fc.subscribe();
      const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
      const hello = await Promise.race([new Promise((resolve) => call.once('data', resolve)), ended.then((e) => Promise.reject(e))]);
      expect(fc.openEvent(hello as never).kind).toBeDefined();
      node.silence();
      let timer: NodeJS.Timeout | undefined;
      const e = await Promise.race([ended, new Promise<null>((r) => (timer = setTimeout(() => r(null), 10_000)))]);
      clearTimeout(timer);
      expect(e?.code).toBe(grpc.status.UNAVAILABLE);
      fc.close();
    } finally {
      party.close();
      other.close();
      op.client.close();
      await node.close();
    }
  });
});
