/**
 * Restoring a lost privacy ledger from the federation's audit log (issue 4 "Ledger and
 * enforcement": a node whose ledger is missing refuses to start until the operator restores it or
 * ACCEPTS THE SPEND RECORDED IN THE AUDIT LOG — this is the second way).
 *
 * The operator exports the log (`fedbridge audit export`) and runs
 * `fedbridge node privacy --data-dir DIR --restore-from-audit log.jsonl --policy policy.yaml
 * [--policy older.yaml ...] [--receipts DIR]` (several policies for a log with runs of several:
 * the first, the one the node takes part under now, gives the ledger's budget and delta). Rules:
 *   - only when the ledger is missing (an existing ledger is never replaced or merged);
 *   - the log must verify clean against the policy (chain, signatures, round parameters, epsilon
 *     recomputed by the accountant), with this node's own receipts when given;
 *   - every round the log charges this party is re-entered with the parameters its run's policy
 *     fixes (the verifier has checked the log's parameters equal them), and the lifetime epsilon the ledger
 *     computes after each round must equal the epsilon the log recorded for this party;
 *   - the log must account for what the node itself knows of its past: every receipt it kept under
 *     `<data dir>/receipts/` names a round the log charges it (the CLI also verifies those receipts
 *     against the log, so a log cut before the newest receipted head fails), and a node that has
 *     taken part (participation marker or receipts) is never given a ledger of zero rounds. A wrong,
 *     empty or truncated log is refused instead of resetting the node's budget.
 * The restored ledger can only under-count rounds the coordinator never logged (e.g. a coordinator
 * restart inside an open masked-input phase); the command says so.
 */
import { UserError } from '../../shared/cli/errors';
import { forTerminal } from '../../shared/util/text';
import { layoutSize, sharedParameterLayout } from '../../shared/model/layout';
import { policyHash, type Policy } from '../../shared/policy/schema';
import type { VerifyResult } from '../../shared/audit/verify';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { receiptsDir } from '../federation/receipt';
import { roundCharge } from './round';
import { hasParticipated, LEDGER_FORMAT, participationMarker, previewCharge, readLedger, writeRestoredLedger, type Ledger, type LedgerEntry } from './ledger';

/** (runId, round) of every receipt this node kept for itself (files that are not its receipts are skipped). */
function ownReceiptedRounds(dataDir: string, party: string): { runId: string; round: number; file: string }[] {
  const dir = receiptsDir(dataDir);
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new UserError(`cannot read this node's receipts folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 1);
  }
  const out: { runId: string; round: number; file: string }[] = [];
  for (const f of names) {
    let r: { party?: unknown; runId?: unknown; round?: unknown } | null;
    try {
      r = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { party?: unknown; runId?: unknown; round?: unknown } | null;
    } catch {
      continue;
    }
    if (r && r.party === party && typeof r.runId === 'string' && typeof r.round === 'number') out.push({ runId: r.runId, round: r.round, file: path.join(dir, f) });
  }
  return out;
}

export interface RestoreResult {
  rounds: number;
  epsilon: number;
}

export function restoreLedgerFromAudit(dataDir: string, party: string, policies: Policy | readonly Policy[], verified: VerifyResult): RestoreResult {
  const all = Array.isArray(policies) ? (policies as readonly Policy[]) : [policies as Policy];
  const policy = all[0];
  const byHash = new Map(all.map((p) => [policyHash(p), p]));
  if (readLedger(dataDir)) throw new UserError(`${dataDir} already has a privacy ledger; restoring from the audit log only replaces a MISSING ledger`, 1);
  if (!verified.ok) {
    // the failures quote the log: control characters escaped (forTerminal), as `audit verify` prints them
    const f = verified.failures.slice(0, 3).map((x) => `entry ${x.entry} ${x.field}: expected ${JSON.stringify(x.expected)}, found ${JSON.stringify(x.found)}`);
    throw new UserError(forTerminal(`the audit log does not verify (${verified.failures.length} failure(s): ${f.join('; ')}); refusing to restore from it`), 1);
  }
  const me = policy.parties.find((p) => p.name === party);
  if (!me) throw new UserError(`party "${party}" is not in the policy`, 1);
  const budget = me.epsilonBudget ?? policy.privacy.epsilonBudget;
  let ledger: Ledger = { format: LEDGER_FORMAT, budget, delta: policy.privacy.delta, createdAt: new Date().toISOString(), entries: [] };
  for (const r of verified.timeline) {
    const logged = r.epsilon[party];
    if (logged === undefined) continue;
    const runPolicy = byHash.get(r.policyHash);
    if (!runPolicy) throw new UserError(forTerminal(`round ${r.round} of run ${r.runId} ran under policy ${r.policyHash}, which was not given (--policy)`), 1);
    const charge = roundCharge(runPolicy, r.runId, r.round, layoutSize(sharedParameterLayout(runPolicy.model, runPolicy.vocabularies)));
    const p = previewCharge(ledger, charge, budget);
    if (Math.abs(p.epsilonAfter - logged) > 1e-6 * Math.max(1, logged)) {
      throw new UserError(forTerminal(`round ${r.round} of run ${r.runId}: the log records epsilon ${logged} for ${party}, the parameters of its policy give ${p.epsilonAfter}; refusing to restore`), 1);
    }
    const entry = { ...charge, chargedAt: new Date().toISOString(), epsilonAfter: p.epsilonAfter, order: p.order } as LedgerEntry;
    ledger = { ...ledger, entries: [...ledger.entries, entry] };
  }
  const charged = new Set(ledger.entries.map((e) => `${e.runId}\n${e.round}`));
  for (const r of ownReceiptedRounds(dataDir, party)) {
    if (!charged.has(`${r.runId}\n${r.round}`)) {
      throw new UserError(forTerminal(`this node countersigned round ${r.round} of run ${r.runId} (${r.file}), but the audit log charges "${party}" nothing for it: the log is not this federation's whole log (wrong, truncated or rewritten); refusing to restore`), 1);
    }
  }
  if (ledger.entries.length === 0 && hasParticipated(dataDir)) {
    throw new UserError(`this node has taken part in rounds before (${participationMarker(dataDir)} or receipts exist), but the audit log charges "${party}" nothing: a ledger of zero rounds would reset its spent budget; export the federation's whole log and try again`, 1);
  }
  writeRestoredLedger(dataDir, ledger);
  const last = ledger.entries[ledger.entries.length - 1];
  return { rounds: ledger.entries.length, epsilon: last ? last.epsilonAfter : 0 };
}
