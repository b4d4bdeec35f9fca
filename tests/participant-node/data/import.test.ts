import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateSynthetic, type SyntheticManifest } from '../../../participant-node/data/generate';
import { ImportError, importCsv, readGroundTruth, readMapping, type ImportOptions } from '../../../participant-node/data/import';
import { datasetDir, loadDataset } from '../../../participant-node/data/store';
import { initNode } from '../../../participant-node/identity';
import { UserError } from '../../../shared/cli/errors';
import { dirFingerprint, readCsv, tempDir } from './helpers';

let root: string;
let gen: string;
let manifest: SyntheticManifest;
let node: string;
let text: { users: string; items: string; interactions: string };

/** Writes a CSV text into the temp dir, returns its path. */
function put(name: string, content: string | Buffer): string {
  const f = path.join(root, 'in', name);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, content);
  return f;
}

function good(party = 'platform'): Pick<ImportOptions, 'users' | 'items' | 'interactions'> {
  return {
    users: path.join(gen, party, 'users.csv'),
    items: path.join(gen, party, 'items.csv'),
    interactions: path.join(gen, party, 'interactions.csv'),
  };
}

/** Replaces 1-based line `n` of a CSV text. */
function withLine(csv: string, n: number, line: string): string {
  const lines = csv.split('\n');
  lines[n - 1] = line;
  return lines.join('\n');
}

