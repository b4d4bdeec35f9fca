/**
 * `fedbridge node import`: streams the party's users, the shared catalogue and the interactions
 * from CSV (csv-parse; BOM and CRLF handled), maps the file's column names to ours, validates every
 * value against the feature vocabularies, and stores the result in the node data dir atomically
 * (participant-node/data/store.ts): a failed import leaves DIR/data exactly as it was.
 *
 * Canonical columns (defaults; `--mapping` renames them, JSON or YAML):
 *   users:        id (user_id), age_band, region, life_stage, interests ("a|b|c", may be empty)
 *   items:        id (item_id), provider (optional column), domain, price_band, topics ("a|b")
 *   interactions: user_id, item_id, timestamp (a number: unix seconds, at most MAX_TIMESTAMP = year 9999)
 *   e.g. { "users": { "id": "customer_id", "age_band": "age" } }
 *
 * Every problem is reported as FILE:LINE:COLUMN (column = 1-based field position, with its header
 * name): missing or duplicate column, two fields mapped to one column, unknown feature value, a
 * control character in an id or value, non-numeric or out-of-range timestamp, duplicate id,
 * interaction for an unknown user or item, empty file, malformed CSV, a record over 1 MiB. Values
 * quoted in messages are escaped (\u001b, \u202e, ...: shared/util/text.ts forTerminal) and cut to 80 characters. Up to `maxErrors` (20) are collected, then
 * the import stops; nothing is stored if there was any error (exit code 2).
 *
 * The stored interactions are sorted by (user, timestamp, item) and exact repeats (same user, item
 * and timestamp) are removed; the report says how many.
 */
import * as fs from 'node:fs';
import { isUtf8 } from 'node:buffer';
import * as path from 'node:path';
import { parse, type CsvError } from 'csv-parse';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_VOCABULARIES, DOMAINS, type Domain, type Vocabularies } from '../../shared/data/vocab';
import { catalogueHash } from '../../shared/data/catalogue';
import { sodiumReady } from '../../shared/crypto/sodium';
import { UserError } from '../../shared/cli/errors';
import { readNodeInfo } from '../identity';
import type { ItemRecord, NodeDataset, UserRecord } from './dataset';
import { storeDataset } from './store';
import { formatZodIssues } from '../../shared/util/zod-issues';
import { forTerminal } from '../../shared/util/text';

export const USER_FIELDS = ['id', 'age_band', 'region', 'life_stage', 'interests'] as const;
export const ITEM_FIELDS = ['id', 'provider', 'domain', 'price_band', 'topics'] as const;
export const INTERACTION_FIELDS = ['user_id', 'item_id', 'timestamp'] as const;
type UserField = (typeof USER_FIELDS)[number];
type ItemField = (typeof ITEM_FIELDS)[number];
type InteractionField = (typeof INTERACTION_FIELDS)[number];

const DEFAULT_COLUMNS = {
  users: { id: 'user_id', age_band: 'age_band', region: 'region', life_stage: 'life_stage', interests: 'interests' } as Record<UserField, string>,
  items: { id: 'item_id', provider: 'provider', domain: 'domain', price_band: 'price_band', topics: 'topics' } as Record<ItemField, string>,
  interactions: { user_id: 'user_id', item_id: 'item_id', timestamp: 'timestamp' } as Record<InteractionField, string>,
};
/** columns that may be absent (then: provider "") */
const OPTIONAL_COLUMNS = new Set<string>(['items.provider']);

const colName = z.string().min(1);
function fieldMap<K extends string>(keys: readonly K[]) {
  return z
    .object(Object.fromEntries(keys.map((k) => [k, colName.optional()])) as Record<K, z.ZodOptional<z.ZodString>>)
    .strict()
    .optional();
}
export const mappingSchema = z
  .object({ users: fieldMap(USER_FIELDS), items: fieldMap(ITEM_FIELDS), interactions: fieldMap(INTERACTION_FIELDS) })
  .strict();
export type ColumnMapping = z.infer<typeof mappingSchema>;

/** Reads and validates a `--mapping` file (JSON or YAML). */
export function readMapping(file: string): ColumnMapping {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`--mapping ${file}: ${(e as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = parseYaml(text, { uniqueKeys: true });
  } catch (e) {
    throw new UserError(`--mapping ${file}: not valid JSON/YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = mappingSchema.safeParse(obj ?? {});
  if (!r.success) {
    const issues = formatZodIssues(r.error);
    throw new UserError(`--mapping ${file}: ${issues.join('; ')} (expected e.g. {"users": {"id": "customer_id", "age_band": "age"}})`);
  }
  return r.data;
}

