/**
 * DESIGN §2's import rules, checked over the sources: `coordinator/` and `participant-node/` never
 * import each other, both stand on `shared/` (which imports neither); TensorFlow.js is imported
 * only inside `participant-node/` (the coordinator handles flat vectors); NestJS only inside
 * `coordinator/`; `shared/` runs no servers. Static imports, dynamic `import()` and `require()` are
 * all read. (bin/ and bench/ are the CLI entry, the demo harness and benchmarks: they may use any
 * package.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const PACKAGES = ['coordinator', 'participant-node', 'shared'] as const;
type Pkg = (typeof PACKAGES)[number];

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) return d.name === 'node_modules' ? [] : sources(p);
    return d.isFile() && d.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every module specifier a file imports (static, dynamic, require, export-from). */
function specifiers(text: string): string[] {
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;
  return [...text.matchAll(re)].map((m) => m[1]);
}

/** The top-level folder a relative specifier in `file` lands in, or the package name of a bare one. */
function target(file: string, spec: string): { local: string } | { pkg: string } {
  if (!spec.startsWith('.')) return { pkg: spec };
  return { local: path.relative(ROOT, path.resolve(path.dirname(file), spec)).split(path.sep)[0] };
}

describe('DESIGN §2 import rules', () => {
  const files = PACKAGES.flatMap((pkg) => sources(path.join(ROOT, pkg)).map((file) => ({ pkg, file, text: fs.readFileSync(file, 'utf8') })));

  test('the reader sees every kind of import (so the rules below can fail)', () => {
    expect(specifiers("import a from '../x';\nimport { b } from \"y\";\nexport * from './z';\nconst c = await import('@tensorflow/tfjs');\nrequire('w');\nimport 'side-effect';")).toEqual([
      '../x',
      'y',
      './z',
      '@tensorflow/tfjs',
      'w',
      'side-effect',
    ]);
    expect(target(path.join(ROOT, 'shared', 'secagg', 'wire.ts'), '../../coordinator/main')).toEqual({ local: 'coordinator' });
    expect(target(path.join(ROOT, 'shared', 'secagg', 'wire.ts'), '../proto/wire-check')).toEqual({ local: 'shared' });
    expect(files.length).toBeGreaterThan(100);
  });

  test('coordinator/ and participant-node/ never import each other; shared/ imports neither', () => {
    const forbidden: Record<Pkg, string[]> = { coordinator: ['participant-node', 'bin', 'bench', 'tests'], 'participant-node': ['coordinator', 'bin', 'bench', 'tests'], shared: ['coordinator', 'participant-node', 'bin', 'bench', 'tests'] };
    const bad = files.flatMap(({ pkg, file, text }) =>
      specifiers(text)
        .map((s) => ({ s, t: target(file, s) }))
        .filter(({ t }) => 'local' in t && forbidden[pkg].includes(t.local))
        .map(({ s }) => `${path.relative(ROOT, file)} imports ${s}`),
    );
    expect(bad).toEqual([]);
  });

  test('TensorFlow.js only in participant-node/, NestJS only in coordinator/, no servers in shared/', () => {
    const bad = files.flatMap(({ pkg, file, text }) => {
      const rel = path.relative(ROOT, file);
      const out: string[] = [];
      for (const s of specifiers(text)) {
        if (s.startsWith('@tensorflow/') && pkg !== 'participant-node') out.push(`${rel} imports ${s}`);
        if (s.startsWith('@nestjs/') && pkg !== 'coordinator') out.push(`${rel} imports ${s}`);
      }
      if (pkg === 'shared' && /\bcreateServer\s*\(|new\s+grpc\.Server\s*\(|\.listen\s*\(/.test(text)) out.push(`${rel} starts a server`);
      return out;
    });
    expect(bad).toEqual([]);
  });
});
