/**
 * `fedbridge coordinator ...` end to end, in-process: init writes a working coordinator folder; the
 * operator commands talk to a coordinator started from that folder's config over mutual TLS.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../coordinator/config/config';
import { createCoordinator, type RunningCoordinator } from '../../coordinator/main';
import { ed25519Keygen } from '../../shared/crypto/sign';
import { sodiumReady } from '../../shared/crypto/sodium';
import { PlainSumFactory } from './helpers/plain-protocol';
import { FEDERATION, modelDim, policyYaml, signaturesFor, testPolicy, TestParty } from './helpers/harness';
import { makePolicySignatureFile } from '../../shared/policy/sign';
import { policyHash } from '../../shared/policy/schema';
import { sharedParameterLayout } from '../../shared/model/layout';
import { initSharedParams } from '../../shared/model/init';
import { runCli as run, runCliFresh } from '../cli-run';

describe('fedbridge coordinator CLI', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-cli-'));
  const dir = path.join(root, 'coord');
  let coord: RunningCoordinator;
  let conn: string[];
  afterAll(async () => {
    await coord?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('init writes key and token 0600, certificates and a config that validates', async () => {
    await sodiumReady();
    const r = await run(['coordinator', 'init', '--dir', dir, '--federation', FEDERATION, '--parties', 'platform,insurer', '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    expect(Buffer.from(out.coordinatorPublicKey, 'base64')).toHaveLength(32);
    for (const f of ['coordinator.key', 'operator.token', 'certs/ca.key', 'certs/platform.key']) expect(fs.statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    const config = loadConfig(path.join(dir, 'config.yaml'), {});
    expect(config.grpc.tls.requireClientCert).toBe(true);
    // a second init refuses to overwrite
    const again = await run(['coordinator', 'init', '--dir', dir, '--federation', FEDERATION]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/^fedbridge: --dir .* is not empty/);
    coord = await createCoordinator(config, { protocol: new PlainSumFactory(2), log: () => undefined });
    conn = ['--coordinator', `127.0.0.1:${coord.grpcPort}`, '--ca', path.join(dir, 'certs/ca.crt'), '--token-file', path.join(dir, 'operator.token'), '--tls-cert', path.join(dir, 'certs/operator.crt'), '--tls-key', path.join(dir, 'certs/operator.key')];
  });

  test('enroll, parties, unenroll, runs start/status/abort, tokens issue/list/revoke; bad input exits non-zero with one line', async () => {
    const env = { certs: { ca: path.join(dir, 'certs/ca.crt'), clients: { platform: { cert: path.join(dir, 'certs/platform.crt'), key: path.join(dir, 'certs/platform.key'), sha256: '' }, insurer: { cert: path.join(dir, 'certs/insurer.crt'), key: path.join(dir, 'certs/insurer.key'), sha256: '' } } } } as never;
    const parties = ['platform', 'insurer'].map((n) => new TestParty(n, env, coord.grpcPort));
    for (const p of parties) {
      const r = await run(['coordinator', 'enroll', ...conn, '--name', p.name, '--public-key', Buffer.from(p.keys.publicKey).toString('base64'), '--cert', path.join(dir, `certs/${p.name}.crt`), '--json']);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ name: p.name, certSha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    }
    const dup = await run(['coordinator', 'enroll', ...conn, '--name', 'platform', '--public-key', Buffer.from(ed25519Keygen().publicKey).toString('base64')]);
    expect(dup.code).toBe(1);
    expect(dup.err).toMatch(/^fedbridge: coordinator: ALREADY_EXISTS: .*already enrolled\n$/);
    // --cert must be an X.509 certificate: not text, not a private key, not a folder; nothing is enrolled
    fs.writeFileSync(path.join(root, 'notes.txt'), 'hello\n');
    const newKey = Buffer.from(ed25519Keygen().publicKey).toString('base64');
    for (const [cert, why] of [
      [path.join(root, 'notes.txt'), 'not a certificate: neither PEM (-----BEGIN CERTIFICATE-----) nor DER X.509'],
      [path.join(dir, 'certs/platform.key'), 'not a certificate: holds a PEM PRIVATE KEY block (expected -----BEGIN CERTIFICATE-----)'],
    ]) {
      const r = await run(['coordinator', 'enroll', ...conn, '--name', 'newparty', '--public-key', newKey, '--cert', cert]);
      expect([r.code, r.err]).toEqual([2, `fedbridge: --cert ${cert}: ${why}\n`]);
    }
    const certDir = await run(['coordinator', 'enroll', ...conn, '--name', 'newparty', '--public-key', newKey, '--cert', path.join(dir, 'certs')]);
    expect([certDir.code, certDir.err]).toEqual([2, `fedbridge: --cert ${path.join(dir, 'certs')} is not a file; expected the party's certificate (PEM)\n`]);
    const badKey = await run(['coordinator', 'enroll', ...conn, '--name', 'x', '--public-key', 'abc']);
    expect(badKey.code).toBe(2);
    expect(badKey.err).toBe('fedbridge: --public-key expects base64 of 32 bytes\n');
    const noRun = await run(['coordinator', 'runs', 'status', ...conn]);
    expect(noRun.code).toBe(1);
    expect(noRun.err).toMatch(/NOT_FOUND: no run has been started/);

    const policy = testPolicy(parties, coord.publicKey, { numItems: 50 });
    fs.writeFileSync(path.join(root, 'policy.yaml'), policyYaml(policy));
    fs.writeFileSync(path.join(root, 'sigs.json'), JSON.stringify(Object.fromEntries(signaturesFor(policy, parties).map((s) => [s.party, Buffer.from(s.signature).toString('base64')]))));
    fs.writeFileSync(path.join(root, 'model.bin'), new Uint8Array(modelDim(policy) * 4));
    const started = await run(['coordinator', 'runs', 'start', ...conn, '--policy', path.join(root, 'policy.yaml'), '--signatures', path.join(root, 'sigs.json'), '--initial-model', path.join(root, 'model.bin'), '--json']);
    expect(started.err).toBe('');
    expect(started.code).toBe(0);
    const st = JSON.parse(started.out);
    expect(st).toMatchObject({ state: 'running', roundsPlanned: 2, currentRound: { round: 1, phase: 'advertise' } });
    const human = await run(['coordinator', 'runs', 'status', ...conn]);
    expect(human.out).toMatch(new RegExp(`^run ${st.runId}: running\\n`));
    expect(human.out).toMatch(/round 1: open \/ advertise waiting for/);
    const aborted = await run(['coordinator', 'runs', 'abort', ...conn, '--reason', 'test over', '--json']);
    expect(JSON.parse(aborted.out)).toMatchObject({ state: 'aborted', abortReason: 'operator: test over' });
    // --signatures DIR: the folder `policy sign` writes (<signer>.json, the coordinator's too), read
    // by a fresh CLI process (libsodium not yet initialised by anyone)
    const sigDir = path.join(root, 'policy.yaml.sig');
    fs.mkdirSync(sigDir);
    const coordSk = new Uint8Array(Buffer.from(fs.readFileSync(path.join(dir, 'coordinator.key'), 'utf8').trim(), 'base64'));
    for (const [name, kp] of [...parties.map((p) => [p.name, p.keys] as const), ['coordinator', { publicKey: coordSk.slice(32), secretKey: coordSk }] as const]) {
      fs.writeFileSync(path.join(sigDir, `${name}.json`), JSON.stringify(makePolicySignatureFile(policyHash(policy), name, kp.publicKey, kp.secretKey), null, 2));
    }
    const fromDir = await runCliFresh(['coordinator', 'runs', 'start', ...conn, '--policy', path.join(root, 'policy.yaml'), '--signatures', sigDir, '--initial-model', path.join(root, 'model.bin'), '--json']);
    expect([fromDir.code, fromDir.err]).toEqual([0, '']);
    expect(JSON.parse(fromDir.out)).toMatchObject({ state: 'running', policyHash: policyHash(policy) });
    expect((await run(['coordinator', 'runs', 'abort', ...conn])).code).toBe(0);
    // without --initial-model: the first model is initialised from the public --init-seed (default 1),
    // as the demo does, not all zeros (zero tower kernels never learn); both flags together: exit 2
    const layout = sharedParameterLayout(policy.model, policy.vocabularies);
    let lastRun: string = JSON.parse(fromDir.out).runId;
    for (const [flags, seed] of [[[], 1], [['--init-seed', '7'], 7]] as const) {
      const r = await run(['coordinator', 'runs', 'start', ...conn, '--policy', path.join(root, 'policy.yaml'), '--signatures', sigDir, ...flags, '--json']);
      expect([r.code, r.err]).toEqual([0, '']);
      lastRun = JSON.parse(r.out).runId;
      const first = await coord.ctx.repo.latestModelVersion();
      const expected = initSharedParams(layout, seed);
      expect(Buffer.from(first!.bytes).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))).toBe(true);
      expect(expected.some((v) => v !== 0)).toBe(true);
      expect((await run(['coordinator', 'runs', 'abort', ...conn])).code).toBe(0);
    }
    const both = await run(['coordinator', 'runs', 'start', ...conn, '--policy', path.join(root, 'policy.yaml'), '--signatures', sigDir, '--initial-model', path.join(root, 'model.bin'), '--init-seed', '3']);
    expect([both.code, both.err]).toEqual([2, 'fedbridge: --initial-model and --init-seed exclude each other: the seed only makes a first model when no file gives one\n']);
    const badSeed = await run(['coordinator', 'runs', 'start', ...conn, '--policy', path.join(root, 'policy.yaml'), '--signatures', sigDir, '--init-seed', '-1']);
    expect([badSeed.code, badSeed.err]).toEqual([2, 'fedbridge: --init-seed must be >= 0, got -1\n']);
    // a bad file in the folder: its name, the field and what is wrong, on one line; no run starts
    const bad = JSON.parse(fs.readFileSync(path.join(sigDir, 'insurer.json'), 'utf8'));
    fs.writeFileSync(path.join(sigDir, 'insurer.json'), JSON.stringify({ ...bad, signature: 'abc' }));
    const badDir = await runCliFresh(['coordinator', 'runs', 'start', ...conn, '--policy', path.join(root, 'policy.yaml'), '--signatures', sigDir]);
    expect([badDir.code, badDir.err]).toEqual([2, `fedbridge: ${path.join(sigDir, 'insurer.json')}: not a policy signature file (signature: expected base64 of 64 bytes)\n`]);
    expect(JSON.parse((await run(['coordinator', 'runs', 'status', ...conn, '--json'])).out)).toMatchObject({ state: 'aborted', runId: lastRun });

    const tok = await run(['coordinator', 'tokens', 'issue', ...conn, '--role', 'auditor', '--label', 'alice', '--json']);
    expect(JSON.parse(tok.out)).toMatchObject({ role: 'auditor', token: expect.stringMatching(/^fbt_/) });
    const tokId: string = JSON.parse(tok.out).tokenId;
    const listed = await run(['coordinator', 'tokens', 'list', ...conn, '--json']);
    const view = JSON.parse(listed.out).tokens;
    expect(view).toEqual([{ tokenId: tokId, role: 'auditor', label: 'alice', issuedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), revokedAt: null, expiresAt: expect.stringMatching(/^\d{4}-/) }]);
    // the default lifetime: 90 days
    expect(Date.parse(view[0].expiresAt) - Date.parse(view[0].issuedAt)).toBe(90 * 86400_000);
    const forever = await run(['coordinator', 'tokens', 'issue', ...conn, '--role', 'auditor', '--label', 'bob', '--expires-in', 'never', '--json']);
    expect(JSON.parse(forever.out)).toMatchObject({ expiresAtMs: '0' });
    const listed2 = await run(['coordinator', 'tokens', 'list', ...conn]);
    expect(listed2.out).toMatch(/ valid until \d{4}-\S+  "alice"\n.* valid, never expires  "bob"\n$/s);
    for (const bad of ['90', '0d', '1w', '-5d', 'forever']) {
      const r = await run(['coordinator', 'tokens', 'issue', ...conn, '--role', 'auditor', '--expires-in', bad]);
      expect([bad, r.code, r.err]).toEqual([bad, 2, `fedbridge: --expires-in expects a number followed by s, m, h or d (e.g. 90d, 12h), or "never"; got "${bad}"\n`]);
    }
    // without --json: the token alone on stdout, its id and expiry on stderr (what revoke needs)
    const plain = await run(['coordinator', 'tokens', 'issue', ...conn, '--role', 'auditor', '--label', 'carol', '--expires-in', '12h']);
    expect(plain.code).toBe(0);
    expect(plain.out).toMatch(/^fbt_\S+\n$/);
    const plainId = (JSON.parse((await run(['coordinator', 'tokens', 'list', ...conn, '--json'])).out).tokens as { tokenId: string; label: string; expiresAt: string }[]).find((t) => t.label === 'carol')!;
    expect(plain.err).toBe(`token id ${plainId.tokenId} (auditor, "carol"), expires ${plainId.expiresAt}; shown once, only its hash is stored\n`);
    const plainNever = await run(['coordinator', 'tokens', 'issue', ...conn, '--role', 'auditor', '--expires-in', 'never']);
    expect(plainNever.err).toMatch(/^token id tok-\S+ \(auditor\), never expires; shown once, only its hash is stored\n$/);
    const tooLong = await run(['coordinator', 'tokens', 'issue', ...conn, '--role', 'auditor', '--expires-in', '4000d']);
    expect([tooLong.code, tooLong.err]).toEqual([1, expect.stringMatching(/^fedbridge: coordinator: INVALID_ARGUMENT: expires_in_seconds must be 0 \(never\) or a whole number of seconds up to 315360000/)]);
    const revoked = await run(['coordinator', 'tokens', 'revoke', ...conn, '--id', tokId, '--reason', 'left the firm']);
    expect(revoked.code).toBe(0);
    expect(revoked.out).toMatch(new RegExp(`^revoked ${tokId} \\(auditor, "alice"\\) at \\d{4}-\\d\\d-\\d\\dT\\S+\n$`));
    const text = await run(['coordinator', 'tokens', 'list', ...conn]);
    expect(text.out).toMatch(new RegExp(`^${tokId}  auditor  issued \\S+  REVOKED \\S+  "alice"\n`));
    const again = await run(['coordinator', 'tokens', 'revoke', ...conn, '--id', tokId]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(new RegExp(`^fedbridge: coordinator: FAILED_PRECONDITION: token ${tokId} was already revoked at \\S+\n$`));
    const noId = await run(['coordinator', 'tokens', 'revoke', ...conn]);
    expect(noId.code).not.toBe(0);
    expect(noId.err).toMatch(/--id/);
    // parties: list, remove (no run is running now), list again; removing again is NOT_FOUND
    const ps = await run(['coordinator', 'parties', ...conn, '--json']);
    expect(JSON.parse(ps.out).parties.map((p: { name: string }) => p.name)).toEqual(['insurer', 'platform']);
    const gone = await run(['coordinator', 'unenroll', ...conn, '--name', 'insurer', '--reason', 'left', '--json']);
    expect(gone.code).toBe(0);
    expect(JSON.parse(gone.out)).toMatchObject({ name: 'insurer', publicKey: Buffer.from(parties[1].keys.publicKey).toString('base64') });
    const left = await run(['coordinator', 'parties', ...conn]);
    expect(left.out).toMatch(/^platform  \S{44}  cert [0-9a-f]{16}\.\.\.  enrolled \d{4}-\S+\n$/);
    const twice = await run(['coordinator', 'unenroll', ...conn, '--name', 'insurer']);
    expect([twice.code, twice.err]).toEqual([1, 'fedbridge: coordinator: NOT_FOUND: no party "insurer" is enrolled (fedbridge coordinator parties)\n']);
    const badRole = await run(['coordinator', 'tokens', 'issue', ...conn, '--role', 'operator']);
    expect(badRole.code).toBe(2);
    const noToken = await run(['coordinator', 'runs', 'status', ...conn.filter((_, i) => i < 4), '--tls-cert', path.join(dir, 'certs/operator.crt'), '--tls-key', path.join(dir, 'certs/operator.key')]);
    expect(noToken.code).toBe(2);
    expect(noToken.err).toMatch(/no operator token/);
    for (const p of parties) p.close();
  });

  test('operator commands: a TLS set-up problem is one line saying which flag to fix; a party\'s certificate is not the operator\'s; nothing reaches the coordinator', async () => {
    const certs = path.join(dir, 'certs');
    const [ca, opCert, opKey] = [path.join(certs, 'ca.crt'), path.join(certs, 'operator.crt'), path.join(certs, 'operator.key')];
    const token = ['--token-file', path.join(dir, 'operator.token')];
    const addr = `127.0.0.1:${coord.grpcPort}`;
    const status = (address: string, tls: string[]) => run(['coordinator', 'runs', 'status', '--coordinator', address, ...token, ...tls]);
    fs.writeFileSync(path.join(root, 'junk.pem'), 'not a certificate\n');
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const before = (await coord.ctx.repo.auditEntries(0, 100_000)).length;
    const cases: [string, string, string[], number, string][] = [
      ['no client certificate (mutual TLS)', addr, ['--ca', ca], 1, `fedbridge: cannot reach the coordinator: the coordinator at ${addr} requires a client certificate (mutual TLS): pass --tls-cert and --tls-key (the party's or operator's certificate from \`fedbridge coordinator certs\`/\`init\`)\n`],
      ['a key that is not the certificate\'s', addr, ['--ca', ca, '--tls-cert', opCert, '--tls-key', path.join(certs, 'platform.key')], 2, `fedbridge: --tls-key: ${path.join(certs, 'platform.key')} is not the private key of the certificate --tls-cert ${opCert}\n`],
      ['a certificate without its key', addr, ['--ca', ca, '--tls-cert', opCert], 2, 'fedbridge: --tls-cert needs its private key too (a certificate and its key go together)\n'],
      ['a CA file that holds no certificate', addr, ['--ca', path.join(root, 'junk.pem'), '--tls-cert', opCert, '--tls-key', opKey], 2, `fedbridge: --ca: ${path.join(root, 'junk.pem')}: not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)\n`],
      ['a key given as the certificate', addr, ['--ca', ca, '--tls-cert', opKey, '--tls-key', opKey], 2, `fedbridge: --tls-cert: ${opKey}: holds a private key, not a certificate\n`],
      ['a CA that did not sign the coordinator\'s certificate', addr, ['--ca', opCert, '--tls-cert', opCert, '--tls-key', opKey], 1, `fedbridge: cannot reach the coordinator: the coordinator's TLS certificate at ${addr} does not verify (self-signed certificate in certificate chain): is --ca ${opCert} the CA that signed the coordinator's certificate?\n`],
      ['nothing listening', `127.0.0.1:${closed}`, ['--ca', ca, '--tls-cert', opCert, '--tls-key', opKey], 1, `fedbridge: cannot reach the coordinator: nothing accepts connections at 127.0.0.1:${closed} (connection refused): is the coordinator running, and is this its gRPC address (grpc.listen)?\n`],
      ['the HTTP port', `127.0.0.1:${coord.httpPort}`, ['--ca', ca, '--tls-cert', opCert, '--tls-key', opKey], 1, `fedbridge: cannot reach the coordinator: 127.0.0.1:${coord.httpPort} does not answer with TLS (wrong version number): is this the coordinator's gRPC port (grpc.listen), not its HTTP port?\n`],
    ];
    for (const [what, address, tls, code, err] of cases) {
      const r = await status(address, tls);
      expect([what, r.code, r.err, r.out]).toEqual([what, code, err, '']);
    }
    // init bound the operator API to the operator's own certificate: a party's (signed by the same
    // CA), with the right token, is refused before the token is looked at
    expect(coord.ctx.config.operator.certSha256).toMatch(/^[0-9a-f]{64}$/);
    const asParty = await status(addr, ['--ca', ca, '--tls-cert', path.join(certs, 'platform.crt'), '--tls-key', path.join(certs, 'platform.key')]);
    expect([asParty.code, asParty.err]).toEqual([1, "fedbridge: coordinator: PERMISSION_DENIED: operator API: the client certificate (platform) is not the operator's (operator.certSha256 in the coordinator config); use certs/operator.crt and certs/operator.key\n"]);
    expect((await coord.ctx.repo.auditEntries(0, 100_000)).length).toBe(before);
    // and the right files still work
    expect((await status(addr, ['--ca', ca, '--tls-cert', opCert, '--tls-key', opKey])).code).toBe(0);
  });

  test('init refuses a bad flag by its name before writing anything; the retry then works', async () => {
    const target = path.join(root, 'c1');
    const before = fs.readdirSync(root).sort();
    const cases: [string[], string][] = [
      [['--federation', 'Bad Id'], 'fedbridge: --federation: expected a lowercase name (letters, digits, - or _), got "Bad Id"\n'],
      [['--federation', 'demo', '--grpc-listen', 'localhost'], 'fedbridge: --grpc-listen: expected HOST:PORT, e.g. 127.0.0.1:7443 (port 0 = any free port), got "localhost"\n'],
      [['--federation', 'demo', '--http-listen', '127.0.0.1:99999'], 'fedbridge: --http-listen: port must be <= 65535, got "127.0.0.1:99999"\n'],
    ];
    for (const [flags, msg] of cases) {
      const r = await run(['coordinator', 'init', '--dir', target, ...flags]);
      expect([flags, r.code, r.err]).toEqual([flags, 2, msg]);
      expect(fs.readdirSync(root).sort()).toEqual(before);
    }
    // an empty folder is fine (it is replaced by the built one)
    fs.mkdirSync(target);
    const ok = await run(['coordinator', 'init', '--dir', target, '--federation', 'demo', '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--json']);
    expect([ok.code, ok.err]).toEqual([0, '']);
    expect(JSON.parse(ok.out).certs.clients.operator.cert).toBe(path.join(target, 'certs/operator.crt'));
    expect(fs.readdirSync(target).sort()).toEqual(['certs', 'config.yaml', 'coordinator.key', 'operator.token']);
    expect(fs.statSync(target).mode & 0o777).toBe(0o700);
    expect(loadConfig(path.join(target, 'config.yaml'), {}).identity.keyFile).toBe(path.join(target, 'coordinator.key'));
    expect(fs.readdirSync(root).filter((f) => f.includes('.init-'))).toEqual([]);
    // without --json: how to start it and the flags every operator command needs, each file there
    const c2 = path.join(root, 'c-human');
    const human = await run(['coordinator', 'init', '--dir', c2, '--federation', 'demo', '--grpc-listen', '127.0.0.1:7443']);
    expect(human.code).toBe(0);
    const lines = human.err.split('\n');
    expect(lines).toContain(`start it: fedbridge coordinator start --config ${path.join(c2, 'config.yaml')}`);
    const conn = lines.find((l) => l.startsWith('operator commands (enroll, runs, tokens) connect with: '))!.split(': ')[1].split(' ');
    expect(conn).toEqual(['--coordinator', '127.0.0.1:7443', '--ca', path.join(c2, 'certs/ca.crt'), '--token-file', path.join(c2, 'operator.token'), '--tls-cert', path.join(c2, 'certs/operator.crt'), '--tls-key', path.join(c2, 'certs/operator.key')]);
    for (let i = 3; i < conn.length; i += 2) expect(fs.statSync(conn[i]).isFile()).toBe(true);
  });

  test('--parties: "operator" is reserved in init, an empty list is refused; nothing is written', async () => {
    const target = path.join(root, 'c2');
    const before = fs.readdirSync(root).sort();
    const cases: [string[], string][] = [
      [['coordinator', 'init', '--dir', target, '--federation', 'demo', '--parties', 'operator'], `fedbridge: --parties: party name "operator" is reserved for the operator's client certificate, which init makes\n`],
      [['coordinator', 'init', '--dir', target, '--federation', 'demo', '--parties', 'platform,operator'], `fedbridge: --parties: party name "operator" is reserved for the operator's client certificate, which init makes\n`],
      [['coordinator', 'init', '--dir', target, '--federation', 'demo', '--parties', ''], 'fedbridge: --parties expects comma-separated party names, e.g. platform,insurer; got ""\n'],
      [['coordinator', 'init', '--dir', target, '--federation', 'demo', '--parties', ' , '], 'fedbridge: --parties expects comma-separated party names, e.g. platform,insurer; got " , "\n'],
      [['coordinator', 'init', '--dir', target, '--federation', 'demo', '--parties', 'a,a'], 'fedbridge: --parties: party names must be distinct\n'],
      [['coordinator', 'certs', '--out', target, '--parties', ''], 'fedbridge: --parties expects comma-separated party names, e.g. platform,insurer; got ""\n'],
      [['coordinator', 'certs', '--out', target, '--parties', 'server'], 'fedbridge: --parties: party name "server" is reserved for the CA / server files\n'],
    ];
    for (const [args, msg] of cases) {
      const r = await run(args);
      expect([args, r.code, r.err]).toEqual([args, 2, msg]);
    }
    expect(fs.readdirSync(root).sort()).toEqual(before);
  });

  test('certs refuses a non-empty --out unless --force', async () => {
    const out = path.join(root, 'certs-out');
    expect((await run(['coordinator', 'certs', '--out', out, '--parties', 'platform'])).code).toBe(0);
    const files = fs.readdirSync(out).sort();
    const caKey = fs.readFileSync(path.join(out, 'ca.key'), 'utf8');
    const again = await run(['coordinator', 'certs', '--out', out, '--parties', 'platform']);
    expect([again.code, again.err]).toEqual([2, `fedbridge: --out ${out} is not empty; pass --force to replace its CA, keys and certificates\n`]);
    expect(fs.readFileSync(path.join(out, 'ca.key'), 'utf8')).toBe(caKey);
    expect(fs.readdirSync(out).sort()).toEqual(files);
    const forced = await run(['coordinator', 'certs', '--out', out, '--parties', 'platform', '--force', '--json']);
    expect([forced.code, forced.err]).toEqual([0, '']);
    expect(JSON.parse(forced.out).clients.platform.cert).toBe(path.join(out, 'platform.crt'));
    expect(fs.readFileSync(path.join(out, 'ca.key'), 'utf8')).not.toBe(caKey);
    // --force with fewer parties: the old CA's files it did not replace are named, and kept
    expect((await run(['coordinator', 'certs', '--out', out, '--parties', 'platform,insurer,carol', '--force'])).code).toBe(0);
    const carolKey = fs.readFileSync(path.join(out, 'carol.key'), 'utf8');
    const fewer = await run(['coordinator', 'certs', '--out', out, '--parties', 'platform', '--force']);
    expect([fewer.code, fewer.err.split('\n')[0]]).toEqual([0, `fedbridge: warning: ${out} still holds carol.crt, carol.key, insurer.crt, insurer.key from before, not replaced: issued by the old CA, they no longer verify against the new ca.crt; remove them if nothing uses them`]);
    expect(fs.readFileSync(path.join(out, 'carol.key'), 'utf8')).toBe(carolKey);
  });

  test('start refuses a config whose identity key file is missing, and makes no new identity', async () => {
    const cfg = path.join(root, 'nokey.json');
    const keyFile = path.join(root, 'nokey', 'coordinator.key');
    fs.writeFileSync(cfg, JSON.stringify({
      federationId: 'demo',
      grpc: { listen: '127.0.0.1:0', tls: { cert: path.join(dir, 'certs/server.crt'), key: path.join(dir, 'certs/server.key'), ca: path.join(dir, 'certs/ca.crt') } },
      http: { listen: '127.0.0.1:0' },
      storage: { dataDir: path.join(root, 'nokey', 'data') },
      identity: { keyFile },
      operator: { tokenSha256: 'ab'.repeat(32) },
    }));
    const r = await run(['coordinator', 'start', '--config', cfg]);
    expect([r.code, r.err]).toEqual([2, `fedbridge: coordinator key file not found: ${keyFile} (identity.keyFile in ${cfg}; fedbridge coordinator init makes the key)\n`]);
    expect(fs.existsSync(path.join(root, 'nokey'))).toBe(false);
  });

  test('start: a port in use, an unreachable database, a TLS key not the certificate\'s: one line naming the field, exit non-zero, storage untouched', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()));
    const busyAt = `127.0.0.1:${(busy.address() as net.AddressInfo).port}`;
    const data = path.join(root, 'start-data');
    const cfg = path.join(root, 'start.json');
    const base = () => ({
      federationId: 'demo',
      grpc: { listen: '127.0.0.1:0', tls: { cert: path.join(dir, 'certs/server.crt'), key: path.join(dir, 'certs/server.key'), ca: path.join(dir, 'certs/ca.crt') } },
      http: { listen: '127.0.0.1:0' } as Record<string, unknown>,
      storage: { dataDir: data } as Record<string, unknown>,
      identity: { keyFile: path.join(dir, 'coordinator.key') },
      operator: { tokenSha256: 'ab'.repeat(32) },
    });
    const cases: [string, (c: ReturnType<typeof base>) => void, number, string][] = [
      ['gRPC port in use', (c) => (c.grpc.listen = busyAt), 1, `fedbridge: grpc.listen ${busyAt}: cannot listen: the port is in use (another coordinator or program listens on it)\n`],
      ['HTTP port in use', (c) => (c.http.listen = busyAt), 1, `fedbridge: http.listen ${busyAt}: cannot listen: the port is in use (another coordinator or program listens on it)\n`],
      ['unresolvable listen host', (c) => (c.grpc.listen = 'no-such-host.invalid:0'), 1, 'fedbridge: grpc.listen no-such-host.invalid:0: cannot listen: the host name does not resolve\n'],
      ['database refusing connections', (c) => (c.storage.databaseUrl = 'postgres://fb:secret@127.0.0.1:1/fb'), 1, 'fedbridge: storage.databaseUrl (or env DATABASE_URL) postgres://fb:***@127.0.0.1:1/fb: cannot connect to PostgreSQL: connection refused (is the server running, and listening there?)\n'],
      ['TLS key not the certificate\'s', (c) => (c.grpc.tls.key = path.join(dir, 'certs/platform.key')), 2, `fedbridge: invalid coordinator config ${cfg}: grpc.tls.key: ${path.join(dir, 'certs/platform.key')} is not the private key of the certificate grpc.tls.cert ${path.join(dir, 'certs/server.crt')}\n`],
    ];
    try {
      for (const [name, mutate, code, err] of cases) {
        const c = base();
        mutate(c);
        fs.writeFileSync(cfg, JSON.stringify(c));
        const r = await run(['coordinator', 'start', '--config', cfg]);
        expect([name, r.code, r.err]).toEqual([name, code, err]);
        expect([name, fs.existsSync(path.join(data, 'coordinator.sqlite'))]).toEqual([name, false]);
      }
    } finally {
      busy.close();
    }
  });

  test('start refuses an invalid config with the field named', async () => {
    fs.writeFileSync(path.join(root, 'bad.yaml'), 'federationId: Demo\n');
    const r = await run(['coordinator', 'start', '--config', path.join(root, 'bad.yaml')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^fedbridge: invalid coordinator config .*bad\.yaml: federationId: expected a lowercase name/);
  });
});