export interface ImportOptions {
  dataDir: string;
  users: string;
  items: string;
  interactions: string;
  mapping?: ColumnMapping;
  vocabularies?: Vocabularies;
  /** stop after this many errors (default 20) */
  maxErrors?: number;
}

export interface ImportReport {
  party: string;
  dataDir: string;
  catalogueHash: string;
  counts: {
    users: number;
    items: number;
    interactions: { rows: number; stored: number; duplicatesRemoved: number };
  };
  domains: Record<string, number>;
}

/** The import found bad input; `errors` are "FILE:LINE:COLUMN: message" lines. Exit code 2. */
export class ImportError extends UserError {
  constructor(readonly errors: string[], truncated: boolean, what = 'import failed, nothing was changed') {
    super(
      `${what}: ${errors.length}${truncated ? '+' : ''} error(s)` +
        (truncated ? ` (stopped after ${errors.length})` : '') +
        `\n  ${errors.join('\n  ')}`,
      2,
    );
    this.name = 'ImportError';
  }
}

class TooManyErrors extends Error {}

/** The longest CSV record (line, or lines inside quotes) the import reads: 1 MiB. */
export const MAX_RECORD_BYTES = 1 << 20;

/**
 * The largest timestamp the import takes: 253402300799 unix seconds = 9999-12-31T23:59:59Z. A larger
 * number is not a date in seconds (epoch milliseconds are refused here too, with a hint).
 */
export const MAX_TIMESTAMP = 253_402_300_799;

/** C0/C1 control characters and DEL: never part of an id or a feature value. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** An input value as quoted in a message: escaped, and cut to 80 characters. */
function q(value: string): string {
  const cut = value.length > 80 ? `${value.slice(0, 80)}...(${value.length} characters)` : value;
  return `"${forTerminal(cut)}"`;
}

class ErrorLog {
  readonly list: string[] = [];
  truncated = false;
  constructor(private readonly max: number) {}
  add(file: string, line: number, column: number, message: string): void {
    // every value quoted from the input is escaped by q(); this also covers file names and parser text
    this.list.push(forTerminal(`${file}:${line}:${column}: ${message}`));
    if (this.list.length >= this.max) {
      this.truncated = true;
      throw new TooManyErrors();
    }
  }
}

interface Row {
  line: number;
  fields: string[];
}

