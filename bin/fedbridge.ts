#!/usr/bin/env node
/**
 * The one `fedbridge` CLI (DESIGN §8). This file only wires command groups together; each group
 * lives beside the code it drives (participant-node/cli, coordinator/cli, shared/cli) and loads its
 * heavy modules (tfjs, NestJS) lazily inside its action, so `--help` stays fast.
 *
 * Every command exits non-zero with a one-line reason on bad input (UserError), and prints one JSON
 * object on stdout with `--json`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError } from 'commander';
import { fsUserError, UserError } from '../shared/cli/errors';
import { registerNodeCommands } from '../participant-node/cli/node';
import { registerDataCommands } from '../participant-node/cli/data';
import { registerNodeImportCommand } from '../participant-node/cli/import';
import { registerNodePrivacyCommands } from '../participant-node/cli/privacy';
import { registerPrivacyCommands } from '../shared/cli/privacy';
import { registerCoordinatorCommands } from '../coordinator/cli/coordinator';
import { registerPolicyCommands } from '../shared/cli/policy';
import { registerAuditCommands } from '../shared/cli/audit';
import { readFileAt } from '../shared/cli/read-file';

export function buildProgram(): Command {
  const program = new Command('fedbridge')
    .description('Privacy-preserving federated recommender: participant nodes, coordinator, privacy accountant, audit.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const node = program.command('node').description('participant node: identity, data, local training, evaluation, serving');
  registerNodeCommands(node);
  registerNodeImportCommand(node);
  registerNodePrivacyCommands(node);
  registerDataCommands(program.command('data').description('synthetic data: generate per-party users, the shared catalogue, interactions'));
  const privacy = program.command('privacy').description('privacy accountant: epsilon of a mechanism, sigma calibration');
  registerPrivacyCommands(privacy);
  registerCoordinatorCommands(program.command('coordinator').description('coordinator: start, local certificates, operator commands (enrol, runs, tokens)'));
  registerPolicyCommands(program.command('policy').description('federation policy: write the default, sign its hash, verify every signature'), {
    readNodeInfo: async (dir) => (await import('../participant-node/identity')).readNodeInfo(dir),
    loadNodeIdentity: async (dir) => (await import('../participant-node/identity')).loadIdentity(dir),
    readCatalogue: async (dir) => {
      const store = await import('../participant-node/data/store');
      const meta = store.readDatasetMeta(dir);
      // the offers come from the imported catalogue when it is there (every node re-checks them
      // against its own catalogue before it trains)
      const itemsFile = path.join(store.datasetDir(dir), 'items.json');
      if (!fs.existsSync(itemsFile)) return { hash: meta.catalogueHash, numItems: meta.counts.items };
      const items = JSON.parse(readFileAt(itemsFile, 'utf8')) as Array<{ provider?: string }>;
      if (!Array.isArray(items) || items.length !== meta.counts.items) throw new Error(`${itemsFile}: expected ${meta.counts.items} items`);
      return { hash: meta.catalogueHash, numItems: meta.counts.items, offers: (await import('../shared/fl/offers')).offerRanges(items) };
    },
    nodeDataProblem: async (dir, party, policy) => {
      const store = await import('../participant-node/data/store');
      if (!store.hasDataset(dir)) return { imported: false, problem: null };
      const { admission } = await import('../participant-node/federation/admission');
      const { allPositives } = await import('../participant-node/model/train');
      const ds = store.loadDataset(dir);
      // every interaction counts (a node may join with --holdout none): the stricter count
      return { imported: true, problem: admission(ds, party, policy, allPositives(ds)).problem?.message ?? null };
    },
  });
  registerAuditCommands(program.command('audit').description('auditor: export the coordinator audit log, verify it against the policy and receipts'));
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed the message (or help); help/version exit 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    const user = e instanceof UserError ? e : fsUserError(e);
    if (user) {
      process.stderr.write(`fedbridge: ${user.message}\n`);
      return user.exitCode;
    }
    process.stderr.write(`fedbridge: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
