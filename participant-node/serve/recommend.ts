/**
 * Top-K recommendation from the node's latest model, for known users (their private embedding and
 * features) and cold-start users (features alone: e_u = 0). Items the known user already
 * interacted with are not recommended again. Cross-domain works by construction: the item tower and
 * item embeddings cover the whole shared catalogue, so a platform user is scored against insurance
 * and finance offers too (`domain` filters the result).
 *
 * Scoring reads tensors: synchronously where the backend allows, asynchronously on webgpu in Node
 * (model/reads.ts), so opening and recommending return promises.
 */
import { DOMAINS, encodeUserFeatures, userFeatureDim, type Domain, type UserFeatures, type Vocabularies } from '../../shared/data/vocab';
import { UserError } from '../../shared/cli/errors';
import type { NodeDataset } from '../data/dataset';
import type { TwoTowerModel } from '../model/twotower';

export interface Recommendation {
  itemId: string;
  domain: string;
  score: number;
}

export interface RecommendRequest {
  userId?: string;
  features?: UserFeatures;
  k: number;
  domain?: Domain;
}

export class Recommender {
  private readonly userRow = new Map<string, number>();
  private readonly seen = new Map<number, Set<number>>();

  /** A recommender over `model` (item vectors g(x_i) + e_i computed once here). */
  static async open(model: TwoTowerModel, ds: NodeDataset, vocab: Vocabularies): Promise<Recommender> {
    return new Recommender(model, ds, vocab, await model.itemVectors());
  }

  private constructor(
    private readonly model: TwoTowerModel,
    private readonly ds: NodeDataset,
    private readonly vocab: Vocabularies,
    private readonly itemVecs: Float32Array,
  ) {
    ds.users.forEach((u, k) => this.userRow.set(u.id, k));
    const { user, item } = ds.interactions;
    for (let j = 0; j < user.length; j++) {
      let s = this.seen.get(user[j]);
      if (!s) this.seen.set(user[j], (s = new Set()));
      s.add(item[j]);
    }
  }

  hasUser(id: string): boolean {
    return this.userRow.has(id);
  }

  async recommend(req: RecommendRequest): Promise<{ userId?: string; coldStart: boolean; items: Recommendation[] }> {
    if (!Number.isInteger(req.k) || req.k < 1 || req.k > 1000) throw new UserError(`k must be an integer in [1, 1000], got ${req.k}`);
    if (req.domain !== undefined && !DOMAINS.includes(req.domain)) throw new UserError(`domain must be one of ${DOMAINS.join('|')}, got "${req.domain}"`);
    let userVec: Float32Array;
    let exclude: Set<number> | undefined;
    let coldStart = false;
    const row = req.userId !== undefined ? this.userRow.get(req.userId) : undefined;
    if (row !== undefined) {
      userVec = await this.model.userVectors(Uint32Array.of(row));
      exclude = this.seen.get(row);
    } else if (req.features) {
      const x = new Float32Array(userFeatureDim(this.vocab));
      try {
        encodeUserFeatures(this.vocab, req.features, x);
      } catch (e) {
        throw new UserError(`cold-start features: ${(e as Error).message}`);
      }
      userVec = await this.model.userVectors({ features: x });
      coldStart = true;
    } else if (req.userId !== undefined) {
      throw new UserError(`unknown user "${req.userId}": give the user's features (age_band, region, life_stage, interests) for a cold-start recommendation`);
    } else {
      throw new UserError('give a user id or cold-start features');
    }
    const scores = await this.model.scoreAll(userVec, this.itemVecs);
    const cand: number[] = [];
    for (let i = 0; i < this.ds.items.length; i++) {
      if (exclude?.has(i)) continue;
      if (req.domain && this.ds.items[i].domain !== req.domain) continue;
      cand.push(i);
    }
    cand.sort((a, b) => scores[b] - scores[a] || a - b);
    const items = cand.slice(0, req.k).map((i) => ({
      itemId: this.ds.items[i].id,
      domain: this.ds.items[i].domain,
      score: 1 / (1 + Math.exp(-scores[i])),
    }));
    return { userId: req.userId, coldStart, items };
  }
}

/** Parses `age_band=25-34,region=north,life_stage=student,interests=programming|design`. */
export function parseFeatureSpec(spec: string): UserFeatures {
  const kv = new Map<string, string>();
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UserError(`--features: expected key=value pairs separated by commas, got "${part}"`);
    const key = part.slice(0, eq).trim();
    if (kv.has(key)) throw new UserError(`--features gives ${key} twice ("${kv.get(key)}" and "${part.slice(eq + 1).trim()}"); give each key once (several interests: interests=a|b)`);
    kv.set(key, part.slice(eq + 1).trim());
  }
  const need = ['age_band', 'region', 'life_stage'];
  const missing = need.filter((k) => !kv.has(k));
  if (missing.length) throw new UserError(`--features is missing ${missing.join(', ')} (interests is optional)`);
  const unknown = [...kv.keys()].filter((k) => ![...need, 'interests'].includes(k));
  if (unknown.length) throw new UserError(`--features has unknown key(s) ${unknown.join(', ')}`);
  const interests = kv.get('interests');
  return {
    ageBand: kv.get('age_band')!,
    region: kv.get('region')!,
    lifeStage: kv.get('life_stage')!,
    interests: interests ? interests.split('|').filter(Boolean) : [],
  };
}
