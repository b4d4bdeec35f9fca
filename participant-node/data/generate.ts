/**
 * Synthetic data for the federation (issue 2, "Data"): `fedbridge data generate`.
 *
 * One shared latent structure drives every party, so the parties' data are related but not
 * identical:
 *
 *  - The catalogue: each party offers its own items (the platform: courses; an insurer: insurance
 *    and finance products). Every item has 1-3 topic tags from the shared taxonomy
 *    (`DEFAULT_VOCABULARIES.topics`), drawn from a domain-specific topic mix, a price band, and a
 *    latent popularity (log-normal, skewed but not dominant). items.csv is the union of all
 *    parties' offers and is byte-identical in every party's folder.
 *  - A user's taste over the T topics is taste_u = A[age_band] + L[life_stage] + R[region] + noise,
 *    so it is partly predictable from features; the user's topic mixture is
 *    theta_u = softmax(beta * taste_u) and the declared interests are a noisy sample of theta_u.
 *  - An interaction is drawn from the mixture P(i | u) = sum_t theta_ut P(i | t) restricted to the
 *    party's own items, with P(i | t) proportional to popularity among the items tagged t, thinned
 *    by a price-band acceptance that depends on life stage (students take free courses, the
 *    established buy premium cover), plus a little popularity-only exploration. Sampling is exact
 *    via per-topic alias tables, O(1) per draw, so `large` stays linear in the output size.
 *  - The same taste -> topic mapping drives every domain: course behaviour on the platform teaches
 *    which topic tags go with which user features; users whose taste leans to topics that both
 *    domains share have cross-domain affinity.
 *  - Sizes: every party has the scale's users (20k at default); `--party-users` sets particular
 *    parties' users (e.g. data-poor insurers: `--party-users insurer=2000,insurer2=2000`). What
 *    federation can do depends on it (README, "What the demo measured"): a model that sees every
 *    party's data ranks the OTHER domain's offers far better at either size; on the insurer's own
 *    offers, at 20k insurer users neither federation nor pooling beats the insurer's local-only
 *    model (its users carry enough in-domain signal), and at 2k users the federated model
 *    fine-tuned on the insurer's data gains only about 0.01 HR@10 over an equally tuned local-only one.
 *  - Hidden ground truth (ground_truth.csv, never in interactions.csv): for every user, a handful
 *    of the OTHER parties' items drawn from the same model restricted to those parties' offers.
 *
 * The platform is dense (20-60 interactions per user), insurers are sparse (1-4). Users are distinct
 * people per party (ids prefixed by party). Each user's interactions have strictly increasing
 * integer timestamps (unix seconds), so leave-one-out evaluation can hold out the latest one.
 *
 * Deterministic: the project's xoshiro128** (shared/util/prng.ts) with one independent stream per
 * (seed, purpose, party), so the same seed and options give byte-identical files and adding
 * `insurer2` does not change the other parties' users or interactions. The latent world (A, L, R,
 * insurers' regional mixes) is fixed (WORLD_SEED); `--seed` re-draws catalogue, users and
 * interactions from it. Synthetic data only: this PRNG must never be used for anything secret
 * (masks, keys, DP noise use libsodium).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { DEFAULT_VOCABULARIES, type Domain } from '../../shared/data/vocab';
import { catalogueHash } from '../../shared/data/catalogue';
import { sodiumReady } from '../../shared/crypto/sodium';
import { writeFileAtomic } from '../../shared/util/atomic';
import { UserError } from '../../shared/cli/errors';
import { Xoshiro128 } from '../../shared/util/prng';

export const SYNTHETIC_FORMAT = 'fedbridge-synthetic/1';
export const GENERATOR_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// PRNG streams: the project's xoshiro128** (shared/util/prng.ts), one independent stream per
// (seed, label), the 128-bit state derived from both through splitmix32. Not cryptographic.
// ---------------------------------------------------------------------------------------------

function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function mix32(z: number): number {
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * A deterministic PRNG stream for synthetic data: `seed` (a non-negative safe integer, all 53 bits
 * used) and `label` (names the purpose, e.g. "users:platform") select an independent stream.
 */
export function streamRng(seed: number, label: string): Xoshiro128 {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`"seed" expected a non-negative safe integer, got ${seed}`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 2 ** 32) >>> 0;
  let sm = mix32(lo ^ mix32(hi ^ mix32(fnv1a32(label) ^ 0x5bd1e995)));
  const state = new Uint8Array(16);
  const view = new DataView(state.buffer);
  for (let k = 0; k < 4; k++) {
    sm = (sm + 0x9e3779b9) >>> 0;
    view.setUint32(4 * k, mix32(sm), true);
  }
  return new Xoshiro128(state);
}

/** Exponential with the given mean. */
function expDraw(rng: Xoshiro128, mean: number): number {
  return -Math.log(1 - rng.nextFloat()) * mean;
}

