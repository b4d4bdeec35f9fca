/**
 * Coordinator configuration (YAML or JSON), validated once at start-up with zod; any problem fails
 * fast with one line per issue naming the field (`grpc.tls.cert: file not found: /x/server.crt`).
 * Relative paths are resolved against the config file's directory.
 *
 * Example (see coordinator/README.md):
 *   federationId: demo
 *   grpc: { listen: "127.0.0.1:7443", tls: { cert: certs/server.crt, key: certs/server.key,
 *           ca: certs/ca.crt, requireClientCert: true } }
 *   http: { listen: "127.0.0.1:7480" }      # tls: true = HTTPS with the gRPC certificate
 *   storage: { dataDir: data }            # SQLite file data/coordinator.sqlite
 *   # storage: { databaseUrl: "postgres://..." }   (or env DATABASE_URL)
 *   identity: { keyFile: coordinator.key }
 *   operator: { tokenSha256: "<64 hex>", certSha256?: "<64 hex>" }   # certSha256: the operator's client certificate
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { formatZodIssues } from '../../shared/util/zod-issues';
import { tlsFileIssues } from '../../shared/cli/tls';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/, 'expected HOST:PORT, e.g. 127.0.0.1:7443 (port 0 = any free port)')
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be <= 65535');

/** HOST of a HOST:PORT (brackets of an IPv6 address removed). */
export function listenHost(hostPort: string): string {
  return hostPort.slice(0, hostPort.lastIndexOf(':')).replace(/^\[|\]$/g, '');
}

/** `localhost`, 127.0.0.0/8 or ::1: reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return net.isIPv4(h) && h.startsWith('127.');
}

const POSTGRES_URL = /^postgres(ql)?:\/\//;

/**
 * Why a PostgreSQL URL cannot be used, or null. The scheme alone is not enough: "postgres://%%%"
 * has it, parses as a URL, and the driver then looks up the host "%%%".
 */
export function databaseUrlProblem(url: string): string | null {
  if (!POSTGRES_URL.test(url)) return 'expected a postgres:// or postgresql:// URL';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'not a valid URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)';
  }
  for (const [part, v] of [['user name', u.username], ['password', u.password], ['host', u.hostname], ['database', u.pathname]] as const) {
    try {
      decodeURIComponent(v);
    } catch {
      return `not a valid URL: its ${part} has a bad %-escape (write % as %25)`;
    }
  }
  if (u.hostname && /[%\s]/.test(decodeURIComponent(u.hostname))) return 'not a valid URL: the host is no host name or address';
  if (!u.hostname && !u.searchParams.get('host')) return 'not a valid URL: no host (postgres://USER:PASSWORD@HOST:PORT/DATABASE)';
  return null;
}

export const configSchema = z
  .object({
    federationId: z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, 'expected a lowercase name (letters, digits, - or _)'),
    grpc: z
      .object({
        listen: hostPort,
        tls: z
          .object({
            cert: z.string().min(1),
            key: z.string().min(1),
            /** CA that signs client certificates; required with requireClientCert */
            ca: z.string().min(1).optional(),
            requireClientCert: z.boolean().default(true),
          })
          .strict(),
        /** largest accepted data chunk of a streamed upload (bytes) */
        maxChunkBytes: z.number().int().min(1024).max(4 * 1024 * 1024 - 64 * 1024).default(1024 * 1024),
        /** largest accepted masked-input upload (bytes) */
        maxUploadBytes: z.number().int().min(1024).max(2 ** 33).default(512 * 1024 * 1024),
        /** accepted difference between a party's request timestamp and the coordinator clock */
        clockSkewSeconds: z.number().int().min(1).max(3600).default(300),
        /**
         * longest a stream may stall: no next message of a client stream (the first one included:
         * an upload that sends nothing for longer is ended DEADLINE_EXCEEDED and what it sent is
         * dropped), or no progress of a client reading a model download (ended likewise)
         */
        streamIdleMs: z.number().int().min(100).max(3_600_000).default(60_000),
        /** DownloadModel streams one party may have open at a time (RESOURCE_EXHAUSTED beyond) */
        maxDownloadsPerParty: z.number().int().min(1).max(64).default(4),
        /**
         * the coordinator pings every client connection this often (HTTP/2 PING) and drops one
         * that does not answer within keepaliveTimeoutMs: a connection that died half-open (no FIN:
         * a node's host or network gone) ends its streams and frees their slots within about
         * keepaliveMs + keepaliveTimeoutMs, instead of holding them until grpc.streamIdleMs
         */
        keepaliveMs: z.number().int().min(100).max(3_600_000).default(30_000),
        keepaliveTimeoutMs: z.number().int().min(100).max(600_000).default(20_000),
      })
      .strict(),
    /**
     * `tls: true` serves HTTP over TLS with the gRPC server certificate (grpc.tls.cert/key): the
     * audit API's bearer tokens then never cross the network in clear. Off by default (loopback).
     */
    http: z
      .object({
        listen: hostPort,
        tls: z.boolean().optional(),
        /**
         * plain HTTP on an address other than loopback (TLS ends at a proxy in front, or a network
         * you trust with the auditors' bearer tokens): without it, such a listen address needs tls
         */
        allowPlaintext: z.boolean().optional(),
      })
      .strict(),
    storage: z
      .object({
        dataDir: z.string().min(1),
        /** PostgreSQL URL; env DATABASE_URL is used when this is absent */
        databaseUrl: z
          .string()
          .superRefine((url, ctx) => {
            const problem = databaseUrlProblem(url);
            if (problem) ctx.addIssue({ code: 'custom', message: problem });
          })
          .optional(),
      })
      .strict(),
    identity: z.object({ keyFile: z.string().min(1) }).strict(),
    operator: z
      .object({
        tokenSha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected the SHA-256 of the operator token, 64 lowercase hex characters'),
        /** SHA-256 of the operator's client certificate (DER): the operator API then also wants that certificate, not just any the CA signed */
        certSha256: z.string().regex(/^[0-9a-f]{64}$/, "expected the SHA-256 of the operator's client certificate (DER), 64 lowercase hex characters").optional(),
      })
      .strict(),
    rounds: z
      .object({
        /** consecutive aborted rounds after which the run itself is aborted */
        maxConsecutiveAborts: z.number().int().min(1).max(100).default(3),
      })
      .strict()
      .default({ maxConsecutiveAborts: 3 }),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.operator.certSha256 && !c.grpc.tls.requireClientCert) {
      ctx.addIssue({ code: 'custom', path: ['operator', 'certSha256'], message: 'binds the operator API to a client certificate, which needs grpc.tls.requireClientCert: true (mutual TLS)' });
    }
    if (c.grpc.tls.requireClientCert && !c.grpc.tls.ca) {
      ctx.addIssue({ code: 'custom', path: ['grpc', 'tls', 'ca'], message: 'required when requireClientCert is true (the CA that signs party certificates)' });
    }
    if (c.grpc.listen === c.http.listen && !c.grpc.listen.endsWith(':0')) {
      ctx.addIssue({ code: 'custom', path: ['http', 'listen'], message: `${c.http.listen} is grpc.listen too; give HTTP another port` });
    }
    if (!c.http.tls && !c.http.allowPlaintext && !isLoopbackHost(listenHost(c.http.listen))) {
      ctx.addIssue({
        code: 'custom',
        path: ['http', 'listen'],
        message: `${c.http.listen} is not a loopback address, and plain HTTP would carry the audit API's bearer tokens in clear: set http.tls: true (HTTPS with the gRPC certificate; init: --http-tls), or http.allowPlaintext: true if TLS ends at a proxy in front`,
      });
    }
  });

