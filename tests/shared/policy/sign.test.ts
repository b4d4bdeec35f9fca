import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { sodiumReady, sodium } from '../../../shared/crypto/sodium';
import { ed25519Keygen } from '../../../shared/crypto/sign';
import { initNode } from '../../../participant-node/identity';
import { parsePolicyYaml, policyHash } from '../../../shared/policy/schema';
import { checkPolicySignatures, makePolicySignatureFile, policySigningMessage, signPolicyHash, verifyPolicySignature } from '../../../shared/policy/sign';
import { policySigningMessage as coordinatorMessage } from '../../../coordinator/policy/signatures';
import { runCli as run } from '../../cli-run';
import { stringify } from 'yaml';
import { generateSynthetic } from '../../../participant-node/data/generate';
import { importCsv } from '../../../participant-node/data/import';
import { loadDataset } from '../../../participant-node/data/store';
import { loadIdentity } from '../../../participant-node/identity';
import { smallPolicy } from '../../integration/policy';

beforeAll(async () => {
  await sodiumReady();
});

describe('policy signatures', () => {
  test('message = domain || 0x00 || raw hash; same bytes the coordinator checks', () => {
    const h = 'ab'.repeat(32);
    const m = policySigningMessage(h);
    expect(Buffer.from(m.subarray(0, 20)).toString()).toBe('fedbridge/v1/policy\0');
    expect(Buffer.from(m.subarray(20)).toString('hex')).toBe(h);
    expect(coordinatorMessage(h)).toEqual(m);
    expect(() => policySigningMessage('AB'.repeat(32))).toThrow(RangeError);
    expect(() => policySigningMessage('ab')).toThrow(/64 lowercase hex/);
  });

  test('sign/verify; another hash, key or a flipped bit fails', () => {
    const kp = ed25519Keygen();
    const other = ed25519Keygen();
    const h = 'cd'.repeat(32);
    const s = signPolicyHash(h, kp.secretKey);
    expect(verifyPolicySignature(h, s, kp.publicKey)).toBe(true);
    expect(verifyPolicySignature('ce' + h.slice(2), s, kp.publicKey)).toBe(false);
    expect(verifyPolicySignature(h, s, other.publicKey)).toBe(false);
    const flipped = new Uint8Array(s);
    flipped[5] ^= 1;
    expect(verifyPolicySignature(h, flipped, kp.publicKey)).toBe(false);
    expect(verifyPolicySignature(h, s.subarray(0, 63), kp.publicKey)).toBe(false);
  });
});