/** Walker/Vose alias table: O(1) draws from a fixed discrete distribution. */
export class AliasTable {
  private readonly prob: Float64Array;
  private readonly alias: Uint32Array;
  readonly size: number;

  constructor(weights: ArrayLike<number>) {
    const n = weights.length;
    if (n === 0) throw new RangeError('"weights" expected at least one entry');
    let sum = 0;
    for (let i = 0; i < n; i++) {
      if (!(weights[i] >= 0) || !Number.isFinite(weights[i])) throw new RangeError(`"weights[${i}]" expected a finite non-negative number`);
      sum += weights[i];
    }
    if (!(sum > 0)) throw new RangeError('"weights" must not all be zero');
    this.size = n;
    this.prob = new Float64Array(n);
    this.alias = new Uint32Array(n);
    const scaled = new Float64Array(n);
    const small: number[] = [];
    const large: number[] = [];
    for (let i = 0; i < n; i++) {
      scaled[i] = (weights[i] * n) / sum;
      (scaled[i] < 1 ? small : large).push(i);
    }
    while (small.length && large.length) {
      const s = small.pop()!;
      const l = large.pop()!;
      this.prob[s] = scaled[s];
      this.alias[s] = l;
      scaled[l] = scaled[l] + scaled[s] - 1;
      (scaled[l] < 1 ? small : large).push(l);
    }
    for (const i of large) this.prob[i] = 1;
    for (const i of small) this.prob[i] = 1;
  }

