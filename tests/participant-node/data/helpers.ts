/** Shared helpers for the data tests: temp dirs, tiny CSV reader, directory fingerprint. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { parse } from 'csv-parse/sync';

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `fedbridge-${prefix}-`));
}

/** Reads a CSV (with csv-parse) into objects keyed by header. */
export function readCsv(file: string): Array<Record<string, string>> {
  return parse(fs.readFileSync(file), { columns: true, bom: true }) as Array<Record<string, string>>;
}

/** A fingerprint of a directory tree: every path, file mode and content hash. */
export function dirFingerprint(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string, rel: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const full = path.join(d, name);
      const st = fs.statSync(full);
      h.update(`${rel}/${name}\0${st.mode}\0`);
      if (st.isDirectory()) walk(full, `${rel}/${name}`);
      else h.update(fs.readFileSync(full));
    }
  };
  walk(dir, '');
  return h.digest('hex');
}
