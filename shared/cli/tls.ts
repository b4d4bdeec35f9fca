/**
 * TLS files and TLS/gRPC connection failures, in words a person can act on.
 *
 * Used by every client a person starts (`fedbridge coordinator` operator commands, `fedbridge node
 * join`, `fedbridge audit export`) and by the coordinator's config check (its own certificate and key):
 *
 * - `tlsFileIssues` checks the files before anything connects or starts: each certificate is PEM
 *   X.509 and valid now, the key is a PEM private key (optionally mode 0600) and the certificate's
 *   own, a certificate and its key go together. Without it, a key that is not the certificate's
 *   reaches Node's TLS stack and ends the CLI with a stack trace ("key values mismatch"), a CA file
 *   without a certificate is silently ignored and the coordinator's certificate is then refused as
 *   "self-signed", and an expired certificate is only found out in the handshake, by the other side.
 *
 * - `connectionFailure` reads grpc-js's UNAVAILABLE details (the TLS or socket error of the failed
 *   connection attempt), `transportFailure` any such error (also `audit export`'s https requests),
 *   and says what is wrong and which flag fixes it. `permanent` marks failures that retrying cannot
 *   fix (the coordinator wants a client certificate, its certificate does not verify against the CA
 *   given, the port does not speak TLS): a node stops on them instead of reconnecting forever. A
 *   refused or reset connection, an unresolvable name and anything not recognised stay transient
 *   (a coordinator that restarts looks like that for a while).
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import { UserError } from './errors';

/** A TLS file and the flag or config field that named it (used in the messages). */
export interface TlsFile {
  name: string;
  file: string;
}

const PRIVATE_KEY_RE = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

function readable(f: TlsFile, issues: string[]): string | null {
  try {
    if (!fs.statSync(f.file).isFile()) {
      issues.push(`${f.name}: not a file: ${f.file}`);
      return null;
    }
    return fs.readFileSync(f.file, 'latin1');
  } catch {
    issues.push(`${f.name}: file not found or not readable: ${f.file}`);
    return null;
  }
}

function certificate(f: TlsFile, text: string, issues: string[], now: number, role: string): X509Certificate | null {
  let cert: X509Certificate;
  try {
    if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new Error();
    cert = new X509Certificate(text);
  } catch {
    issues.push(`${f.name}: ${f.file}: ${PRIVATE_KEY_RE.test(text) ? 'holds a private key, not a certificate' : 'not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)'}`);
    return null;
  }
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (Number.isFinite(to) && now > to) issues.push(`${f.name}: ${f.file}: the ${role} expired on ${new Date(to).toISOString()}; issue a new one (fedbridge coordinator certs)`);
  else if (Number.isFinite(from) && now < from) issues.push(`${f.name}: ${f.file}: the ${role} is not valid before ${new Date(from).toISOString()} (is this machine's clock right?)`);
  return cert;
}

/**
 * Problems with a set of TLS files (empty when they are fine): `ca` (one or more CA certificates),
 * `cert` and `key` (a certificate and its private key; one without the other is a problem).
 * `privateKeyMode`: the key must not be readable by group or others (chmod 600).
 */
export function tlsFileIssues(files: { ca?: TlsFile; cert?: TlsFile; key?: TlsFile }, opts: { privateKeyMode?: boolean; now?: number } = {}): string[] {
  const issues: string[] = [];
  const now = opts.now ?? Date.now();
  if (files.ca) {
    const text = readable(files.ca, issues);
    if (text !== null) certificate(files.ca, text, issues, now, 'CA certificate');
  }
  if (!!files.cert !== !!files.key) {
    const [has, lacks] = files.cert ? [files.cert.name, 'its private key'] : [files.key!.name, 'its certificate'];
    issues.push(`${has} needs ${lacks} too (a certificate and its key go together)`);
    return issues;
  }
  if (!files.cert || !files.key) return issues;
  const certText = readable(files.cert, issues);
  const cert = certText === null ? null : certificate(files.cert, certText, issues, now, 'certificate');
  const keyText = readable(files.key, issues);
  if (keyText === null) return issues;
  let key: KeyObject | null = null;
  if (keyText.includes('-----BEGIN CERTIFICATE-----') && !PRIVATE_KEY_RE.test(keyText)) {
    issues.push(`${files.key.name}: ${files.key.file}: holds a certificate, not a private key`);
  } else {
    try {
      if (!PRIVATE_KEY_RE.test(keyText)) throw new Error('no -----BEGIN PRIVATE KEY----- block');
      key = createPrivateKey(keyText);
    } catch (e) {
      issues.push(`${files.key.name}: ${files.key.file}: not a PEM private key (${(e as Error).message})`);
    }
  }
  if (key && opts.privateKeyMode) {
    const mode = fs.statSync(files.key.file).mode & 0o777;
    if (mode & 0o077) issues.push(`${files.key.name}: ${files.key.file} is readable by others (mode ${mode.toString(8)}); chmod 600 it`);
  }
  if (cert && key && !cert.checkPrivateKey(key)) issues.push(`${files.key.name}: ${files.key.file} is not the private key of the certificate ${files.cert.name} ${files.cert.file}`);
  return issues;
}

/**
 * The contents of a gRPC client's TLS files, checked with `tlsFileIssues`; UserError (exit 2)
 * naming every problem, before anything connects.
 */
