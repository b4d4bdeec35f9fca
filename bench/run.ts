/**
 * `npm run bench -- [NAME...]`: runs the named benchmarks (all when none is named). Each benchmark
 * is bench/NAME.ts exporting `run`; register it in BENCHES below.
 */
import * as path from 'node:path';
import { runBench, type BenchModule } from './lib';

const BENCHES: Record<string, () => Promise<BenchModule>> = {
  training: () => import('./training'),
  gpu: () => import('./gpu'),
  'gpu-latency': () => import('./gpu-latency'),
  data: () => import('./data'),
  secagg: () => import('./secagg'),
  dp: () => import('./dp'),
  coordinator: () => import('./coordinator'),
  audit: () => import('./audit'),
  ceiling: () => import('./ceiling'),
  'own-data': () => import('./own-data'),
};

async function main(): Promise<void> {
  const names = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const unknown = names.filter((n) => !(n in BENCHES));
  if (unknown.length) {
    process.stderr.write(`bench: unknown benchmark(s) ${unknown.join(', ')}; available: ${Object.keys(BENCHES).join(', ')}\n`);
    process.exitCode = 2;
    return;
  }
  const resultsDir = path.resolve(__dirname, '..', '..', 'bench', 'results');
  for (const name of names.length ? names : Object.keys(BENCHES)) {
    await runBench(name, await BENCHES[name](), resultsDir);
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
