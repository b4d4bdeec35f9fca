import { defaultPolicy } from '../../shared/policy/defaults';
import { MAX_PARTIES, parsePolicyYaml, policyHash, PolicyError, validatePolicy, type Policy } from '../../shared/policy/schema';
import { encodeServerMessage } from '../../shared/secagg/wire';
import { GRPC_MAX_MESSAGE_BYTES } from '../../coordinator/grpc/options';
import { sodiumReady } from '../../shared/crypto/sodium';
import { stringify } from 'yaml';

const key = (c: string) => c.repeat(43) + '=';

function policy(): Policy {
  return defaultPolicy({
    federationId: 'fb-test',
    coordinator: { name: 'coordinator', publicKey: key('C') },
    parties: [
      { name: 'platform', publicKey: key('P') },
      { name: 'insurer', publicKey: key('I') },
    ],
    catalogue: { hash: 'ab'.repeat(32), numItems: 100 },
  });
}

beforeAll(async () => {
  await sodiumReady();
});

describe('federation policy', () => {
  test('default policy validates and round-trips through YAML with the same hash', () => {
    const p = policy();
    const text = stringify(p);
    const back = parsePolicyYaml(text);
    expect(back).toEqual(p);
    expect(policyHash(back)).toBe(policyHash(p));
    expect(policyHash(p)).toMatch(/^[0-9a-f]{64}$/);
  });

  test('key order and formatting do not change the hash; any value does', () => {
    const p = policy();
    const reordered = JSON.parse(JSON.stringify(p, Object.keys(p).reverse()));
    expect(policyHash(validatePolicy({ ...reordered, ...p }))).toBe(policyHash(p));
    const changed = structuredClone(p);
    changed.privacy.clipNorm = 1.0000001;
    expect(policyHash(validatePolicy(changed))).not.toBe(policyHash(p));
  });

  test(`at most MAX_PARTIES (${MAX_PARTIES}) parties, and at that size the largest SecAgg messages fit one gRPC message`, () => {
    const many = (n: number) => {
      const p = policy();
      p.parties = Array.from({ length: n }, (_, i) => ({ name: `p${i}`, publicKey: Buffer.from(String(i).padStart(32, '0')).toString('base64') }));
      return p;
    };
    expect(validatePolicy(many(MAX_PARTIES)).parties).toHaveLength(MAX_PARTIES);
    expect(() => validatePolicy(many(MAX_PARTIES + 1))).toThrow(new RegExp(`parties: at most ${MAX_PARTIES} parties .* got ${MAX_PARTIES + 1}`));
    // the messages that grow with the number of parties, with the longest names the schema allows
    const names = Array.from({ length: MAX_PARTIES }, (_, i) => `p${i}-`.padEnd(63, 'x'));
    const federationId = 'f'.padEnd(63, 'x');
    const signature = new Uint8Array(64).fill(7);
    const key = new Uint8Array(32).fill(1);
    const head = { federationId, round: 100_000, signature };
    const keys = encodeServerMessage({ ...head, type: 'server-keys', advertisements: names.map((sender) => ({ ...head, type: 'advertise-keys', sender, cPk: key, sPk: key, selfMaskCommitment: key })) });
    const unmask = encodeServerMessage({ ...head, type: 'unmask-request', recipient: names[0], survivors: names, signatures: names.map((signer) => ({ signer, signature })), selfMaskSharesOf: names.slice(1), keySharesOf: [] });
    // room for the signed PhaseEvent around the SecAgg payload
    expect(Math.max(keys.length, unmask.length)).toBeLessThan(GRPC_MAX_MESSAGE_BYTES - 64 * 1024);
  });

  const bad: Array<[string, (p: any) => void, RegExp]> = [
    ['unknown field', (p) => (p.extra = 1), /Unrecognized key/],
    ['numItems mismatch', (p) => (p.model.numItems = 99), /model\.numItems: must equal catalogue\.numItems \(100\)/],
    ['threshold above n', (p) => (p.secagg.threshold = 3), /secagg\.threshold: threshold 3 exceeds the number of parties \(2\)/],
    ['distributed noise with 2 parties', (p) => { p.privacy.noiseMode = 'distributed'; p.privacy.mechanism = 'round-noise'; }, /must be per-party/],
    [
      'distributed noise with n_min = parties',
      (p) => {
        p.parties.push({ ...p.parties[1], name: 'insurer2', publicKey: p.parties[0].publicKey.replace(/^./, (c: string) => (c === 'A' ? 'B' : 'A')) });
        Object.assign(p.privacy, { noiseMode: 'distributed', mechanism: 'round-noise', nMin: 3 });
      },
      /privacy\.nMin: distributed noise needs nMin <= parties - 1 = 2 \(each party can remove its own noise share/,
    ],
    ['duplicate party', (p) => (p.parties[1].name = 'platform'), /duplicate party name "platform"/],
    ['a party named like the coordinator', (p) => (p.parties[0].name = p.coordinator.name), /parties\.0\.name: "[^"]+" is the coordinator's name/],
    ['bad key', (p) => (p.parties[0].publicKey = 'abc'), /parties\.0\.publicKey: expected a base64 Ed25519 public key/],
    ['negative clip', (p) => (p.privacy.clipNorm = -1), /privacy\.clipNorm/],
    ['one party', (p) => p.parties.pop(), /parties/],
  ];
  test.each(bad)('rejects %s with a message naming the field', (_name, mutate, msg) => {
    const p: any = structuredClone(policy());
    mutate(p);
    let err: unknown;
    try {
      validatePolicy(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as Error).message).toMatch(msg);
  });

  test('duplicate YAML keys are refused', () => {
    expect(() => parsePolicyYaml('version: 1\nversion: 1\n')).toThrow(/YAML: .*[Mm]ap keys must be unique/);
  });
});
