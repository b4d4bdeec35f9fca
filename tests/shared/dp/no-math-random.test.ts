/**
 * The noise, sampler and encoder modules never reach Math.random or tfjs's random ops:
 * (1) at run time, with Math.random stubbed to throw, every sampling path still works;
 * (2) statically, the sources of shared/dp and participant-node/privacy, and every module they import
 *     (followed transitively through relative imports), contain no Math.random, no crypto.getRandomValues
 *     / Node crypto RNG bypassing libsodium, and no tfjs import or tf.random* call.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { DiscreteGaussian } from '../../../shared/dp/discrete';
import { CsprngBitSource } from '../../../shared/dp/bits';
import { gaussianNoise } from '../../../shared/dp/gaussian';
import { encodeUpdate } from '../../../shared/dp/encode';

const ROOT = path.resolve(__dirname, '../../..');

beforeAll(async () => {
  await sodiumReady();
});

test('sampling works with Math.random stubbed to throw', () => {
  const spy = jest.spyOn(Math, 'random').mockImplementation(() => {
    throw new Error('Math.random reached');
  });
  try {
    for (const s2 of [0.25, 1, 10000, 1e8]) {
      const xs = new DiscreteGaussian(s2).fill(new Float64Array(2000));
      expect(xs.some((v) => v !== 0)).toBe(true);
    }
    const g = gaussianNoise(10001, 2);
    expect(g.length).toBe(10001);
    expect(new CsprngBitSource().uniform(1000)).toBeLessThan(1000);
    const e = encodeUpdate(new Float64Array(100).fill(0.01), {
      clip: 1,
      gamma: 100,
      bits: 32,
      rotationSeed: new Uint8Array(32),
      beta: Math.exp(-0.5),
      noise: { sigma: 1, mode: 'per-party', nMin: 1 },
    });
    expect(e.data.length).toBe(128);
    expect(spy).not.toHaveBeenCalled();
  } finally {
    spy.mockRestore();
  }
});

function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

function closure(entries: string[]): string[] {
  const seen = new Set<string>();
  const todo = [...entries];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const src = fs.readFileSync(f, 'utf8');
    for (const m of src.matchAll(/(?:from\s+|import\(\s*|require\(\s*)['"](\.[^'"]+)['"]/g)) {
      const base = path.resolve(path.dirname(f), m[1]);
      for (const cand of [base + '.ts', path.join(base, 'index.ts')]) if (fs.existsSync(cand)) todo.push(cand);
    }
  }
  return [...seen].sort();
}

test('static scan: no Math.random, no tfjs, no RNG other than libsodium in the DP modules and their imports', () => {
  const dirs = ['shared/dp', 'participant-node/privacy'].map((d) => path.join(ROOT, d)).filter((d) => fs.existsSync(d));
  const entries = dirs.flatMap((d) => fs.readdirSync(d).filter((f) => f.endsWith('.ts')).map((f) => path.join(d, f)));
  expect(entries.length).toBeGreaterThanOrEqual(6);
  const files = closure(entries);
  expect(files.some((f) => f.endsWith(path.join('shared', 'crypto', 'sodium.ts')))).toBe(true);
  const banned: [RegExp, string][] = [
    [/Math\s*\.\s*random/, 'Math.random'],
    [/@tensorflow\//, 'tfjs import'],
    [/\btf\s*\.\s*random/, 'tf.random*'],
    [/randomNormal|randomUniform|truncatedNormal/, 'tfjs random op'],
    [/getRandomValues|randomFillSync|randomInt\(/, 'RNG other than libsodium'],
  ];
  const hits: string[] = [];
  for (const f of files) {
    const code = stripComments(fs.readFileSync(f, 'utf8'));
    for (const [re, what] of banned) if (re.test(code)) hits.push(`${path.relative(ROOT, f)}: ${what}`);
  }
  expect(hits).toEqual([]);
});

test('the static scan itself catches a violation', () => {
  const code = stripComments('const x = 1; // Math.random is fine in a comment\nconst y = Math.random();\n');
  expect(/Math\s*\.\s*random/.test(code)).toBe(true);
  expect(/Math\s*\.\s*random/.test(stripComments('/* Math.random */ const z = 2; // Math.random'))).toBe(false);
});
