import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, loadConfig, validateConfig } from '../../coordinator/config/config';

describe('coordinator config validation (fail fast, readable)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-config-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const f of ['server.crt', 'server.key', 'ca.crt']) fs.writeFileSync(path.join(dir, f), 'x');
  const good = () => ({
    federationId: 'demo',
    grpc: { listen: '127.0.0.1:7443', tls: { cert: 'server.crt', key: 'server.key', ca: 'ca.crt' } },
    http: { listen: '127.0.0.1:0' },
    storage: { dataDir: 'data' },
    identity: { keyFile: 'coordinator.key' },
    operator: { tokenSha256: 'ab'.repeat(32) },
  });
  const issues = (obj: unknown, env: NodeJS.ProcessEnv = {}) => {
    try {
      validateConfig(obj, dir, 'test.yaml', env);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).issues;
    }
    throw new Error('expected a ConfigError');
  };

  test('a valid config: defaults filled, relative paths resolved against the config dir', () => {
    const c = validateConfig(good(), dir, 'test.yaml', {});
    expect(c.grpc.tls.cert).toBe(path.join(dir, 'server.crt'));
    expect(c.grpc.tls.requireClientCert).toBe(true);
    expect(c.grpc.maxChunkBytes).toBe(1024 * 1024);
    expect(c.grpc.streamIdleMs).toBe(60_000);
    expect(c.grpc.maxDownloadsPerParty).toBe(4);
    expect([c.grpc.keepaliveMs, c.grpc.keepaliveTimeoutMs]).toEqual([20_000, 10_000]);
    expect(c.storage.dataDir).toBe(path.join(dir, 'data'));
    expect(c.storage.databaseUrl).toBeUndefined();
    expect(c.rounds.maxConsecutiveAborts).toBe(3);
    expect(validateConfig(good(), dir, 'x', { DATABASE_URL: 'postgres://u:p@h/db' }).storage.databaseUrl).toBe('postgres://u:p@h/db');
  });

  test.each([
    ['missing field', (c: any) => delete c.federationId, /^federationId: /],
    ['wrong type', (c: any) => (c.grpc.maxChunkBytes = 'big'), /^grpc\.maxChunkBytes: .*number/],
    ['bad listen address', (c: any) => (c.grpc.listen = 'localhost'), /^grpc\.listen: expected HOST:PORT/],
    ['port out of range', (c: any) => (c.http.listen = '127.0.0.1:70000'), /^http\.listen: port must be <= 65535/],
    ['chunk limit above the gRPC message limit', (c: any) => (c.grpc.maxChunkBytes = 8 * 1024 * 1024), /^grpc\.maxChunkBytes: /],
    ['stream idle limit below 100 ms', (c: any) => (c.grpc.streamIdleMs = 10), /^grpc\.streamIdleMs: /],
    ['stream idle limit not an integer', (c: any) => (c.grpc.streamIdleMs = 1.5), /^grpc\.streamIdleMs: /],
    ['no download allowed per party', (c: any) => (c.grpc.maxDownloadsPerParty = 0), /^grpc\.maxDownloadsPerParty: /],
    ['keepalive ping interval of 0', (c: any) => (c.grpc.keepaliveMs = 0), /^grpc\.keepaliveMs: /],
    ['keepalive timeout above 10 minutes', (c: any) => (c.grpc.keepaliveTimeoutMs = 700_000), /^grpc\.keepaliveTimeoutMs: /],
    ['unknown key (typo)', (c: any) => (c.grpc.tls.requireClientCerts = true), /^grpc\.tls: .*requireClientCerts/],
    ['mutual TLS without a CA', (c: any) => delete c.grpc.tls.ca, /^grpc\.tls\.ca: required when requireClientCert/],
    ['operator token hash not hex', (c: any) => (c.operator.tokenSha256 = 'secret'), /^operator\.tokenSha256: expected the SHA-256/],
    ['bad database url', (c: any) => (c.storage.databaseUrl = 'mysql://x'), /^storage\.databaseUrl: expected a postgres/],
    ['missing TLS file', (c: any) => (c.grpc.tls.key = 'nope.key'), /^grpc\.tls\.key: file not found or not readable: .*nope\.key/],
  ])('%s', (_name, mutate, re) => {
    const c = good();
    mutate(c);
    const found = issues(c);
    expect(found.some((i) => re.test(i))).toBe(true);
  });

  test('a bad DATABASE_URL from the environment is named', () => {
    expect(issues(good(), { DATABASE_URL: 'sqlite:///x' })).toEqual(['DATABASE_URL (environment): expected a postgres:// or postgresql:// URL']);
  });

  test('files: YAML and JSON load; syntax errors and missing files are one readable line', () => {
    const y = path.join(dir, 'c.yaml');
    fs.writeFileSync(y, `federationId: demo\ngrpc:\n  listen: "127.0.0.1:0"\n  tls: {cert: server.crt, key: server.key, ca: ca.crt}\nhttp: {listen: "127.0.0.1:0"}\nstorage: {dataDir: d}\nidentity: {keyFile: k}\noperator: {tokenSha256: "${'cd'.repeat(32)}"}\n`);
    expect(loadConfig(y, {}).federationId).toBe('demo');
    const j = path.join(dir, 'c.json');
    fs.writeFileSync(j, JSON.stringify(good()));
    expect(loadConfig(j, {}).http.listen).toBe('127.0.0.1:0');
    fs.writeFileSync(y, 'federationId: [oops\n');
    expect(() => loadConfig(y, {})).toThrow(/^invalid coordinator config .*c\.yaml: YAML: /);
    fs.writeFileSync(y, 'a: 1\na: 2\n');
    expect(() => loadConfig(y, {})).toThrow(/YAML: .*[Mm]ap keys must be unique/);
    expect(() => loadConfig(path.join(dir, 'missing.yaml'), {})).toThrow(/cannot read the file: ENOENT/);
  });
});
