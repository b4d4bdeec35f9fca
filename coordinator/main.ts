/**
 * Builds and starts one coordinator from a validated config: identity key, storage (migrated),
 * audit sealer, round orchestration (recovering a run left open by a previous process), then the
 * NestJS hybrid application — gRPC (TLS always; mutual TLS when requireClientCert) and HTTP for
 * /healthz and /metrics. Ports may be 0; the bound ones are returned.
 */
import 'reflect-metadata';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { NestFactory } from '@nestjs/core';
import type { GrpcOptions } from '@nestjs/microservices';
import type { INestApplication } from '@nestjs/common';
import { sodiumReady } from '../shared/crypto/sodium';
import { AppModule } from './app.module';
import { CoordinatorAudit, coordinatorSealer } from './audit/log';
import type { CoordinatorConfig } from './config/config';
import type { CoordinatorContext } from './context';
import { BoundServerGrpc } from './grpc/bound-server';
import { guardRequestDeserializers, malformedRequestInterceptor } from './grpc/malformed';
import { FEDERATION_PROTO, GRPC_MAX_CONCURRENT_STREAMS, GRPC_MAX_MESSAGE_BYTES, LOADER_OPTIONS, PROTO_PACKAGE, PROTO_ROOT } from './grpc/options';
import { CoordinatorMetrics } from './http/metrics';
import { PartyAuthenticator } from './identity/authenticate';
import { loadCoordinatorKey } from './identity/keys';
import { EventHub } from './rounds/events';
import { UploadRegistry } from './participant/uploads';
import { DownloadSlots, ModelCache } from './participant/downloads';
import type { RoundProtocolFactory } from './rounds/protocol';
import { SecAggProtocolFactory } from './rounds/secagg-protocol';
import { RoundsService, type Timers } from './rounds/rounds.service';
import { migrate } from './storage/migrations';
import { Repository } from './storage/repository';
import { openDriver } from './storage/sql';
import { acquireInstanceLock } from './storage/instance-lock';

export interface RunningCoordinator {
  grpcPort: number;
  httpPort: number;
  publicKey: Uint8Array;
  ctx: CoordinatorContext;
  close(): Promise<void>;
  /**
   * Settles once the coordinator has stopped: with null after close(), with a one-line reason when
   * it stopped itself because it lost its instance lock on the store (PostgreSQL session ended:
   * another coordinator could take the store, so this one must not write to it any more).
   */
  readonly stopped: Promise<string | null>;
}

export interface CoordinatorOptions {
  /**
   * the round protocol: 'secagg' (default) = secure aggregation (rounds/secagg-protocol.ts);
   * a factory (tests); null = runs cannot be started
   */
  protocol?: RoundProtocolFactory | 'secagg' | null;
  timers?: Timers;
  log?: (line: string) => void;
  /**
   * create the identity key file when missing (tests, benchmarks). Default false: `fedbridge
   * coordinator init` makes the key, and a missing one is an error, never a silent new identity.
   */
  createKey?: boolean;
}

function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}

