/**
 * `npm run bench -- data`: the data path's speed on `--scale default` synthetic data
 * (20k users and 2k items per party, ~800k platform interactions):
 *   - generate_s:        `fedbridge data generate` for platform + insurer
 *   - import_s:          `fedbridge node import` of the platform's CSVs (csv-parse stream, validate, sort, store)
 *   - load_ms:           `loadDataset` of the stored platform dataset (median of 5; target: well under 2 s)
 * With FEDBRIDGE_BENCH_LARGE=1 it also times `--scale large` generation (10x users and items).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BenchContext } from './lib';
import { median, timeMs } from './lib';
import { generateSynthetic, type SyntheticManifest } from '../participant-node/data/generate';
import { importCsv } from '../participant-node/data/import';
import { loadDataset } from '../participant-node/data/store';
import { initNode } from '../participant-node/identity';

export async function run(ctx: BenchContext): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-bench-data-'));
  try {
    const out = path.join(root, 'gen');
    let manifest: SyntheticManifest | undefined;
    const genMs = await timeMs(async () => {
      manifest = await generateSynthetic({ out, seed: 1, scale: 'default', parties: ['platform', 'insurer'] });
    });
    const m = manifest!;
    const rows = m.counts.platform.interactions + m.counts.insurer.interactions;
    ctx.record('generate_s', genMs / 1000, 's', { scale: 'default', parties: m.parties, interactions: rows, catalogueItems: m.catalogue.numItems });

    const dir = path.join(root, 'node');
    await initNode(dir, 'platform');
    const p = (f: string) => path.join(out, 'platform', f);
    const impMs = await timeMs(() => importCsv({ dataDir: dir, users: p('users.csv'), items: p('items.csv'), interactions: p('interactions.csv') }));
    ctx.record('import_s', impMs / 1000, 's', { interactions: m.counts.platform.interactions, users: m.counts.platform.users });
    ctx.record('import_rows_per_s', Math.round(m.counts.platform.interactions / (impMs / 1000)), 'rows/s');

    const loads: number[] = [];
    let n = 0;
    for (let k = 0; k < 5; k++) loads.push(await timeMs(() => (n = loadDataset(dir).interactions.user.length)));
    ctx.record('load_ms', Math.round(median(loads)), 'ms', { interactions: n, users: m.counts.platform.users, items: m.catalogue.numItems });

    if (process.env.FEDBRIDGE_BENCH_LARGE === '1') {
      const large = path.join(root, 'large');
      let lm: SyntheticManifest | undefined;
      const ms = await timeMs(async () => {
        lm = await generateSynthetic({ out: large, seed: 1, scale: 'large', parties: ['platform', 'insurer'], onProgress: (s) => ctx.log(s) });
      });
      ctx.record('generate_large_s', ms / 1000, 's', { interactions: lm!.counts.platform.interactions + lm!.counts.insurer.interactions, catalogueItems: lm!.catalogue.numItems });
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
