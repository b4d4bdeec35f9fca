/**
 * `fedbridge data ...` commands: synthetic data for demos, tests and benchmarks.
 * The generator is imported inside the action so `--help` stays fast.
 */
import type { Command } from 'commander';
import { parseNumberOption, printJson } from '../../shared/cli/errors';

export function registerDataCommands(data: Command): void {
  data
    .command('generate')
    .description(
      'write synthetic per-party data (users.csv, items.csv = the shared catalogue, interactions.csv, ' +
        'and the hidden cross-domain ground_truth.csv) plus manifest.json into --out',
    )
    .requiredOption('--out <dir>', 'output directory (one sub-folder per party)')
    .option('--seed <n>', 'PRNG seed (same seed => byte-identical files)', '1')
    .option('--scale <scale>', 'small (300 users/party) | default (20k users, 2k items per party) | large (10x default)', 'default')
    .option('--parties <list>', 'comma-separated parties: platform, insurer, insurer2, ...', 'platform,insurer')
    .option('--party-users <list>', 'users of particular parties, overriding the scale, e.g. insurer=2000,insurer2=2000')
    .option('--json', 'print the manifest as one JSON object')
    .action(async (opts: { out: string; seed: string; scale: string; parties: string; partyUsers?: string; json?: boolean }) => {
      const { generateSynthetic, parseParties, parsePartyUsers, parseScale } = await import('../data/generate');
      const seed = parseNumberOption('--seed', opts.seed, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER });
      const scale = parseScale(opts.scale);
      const parties = parseParties(opts.parties);
      const started = Date.now();
      const manifest = await generateSynthetic({
        out: opts.out,
        seed,
        scale,
        parties,
        partyUsers: opts.partyUsers === undefined ? undefined : parsePartyUsers(opts.partyUsers),
        onProgress: (m) => process.stderr.write(`${m}\n`),
      });
      if (opts.json) printJson(manifest);
      else {
        process.stderr.write(
          `wrote ${parties.join(', ')} data to ${opts.out} (seed ${seed}, scale ${scale}, ` +
            `${manifest.catalogue.numItems} catalogue items, hash ${manifest.catalogue.hash}) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
        );
      }
    });
}