describe('fedbridge policy init | sign | verify', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-policy-'));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  test('init from node dirs, every party and the coordinator sign, verify passes; a missing or foreign signature fails', async () => {
    const a = path.join(root, 'platform');
    const b = path.join(root, 'insurer');
    await initNode(a, 'platform');
    await initNode(b, 'insurer');
    const coord = ed25519Keygen();
    const keyFile = path.join(root, 'coordinator.key');
    fs.writeFileSync(keyFile, sodium().to_base64(coord.secretKey, sodium().base64_variants.ORIGINAL) + '\n', { mode: 0o600 });
    const pol = path.join(root, 'policy.yaml');
    const coordPk = sodium().to_base64(coord.publicKey, sodium().base64_variants.ORIGINAL);
    let r = await run(['policy', 'init', '--out', pol, '--federation', 'demo', '--coordinator-key', coordPk, '--node-dir', a, '--node-dir', b, '--catalogue-hash', 'ef'.repeat(32), '--num-items', '120', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const written = parsePolicyYaml(fs.readFileSync(pol, 'utf8'));
    const { policyHash: printed } = JSON.parse(r.out);
    expect(printed).toBe(policyHash(written));
    expect(written.parties.map((p) => p.name)).toEqual(['platform', 'insurer']);
    expect(parseYaml(fs.readFileSync(pol, 'utf8')).privacy.delta).toBe(1e-6); // every value written out
    // refuses to overwrite
    r = await run(['policy', 'init', '--out', pol, '--federation', 'demo', '--coordinator-key', coordPk, '--node-dir', a, '--node-dir', b, '--catalogue-hash', 'ef'.repeat(32), '--num-items', '120']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/exists; pass --force/);

    expect((await run(['policy', 'sign', pol, '--data-dir', a])).code).toBe(0);
    r = await run(['policy', 'verify', pol, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)).toMatchObject({ ok: false, missing: ['coordinator', 'insurer'] });
    expect(r.err).toMatch(/not signed by coordinator, insurer/);

    expect((await run(['policy', 'sign', pol, '--data-dir', b])).code).toBe(0);
    expect((await run(['policy', 'sign', pol, '--key-file', keyFile, '--signer', 'coordinator'])).code).toBe(0);
    r = await run(['policy', 'verify', pol, '--json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.out);
    expect(v).toMatchObject({ ok: true, missing: [], policyHash: printed });
    expect(v.signers.map((s: { signer: string; role: string }) => `${s.signer}:${s.role}`).sort()).toEqual(['coordinator:coordinator', 'insurer:party', 'platform:party']);

    // a signature by a key the policy does not pin for that name
    const stranger = ed25519Keygen();
    const forged = makePolicySignatureFile(printed, 'insurer', stranger.publicKey, stranger.secretKey);
    fs.writeFileSync(path.join(pol + '.sig', 'insurer.json'), JSON.stringify(forged));
    r = await run(['policy', 'verify', pol, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out).signers.find((s: { signer: string }) => s.signer === 'insurer')).toMatchObject({ ok: false, problem: 'public key differs from the key the policy pins for this signer' });

    // a signer whose key the policy does not pin cannot sign
    const c = path.join(root, 'mallory');
    await initNode(c, 'mallory');
    r = await run(['policy', 'sign', pol, '--data-dir', c]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/"mallory" is neither a party nor the coordinator/);
  });

  test('init takes the catalogue hash and size from a node with imported data', async () => {
    const a = path.join(root, 'platform');
    fs.mkdirSync(path.join(a, 'data'), { recursive: true });
    fs.writeFileSync(path.join(a, 'data', 'meta.json'), JSON.stringify({ format: 'fedbridge-dataset/1', party: 'platform', catalogueHash: '12'.repeat(32), counts: { users: 3, items: 77, interactions: 9 }, sha256: {} }));
    const out = path.join(root, 'from-node.yaml');
    const coordPk = parsePolicyYaml(fs.readFileSync(path.join(root, 'policy.yaml'), 'utf8')).coordinator.publicKey;
    let r = await run(['policy', 'init', '--out', out, '--federation', 'demo', '--coordinator-key', coordPk, '--node-dir', a, '--node-dir', path.join(root, 'insurer'), '--catalogue-from', a]);
    expect(r.err).toBe('');
    const p = parsePolicyYaml(fs.readFileSync(out, 'utf8'));
    expect(p.catalogue).toEqual({ hash: '12'.repeat(32), numItems: 77 });
    expect(p.model.numItems).toBe(77);
    // with the imported catalogue's provider column: each party's offers, and training on own offers
    const items = Array.from({ length: 77 }, (_, k) => ({ id: `i${k}`, provider: k < 40 ? 'platform' : 'insurer' }));
    fs.writeFileSync(path.join(a, 'data', 'items.json'), JSON.stringify(items));
    r = await run(['policy', 'init', '--out', out, '--force', '--federation', 'demo', '--coordinator-key', coordPk, '--node-dir', a, '--node-dir', path.join(root, 'insurer'), '--catalogue-from', a]);
    expect(r.err).toBe('');
    const q = parsePolicyYaml(fs.readFileSync(out, 'utf8'));
    expect(q.catalogue.offers).toEqual({ platform: [[0, 40]], insurer: [[40, 77]] });
    expect(q.training.offerScope).toBe('own');
    fs.rmSync(path.join(a, 'data', 'items.json'));
    r = await run(['policy', 'init', '--out', out, '--force', '--federation', 'demo', '--coordinator-key', coordPk, '--node-dir', a, '--node-dir', path.join(root, 'insurer'), '--catalogue-from', a, '--num-items', '5']);
    expect(r.err).toMatch(/not both/);
    r = await run(['policy', 'init', '--out', out, '--force', '--federation', 'demo', '--coordinator-key', coordPk, '--node-dir', a, '--node-dir', path.join(root, 'insurer')]);
    expect(r.err).toMatch(/the catalogue is needed/);
    fs.rmSync(path.join(a, 'data'), { recursive: true }); // the stand-in meta.json is no dataset
  });

  test('sign --data-dir refuses a policy the node\'s imported data could not join under (catalogue, user cap); nothing is written', async () => {
    const gen = path.join(root, 'gen');
    await generateSynthetic({ out: gen, seed: 3, scale: 'small', parties: ['platform', 'insurer'], usersPerParty: 30, itemsPerParty: 20 });
    const dir = path.join(root, 'imported');
    await initNode(dir, 'platform');
    await importCsv({ dataDir: dir, users: path.join(gen, 'platform', 'users.csv'), items: path.join(gen, 'platform', 'items.csv'), interactions: path.join(gen, 'platform', 'interactions.csv') });
    const ds = loadDataset(dir);
    const key = (await loadIdentity(dir)).publicKey;
    const users = new Set(ds.interactions.user).size;
    const base = smallPolicy({ ds, parties: ['platform', 'insurer'], coordinatorKey: ed25519Keygen().publicKey, keys: { platform: key, insurer: ed25519Keygen().publicKey }, samplingRate: 0.25, phaseSeconds: 20 });
    const cases: [string, object, string][] = [
      ['another catalogue', { ...base, catalogue: { ...base.catalogue, hash: 'ab'.repeat(32) } }, `the imported catalogue (${ds.catalogueHash.slice(0, 16)}…) is not the policy's catalogue (${'ab'.repeat(8)}…)`],
      [
        'a user cap below its users',
        { ...base, privacy: { ...base.privacy, mechanism: 'round-noise', maxUsersPerParty: users - 1 } },
        `this party has ${users} users with training data, more than the policy's privacy.maxUsersPerParty (${users - 1}), which bounds the round-noise encoding against wrap-around: remove users, or sign a policy with a larger cap`,
      ],
    ];
    for (const [what, policy, why] of cases) {
      const pol = path.join(root, `refused-${what.replace(/ /g, '-')}.yaml`);
      fs.writeFileSync(pol, stringify(policy));
      const r = await run(['policy', 'sign', pol, '--data-dir', dir]);
      expect([what, r.code, r.err]).toEqual([what, 1, `fedbridge: refusing to sign ${pol} for "platform": ${why}\n`]);
      expect(fs.existsSync(pol + '.sig')).toBe(false);
    }
    // the cap at its users, and the policy's own catalogue: signed
    const fits = path.join(root, 'fits.yaml');
    fs.writeFileSync(fits, stringify({ ...base, privacy: { ...base.privacy, mechanism: 'round-noise', maxUsersPerParty: users } }));
    const r = await run(['policy', 'sign', fits, '--data-dir', dir]);
    expect([r.code, r.err]).toEqual([0, '']);
    expect(fs.existsSync(path.join(fits + '.sig', 'platform.json'))).toBe(true);
  });

  test('sign and verify take the policy as POLICY or --policy F, exactly one', async () => {
    const pol = path.join(root, 'policy.yaml');
    const a = path.join(root, 'platform');
    let r = await run(['policy', 'sign', '--policy', pol, '--data-dir', a, '--json']);
    expect([r.code, r.err]).toEqual([0, '']);
    expect(JSON.parse(r.out)).toMatchObject({ signer: 'platform', out: path.join(pol + '.sig', 'platform.json') });
    r = await run(['policy', 'verify', '--policy', pol, '--json']);
    expect(JSON.parse(r.out)).toMatchObject({ policyHash: policyHash(parsePolicyYaml(fs.readFileSync(pol, 'utf8'))) });
    expect(JSON.parse(r.out).signers).toContainEqual({ signer: 'platform', role: 'party', ok: true });
    for (const cmd of [['sign', '--data-dir', a], ['verify']]) {
      r = await run(['policy', ...cmd, pol, '--policy', pol]);
      expect([r.code, r.err]).toEqual([2, `fedbridge: give the policy once: as POLICY or as --policy F, not both ("${pol}", --policy "${pol}")\n`]);
      r = await run(['policy', ...cmd]);
      expect([r.code, r.err]).toEqual([2, 'fedbridge: which policy? give it as POLICY or --policy F\n']);
    }
  });

  test('checkPolicySignatures: a signature over another policy hash is refused', async () => {
    const pol = parsePolicyYaml(fs.readFileSync(path.join(root, 'policy.yaml'), 'utf8'));
    const h = policyHash(pol);
    const kp = ed25519Keygen();
    const f = makePolicySignatureFile('00'.repeat(32), 'platform', kp.publicKey, kp.secretKey);
    const res = checkPolicySignatures(pol, h, [f]);
    expect(res.ok).toBe(false);
    expect(res.checks[0].problem).toMatch(/not this policy/);
  });

  test('bad input gets a precise error', async () => {
    let r = await run(['policy', 'verify', path.join(root, 'nope.yaml')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/cannot read policy .*nope.yaml: ENOENT/);
    const bad = path.join(root, 'bad.yaml');
    fs.writeFileSync(bad, 'version: 2\n');
    r = await run(['policy', 'verify', bad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/invalid policy: version/);
    r = await run(['policy', 'sign', path.join(root, 'policy.yaml')]);
    expect(r.err).toMatch(/exactly one of --data-dir/);
    r = await run(['policy', 'init', '--out', path.join(root, 'x.yaml'), '--federation', 'demo', '--coordinator-key', 'x', '--party', 'a=b', '--catalogue-hash', 'ef'.repeat(32), '--num-items', '3']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/at least 2 parties/);
  });
});
