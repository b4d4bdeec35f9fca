#!/usr/bin/env node
/**
 * Builds the static auditor page: bundles src/page.ts (the pure verifier of shared/audit plus the
 * page's rendering) for the browser with esbuild and copies index.html, into `dist/` (or the
 * directory given as the first argument). Run: node coordinator/http/audit-page/build.js [OUTDIR]
 * The coordinator serves OUTDIR under /audit/ (proto/fedbridge/v1/audit-api.openapi.yaml).
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

async function build(outDir = path.join(__dirname, 'dist')) {
  fs.mkdirSync(outDir, { recursive: true });
  const res = await esbuild.build({
    entryPoints: [path.join(__dirname, 'src', 'page.ts')],
    bundle: true,
    outfile: path.join(outDir, 'audit-page.js'),
    platform: 'browser',
    format: 'iife',
    target: ['es2020'],
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    // libsodium's Emscripten loader names Node modules on a Node-only branch that never runs in a browser
    external: ['fs', 'path', 'crypto'],
    logLevel: 'warning',
    metafile: true,
  });
  fs.copyFileSync(path.join(__dirname, 'index.html'), path.join(outDir, 'index.html'));
  const bytes = Object.values(res.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  return { outDir, bytes };
}

module.exports = { build };

if (require.main === module) {
  build(process.argv[2]).then(
    (r) => process.stdout.write(`built the auditor page in ${r.outDir} (${r.bytes} bytes of script)\n`),
    (e) => {
      process.stderr.write(`audit page build failed: ${e.message}\n`);
      process.exitCode = 1;
    },
  );
}