beforeAll(async () => {
  root = tempDir('import');
  gen = path.join(root, 'gen');
  manifest = await generateSynthetic({ out: gen, seed: 21, scale: 'small', parties: ['platform', 'insurer'] });
  node = path.join(root, 'node');
  await initNode(node, 'platform');
  text = {
    users: fs.readFileSync(good().users, 'utf8'),
    items: fs.readFileSync(good().items, 'utf8'),
    interactions: fs.readFileSync(good().interactions, 'utf8'),
  };
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('round trip: generate -> import -> loadDataset', () => {
  it.each(['platform', 'insurer'])('%s: exact counts, catalogue hash, ids, sorted interactions', async (party) => {
    const dir = path.join(root, `rt-${party}`);
    await initNode(dir, party);
    const report = await importCsv({ dataDir: dir, ...good(party) });
    const c = manifest.counts[party];
    expect(report.party).toBe(party);
    expect(report.catalogueHash).toBe(manifest.catalogue.hash);
    expect(report.counts).toEqual({
      users: c.users,
      items: manifest.catalogue.numItems,
      interactions: { rows: c.interactions, stored: c.interactions, duplicatesRemoved: 0 },
    });
    expect(report.domains).toEqual(manifest.catalogue.perDomain);

    const ds = loadDataset(dir);
    expect(ds.party).toBe(party);
    expect(ds.catalogueHash).toBe(manifest.catalogue.hash);
    const users = readCsv(path.join(gen, party, 'users.csv'));
    const items = readCsv(path.join(gen, party, 'items.csv'));
    expect(ds.users.map((u) => u.id)).toEqual(users.map((u) => u.user_id));
    expect(ds.items.map((i) => i.id)).toEqual(items.map((i) => i.item_id));
    expect(ds.users[0]).toEqual({
      id: users[0].user_id,
      ageBand: users[0].age_band,
      region: users[0].region,
      lifeStage: users[0].life_stage,
      interests: users[0].interests.split('|'),
    });
    expect(ds.items[0]).toEqual({
      id: items[0].item_id,
      provider: items[0].provider,
      domain: items[0].domain,
      priceBand: items[0].price_band,
      topics: items[0].topics.split('|'),
    });
    const { user, item, timestamp } = ds.interactions;
    expect(user.length).toBe(c.interactions);
    const stored = new Set<string>();
    let unsorted = 0;
    for (let k = 0; k < user.length; k++) {
      stored.add(`${ds.users[user[k]].id},${ds.items[item[k]].id},${timestamp[k]}`);
      if (k > 0 && (user[k] < user[k - 1] || (user[k] === user[k - 1] && timestamp[k] <= timestamp[k - 1]))) unsorted++;
    }
    expect(unsorted).toBe(0);
    const rows = readCsv(path.join(gen, party, 'interactions.csv')).map((r) => `${r.user_id},${r.item_id},${r.timestamp}`);
    expect(stored).toEqual(new Set(rows));

    // the hidden ground truth reads against the same dataset (other parties' items)
    const gt = await readGroundTruth(path.join(gen, party, 'ground_truth.csv'), ds);
    expect(gt.user.length).toBe(c.groundTruth);
    expect([...gt.item].every((i) => ds.items[i].provider !== party)).toBe(true);
    // nothing but node.json, the key and data/ is left in the data dir (no staging folders)
    expect(fs.readdirSync(dir).sort()).toEqual(['data', 'identity.key', 'node.json']);
  });

  it('a second import replaces the first one completely', async () => {
    const dir = path.join(root, 'replace');
    await initNode(dir, 'platform');
    await importCsv({ dataDir: dir, ...good() });
    const few = text.interactions.split('\n').slice(0, 11).join('\n') + '\n';
    const r = await importCsv({ dataDir: dir, ...good(), interactions: put('few.csv', few) });
    expect(r.counts.interactions.stored).toBe(10);
    expect(loadDataset(dir).interactions.user.length).toBe(10);
    expect(fs.readdirSync(dir).sort()).toEqual(['data', 'identity.key', 'node.json']);
  });
});

describe('import: normalisation', () => {
  it('handles a UTF-8 BOM and CRLF line ends exactly like plain files', async () => {
    const dir = path.join(root, 'crlf');
    await initNode(dir, 'platform');
    const crlf = (s: string) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(s.replace(/\n/g, '\r\n'))]);
    await importCsv({ dataDir: dir, users: put('u-crlf.csv', crlf(text.users)), items: put('i-crlf.csv', crlf(text.items)), interactions: put('x-crlf.csv', crlf(text.interactions)) });
    const plainDir = path.join(root, 'plain');
    await initNode(plainDir, 'platform');
    await importCsv({ dataDir: plainDir, ...good() });
    const a = loadDataset(dir);
    const b = loadDataset(plainDir);
    expect(a.users).toEqual(b.users);
    expect(a.items).toEqual(b.items);
    expect(a.catalogueHash).toBe(b.catalogueHash);
    expect(Buffer.from(a.interactions.timestamp.buffer).equals(Buffer.from(b.interactions.timestamp.buffer))).toBe(true);
    expect(Buffer.from(a.interactions.item.buffer).equals(Buffer.from(b.interactions.item.buffer))).toBe(true);
  });

  it('sorts interactions by (user, timestamp) and removes exact repeats, counting them', async () => {
    const dir = path.join(root, 'dedupe');
    await initNode(dir, 'platform');
    const rows = text.interactions.trim().split('\n');
    const header = rows[0];
    const body = rows.slice(1, 201);
    // reverse the order, add 3 exact repeats and one same (user,item) at another time (kept)
    const [u, i, ts] = body[0].split(',');
    const input = [header, ...body.slice().reverse(), body[5], body[7], body[5], `${u},${i},${Number(ts) - 10}`].join('\n') + '\n';
    const r = await importCsv({ dataDir: dir, ...good(), interactions: put('dups.csv', input) });
    expect(r.counts.interactions).toEqual({ rows: 204, stored: 201, duplicatesRemoved: 3 });
    const ds = loadDataset(dir);
    const got = Array.from(ds.interactions.user, (uu, k) => `${ds.users[uu].id},${ds.items[ds.interactions.item[k]].id},${ds.interactions.timestamp[k]}`);
    const expected = [...body, `${u},${i},${Number(ts) - 10}`].sort((x, y) => {
      const [ux, , tx] = x.split(',');
      const [uy, , ty] = y.split(',');
      return ux < uy ? -1 : ux > uy ? 1 : Number(tx) - Number(ty);
    });
    expect(got).toEqual(expected);
  });

  it('maps columns with a JSON or YAML mapping file', async () => {
    const renamed = text.users.replace(/^user_id,age_band,/, 'customer_id,age,');
    const usersFile = put('u-renamed.csv', renamed);
    const json = put('map.json', JSON.stringify({ users: { id: 'customer_id', age_band: 'age' } }));
    const yaml = put('map.yaml', 'users:\n  id: customer_id\n  age_band: age\n');
    expect(readMapping(json)).toEqual({ users: { id: 'customer_id', age_band: 'age' } });
    expect(readMapping(yaml)).toEqual(readMapping(json));
    const dir = path.join(root, 'mapped');
    await initNode(dir, 'platform');
    const r = await importCsv({ dataDir: dir, ...good(), users: usersFile, mapping: readMapping(yaml) });
    expect(r.counts.users).toBe(manifest.counts.platform.users);
    expect(loadDataset(dir).users.map((x) => x.id)).toEqual(readCsv(good().users).map((x) => x.user_id));
    // without the mapping the renamed file is missing its columns
    await expect(importCsv({ dataDir: dir, ...good(), users: usersFile })).rejects.toThrow(/u-renamed\.csv:1:6: missing column "user_id"/);
  });

  it('rejects a bad mapping file naming the problem', () => {
    expect(() => readMapping(put('bad-map.json', JSON.stringify({ users: { idd: 'x' } })))).toThrow(/users: Unrecognized key.*idd/);
    expect(() => readMapping(put('bad-map2.json', JSON.stringify({ people: {} })))).toThrow(UserError);
    expect(() => readMapping(put('bad-map3.json', JSON.stringify({ users: { id: '' } })))).toThrow(/users\.id/);
    expect(() => readMapping(put('bad-map4.yaml', 'users: [\n'))).toThrow(/not valid JSON\/YAML/);
    expect(() => readMapping(path.join(root, 'nope.json'))).toThrow(/--mapping/);
  });

  it('accepts a catalogue without a provider column (provider "")', async () => {
    const dir = path.join(root, 'noprov');
    await initNode(dir, 'platform');
    const noProv = text.items
      .trim()
      .split('\n')
      .map((l) => {
        const f = l.split(',');
        f.splice(1, 1);
        return f.join(',');
      })
      .join('\n');
    await importCsv({ dataDir: dir, ...good(), items: put('i-noprov.csv', noProv + '\n') });
    const ds = loadDataset(dir);
    expect(ds.items.every((i) => i.provider === '')).toBe(true);
    expect(ds.catalogueHash).not.toBe(manifest.catalogue.hash);
  });
});

