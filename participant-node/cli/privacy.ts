/**
 * `fedbridge node privacy --data-dir DIR [--json] [--plot FILE]`: the node's lifetime privacy ledger
 * (spent / remaining epsilon, one line per charged round) and an SVG plot of epsilon over rounds,
 * written to FILE (default DIR/privacy/epsilon.svg).
 * JSON (DESIGN §8): {"epsilon":x, "delta":x, "budget":x, "rounds":[{"round":r,"epsilon":x}, ...]}
 * plus "remaining" and "plot".
 */
import type { Command } from 'commander';
import { printJson } from '../../shared/cli/errors';

export function registerNodePrivacyCommands(node: Command): void {
  node
    .command('privacy')
    .description('show the lifetime privacy ledger: epsilon spent and remaining, per round; writes an SVG plot')
    .requiredOption('--data-dir <dir>', 'the node data directory')
    .option('--plot <file>', 'where to write the SVG plot (default DIR/privacy/epsilon.svg)')
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: { dataDir: string; plot?: string; json?: boolean }) => {
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
