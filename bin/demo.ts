#!/usr/bin/env node
/**
 * `npm run demo [-- --scale small|default --seeds 1,2,3 --json]`
 *
 * Current stage (see README status): generated data for both parties, each party's node imports its
 * own CSVs, trains the recommender on its own data only, and is evaluated (leave-one-out HR@10 /
 * NDCG@10 vs popularity, cross-domain quality against the generator's hidden ground truth).
 * Federated training arrives with the coordinator; until then the table has no federated column
 * rather than an invented one. Every figure printed is computed in this run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { parseNumberOption, printJson, UserError } from '../shared/cli/errors';

interface PartyResult {
  seed: number;
  party: string;
  local: { 'hr@10': number; 'ndcg@10': number };
  popularity: { 'hr@10': number; 'ndcg@10': number };
  crossDomain: { 'hr@10': number; 'ndcg@10': number };
  crossDomainPopularity: { 'hr@10': number };
  samplesPerSecond: number;
  backend: string;
}

function meanSpread(xs: number[]): { mean: number; spread: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean, spread: Math.max(...xs) - Math.min(...xs) };
}

async function runSeed(work: string, seed: number, scale: 'small' | 'default' | 'large', parties: string[], log: (m: string) => void): Promise<PartyResult[]> {
  const { generateSynthetic } = await import('../participant-node/data/generate');
  const { initNode } = await import('../participant-node/identity');
  const { importCsv } = await import('../participant-node/data/import');
  const { trainLocal, evaluateLocal } = await import('../participant-node/local');
  const gen = path.join(work, `seed${seed}`, 'data');
  log(`seed ${seed}: generating ${scale} data for ${parties.join(', ')} in ${gen}`);
  await generateSynthetic({ out: gen, seed, scale, parties });
  const out: PartyResult[] = [];
  for (const party of parties) {
    const dir = path.join(work, `seed${seed}`, 'nodes', party);
    await initNode(dir, party);
    await importCsv({ dataDir: dir, users: path.join(gen, party, 'users.csv'), items: path.join(gen, party, 'items.csv'), interactions: path.join(gen, party, 'interactions.csv') });
    // dense platform data: 1 epoch suffices; sparse insurer data: 3 epochs
    const epochs = party === 'platform' ? 1 : 3;
    log(`seed ${seed}: ${party}: training locally (${epochs} epoch${epochs > 1 ? 's' : ''})`);
    const tr = await trainLocal(dir, { backend: 'auto', epochs, batchSize: 1024, negatives: 4, learningRate: 0.005, seed, holdout: 'last' });
    log(`seed ${seed}: ${party}: ${Math.round(tr.samplesPerSecond)} samples/s on ${tr.backend}; evaluating`);
    const ev = await evaluateLocal(dir, { backend: 'auto', groundTruth: path.join(gen, party, 'ground_truth.csv'), seed });
    out.push({
      seed,
      party,
      local: { 'hr@10': ev.metrics['hr@10'], 'ndcg@10': ev.metrics['ndcg@10'] },
      popularity: { 'hr@10': ev.baseline.popularity['hr@10'], 'ndcg@10': ev.baseline.popularity['ndcg@10'] },
      crossDomain: { 'hr@10': ev.crossDomain!.overall['hr@10'], 'ndcg@10': ev.crossDomain!.overall['ndcg@10'] },
      crossDomainPopularity: { 'hr@10': ev.crossDomain!.baseline.popularity['hr@10'] },
      samplesPerSecond: tr.samplesPerSecond,
      backend: tr.backend,
    });
  }
  return out;
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('demo')
    .option('--scale <scale>', 'small|default|large', 'default')
    .option('--seeds <list>', 'comma-separated data seeds', '1')
    .option('--parties <list>', 'parties', 'platform,insurer')
    .option('--work <dir>', 'working directory (wiped first)', '.fedbridge-demo')
    .option('--json', 'end with one JSON line of the results')
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ scale: string; seeds: string; parties: string; work: string; json?: boolean }>();
  if (!['small', 'default', 'large'].includes(o.scale)) throw new UserError(`--scale must be small, default or large, got "${o.scale}"`);
  const seeds = o.seeds.split(',').map((s) => parseNumberOption('--seeds', s, { integer: true, min: 0 }));
  const parties = o.parties.split(',').map((s) => s.trim());
  const work = path.resolve(o.work);
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const log = (m: string) => process.stderr.write(`[demo] ${m}\n`);
  const t0 = Date.now();
  const results: PartyResult[] = [];
  for (const seed of seeds) results.push(...(await runSeed(work, seed, o.scale as 'small', parties, log)));

  const f = (x: number) => x.toFixed(4);
  const lines = [
    '',
    `fedbridge demo — local-only training per party (${o.scale} data, seeds ${seeds.join(',')}, backend ${results[0]?.backend})`,
    'federated and pooled columns appear once the coordinator runs rounds; nothing below is estimated.',
    '',
    'party      metric            local (mean ± spread)     popularity',
  ];
  const summary: Record<string, unknown> = {};
  for (const party of parties) {
    const rs = results.filter((r) => r.party === party);
    const hr = meanSpread(rs.map((r) => r.local['hr@10']));
    const nd = meanSpread(rs.map((r) => r.local['ndcg@10']));
    const phr = meanSpread(rs.map((r) => r.popularity['hr@10']));
    const pnd = meanSpread(rs.map((r) => r.popularity['ndcg@10']));
    const chr = meanSpread(rs.map((r) => r.crossDomain['hr@10']));
    const cphr = meanSpread(rs.map((r) => r.crossDomainPopularity['hr@10']));
    lines.push(`${party.padEnd(10)} HR@10             ${f(hr.mean)} ± ${f(hr.spread)}          ${f(phr.mean)}`);
    lines.push(`${''.padEnd(10)} NDCG@10           ${f(nd.mean)} ± ${f(nd.spread)}          ${f(pnd.mean)}`);
    lines.push(`${''.padEnd(10)} cross-domain HR  ${f(chr.mean)} ± ${f(chr.spread)}          ${f(cphr.mean)}`);
    summary[party] = {
      local: { 'hr@10': hr.mean, 'ndcg@10': nd.mean, spread: { 'hr@10': hr.spread, 'ndcg@10': nd.spread } },
      popularity: { 'hr@10': phr.mean, 'ndcg@10': pnd.mean },
      crossDomain: { local: { 'hr@10': chr.mean, spread: chr.spread }, popularity: { 'hr@10': cphr.mean } },
      perSeed: rs,
    };
  }
  lines.push('', `finished in ${((Date.now() - t0) / 1000).toFixed(0)} s; node data under ${work}`);
  process.stdout.write(lines.join('\n') + '\n');
  if (o.json) printJson({ parties: summary, seeds, scale: o.scale, mode: 'local-only' });
}

main(process.argv.slice(2)).catch((e) => {
  if (e instanceof UserError) {
    process.stderr.write(`demo: ${e.message}\n`);
    process.exitCode = e.exitCode;
  } else if ((e as { code?: string }).code?.startsWith('commander.')) {
    process.exitCode = (e as { exitCode?: number }).exitCode ?? 2;
  } else {
    process.stderr.write(`demo: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  }
});
