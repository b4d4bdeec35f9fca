/**
 * Filesystem errors on a path the user gave (a file where a folder is expected, a folder where a
 * file is expected, no permission) are one-line reasons naming the path, exit 2, never a stack
 * trace; and a failed atomic write leaves no temporary file behind.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fsUserError, UserError } from '../../../shared/cli/errors';
import { writeFileAtomic } from '../../../shared/util/atomic';
import { readFileAt } from '../../../shared/cli/read-file';
import { ed25519Keygen } from '../../../shared/crypto/sign';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { initNode } from '../../../participant-node/identity';
import { runCli as run } from '../../cli-run';

describe('filesystem errors on user paths', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-fserr-'));
  const file = path.join(root, 'a-file');
  const dir = path.join(root, 'a-dir');
  beforeAll(async () => {
    await sodiumReady();
    fs.writeFileSync(file, 'not a folder\n');
    fs.mkdirSync(dir, { mode: 0o700 });
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  /** exit 2, exactly one line, no "internal error" */
  const oneLine = (r: { code: number; err: string }) => {
    expect(r.err).not.toMatch(/internal error|\n\s+at /);
    expect(r.err.split('\n')).toHaveLength(2);
    expect(r.code).toBe(2);
  };

  test('fsUserError maps errno errors on a path, and nothing else', () => {
    const errnoOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e;
      }
      throw new Error('did not throw');
    };
    expect(fsUserError(errnoOf(() => fs.readdirSync(file)))?.message).toBe(`${file} is not a directory; expected a directory`);
    expect(fsUserError(errnoOf(() => fs.mkdirSync(file, { recursive: true })))?.message).toMatch(/exists and is not a directory; expected a directory/);
    expect(fsUserError(errnoOf(() => fs.writeFileSync(dir, 'x')))?.message).toBe(`${dir} is a directory; expected a file`);
    expect(fsUserError(errnoOf(() => fs.readFileSync(dir)))?.message).toBe('a directory was given where a file is expected');
    // the CLI reads the files it is given through readFileAt, which names the folder
    expect(fsUserError(errnoOf(() => readFileAt(dir)))?.message).toBe(`${dir} is a directory; expected a file`);
    expect(fsUserError(errnoOf(() => readFileAt(dir, 'utf8')))?.message).toBe(`${dir} is a directory; expected a file`);
    expect(readFileAt(file, 'utf8')).toBe('not a folder\n');
    expect(fsUserError(errnoOf(() => fs.readFileSync(path.join(root, 'nope'))))?.message).toBe(`${path.join(root, 'nope')}: no such file or directory`);
    expect(fsUserError(errnoOf(() => fs.writeFileSync(path.join(file, 'x'), '')))?.message).toBe(`${path.join(file, 'x')}: a part of this path is a file, not a directory`);
    expect(fsUserError(errnoOf(() => fs.renameSync(file, dir)))?.message).toBe(`${dir} is a directory; expected a file`);
    expect(fsUserError(errnoOf(() => fs.readFileSync(path.join(root, 'nope'))))).toBeInstanceOf(UserError);
    // not a filesystem error on a path: left alone (a genuine internal error keeps its trace)
    expect(fsUserError(new Error('boom'))).toBeNull();
    expect(fsUserError(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBeNull();
    expect(fsUserError(Object.assign(new Error('x'), { code: 'ECONNREFUSED', path: '/x' }))).toBeNull();
  });

  test('writeFileAtomic onto a directory throws and leaves no temporary file', () => {
    const target = path.join(dir, 'sub');
    fs.mkdirSync(target);
    expect(() => writeFileAtomic(target, 'x')).toThrow(/EISDIR/);
    expect(fs.readdirSync(dir)).toEqual(['sub']);
    fs.rmdirSync(target);
  });

  test('a file where a folder is expected: node init, coordinator init, coordinator certs', async () => {
    for (const args of [
      ['node', 'init', '--data-dir', file, '--name', 'platform'],
      ['coordinator', 'init', '--dir', file, '--federation', 'demo'],
      ['coordinator', 'certs', '--out', file],
    ]) {
      const r = await run(args);
      oneLine(r);
      expect(r.err).toMatch(new RegExp(`^fedbridge: ${file} (is not a directory|exists and is not a directory)`));
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('not a folder\n');
  });

  test('a folder where a file is expected: policy init/sign --out, --key-file; nothing is left behind', async () => {
    const node = path.join(root, 'platform');
    await initNode(node, 'platform');
    await initNode(path.join(root, 'insurer'), 'insurer');
    const coordPk = Buffer.from(ed25519Keygen().publicKey).toString('base64');
    const pol = path.join(root, 'policy.yaml');
    const init = ['policy', 'init', '--federation', 'demo', '--coordinator-key', coordPk, '--node-dir', node, '--node-dir', path.join(root, 'insurer'), '--catalogue-hash', 'ef'.repeat(32), '--num-items', '10'];
    expect((await run([...init, '--out', pol])).code).toBe(0);
    const before = fs.readdirSync(root).sort();
    let r = await run([...init, '--out', dir, '--force']);
    oneLine(r);
    expect(r.err).toBe(`fedbridge: ${dir} is a directory; expected a file\n`);
    r = await run(['policy', 'sign', pol, '--data-dir', node, '--out', dir]);
    oneLine(r);
    expect(r.err).toBe(`fedbridge: ${dir} is a directory; expected a file\n`);
    r = await run(['policy', 'sign', pol, '--key-file', dir, '--signer', 'coordinator']);
    oneLine(r);
    expect(r.err).toBe(`fedbridge: --key-file ${dir} is not a file; expected an Ed25519 secret key file\n`);
    expect(fs.readdirSync(root).sort()).toEqual(before);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test('a folder given as a file to read names the folder: policy verify, audit verify --policy, runs start --policy', async () => {
    for (const args of [
      ['policy', 'verify', dir],
      ['audit', 'verify', file, '--policy', dir],
      ['coordinator', 'runs', 'start', '--policy', dir, '--signatures', dir, '--coordinator', '127.0.0.1:1', '--ca', file, '--token-file', file],
    ]) {
      const r = await run(args);
      oneLine(r);
      expect(r.err).toMatch(new RegExp(`^fedbridge: .*${dir}`));
    }
  });
});
