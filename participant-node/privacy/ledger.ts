/**
 * The node's lifetime privacy ledger (DESIGN §4 step 6; issue 4 "Ledger and enforcement").
 *
 * File: `<data dir>/privacy/ledger.json`, always replaced atomically (writeFileAtomic: temp file,
 * fsync, rename), so a crash leaves the old or the new ledger, never a torn one.
 *
 * Rules this module enforces:
 * - Charge before sending. `chargeRound` is called with the round's parameters *before* the masked
 *   input leaves the node; the spend stays recorded whether or not the round completes (a
 *   coordinator that learns a sum and then claims an abort cannot get the same data spent twice).
 *   A retried round is charged again.
 * - Budget check. The epsilon after the round is computed from *all* recorded rounds (RDP
 *   composition, then the CKS/Balle conversion at the policy's delta); if it would exceed the
 *   lifetime budget, the charge is refused with a message saying so, and nothing is written.
 * - Never reset. Nothing here deletes entries; a new policy or a re-import only changes the budget
 *   and delta used for the next check.
 * - Missing ledger. Before the first charge a participation marker (`<data dir>/.participated`) is
 *   written; if a later start finds the marker (or any receipt under `<data dir>/receipts/`) but no
 *   ledger, `openLedger` refuses to start until the operator restores the ledger from a backup.
 *   (An operator override that accepts the spend recorded in the federation's audit log is not
 *   implemented yet: the audit client that would fetch and verify that spend comes with the
 *   federation work.)
 * - One writer. A lock file `privacy/ledger.lock` (O_EXCL) guards read-check-write.
 *
 * Each entry keeps every parameter the accountant needs, so an auditor can recompute each figure
 * with `fedbridge privacy epsilon`:
 *   local-dpsgd: Poisson-subsampled Gaussian, noise multiplier `sigma`, rate `q`, `steps` steps;
 *   round-noise: the (distributed) discrete Gaussian of shared/dp/rdp.ts#rdpDdg with the integer
 *     noise variance per share `localVariance`, `shares` noise shares guaranteed in the sum (1 for
 *     per-party, n_min for distributed), integer sensitivities `l2`/`l1`, encoded `dimension`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { UserError } from '../../shared/cli/errors';
import { writeFileAtomic } from '../../shared/util/atomic';
import { epsilonFromRdp, rdpDdg, rdpSampledGaussian, ACCOUNTING_ORDERS } from '../../shared/dp/rdp';
import { formatZodIssues } from '../../shared/util/zod-issues';

export const LEDGER_FORMAT = 'fedbridge-privacy-ledger/1';

/** Orders used for composition: shared/dp/rdp.ts ACCOUNTING_ORDERS. */
export const LEDGER_ORDERS: readonly number[] = ACCOUNTING_ORDERS;

const finite = z.number().refine(Number.isFinite, 'must be finite');
const positive = finite.refine((v) => v > 0, 'must be > 0');

const commonFields = {
  round: z.number().int().min(0),
  /** optional identifiers of the federation run the round belonged to */
  federationId: z.string().optional(),
  runId: z.string().optional(),
  q: finite.refine((v) => v >= 0 && v <= 1, 'must be in [0, 1]'),
  steps: z.number().int().min(1),
  clip: positive,
  delta: finite.refine((v) => v > 0 && v < 1, 'must be in (0, 1)'),
  gamma: positive.nullable(),
  dimension: z.number().int().min(1).nullable(),
  chargedAt: z.string(),
  /** lifetime epsilon at `delta` after this round */
  epsilonAfter: finite.refine((v) => v >= 0, 'must be >= 0'),
  order: finite,
};

export const ledgerEntrySchema = z.discriminatedUnion('mechanism', [
  z
    .object({
      mechanism: z.literal('local-dpsgd'),
      /** noise multiplier: noise std / clip */
      sigma: positive,
      mode: z.literal('per-party').nullable(),
      nMin: z.null(),
      ...commonFields,
    })
    .strict(),
  z
    .object({
      mechanism: z.literal('round-noise'),
      /** real-domain std of the noise the sum carries (noise multiplier x clip) */
      sigma: positive,
      mode: z.enum(['per-party', 'distributed']),
      nMin: z.number().int().min(1).nullable(),
      /** integer variance of each party's discrete Gaussian share (the exact rational used) */
      localVariance: positive,
      /** noise shares guaranteed in the sum: 1 (per-party) or n_min (distributed) */
      shares: z.number().int().min(1),
      l2: positive,
      l1: positive,
      ...commonFields,
    })
    .strict(),
]);

export type LedgerEntry = z.infer<typeof ledgerEntrySchema>;

export const ledgerSchema = z
  .object({
    format: z.literal(LEDGER_FORMAT),
    /** lifetime epsilon budget (from the policy; the latest one used for a check) */
    budget: positive,
    /** delta at which epsilon is reported */
    delta: finite.refine((v) => v > 0 && v < 1, 'must be in (0, 1)'),
    createdAt: z.string(),
    entries: z.array(ledgerEntrySchema),
  })
  .strict();

export type Ledger = z.infer<typeof ledgerSchema>;

