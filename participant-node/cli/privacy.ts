/**
 * `fedbridge node privacy --data-dir DIR [--json] [--plot FILE]`: the node's lifetime privacy ledger
 * (spent / remaining epsilon, one line per charged round) and an SVG plot of epsilon over rounds,
 * written to FILE (default DIR/privacy/epsilon.svg).
 * JSON (DESIGN §8): {"epsilon":x, "delta":x, "budget":x, "rounds":[{"round":r,"epsilon":x}, ...]}
 * plus "remaining" and "plot".
 */
import type { Command } from 'commander';
import { printJson } from '../../shared/cli/errors';
import { readFileAt } from '../../shared/cli/read-file';

export function registerNodePrivacyCommands(node: Command): void {
  node
    .command('privacy')
    .description('show the lifetime privacy ledger: epsilon spent and remaining, per round; writes an SVG plot')
    .requiredOption('--data-dir <dir>', 'the node data directory')
    .option('--plot <file>', 'where to write the SVG plot (default DIR/privacy/epsilon.svg)')
    .option('--restore-from-audit <log>', "rebuild a MISSING ledger from the federation's exported audit log (verified first)")
    .option('--policy <file>', 'the federation policy (with --restore-from-audit); repeat it, current policy first, for a log with runs of several policies', (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--receipts <dir>', "more receipts to check the log against (with --restore-from-audit; the node's own DIR/receipts are always checked)")
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: { dataDir: string; plot?: string; json?: boolean; restoreFromAudit?: string; policy: string[]; receipts?: string }) => {
      if (opts.restoreFromAudit) {
        const { UserError: UE } = await import('../../shared/cli/errors');
        if (!opts.policy.length) throw new UE('--restore-from-audit needs --policy (the federation policy the log is checked against)');
        const { verifyLogFile } = await import('../../shared/cli/audit');
        const { parsePolicyYaml } = await import('../../shared/policy/schema');
        const fsm = await import('node:fs');
        const { readNodeInfo: rni } = await import('../identity');
        const { restoreLedgerFromAudit } = await import('../privacy/restore');
        const who = rni(opts.dataDir).name;
        const { receiptsDir } = await import('../federation/receipt');
        const pathm = await import('node:path');
        const own = receiptsDir(opts.dataDir);
        const dirs = [...(opts.receipts ? [opts.receipts] : []), ...(fsm.existsSync(own) ? [own] : [])].filter((d, i, a) => a.findIndex((x) => pathm.resolve(x) === pathm.resolve(d)) === i);
        const verified = await verifyLogFile(opts.restoreFromAudit, opts.policy, dirs);
        const r = restoreLedgerFromAudit(opts.dataDir, who, opts.policy.map((f) => parsePolicyYaml(readFileAt(f, 'utf8'))), verified);
        process.stderr.write(`restored the privacy ledger of "${who}" from the audit log: ${r.rounds} charged round(s), lifetime epsilon ${r.epsilon.toFixed(4)} (rounds the coordinator never logged cannot be recovered)\n`);
      }
      const path = await import('node:path');
      const { readNodeInfo } = await import('../identity');
      const { readLedger, summarizeLedger, privacyDir, hasParticipated, ledgerFile } = await import('../privacy/ledger');
      const { epsilonPlotSvg } = await import('../privacy/plot');
      const { writeFileAtomic } = await import('../../shared/util/atomic');
      const { UserError } = await import('../../shared/cli/errors');
      const info = readNodeInfo(opts.dataDir);
      const ledger = readLedger(opts.dataDir);
      if (!ledger && hasParticipated(opts.dataDir)) {
        throw new UserError(`the privacy ledger ${ledgerFile(opts.dataDir)} is missing but this node has taken part in rounds before; restore it from a backup`, 1);
      }
      const s = summarizeLedger(ledger);
      const plot = opts.plot ?? path.join(privacyDir(opts.dataDir), 'epsilon.svg');
      writeFileAtomic(plot, epsilonPlotSvg(s, `Privacy budget spent by ${info.name}`));
      if (opts.json) {
        printJson({
          epsilon: s.epsilon,
          delta: s.delta,
          budget: s.budget,
          remaining: s.remaining,
          rounds: s.rounds.map((r) => ({ round: r.round, epsilon: r.epsilon, mechanism: r.mechanism })),
          plot,
        });
        return;
      }
      const out: string[] = [];
      if (!ledger) out.push(`node "${info.name}": no rounds charged yet (no ledger)`);
      else {
        out.push(`node "${info.name}": epsilon spent ${s.epsilon.toFixed(4)} of budget ${s.budget} at delta ${s.delta} (remaining ${s.remaining!.toFixed(4)})`);
        for (const r of s.rounds) out.push(`  round ${r.round}  ${r.mechanism.padEnd(11)}  epsilon after ${r.epsilon.toFixed(4)}  (${r.chargedAt})`);
      }
      out.push(`plot: ${plot}`);
      process.stdout.write(out.join('\n') + '\n');
    });
}