export type CoordinatorConfig = z.infer<typeof configSchema>;
export type CoordinatorConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {
  constructor(readonly issues: string[], source: string) {
    super(`invalid coordinator config ${source}: ${issues.join('; ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Validates a config object; resolves relative paths against `baseDir`; checks that the TLS files
 * exist and are readable (the identity key is checked when it is loaded). `env` supplies
 * DATABASE_URL when the config has none.
 */
export function validateConfig(obj: unknown, baseDir: string, source = '(object)', env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  const r = configSchema.safeParse(obj);
  if (!r.success) throw new ConfigError(formatZodIssues(r.error), source);
  const c = r.data;
  const abs = (p: string) => (path.isAbsolute(p) ? p : path.resolve(baseDir, p));
  c.grpc.tls.cert = abs(c.grpc.tls.cert);
  c.grpc.tls.key = abs(c.grpc.tls.key);
  if (c.grpc.tls.ca) c.grpc.tls.ca = abs(c.grpc.tls.ca);
  c.storage.dataDir = abs(c.storage.dataDir);
  c.identity.keyFile = abs(c.identity.keyFile);
  if (!c.storage.databaseUrl && env.DATABASE_URL) {
    const problem = databaseUrlProblem(env.DATABASE_URL);
    if (problem) throw new ConfigError([`DATABASE_URL (environment): ${problem}`], source);
    c.storage.databaseUrl = env.DATABASE_URL;
  }
  const issues: string[] = [];
  const files: [string, string | undefined][] = [
    ['grpc.tls.cert', c.grpc.tls.cert],
    ['grpc.tls.key', c.grpc.tls.key],
    ['grpc.tls.ca', c.grpc.tls.ca],
  ];
  for (const [field, file] of files) {
    if (!file) continue;
    try {
      fs.accessSync(file, fs.constants.R_OK);
      if (!fs.statSync(file).isFile()) issues.push(`${field}: not a file: ${file}`);
    } catch {
      issues.push(`${field}: file not found or not readable: ${file}`);
    }
  }
  if (issues.length) throw new ConfigError(issues, source);
  issues.push(...configTlsIssues(c.grpc.tls));
  if (issues.length) throw new ConfigError(issues, source);
  return c;
}

/**
 * The TLS files hold what their fields say, and go together: the key is private (mode 0600, as the
 * coordinator key must be), a private key (not a certificate), and the certificate's own; the
 * certificate and CA parse as X.509 and are valid now. Checked here, before anything starts, so a
 * bad file is named by its field instead of failing later inside the TLS stack (or after the
 * storage was migrated). The same checks as the CLIs' client files (shared/cli/tls.ts).
 */
function configTlsIssues(tls: { cert: string; key: string; ca?: string }): string[] {
  return tlsFileIssues(
    { cert: { name: 'grpc.tls.cert', file: tls.cert }, key: { name: 'grpc.tls.key', file: tls.key }, ca: tls.ca ? { name: 'grpc.tls.ca', file: tls.ca } : undefined },
    { privateKeyMode: true },
  );
}

/** Reads, parses (YAML or JSON) and validates a config file. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError([`cannot read the file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`], file);
  }
  let obj: unknown;
  try {
    obj = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { strict: true, uniqueKeys: true });
  } catch (e) {
    throw new ConfigError([`${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`], file);
  }
  return validateConfig(obj, path.dirname(path.resolve(file)), file, env);
}
