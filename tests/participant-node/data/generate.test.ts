import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  AliasTable,
  GROUND_TRUTH_PER_USER,
  INSURER_INTERACTIONS,
  PLATFORM_INTERACTIONS,
  streamRng,
  generateSynthetic,
  parseParties,
  parsePartyUsers,
  parseScale,
  type SyntheticManifest,
} from '../../../participant-node/data/generate';
import { catalogueHash } from '../../../shared/data/catalogue';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { DEFAULT_VOCABULARIES as V } from '../../../shared/data/vocab';
import { UserError } from '../../../shared/cli/errors';
import { readCsv, tempDir } from './helpers';

const FILES = ['users.csv', 'items.csv', 'interactions.csv', 'ground_truth.csv'];
let root: string;

beforeAll(async () => {
  await sodiumReady();
  root = tempDir('gen');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function gen(name: string, seed: number, parties = ['platform', 'insurer'], extra: { usersPerParty?: number; itemsPerParty?: number; partyUsers?: Record<string, number> } = {}) {
  const out = path.join(root, name);
  const manifest = await generateSynthetic({ out, seed, scale: 'small', parties, ...extra });
  return { out, manifest };
}

describe('streamRng / AliasTable', () => {
  it('is deterministic per (seed, label) and independent across labels', () => {
    const draw = (seed: number, label: string) => {
      const r = streamRng(seed, label);
      return Array.from({ length: 8 }, () => r.nextU32());
    };
    expect(draw(42, 'a')).toEqual(draw(42, 'a'));
    expect(draw(42, 'a')).not.toEqual(draw(42, 'b'));
    expect(draw(42, 'a')).not.toEqual(draw(43, 'a'));
    // seeds differing only above 2^32 give different streams
    expect(draw(1, 'a')).not.toEqual(draw(1 + 2 ** 32, 'a'));
  });

  it('streams are uniform: nextFloat() in [0,1) with mean ~1/2; nextGaussian() mean ~0, variance ~1', () => {
    const r = streamRng(7, 'stats');
    let s = 0;
    let m = 0;
    let v = 0;
    const n = 50_000;
    let outside = 0;
    for (let i = 0; i < n; i++) {
      const x = r.nextFloat();
      if (!(x >= 0 && x < 1)) outside++;
      s += x;
      const z = r.nextGaussian();
      m += z;
      v += z * z;
    }
    expect(outside).toBe(0);
    expect(Math.abs(s / n - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(m / n)).toBeLessThan(0.02);
    expect(Math.abs(v / n - 1)).toBeLessThan(0.03);
  });

  it('rejects bad seeds', () => {
    expect(() => streamRng(-1, 'x')).toThrow(RangeError);
    expect(() => streamRng(1.5, 'x')).toThrow(/seed/);
    expect(() => streamRng(2 ** 60, 'x')).toThrow(RangeError);
  });

  it('AliasTable samples its distribution (and never a zero-weight entry)', () => {
    const w = [1, 0, 3, 6];
    const t = new AliasTable(w);
    const r = streamRng(3, 'alias');
    const c = [0, 0, 0, 0];
    const n = 100_000;
    for (let i = 0; i < n; i++) c[t.sample(r)]++;
    expect(c[1]).toBe(0);
    expect(Math.abs(c[0] / n - 0.1)).toBeLessThan(0.01);
    expect(Math.abs(c[2] / n - 0.3)).toBeLessThan(0.01);
    expect(Math.abs(c[3] / n - 0.6)).toBeLessThan(0.01);
    expect(() => new AliasTable([])).toThrow(RangeError);
    expect(() => new AliasTable([0, 0])).toThrow(RangeError);
    expect(() => new AliasTable([1, -1])).toThrow(RangeError);
  });
});

describe('option parsing', () => {
  it('validates --parties and --scale', () => {
    expect(parseParties('platform,insurer')).toEqual(['platform', 'insurer']);
    expect(parseParties(' platform , insurer , insurer2 ')).toEqual(['platform', 'insurer', 'insurer2']);
    expect(() => parseParties('platform,bank')).toThrow(UserError);
    expect(() => parseParties('platform,bank')).toThrow(/unknown party "bank"/);
    expect(() => parseParties('platform,platform')).toThrow(/twice/);
    expect(() => parseParties('')).toThrow(UserError);
    expect(parseScale('large')).toBe('large');
    expect(() => parseScale('huge')).toThrow(/--scale/);
  });

  it('validates --party-users', () => {
    expect(parsePartyUsers('insurer=2000, insurer2=15')).toEqual({ insurer: 2000, insurer2: 15 });
    expect(() => parsePartyUsers('insurer:2000')).toThrow(/expected PARTY=USERS .* got "insurer:2000"/);
    expect(() => parsePartyUsers('insurer=-3')).toThrow(UserError);
    expect(() => parsePartyUsers('insurer=1,insurer=2')).toThrow(/"insurer" listed twice/);
    expect(() => parsePartyUsers(' , ')).toThrow(/expects PARTY=USERS/);
  });
});

describe('generateSynthetic: users per party', () => {
  it('partyUsers sets the listed parties\' users; N users are exactly the first N of a larger run', async () => {
    const big = await gen('pu-big', 9, ['platform', 'insurer'], { usersPerParty: 40, itemsPerParty: 20 });
    const few = await gen('pu-few', 9, ['platform', 'insurer'], { usersPerParty: 40, itemsPerParty: 20, partyUsers: { insurer: 7 } });
    expect(few.manifest.counts.insurer.users).toBe(7);
    expect(few.manifest.counts.platform.users).toBe(40);
    expect(few.manifest.sizes.partyUsers).toEqual({ insurer: 7 });
    expect(big.manifest.sizes.partyUsers).toBeUndefined();
    // the platform is untouched, the insurer's files are a prefix (users, their interactions, their ground truth)
    for (const f of FILES) expect(fs.readFileSync(path.join(few.out, 'platform', f)).equals(fs.readFileSync(path.join(big.out, 'platform', f)))).toBe(true);
    const users = readCsv(path.join(few.out, 'insurer', 'users.csv'));
    expect(users).toEqual(readCsv(path.join(big.out, 'insurer', 'users.csv')).slice(0, 7));
    const ids = new Set(users.map((u) => u.user_id));
    for (const f of ['interactions.csv', 'ground_truth.csv']) {
      const rows = readCsv(path.join(few.out, 'insurer', f));
      expect(rows.length).toBeGreaterThan(0);
      expect(rows).toEqual(readCsv(path.join(big.out, 'insurer', f)).filter((r) => ids.has(r.user_id)));
    }
  });

  it('refuses partyUsers for a party not generated or with a bad count, before writing anything', async () => {
    const out = path.join(root, 'pu-bad');
    await expect(generateSynthetic({ out, seed: 1, scale: 'small', parties: ['platform', 'insurer'], partyUsers: { insurer2: 5 } })).rejects.toThrow(
      /--party-users: "insurer2" is not one of the generated parties \(platform, insurer\)/,
    );
    await expect(generateSynthetic({ out, seed: 1, scale: 'small', parties: ['platform', 'insurer'], partyUsers: { insurer: 0 } })).rejects.toThrow(/insurer needs between 1 and 10000000 users, got 0/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('generateSynthetic (small scale)', () => {
  let a: { out: string; manifest: SyntheticManifest };
  beforeAll(async () => {
    a = await gen('a', 11);
  });

  it('replaces an earlier generation in --out whole: the folders of parties it no longer writes are removed, nothing else', async () => {
    const { out } = await gen('regen', 3, ['platform', 'insurer', 'insurer2']);
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const { manifest } = await gen('regen', 4, ['platform', 'insurer']);
    expect(fs.readdirSync(out).sort()).toEqual(['insurer', 'manifest.json', 'notes.txt', 'platform']);
    expect(manifest.parties).toEqual(['platform', 'insurer']);
  });

  it('is byte-identical for the same seed and differs for another seed', async () => {
    const b = await gen('b', 11);
    const c = await gen('c', 12);
    for (const party of ['platform', 'insurer']) {
      for (const f of FILES) {
        expect(fs.readFileSync(path.join(b.out, party, f)).equals(fs.readFileSync(path.join(a.out, party, f)))).toBe(true);
      }
      expect(fs.readFileSync(path.join(c.out, party, 'interactions.csv')).equals(fs.readFileSync(path.join(a.out, party, 'interactions.csv')))).toBe(false);
    }
    expect(fs.readFileSync(path.join(b.out, 'manifest.json'), 'utf8')).toBe(fs.readFileSync(path.join(a.out, 'manifest.json'), 'utf8'));
    expect(c.manifest.catalogue.hash).not.toBe(a.manifest.catalogue.hash);
  });

  it('writes one catalogue, byte-identical for every party, whose hash is in the manifest', async () => {
    const three = await gen('three', 5, ['platform', 'insurer', 'insurer2']);
    const ref = fs.readFileSync(path.join(three.out, 'platform', 'items.csv'));
    for (const p of ['insurer', 'insurer2']) expect(fs.readFileSync(path.join(three.out, p, 'items.csv')).equals(ref)).toBe(true);
    const items = readCsv(path.join(three.out, 'platform', 'items.csv')).map((r) => ({
      id: r.item_id,
      provider: r.provider,
      domain: r.domain,
      priceBand: r.price_band,
      topics: r.topics.split('|'),
    }));
    expect(items).toHaveLength(300);
    expect(three.manifest.catalogue.numItems).toBe(300);
    expect(catalogueHash(items)).toBe(three.manifest.catalogue.hash);
    // platform offers courses, insurers insurance + finance
    for (const it of items) {
      if (it.provider === 'platform') expect(it.domain).toBe('course');
      else expect(['insurance', 'finance']).toContain(it.domain);
      expect(V.priceBand).toContain(it.priceBand);
      expect(it.topics.length).toBeGreaterThanOrEqual(1);
      for (const t of it.topics) expect(V.topics).toContain(t);
    }
    expect(new Set(items.map((i) => i.id)).size).toBe(items.length);
  });

  it('adding insurer2 leaves the other parties\' users and interactions unchanged (independent streams)', async () => {
    const three = await gen('three-b', 11, ['platform', 'insurer', 'insurer2']);
    for (const p of ['platform', 'insurer']) {
      for (const f of ['users.csv', 'interactions.csv']) {
        expect(fs.readFileSync(path.join(three.out, p, f)).equals(fs.readFileSync(path.join(a.out, p, f)))).toBe(true);
      }
    }
  });

  it('users: distinct per party, prefixed by party, values from the vocabularies', () => {
    for (const party of ['platform', 'insurer']) {
      const users = readCsv(path.join(a.out, party, 'users.csv'));
      expect(users).toHaveLength(300);
      expect(new Set(users.map((u) => u.user_id)).size).toBe(300);
      for (const u of users) {
        expect(u.user_id.startsWith(`${party}-u`)).toBe(true);
        expect(V.ageBand).toContain(u.age_band);
        expect(V.region).toContain(u.region);
        expect(V.lifeStage).toContain(u.life_stage);
        const interests = u.interests.split('|');
        expect(interests.length).toBeGreaterThanOrEqual(1);
        expect(interests.length).toBeLessThanOrEqual(4);
        for (const t of interests) expect(V.topics).toContain(t);
      }
    }
  });

  it('the platform is dense and the insurer sparse; each interaction is with the party\'s own items', () => {
    const stats: Record<string, number> = {};
    for (const [party, [lo, hi]] of [['platform', PLATFORM_INTERACTIONS], ['insurer', INSURER_INTERACTIONS]] as const) {
      const rows = readCsv(path.join(a.out, party, 'interactions.csv'));
      const per = new Map<string, number>();
      for (const r of rows) per.set(r.user_id, (per.get(r.user_id) ?? 0) + 1);
      expect(rows.filter((r) => !r.item_id.startsWith(`${party}-`))).toEqual([]);
      expect(per.size).toBe(300);
      expect(Math.min(...per.values())).toBeGreaterThanOrEqual(lo);
      expect(Math.max(...per.values())).toBeLessThanOrEqual(hi);
      stats[party] = rows.length / per.size;
      expect(a.manifest.counts[party].interactions).toBe(rows.length);
    }
    expect(stats.platform).toBeGreaterThan(30);
    expect(stats.platform).toBeLessThan(50);
    expect(stats.insurer).toBeGreaterThan(1.8);
    expect(stats.insurer).toBeLessThan(3.2);
  });

  it('timestamps are integers, strictly increasing per user; no repeated (user, item)', () => {
    for (const party of ['platform', 'insurer']) {
      const rows = readCsv(path.join(a.out, party, 'interactions.csv'));
      const last = new Map<string, number>();
      const pairs = new Set<string>();
      const bad: string[] = [];
      for (const r of rows) {
        if (!/^[0-9]+$/.test(r.timestamp)) bad.push(`non-integer ${r.timestamp}`);
        const ts = Number(r.timestamp);
        const prev = last.get(r.user_id);
        if (prev !== undefined && !(ts > prev)) bad.push(`${r.user_id}: ${ts} after ${prev}`);
        last.set(r.user_id, ts);
        const key = `${r.user_id} ${r.item_id}`;
        if (pairs.has(key)) bad.push(`repeat ${key}`);
        pairs.add(key);
      }
      expect(bad).toEqual([]);
      expect(rows.length).toBeGreaterThan(300);
    }
  });

  it('ground truth: other parties\' items of other domains, never in the user\'s interactions', async () => {
    const three = await gen('three-gt', 9, ['platform', 'insurer', 'insurer2']);
    for (const g of [a, three]) {
      const items = new Map(readCsv(path.join(g.out, 'platform', 'items.csv')).map((r) => [r.item_id, r]));
      for (const party of g.manifest.parties) {
        const seen = new Set(readCsv(path.join(g.out, party, 'interactions.csv')).map((r) => `${r.user_id} ${r.item_id}`));
        const gt = readCsv(path.join(g.out, party, 'ground_truth.csv'));
        const per = new Map<string, number>();
        const bad: string[] = [];
        for (const r of gt) {
          const it = items.get(r.item_id);
          if (!it) bad.push(`unknown item ${r.item_id}`);
          else {
            if (it.provider === party) bad.push(`own item ${r.item_id}`);
            if (party === 'platform' && it.domain === 'course') bad.push(`course ${r.item_id} for a platform user`);
            if (g === a && party === 'insurer' && it.domain !== 'course') bad.push(`${it.domain} ${r.item_id} for an insurer user`);
          }
          if (seen.has(`${r.user_id} ${r.item_id}`)) bad.push(`${r.user_id} ${r.item_id} is also an interaction`);
          if (!r.user_id.startsWith(`${party}-u`)) bad.push(`foreign user ${r.user_id}`);
          per.set(r.user_id, (per.get(r.user_id) ?? 0) + 1);
        }
        expect(bad).toEqual([]);
        expect(per.size).toBe(300);
        for (const n of per.values()) expect(n).toBe(GROUND_TRUTH_PER_USER);
        expect(g.manifest.counts[party].groundTruth).toBe(gt.length);
      }
    }
  });
});

/**
 * Learnability: leave-one-out HR@10 (held-out latest interaction among 50 sampled unseen own-domain
 * negatives). A scorer that estimates each user's topic mixture from training data and features
 * must clearly beat global popularity on BOTH parties' own domains; if the generator lost its taste
 * signal (or popularity dominated), this fails.
 */
describe('generated data is learnable beyond popularity', () => {
  it('a topic-profile scorer beats popularity on each party\'s own domain', async () => {
    const g = await gen('learn', 3, ['platform', 'insurer'], { usersPerParty: 1500, itemsPerParty: 400 });
    const items = readCsv(path.join(g.out, 'platform', 'items.csv'));
    const itemIdx = new Map(items.map((r, i) => [r.item_id, i]));
    const topics = items.map((r) => r.topics.split('|'));
    const hr: Record<string, { pop: number; taste: number }> = {};
    for (const party of ['platform', 'insurer']) {
      const own = items.map((r, i) => (r.provider === party ? i : -1)).filter((i) => i >= 0);
      const users = new Map(readCsv(path.join(g.out, party, 'users.csv')).map((u) => [u.user_id, u]));
      const byUser = new Map<string, Array<[number, number]>>();
      for (const r of readCsv(path.join(g.out, party, 'interactions.csv'))) {
        if (!byUser.has(r.user_id)) byUser.set(r.user_id, []);
        byUser.get(r.user_id)!.push([itemIdx.get(r.item_id)!, Number(r.timestamp)]);
      }
      const pop = new Float64Array(items.length);
      const test: Array<[string, number, number[]]> = [];
      for (const [u, list] of byUser) {
        list.sort((x, y) => x[1] - y[1]);
        const held = list.pop()![0];
        for (const [i] of list) pop[i]++;
        test.push([u, held, list.map((x) => x[0])]);
      }
      // feature -> topic distribution (life stage), learned from training interactions
      const lifeTopic = new Map<string, Map<string, number>>();
      for (const [u, , train] of test) {
        const ls = users.get(u)!.life_stage;
        if (!lifeTopic.has(ls)) lifeTopic.set(ls, new Map());
        const m = lifeTopic.get(ls)!;
        for (const i of train) for (const t of topics[i]) m.set(t, (m.get(t) ?? 0) + 1);
      }
      const topicMass = new Map<string, number>();
      for (const i of own) for (const t of topics[i]) topicMass.set(t, (topicMass.get(t) ?? 0) + pop[i] + 1);
      const rng = streamRng(1, 'eval');
      let hitPop = 0;
      let hitTaste = 0;
      for (const [u, held, train] of test) {
        const seen = new Set([...train, held]);
        const cands = [held];
        while (cands.length < 51) {
          const j = own[rng.nextInt(own.length)];
          if (!seen.has(j)) {
            seen.add(j);
            cands.push(j);
          }
        }
        const theta = new Map<string, number>();
        const lt = lifeTopic.get(users.get(u)!.life_stage) ?? new Map<string, number>();
        const ltSum = [...lt.values()].reduce((x, y) => x + y, 0) || 1;
        for (const [t, c] of lt) theta.set(t, (0.5 * c) / ltSum);
        const interests = users.get(u)!.interests.split('|');
        for (const t of interests) theta.set(t, (theta.get(t) ?? 0) + 0.3 / interests.length);
        for (const i of train) for (const t of topics[i]) theta.set(t, (theta.get(t) ?? 0) + 2 / (train.length * topics[i].length));
        const rankOf = (score: (i: number) => number): number => {
          const s0 = score(held);
          let rank = 0;
          for (let k = 1; k < cands.length; k++) if (score(cands[k]) >= s0) rank++;
          return rank;
        };
        if (rankOf((i) => pop[i]) < 10) hitPop++;
        if (rankOf((i) => (pop[i] + 1) * topics[i].reduce((x, t) => x + (theta.get(t) ?? 0) / (topicMass.get(t) ?? 1), 0)) < 10) hitTaste++;
      }
      hr[party] = { pop: hitPop / test.length, taste: hitTaste / test.length };
    }
    // measured here (seed 3): platform pop 0.40, taste 0.66; insurer pop 0.50, taste 0.64
    expect(hr.platform.taste - hr.platform.pop).toBeGreaterThan(0.1);
    expect(hr.insurer.taste - hr.insurer.pop).toBeGreaterThan(0.07);
    // popularity is informative but not useless (skewed, not uniform): above random 10/51
    expect(hr.platform.pop).toBeGreaterThan(0.25);
    expect(hr.insurer.pop).toBeGreaterThan(0.25);
  });
});
