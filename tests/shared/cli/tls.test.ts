/**
 * shared/cli/tls.ts: the TLS file checks the gRPC clients and the coordinator's config run before
 * anything connects, and the reading of grpc-js connection failures (details strings as grpc-js
 * 1.14 reports them on this machine; the end-to-end cases are in tests/coordinator/cli.test.ts and
 * tests/integration/refused-event.test.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeCerts } from '../../../coordinator/certs/certs';
import { connectionCause, connectionFailure, tlsFileIssues, type ConnectionContext } from '../../../shared/cli/tls';

describe('tlsFileIssues', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-tls-'));
  const made = new Date('2026-01-01T00:00:00Z');
  let certs: string;
  beforeAll(async () => {
    certs = path.join(root, 'certs');
    await makeCerts({ out: certs, parties: ['platform'], days: 30, now: made });
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  const f = (name: string, file: string) => ({ name, file: path.join(certs, file) });

  test('good files inside their validity period: no issue', () => {
    expect(tlsFileIssues({ ca: f('--ca', 'ca.crt'), cert: f('--cert', 'platform.crt'), key: f('--key', 'platform.key') }, { now: made.getTime() + 86400_000 })).toEqual([]);
  });

  test('an expired or not yet valid certificate is named with its dates', () => {
    const later = made.getTime() + 31 * 86400_000;
    const issues = tlsFileIssues({ ca: f('--ca', 'ca.crt'), cert: f('--cert', 'platform.crt'), key: f('--key', 'platform.key') }, { now: later });
    expect(issues).toHaveLength(2);
    expect(issues[0]).toMatch(new RegExp(`^--ca: ${path.join(certs, 'ca.crt')}: the CA certificate expired on 2026-01-3\\dT`));
    expect(issues[1]).toMatch(new RegExp(`^--cert: ${path.join(certs, 'platform.crt')}: the certificate expired on 2026-01-3\\dT.*; issue a new one \\(fedbridge coordinator certs\\)$`));
    const earlier = tlsFileIssues({ cert: f('--cert', 'platform.crt'), key: f('--key', 'platform.key') }, { now: made.getTime() - 2 * 86400_000 });
    expect(earlier).toEqual([expect.stringMatching(/^--cert: .*platform\.crt: the certificate is not valid before 2025-12-3\dT.*\(is this machine's clock right\?\)$/)]);
  });

  test('wrong kinds of file, a missing file, a folder, a key of another certificate, a group-readable key', () => {
    const now = made.getTime() + 86400_000;
    fs.writeFileSync(path.join(root, 'text.txt'), 'hello\n');
    expect(tlsFileIssues({ ca: { name: '--ca', file: path.join(root, 'text.txt') } }, { now })).toEqual([`--ca: ${path.join(root, 'text.txt')}: not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)`]);
    expect(tlsFileIssues({ ca: { name: '--ca', file: path.join(root, 'nope.crt') } }, { now })).toEqual([`--ca: file not found or not readable: ${path.join(root, 'nope.crt')}`]);
    expect(tlsFileIssues({ ca: { name: '--ca', file: root } }, { now })).toEqual([`--ca: not a file: ${root}`]);
    expect(tlsFileIssues({ cert: f('--cert', 'platform.key'), key: f('--key', 'platform.crt') }, { now })).toEqual([
      `--cert: ${path.join(certs, 'platform.key')}: holds a private key, not a certificate`,
      `--key: ${path.join(certs, 'platform.crt')}: holds a certificate, not a private key`,
    ]);
    expect(tlsFileIssues({ cert: f('--cert', 'server.crt'), key: f('--key', 'platform.key') }, { now })).toEqual([`--key: ${path.join(certs, 'platform.key')} is not the private key of the certificate --cert ${path.join(certs, 'server.crt')}`]);
    expect(tlsFileIssues({ key: f('--key', 'platform.key') }, { now })).toEqual(['--key needs its certificate too (a certificate and its key go together)']);
    const open = path.join(root, 'open.key');
    fs.copyFileSync(path.join(certs, 'platform.key'), open);
    fs.chmodSync(open, 0o644);
    const pair = { cert: f('--cert', 'platform.crt'), key: { name: '--key', file: open } };
    expect(tlsFileIssues(pair, { now })).toEqual([]);
    expect(tlsFileIssues(pair, { now, privateKeyMode: true })).toEqual([`--key: ${open} is readable by others (mode 644); chmod 600 it`]);
  });
});

describe('connectionFailure', () => {
  const ctx: ConnectionContext = { address: '127.0.0.1:7443', ca: { name: '--ca', file: 'ca.crt' }, clientCertFlags: '--cert and --key' };
  const details = {
    certRequired:
      'No connection established. Last error: 806C07776E7F0000:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 116\n (2026-11-24T17:19:03.178Z). Resolution note: ',
    selfSigned: 'No connection established. Last error: Error: self-signed certificate in certificate chain. Resolution note: ',
    refused: 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:7444. Resolution note: ',
    notTls: 'No connection established. Last error: Error: 806CCA521B7F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:\n. Resolution note: ',
    reset: 'No connection established. Last error: read ECONNRESET (2026-11-24T17:22:32.529Z). Resolution note: ',
    dns: 'Name resolution failed for target dns:nosuchhost.invalid:7443',
    altname:
      "No connection established. Last error: Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP does not match certificate's altnames: Host: example.org. is not in the cert's altnames: DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1. Resolution note: ",
  };

  test('the cause without grpc-js framing, timestamps or OpenSSL source locations', () => {
    expect(connectionCause(details.certRequired)).toBe('tlsv13 alert certificate required');
    expect(connectionCause(details.selfSigned)).toBe('self-signed certificate in certificate chain');
    expect(connectionCause(details.refused)).toBe('connect ECONNREFUSED 127.0.0.1:7444');
    expect(connectionCause(details.notTls)).toBe('wrong version number');
    expect(connectionCause(details.reset)).toBe('read ECONNRESET');
    expect(connectionCause(details.altname)).toBe("Hostname/IP does not match certificate's altnames: Host: example.org. is not in the cert's altnames: DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
  });

  test('TLS set-ups no retry can fix are permanent; a coordinator that is down or resets stays transient', () => {
    const got = Object.fromEntries(Object.entries(details).map(([k, d]) => [k, connectionFailure(14, d, ctx)]));
    expect(got.certRequired).toEqual({ permanent: true, message: expect.stringMatching(/^the coordinator at 127\.0\.0\.1:7443 requires a client certificate \(mutual TLS\): pass --cert and --key/) });
    expect(got.selfSigned).toEqual({ permanent: true, message: "the coordinator's TLS certificate at 127.0.0.1:7443 does not verify (self-signed certificate in certificate chain): is --ca ca.crt the CA that signed the coordinator's certificate?" });
    expect(got.altname).toEqual({ permanent: true, message: expect.stringMatching(/does not verify \(.*\): the certificate names another host than the one connected to$/) });
    expect(got.notTls).toEqual({ permanent: true, message: expect.stringMatching(/does not answer with TLS \(wrong version number\)/) });
    expect(got.refused).toEqual({ permanent: false, message: expect.stringMatching(/^nothing accepts connections at 127\.0\.0\.1:7443 \(connection refused\)/) });
    expect(got.reset).toEqual({ permanent: false, message: expect.stringMatching(/failed \(read ECONNRESET\); if this persists, the coordinator may be refusing the client certificate \(--cert and --key\)/) });
    expect(got.dns).toEqual({ permanent: false, message: 'cannot resolve the host of 127.0.0.1:7443 (Name resolution failed for target dns:nosuchhost.invalid:7443)' });
    expect(connectionFailure(14, 'something new', ctx)).toEqual({ permanent: false, message: 'cannot connect to 127.0.0.1:7443: something new' });
  });

  test('any status but UNAVAILABLE is the coordinator answering: not a connection failure', () => {
    for (const code of [0, 1, 3, 4, 7, 9, 13, 16]) expect(connectionFailure(code, details.certRequired, ctx)).toBeNull();
  });
});
