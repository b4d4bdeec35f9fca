/**
 * One coordinator per store (coordinator/storage/instance-lock.ts): a second coordinator on the
 * same SQLite file or PostgreSQL schema is refused at start-up with a message naming the store; the
 * lock ends with the first coordinator's close, and with its process even when that is killed
 * (no stale lock).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createCoordinator } from '../../coordinator/main';
import { validateConfig } from '../../coordinator/config/config';
import { acquireInstanceLock } from '../../coordinator/storage/instance-lock';
import { makeEnv } from './helpers/harness';
import { PG_URL, pgSchemaUrl } from './helpers/db';

const ROOT = path.resolve(__dirname, '..', '..');

describe('one coordinator per store', () => {
  for (const backend of PG_URL ? ['sqlite', 'postgres'] : ['sqlite']) {
    test(`${backend}: a second coordinator on the store is refused until the first closes`, async () => {
      const env = await makeEnv(['platform', 'insurer']);
      const pg = backend === 'postgres' ? await pgSchemaUrl(PG_URL, 'lock') : null;
      if (pg) env.configInput.storage.databaseUrl = pg.url;
      const config = validateConfig(env.configInput, env.dir, 'test', {});
      const quiet = { log: () => undefined, createKey: true };
      const first = await createCoordinator(config, quiet);
      try {
        const err = await createCoordinator(config, quiet).then(() => null, (e: Error) => e);
        expect(err?.message).toMatch(backend === 'sqlite' ? /^another coordinator is running on the store sqlite:.*coordinator\.sqlite \(it holds .*coordinator\.sqlite\.lock\); stop it first/ : /^another coordinator is running on the store postgres:.* \(schema t_lock_[0-9a-f]+\); stop it first/);
        // the running coordinator is unaffected
        expect((await first.ctx.repo.latestRun())).toBeNull();
      } finally {
        await first.close();
      }
      const second = await createCoordinator(config, quiet);
      await second.close();
      await pg?.drop();
    });
  }

  test('sqlite: the lock of a killed process is gone with it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedbridge-lock-'));
    const sqliteFile = path.join(dir, 'coordinator.sqlite');
    const child = spawn(process.execPath, ['-r', path.join(ROOT, 'tests/demo/ts-hook.js'), '-e', `require(${JSON.stringify(path.join(ROOT, 'coordinator/storage/instance-lock.ts'))}).acquireInstanceLock({ sqliteFile: ${JSON.stringify(sqliteFile)} }).then(() => { process.stdout.write('locked\\n'); setInterval(() => undefined, 1000); })`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
        child.on('exit', (c) => reject(new Error(`lock holder exited with ${c}`)));
      });
      await expect(acquireInstanceLock({ sqliteFile })).rejects.toThrow(/another coordinator is running/);
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => child.once('close', r));
    const lock = await acquireInstanceLock({ sqliteFile });
    await lock.release();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
