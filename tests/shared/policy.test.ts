import { defaultPolicy } from '../../shared/policy/defaults';
import { parsePolicyYaml, policyHash, PolicyError, validatePolicy, type Policy } from '../../shared/policy/schema';
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
