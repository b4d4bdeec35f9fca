/**
 * `fedbridge coordinator ...` (DESIGN §8): start the coordinator, make local certificates, and the
 * operator commands that talk to a running coordinator over its authenticated operator API
 * (TLS; the operator token from --token-file or FEDBRIDGE_OPERATOR_TOKEN; mutual TLS with
 * --tls-cert/--tls-key when the coordinator requires client certificates).
 * Heavy modules (NestJS, gRPC) are imported inside the actions.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { parseNumberOption, printJson, UserError } from '../../shared/cli/errors';
import type { ParticipantRecord, TokenRecord } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { readFileAt } from '../../shared/cli/read-file';
import { connectionFailure } from '../../shared/cli/tls';

interface ConnOpts {
  coordinator: string;
  ca: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  json?: boolean;
}

function connOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--coordinator <host:port>', 'the coordinator gRPC address')
    .requiredOption('--ca <file>', 'CA certificate that signed the coordinator certificate')
    .option('--token-file <file>', 'file holding the operator token (else env FEDBRIDGE_OPERATOR_TOKEN)')
    .option('--tls-cert <file>', 'client certificate (when the coordinator requires mutual TLS)')
    .option('--tls-key <file>', 'client private key (with --tls-cert)')
    .option('--json', 'print the result as one JSON object');
}

function readToken(o: ConnOpts): string {
  let token = process.env.FEDBRIDGE_OPERATOR_TOKEN ?? '';
  if (o.tokenFile) {
    try {
      token = readFileAt(o.tokenFile, 'utf8').trim();
    } catch (e) {
      throw new UserError(`--token-file: cannot read ${o.tokenFile} (${(e as NodeJS.ErrnoException).code})`);
    }
  }
  if (!token) throw new UserError('no operator token: pass --token-file or set FEDBRIDGE_OPERATOR_TOKEN');
  return token;
}

async function connect(o: ConnOpts) {
  if (!/^[^:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(o.coordinator)) throw new UserError(`--coordinator expects HOST:PORT, got "${o.coordinator}"`);
  const { operatorClient, unary } = await import('./operator-client');
  const c = operatorClient({ address: o.coordinator, caFile: o.ca, token: readToken(o), certFile: o.tlsCert, keyFile: o.tlsKey });
  return { ...c, unary };
}

/** `--expires-in`: "never" -> 0, else N followed by s, m, h or d -> seconds. */
export function durationSeconds(v: string): number {
  if (v === 'never') return 0;
  const m = /^([1-9][0-9]{0,9})([smhd])$/.exec(v);
  if (!m) throw new UserError(`--expires-in expects a number followed by s, m, h or d (e.g. 90d, 12h), or "never"; got "${v}"`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** What the CLI prints of an enrolled party. */
function partyView(p: ParticipantRecord) {
  return { name: p.name, publicKey: Buffer.from(p.publicKey).toString('base64'), certSha256: p.certSha256, enrolledAt: new Date(Number(p.enrolledAtMs)).toISOString() };
}

/**
 * `runs start` without --initial-model: the shared parameters initialised from the public
 * --init-seed (shared/model/init.ts, as the demo does). Not all zeros: with zero kernels every
 * hidden unit of a tower outputs 0 and gets a zero gradient, so the feature towers (what serves
 * cold-start users and items, and the other party's catalogue) learn nothing without DP noise, and
 * start from that noise alone with it (measured: version 1 all zeros, version 2 all noise).
 */
async function initialModelOf(policyYaml: string, initSeed: string): Promise<Uint8Array> {
  const seed = parseNumberOption('--init-seed', initSeed, { integer: true, min: 0, max: 2 ** 32 - 1 });
  const { parsePolicyYaml, PolicyError } = await import('../../shared/policy/schema');
  const { sharedParameterLayout } = await import('../../shared/model/layout');
  const { initSharedParams } = await import('../../shared/model/init');
  let policy;
  try {
    policy = parsePolicyYaml(policyYaml);
  } catch (e) {
    if (e instanceof PolicyError) throw new UserError(`--policy: ${e.message}`);
    throw e;
  }
  const params = initSharedParams(sharedParameterLayout(policy.model, policy.vocabularies), seed);
  return new Uint8Array(params.buffer, params.byteOffset, params.byteLength);
}

/**
 * Runs `fn` with an operator client for `o`'s coordinator, closed afterwards whatever happens. A
 * gRPC error becomes one line: a connection or TLS failure says what is wrong and which flag fixes
 * it (shared/cli/tls.ts), any other status is "coordinator: CODE: <the coordinator's message>".
 */
async function withOperator<T>(o: ConnOpts, fn: (c: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> {
  const c = await connect(o);
  try {
    return await fn(c);
  } catch (e) {
    const err = e as { code?: unknown; details?: string; message?: string };
    if (typeof err.code !== 'number') throw e;
    const failed = connectionFailure(err.code, err.details ?? err.message ?? '', { address: o.coordinator, ca: { name: '--ca', file: o.ca }, clientCertFlags: '--tls-cert and --tls-key' });
    if (failed) throw new UserError(`cannot reach the coordinator: ${failed.message}`, 1);
    const { status } = await import('@grpc/grpc-js');
    throw new UserError(`coordinator: ${status[err.code] ?? err.code}: ${err.details ?? err.message}`, 1);
  } finally {
    c.client.close();
  }
}

function b64Key(flag: string, v: string, len: number): Uint8Array {
  const b = Buffer.from(v, 'base64');
  if (b.length !== len || b.toString('base64') !== v) throw new UserError(`${flag} expects base64 of ${len} bytes`);
  return new Uint8Array(b);
}

function printStatus(s: { runId: string; state: string; policyHash: string; roundsPlanned: number; roundsCompleted: number; latestModelVersion: number; abortReason: string; currentRound?: { round: number; state: string; phase: string; parties: string[]; deadlineMs: string; abortReason: string } }, json?: boolean) {
  if (json) return printJson(s);
  const r = s.currentRound;
  process.stdout.write(
    [
      `run ${s.runId}: ${s.state}${s.abortReason ? ` (${s.abortReason})` : ''}`,
      `policy ${s.policyHash}`,
      `rounds ${s.roundsCompleted}/${s.roundsPlanned} completed, latest model version ${s.latestModelVersion}`,
      r ? `round ${r.round}: ${r.state}${r.phase ? ` / ${r.phase}` : ''}${r.parties.length ? ` waiting for ${r.parties.join(', ')}` : ''}${Number(r.deadlineMs) ? ` until ${new Date(Number(r.deadlineMs)).toISOString()}` : ''}${r.abortReason ? ` (${r.abortReason})` : ''}` : 'no round yet',
    ].join('\n') + '\n',
  );
}

/**
 * `--parties`: comma-separated names, at least one, each a name a certificate may carry and none of
 * `reserved` (name -> what it is reserved for).
 */
async function partyList(raw: string, reserved: Record<string, string> = {}): Promise<string[]> {
  const parties = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (!parties.length) throw new UserError(`--parties expects comma-separated party names, e.g. platform,insurer; got "${raw}"`);
  for (const p of parties) if (Object.hasOwn(reserved, p)) throw new UserError(`--parties: party name "${p}" is reserved for ${reserved[p]}`);
  const { checkPartyNames } = await import('../certs/certs');
  try {
    checkPartyNames(parties);
  } catch (e) {
    if (e instanceof RangeError) throw new UserError(`--parties: ${e.message}`);
    throw e;
  }
  return parties;
}

export function registerCoordinatorCommands(coord: Command): void {
  coord
    .command('start')
    .description('run the coordinator: gRPC (TLS) for parties and the operator, HTTP for /healthz and /metrics')
    .requiredOption('--config <file>', 'coordinator config (YAML or JSON; see coordinator/README.md)')
    .action(async (o: { config: string }) => {
      const { loadConfig, ConfigError } = await import('../config/config');
      let config;
      try {
        config = loadConfig(o.config);
      } catch (e) {
        if (e instanceof ConfigError) throw new UserError(e.message);
        throw e;
      }
      const { createCoordinator } = await import('../main');
      const { KeyFileError } = await import('../identity/keys');
      let c;
      try {
        c = await createCoordinator(config, { protocol: 'secagg' });
      } catch (e) {
        // a missing key is never replaced by a new identity: the policy pins the coordinator's key
        if (e instanceof KeyFileError) throw new UserError(`${e.message} (identity.keyFile in ${o.config}; fedbridge coordinator init makes the key)`);
        throw e;
      }
      process.stderr.write(`coordinator public key: ${Buffer.from(c.publicKey).toString('base64')}\n`);
      let stop = () => undefined as void;
      const signalled = new Promise<null>((resolve) => {
        stop = () => resolve(null);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      // a signal, or the coordinator stopping itself (its lock on the store was lost)
      const reason = await Promise.race([signalled, c.stopped]);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await c.close();
      if (reason !== null) throw new UserError(reason, 1);
    });

  coord
    .command('init')
    .description('write a coordinator folder: identity key (0600), operator token (0600), local CA + certificates, config.yaml')
    .requiredOption('--dir <dir>', 'the coordinator folder (must not exist or be empty)')
    .requiredOption('--federation <id>', 'federation id (must match the policy)')
    .option('--parties <list>', 'comma-separated party names to make client certificates for', 'platform,insurer')
    .option('--grpc-listen <host:port>', 'gRPC listen address', '127.0.0.1:7443')
    .option('--http-listen <host:port>', 'HTTP listen address', '127.0.0.1:7480')
    .option('--http-tls', 'serve HTTP (/healthz, /metrics, the audit API) over TLS with the gRPC server certificate')
    .option('--json', 'print the result as one JSON object')
    .action(async (o: { dir: string; federation: string; parties: string; grpcListen: string; httpListen: string; httpTls?: boolean; json?: boolean }) => {
      if (fs.existsSync(o.dir) && fs.readdirSync(o.dir).length) throw new UserError(`--dir ${o.dir} is not empty; refusing to overwrite a coordinator`);
      const parties = await partyList(o.parties, { operator: "the operator's client certificate, which init makes" });
      const [{ makeCerts }, { loadCoordinatorKey }, { newToken, tokenSha256Hex }, { writeFileAtomic }, { stringify }, { configSchema, validateConfig }] = await Promise.all([
        import('../certs/certs'),
        import('../identity/keys'),
        import('../identity/tokens'),
        import('../../shared/util/atomic'),
        import('yaml'),
        import('../config/config'),
      ]);
      const configFor = (tokenSha256: string, operatorCertSha256?: string) => ({
        federationId: o.federation,
        grpc: { listen: o.grpcListen, tls: { cert: 'certs/server.crt', key: 'certs/server.key', ca: 'certs/ca.crt', requireClientCert: true } },
        http: { listen: o.httpListen, ...(o.httpTls ? { tls: true } : {}) },
        storage: { dataDir: 'data' },
        identity: { keyFile: 'coordinator.key' },
        // the operator API wants the token AND the operator's own certificate (not any the CA signed)
        operator: { tokenSha256, ...(operatorCertSha256 ? { certSha256: operatorCertSha256 } : {}) },
      });
      // every flag is checked before anything is written, and the problem is named by its flag
      const checked = configSchema.safeParse(configFor('0'.repeat(64)));
      if (!checked.success) {
        const i = checked.error.issues[0];
        const field = i.path.join('.');
        const flag = ({ federationId: ['--federation', o.federation], 'grpc.listen': ['--grpc-listen', o.grpcListen], 'http.listen': ['--http-listen', o.httpListen] } as Record<string, [string, string]>)[field];
        throw new UserError(flag ? `${flag[0]}: ${i.message}, got "${flag[1]}"` : `${field}: ${i.message}`);
      }
      // the folder is built beside its target and renamed into place: a failure leaves nothing behind
      const target = path.resolve(o.dir);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      const staging = fs.mkdtempSync(`${target}.init-`);
      fs.chmodSync(staging, 0o700);
      const final = (p: string) => path.join(o.dir, path.relative(staging, p));
      let certs, kp, token;
      try {
        certs = await makeCerts({ out: path.join(staging, 'certs'), parties: [...parties, 'operator'] });
        kp = await loadCoordinatorKey(path.join(staging, 'coordinator.key'), { create: true });
        token = newToken();
        writeFileAtomic(path.join(staging, 'operator.token'), token + '\n', 0o600);
        const config = configFor(tokenSha256Hex(token), certs.clients.operator.sha256);
        try {
          validateConfig(config, staging, 'config.yaml', {});
        } catch (e) {
          throw new UserError((e as Error).message);
        }
        writeFileAtomic(path.join(staging, 'config.yaml'), stringify(config), 0o644);
        try {
          fs.renameSync(staging, target); // replaces an empty folder, refuses a non-empty one
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new UserError(`--dir ${o.dir} is not empty; refusing to overwrite a coordinator`);
          throw e;
        }
      } catch (e) {
        fs.rmSync(staging, { recursive: true, force: true });
        throw e;
      }
      const out = {
        dir: o.dir,
        config: path.join(o.dir, 'config.yaml'),
        coordinatorPublicKey: Buffer.from(kp.publicKey).toString('base64'),
        operatorTokenFile: path.join(o.dir, 'operator.token'),
        certs: { ca: final(certs.ca), clients: Object.fromEntries(Object.entries(certs.clients).map(([k, v]) => [k, { cert: final(v.cert), key: final(v.key), sha256: v.sha256 }])) },
      };
      if (o.json) printJson(out);
      else {
        // what every operator command needs (mutual TLS: the operator's own certificate, then the token)
        const f = (name: string) => path.join(o.dir, name);
        const connect = `--coordinator ${o.grpcListen} --ca ${f('certs/ca.crt')} --token-file ${out.operatorTokenFile} --tls-cert ${f('certs/operator.crt')} --tls-key ${f('certs/operator.key')}`;
        process.stderr.write(
          `coordinator folder ${o.dir} ready\nconfig: ${out.config}\ncoordinator public key: ${out.coordinatorPublicKey}\noperator token: ${out.operatorTokenFile} (0600)\n` +
            `start it: fedbridge coordinator start --config ${out.config}\noperator commands (enroll, runs, tokens) connect with: ${connect}\n`,
        );
      }
    });

  coord
    .command('certs')
    .description('make a local CA, a server certificate (localhost, 127.0.0.1) and client certificates per party')
    .requiredOption('--out <dir>', 'output folder')
    .option('--parties <list>', 'comma-separated party names', 'platform,insurer')
    .option('--days <n>', 'validity in days', '365')
    .option('--force', 'write into a non-empty --out, replacing its CA, keys and certificates')
    .option('--json', 'print the result as one JSON object')
    .action(async (o: { out: string; parties: string; days: string; force?: boolean; json?: boolean }) => {
      const { parseNumberOption } = await import('../../shared/cli/errors');
      const days = parseNumberOption('--days', o.days, { integer: true, min: 1, max: 3650 });
      const parties = await partyList(o.parties);
      if (!o.force && fs.existsSync(o.out) && fs.readdirSync(o.out).length) throw new UserError(`--out ${o.out} is not empty; pass --force to replace its CA, keys and certificates`);
      const { makeCerts } = await import('../certs/certs');
      const r = await makeCerts({ out: o.out, parties, days });
      // --force with fewer parties: certificates and keys of the old CA are left as they are (a
      // private key is never deleted unasked), but named: they no longer verify against ca.crt
      const written = new Set([r.ca, r.server.cert, r.server.key, path.join(o.out, 'ca.key'), ...Object.values(r.clients).flatMap((c) => [c.cert, c.key])].map((f) => path.resolve(f)));
      const stale = fs.readdirSync(o.out).filter((f) => /\.(crt|key)$/.test(f) && !written.has(path.resolve(o.out, f))).sort();
      if (stale.length) process.stderr.write(`fedbridge: warning: ${o.out} still holds ${stale.join(', ')} from before, not replaced: issued by the old CA, they no longer verify against the new ca.crt; remove them if nothing uses them\n`);
      if (o.json) printJson(r);
      else {
        process.stderr.write(`wrote CA, server and ${Object.keys(r.clients).length} client certificates to ${o.out}\n`);
        for (const [p, c] of Object.entries(r.clients)) process.stderr.write(`  ${p}: ${c.cert} (sha256 ${c.sha256})\n`);
      }
    });

  connOptions(
    coord
      .command('enroll')
      .description('enrol a party with its Ed25519 public key (optionally binding its TLS client certificate)')
      .requiredOption('--name <name>', 'party name')
      .requiredOption('--public-key <base64>', "the party's Ed25519 public key (fedbridge node init prints it)")
      .option('--cert <file>', "the party's TLS client certificate: its SHA-256 is bound to the party"),
  ).action(async (o: ConnOpts & { name: string; publicKey: string; cert?: string }) => {
    const publicKey = b64Key('--public-key', o.publicKey, 32);
    let certSha256 = '';
    if (o.cert) {
      if (!fs.existsSync(o.cert)) throw new UserError(`--cert: file not found: ${o.cert}`);
      if (!fs.statSync(o.cert).isFile()) throw new UserError(`--cert ${o.cert} is not a file; expected the party's certificate (PEM)`);
      const { certSha256: sha } = await import('../certs/certs');
      try {
        certSha256 = sha(new Uint8Array(readFileAt(o.cert)));
      } catch (e) {
        if (e instanceof RangeError) throw new UserError(`--cert ${o.cert}: ${e.message}`);
        throw e;
      }
    }
    await withOperator(o, async (c) => {
      const r = await c.unary(c.client.enroll.bind(c.client), { name: o.name, publicKey, certSha256 }, c.metadata);
      const out = partyView(r.participant!);
      if (o.json) printJson(out);
      else process.stderr.write(`enrolled ${out.name} (${out.publicKey})\n`);
    });
  });
  connOptions(coord.command('parties').description('the enrolled parties: name, Ed25519 public key, bound certificate hash, when enrolled')).action(async (o: ConnOpts) => {
    await withOperator(o, async (c) => {
      const r = await c.unary(c.client.listParticipants.bind(c.client), {}, c.metadata);
      const views = r.participants.map(partyView);
      if (o.json) printJson({ parties: views });
      else if (!views.length) process.stdout.write('no parties enrolled\n');
      else for (const p of views) process.stdout.write(`${p.name}  ${p.publicKey}  ${p.certSha256 ? `cert ${p.certSha256.slice(0, 16)}...` : 'no cert bound'}  enrolled ${p.enrolledAt}\n`);
    });
  });
  connOptions(
    coord
      .command('unenroll')
      .description('remove a party (it left the federation, or its key is compromised): its requests are refused from then on and runs start without it; refused while a run is running; recorded in the audit log')
      .requiredOption('--name <name>', 'party name')
      .option('--reason <text>', 'reason recorded in the audit log', 'removed by the operator'),
  ).action(async (o: ConnOpts & { name: string; reason: string }) => {
    await withOperator(o, async (c) => {
      const out = partyView(await c.unary(c.client.removeParticipant.bind(c.client), { name: o.name, reason: o.reason }, c.metadata));
      if (o.json) printJson(out);
      else process.stderr.write(`removed ${out.name} (${out.publicKey}); enrol it again with a new key if it returns\n`);
    });
  });

  const runs = coord.command('runs').description('start, abort and watch federated training runs');
  connOptions(
    runs
      .command('start')
      .description('start a run under a policy every enrolled party has signed')
      .requiredOption('--policy <file>', 'policy YAML')
      .option('--signatures <path>', 'folder of `fedbridge policy sign` files (<signer>.json), or a JSON object {party: base64 signature}')
      .option('--signature <party=base64...>', 'one party signature (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
      .option('--initial-model <file>', 'the first global model: flat float32 little-endian shared parameters (default: a fresh one from --init-seed)')
      .option('--init-seed <n>', 'without --initial-model: the public seed of the first model (Glorot-uniform tower kernels, N(0, 0.05^2) item embeddings, zero biases; the demo\'s initialisation; default 1)'),
  ).action(async (o: ConnOpts & { policy: string; signatures?: string; signature: string[]; initialModel?: string; initSeed?: string }) => {
    const sigs = new Map<string, string>();
    if (o.signatures && fs.existsSync(o.signatures) && fs.statSync(o.signatures).isDirectory()) {
      const { readSignatureDir } = await import('../../shared/cli/policy');
      for (const file of await readSignatureDir(o.signatures, 2)) sigs.set(file.signer, file.signature);
    } else if (o.signatures) {
      let obj: unknown;
      try {
        obj = JSON.parse(readFileAt(o.signatures, 'utf8'));
      } catch (e) {
        throw new UserError(`--signatures: ${(e as Error).message}`);
      }
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new UserError('--signatures must hold a JSON object {party: base64 signature}');
      for (const [k, v] of Object.entries(obj)) sigs.set(k, String(v));
    }
    for (const s of o.signature) {
      const i = s.indexOf('=');
      if (i <= 0) throw new UserError(`--signature expects PARTY=BASE64, got "${s}"`);
      sigs.set(s.slice(0, i), s.slice(i + 1));
    }
    const policyYaml = fs.existsSync(o.policy) ? readFileAt(o.policy, 'utf8') : '';
    if (!policyYaml) throw new UserError(`--policy: file not found or empty: ${o.policy}`);
    if (o.initialModel && o.initSeed !== undefined) throw new UserError('--initial-model and --init-seed exclude each other: the seed only makes a first model when no file gives one');
    const model = o.initialModel ? new Uint8Array(readFileAt(o.initialModel)) : await initialModelOf(policyYaml, o.initSeed ?? '1');
    const signatures = [...sigs].map(([party, v]) => ({ party, signature: b64Key(`signature of ${party}`, v, 64) }));
    await withOperator(o, async (c) => {
      const { startRun } = await import('./operator-client');
      const { sodiumReady } = await import('../../shared/crypto/sodium');
      await sodiumReady();
      printStatus(await startRun(c.client, c.metadata, { policyYaml, signatures }, model), o.json);
    });
  });
  connOptions(runs.command('abort').description('abort a run (its open round is aborted and recorded)').option('--run <id>', 'run id (default: the running one)', '').option('--reason <text>', 'reason recorded in the audit log', 'aborted by the operator')).action(
    async (o: ConnOpts & { run: string; reason: string }) => {
      await withOperator(o, async (c) => {
        printStatus(await c.unary(c.client.abortRun.bind(c.client), { runId: o.run, reason: o.reason }, c.metadata), o.json);
      });
    },
  );
  connOptions(runs.command('status').description('status of a run and its current round').option('--run <id>', 'run id (default: the newest)', '')).action(async (o: ConnOpts & { run: string }) => {
    await withOperator(o, async (c) => {
      printStatus(await c.unary(c.client.getRunStatus.bind(c.client), { runId: o.run }, c.metadata), o.json);
    });
  });

  const tokens = coord.command('tokens').description('credentials for auditors (separate from operator and party credentials)');
  connOptions(
    tokens
      .command('issue')
      .description('issue a bearer token; it is shown once, only its hash is stored')
      .requiredOption('--role <role>', 'auditor')
      .option('--label <text>', 'who it is for', '')
      .option('--expires-in <duration>', 'how long it opens the audit API: N followed by s, m, h or d, or "never"', '90d'),
  ).action(
    async (o: ConnOpts & { role: string; label: string; expiresIn: string }) => {
      if (o.role !== 'auditor') throw new UserError(`--role must be "auditor", got "${o.role}"`);
      const expiresInSeconds = durationSeconds(o.expiresIn);
      await withOperator(o, async (c) => {
        const r = await c.unary(c.client.issueToken.bind(c.client), { role: o.role, label: o.label, expiresInSeconds: String(expiresInSeconds) }, c.metadata);
        if (o.json) printJson(r);
        else {
          // the token alone on stdout (for a pipe into a file); what `tokens revoke --id` needs on stderr
          process.stdout.write(`${r.token}\n`);
          process.stderr.write(`token id ${r.tokenId} (${r.role}${o.label ? `, "${o.label}"` : ''}), ${r.expiresAtMs === '0' ? 'never expires' : `expires ${new Date(Number(r.expiresAtMs)).toISOString()}`}; shown once, only its hash is stored\n`);
        }
      });
    },
  );
  const tokenView = (t: TokenRecord) => ({
    tokenId: t.tokenId,
    role: t.role,
    label: t.label,
    issuedAt: new Date(Number(t.createdAtMs)).toISOString(),
    revokedAt: t.revokedAtMs === '0' ? null : new Date(Number(t.revokedAtMs)).toISOString(),
    expiresAt: t.expiresAtMs === '0' ? null : new Date(Number(t.expiresAtMs)).toISOString(),
  });
  const tokenState = (t: ReturnType<typeof tokenView>) => (t.revokedAt ? `REVOKED ${t.revokedAt}` : t.expiresAt && Date.parse(t.expiresAt) <= Date.now() ? `EXPIRED ${t.expiresAt}` : `valid${t.expiresAt ? ` until ${t.expiresAt}` : ', never expires'}`);
  connOptions(tokens.command('list').description('every issued token: id, role, label, when issued and revoked (never the token itself)')).action(async (o: ConnOpts) => {
    await withOperator(o, async (c) => {
      const r = await c.unary(c.client.listTokens.bind(c.client), {}, c.metadata);
      const views = r.tokens.map(tokenView);
      if (o.json) printJson({ tokens: views });
      else if (!views.length) process.stdout.write('no tokens issued\n');
      else for (const t of views) process.stdout.write(`${t.tokenId}  ${t.role}  issued ${t.issuedAt}  ${tokenState(t)}  ${JSON.stringify(t.label)}\n`);
    });
  });
  connOptions(
    tokens
      .command('revoke')
      .description('revoke a token: the audit API refuses it from then on; the revocation is recorded in the audit log')
      .requiredOption('--id <tokenId>', 'the token id (tokens list, or tokens issue --json)')
      .option('--reason <text>', 'reason recorded in the audit log', 'revoked by the operator'),
  ).action(async (o: ConnOpts & { id: string; reason: string }) => {
    await withOperator(o, async (c) => {
      const t = tokenView(await c.unary(c.client.revokeToken.bind(c.client), { tokenId: o.id, reason: o.reason }, c.metadata));
      if (o.json) printJson(t);
      else process.stdout.write(`revoked ${t.tokenId} (${t.role}${t.label ? `, ${JSON.stringify(t.label)}` : ''}) at ${t.revokedAt}\n`);
    });
  });
}
