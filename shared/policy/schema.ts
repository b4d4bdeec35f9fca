/**
 * The federation policy (DESIGN §3): one YAML document, agreed and signed by every party, fixing
 * everything a round may do. Both sides validate it with this schema; its hash (BLAKE2b-256 over
 * the RFC 8785 canonical JSON of the *parsed* policy) is bound into every signed message and audit
 * entry, so YAML formatting or key order do not change it but any value does.
 *
 * Signing the policy is added with the federation (coordinator issue); here: schema, parse, hash.
 */
import { canonicalize } from 'json-canonicalize';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { vocabulariesSchema } from '../data/vocab';
import { modelConfigSchema } from '../model/layout';
import { sodium } from '../crypto/sodium';
import { formatZodIssues } from '../util/zod-issues';
import { roundNoiseCapacityOf } from '../fl/round-params';

const base64Key32 = z
  .string()
  .regex(/^[A-Za-z0-9+/]{43}=$/, 'expected a base64 Ed25519 public key (32 bytes, 44 characters)');
const name = z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, 'expected a lowercase name (letters, digits, - or _)');
const hex32 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex characters (a 32-byte hash)');

export const serverOptimizerSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('fedavg'), learningRate: z.number().positive().max(100).default(1) }).strict(),
  z
    .object({
      type: z.literal('fedadam'),
      learningRate: z.number().positive().max(100),
      beta1: z.number().min(0).max(1).default(0.9),
      beta2: z.number().min(0).max(1).default(0.99),
      tau: z.number().positive().default(1e-3),
    })
    .strict(),
]);

export const trainingSchema = z
  .object({
    rounds: z.number().int().min(1).max(100_000),
    localSteps: z.number().int().min(1).max(1_000_000),
    batchSize: z.number().int().min(1).max(1_000_000),
    learningRate: z.number().positive().max(100),
    negativesPerPositive: z.number().int().min(1).max(100),
    serverOptimizer: serverOptimizerSchema,
    /**
     * What a party's training may touch. `own`: only the towers and the rows of the party's own
     * offers (items.csv provider = the party's name): examples outside its offers are dropped,
     * negatives come from its offers, and DP noise is added on exactly those coordinates (the update
     * is identically zero elsewhere, for every dataset). The coordinator then averages each item's
     * rows over the parties that can touch them (its provider), the towers over every survivor.
     * `catalogue`: every party trains and noises every item row; plain uniform FedAvg.
     */
    offerScope: z.enum(['own', 'catalogue']).default('catalogue'),
  })
  .strict();

export const secaggSchema = z
  .object({
    /** Shamir threshold t: shares needed to reconstruct a seed. */
    threshold: z.number().int().min(2),
    /** SecAgg+ neighbour-graph degree k; 0 means the full graph. */
    neighbourDegree: z.number().int().min(0),
    /** modulus 2^bitWidth */
    bitWidth: z.number().int().min(8).max(32).default(32),
    /** gamma: quantization scale (integers per unit) */
    scale: z.number().positive(),
    /**
     * L2 bound applied to a party's whole update before encoding (real domain). With local-dpsgd the
     * update is already DP and this clip is public post-processing that bounds the integer range;
     * with round-noise each per-user contribution is clipped to privacy.clipNorm instead.
     */
    updateClip: z.number().positive().default(100),
    rotation: z.enum(['none', 'hadamard']).default('hadamard'),
    /** the largest accepted probability that the true sum wraps around the modulus */
    maxWrapProbability: z.number().positive().max(1e-3).default(2 ** -40),
  })
  .strict();

export const privacySchema = z
  .object({
    unit: z.literal('user'),
    mechanism: z.enum(['local-dpsgd', 'round-noise']),
    clipNorm: z.number().positive(),
    noiseMultiplier: z.number().positive(),
    samplingRate: z.number().positive().max(1),
    stepsPerRound: z.number().int().min(1),
    delta: z.number().positive().max(0.1),
    /** lifetime epsilon budget of each party, unless the party entry overrides it */
    epsilonBudget: z.number().positive(),
    noiseMode: z.enum(['per-party', 'distributed']),
    nMin: z.number().int().min(1),
    maxInteractionsPerUser: z.number().int().min(1),
    /**
     * A public upper bound on any party's number of users (optional). With round-noise it makes the
     * encoding's deterministic no-wrap bound cover every round: a party sums one contribution per
     * sampled user, at most its user count, so a policy whose encoding carries this many per party
     * (checked when the policy is validated, `roundNoiseCapacityOf`) never wraps. A party with more
     * users refuses to join (and any round) rather than encode past the bound. Without it the bound
     * covers the policy's capacity only (README, Known gaps).
     */
    maxUsersPerParty: z.number().int().min(1).optional(),
  })
  .strict();

export const timeoutsSchema = z
  .object({
    phaseSeconds: z.number().positive().max(86_400),
    roundSeconds: z.number().positive().max(7 * 86_400),
  })
  .strict();

