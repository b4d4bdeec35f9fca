/**
 * `fedbridge node ...` commands. Heavy modules (tfjs) are imported inside actions.
 */
import type { Command } from 'commander';
import { printJson } from '../../shared/cli/errors';

export function registerNodeCommands(node: Command): void {
  node
    .command('init')
    .description('create a node data dir with a fresh Ed25519 identity (private key file mode 0600)')
    .requiredOption('--data-dir <dir>', 'the node data directory')
    .requiredOption('--name <name>', 'party name, e.g. platform or insurer')
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: { dataDir: string; name: string; json?: boolean }) => {
      const { initNode } = await import('../identity');
      const info = await initNode(opts.dataDir, opts.name);
      if (opts.json) printJson({ name: info.name, publicKey: info.publicKey, dataDir: opts.dataDir });
      else process.stderr.write(`initialised node "${info.name}" in ${opts.dataDir}\npublic key: ${info.publicKey}\n`);
    });
}
