/**
 * Builds and starts one coordinator from a validated config: identity key, TLS credentials, a check
 * that both listen addresses can be bound, storage (migrated), audit sealer, round orchestration
 * (recovering a run left open by a previous process), then the NestJS hybrid application — gRPC
 * (TLS always; mutual TLS when requireClientCert) and HTTP for /healthz and /metrics. Ports may be
 * 0; the bound ones are returned.
 *
 * What an operator can get wrong at start-up fails with a StartupError (a UserError: one line, the
 * config field named, no stack) before storage is touched where it can be told that early: a
 * listen address in use, not resolvable or not this machine's; a PostgreSQL server that refuses
 * the connection, the credentials or the database.
 */
import 'reflect-metadata';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Server as NetServer } from 'node:net';
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
import { openDriver, redactUrl } from './storage/sql';
import { acquireInstanceLock } from './storage/instance-lock';
import { UserError } from '../shared/cli/errors';

/** A start-up failure an operator can act on, naming the config field (exit code 1). */
export class StartupError extends UserError {
  constructor(message: string) {
    super(message, 1);
    this.name = 'StartupError';
  }
}

const LISTEN_PROBLEMS: Record<string, string> = {
  EADDRINUSE: 'the port is in use (another coordinator or program listens on it)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: "the address is not one of this machine's",
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve (name service unavailable)',
};

/** A listen failure (Node's errno code, or grpc-js's bind message quoting it) as a StartupError; null when unknown. */
function listenError(field: string, address: string, e: unknown): StartupError | null {
  const code = (e as NodeJS.ErrnoException)?.code;
  const msg = String((e as Error)?.message ?? '');
  const known = typeof code === 'string' && code in LISTEN_PROBLEMS ? code : Object.keys(LISTEN_PROBLEMS).find((c) => msg.includes(c)) ?? (msg.startsWith('Name resolution failed') ? 'ENOTFOUND' : null);
  return known ? new StartupError(`${field} ${address}: cannot listen: ${LISTEN_PROBLEMS[known]}`) : null;
}

/**
 * Binds `address` and lets it go, so that an address in use or not resolvable is refused before
 * storage is opened (the real bind later is checked as well: the port may be taken in between).
 */
async function probeListen(field: string, address: string): Promise<void> {
  const { host, port } = splitHostPort(address);
  const server: NetServer = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
  } catch (e) {
    throw listenError(field, address, e) ?? e;
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Listens the Nest HTTP server on host:port (not app.listen, which also logs the error as a Nest ERROR line). */
function listenHttp(server: NetServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
}

const PG_NETWORK: Record<string, string> = {
  ECONNREFUSED: 'connection refused (is the server running, and listening there?)',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve (name service unavailable)',
  ETIMEDOUT: 'the connection timed out',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  ECONNRESET: 'the server closed the connection',
};

/**
 * A PostgreSQL connection failure as a StartupError naming storage.databaseUrl (the URL shown with
 * its password hidden): network errors, and the server's refusals by SQLSTATE — class 28 (wrong
 * user or password), 3D000 (no such database), class 08 (connection exception), 57P03 (starting
 * up). Null for anything else.
 */
function storageError(url: string | undefined, e: unknown): StartupError | null {
  if (!url) return null;
  const code = (e as { code?: unknown })?.code;
  if (typeof code !== 'string') return null;
  const where = `storage.databaseUrl (or env DATABASE_URL) ${redactUrl(url)}`;
  if (code in PG_NETWORK) return new StartupError(`${where}: cannot connect to PostgreSQL: ${PG_NETWORK[code]}`);
  if (code.startsWith('28') || code === '3D000' || code.startsWith('08') || code === '57P03') return new StartupError(`${where}: PostgreSQL refused the connection: ${(e as Error).message} (SQLSTATE ${code})`);
  return null;
}

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
  // everything read from the TLS files, and the listen addresses, before storage is touched: a bad
  // file (config.ts checks them) or a port in use must not leave a migrated schema behind
  const tls = config.grpc.tls;
  const credentials = grpc.ServerCredentials.createSsl(
    tls.ca ? fs.readFileSync(tls.ca) : null,
    [{ cert_chain: fs.readFileSync(tls.cert), private_key: fs.readFileSync(tls.key) }],
    tls.requireClientCert,
  );
  // HTTPS (config http.tls) uses the gRPC server certificate: auditor bearer tokens are never sent in clear
  const httpsOptions = config.http.tls ? { cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) } : undefined;
  await probeListen('grpc.listen', config.grpc.listen);
  await probeListen('http.listen', config.http.listen);
  fs.mkdirSync(config.storage.dataDir, { recursive: true, mode: 0o700 });
  const store = { databaseUrl: config.storage.databaseUrl, sqliteFile: path.join(config.storage.dataDir, 'coordinator.sqlite') };
  let lock: Awaited<ReturnType<typeof acquireInstanceLock>>;
  try {
    lock = await acquireInstanceLock(store); // one coordinator per store (storage/instance-lock.ts)
  } catch (e) {
    throw storageError(store.databaseUrl, e) ?? e;
  }
  let db: Awaited<ReturnType<typeof openDriver>>;
  try {
    db = await openDriver(store);
  } catch (e) {
    await lock.release();
    throw storageError(store.databaseUrl, e) ?? e;
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
    app = await NestFactory.create(AppModule.forContext(ctx), { logger: ['error', 'warn'], abortOnError: false, httpsOptions });
    // no "X-Powered-By: Express" on /healthz, /metrics and /audit/ (it only tells a prober what to try)
    (app.getHttpAdapter().getInstance() as { disable?: (setting: string) => void }).disable?.('x-powered-by');
    app.connectMicroservice({ strategy }, { inheritAppConfig: true });
    try {
      await app.startAllMicroservices();
    } catch (e) {
      throw listenError('grpc.listen', config.grpc.listen, e) ?? e;
    }
    const grpcPort = await strategy.boundPort();
    const { host, port } = splitHostPort(config.http.listen);
    await app.init();
    try {
      await listenHttp(app.getHttpServer(), host, port);
    } catch (e) {
      throw listenError('http.listen', config.http.listen, e) ?? e;
    }
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