/** What a round will cost, as the node computes it before joining. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type RoundCharge = DistributiveOmit<LedgerEntry, 'chargedAt' | 'epsilonAfter' | 'order'>;

export function privacyDir(dataDir: string): string {
  return path.join(dataDir, 'privacy');
}
export function ledgerFile(dataDir: string): string {
  return path.join(privacyDir(dataDir), 'ledger.json');
}
export function participationMarker(dataDir: string): string {
  return path.join(dataDir, '.participated');
}

/** True if the node has (started to) take part in a round before: marker or receipts present. */
export function hasParticipated(dataDir: string): boolean {
  if (fs.existsSync(participationMarker(dataDir))) return true;
  const receipts = path.join(dataDir, 'receipts');
  try {
    return fs.readdirSync(receipts).length > 0;
  } catch {
    return false;
  }
}

/** Reads and validates the ledger; null if there is none. A corrupt ledger is an error, never "empty". */
export function readLedger(dataDir: string): Ledger | null {
  const f = ledgerFile(dataDir);
  let text: string;
  try {
    text = fs.readFileSync(f, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new UserError(`cannot read the privacy ledger ${f}: ${(e as Error).message}`, 1);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new UserError(`the privacy ledger ${f} is not valid JSON (${(e as Error).message}); restore it from a backup — refusing to continue`, 1);
  }
  const r = ledgerSchema.safeParse(obj);
  if (!r.success) {
    const issues = formatZodIssues(r.error).join('; ');
    throw new UserError(`the privacy ledger ${f} is invalid (${issues}); restore it from a backup — refusing to continue`, 1);
  }
  return r.data;
}

/**
 * The ledger to charge against. Refuses to start (UserError) if the ledger is missing but the node
 * has taken part before; otherwise returns the stored ledger, or a new empty one (not yet written).
 */
export function openLedger(dataDir: string, opts: { budget: number; delta: number }): Ledger {
  const existing = readLedger(dataDir);
  if (existing) return existing;
  if (hasParticipated(dataDir)) {
    throw new UserError(
      `the privacy ledger ${ledgerFile(dataDir)} is missing, but this node has taken part in rounds before ` +
        `(${participationMarker(dataDir)} or receipts exist): its spent budget is unknown, so it refuses to start. ` +
        `Restore privacy/ledger.json from a backup, or accept the spend recorded in the federation's audit log: ` +
        `'fedbridge node privacy --data-dir ${dataDir} --restore-from-audit LOG.jsonl --policy POLICY.yaml'.`,
      1,
    );
  }
  return { format: LEDGER_FORMAT, budget: opts.budget, delta: opts.delta, createdAt: new Date().toISOString(), entries: [] };
}

const rdpCache = new Map<string, number[]>();

/** RDP (at LEDGER_ORDERS) of one recorded round (memoised on the accountant's inputs). */
export function entryRdp(e: RoundCharge): number[] {
  const key =
    e.mechanism === 'local-dpsgd'
      ? JSON.stringify(['g', e.q, e.sigma, e.steps])
      : JSON.stringify(['d', e.localVariance, e.shares, e.l2, e.l1, e.dimension, e.q, e.steps]);
  let v = rdpCache.get(key);
  if (!v) {
    v = entryRdpUncached(e);
    if (rdpCache.size > 10000) rdpCache.clear();
    rdpCache.set(key, v);
  }
  return v;
}

function entryRdpUncached(e: RoundCharge): number[] {
  if (e.mechanism === 'local-dpsgd') return rdpSampledGaussian(e.q, e.sigma, e.steps, LEDGER_ORDERS);
  // integer-order bound; RDP is non-decreasing in the order, so a fractional order uses ceil(order)
  const ints = LEDGER_ORDERS.map((a) => Math.ceil(a));
  const uniq = [...new Set(ints)];
  const vals = rdpDdg(
    { localVariance: e.localVariance, parties: e.shares, l2: e.l2, l1: e.l1, dimension: e.dimension ?? 1, q: e.q, steps: e.steps },
    uniq,
  );
  const byOrder = new Map(uniq.map((a, i) => [a, vals[i]]));
  return ints.map((a) => byOrder.get(a)!);
}

/** Lifetime epsilon at `delta` of a list of rounds (RDP composition, CKS/Balle conversion). */
export function composeEpsilon(entries: readonly RoundCharge[], delta: number): { epsilon: number; order: number } {
  if (entries.length === 0) return { epsilon: 0, order: LEDGER_ORDERS[0] };
  const total = new Array(LEDGER_ORDERS.length).fill(0);
  for (const e of entries) entryRdp(e).forEach((v, i) => (total[i] += v));
  return epsilonFromRdp(LEDGER_ORDERS, total, delta);
}

export interface ChargePreview {
  epsilonBefore: number;
  epsilonAfter: number;
  order: number;
  budget: number;
  withinBudget: boolean;
}

/** The cost of a round, without recording it. */
export function previewCharge(ledger: Ledger, charge: RoundCharge, budget = ledger.budget): ChargePreview {
  const before = composeEpsilon(ledger.entries, charge.delta).epsilon;
  const after = composeEpsilon([...ledger.entries, charge], charge.delta);
  return { epsilonBefore: before, epsilonAfter: after.epsilon, order: after.order, budget, withinBudget: after.epsilon <= budget };
}

function validateCharge(charge: RoundCharge): RoundCharge {
  const probe = { ...charge, chargedAt: 'x', epsilonAfter: 0, order: 2 };
  const r = ledgerEntrySchema.safeParse(probe);
  if (!r.success) {
    throw new UserError(`invalid privacy charge: ${formatZodIssues(r.error).join('; ')}`);
  }
  return charge;
}

function withLock<T>(dataDir: string, fn: () => T): T {
  fs.mkdirSync(privacyDir(dataDir), { recursive: true, mode: 0o700 });
  const lock = path.join(privacyDir(dataDir), 'ledger.lock');
  let fd: number;
  try {
    fd = fs.openSync(lock, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UserError(`the privacy ledger is locked by another process (${lock}); if no node process is running, remove the lock file`, 1);
    }
    throw e;
  }
  try {
    fs.writeSync(fd, `${process.pid}\n`);
    return fn();
  } finally {
    fs.closeSync(fd);
    fs.rmSync(lock, { force: true });
  }
}

/**
 * Charges one round: refuses (UserError, nothing written) if the lifetime epsilon after it would
 * exceed `budget`; otherwise writes the participation marker, then the ledger with the new entry,
 * atomically. Call it before the masked input is sent. Returns the recorded entry.
 */
export function chargeRound(dataDir: string, charge: RoundCharge, opts: { budget: number; delta?: number }): LedgerEntry {
  validateCharge(charge);
  if (!(typeof opts.budget === 'number' && opts.budget > 0 && Number.isFinite(opts.budget))) {
    throw new UserError(`invalid privacy budget ${String(opts.budget)}: expected a positive number`);
  }
  return withLock(dataDir, () => {
    const ledger = openLedger(dataDir, { budget: opts.budget, delta: opts.delta ?? charge.delta });
    // one charge per round attempt: a retried round has a new round number, a new run a new id
    if (charge.runId !== undefined) {
      const k = ledger.entries.findIndex((x) => x.runId === charge.runId && x.round === charge.round && (x.federationId ?? null) === (charge.federationId ?? null));
      if (k >= 0) throw new UserError(`round ${charge.round} of run ${charge.runId} is already charged (ledger entry ${k + 1}); a round is charged once`, 1);
    }
    const p = previewCharge(ledger, charge, opts.budget);
    if (!p.withinBudget) {
      throw new UserError(
        `privacy budget exceeded: round ${charge.round} would raise this node's lifetime epsilon from ${p.epsilonBefore.toFixed(4)} ` +
          `to ${p.epsilonAfter.toFixed(4)} (delta ${charge.delta}), above the budget ${opts.budget}; refusing to join the round`,
        1,
      );
    }
    const entry = { ...charge, chargedAt: new Date().toISOString(), epsilonAfter: p.epsilonAfter, order: p.order } as LedgerEntry;
    const next: Ledger = { ...ledger, budget: opts.budget, delta: charge.delta, entries: [...ledger.entries, entry] };
    if (!fs.existsSync(participationMarker(dataDir))) {
      writeFileAtomic(participationMarker(dataDir), JSON.stringify({ firstChargeAt: entry.chargedAt }) + '\n', 0o600);
    }
    writeFileAtomic(ledgerFile(dataDir), JSON.stringify(next, null, 2) + '\n', 0o600);
    return entry;
  });
}

/**
 * Writes a ledger rebuilt from the verified audit log (restore.ts). Only when no ledger exists;
 * validated like any ledger; written atomically under the lock.
 */
export function writeRestoredLedger(dataDir: string, ledger: Ledger): void {
  const r = ledgerSchema.safeParse(ledger);
  if (!r.success) throw new UserError(`restored ledger is invalid: ${formatZodIssues(r.error).join('; ')}`, 1);
  withLock(dataDir, () => {
    if (readLedger(dataDir)) throw new UserError(`${ledgerFile(dataDir)} exists; refusing to overwrite it`, 1);
    writeFileAtomic(ledgerFile(dataDir), JSON.stringify(r.data, null, 2) + '\n', 0o600);
  });
}

/** Summary for `fedbridge node privacy`. */
export interface LedgerSummary {
  epsilon: number;
  delta: number | null;
  budget: number | null;
  remaining: number | null;
  rounds: { round: number; epsilon: number; mechanism: string; chargedAt: string }[];
}

export function summarizeLedger(ledger: Ledger | null): LedgerSummary {
  if (!ledger) return { epsilon: 0, delta: null, budget: null, remaining: null, rounds: [] };
  const eps = composeEpsilon(ledger.entries, ledger.delta).epsilon;
  return {
    epsilon: eps,
    delta: ledger.delta,
    budget: ledger.budget,
    remaining: Math.max(0, ledger.budget - eps),
    rounds: ledger.entries.map((e) => ({ round: e.round, epsilon: e.epsilonAfter, mechanism: e.mechanism, chargedAt: e.chargedAt })),
  };
}