/**
 * The most parties one policy may name. Each round's key advertisement list (and the unmask
 * request) carries one entry per party: measured 194 bytes per party with 9-character names; with
 * the longest (63-character) party and federation names 10,000 parties make a 3.05 MB key list
 * (2.64 MB unmask request), inside the coordinator's 4 MiB gRPC message limit
 * (coordinator/grpc/options.ts) with room for the signed event around it (tests/shared/policy.test.ts).
 * A larger federation would fail in its first round when the coordinator cannot send that list.
 */
export const MAX_PARTIES = 10_000;

export const policySchema = z
  .object({
    version: z.literal(1),
    federationId: name,
    coordinator: z.object({ name, publicKey: base64Key32 }).strict(),
    parties: z
      .array(z.object({ name, publicKey: base64Key32, epsilonBudget: z.number().positive().optional() }).strict())
      .min(2),
    catalogue: z
      .object({
        hash: hex32,
        numItems: z.number().int().min(1),
        /**
         * Which party offers which items (public: items.csv's provider column of the hashed
         * catalogue), as half-open index ranges [start, end) in catalogue order. Needed by
         * training.offerScope `own`: each party trains and noises only its own offers' rows, and the
         * coordinator averages each item's rows over its provider alone.
         */
        offers: z.record(z.string(), z.array(z.tuple([z.number().int().min(0), z.number().int().min(1)])).min(1)).optional(),
      })
      .strict(),
    vocabularies: vocabulariesSchema,
    model: modelConfigSchema,
    training: trainingSchema,
    secagg: secaggSchema,
    privacy: privacySchema,
    timeouts: timeoutsSchema,
    /**
     * What the coordinator may release for auditing beyond the log. `auditorArtifacts: true`:
     * holders of an auditor token may download the run's model versions and each completed round's
     * unmasked aggregate (GET /audit/v1/models/{version}, GET /audit/v1/runs/{runId}/rounds/{round}/aggregate),
     * so that `fedbridge audit verify --replay` can recompute every model of the run from its
     * initial model and check it against the logged hashes (shared/audit/replay.ts). Both are
     * derived from the parties' (DP-noised) updates, so the parties decide by signing. Absent or
     * false: a run's models go only to its parties, aggregates to no one, and the model chain stays
     * the coordinator's claim.
     *
     * `auditorServerView: true` (needs auditorArtifacts): auditors may also download each completed
     * round's server view (GET /audit/v1/runs/{runId}/rounds/{round}/server-view: the survivors'
     * masked inputs, their reconstructed self-mask seeds and the dropped parties' mask keys,
     * shared/secagg/unmask.ts), so that `audit verify --replay` recomputes the aggregate itself from
     * the inputs the parties signed. That is exactly what the coordinator sees in every round: an
     * auditor learns the sum and, like an honest-but-curious server, nothing more about one party's
     * input unless it colludes with other parties. The coordinator then keeps one vector per party
     * in memory during a round, and stores the view with the round.
     */
    audit: z.object({ auditorArtifacts: z.boolean(), auditorServerView: z.boolean().optional() }).strict().optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    const n = p.parties.length;
    // the coordinator's name is a signer name too (policy signatures are matched by name)
    const names = new Set<string>();
    const keys = new Set<string>([p.coordinator.publicKey]);
    p.parties.forEach((party, i) => {
      if (party.name === p.coordinator.name) ctx.addIssue({ code: 'custom', path: ['parties', i, 'name'], message: `"${party.name}" is the coordinator's name; a party needs another name (signatures are matched by signer name)` });
      else if (names.has(party.name)) ctx.addIssue({ code: 'custom', path: ['parties', i, 'name'], message: `duplicate party name "${party.name}"` });
      if (keys.has(party.publicKey)) ctx.addIssue({ code: 'custom', path: ['parties', i, 'publicKey'], message: 'public key used twice (each party and the coordinator need their own key)' });
      names.add(party.name);
      keys.add(party.publicKey);
    });
    if (p.model.numItems !== p.catalogue.numItems) {
      ctx.addIssue({ code: 'custom', path: ['model', 'numItems'], message: `must equal catalogue.numItems (${p.catalogue.numItems}), got ${p.model.numItems}` });
    }
    const offers = p.catalogue.offers;
    if (offers) {
      const spans: Array<[number, number, string]> = [];
      for (const [party, ranges] of Object.entries(offers)) {
        if (!names.has(party)) ctx.addIssue({ code: 'custom', path: ['catalogue', 'offers', party], message: `"${party}" is not one of the policy's parties` });
        ranges.forEach(([a, b], k) => {
          if (!(a < b) || b > p.catalogue.numItems) ctx.addIssue({ code: 'custom', path: ['catalogue', 'offers', party, k], message: `range [${a}, ${b}) must satisfy start < end <= numItems (${p.catalogue.numItems})` });
          spans.push([a, b, party]);
        });
      }
      spans.sort((x, y) => x[0] - y[0]);
      for (let k = 1; k < spans.length; k++) {
        if (spans[k][0] < spans[k - 1][1]) ctx.addIssue({ code: 'custom', path: ['catalogue', 'offers', spans[k][2]], message: `range [${spans[k][0]}, ${spans[k][1]}) overlaps [${spans[k - 1][0]}, ${spans[k - 1][1]}) of "${spans[k - 1][2]}"` });
      }
    }
    if (p.audit?.auditorServerView && !p.audit.auditorArtifacts) {
      ctx.addIssue({ code: 'custom', path: ['audit', 'auditorServerView'], message: 'needs audit.auditorArtifacts: true (the server view is checked against the round\'s aggregate and model)' });
    }
    if (p.training.offerScope === 'own') {
      for (const party of p.parties) {
        if (!offers?.[party.name]) ctx.addIssue({ code: 'custom', path: ['catalogue', 'offers'], message: `training.offerScope "own" needs the offers of every party; "${party.name}" has none` });
      }
    }
    if (n > MAX_PARTIES) {
      ctx.addIssue({ code: 'custom', path: ['parties'], message: `at most ${MAX_PARTIES} parties (a round's key list carries every party's keys and must fit one gRPC message), got ${n}` });
    }
    if (p.secagg.threshold > n) {
      ctx.addIssue({ code: 'custom', path: ['secagg', 'threshold'], message: `threshold ${p.secagg.threshold} exceeds the number of parties (${n})` });
    }
    if (p.secagg.neighbourDegree !== 0 && (p.secagg.neighbourDegree >= n || p.secagg.neighbourDegree < p.secagg.threshold)) {
      ctx.addIssue({ code: 'custom', path: ['secagg', 'neighbourDegree'], message: `must be 0 (full graph) or in [threshold=${p.secagg.threshold}, parties-1=${n - 1}], got ${p.secagg.neighbourDegree}` });
    }
    if (p.privacy.nMin > n) {
      ctx.addIssue({ code: 'custom', path: ['privacy', 'nMin'], message: `nMin ${p.privacy.nMin} exceeds the number of parties (${n})` });
    }
    if (p.privacy.noiseMode === 'distributed') {
      if (p.privacy.mechanism !== 'round-noise') {
        ctx.addIssue({ code: 'custom', path: ['privacy', 'noiseMode'], message: 'distributed noise requires mechanism round-noise' });
      }
      // shared/fl/noise-floor.ts: a party can remove its own noise share, so the other n_min shares
      // must come from at least n_min other parties
      if (n === 2) {
        ctx.addIssue({ code: 'custom', path: ['privacy', 'noiseMode'], message: 'with 2 parties each can subtract its own input from the sum: noiseMode must be per-party' });
      } else if (p.privacy.nMin > n - 1) {
        ctx.addIssue({ code: 'custom', path: ['privacy', 'nMin'], message: `distributed noise needs nMin <= parties - 1 = ${n - 1} (each party can remove its own noise share from the sum, so the other parties' shares alone must number n_min), got ${p.privacy.nMin}` });
      }
      if (p.privacy.nMin < 2) {
        ctx.addIssue({ code: 'custom', path: ['privacy', 'nMin'], message: 'distributed noise needs nMin >= 2' });
      }
    }
  });

