/**
 * The describe-level fixture the SecAgg-over-gRPC tests share: before the describe's tests, an Env
 * of the named parties and a coordinator on its default protocol (SecAgg) driven by manual timers;
 * after them, every event stream and party connection the tests handed over in `fx.nodes` and
 * `fx.parties` closed, then the coordinator (the one running then: `fx.restart()` replaces it). `env` and `coord` are set once `beforeAll` has run, so
 * read them inside the tests (or in closures the tests call), not at describe level.
 */
import * as fs from 'node:fs';
import type { RunningCoordinator } from '../../../coordinator/main';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { makeEnv, ManualTimers, startCoordinator, type Env, type TestParty } from './harness';
import type { MiniNode } from './mini-node';

export interface SecAggFixture {
  env: Env;
  coord: RunningCoordinator;
  readonly timers: ManualTimers;
  /** closed after the describe's tests */
  parties: TestParty[];
  /** their event streams cancelled after the describe's tests */
  nodes: MiniNode[];
  /** closes the coordinator and starts a new one on the same files and timers (a restart); returns it */
  restart(): Promise<RunningCoordinator>;
}

export function secaggCoordinator(names: string[]): SecAggFixture {
  const fx: SecAggFixture = {
    env: undefined as never,
    coord: undefined as never,
    timers: new ManualTimers(),
    parties: [],
    nodes: [],
    async restart() {
      await fx.coord.close();
      fx.coord = await startCoordinator(fx.env, undefined as never, fx.timers);
      return fx.coord;
    },
  };
  beforeAll(async () => {
    await sodiumReady();
    fx.env = await makeEnv(names);
    fx.coord = await startCoordinator(fx.env, undefined as never, fx.timers);
  });
  afterAll(async () => {
    for (const n of fx.nodes) n.stream.cancel();
    for (const p of fx.parties) p.close();
    await fx.coord?.close();
  });
  return fx;
}

/**
 * The describe-level fixture of the tests with real nodes (tests/integration): before the tests, an
 * Env of the named parties and a coordinator on the SecAgg protocol with real timers; after them,
 * the coordinator closed and the Env's folder (certificates, storage, the nodes' folders the tests
 * put there) removed.
 */
export function realCoordinator(names: string[]): { env: Env; coord: RunningCoordinator } {
  const fx = { env: undefined as unknown as Env, coord: undefined as unknown as RunningCoordinator };
  beforeAll(async () => {
    await sodiumReady();
    fx.env = await makeEnv(names);
    fx.coord = await startCoordinator(fx.env, 'secagg' as never);
  });
  afterAll(async () => {
    await fx.coord?.close();
    if (fx.env) fs.rmSync(fx.env.dir, { recursive: true, force: true });
  });
  return fx;
}
