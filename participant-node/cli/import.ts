/**
 * `fedbridge node import`: CSV import into the node data dir (participant-node/data/import.ts).
 * Bad input exits 2 with FILE:LINE:COLUMN messages and changes nothing.
 */
import type { Command } from 'commander';
import { printJson } from '../../shared/cli/errors';

export function registerNodeImportCommand(node: Command): void {
  node
    .command('import')
    .description(
      "stream the party's users, the shared catalogue and the interactions from CSV, validate them against the " +
        'feature vocabularies and store them in DIR/data (atomic: a failed import changes nothing). Interactions are ' +
        'sorted by (user, timestamp) and exact repeats (same user, item, timestamp) are removed.',
    )
    .requiredOption('--data-dir <dir>', 'an initialised node data directory (fedbridge node init)')
    .requiredOption('--users <file>', 'users CSV: user_id,age_band,region,life_stage,interests (a|b|c)')
    .requiredOption('--items <file>', 'the shared catalogue CSV: item_id,provider,domain,price_band,topics (a|b)')
    .requiredOption('--interactions <file>', 'interactions CSV: user_id,item_id,timestamp (unix seconds)')
    .option('--mapping <file>', 'JSON/YAML column mapping, e.g. {"users": {"id": "customer_id", "age_band": "age"}}')
    .option('--json', 'print the report as one JSON object')
    .action(async (opts: { dataDir: string; users: string; items: string; interactions: string; mapping?: string; json?: boolean }) => {
      const { importCsv, readMapping } = await import('../data/import');
      const mapping = opts.mapping ? readMapping(opts.mapping) : undefined;
      const started = Date.now();
      const report = await importCsv({ dataDir: opts.dataDir, users: opts.users, items: opts.items, interactions: opts.interactions, mapping });
      if (opts.json) printJson(report);
      else {
        const c = report.counts;
        process.stderr.write(
          `imported into ${opts.dataDir}/data for "${report.party}": ${c.users} users, ${c.items} catalogue items, ` +
            `${c.interactions.stored} interactions (${c.interactions.duplicatesRemoved} exact repeats removed) in ` +
            `${((Date.now() - started) / 1000).toFixed(1)} s\ncatalogue hash: ${report.catalogueHash}\n`,
        );
      }
    });
}
