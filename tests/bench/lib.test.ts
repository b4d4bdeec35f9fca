/**
 * bench/lib.ts runBench: figures go to RESULTS/NAME.json; a run that measured nothing (the gpu bench
 * without a GPU) keeps an earlier file's figures instead of overwriting them with an empty list.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBench, type BenchModule } from '../../bench/lib';

const quiet = () => jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-benchlib-'));
  jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

const measuring: BenchModule = { run: async (ctx) => ctx.record('speed', 42, 'ops/s', { m: 1 }) };
const measuringNothing: BenchModule = { run: async (ctx) => ctx.log('no GPU here, nothing measured') };
const read = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8'));

test('a run that records writes its figures', async () => {
  quiet();
  const recs = await runBench('x', measuring, dir);
  expect(recs).toHaveLength(1);
  const f = read('x');
  expect(f.bench).toBe('x');
  expect(f.records).toEqual([{ bench: 'x', metric: 'speed', value: 42, unit: 'ops/s', params: { m: 1 } }]);
  expect(typeof f.measuredAt).toBe('string');
});

test('a run that measures nothing keeps the previous figures', async () => {
  quiet();
  await runBench('x', measuring, dir);
  const before = fs.readFileSync(path.join(dir, 'x.json'), 'utf8');
  const recs = await runBench('x', measuringNothing, dir);
  expect(recs).toEqual([]);
  expect(fs.readFileSync(path.join(dir, 'x.json'), 'utf8')).toBe(before);
});

test('a run that measures nothing, with no earlier figures, writes an empty result', async () => {
  quiet();
  await runBench('y', measuringNothing, dir);
  expect(read('y').records).toEqual([]);
  // and a later run that measures replaces it
  await runBench('y', measuring, dir);
  expect(read('y').records).toHaveLength(1);
});