/** Byte offset of the first invalid UTF-8 sequence in `b` (WHATWG rules, as isUtf8), or -1. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += n + 1;
  }
  return -1;
}

/** Length of an incomplete multi-byte sequence at the end of `b` (0..3 bytes, to carry to the next block). */
function incompleteTail(b: Uint8Array): number {
  for (let back = 1; back <= Math.min(3, b.length); back++) {
    const c = b[b.length - back];
    if ((c & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

/**
 * Reports every line of `file` that is not valid UTF-8 (line, and the character column of the
 * first bad byte sequence). Streams the file in 1 MiB blocks in linear time and constant memory,
 * however long a line is: only an incomplete multi-byte sequence at the end of a block (at most
 * 3 bytes) is carried to the next one, and the line number and the column (UTF-16 units, as a
 * text editor counts them) are tracked across blocks. The CSV reader would otherwise turn such
 * bytes into U+FFFD and import changed ids and values without a word.
 */
function checkUtf8(file: string, log: ErrorLog): void {
  const fd = fs.openSync(file, 'r');
  try {
    const block = Buffer.alloc((1 << 20) + 3);
    let carried = 0; // bytes at the start of `block` carried over from the previous read
    let line = 1;
    let col = 0; // characters of the current line before this chunk
    let lineReported = false; // the current line already has an error
    const check = (buf: Buffer): void => {
      if (isUtf8(buf)) {
        // the common case, checked a block at a time (per line it cost ~0.5 s per 37 MB)
        const last = buf.lastIndexOf(0x0a);
        if (last < 0) {
          col += buf.toString('utf8').length;
          return;
        }
        for (let i = buf.indexOf(0x0a); i >= 0 && i <= last; i = buf.indexOf(0x0a, i + 1)) line++;
        col = buf.toString('utf8', last + 1).length;
        lineReported = false;
        return;
      }
      let start = 0;
      while (start < buf.length) {
        const nl = buf.indexOf(0x0a, start);
        const end = nl < 0 ? buf.length : nl;
        const seg = buf.subarray(start, end);
        if (!lineReported) {
          const bad = firstInvalidUtf8(seg);
          if (bad >= 0) {
            lineReported = true;
            log.add(file, line, col + seg.toString('utf8', 0, bad).length + 1, 'not valid UTF-8 (save the file as UTF-8; other encodings are not converted)');
          }
        }
        if (nl < 0) {
          col += seg.toString('utf8').length;
          break;
        }
        line++;
        col = 0;
        lineReported = false;
        start = nl + 1;
      }
    };
    for (;;) {
      const n = fs.readSync(fd, block, carried, block.length - 3, null);
      if (n === 0) break;
      const data = block.subarray(0, carried + n);
      const tail = incompleteTail(data);
      check(data.subarray(0, data.length - tail));
      data.copyWithin(0, data.length - tail);
      carried = tail;
    }
    if (carried) check(block.subarray(0, carried));
  } finally {
    fs.closeSync(fd);
  }
}

/** Column positions resolved from the header: field -> 0-based index (-1 = absent optional). */
type Columns<K extends string> = Record<K, number>;

/**
 * Streams a CSV file: validates the header against the mapped columns, then calls `onRow` for
 * each data row. Reports empty files, missing columns, malformed rows.
 */
async function streamCsv<K extends string>(
  file: string,
  group: keyof typeof DEFAULT_COLUMNS,
  fields: readonly K[],
  mapping: Partial<Record<K, string>> | undefined,
  log: ErrorLog,
  onRow: (row: Row, cols: Columns<K>, header: string[]) => void,
): Promise<{ rows: number; headerOk: boolean }> {
  if (!fs.existsSync(file)) throw new UserError(`${file}: no such file`);
  if (!fs.statSync(file).isFile()) throw new UserError(`${file}: not a regular file`);
  checkUtf8(file, log);
  let lastLine = 0; // line of the last record read
  let unclosedQuote: CsvError | undefined;
  const csvMessage = (err: CsvError): string =>
    err.code === 'CSV_MAX_RECORD_SIZE'
      ? `record longer than ${MAX_RECORD_BYTES} bytes (a wrong delimiter or an unclosed quote?); the import reads records up to that size`
      : `malformed CSV: ${err.message.replace(/\s*(at|on) line \d+\.?$/, '')}`;
  const reportCsvError = (err: CsvError): void => {
    // an open quote swallows the rest of the file; reported once every good record has been read
    if (err.code === 'CSV_QUOTE_NOT_CLOSED') unclosedQuote = err;
    else log.add(file, typeof err.lines === 'number' ? err.lines : lastLine + 1, 1, csvMessage(err));
  };
  const reportUnclosedQuote = (): void => {
    if (unclosedQuote) {
      log.add(file, lastLine + 1, 1, `${csvMessage(unclosedQuote)} (a field opened with a quote after line ${lastLine} is never closed)`);
    }
  };
  const source = fs.createReadStream(file);
  const parser = source.pipe(
    parse({
      bom: true,
      info: true,
      skip_empty_lines: true,
      relax_column_count: false,
      skip_records_with_error: true,
      // bounds the memory one record can take (the parser buffers a record until it ends)
      max_record_size: MAX_RECORD_BYTES,
      on_skip: (err: CsvError | undefined) => {
        // past the limit the rest of the record is unbounded too: end this file's parse (reported below)
        if (err?.code === 'CSV_MAX_RECORD_SIZE') throw err;
        if (err) reportCsvError(err);
        return undefined;
      },
    }),
  );
  let header: string[] | undefined;
  let cols: Columns<K> | undefined;
  let rows = 0;
  let headerOk = true;
  try {
    for await (const rec of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      const { record, info } = rec;
      lastLine = info.lines;
      if (!header) {
        header = record.map((h) => h.trim());
        const c = {} as Columns<K>;
        const usedBy = new Map<number, K>(); // column index -> the field read from it
        for (const f of fields) {
          const name = mapping?.[f] ?? (DEFAULT_COLUMNS[group] as Record<string, string>)[f];
          const via = mapping?.[f] ? ` (mapped from ${group}.${f})` : '';
          const idx = header.indexOf(name);
          if (idx < 0 && !OPTIONAL_COLUMNS.has(`${group}.${f}`)) {
            headerOk = false;
            log.add(file, info.lines, header.length + 1, `missing column ${q(name)}${via}; the header has: ${header.join(', ')}`);
          }
          if (idx >= 0) {
            // a second column of that name would make the choice arbitrary
            const again = header.indexOf(name, idx + 1);
            if (again >= 0) {
              headerOk = false;
              log.add(file, info.lines, again + 1, `duplicate column ${q(name)}${via} (columns ${idx + 1} and ${again + 1}); rename one of them`);
            }
            const other = usedBy.get(idx);
            if (other !== undefined) {
              headerOk = false;
              log.add(file, info.lines, idx + 1, `${group}.${other} and ${group}.${f} both read column ${idx + 1} ${q(name)}; map each field to its own column`);
            }
            usedBy.set(idx, f);
          }
          c[f] = idx;
        }
        cols = c;
        if (!headerOk) break; // no point checking rows against a header we cannot map
        continue;
      }
      rows++;
      onRow({ line: info.lines, fields: record }, cols!, header);
    }
  } catch (e) {
    // errors csv-parse cannot skip past (e.g. an unclosed quote) end this file's parse
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string' || !code.startsWith('CSV_')) throw e;
    reportCsvError(e as CsvError);
    reportUnclosedQuote();
    return { rows, headerOk: false };
  } finally {
    parser.destroy();
    source.destroy();
  }
  if (unclosedQuote) {
    reportUnclosedQuote();
    return { rows, headerOk: false };
  }
  if (!header) log.add(file, 1, 1, `empty file (expected a header row: ${fields.map((f) => mapping?.[f] ?? (DEFAULT_COLUMNS[group] as Record<string, string>)[f]).join(',')})`);
  else if (headerOk && rows === 0) log.add(file, 2, 1, 'no data rows after the header');
  return { rows, headerOk };
}

function splitList(raw: string): string[] {
  const t = raw.trim();
  if (t === '') return [];
  return t.split('|').map((s) => s.trim());
}

/** Sorts a list of vocabulary values into vocabulary order (a canonical, party-independent order). */
function inVocabOrder(values: string[], vocab: readonly string[]): string[] {
  return [...new Set(values)].sort((a, b) => vocab.indexOf(a) - vocab.indexOf(b));
}

/**
 * Runs the import. Throws ImportError (exit 2) listing FILE:LINE:COLUMN problems and stores nothing
 * if the input is bad; otherwise replaces DIR/data atomically and returns the report.
 */
export async function importCsv(opts: ImportOptions): Promise<ImportReport> {
  const info = readNodeInfo(opts.dataDir);
  const vocab = opts.vocabularies ?? DEFAULT_VOCABULARIES;
  const log = new ErrorLog(opts.maxErrors ?? 20);
  const mapping = opts.mapping ?? {};

  const users: UserRecord[] = [];
  const userIndex = new Map<string, number>();
  const userLine: number[] = [];
  const items: ItemRecord[] = [];
  const itemIndex = new Map<string, number>();
  const itemLine: number[] = [];
  let iu: number[] = [];
  let ii: number[] = [];
  let its: number[] = [];
  let interactionRows = 0;
  let interactionsChecked = false;

  /** Refuses a value with a control character (newline, NUL, ESC, ...): ids and features are text. */
  const noControl = (file: string, row: Row, col: number, header: string[], what: string, value: string): boolean => {
    const m = CONTROL.exec(value);
    if (!m) return true;
    log.add(file, row.line, col + 1, `(${header[col]}) ${what} ${q(value)} contains the control character ${forTerminal(m[0])} (at character ${m.index + 1})`);
    return false;
  };
  const checkValue = (file: string, row: Row, col: number, header: string[], field: string, value: string, list: readonly string[]): boolean => {
    if (list.includes(value)) return true;
    if (!noControl(file, row, col, header, field, value)) return false;
    const shown = list.length > 12 ? `${list.slice(0, 12).join(', ')}, ...` : list.join(', ');
    log.add(file, row.line, col + 1, `(${header[col]}) unknown ${field} ${q(value)} (expected one of: ${shown})`);
    return false;
  };
  const checkId = (file: string, row: Row, col: number, header: string[], seen: Map<string, number>, lines: number[], kind: string): string | undefined => {
    const id = row.fields[col].trim();
    if (!noControl(file, row, col, header, `${kind} id`, id)) return undefined;
    if (id === '') {
      log.add(file, row.line, col + 1, `(${header[col]}) empty ${kind} id`);
      return undefined;
    }
    const prev = seen.get(id);
    if (prev !== undefined) {
      log.add(file, row.line, col + 1, `(${header[col]}) duplicate ${kind} id ${q(id)} (first at line ${lines[prev]})`);
      return undefined;
    }
    return id;
  };

  try {
    // ---- users
    await streamCsv(opts.users, 'users', USER_FIELDS, mapping.users, log, (row, c, header) => {
      const f = row.fields;
      const id = checkId(opts.users, row, c.id, header, userIndex, userLine, 'user');
      let ok = id !== undefined;
      const ageBand = f[c.age_band].trim();
      const region = f[c.region].trim();
      const lifeStage = f[c.life_stage].trim();
      ok = checkValue(opts.users, row, c.age_band, header, 'age_band', ageBand, vocab.ageBand) && ok;
      ok = checkValue(opts.users, row, c.region, header, 'region', region, vocab.region) && ok;
      ok = checkValue(opts.users, row, c.life_stage, header, 'life_stage', lifeStage, vocab.lifeStage) && ok;
      const interests = splitList(f[c.interests]);
      for (const t of interests) ok = checkValue(opts.users, row, c.interests, header, 'interest topic', t, vocab.topics) && ok;
      if (!ok) return;
      userIndex.set(id!, users.length);
      userLine.push(row.line);
      users.push({ id: id!, ageBand, region, lifeStage, interests: inVocabOrder(interests, vocab.topics) });
    });

    // ---- items (the shared catalogue, in file order)
    await streamCsv(opts.items, 'items', ITEM_FIELDS, mapping.items, log, (row, c, header) => {
      const f = row.fields;
      const id = checkId(opts.items, row, c.id, header, itemIndex, itemLine, 'item');
      let ok = id !== undefined;
      const provider = c.provider >= 0 ? f[c.provider].trim() : '';
      if (c.provider >= 0) ok = noControl(opts.items, row, c.provider, header, 'provider', provider) && ok;
      const domain = f[c.domain].trim();
      const priceBand = f[c.price_band].trim();
      ok = checkValue(opts.items, row, c.domain, header, 'domain', domain, vocab.domain.filter((d) => (DOMAINS as readonly string[]).includes(d))) && ok;
      ok = checkValue(opts.items, row, c.price_band, header, 'price_band', priceBand, vocab.priceBand) && ok;
      const topics = splitList(f[c.topics]);
      for (const t of topics) ok = checkValue(opts.items, row, c.topics, header, 'topic', t, vocab.topics) && ok;
      if (!ok) return;
      itemIndex.set(id!, items.length);
      itemLine.push(row.line);
      items.push({ id: id!, provider, domain: domain as Domain, priceBand, topics: inVocabOrder(topics, vocab.topics) });
    });

    if (log.list.length === 0) {
      interactionsChecked = true;
      // ---- interactions (checked against the users and items above)
      const res = await streamCsv(opts.interactions, 'interactions', INTERACTION_FIELDS, mapping.interactions, log, (row, c, header) => {
        const f = row.fields;
        const uid = f[c.user_id].trim();
        const iid = f[c.item_id].trim();
        const rawTs = f[c.timestamp].trim();
        const u = userIndex.get(uid);
        const i = itemIndex.get(iid);
        let ok = true;
        if (u === undefined) {
          log.add(opts.interactions, row.line, c.user_id + 1, `(${header[c.user_id]}) unknown user ${q(uid)} (not in ${opts.users})`);
          ok = false;
        }
        if (i === undefined) {
          log.add(opts.interactions, row.line, c.item_id + 1, `(${header[c.item_id]}) unknown item ${q(iid)} (not in ${opts.items})`);
          ok = false;
        }
        const ts = rawTs === '' ? NaN : Number(rawTs);
        if (!/^[0-9]+(\.[0-9]+)?$/.test(rawTs) || !Number.isFinite(ts)) {
          log.add(opts.interactions, row.line, c.timestamp + 1, `(${header[c.timestamp]}) expected a non-negative number (unix seconds), got ${q(rawTs)}`);
          ok = false;
        } else if (ts > MAX_TIMESTAMP) {
          const hint = ts <= MAX_TIMESTAMP * 1000 ? ' (milliseconds? divide by 1000)' : '';
          log.add(opts.interactions, row.line, c.timestamp + 1, `(${header[c.timestamp]}) timestamp ${q(rawTs)} is past ${MAX_TIMESTAMP} (9999-12-31 in unix seconds)${hint}`);
          ok = false;
        }
        if (!ok) return;
        iu.push(u!);
        ii.push(i!);
        its.push(ts);
      });
      interactionRows = res.rows;
    }
  } catch (e) {
    if (!(e instanceof TooManyErrors)) throw e;
  }
  if (log.list.length > 0) {
    const what = interactionsChecked || log.truncated
      ? 'import failed, nothing was changed'
      : `import failed, nothing was changed (${opts.interactions} is checked once the users and items are valid)`;
    throw new ImportError(log.list, log.truncated, what);
  }

  // ---- sort by (user, timestamp, item): counting sort on user, then each user's slice
  const n = iu.length;
  const counts = new Uint32Array(users.length + 1);
  for (let k = 0; k < n; k++) counts[iu[k] + 1]++;
  for (let u = 0; u < users.length; u++) counts[u + 1] += counts[u];
  const order = new Uint32Array(n);
  const fill = counts.slice(0, users.length);
  for (let k = 0; k < n; k++) order[fill[iu[k]]++] = k;
  const user = new Uint32Array(n);
  const item = new Uint32Array(n);
  const timestamp = new Float64Array(n);
  let out = 0;
  let duplicatesRemoved = 0;
  for (let u = 0; u < users.length; u++) {
    const slice = Array.from(order.subarray(counts[u], counts[u + 1]));
    slice.sort((a, b) => its[a] - its[b] || ii[a] - ii[b]);
    let prev = -1;
    for (const k of slice) {
      if (prev >= 0 && its[k] === its[prev] && ii[k] === ii[prev]) {
        duplicatesRemoved++;
        continue;
      }
      user[out] = u;
      item[out] = ii[k];
      timestamp[out] = its[k];
      out++;
      prev = k;
    }
  }
  iu = ii = its = []; // release

  await sodiumReady();
  const ds: NodeDataset = {
    party: info.name,
    items,
    catalogueHash: catalogueHash(items),
    users,
    interactions: { user: user.slice(0, out), item: item.slice(0, out), timestamp: timestamp.slice(0, out) },
  };
  storeDataset(opts.dataDir, ds, {
    files: { users: path.resolve(opts.users), items: path.resolve(opts.items), interactions: path.resolve(opts.interactions) },
    interactionRows,
    duplicatesRemoved,
    importedAt: new Date().toISOString(),
  });
  const domains: Record<string, number> = {};
  for (const it of items) domains[it.domain] = (domains[it.domain] ?? 0) + 1;
  return {
    party: info.name,
    dataDir: opts.dataDir,
    catalogueHash: ds.catalogueHash,
    counts: { users: users.length, items: items.length, interactions: { rows: interactionRows, stored: out, duplicatesRemoved } },
    domains,
  };
}

/**
 * Reads a generator's hidden ground_truth.csv (user_id,item_id) against a loaded dataset, for
 * scoring cross-domain recommendations. Rows whose user or item the dataset does not know are an
 * error naming the line. Returns parallel index arrays in file order.
 */
export async function readGroundTruth(file: string, ds: NodeDataset): Promise<{ user: Uint32Array; item: Uint32Array }> {
  const userIndex = new Map(ds.users.map((u, k) => [u.id, k]));
  const itemIndex = new Map(ds.items.map((it, k) => [it.id, k]));
  const log = new ErrorLog(20);
  const us: number[] = [];
  const is: number[] = [];
  try {
    await streamCsv(file, 'interactions', ['user_id', 'item_id'] as const, undefined, log, (row, c, header) => {
      const u = userIndex.get(row.fields[c.user_id].trim());
      const i = itemIndex.get(row.fields[c.item_id].trim());
      if (u === undefined) log.add(file, row.line, c.user_id + 1, `(${header[c.user_id]}) unknown user ${q(row.fields[c.user_id])}`);
      else if (i === undefined) log.add(file, row.line, c.item_id + 1, `(${header[c.item_id]}) unknown item ${q(row.fields[c.item_id])}`);
      else {
        us.push(u);
        is.push(i);
      }
    });
  } catch (e) {
    if (!(e instanceof TooManyErrors)) throw e;
  }
  if (log.list.length > 0) throw new ImportError(log.list, log.truncated, `cannot read ground truth ${file}`);
  return { user: Uint32Array.from(us), item: Uint32Array.from(is) };
}
