import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { makeCerts, certSha256, certificateDer } from '../../coordinator/certs/certs';

describe('coordinator certs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-certs-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('CA, server (SAN localhost/127.0.0.1) and per-party client certs that complete a mutual TLS handshake', async () => {
    const r = await makeCerts({ out: dir, parties: ['platform', 'insurer'] });
    const ca = new X509Certificate(fs.readFileSync(r.ca));
    const server = new X509Certificate(fs.readFileSync(r.server.cert));
    const platform = new X509Certificate(fs.readFileSync(r.clients.platform.cert));
    expect(ca.ca).toBe(true);
    expect(server.checkIssued(ca)).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.subjectAltName).toContain('DNS:localhost');
    expect(server.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(platform.subject).toContain('CN=platform');
    expect(platform.verify(ca.publicKey)).toBe(true);
    expect(r.clients.platform.sha256).toBe(certSha256(fs.readFileSync(r.clients.platform.cert, 'utf8')));
    expect(r.clients.platform.sha256).toBe(platform.fingerprint256.replace(/:/g, '').toLowerCase());
    for (const f of ['ca.key', 'server.key', 'platform.key', 'insurer.key']) {
      expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    }

    // a real handshake: the server requires a client cert from the CA; the client checks the server name
    const srv = tls.createServer({ cert: fs.readFileSync(r.server.cert), key: fs.readFileSync(r.server.key), ca: fs.readFileSync(r.ca), requestCert: true, rejectUnauthorized: true }, (s) => {
      s.end(`hello ${(s.getPeerCertificate() as tls.PeerCertificate).subject.CN}`);
    });
    await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
    const port = (srv.address() as { port: number }).port;
    const got = await new Promise<string>((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fs.readFileSync(r.ca), cert: fs.readFileSync(r.clients.insurer.cert), key: fs.readFileSync(r.clients.insurer.key) }, () => undefined);
      let data = '';
      c.on('data', (d) => (data += d));
      c.on('end', () => resolve(data));
      c.on('error', reject);
    });
    // without a client certificate the handshake is refused
    const refused = await new Promise<boolean>((resolve) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fs.readFileSync(r.ca) });
      c.on('data', () => resolve(false));
      c.on('error', () => resolve(true));
      c.on('end', () => resolve(true));
    });
    srv.close();
    expect(got).toBe('hello insurer');
    expect(refused).toBe(true);
  });

  test('certSha256 takes one certificate (PEM or DER) and refuses anything else', () => {
    const pem = fs.readFileSync(path.join(dir, 'platform.crt'), 'utf8');
    const der = new X509Certificate(pem).raw;
    const sha = new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
    expect(certSha256(pem)).toBe(sha);
    expect(certSha256(new Uint8Array(Buffer.from(pem)))).toBe(sha);
    expect(certSha256(new Uint8Array(der))).toBe(sha);
    expect(Buffer.from(certificateDer(pem))).toEqual(der);
    expect(() => certSha256('hello\n')).toThrow(new RangeError('not a certificate: no PEM block (expected -----BEGIN CERTIFICATE-----)'));
    expect(() => certSha256(fs.readFileSync(path.join(dir, 'platform.key'), 'utf8'))).toThrow(new RangeError('not a certificate: holds a PEM PRIVATE KEY block (expected -----BEGIN CERTIFICATE-----)'));
    expect(() => certSha256(pem + fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8'))).toThrow(/holds 2 certificates \(a chain\?\)/);
    expect(() => certSha256(new Uint8Array(Buffer.from('hello\n')))).toThrow(new RangeError('not a certificate: neither PEM (-----BEGIN CERTIFICATE-----) nor DER X.509'));
    expect(() => certSha256(new Uint8Array(0))).toThrow(/^not a certificate: neither PEM/);
    expect(() => certSha256(new Uint8Array(der.subarray(0, 100)))).toThrow(/^not a certificate: neither PEM/);
    expect(() => certSha256('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')).toThrow(/^not an X\.509 certificate/);
  });

  test('bad party names are refused before anything is written', async () => {
    const d2 = path.join(dir, 'bad');
    await expect(makeCerts({ out: d2, parties: ['Platform'] })).rejects.toThrow(/lowercase/);
    await expect(makeCerts({ out: d2, parties: ['ca'] })).rejects.toThrow(/reserved/);
    await expect(makeCerts({ out: d2, parties: ['a', 'a'] })).rejects.toThrow(/distinct/);
    expect(fs.existsSync(d2)).toBe(false);
  });
});
