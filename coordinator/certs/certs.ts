/**
 * `fedbridge coordinator certs`: a local certificate authority for the demo and tests, a server
 * certificate (SAN localhost, 127.0.0.1, ::1) and one client certificate per party (CN = party name,
 * clientAuth), all ECDSA P-256 / SHA-256, built with @peculiar/x509 on Node's WebCrypto (no openssl
 * binary needed). Private keys are PKCS#8 PEM files written 0600. Production deployments use their
 * own PKI; the coordinator only needs the CA that signs party certificates.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, webcrypto } from 'node:crypto';
import 'reflect-metadata'; // @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill
import * as x509 from '@peculiar/x509';
import { writeFileAtomic } from '../../shared/util/atomic';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const NAME_RE = /^[a-z][a-z0-9_-]{0,62}$/;

export interface CertsResult {
  dir: string;
  ca: string;
  server: { cert: string; key: string };
  clients: Record<string, { cert: string; key: string; sha256: string }>;
}

function serial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] &= 0x7f; // positive
  return Buffer.from(b).toString('hex');
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/**
 * The DER bytes of the one X.509 certificate in `pemOrDer`: PEM text with a single CERTIFICATE block
 * (as a string or its bytes), or DER. RangeError saying what it holds instead (a key, text, a chain).
 */
export function certificateDer(pemOrDer: string | Uint8Array): Uint8Array {
  let der: Uint8Array;
  const text = typeof pemOrDer === 'string' ? pemOrDer : Buffer.from(pemOrDer).includes('-----BEGIN ') ? Buffer.from(pemOrDer).toString('utf8') : null;
  if (text !== null) {
    const blocks = x509.PemConverter.decodeWithHeaders(text);
    if (!blocks.length) throw new RangeError('not a certificate: no PEM block (expected -----BEGIN CERTIFICATE-----)');
    const types = blocks.map((b) => b.type);
    if (types.some((t) => t !== 'CERTIFICATE')) throw new RangeError(`not a certificate: holds a PEM ${types.filter((t) => t !== 'CERTIFICATE').join(', ')} block (expected -----BEGIN CERTIFICATE-----)`);
    if (blocks.length > 1) throw new RangeError(`holds ${blocks.length} certificates (a chain?); expected the party's own certificate alone`);
    der = new Uint8Array(blocks[0].rawData);
  } else {
    der = pemOrDer as Uint8Array;
  }
  try {
    new x509.X509Certificate(new Uint8Array(der)); // a copy: an ArrayBuffer-backed view, as the parser wants
  } catch (e) {
    throw new RangeError(text === null ? 'not a certificate: neither PEM (-----BEGIN CERTIFICATE-----) nor DER X.509' : `not an X.509 certificate (${(e as Error).message})`);
  }
  return der;
}

/** SHA-256 (hex) of a certificate's DER bytes: what `enroll --cert` binds to a party. RangeError unless it is one certificate. */
export function certSha256(pemOrDer: string | Uint8Array): string {
  return createHash('sha256').update(certificateDer(pemOrDer)).digest('hex');
}

/** RangeError unless `parties` are distinct names a certificate file may carry (not "ca" or "server"). */
export function checkPartyNames(parties: readonly string[]): void {
  for (const p of parties) {
    if (!NAME_RE.test(p)) throw new RangeError(`party name "${p}" must be lowercase letters, digits, '-' or '_', starting with a letter`);
    if (p === 'ca' || p === 'server') throw new RangeError(`party name "${p}" is reserved for the CA / server files`);
  }
  if (new Set(parties).size !== parties.length) throw new RangeError('party names must be distinct');
}

export async function makeCerts(opts: { out: string; parties: string[]; days?: number; now?: Date }): Promise<CertsResult> {
  checkPartyNames(opts.parties);
  x509.cryptoProvider.set(webcrypto as unknown as Crypto);
  const notBefore = new Date((opts.now ?? new Date()).getTime() - 60_000);
  const notAfter = new Date(notBefore.getTime() + (opts.days ?? 365) * 86_400_000);
  fs.mkdirSync(opts.out, { recursive: true, mode: 0o700 });

  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=fedbridge local CA',
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const issue = async (cn: string, server: boolean) => {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ];
    if (server) {
      extensions.push(new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]));
    }
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${cn}`,
      issuer: caCert.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ALG,
      extensions,
    });
    return { pem: cert.toString('pem'), key: await keyPem(keys.privateKey), sha256: certSha256(new Uint8Array(cert.rawData)) };
  };

  const out = (f: string) => path.join(opts.out, f);
  writeFileAtomic(out('ca.crt'), caCert.toString('pem') + '\n', 0o644);
  writeFileAtomic(out('ca.key'), (await keyPem(caKeys.privateKey)) + '\n', 0o600);
  const server = await issue('localhost', true);
  writeFileAtomic(out('server.crt'), server.pem + '\n', 0o644);
  writeFileAtomic(out('server.key'), server.key + '\n', 0o600);
  const clients: CertsResult['clients'] = {};
  for (const p of opts.parties) {
    const c = await issue(p, false);
    writeFileAtomic(out(`${p}.crt`), c.pem + '\n', 0o644);
    writeFileAtomic(out(`${p}.key`), c.key + '\n', 0o600);
    clients[p] = { cert: out(`${p}.crt`), key: out(`${p}.key`), sha256: c.sha256 };
  }
  return { dir: opts.out, ca: out('ca.crt'), server: { cert: out('server.crt'), key: out('server.key') }, clients };
}