describe('import: bad input names FILE:LINE:COLUMN and leaves the data dir untouched', () => {
  beforeAll(async () => {
    await importCsv({ dataDir: node, ...good() }); // an existing dataset that must survive
  });

  type Case = [name: string, file: 'users' | 'items' | 'interactions', content: () => string | Buffer, expected: RegExp];
  const cases: Case[] = [
    ['missing column', 'users', () => text.users.replace(/^user_id,age_band,region,/, 'user_id,age_band,area,'), /users-missing column\.csv:1:6: missing column "region"; the header has: user_id, age_band, area/],
    ['unknown age band', 'users', () => withLine(text.users, 3, 'platform-u9,17-19,north,student,programming'), /:3:2: \(age_band\) unknown age_band "17-19" \(expected one of: 18-24/],
    ['unknown region', 'users', () => withLine(text.users, 4, 'platform-u9,18-24,mars,student,programming'), /:4:3: \(region\) unknown region "mars"/],
    ['unknown life stage', 'users', () => withLine(text.users, 4, 'platform-u9,18-24,north,astronaut,programming'), /:4:4: \(life_stage\) unknown life_stage "astronaut"/],
    ['unknown interest', 'users', () => withLine(text.users, 2, 'platform-u9,18-24,north,student,programming|knitting'), /:2:5: \(interests\) unknown interest topic "knitting"/],
    ['duplicate user id', 'users', () => withLine(text.users, 5, text.users.split('\n')[1]), /:5:1: \(user_id\) duplicate user id "platform-u0000001" \(first at line 2\)/],
    ['unknown domain', 'items', () => withLine(text.items, 3, 'x-1,platform,cars,low,programming'), /:3:3: \(domain\) unknown domain "cars"/],
    ['unknown price band', 'items', () => withLine(text.items, 3, 'x-1,platform,course,cheap,programming'), /:3:4: \(price_band\) unknown price_band "cheap"/],
    ['unknown topic', 'items', () => withLine(text.items, 3, 'x-1,platform,course,low,cooking'), /:3:5: \(topics\) unknown topic "cooking"/],
    ['duplicate item id', 'items', () => withLine(text.items, 6, text.items.split('\n')[2]), /:6:1: \(item_id\) duplicate item id "platform-c000002" \(first at line 3\)/],
    ['non-numeric timestamp', 'interactions', () => withLine(text.interactions, 4, 'platform-u0000001,platform-c000001,yesterday'), /:4:3: \(timestamp\) expected a non-negative number \(unix seconds\), got "yesterday"/],
    ['ISO date timestamp', 'interactions', () => withLine(text.interactions, 4, 'platform-u0000001,platform-c000001,2024-01-01'), /:4:3: \(timestamp\) expected a non-negative number/],
    ['negative timestamp', 'interactions', () => withLine(text.interactions, 4, 'platform-u0000001,platform-c000001,-5'), /:4:3: \(timestamp\) expected a non-negative number/],
    ['empty timestamp', 'interactions', () => withLine(text.interactions, 4, 'platform-u0000001,platform-c000001,'), /:4:3: \(timestamp\) expected a non-negative number/],
    ['unknown user', 'interactions', () => withLine(text.interactions, 7, 'insurer-u0000001,platform-c000001,5'), /:7:1: \(user_id\) unknown user "insurer-u0000001"/],
    ['unknown item', 'interactions', () => withLine(text.interactions, 7, 'platform-u0000001,platform-c999999,5'), /:7:2: \(item_id\) unknown item "platform-c999999"/],
    ['empty file', 'users', () => '', /users-empty file\.csv:1:1: empty file \(expected a header row: user_id,age_band,region,life_stage,interests\)/],
    ['BOM-only file', 'items', () => Buffer.from([0xef, 0xbb, 0xbf]), /:1:1: empty file/],
    // Latin-1 bytes in an id: read as UTF-8 they would silently become U+FFFD
    ['not UTF-8', 'users', () => Buffer.concat([Buffer.from(withLine(text.users, 3, 'platform-u9').split('platform-u9')[0] + 'platform-u'), Buffer.from([0xff, 0xfe]), Buffer.from('9,18-24,north,student,programming\n' + text.users.split('\n').slice(3).join('\n'))]), /users-not UTF-8\.csv:3:11: not valid UTF-8 \(save the file as UTF-8/],
    // past the first 1 MiB block (whole blocks are checked at once; line numbers carry across them)
    ['not UTF-8 after 1 MiB', 'interactions', () => Buffer.concat([Buffer.from('user_id,item_id,timestamp\n' + 'platform-u0000001,platform-c000001,5\n'.repeat(40_000)), Buffer.from('platform-u0000001,platform-c00000'), Buffer.from([0xe9]), Buffer.from(',5\n')]), /interactions-not UTF-8 after 1 MiB\.csv:40002:34: not valid UTF-8/],
    // a record past MAX_RECORD_BYTES (1 MiB) ends the parse instead of growing without bound
    ['record longer than 1 MiB', 'users', () => withLine(text.users, 3, 'platform-u9' + 'a'.repeat(3 << 20) + ',18-24,north,student,'), /users-record longer than 1 MiB\.csv:3:1: record longer than 1048576 bytes/],
    ['duplicate column name', 'users', () => text.users.split('\n').map((l, k) => (k === 0 ? `${l},region` : l && `${l},north`)).join('\n'), /:1:6: duplicate column "region" \(columns 3 and 6\); rename one of them/],
    ['ESC in a user id', 'users', () => withLine(text.users, 3, 'platform-u\x1b]0;pwned\x07,18-24,north,student,'), /:3:1: \(user_id\) user id "platform-u\\u001b\]0;pwned\\u0007" contains the control character \\u001b \(at character 11\)/],
    ['NUL in an item id', 'items', () => withLine(text.items, 3, 'x-\x001,platform,course,low,programming'), /:3:1: \(item_id\) item id "x-\\u00001" contains the control character \\u0000 \(at character 3\)/],
    ['newline in a quoted item id', 'items', () => withLine(text.items, 3, '"x-\n1",platform,course,low,programming'), /:4:1: \(item_id\) item id "x-\\u000a1" contains the control character \\u000a/],
    ['control character in a provider', 'items', () => withLine(text.items, 3, 'x-1,plat\x1bform,course,low,programming'), /:3:2: \(provider\) provider "plat\\u001bform" contains the control character \\u001b/],
    ['control character in a feature value', 'users', () => withLine(text.users, 3, 'platform-u9,18-24,\x1b[2Jnorth,student,'), /:3:3: \(region\) region "\\u001b\[2Jnorth" contains the control character \\u001b \(at character 1\)/],
    ['bidi override in an unknown user', 'interactions', () => withLine(text.interactions, 7, 'platform-u\u202e1000,platform-c000001,5'), /:7:1: \(user_id\) unknown user "platform-u\\u202e1000"/],
    ['a very long unknown value is cut', 'users', () => withLine(text.users, 3, `platform-u9,18-24,${'m'.repeat(5000)},student,`), /:3:3: \(region\) unknown region "m{80}\.\.\.\(5000 characters\)" \(expected/],
    ['timestamp in milliseconds', 'interactions', () => withLine(text.interactions, 4, 'platform-u0000001,platform-c000001,1692966573000'), /:4:3: \(timestamp\) timestamp "1692966573000" is past 253402300799 \(9999-12-31 in unix seconds\) \(milliseconds\? divide by 1000\)/],
    ['huge timestamp', 'interactions', () => withLine(text.interactions, 4, 'platform-u0000001,platform-c000001,99999999999999999999999999'), /:4:3: \(timestamp\) timestamp "99999999999999999999999999" is past 253402300799 \(9999-12-31 in unix seconds\)$/m],
    ['header only', 'interactions', () => 'user_id,item_id,timestamp\r\n', /:2:1: no data rows after the header/],
    ['wrong field count', 'interactions', () => withLine(text.interactions, 9, 'platform-u0000001,platform-c000001,5,extra'), /:9:1: malformed CSV: Invalid Record Length: expect 3, got 4/],
    ['unclosed quote', 'items', () => withLine(text.items, 4, 'x-1,platform,"course,low,programming'), /items-unclosed quote\.csv:4:1: malformed CSV: Quote Not Closed.*after line 3 is never closed/],
  ];

  it.each(cases)('%s', async (name, which, content, expected) => {
    const before = dirFingerprint(node);
    const file = put(`${which}-${name}.csv`, content());
    const err = await importCsv({ dataDir: node, ...good(), [which]: file }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImportError);
    expect((err as ImportError).exitCode).toBe(2);
    expect((err as ImportError).message).toMatch(expected);
    expect((err as ImportError).message).toContain(file);
    expect((err as ImportError).message).toMatch(/^import failed, nothing was changed/);
    // nothing a terminal would act on reaches the message: controls and bidi characters are escaped
    expect((err as ImportError).message.replace(/\n {2}/g, ' ')).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    expect(dirFingerprint(node)).toBe(before);
  });

  it('refuses two fields mapped to the same column, naming both', async () => {
    const before = dirFingerprint(node);
    const err = (await importCsv({ dataDir: node, ...good(), mapping: { users: { region: 'age_band' } } }).catch((e: unknown) => e)) as ImportError;
    expect(err).toBeInstanceOf(ImportError);
    expect(err.errors).toEqual([`${good().users}:1:2: users.age_band and users.region both read column 2 "age_band"; map each field to its own column`]);
    expect(dirFingerprint(node)).toBe(before);
  });

  it('finds a bad byte deep in a multi-MB line at its exact column, across 1 MiB blocks that split characters', async () => {
    const before = dirFingerprint(node);
    const lines = text.users.split('\n');
    // 2-byte characters, started at an odd file offset: some 1 MiB block boundaries fall inside one
    let id = 'platform-u9';
    if (Buffer.byteLength(lines.slice(0, 2).join('\n') + '\n' + id) % 2 === 0) id += 'x';
    const run = 'é'.repeat(1_500_000);
    const content = Buffer.concat([
      Buffer.from(lines.slice(0, 2).join('\n') + '\n' + id + run),
      Buffer.from([0xff]),
      Buffer.from(',18-24,north,student,\n' + lines.slice(2).join('\n')),
    ]);
    const file = put('u-deep-bad.csv', content);
    const err = (await importCsv({ dataDir: node, ...good(), users: file }).catch((e: unknown) => e)) as ImportError;
    expect(err).toBeInstanceOf(ImportError);
    expect(err.errors[0]).toBe(`${file}:3:${id.length + run.length + 1}: not valid UTF-8 (save the file as UTF-8; other encodings are not converted)`);
    // the same long line, valid: no UTF-8 error (only the record size)
    const valid = put('u-deep-ok.csv', lines.slice(0, 2).join('\n') + '\n' + id + run + ',18-24,north,student,\n' + lines.slice(2).join('\n'));
    const err2 = (await importCsv({ dataDir: node, ...good(), users: valid }).catch((e: unknown) => e)) as ImportError;
    expect(err2.errors).toEqual([`${valid}:3:1: record longer than 1048576 bytes (a wrong delimiter or an unclosed quote?); the import reads records up to that size`]);
    expect(dirFingerprint(node)).toBe(before);
  });

  it('collects errors across rows and stops after 20', async () => {
    const before = dirFingerprint(node);
    const lines = text.users.trim().split('\n');
    for (let k = 1; k <= 30; k++) lines[k] = lines[k].replace(/^([^,]+),[^,]+,/, '$1,bad-age,');
    const err = (await importCsv({ dataDir: node, ...good(), users: put('u-many.csv', lines.join('\n')) }).catch((e: unknown) => e)) as ImportError;
    expect(err).toBeInstanceOf(ImportError);
    expect(err.errors).toHaveLength(20);
    expect(err.errors[0]).toMatch(/u-many\.csv:2:2: /);
    expect(err.errors[19]).toMatch(/u-many\.csv:21:2: /);
    expect(err.message).toMatch(/stopped after 20/);
    expect(dirFingerprint(node)).toBe(before);
  });

  it('reports several problems in one run (users and items together)', async () => {
    const before = dirFingerprint(node);
    const err = (await importCsv({
      dataDir: node,
      ...good(),
      users: put('u-two.csv', withLine(text.users, 3, 'platform-u9,18-24,mars,student,')),
      items: put('i-two.csv', withLine(text.items, 2, 'x-1,platform,course,cheap,')),
    }).catch((e: unknown) => e)) as ImportError;
    expect(err.errors).toEqual([
      expect.stringMatching(/u-two\.csv:3:3: \(region\) unknown region "mars"/),
      expect.stringMatching(/i-two\.csv:2:4: \(price_band\) unknown price_band "cheap"/),
    ]);
    expect(err.message).toMatch(/interactions\.csv is checked once the users and items are valid/);
    expect(dirFingerprint(node)).toBe(before);
  });

  it('refuses a missing input file or an uninitialised data dir without touching anything', async () => {
    const before = dirFingerprint(node);
    await expect(importCsv({ dataDir: node, ...good(), items: path.join(root, 'missing.csv') })).rejects.toThrow(/missing\.csv: no such file/);
    expect(dirFingerprint(node)).toBe(before);
    const bare = path.join(root, 'bare');
    fs.mkdirSync(bare);
    await expect(importCsv({ dataDir: bare, ...good() })).rejects.toThrow(/not a node data dir/);
    expect(fs.readdirSync(bare)).toEqual([]);
  });
});

describe('loadDataset integrity', () => {
  let dir: string;
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(root, 'integrity-'));
    await initNode(path.join(dir, 'n'), 'platform');
    dir = path.join(dir, 'n');
  });

  it('refuses a node without imported data', () => {
    expect(() => loadDataset(dir)).toThrow(/holds no imported data/);
  });

  it('detects a corrupted or truncated interactions file', async () => {
    await importCsv({ dataDir: dir, ...good() });
    const f = path.join(datasetDir(dir), 'interactions.item.u32');
    const buf = fs.readFileSync(f);
    buf[10] ^= 1;
    fs.writeFileSync(f, buf);
    expect(() => loadDataset(dir)).toThrow(/interactions\.item\.u32: content does not match meta\.json/);
    fs.writeFileSync(f, buf.subarray(0, buf.length - 4));
    expect(() => loadDataset(dir)).toThrow(/interactions\.item\.u32: \d+ bytes, expected/);
  });

  it('detects an edited users.json', async () => {
    await importCsv({ dataDir: dir, ...good() });
    const f = path.join(datasetDir(dir), 'users.json');
    fs.writeFileSync(f, JSON.stringify(JSON.parse(fs.readFileSync(f, 'utf8')).slice(1)));
    expect(() => loadDataset(dir)).toThrow(/users\.json: content does not match meta\.json \(corrupted\)/);
  });
});
