/**
 * The audit entry types (DESIGN §4 step 6, issue 6). Every entry is a JSON object with `type`,
 * `idx` (its position in the chain) and `at` (coordinator time, ms since the epoch), stored as RFC
 * 8785 canonical JSON and chained/signed by chain.ts. Schemas are strict: an unknown field is a
 * failure, so nothing can ride along unverified.
 *
 * Per run:   policy-registered (once per policy: every party's signature over its hash)
 *            run-started, then rounds, then run-completed | run-aborted
 * Per round: round-started   parties selected, every accountant parameter (RoundParams)
 *            round-phase     one per phase that closed, in protocol order
 *                            (advertise: each party's signed key advertisement = its commitment;
 *                             share; mask: each party's signed masked-input digest — the moment its
 *                             budget is charged; consistency: the survivor list and each survivor's
 *                             signature over it; unmask)
 *            round-completed aggregate hash, new model version and hash, survivors, epsilon of each
 *                            charged party after the round, Merkle root of the round's entries
 *            round-aborted   reason, epsilon of each charged party (an aborted round still counts),
 *                            Merkle root
 *            receipt         a party's countersignature over a chain head (receipt.ts)
 * Other:     participant-enrolled, participant-removed, token-issued, token-revoked (operator
 *            actions, chained like everything else: a name is enrolled again only after its removal,
 *            a party is never removed during a run, a token is revoked at most once, after its issue).
 * Every run and round entry carries the policy hash. Free text (reasons, token labels) is at most
 * MAX_LOGGED_TEXT (256) characters without control characters (freeTextIssues; the verifier checks it
 * apart from the schema, so a stored log of an older coordinator still replays).
 */
import { z } from 'zod';
import { freeTextProblem, MAX_LOGGED_TEXT } from '../util/text';

export const PHASES = ['advertise', 'share', 'mask', 'consistency', 'unmask'] as const;
export type Phase = (typeof PHASES)[number];

const hex32 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex characters');
const b64 = (n: number) => z.string().regex(n === 32 ? /^[A-Za-z0-9+/]{43}=$/ : /^[A-Za-z0-9+/]{86}==$/, `expected standard base64 of ${n} bytes`);
const name = z.string().min(1).max(128);
/** A run id as entries carry it (and as the audit API accepts it in a path: GET /audit/v1/runs/{runId}/...). */
export const runIdSchema = z.string().min(1).max(128);
const runId = runIdSchema;
const int = z.number().int().min(0);
const round = z.number().int().min(1);
const finite = z.number().refine(Number.isFinite, 'must be finite');

const common = { idx: int, at: int };

/** Every parameter the accountant (and the encoder) needs for one round; compared field by field with the policy. */
export const roundParamsSchema = z
  .object({
    mechanism: z.enum(['local-dpsgd', 'round-noise']),
    /** L2 clip norm C of one user's contribution */
    clipNorm: finite,
    /** sigma: noise std / C */
    noiseMultiplier: finite,
    /** q: Poisson sampling rate of users */
    samplingRate: finite,
    /** compositions per round (DP-SGD steps; 1 for round-noise) */
    steps: int,
    delta: finite,
    noiseMode: z.enum(['per-party', 'distributed']),
    nMin: int,
    /** gamma: quantization scale */
    gamma: finite,
    /** b: the modulus is 2^b */
    bits: int,
    /** number of shared model coordinates (before padding) */
    dimension: int,
    rotation: z.enum(['none', 'hadamard']),
    /** Shamir threshold t */
    threshold: int,
  })
  .strict();
export type RoundParams = z.infer<typeof roundParamsSchema>;

export const advertisementSchema = z
  .object({ party: name, cPk: b64(32), sPk: b64(32), selfMaskCommitment: hex32, signature: b64(64) })
  .strict();
export const maskedInputSchema = z.object({ party: name, bits: int, length: int, digest: hex32, signature: b64(64) }).strict();
export const survivorSignatureSchema = z.object({ party: name, signature: b64(64) }).strict();

export const receiptBodySchema = z
  .object({
    format: z.literal('fedbridge-audit-receipt/1'),
    federationId: name,
    policyHash: hex32,
    runId,
    round,
    party: name,
    /** index of the entry whose chain hash is `head` */
    headIdx: int,
    head: hex32,
    /** hash of the model version the party received and checked */
    modelHash: hex32,
    signature: b64(64),
  })
  .strict();
export type Receipt = z.infer<typeof receiptBodySchema>;

const merkle = z.object({ from: int, count: int, root: hex32 }).strict();
const epsilonMap = z.record(name, finite);

