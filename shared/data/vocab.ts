/**
 * The shared feature schema (DESIGN §5): every party encodes users and items with the same
 * vocabularies, fixed in the federation policy, so the feature towers f and g mean the same thing
 * on every node and a node can score the other parties' items for its own users.
 *
 * Users:  age_band, region, life_stage (one-hot each) + interests (multi-hot over topics).
 * Items:  domain, price_band (one-hot each) + topics (multi-hot over topics).
 */
import { z } from 'zod';

export const DOMAINS = ['course', 'insurance', 'finance'] as const;
export type Domain = (typeof DOMAINS)[number];

export const DEFAULT_VOCABULARIES = {
  topics: [
    'programming', 'data-science', 'design', 'business', 'marketing', 'languages', 'personal-finance',
    'investing', 'health', 'fitness', 'parenting', 'home', 'travel', 'automotive', 'retirement',
    'career', 'photography', 'music', 'pets', 'legal',
  ],
  domain: [...DOMAINS],
  priceBand: ['free', 'low', 'mid', 'high', 'premium'],
  ageBand: ['18-24', '25-34', '35-44', '45-54', '55-64', '65+'],
  region: ['north', 'south', 'east', 'west', 'central'],
  lifeStage: ['student', 'early-career', 'young-family', 'established', 'pre-retirement', 'retired'],
};

export const vocabulariesSchema = z
  .object({
    topics: z.array(z.string().min(1)).min(1),
    domain: z.array(z.enum(DOMAINS)).min(1),
    priceBand: z.array(z.string().min(1)).min(1),
    ageBand: z.array(z.string().min(1)).min(1),
    region: z.array(z.string().min(1)).min(1),
    lifeStage: z.array(z.string().min(1)).min(1),
  })
  .strict()
  .superRefine((v, ctx) => {
    for (const [key, list] of Object.entries(v)) {
      const seen = new Set<string>();
      for (const x of list as string[]) {
        if (seen.has(x)) ctx.addIssue({ code: 'custom', path: [key], message: `duplicate value "${x}"` });
        seen.add(x);
      }
    }
  });

export type Vocabularies = z.infer<typeof vocabulariesSchema>;

/** Width of the user feature vector x_u. */
export function userFeatureDim(v: Vocabularies): number {
  return v.ageBand.length + v.region.length + v.lifeStage.length + v.topics.length;
}

/** Width of the item feature vector x_i. */
export function itemFeatureDim(v: Vocabularies): number {
  return v.domain.length + v.priceBand.length + v.topics.length;
}

export interface UserFeatures {
  ageBand: string;
  region: string;
  lifeStage: string;
  interests: string[];
}

export interface ItemFeatures {
  domain: Domain;
  priceBand: string;
  topics: string[];
}

function indexOf(list: readonly string[], value: string, field: string): number {
  const i = list.indexOf(value);
  if (i < 0) throw new RangeError(`unknown ${field} "${value}" (expected one of: ${list.join(', ')})`);
  return i;
}

/** Writes the multi-hot user vector into `out` at `offset` (a Float32Array row). */
export function encodeUserFeatures(v: Vocabularies, f: UserFeatures, out: Float32Array, offset = 0): void {
  out.fill(0, offset, offset + userFeatureDim(v));
  let o = offset;
  out[o + indexOf(v.ageBand, f.ageBand, 'age_band')] = 1;
  o += v.ageBand.length;
  out[o + indexOf(v.region, f.region, 'region')] = 1;
  o += v.region.length;
  out[o + indexOf(v.lifeStage, f.lifeStage, 'life_stage')] = 1;
  o += v.lifeStage.length;
  for (const t of f.interests) out[o + indexOf(v.topics, t, 'interest')] = 1;
}

/** Writes the multi-hot item vector into `out` at `offset`. */
export function encodeItemFeatures(v: Vocabularies, f: ItemFeatures, out: Float32Array, offset = 0): void {
  out.fill(0, offset, offset + itemFeatureDim(v));
  let o = offset;
  out[o + indexOf(v.domain, f.domain, 'domain')] = 1;
  o += v.domain.length;
  out[o + indexOf(v.priceBand, f.priceBand, 'price_band')] = 1;
  o += v.priceBand.length;
  for (const t of f.topics) out[o + indexOf(v.topics, t, 'topic')] = 1;
}