export async function createCoordinator(config: CoordinatorConfig, opts: CoordinatorOptions = {}): Promise<RunningCoordinator> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`[coordinator] ${line}\n`));
  await sodiumReady();
  const identity = await loadCoordinatorKey(config.identity.keyFile, { create: opts.createKey ?? false });
  fs.mkdirSync(config.storage.dataDir, { recursive: true, mode: 0o700 });
  const store = { databaseUrl: config.storage.databaseUrl, sqliteFile: path.join(config.storage.dataDir, 'coordinator.sqlite') };
  const lock = await acquireInstanceLock(store); // one coordinator per store (storage/instance-lock.ts)
  let db: Awaited<ReturnType<typeof openDriver>>;
  try {
    db = await openDriver(store);
  } catch (e) {
    await lock.release();
    throw e;
  }
  let app: INestApplication | null = null;
  try {
    const applied = await migrate(db);
    log(`storage ${db.description}${applied.length ? `, applied migrations ${applied.join(', ')}` : ''}`);
    const timers = opts.timers;
    const repo = new Repository(db, timers ? () => timers.now() : Date.now);
    const sealer = coordinatorSealer(identity.secretKey);
    const audit = await CoordinatorAudit.open(repo, identity.secretKey, timers ? () => timers.now() : Date.now);
    const metrics = new CoordinatorMetrics();
    const events = new EventHub(config.federationId, identity.secretKey, metrics);
    const rounds = new RoundsService({
      repo,
      sealer,
      audit,
      events,
      metrics,
      factory: opts.protocol === undefined || opts.protocol === 'secagg' ? new SecAggProtocolFactory(identity.secretKey, log) : opts.protocol,
      federationId: config.federationId,
      coordinatorPublicKey: identity.publicKey,
      timers,
      maxConsecutiveAborts: config.rounds.maxConsecutiveAborts,
      log,
    });
    const auth = new PartyAuthenticator(repo, {
      federationId: config.federationId,
      clockSkewMs: config.grpc.clockSkewSeconds * 1000,
      requireClientCert: config.grpc.tls.requireClientCert,
      maxBodyBytes: GRPC_MAX_MESSAGE_BYTES,
      now: timers ? () => timers.now() : undefined,
    });
    // an upload whose round moved on is ended at once (its chunks dropped), not left to finish
    const uploads = new UploadRegistry((u) => void rounds.checkMaskedUpload(u.party, u.runId, u.round, u.dataHash, u.replayed));
    events.onPublish(() => uploads.sweep());
    const ctx: CoordinatorContext = { config, identity, repo, sealer, audit, events, metrics, auth, rounds, uploads, models: new ModelCache(repo), downloads: new DownloadSlots(config.grpc.maxDownloadsPerParty), log, startedAt: Date.now() };
    await rounds.recover();

    const tls = config.grpc.tls;
    const credentials = grpc.ServerCredentials.createSsl(
      tls.ca ? fs.readFileSync(tls.ca) : null,
      [{ cert_chain: fs.readFileSync(tls.cert), private_key: fs.readFileSync(tls.key) }],
      tls.requireClientCert,
    );
    const grpcOptions: GrpcOptions['options'] = {
      package: PROTO_PACKAGE,
      protoPath: FEDERATION_PROTO,
      url: config.grpc.listen,
      credentials,
      loader: { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] },
      maxReceiveMessageLength: GRPC_MAX_MESSAGE_BYTES,
      maxSendMessageLength: GRPC_MAX_MESSAGE_BYTES,
      channelOptions: {
        'grpc.max_concurrent_streams': GRPC_MAX_CONCURRENT_STREAMS,
        // half-open connections are found by PING and dropped (config grpc.keepaliveMs)
        'grpc.keepalive_time_ms': config.grpc.keepaliveMs,
        'grpc.keepalive_timeout_ms': config.grpc.keepaliveTimeoutMs,
      },
      // undecodable protobuf -> INVALID_ARGUMENT, not grpc-js's INTERNAL (grpc/malformed.ts)
      onLoadPackageDefinition: (def) => {
        guardRequestDeserializers(def);
      },
    };
    const strategy = new BoundServerGrpc(grpcOptions, [
      malformedRequestInterceptor((method, m) => {
        metrics.rejected.inc({ code: 'INVALID_ARGUMENT' });
        log(`refused ${method}: ${m.details}`);
      }),
    ]);
    // HTTPS (config http.tls) uses the gRPC server certificate: auditor bearer tokens are never sent in clear
    const httpsOptions = config.http.tls ? { cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) } : undefined;
    app = await NestFactory.create(AppModule.forContext(ctx), { logger: ['error', 'warn'], abortOnError: false, httpsOptions });
    app.connectMicroservice({ strategy }, { inheritAppConfig: true });
    await app.startAllMicroservices();
    const grpcPort = await strategy.boundPort();
    const { host, port } = splitHostPort(config.http.listen);
    await app.listen(port, host);
    const httpPort = (app.getHttpServer().address() as { port: number }).port;
    log(`federation "${config.federationId}": gRPC (TLS${tls.requireClientCert ? ', mutual' : ''}) on ${splitHostPort(config.grpc.listen).host}:${grpcPort}, HTTP${config.http.tls ? 'S' : ''} on ${host}:${httpPort}`);
    const started = app;
    let closing: Promise<void> | null = null;
    let lost: string | null = null;
    let settle!: (reason: string | null) => void;
    const stopped = new Promise<string | null>((resolve) => (settle = resolve));
    const close = () =>
      (closing ??= (async () => {
        try {
          await rounds.close();
          uploads.endAll('the coordinator is shutting down; send it again once it is back');
          events.completeAll();
          await started.close();
          await db.close();
          await lock.release();
        } finally {
          settle(lost);
        }
      })());
    // the store may now be taken by another coordinator: stop serving at once (storage/instance-lock.ts)
    lock.onLost((reason) => {
      lost = reason;
      log(reason);
      close().catch((e) => log(`closing after the lost lock failed: ${(e as Error).message}`));
    });
    return { grpcPort, httpPort, publicKey: identity.publicKey, ctx, close, stopped };
  } catch (e) {
    if (app) await app.close().catch(() => undefined);
    await db.close().catch(() => undefined);
    await lock.release().catch(() => undefined);
    throw e;
  }
}
