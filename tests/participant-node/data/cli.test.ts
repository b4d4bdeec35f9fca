/**
 * The `fedbridge data generate` and `fedbridge node import` commands, run in-process through the
 * real commander program (bin/fedbridge.ts main): help, exit codes, JSON output, stderr messages.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dirFingerprint, tempDir } from './helpers';
import { runCli as run } from '../../cli-run';

let root: string;

beforeAll(() => {
  root = tempDir('data-cli');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('fedbridge data generate / node import (CLI)', () => {
  it('--help works for both commands and names every option', async () => {
    const g = await run(['data', 'generate', '--help']);
    expect(g.code).toBe(0);
    for (const opt of ['--out', '--seed', '--scale', '--parties', '--party-users', '--json']) expect(g.out).toContain(opt);
    const i = await run(['node', 'import', '--help']);
    expect(i.code).toBe(0);
    for (const opt of ['--data-dir', '--users', '--items', '--interactions', '--mapping', '--json']) expect(i.out).toContain(opt);
    const d = await run(['data', '--help']);
    expect(d.code).toBe(0);
    expect(d.out).toContain('generate');
  });

  it('exits 2 with a one-line reason on bad options and writes nothing', async () => {
    const out = path.join(root, 'never');
    const cases: Array<[string[], RegExp]> = [
      [['data', 'generate', '--out', out, '--scale', 'huge'], /--scale must be small, default or large, got "huge"/],
      [['data', 'generate', '--out', out, '--parties', 'platform,bank'], /unknown party "bank"/],
      [['data', 'generate', '--out', out, '--seed', 'abc'], /--seed expects a number, got "abc"/],
      [['data', 'generate', '--out', out, '--seed', '-3'], /--seed must be >= 0/],
      [['data', 'generate'], /required option '--out <dir>' not specified/],
      [['data', 'generate', '--out', out, '--party-users', 'insurer2=100'], /--party-users: "insurer2" is not one of the generated parties \(platform, insurer\)/],
      [['data', 'generate', '--out', out, '--party-users', 'insurer=lots'], /--party-users: expected PARTY=USERS \(e.g. insurer=2000\), got "insurer=lots"/],
    ];
    for (const [argv, msg] of cases) {
      const r = await run(argv);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
    }
    expect(fs.existsSync(out)).toBe(false);
  });

  it('generates, imports with --json, and reports a bad import with exit 2 and FILE:LINE:COLUMN', async () => {
    const out = path.join(root, 'gen');
    const g = await run(['data', 'generate', '--out', out, '--scale', 'small', '--seed', '4', '--json']);
    expect(g.code).toBe(0);
    const manifest = JSON.parse(g.out);
    expect(manifest).toMatchObject({ seed: 4, scale: 'small', parties: ['platform', 'insurer'] });
    expect(JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))).toEqual(manifest);

    const dir = path.join(root, 'node');
    expect((await run(['node', 'init', '--data-dir', dir, '--name', 'insurer'])).code).toBe(0);
    const files = ['--users', 'users.csv', '--items', 'items.csv', '--interactions', 'interactions.csv'];
    const args = (p: string) => files.map((f, k) => (k % 2 ? path.join(out, p, f) : f));
    const imp = await run(['node', 'import', '--data-dir', dir, ...args('insurer'), '--json']);
    expect(imp.code).toBe(0);
    const report = JSON.parse(imp.out);
    expect(report.catalogueHash).toBe(manifest.catalogue.hash);
    expect(report.counts.users).toBe(manifest.counts.insurer.users);
    expect(report.counts.interactions.stored).toBe(manifest.counts.insurer.interactions);

    // the platform's interactions name users this node does not have: exit 2, dir untouched
    const before = dirFingerprint(dir);
    const bad = await run(['node', 'import', '--data-dir', dir, ...args('insurer').slice(0, 4), '--interactions', path.join(out, 'platform', 'interactions.csv')]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^fedbridge: import failed, nothing was changed: 20\+ error\(s\) \(stopped after 20\)/);
    expect(bad.err).toContain(`${path.join(out, 'platform', 'interactions.csv')}:2:1: (user_id) unknown user "platform-u0000001"`);
    expect(bad.out).toBe('');
    expect(dirFingerprint(dir)).toBe(before);

    // a bad mapping file: exit 2
    const map = path.join(root, 'map.json');
    fs.writeFileSync(map, '{"users": {"nope": "x"}}');
    const m = await run(['node', 'import', '--data-dir', dir, ...args('insurer'), '--mapping', map]);
    expect(m.code).toBe(2);
    expect(m.err).toMatch(/--mapping .*map\.json: users: Unrecognized key/);
    expect(dirFingerprint(dir)).toBe(before);

    // not a node dir: exit 2
    const n = await run(['node', 'import', '--data-dir', path.join(root, 'nothing'), ...args('insurer')]);
    expect(n.code).toBe(2);
    expect(n.err).toMatch(/is not a node data dir/);
  });
});

describe('fedbridge node train-local (CLI) refuses a DP setting without --dp-epsilon', () => {
  it('names the flags and says the model would not be private; nothing is trained', async () => {
    const dir = path.join(tempDir('trainlocal'), 'node');
    const r = await run(['node', 'train-local', '--data-dir', dir, '--dp-delta', '1e-7', '--dp-clip', '0.5']);
    expect(r.code).toBe(2);
    expect(r.err).toBe('fedbridge: --dp-delta, --dp-clip applies to DP-SGD training: give --dp-epsilon too (without it the model is trained without differential privacy)\n');
    expect(fs.existsSync(dir)).toBe(false);
  });
});