  sample(rng: Xoshiro128): number {
    const i = rng.nextInt(this.size);
    return rng.nextFloat() < this.prob[i] ? i : this.alias[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

export type Scale = 'small' | 'default' | 'large';
/** Sizes per scale (every party); the `partyUsers` option sets particular parties' users. */
export const SCALES: Record<Scale, { usersPerParty: number; itemsPerParty: number }> = {
  small: { usersPerParty: 300, itemsPerParty: 100 },
  default: { usersPerParty: 20_000, itemsPerParty: 2_000 },
  large: { usersPerParty: 200_000, itemsPerParty: 20_000 },
};

/** Interactions per user, inclusive ranges: the platform dense, insurers sparse. */
export const PLATFORM_INTERACTIONS: readonly [number, number] = [20, 60];
export const INSURER_INTERACTIONS: readonly [number, number] = [1, 4];
/** Hidden cross-domain ground truth items per user. */
export const GROUND_TRUTH_PER_USER = 5;

const PARTY_RE = /^(platform|insurer[0-9]{0,3})$/;

export type PartyKind = 'platform' | 'insurer';
export function partyKind(party: string): PartyKind {
  return party === 'platform' ? 'platform' : 'insurer';
}

/** Parses and validates `--parties` (comma-separated; platform, insurer, insurer2, ...). */
export function parseParties(list: string): string[] {
  const parties = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (parties.length === 0) throw new UserError('--parties expects a comma-separated list, e.g. platform,insurer');
  const seen = new Set<string>();
  for (const p of parties) {
    if (!PARTY_RE.test(p)) {
      throw new UserError(`--parties: unknown party "${p}" (expected platform, insurer or insurerN, e.g. insurer2)`);
    }
    if (seen.has(p)) throw new UserError(`--parties: party "${p}" listed twice`);
    seen.add(p);
  }
  return parties;
}

/**
 * Parses `--party-users` ("insurer=2000,insurer2=2000"): users per listed party, overriding the
 * scale's users per party for those parties only.
 */
export function parsePartyUsers(list: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of list.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    const m = /^([a-z0-9]+)=([0-9]+)$/.exec(part);
    if (!m) throw new UserError(`--party-users: expected PARTY=USERS (e.g. insurer=2000), got "${part}"`);
    if (m[1] in out) throw new UserError(`--party-users: party "${m[1]}" listed twice`);
    out[m[1]] = Number(m[2]);
  }
  if (Object.keys(out).length === 0) throw new UserError('--party-users expects PARTY=USERS pairs, e.g. insurer=2000,insurer2=2000');
  return out;
}

function checkPartyUsers(partyUsers: Record<string, number> | undefined, parties: string[]): Record<string, number> | undefined {
  if (partyUsers === undefined) return undefined;
  const out: Record<string, number> = {};
  for (const [party, n] of Object.entries(partyUsers)) {
    if (!parties.includes(party)) throw new UserError(`--party-users: "${party}" is not one of the generated parties (${parties.join(', ')})`);
    if (!Number.isSafeInteger(n) || n < 1 || n > 10_000_000) throw new UserError(`--party-users: ${party} needs between 1 and 10000000 users, got ${n}`);
    out[party] = n;
  }
  return out;
}

export function parseScale(s: string): Scale {
  if (s === 'small' || s === 'default' || s === 'large') return s;
  throw new UserError(`--scale must be small, default or large, got "${s}"`);
}

export interface GenerateOptions {
  out: string;
  seed: number;
  scale: Scale;
  parties: string[];
  /** overrides of the scale's sizes (tests) */
  usersPerParty?: number;
  itemsPerParty?: number;
  /**
   * users of particular parties (overrides usersPerParty for them). Users are drawn in sequence
   * from the party's own stream, so N users are exactly the first N of any larger run.
   */
  partyUsers?: Record<string, number>;
  /** analyses only (bench/ceiling.ts): sees the hidden latent variables; nothing it sees is written to a file */
  latent?: LatentObserver;
  onProgress?: (message: string) => void;
}

/** The catalogue's hidden variables, in catalogue (items.csv) order. */
export interface LatentCatalogue {
  /** item ids (items.csv item_id) */
  ids: string[];
  popularity: Float64Array;
  /** index into the price band vocabulary */
  priceBand: Uint8Array;
  /** topic indices of each item */
  topics: Uint8Array[];
  provider: string[];
}

/**
 * Receives the generator's hidden variables, for analyses of what any model could learn (the
 * Bayes ceiling): the catalogue once, then every user as it is generated.
 */
export interface LatentObserver {
  catalogue?(c: LatentCatalogue): void;
  user?(u: LatentUser): void;
}

/** One generated user's hidden variables; `index` is the user's row in the party's users.csv. */
export interface LatentUser {
  party: string;
  index: number;
  id: string;
  /** the topic mixture (a copy) */
  theta: Float64Array;
  /** index into the life stage vocabulary */
  lifeStage: number;
}

export interface PartyCounts {
  users: number;
  interactions: number;
  groundTruth: number;
  ownItems: number;
}

export interface SyntheticManifest {
  format: string;
  generatorVersion: number;
  seed: number;
  scale: Scale;
  parties: string[];
  sizes: { usersPerParty: number; itemsPerParty: number; partyUsers?: Record<string, number> };
  catalogue: { hash: string; numItems: number; perProvider: Record<string, number>; perDomain: Record<string, number> };
  counts: Record<string, PartyCounts>;
  files: Record<string, string[]>;
}

// ---------------------------------------------------------------------------------------------
// The world: fixed, hand-shaped priors + seeded random structure
// ---------------------------------------------------------------------------------------------

const V = DEFAULT_VOCABULARIES;
const TOPICS = V.topics;
const T = TOPICS.length;
const topicIdx = (t: string): number => {
  const i = TOPICS.indexOf(t);
  if (i < 0) throw new Error(`internal: unknown topic ${t}`);
  return i;
};

/** Topic mix per domain (unnormalised); topics not named get `rest`. */
const DOMAIN_TOPIC_WEIGHTS: Record<Domain, { rest: number; w: Record<string, number> }> = {
  course: {
    rest: 1,
    w: { legal: 0.4, automotive: 0.3, retirement: 0.4, pets: 0.5, home: 0.6, travel: 0.7, programming: 1.6, 'data-science': 1.4, business: 1.3 },
  },
  insurance: {
    rest: 0,
    w: { health: 3, fitness: 1, parenting: 2, home: 3, travel: 2, automotive: 3, retirement: 1.5, pets: 2, legal: 1.5, career: 0.5, business: 0.7 },
  },
  finance: {
    rest: 0,
    w: { 'personal-finance': 3, investing: 3, retirement: 2.5, home: 2, business: 1.5, career: 1, parenting: 1, travel: 0.5 },
  },
};

/** Price band mix per domain, over V.priceBand = free, low, mid, high, premium. */
const DOMAIN_PRICE: Record<Domain, number[]> = {
  course: [0.2, 0.35, 0.3, 0.12, 0.03],
  insurance: [0, 0.15, 0.4, 0.3, 0.15],
  finance: [0.1, 0.25, 0.3, 0.2, 0.15],
};

/** P(price band accepted | life stage), rows in V.lifeStage order, columns in V.priceBand order. */
const PRICE_ACCEPT: number[][] = [
  [1, 0.8, 0.4, 0.2, 0.1], // student
  [1, 0.9, 0.7, 0.4, 0.2], // early-career
  [0.9, 1, 0.9, 0.6, 0.3], // young-family
  [0.6, 0.8, 1, 1, 0.8], // established
  [0.6, 0.8, 1, 1, 0.9], // pre-retirement
  [0.8, 1, 0.9, 0.6, 0.4], // retired
];

/** Age band mix per party kind, over V.ageBand. */
const AGE_MIX: Record<string, number[]> = {
  platform: [0.28, 0.34, 0.18, 0.11, 0.06, 0.03],
  insurer: [0.05, 0.18, 0.24, 0.22, 0.17, 0.14],
};
/** Region mix: the platform is national, each insurer has a regional footprint (seeded). */
const PLATFORM_REGION = [0.2, 0.2, 0.2, 0.2, 0.2];

/** P(life stage | age band): rows V.ageBand, columns V.lifeStage. */
const LIFE_GIVEN_AGE: number[][] = [
  [0.6, 0.35, 0.05, 0, 0, 0],
  [0.08, 0.5, 0.35, 0.07, 0, 0],
  [0, 0.1, 0.5, 0.4, 0, 0],
  [0, 0, 0.15, 0.65, 0.2, 0],
  [0, 0, 0, 0.3, 0.6, 0.1],
  [0, 0, 0, 0, 0.15, 0.85],
];

/** Hand-shaped taste boosts per life stage (on top of the seeded random structure). */
const LIFE_BOOST: Record<string, Record<string, number>> = {
  student: { programming: 1, languages: 1, career: 1, music: 0.5 },
  'early-career': { career: 1.5, 'personal-finance': 1, 'data-science': 0.5 },
  'young-family': { parenting: 2, home: 1, health: 0.5 },
  established: { investing: 1, home: 1, business: 0.5 },
  'pre-retirement': { retirement: 1.5, investing: 1, health: 0.5 },
  retired: { retirement: 2, health: 1, travel: 1 },
};

/** Taste model constants. */
const AGE_SCALE = 1.0;
const LIFE_SCALE = 1.2;
const REGION_SCALE = 0.5;
const INDIVIDUAL_SCALE = 0.8;
const BETA = 2.0;
const EXPLORE = 0.05;
const INTEREST_NOISE = 0.15;
const POPULARITY_SIGMA = 0.6;

interface World {
  age: Float64Array[];
  life: Float64Array[];
  region: Float64Array[];
}

/**
 * The world (feature -> taste structure, insurers' regional footprints) is the same for every
 * `--seed`: a seed re-draws the catalogue, the users and their interactions from one fixed latent
 * structure, so results over several seeds measure sampling variation, not different worlds.
 */
export const WORLD_SEED = 0x5eed;

function buildWorld(): World {
  const rng = streamRng(WORLD_SEED, 'world');
  const vecs = (n: number, scale: number): Float64Array[] =>
    Array.from({ length: n }, () => {
      const v = new Float64Array(T);
      for (let t = 0; t < T; t++) v[t] = scale * rng.nextGaussian();
      return v;
    });
  const age = vecs(V.ageBand.length, AGE_SCALE);
  const life = vecs(V.lifeStage.length, LIFE_SCALE);
  const region = vecs(V.region.length, REGION_SCALE);
  V.lifeStage.forEach((ls, i) => {
    for (const [topic, b] of Object.entries(LIFE_BOOST[ls] ?? {})) life[i][topicIdx(topic)] += b;
  });
  return { age, life, region };
}

// ---------------------------------------------------------------------------------------------
// The catalogue
// ---------------------------------------------------------------------------------------------

export interface GeneratedItem {
  id: string;
  provider: string;
  domain: Domain;
  priceBand: string;
  topics: string[];
}

interface Catalogue {
  items: GeneratedItem[];
  /** parallel to items */
  topicIdx: Uint8Array[];
  price: Uint8Array;
  popularity: Float64Array;
  provider: string[];
}

function domainTopicTable(d: Domain): AliasTable {
  const spec = DOMAIN_TOPIC_WEIGHTS[d];
  return new AliasTable(TOPICS.map((t) => spec.w[t] ?? spec.rest));
}

function providerDomains(party: string): Array<[Domain, number]> {
  return partyKind(party) === 'platform' ? [['course', 1]] : [['insurance', 0.6], ['finance', 0.4]];
}

function buildCatalogue(seed: number, parties: string[], itemsPerParty: number): Catalogue {
  const items: GeneratedItem[] = [];
  const tIdx: Uint8Array[] = [];
  const price: number[] = [];
  const pop: number[] = [];
  const provider: string[] = [];
  const topicTables = new Map<Domain, AliasTable>();
  const priceTables = new Map<Domain, AliasTable>();
  for (const d of ['course', 'insurance', 'finance'] as Domain[]) {
    topicTables.set(d, domainTopicTable(d));
    priceTables.set(d, new AliasTable(DOMAIN_PRICE[d]));
  }
  for (const party of parties) {
    const rng = streamRng(seed, `catalogue:${party}`);
    const domains = providerDomains(party);
    let start = 0;
    domains.forEach(([domain, share], di) => {
      const n = di === domains.length - 1 ? itemsPerParty - start : Math.round(itemsPerParty * share);
      start += n;
      const letter = domain[0];
      for (let k = 0; k < n; k++) {
        const nt = 1 + (rng.nextFloat() < 0.55 ? 1 : 0) + (rng.nextFloat() < 0.2 ? 1 : 0);
        const chosen = new Set<number>();
        let guard = 0;
        while (chosen.size < nt && guard++ < 100) chosen.add(topicTables.get(domain)!.sample(rng));
        const ts = [...chosen].sort((a, b) => a - b);
        const pb = priceTables.get(domain)!.sample(rng);
        items.push({
          id: `${party}-${letter}${String(k + 1).padStart(6, '0')}`,
          provider: party,
          domain,
          priceBand: V.priceBand[pb],
          topics: ts.map((t) => TOPICS[t]),
        });
        tIdx.push(Uint8Array.from(ts));
        price.push(pb);
        pop.push(Math.exp(POPULARITY_SIGMA * rng.nextGaussian()));
        provider.push(party);
      }
    });
  }
  return { items, topicIdx: tIdx, price: Uint8Array.from(price), popularity: Float64Array.from(pop), provider };
}

/** Per-topic alias tables over a subset of the catalogue (a party's offers, or the others'). */
interface ItemSampler {
  /** catalogue indices of the subset */
  members: Uint32Array;
  /** per topic: alias over the subset members tagged with it (undefined = none) */
  byTopic: Array<{ table: AliasTable; members: Uint32Array } | undefined>;
  /** popularity-only draw over the subset */
  global: AliasTable;
}

function buildSampler(cat: Catalogue, member: (i: number) => boolean): ItemSampler | undefined {
  const members: number[] = [];
  const perTopic: number[][] = Array.from({ length: T }, () => []);
  for (let i = 0; i < cat.items.length; i++) {
    if (!member(i)) continue;
    members.push(i);
    for (const t of cat.topicIdx[i]) perTopic[t].push(i);
  }
  if (members.length === 0) return undefined;
  return {
    members: Uint32Array.from(members),
    byTopic: perTopic.map((list) =>
      list.length === 0 ? undefined : { table: new AliasTable(list.map((i) => cat.popularity[i])), members: Uint32Array.from(list) },
    ),
    global: new AliasTable(members.map((i) => cat.popularity[i])),
  };
}

// ---------------------------------------------------------------------------------------------
// CSV output, streamed in chunks (never one giant string)
// ---------------------------------------------------------------------------------------------

class CsvSink {
  private readonly tmp: string;
  private fd: number;
  private rows: string[][] = [];
  count = 0;

  constructor(readonly file: string, header: string[]) {
    this.tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
    this.fd = fs.openSync(this.tmp, 'w', 0o644);
    this.rows.push(header);
  }

  row(r: string[]): void {
    this.rows.push(r);
    this.count++;
    if (this.rows.length >= 8192) this.flush();
  }

  private flush(): void {
    if (this.rows.length === 0) return;
    fs.writeSync(this.fd, stringify(this.rows));
    this.rows = [];
  }

  close(): void {
    this.flush();
    fs.closeSync(this.fd);
    this.fd = -1;
    fs.renameSync(this.tmp, this.file);
  }

  abort(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    fs.rmSync(this.tmp, { force: true });
  }
}

export const USERS_HEADER = ['user_id', 'age_band', 'region', 'life_stage', 'interests'];
export const ITEMS_HEADER = ['item_id', 'provider', 'domain', 'price_band', 'topics'];
export const INTERACTIONS_HEADER = ['user_id', 'item_id', 'timestamp'];
export const GROUND_TRUTH_HEADER = ['user_id', 'item_id'];

/** 2023-01-01T00:00:00Z */
const T0 = 1_672_531_200;
const DAY = 86_400;

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

function sampleCum(cum: Float64Array, rng: Xoshiro128): number {
  const x = rng.nextFloat() * cum[cum.length - 1];
  for (let t = 0; t < cum.length; t++) if (x < cum[t]) return t;
  return cum.length - 1;
}

/** Topic mixture theta restricted to topics the sampler has items for, as a cumulative array. */
function restrictedCum(theta: Float64Array, s: ItemSampler): Float64Array {
  const cum = new Float64Array(T);
  let acc = 0;
  for (let t = 0; t < T; t++) {
    if (s.byTopic[t]) acc += theta[t];
    cum[t] = acc;
  }
  return cum;
}

function drawItem(s: ItemSampler, cum: Float64Array, cat: Catalogue, life: number, rng: Xoshiro128): number {
  for (let attempt = 0; ; attempt++) {
    let item: number;
    if (rng.nextFloat() < EXPLORE) item = s.members[s.global.sample(rng)];
    else {
      const bucket = s.byTopic[sampleCum(cum, rng)]!;
      item = bucket.members[bucket.table.sample(rng)];
    }
    if (attempt >= 30 || rng.nextFloat() < PRICE_ACCEPT[life][cat.price[item]]) return item;
  }
}

/** Draws up to `n` distinct items (fewer only if the subset is tiny). */
function drawDistinct(n: number, s: ItemSampler, cum: Float64Array, cat: Catalogue, life: number, rng: Xoshiro128): number[] {
  const chosen = new Set<number>();
  const order: number[] = [];
  const target = Math.min(n, s.members.length);
  for (let guard = 0; order.length < target && guard < target * 50; guard++) {
    const i = drawItem(s, cum, cat, life, rng);
    if (!chosen.has(i)) {
      chosen.add(i);
      order.push(i);
    }
  }
  return order;
}

function regionMix(party: string): number[] {
  if (partyKind(party) === 'platform') return PLATFORM_REGION;
  // each insurer has its own regional footprint: a fixed skew per party name (from the world seed)
  const rng = streamRng(WORLD_SEED, `regions:${party}`);
  return V.region.map(() => 0.5 + rng.nextFloat() * 1.5);
}

/**
 * Creates `out/<party>` for each party. An earlier generation in `out` (its manifest.json) is
 * replaced whole: the folders of its parties that this one does not write are removed, since they
 * hold another catalogue and would be imported by mistake. Nothing the manifest does not list is
 * touched.
 */
function ensureOutDir(out: string, parties: string[]): void {
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory()) throw new UserError(`--out ${out} exists and is not a directory`);
  let earlier: unknown = null;
  try {
    earlier = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  } catch {
    /* no earlier generation (or not one of ours) */
  }
  const old = (earlier as { parties?: unknown } | null)?.parties;
  if (Array.isArray(old)) {
    for (const p of old) {
      if (typeof p === 'string' && /^[a-z][a-z0-9]*$/.test(p) && !parties.includes(p)) fs.rmSync(path.join(out, p), { recursive: true, force: true });
    }
  }
  for (const p of parties) fs.mkdirSync(path.join(out, p), { recursive: true });
}

/** Sums over `party`'s offers that the interaction model's probabilities need (see takeUpWeights). */
interface OfferSums {
  accept: number[];
  /** Z[t]: popularity of the party's offers tagged t */
  Z: Float64Array;
  /** At[t]: acceptance-weighted popularity of the offers tagged t, over Z[t] */
  At: Float64Array;
  popSum: number;
  /** sum of popularity x acceptance over the party's offers */
  popAcc: number;
}

function offerSums(cat: LatentCatalogue, party: string, lifeStage: number): OfferSums {
  const accept = PRICE_ACCEPT[lifeStage];
  const Z = new Float64Array(T);
  const At = new Float64Array(T);
  let popSum = 0;
  let popAcc = 0;
  for (let i = 0; i < cat.popularity.length; i++) {
    if (cat.provider[i] !== party) continue;
    const pa = cat.popularity[i] * accept[cat.priceBand[i]];
    popSum += cat.popularity[i];
    popAcc += pa;
    for (const t of cat.topics[i]) {
      Z[t] += cat.popularity[i];
      At[t] += pa;
    }
  }
  for (let t = 0; t < T; t++) if (Z[t] > 0) At[t] /= Z[t];
  return { accept, Z, At, popSum, popAcc };
}

/** theta restricted to the topics the party offers, renormalised (the generator's restrictedCum). */
function restrictTheta(s: OfferSums, theta: ArrayLike<number>): Float64Array {
  let sum = 0;
  for (let t = 0; t < T; t++) if (s.Z[t] > 0) sum += theta[t];
  const r = new Float64Array(T);
  for (let t = 0; t < T; t++) if (s.Z[t] > 0) r[t] = theta[t] / sum;
  return r;
}

/** (explore * pop_i / popSum + (1 - explore) * sum_{t in topics(i)} mix_t pop_i / Z_t) * accept_i for one offer. */
function offerWeight(cat: LatentCatalogue, s: OfferSums, i: number, mix: Float64Array, explore: number): number {
  let topical = 0;
  for (const t of cat.topics[i]) topical += mix[t] / s.Z[t];
  return (explore / s.popSum + (1 - EXPLORE) * topical) * cat.popularity[i] * s.accept[cat.priceBand[i]];
}

function offerWeights(cat: LatentCatalogue, party: string, s: OfferSums, mix: Float64Array, explore: number): Float64Array {
  const w = new Float64Array(cat.popularity.length);
  if (s.popSum === 0) return w;
  for (let i = 0; i < w.length; i++) if (cat.provider[i] === party) w[i] = offerWeight(cat, s, i, mix, explore);
  return w;
}

/**
 * The generator's own take-up weights of `party`'s offers for a user with topic mixture `theta` and
 * life stage `lifeStage`: proportional to the probability that one draw of the interaction model
 * (drawItem) picks item i and accepts it, i.e.
 *   ( EXPLORE * pop_i / sum_own pop + (1 - EXPLORE) * sum_{t in topics(i)} theta'_t pop_i / Z_t ) * accept(life, price_i)
 * with theta' the mixture restricted to topics the party offers (renormalised) and Z_t the popularity
 * of the party's offers tagged t. Ranking a user's unseen offers by it is the Bayes-optimal ranking
 * of the next take-up (up to drawItem's 30-attempt cap). Items of other providers get 0.
 */
export function takeUpWeights(cat: LatentCatalogue, party: string, theta: ArrayLike<number>, lifeStage: number): Float64Array {
  const s = offerSums(cat, party, lifeStage);
  return offerWeights(cat, party, s, restrictTheta(s, theta), EXPLORE);
}

/**
 * The best prediction of a user's next take-up of `party`'s offers that a model could make with
 * UNLIMITED population data: from the user's features, declared interests and own earlier take-ups,
 * but not the user's hidden taste. `prior` holds hidden topic mixtures of OTHER users with the same
 * age band, life stage and region (samples of the taste prior given those features); each is
 * weighted by the likelihood of the user's interests (approximated as independent draws with the
 * generator's interest noise) and of the user's `history` (catalogue indices, under the interaction
 * model: one draw's weight over the sum of all offers' weights, norm(theta)). The posterior
 * predictive is sum_v w_v weight_i(theta_v) / norm(theta_v); weight_i is linear in theta', so it is
 * offerWeights with the mixture sum_v w_v theta'_v / norm_v and the explore term scaled by
 * sum_v w_v / norm_v. Proportional to the probability of each offer being the next draw (other
 * providers' items 0). A feasible predictor, so its HR@10 is a lower bound on the unlimited-data ceiling.
 */
export function posteriorTakeUpWeights(
  cat: LatentCatalogue,
  party: string,
  prior: readonly Float64Array[],
  lifeStage: number,
  interests: readonly number[],
  history: readonly number[],
): Float64Array {
  const s = offerSums(cat, party, lifeStage);
  if (s.popSum === 0 || prior.length === 0) return new Float64Array(cat.popularity.length);
  const logW = new Float64Array(prior.length);
  const norms = new Float64Array(prior.length);
  let maxW = -Infinity;
  const restricted = prior.map((theta, v) => {
    const r = restrictTheta(s, theta);
    let norm = (EXPLORE * s.popAcc) / s.popSum;
    for (let t = 0; t < T; t++) norm += (1 - EXPLORE) * r[t] * s.At[t];
    norms[v] = norm;
    let lw = 0;
    for (const t of interests) lw += Math.log((1 - INTEREST_NOISE) * theta[t] + INTEREST_NOISE / T);
    for (const j of history) lw += Math.log(offerWeight(cat, s, j, r, EXPLORE) / norm);
    logW[v] = lw;
    if (lw > maxW) maxW = lw;
    return r;
  });
  const mix = new Float64Array(T);
  let c = 0;
  restricted.forEach((r, v) => {
    const w = Math.exp(logW[v] - maxW) / norms[v];
    c += w;
    for (let t = 0; t < T; t++) mix[t] += w * r[t];
  });
  return offerWeights(cat, party, s, mix, EXPLORE * c);
}

/**
 * Generates the synthetic federation data set into `opts.out` and returns the manifest (also
 * written to `out/manifest.json`). Deterministic for (seed, scale, parties, sizes).
 */
export async function generateSynthetic(opts: GenerateOptions): Promise<SyntheticManifest> {
  const { seed, scale } = opts;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new UserError(`--seed must be a non-negative integer, got ${seed}`);
  const parties = parseParties(opts.parties.join(','));
  const sizes = { ...SCALES[parseScale(scale)] };
  if (opts.usersPerParty !== undefined) sizes.usersPerParty = opts.usersPerParty;
  if (opts.itemsPerParty !== undefined) sizes.itemsPerParty = opts.itemsPerParty;
  if (!(sizes.usersPerParty >= 1 && sizes.itemsPerParty >= 2)) throw new UserError('need at least 1 user and 2 items per party');
  const partyUsers = checkPartyUsers(opts.partyUsers, parties);
  const usersOf = (party: string) => partyUsers?.[party] ?? sizes.usersPerParty;
  const progress = opts.onProgress ?? (() => undefined);

  await sodiumReady();
  const world = buildWorld();
  const cat = buildCatalogue(seed, parties, sizes.itemsPerParty);
  const hash = catalogueHash(cat.items);
  ensureOutDir(opts.out, parties);
  opts.latent?.catalogue?.({ ids: cat.items.map((it) => it.id), popularity: Float64Array.from(cat.popularity), priceBand: Uint8Array.from(cat.price), topics: cat.topicIdx.map((t) => Uint8Array.from(t)), provider: [...cat.provider] });

  // items.csv: one string (the catalogue is small), identical bytes in every party folder
  const itemsCsv = stringify([ITEMS_HEADER, ...cat.items.map((it) => [it.id, it.provider, it.domain, it.priceBand, it.topics.join('|')])]);
  const counts: Record<string, PartyCounts> = {};
  const files: Record<string, string[]> = {};
  const perProvider: Record<string, number> = {};
  const perDomain: Record<string, number> = {};
  for (const it of cat.items) {
    perProvider[it.provider] = (perProvider[it.provider] ?? 0) + 1;
    perDomain[it.domain] = (perDomain[it.domain] ?? 0) + 1;
  }

  for (const party of parties) {
    const dir = path.join(opts.out, party);
    writeFileAtomic(path.join(dir, 'items.csv'), itemsCsv);
    const own = buildSampler(cat, (i) => cat.provider[i] === party)!;
    const others = buildSampler(cat, (i) => cat.provider[i] !== party);
    const kind = partyKind(party);
    const [minN, maxN] = kind === 'platform' ? PLATFORM_INTERACTIONS : INSURER_INTERACTIONS;
    const meanGapDays = kind === 'platform' ? 4 : 150;
    const ageTable = new AliasTable(AGE_MIX[kind]);
    const lifeTables = LIFE_GIVEN_AGE.map((row) => new AliasTable(row));
    const regionTable = new AliasTable(regionMix(party));
    const rng = streamRng(seed, `users:${party}`);
    // ground truth has its own stream, so adding a party (more "other" items) changes no user/interaction
    const gtRng = streamRng(seed, `ground-truth:${party}`);

    const sinks = {
      users: new CsvSink(path.join(dir, 'users.csv'), USERS_HEADER),
      interactions: new CsvSink(path.join(dir, 'interactions.csv'), INTERACTIONS_HEADER),
      groundTruth: new CsvSink(path.join(dir, 'ground_truth.csv'), GROUND_TRUTH_HEADER),
    };
    try {
      const taste = new Float64Array(T);
      const theta = new Float64Array(T);
      const nUsers = usersOf(party);
      for (let u = 0; u < nUsers; u++) {
        const userId = `${party}-u${String(u + 1).padStart(7, '0')}`;
        const age = ageTable.sample(rng);
        const life = lifeTables[age].sample(rng);
        const region = regionTable.sample(rng);
        let max = -Infinity;
        for (let t = 0; t < T; t++) {
          taste[t] = world.age[age][t] + world.life[life][t] + world.region[region][t] + INDIVIDUAL_SCALE * rng.nextGaussian();
          if (BETA * taste[t] > max) max = BETA * taste[t];
        }
        let z = 0;
        for (let t = 0; t < T; t++) z += theta[t] = Math.exp(BETA * taste[t] - max);
        for (let t = 0; t < T; t++) theta[t] /= z;

        // declared interests: 1-4 topics drawn from theta without replacement, some replaced by noise
        const nInterests = 1 + rng.nextInt(4);
        const interestSet = new Set<number>();
        const thetaCum = new Float64Array(T);
        for (let guard = 0; interestSet.size < nInterests && guard < 200; guard++) {
          let acc = 0;
          for (let t = 0; t < T; t++) thetaCum[t] = acc += interestSet.has(t) ? 0 : theta[t];
          interestSet.add(rng.nextFloat() < INTEREST_NOISE ? rng.nextInt(T) : sampleCum(thetaCum, rng));
        }
        opts.latent?.user?.({ party, index: u, id: userId, theta: Float64Array.from(theta), lifeStage: life });
        const interests = [...interestSet].sort((a, b) => a - b).map((t) => TOPICS[t]);
        sinks.users.row([userId, V.ageBand[age], V.region[region], V.lifeStage[life], interests.join('|')]);

        // own-domain interactions, strictly increasing timestamps
        const n = minN + rng.nextInt(maxN - minN + 1);
        const seq = drawDistinct(n, own, restrictedCum(theta, own), cat, life, rng);
        let ts = T0 + rng.nextInt(365 * DAY);
        for (const i of seq) {
          sinks.interactions.row([userId, cat.items[i].id, String(ts)]);
          ts += 1 + Math.floor(expDraw(rng, meanGapDays * DAY));
        }
        // hidden cross-domain ground truth: the other parties' offers this user would take up
        if (others) {
          const gt = drawDistinct(GROUND_TRUTH_PER_USER, others, restrictedCum(theta, others), cat, life, gtRng);
          for (const i of gt) sinks.groundTruth.row([userId, cat.items[i].id]);
        }
        if ((u + 1) % 50_000 === 0) progress(`${party}: ${u + 1}/${nUsers} users`);
      }
      for (const s of Object.values(sinks)) s.close();
    } catch (e) {
      for (const s of Object.values(sinks)) s.abort();
      throw e;
    }
    counts[party] = {
      users: sinks.users.count,
      interactions: sinks.interactions.count,
      groundTruth: sinks.groundTruth.count,
      ownItems: own.members.length,
    };
    files[party] = ['users.csv', 'items.csv', 'interactions.csv', 'ground_truth.csv'].map((f) => path.join(party, f));
    progress(`${party}: ${counts[party].users} users, ${counts[party].interactions} interactions, ${counts[party].groundTruth} ground-truth pairs`);
  }

  const manifest: SyntheticManifest = {
    format: SYNTHETIC_FORMAT,
    generatorVersion: GENERATOR_VERSION,
    seed,
    scale,
    parties,
    sizes: partyUsers ? { ...sizes, partyUsers } : sizes,
    catalogue: { hash, numItems: cat.items.length, perProvider, perDomain },
    counts,
    files,
  };
  writeFileAtomic(path.join(opts.out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}
