/**
 * One coordinator per store (coordinator/storage/instance-lock.ts): a second coordinator on the
 * same SQLite file or PostgreSQL schema is refused at start-up with a message naming the store; the
 * lock ends with the first coordinator's close, and with its process even when that is killed
 * (no stale lock). A PostgreSQL lock whose session the server ends while the coordinator runs is
 * a lost lock: the coordinator stops serving at once (before, it went on silently and a second
 * coordinator could start on the same store), and `coordinator start` exits 1 with the reason.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createCoordinator } from '../../coordinator/main';
import { validateConfig } from '../../coordinator/config/config';
import * as net from 'node:net';
import { acquireInstanceLock } from '../../coordinator/storage/instance-lock';
import { loadCoordinatorKey } from '../../coordinator/identity/keys';
import { PostgresDriver } from '../../coordinator/storage/sql';
import { runCli } from '../cli-run';
import { makeEnv } from './helpers/harness';
import { PG_URL, pgSchemaUrl } from './helpers/db';

/** Ends the lock session of the coordinator on `schema` (named fedbridge-lock:<schema>), as a server restart or an idle-session kill would; how many it ended. */
async function endLockSession(schema: string): Promise<number> {
  const admin = await PostgresDriver.connect(PG_URL);
  try {
    const rows = await admin.query('SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE application_name = ?', [`fedbridge-lock:${schema}`]);
    return rows.length;
  } finally {
    await admin.close();
  }
}

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });

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

  if (PG_URL) {
    test('postgres: a lock whose session the server ends stops the coordinator (it serves no more); then another may start', async () => {
      const env = await makeEnv(['platform']);
      const pg = await pgSchemaUrl(PG_URL, 'lost');
      const schema = new URL(pg.url).searchParams.get('options')!.replace('-c search_path=', '');
      env.configInput.storage.databaseUrl = pg.url;
      const config = validateConfig(env.configInput, env.dir, 'test', {});
      const logs: string[] = [];
      const first = await createCoordinator(config, { log: (l) => logs.push(l), createKey: true });
      try {
        expect(await endLockSession(schema)).toBe(1);
        const reason = await first.stopped;
        expect(reason).toMatch(/^the coordinator lost its lock on the store postgres:.* \(lock connection .*\); it stopped serving, since another coordinator may now take the store/);
        expect(logs).toContain(reason);
        expect(await refused(first.grpcPort)).toBe(true);
        expect(await refused(first.httpPort)).toBe(true);
        const second = await createCoordinator(config, { log: () => undefined });
        await second.close();
        expect(await second.stopped).toBeNull(); // an ordinary close
      } finally {
        await first.close();
        await pg.drop();
      }
    });

    test('postgres: `coordinator start` exits 1 with a one-line reason when its lock is lost', async () => {
      const env = await makeEnv(['platform']);
      const pg = await pgSchemaUrl(PG_URL, 'clilost');
      const schema = new URL(pg.url).searchParams.get('options')!.replace('-c search_path=', '');
      env.configInput.storage.databaseUrl = pg.url;
      await loadCoordinatorKey(env.coordinatorKeyFile, { create: true });
      const cfg = path.join(env.dir, 'config.json');
      fs.writeFileSync(cfg, JSON.stringify(env.configInput));
      try {
        const running = runCli(['coordinator', 'start', '--config', cfg]);
        const admin = await PostgresDriver.connect(PG_URL);
        try {
          // the lock session exists once the coordinator holds its lock
          for (let i = 0; i < 600 && !(await admin.query('SELECT 1 FROM pg_stat_activity WHERE application_name = ?', [`fedbridge-lock:${schema}`])).length; i++) await new Promise((r) => setTimeout(r, 50));
        } finally {
          await admin.close();
        }
        expect(await endLockSession(schema)).toBe(1);
        const r = await running;
        expect(r.code).toBe(1);
        const last = r.err.trimEnd().split('\n').pop();
        expect(last).toMatch(/^fedbridge: the coordinator lost its lock on the store postgres:.*; it stopped serving, since another coordinator may now take the store: check the database server and start it again$/);
      } finally {
        await pg.drop();
      }
    });
  }
});