export type Policy = z.infer<typeof policySchema>;
export type PolicyInput = z.input<typeof policySchema>;

export class PolicyError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid policy: ${issues.join('; ')}`);
    this.name = 'PolicyError';
  }
}

export { formatZodIssues };

/** Validates a policy object; throws PolicyError listing every problem with its path. */
export function validatePolicy(obj: unknown): Policy {
  const r = policySchema.safeParse(obj);
  if (!r.success) throw new PolicyError(formatZodIssues(r.error));
  const cap = r.data.privacy.maxUsersPerParty;
  if (cap !== undefined && r.data.privacy.mechanism === 'round-noise') {
    const carried = roundNoiseCapacityOf(r.data);
    if (carried < cap) {
      throw new PolicyError([
        `privacy.maxUsersPerParty: ${cap} users per party is more than the encoding carries without wrap-around (${carried} contributions per party with secagg.bitWidth ${r.data.secagg.bitWidth}, secagg.scale ${r.data.secagg.scale}, privacy.clipNorm ${r.data.privacy.clipNorm}, noise and ${r.data.parties.length} parties): lower it, or raise secagg.bitWidth or lower secagg.scale`,
      ]);
    }
  }
  return r.data;
}

/** Parses and validates policy YAML. */
export function parsePolicyYaml(text: string): Policy {
  let obj: unknown;
  try {
    obj = parseYaml(text, { strict: true, uniqueKeys: true });
  } catch (e) {
    throw new PolicyError([`YAML: ${(e as Error).message.split('\n')[0]}`]);
  }
  return validatePolicy(obj);
}

/** RFC 8785 canonical JSON of a validated policy (defaults filled in). */
export function canonicalPolicyJson(policy: Policy): string {
  return canonicalize(policy);
}

/** BLAKE2b-256 of the canonical policy, hex. Requires `await sodiumReady()`. */
export function policyHash(policy: Policy): string {
  return sodium().crypto_generichash(32, new TextEncoder().encode(canonicalPolicyJson(policy)), null, 'hex');
}
