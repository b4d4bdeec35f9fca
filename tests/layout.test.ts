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
import { builtinModules } from 'node:module';

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

/**
 * What runs in production is installed by `npm ci --omit=dev` (the GPU bundle, a deployment): every
 * package the product's code loads at run time must be a dependency (or an optional one), never a
 * devDependency only. Found on the GPU machine: the generated protobuf code needs
 * `@bufbuild/protobuf`, which was only a devDependency (via ts-proto), so a production install
 * could not start the coordinator.
 */
describe('run-time packages are dependencies', () => {
  const PRODUCT = ['coordinator', 'participant-node', 'shared', 'bin', 'proto'];
  /** loaded by name only when present, installed by hand (README: Training backends) */
  const INSTALLED_BY_HAND = new Set(['webgpu', '@tensorflow/tfjs-backend-webgpu', '@tensorflow/tfjs-node']);
  const pkgJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
  const runtime = new Set([...Object.keys(pkgJson.dependencies ?? {}), ...Object.keys(pkgJson.optionalDependencies ?? {})]);
  const builtins = new Set<string>(builtinModules);
  /** a bare npm specifier: optional @scope/, a name, optional /sub/path */
  const PACKAGE_NAME = /^(?:@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(?:\/[\w.-]+)*$/i;

  /** Bare package names a file loads at run time (type-only imports and exports left out). */
  function runtimePackages(text: string): string[] {
    const code = text.replace(/^\s*(?:import|export)\s+type\b[^;]*;/gms, '');
    return specifiers(code)
      .filter((s) => PACKAGE_NAME.test(s)) // "from '...'" inside a message string is no import
      .filter((s) => !s.startsWith('node:') && !builtins.has(s.split('/')[0]))
      .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]));
  }

  test('the reader leaves type-only imports out and names packages, not their sub-paths', () => {
    expect(runtimePackages("import type { A } from 'a-types';\nimport type {\n  B,\n} from 'b-types';\nimport { c } from '@scope/pkg/wire';\nimport * as fs from 'fs';\nrequire('lib/sub');\nconst m = `moved from ${a} to ${b}`; throw new Error('read from  the file');")).toEqual(['@scope/pkg', 'lib']);
  });

  test('every bare module the product code loads is in dependencies or optionalDependencies', () => {
    const files = PRODUCT.filter((d) => fs.existsSync(path.join(ROOT, d))).flatMap((d) => sources(path.join(ROOT, d)));
    expect(files.some((f) => f.includes(`${path.sep}gen${path.sep}`))).toBe(true); // the generated proto code is read too
    const missing = files.flatMap((file) =>
      runtimePackages(fs.readFileSync(file, 'utf8'))
        .filter((p) => !runtime.has(p) && !INSTALLED_BY_HAND.has(p))
        .map((p) => `${path.relative(ROOT, file)} loads ${p}`),
    );
    expect([...new Set(missing)]).toEqual([]);
  });
});
