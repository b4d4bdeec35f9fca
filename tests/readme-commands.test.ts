/**
 * Every `fedbridge ...` command line in the READMEs names a real command and only options it has
 * (continuation lines ending in "\" are joined; "..." placeholders and shell variables are skipped).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../bin/fedbridge';

const ROOT = path.resolve(__dirname, '..');
const READMES = ['README.md', 'coordinator/README.md'];

/** [file:line, command words, --options used] for each `fedbridge` command written in `text`. */
function commandLines(file: string, text: string): Array<{ where: string; words: string[]; flags: string[] }> {
  const lines = text.split('\n');
  const out: Array<{ where: string; words: string[]; flags: string[] }> = [];
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i];
    for (let j = i; line.endsWith('\\') && j + 1 < lines.length; ) line = line.slice(0, -1) + ' ' + lines[++j];
    for (const m of line.matchAll(/fedbridge ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)*)((?: +[^`;#&]*)?)/g)) {
      out.push({ where: `${file}:${i + 1}`, words: m[1].split(' '), flags: [...(m[1] + ' ' + m[2]).matchAll(/(?:^|\s|\[)(--[a-z][a-z0-9-]*)/g)].map((x) => x[1]) });
    }
  }
  return out;
}

describe('README command lines', () => {
  const program = buildProgram();
  const found = READMES.flatMap((f) => commandLines(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));

  test('the reader finds the command lines (so the check below can fail)', () => {
    expect(found.length).toBeGreaterThan(20);
    expect(commandLines('x', 'npx fedbridge policy sign --policy p.yaml \\\n  --data-dir n   # comment --nope')).toEqual([{ where: 'x:1', words: ['policy', 'sign'], flags: ['--policy', '--data-dir'] }]);
  });

  test('each names a command and only its options', () => {
    const problems: string[] = [];
    for (const { where, words, flags } of found) {
      let cmd: Command = program;
      let depth = 0;
      for (const w of words) {
        const sub = cmd.commands.find((c) => c.name() === w);
        if (!sub) break;
        cmd = sub;
        depth++;
      }
      if (depth === 0) continue; // prose such as "fedbridge is ..."
      if (cmd.commands.length) continue; // a group named in prose ("fedbridge coordinator runs start|abort")
      const known = new Set(cmd.options.flatMap((o) => [o.long, o.short]).concat('--help'));
      const unknown = flags.filter((f) => !known.has(f));
      if (unknown.length) problems.push(`${where}: fedbridge ${words.slice(0, depth).join(' ')} has no ${unknown.join(', ')}`);
    }
    expect(problems).toEqual([]);
  });
});
