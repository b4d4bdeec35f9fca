/**
 * A require hook that lets `node -r tests/demo/ts-hook.js bin/fedbridge.ts ...` run the CLI from
 * the TypeScript sources (the demo test spawns the real coordinator and node processes this way,
 * without building dist/). Transpile-only with the project's compiler options, like ts-jest;
 * outputs are cached by content hash under tmp/ts-hook-cache so each child starts quickly.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const ts = require('typescript');

const root = path.resolve(__dirname, '..', '..');
const cfg = ts.readConfigFile(path.join(root, 'tsconfig.json'), ts.sys.readFile);
const parsed = ts.parseJsonConfigFileContent(cfg.config, ts.sys, root);
const options = { ...parsed.options, module: ts.ModuleKind.CommonJS, sourceMap: false, inlineSourceMap: true, inlineSources: false, declaration: false, noEmit: false };
const cacheDir = path.join(root, 'tmp', 'ts-hook-cache');
fs.mkdirSync(cacheDir, { recursive: true });
const salt = ts.version + JSON.stringify(options);

require.extensions['.ts'] = function (module, filename) {
  const src = fs.readFileSync(filename, 'utf8');
  const key = crypto.createHash('sha256').update(salt).update(filename).update(src).digest('hex');
  const cached = path.join(cacheDir, key + '.js');
  let out;
  try {
    out = fs.readFileSync(cached, 'utf8');
  } catch {
    out = ts.transpileModule(src, { compilerOptions: options, fileName: filename }).outputText;
    const tmp = `${cached}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, out);
    fs.renameSync(tmp, cached);
  }
  module._compile(out, filename);
};