export const entrySchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('participant-enrolled'), ...common, name, publicKey: b64(32), certSha256: z.string().nullable() }).strict(),
  z.object({ type: z.literal('participant-removed'), ...common, name, publicKey: b64(32), reason: z.string().max(200) }).strict(),
  z.object({ type: z.literal('token-issued'), ...common, tokenId: z.string().min(1), role: z.string().min(1), label: z.string(), expiresAt: int.optional() }).strict(),
  z.object({ type: z.literal('token-revoked'), ...common, tokenId: z.string().min(1), reason: z.string().max(200) }).strict(),
  z
    .object({
      type: z.literal('policy-registered'),
      ...common,
      policyHash: hex32,
      signatures: z.array(z.object({ party: name, publicKey: b64(32), signature: b64(64) }).strict()),
    })
    .strict(),
  z
    .object({ type: z.literal('run-started'), ...common, runId, policyHash: hex32, roundsPlanned: int, initialModelVersion: int, initialModelHash: hex32 })
    .strict(),
  z
    .object({
      type: z.literal('round-started'),
      ...common,
      runId,
      round,
      policyHash: hex32,
      /** the round number bound into the secure-aggregation messages' signatures */
      secaggRound: int,
      baseModelVersion: int,
      parties: z.array(name),
      params: roundParamsSchema,
    })
    .strict(),
  z
    .object({
      type: z.literal('round-phase'),
      ...common,
      runId,
      round,
      policyHash: hex32,
      phase: z.enum(PHASES),
      /** parties whose message for this phase was accepted */
      parties: z.array(name),
      advertisements: z.array(advertisementSchema).optional(),
      maskedInputs: z.array(maskedInputSchema).optional(),
      survivors: z.array(name).optional(),
      survivorSignatures: z.array(survivorSignatureSchema).optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('round-completed'),
      ...common,
      runId,
      round,
      policyHash: hex32,
      survivors: z.array(name),
      aggregateHash: hex32,
      // BLAKE2b-256 of the coordinator's view of the round (shared/audit/server-view.ts), when it
      // kept one (policy audit.auditorServerView); absent in logs written before it was logged
      serverViewHash: hex32.optional(),
      modelVersion: int,
      parentModelVersion: int,
      modelHash: hex32,
      params: roundParamsSchema,
      epsilon: epsilonMap,
      merkle,
    })
    .strict(),
  z
    .object({
      type: z.literal('round-aborted'),
      ...common,
      runId,
      round,
      policyHash: hex32,
      phase: z.enum(PHASES).nullable(),
      reason: z.string().min(1),
      baseModelVersion: int,
      epsilon: epsilonMap,
      merkle,
    })
    .strict(),
  z.object({ type: z.literal('receipt'), ...common, receipt: receiptBodySchema }).strict(),
  z.object({ type: z.literal('run-completed'), ...common, runId, policyHash: hex32, finalModelVersion: int }).strict(),
  z.object({ type: z.literal('run-aborted'), ...common, runId, policyHash: hex32, reason: z.string().min(1) }).strict(),
]);

export type AuditEntry = z.infer<typeof entrySchema>;
export type AuditEntryType = AuditEntry['type'];
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** What a writer supplies: everything but idx and at, which the writer fills in. */
export type AuditEntryInput = DistributiveOmit<AuditEntry, 'idx' | 'at'>;
export type EntryOf<T extends AuditEntryType> = Extract<AuditEntry, { type: T }>;

/** Validates an entry object; returns the problems as (field path, message). */
export function checkEntry(obj: unknown): { ok: true; entry: AuditEntry } | { ok: false; issues: { field: string; message: string }[] } {
  const r = entrySchema.safeParse(obj);
  if (r.success) return { ok: true, entry: r.data };
  return { ok: false, issues: r.error.issues.map((i) => ({ field: ['entry', ...i.path.map(String)].join('.'), message: i.message })) };
}

/** The free-text fields of each entry type (reasons, labels): what an auditor's terminal shows. */
const FREE_TEXT: Partial<Record<AuditEntryType, readonly string[]>> = {
  'participant-removed': ['reason'],
  'token-issued': ['label'],
  'token-revoked': ['reason'],
  'round-aborted': ['reason'],
  'run-aborted': ['reason'],
};

/**
 * The free-text fields of a (schema-valid) entry that break the rule of shared/util/text.ts: at
 * most MAX_LOGGED_TEXT characters, no control characters. The message never repeats the text.
 */
export function freeTextIssues(entry: AuditEntry): { field: string; expected: string; message: string }[] {
  const out: { field: string; expected: string; message: string }[] = [];
  for (const k of FREE_TEXT[entry.type] ?? []) {
    const v = (entry as Record<string, unknown>)[k];
    if (typeof v !== 'string') continue;
    const problem = freeTextProblem(v, MAX_LOGGED_TEXT);
    if (problem) out.push({ field: `entry.${k}`, expected: `free text of at most ${MAX_LOGGED_TEXT} characters without control characters`, message: problem });
  }
  return out;
}
