import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, loadConfig, validateConfig } from '../../coordinator/config/config';
import { makeCerts } from '../../coordinator/certs/certs';

describe('coordinator config validation (fail fast, readable)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-config-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  // real TLS files (the key must be the certificate's own, 0600); other-ca/ holds another CA's set
  beforeAll(async () => {
    const c = await makeCerts({ out: dir, parties: ['platform'] });
    fs.copyFileSync(c.server.cert, path.join(dir, 'server.crt'));
    await makeCerts({ out: path.join(dir, 'other-ca'), parties: ['platform'] });
    fs.writeFileSync(path.join(dir, 'text.txt'), 'x\n');
  });
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
    expect([c.grpc.keepaliveMs, c.grpc.keepaliveTimeoutMs]).toEqual([30_000, 20_000]);
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
    ['operator certificate hash not hex', (c: any) => (c.operator.certSha256 = 'AB'), /^operator\.certSha256: expected the SHA-256 of the operator's client certificate/],
    ['operator certificate bound without mutual TLS', (c: any) => ((c.operator.certSha256 = 'ab'.repeat(32)), (c.grpc.tls.requireClientCert = false)), /^operator\.certSha256: binds the operator API to a client certificate, which needs grpc\.tls\.requireClientCert: true/],
    ['bad database url', (c: any) => (c.storage.databaseUrl = 'mysql://x'), /^storage\.databaseUrl: expected a postgres/],
    ['database url with the scheme but no URL after it', (c: any) => (c.storage.databaseUrl = 'postgres://%%%'), /^storage\.databaseUrl: not a valid URL: its host has a bad %-escape \(write % as %25\)$/],
    ['database url with a bad port', (c: any) => (c.storage.databaseUrl = 'postgres://u:p@h:99999/db'), /^storage\.databaseUrl: not a valid URL \(postgres:\/\/USER:PASSWORD@HOST:PORT\/DATABASE\)$/],
    ['database url without a host', (c: any) => (c.storage.databaseUrl = 'postgres:///db'), /^storage\.databaseUrl: not a valid URL: no host/],
    ['HTTP on the gRPC address', (c: any) => (c.http.listen = c.grpc.listen), /^http\.listen: 127\.0\.0\.1:7443 is grpc\.listen too; give HTTP another port$/],
    ['plain HTTP on every interface', (c: any) => (c.http.listen = '0.0.0.0:7480'), /^http\.listen: 0\.0\.0\.0:7480 is not a loopback address, and plain HTTP would carry the audit API's bearer tokens in clear: set http\.tls: true .*or http\.allowPlaintext: true/],
    ['plain HTTP on a host name', (c: any) => (c.http.listen = 'coord.example.org:7480'), /^http\.listen: coord\.example\.org:7480 is not a loopback address/],
    ['plain HTTP on an IPv6 address', (c: any) => (c.http.listen = '[::]:7480'), /^http\.listen: \[::\]:7480 is not a loopback address/],
    ['TLS key not the certificate\'s', (c: any) => (c.grpc.tls.key = 'platform.key'), /^grpc\.tls\.key: .*platform\.key is not the private key of the certificate grpc\.tls\.cert .*server\.crt$/],
    ['TLS key of another CA\'s server certificate', (c: any) => (c.grpc.tls.key = 'other-ca/server.key'), /^grpc\.tls\.key: .*other-ca\/server\.key is not the private key of the certificate/],
    ['TLS key path pointing at a certificate', (c: any) => (c.grpc.tls.key = 'ca.crt'), /^grpc\.tls\.key: .*ca\.crt: holds a certificate, not a private key$/],
    ['TLS key that is text', (c: any) => (c.grpc.tls.key = 'text.txt'), /^grpc\.tls\.key: .*text\.txt: not a PEM private key \(no -----BEGIN PRIVATE KEY----- block\)$/],
    ['TLS certificate path pointing at a key', (c: any) => (c.grpc.tls.cert = 'server.key'), /^grpc\.tls\.cert: .*server\.key: holds a private key, not a certificate$/],
    ['CA that is text', (c: any) => (c.grpc.tls.ca = 'text.txt'), /^grpc\.tls\.ca: .*text\.txt: not a PEM X\.509 certificate/],
    ['missing TLS file', (c: any) => (c.grpc.tls.key = 'nope.key'), /^grpc\.tls\.key: file not found or not readable: .*nope\.key/],
  ])('%s', (_name, mutate, re) => {
    const c = good();
    mutate(c);
    const found = issues(c);
    expect(found.some((i) => re.test(i))).toBe(true);
  });

  test('a bad DATABASE_URL from the environment is named', () => {
    expect(issues(good(), { DATABASE_URL: 'sqlite:///x' })).toEqual(['DATABASE_URL (environment): expected a postgres:// or postgresql:// URL']);
    expect(issues(good(), { DATABASE_URL: 'postgres://%%%' })).toEqual(['DATABASE_URL (environment): not a valid URL: its host has a bad %-escape (write % as %25)']);
  });

  test('good database URLs pass: user and password, %-escapes, a socket folder in ?host=', () => {
    for (const url of ['postgres://u:p@127.0.0.1:5432/db', 'postgresql://u:p%40ss@db.example.org/fed', 'postgres://u@[::1]:5432/db', 'postgres:///db?host=/var/run/postgresql']) {
      expect(validateConfig({ ...good(), storage: { dataDir: 'data', databaseUrl: url } }, dir, 'test.yaml', {}).storage.databaseUrl).toBe(url);
    }
  });

  test('HTTP: loopback may be plain; another address needs tls or the explicit allowPlaintext', () => {
    for (const listen of ['127.0.0.1:0', '127.0.0.2:7480', 'localhost:7480', '[::1]:7480']) {
      expect(validateConfig({ ...good(), http: { listen } }, dir, 'test.yaml', {}).http.listen).toBe(listen);
    }
    expect(validateConfig({ ...good(), http: { listen: '0.0.0.0:7480', tls: true } }, dir, 'test.yaml', {}).http.tls).toBe(true);
    expect(validateConfig({ ...good(), http: { listen: '0.0.0.0:7480', allowPlaintext: true } }, dir, 'test.yaml', {}).http.allowPlaintext).toBe(true);
    expect(issues({ ...good(), http: { listen: '0.0.0.0:7480', tls: false, allowPlaintext: false } }).length).toBe(1);
  });

  test('the TLS key must be private (mode 0600), as the coordinator key must', () => {
    const open = path.join(dir, 'open.key');
    fs.copyFileSync(path.join(dir, 'server.key'), open);
    for (const mode of [0o644, 0o640, 0o604]) {
      fs.chmodSync(open, mode);
      expect(issues({ ...good(), grpc: { ...good().grpc, tls: { ...good().grpc.tls, key: 'open.key' } } })).toEqual([`grpc.tls.key: ${open} is readable by others (mode ${mode.toString(8)}); chmod 600 it`]);
    }
    fs.chmodSync(open, 0o400);
    expect(validateConfig({ ...good(), grpc: { ...good().grpc, tls: { ...good().grpc.tls, key: 'open.key' } } }, dir, 'test.yaml', {}).grpc.tls.key).toBe(open);
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