export function clientTlsFiles(files: { ca: TlsFile; cert?: TlsFile; key?: TlsFile }): { ca: Buffer; cert: Buffer | null; key: Buffer | null } {
  const issues = tlsFileIssues(files);
  if (issues.length) throw new UserError(issues.join('; '));
  const read = (f?: TlsFile) => (f ? fs.readFileSync(f.file) : null);
  return { ca: fs.readFileSync(files.ca.file), cert: read(files.cert), key: read(files.key) };
}

/** What the caller connected to, and with which flags (they are named in the advice). */
export interface ConnectionContext {
  address: string;
  /** the flag naming the CA file and its value (absent: the system's CAs were used) */
  ca?: TlsFile;
  /** the flags that give a client certificate and key, e.g. "--tls-cert and --tls-key" (gRPC clients) */
  clientCertFlags?: string;
  /** what was connected to: the coordinator's gRPC port (default) or its audit API over http(s) */
  api?: 'grpc' | 'http' | 'https';
}

export interface ConnectionFailure {
  /** true when retrying cannot help (wrong TLS set-up), false when it may (coordinator down or restarting) */
  permanent: boolean;
  message: string;
}

/**
 * The UNAVAILABLE details of grpc-js without its framing: "No connection established. Last error:
 * Error: <cause> (<time>). Resolution note: " becomes "<cause>"; OpenSSL's
 * "...:SSL routines:<function>:<reason>:<source file>:<line>:SSL alert number N" becomes "<reason>".
 */
export function connectionCause(details: string): string {
  let s = details.replace(/\s*Resolution note:\s*$/, '').replace(/^No connection established\.\s*Last error:\s*/, '');
  s = s.replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)\s*\.?\s*$/, '').replace(/\s*\.\s*$/, '').replace(/^Error(?: \[[A-Z_]+\])?:\s*/, '');
  const ssl = /SSL routines:[^:]*:([^:]+):/.exec(s);
  return (ssl ? ssl[1] : s).trim();
}

/**
 * Explains a failed call's status (grpc-js `code` and `details`) when it is a connection or TLS
 * failure; null for any other status (the coordinator answered: its own message says what is wrong).
 */
export function connectionFailure(code: number, details: string, ctx: ConnectionContext): ConnectionFailure | null {
  return code === 14 /* UNAVAILABLE */ ? transportFailure(details, ctx) : null;
}

/**
 * What a failed connection attempt's error (grpc-js UNAVAILABLE details, or a Node socket/TLS error
 * message) means, and which flag or setting fixes it.
 */
export function transportFailure(details: string, ctx: ConnectionContext): ConnectionFailure {
  const d = details;
  const cause = connectionCause(d);
  const api = ctx.api ?? 'grpc';
  const listen = api === 'grpc' ? 'gRPC address (grpc.listen)' : 'HTTP address (http.listen)';
  const caHint = ctx.ca ? `is ${ctx.ca.name} ${ctx.ca.file} the CA that signed the coordinator's certificate?` : "pass --ca with the CA that signed the coordinator's certificate";
  if (/certificate required|alert number 116/i.test(d)) {
    if (api !== 'grpc') return { permanent: true, message: `${ctx.address} asks for a client certificate: that is the coordinator's gRPC port (mutual TLS); the audit API answers at its HTTP address (http.listen)` };
    return { permanent: true, message: `the coordinator at ${ctx.address} requires a client certificate (mutual TLS): pass ${ctx.clientCertFlags ?? 'a client certificate'} (the party's or operator's certificate from \`fedbridge coordinator certs\`/\`init\`)` };
  }
  if (/self[- ]signed certificate|unable to verify the first certificate|unable to get local issuer certificate|certificate signature failure|certificate has expired|certificate is not yet valid|Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate's altnames/i.test(d)) {
    const hint = /Hostname\/IP|altnames/i.test(d)
      ? 'the certificate names another host than the one connected to'
      : /expired|not yet valid/i.test(d)
        ? "the coordinator's certificate is outside its validity period (or this machine's clock is wrong)"
        : caHint;
    return { permanent: true, message: `the coordinator's TLS certificate at ${ctx.address} does not verify (${cause}): ${hint}` };
  }
  if (/wrong version number|packet length too long|http request|unknown protocol|record layer failure/i.test(d)) {
    const hint = api === 'grpc' ? "is this the coordinator's gRPC port (grpc.listen), not its HTTP port?" : 'is this port plain http (the coordinator\'s http.tls is off)? then use http://, or is it its gRPC port?';
    return { permanent: true, message: `${ctx.address} does not answer with TLS (${cause}): ${hint}` };
  }
  if (/ECONNREFUSED/.test(d)) return { permanent: false, message: `nothing accepts connections at ${ctx.address} (connection refused): is the coordinator running, and is this its ${listen}?` };
  if (/Name resolution failed|ENOTFOUND|EAI_AGAIN/.test(d)) return { permanent: false, message: `cannot resolve the host of ${ctx.address} (${cause})` };
  if (api === 'http' && /socket hang up|ECONNRESET/i.test(d)) {
    return { permanent: false, message: `the connection to ${ctx.address} was closed without an answer (${cause}): does this port expect https (the coordinator's http.tls)?` };
  }
  if (/ECONNRESET|Failed to connect|socket hang up|Connection dropped/i.test(d)) {
    const certHint = ctx.clientCertFlags ? `; if this persists, the coordinator may be refusing the client certificate (${ctx.clientCertFlags}): it must be signed by the CA the coordinator trusts (grpc.tls.ca)` : '';
    return { permanent: false, message: `the connection to ${ctx.address} failed (${cause})${certHint}` };
  }
  return { permanent: false, message: `cannot connect to ${ctx.address}: ${cause}` };
}
