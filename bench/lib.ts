/**
 * Benchmark plumbing (DESIGN §9). A benchmark is a module under bench/ exporting
 * `run(ctx: BenchContext): Promise<void>`; each figure it measures goes through `ctx.record`, which
 * prints one JSON line to stdout and collects it; the runner writes them to bench/results/NAME.json.
 * Benchmarks are programs, never timed test assertions.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../shared/util/atomic';

export interface BenchRecord {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  params?: Record<string, unknown>;
}

export interface BenchContext {
  name: string;
  record(metric: string, value: number, unit: string, params?: Record<string, unknown>): void;
  /** progress and notes (stderr, not part of the results) */
  log(msg: string): void;
}

export interface BenchModule {
  run(ctx: BenchContext): Promise<void>;
}

export function median(xs: number[]): number {
  if (xs.length === 0) throw new RangeError('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Milliseconds taken by `fn` (high-resolution clock). */
export async function timeMs(fn: () => unknown | Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export function machineInfo(): Record<string, unknown> {
  return { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, platform: `${os.platform()}-${os.arch()}` };
}

export async function runBench(name: string, mod: BenchModule, resultsDir: string): Promise<BenchRecord[]> {
  const records: BenchRecord[] = [];
  const ctx: BenchContext = {
    name,
    record(metric, value, unit, params) {
      const rec: BenchRecord = { bench: name, metric, value, unit, ...(params ? { params } : {}) };
      records.push(rec);
      process.stdout.write(JSON.stringify(rec) + '\n');
    },
    log(msg) {
      process.stderr.write(`[${name}] ${msg}\n`);
    },
  };
  await mod.run(ctx);
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${name}.json`);
  // A run that measured nothing (e.g. the gpu bench on a machine without a GPU) must not wipe the
  // figures an earlier run measured where it could: the previous file is kept.
  const previous = records.length === 0 ? previousRecords(file) : null;
  if (previous) {
    ctx.log(`measured nothing here; kept ${file} (${previous.count} figure(s) measured at ${previous.measuredAt})`);
    return records;
  }
  const out = { bench: name, measuredAt: new Date().toISOString(), machine: machineInfo(), records };
  writeFileAtomic(file, JSON.stringify(out, null, 2) + '\n');
  return records;
}

/** The figures an existing results file holds, or null when there is none (or it is unreadable). */
function previousRecords(file: string): { count: number; measuredAt: string } | null {
  try {
    const old = JSON.parse(fs.readFileSync(file, 'utf8')) as { records?: unknown[]; measuredAt?: string };
    return Array.isArray(old.records) && old.records.length > 0 ? { count: old.records.length, measuredAt: String(old.measuredAt) } : null;
  } catch {
    return null;
  }
}
