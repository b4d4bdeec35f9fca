#!/usr/bin/env node
/**
 * `npm run demo [-- --scale small|default|large --seed N --rounds N --work DIR --json]`
 *
 * The whole federation on one machine, with the real processes (DESIGN §8, issue 5 "The demo"):
 *
 *   1. generate synthetic data for platform, insurer and insurer2 (`--scale`, `--seed`);
 *   2. each party: node init + node import (in-process; the same functions the CLI calls);
 *   3. `fedbridge coordinator init` (local CA, certificates, identity, operator token, config on
 *      127.0.0.1 port 0) and `fedbridge coordinator start` as a CHILD PROCESS (mutual TLS);
 *   4. `fedbridge policy init` from the node dirs, the demo's training/privacy parameters
 *      (DEMO_PARAMS; the noise multiplier calibrated so each party's lifetime epsilon over the whole
 *      run stays within the budget), `policy sign` by every node and the coordinator,
 *      `policy verify`, `coordinator enroll` (Ed25519 key + client certificate) for each party;
 *   5. three `fedbridge node join` CHILD PROCESSES; once all are subscribed, `coordinator runs
 *      start` with the signed policy and a seeded initial model; SecAgg + DP rounds run until the
 *      run finishes (logs under WORK/logs, one progress line per round);
 *   6. baselines: local-only (each party alone, non-DP, its model never leaves the node; trained by
 *      `fedbridge node train-local` child processes in copies of the node dirs), fed+local
 *      personalisation (`node train-local --from-saved --freeze-towers` child processes on the
 *      federated model in the node dirs), both alongside this process's pooled training (one model on
 *      the union of all parties' data: the ceiling for one shared model, which a per-party fine-tuned
 *      model can exceed);
 *   7. evaluation of local / federated / pooled per party on the same users (a seeded sample of
 *      2,000 per party by default; every user with --eval-users all), held-out items and negatives:
 *      HR@10, NDCG@10, per domain, cross-domain against the generator's hidden ground truth;
 *      epsilon per party from each node's privacy ledger;
 *   8. one table, an SVG plot (quality and epsilon per round), results.json;
 *   9. `coordinator tokens issue --role auditor`, `audit export --artifacts` (the policy releases
 *      models, aggregates and each round's server view to auditors), `audit verify --replay --json`
 *      (every aggregate recomputed from the parties' signed masked inputs, the model chain replayed);
 *  10. the coordinator is stopped; exit 0 only if every step worked.
 * With --json the last stdout line is the DESIGN §8 object. Every figure printed is computed in
 * this run; a figure that could not be computed is printed as "-".
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { Command } from 'commander';
import { parseNumberOption, printJson, UserError } from '../shared/cli/errors';
import type { Vocabularies } from '../shared/data/vocab';
import type { ModelConfig } from '../shared/model/layout';
import type { PooledTrainOptions } from '../participant-node/model/pooled';

/** The demo's federation parameters (the lead tunes these; the policy carries them). */
export const DEMO_PARAMS = {
  rounds: 10,
  stepsPerRound: 20,
  samplingRate: 0.05,
  maxInteractionsPerUser: 4,
  clipNorm: 1,
  /** lifetime budget per party; the noise multiplier is calibrated to spend at most this over the run */
  epsilon: 8,
  delta: 1e-6,
  /** DP optimizer learning rate (policy training.learningRate) */
  learningRate: 0.01,
  serverOptimizer: { type: 'fedavg' as const, learningRate: 1 },
  /** model dimensions used by every training (federated, local, pooled) */
  embeddingDim: 32,
  hiddenDim: 64,
  phaseSeconds: 300,
  /** local-only baseline (non-DP) */
  local: { platformEpochs: 1, insurerEpochs: 3, batchSize: 1024, negatives: 4, learningRate: 0.005 },
  /**
   * federated + local personalisation: each party continues training the final federated model on
   * its own data (non-DP: the result never leaves the node) with the feature towers FIXED, so the
   * item rows and private embeddings adapt to its own offers while the towers keep what the
   * federation taught (cross-domain taste). Measured on seed 1 (insurer HR@10 / cross-domain,
   * 1,000 users; local-only 0.493 / 0.278): towers fixed lr 0.005 x 3 epochs 0.503 / 0.452, lr 0.01
   * 0.495 / 0.445, lr 0.001 0.481 / 0.458; towers trained lr 0.001 0.508 / 0.425. null to skip this column.
   */
  personalise: { platformEpochs: 1, insurerEpochs: 3, learningRate: 0.005, freezeTowers: true } as { platformEpochs: number; insurerEpochs: number; learningRate: number; freezeTowers: boolean } | null,
  /** pooled ceiling (non-DP, all parties' data in one place; each party's interactions repeated per epoch as often as its local epochs) */
  pooled: { epochs: 1, batchSize: 1024, negatives: 4, learningRate: 0.005 },
  /**
   * evaluation: a seeded sample of N users per party (all users when the party has fewer), or
   * 'all' (`--eval-users all`). A 2,000-user sample has a binomial standard error of about 0.011 on
   * an HR@10 near 0.5, which inflates the spread across seeds to 0.02-0.04; all ~15k insurer users
   * with a held-out take-up bring it to about 0.004, but each evaluation pass over every user of the
   * three parties costs about 50 s on a slow 2-core machine (seed 1, session 7: 821 s for the whole
   * demo, sequential baselines), so the default keeps the sample to stay under 10 minutes.
   */
  evalUsers: 2000 as number | 'all',
  /** per-round federated quality: users sampled per party (<= 1000; a prefix of the sample above) */
  roundEvalUsers: 500,
};

export const DEMO_PARTIES = ['platform', 'insurer', 'insurer2'];

/**
 * The demo's pooled training (DEMO_PARAMS.pooled, non-DP) over `parties`: each party's interactions
 * repeated per epoch as often as in its local-only training (a fair ceiling, not an under-trained
 * one). Shared with the ceiling bench.
 */
export function demoPooledOptions(parties: readonly string[], model: ModelConfig, vocabularies: Vocabularies, seed: number, offerNegatives: boolean): PooledTrainOptions {
  const L = DEMO_PARAMS.local;
  return {
    model,
    vocabularies,
    ...DEMO_PARAMS.pooled,
    seed,
    repeats: Object.fromEntries(parties.map((p) => [p, p === 'platform' ? L.platformEpochs : L.insurerEpochs])),
    offerNegatives,
  };
}

export type SpawnCli = (args: string[], env?: NodeJS.ProcessEnv) => ChildProcess;

/** `--eval-users`: "all" or a positive integer (undefined: the default). */
export function parseEvalUsers(raw: string | undefined): number | 'all' | undefined {
  if (raw === undefined || raw === 'all') return raw;
  if (!/^\s*\d+\s*$/.test(raw)) throw new UserError(`--eval-users expects "all" or a positive integer, got "${raw}"`);
  return parseNumberOption('--eval-users', raw, { integer: true, min: 1 });
}

export interface DemoOptions {
  scale: 'small' | 'default' | 'large';
  seed: number;
  work: string;
  rounds?: number;
  /** overrides of the generator's sizes (tests) */
  usersPerParty?: number;
  itemsPerParty?: number;
  /** users of particular parties (`--party-users`), overriding the scale for them */
  partyUsers?: Record<string, number>;
  /** users evaluated per party: a number (seeded sample) or 'all' (default DEMO_PARAMS.evalUsers) */
  evalUsers?: number | 'all';
  /** how to run `fedbridge ARGS...` as a child process (default: node dist/bin/fedbridge.js) */
  spawnCli?: SpawnCli;
  /** progress lines (default: stderr) */
  log?: (line: string) => void;
  backend?: string;
  /** stop: every child process is terminated and runDemo rejects */
  signal?: AbortSignal;
}

export interface Metrics {
  'hr@10': number;
  'ndcg@10': number;
}

export interface PartyResult {
  local: Metrics;
  federated: Metrics;
  /** the federated model fine-tuned on the party's own data (null when DEMO_PARAMS.personalise is null) */
  personalised: Metrics | null;
  pooled: Metrics;
  popularity: Metrics;
  crossDomain: { local: Metrics; federated: Metrics; personalised: Metrics | null; pooled: Metrics; popularity: Metrics } | null;
  byDomain: Record<string, { count: number; local: Metrics; federated: Metrics; personalised: Metrics | null; pooled: Metrics; popularity: Metrics }>;
  epsilon: number;
  budget: number;
  /** users evaluated / party users; held-out items and cross-domain cases scored */
  evaluated: { users: number; totalUsers: number; heldOut: number; crossDomainCases: number };
  rounds: { round: number; epsilon: number; 'hr@10'?: number; 'ndcg@10'?: number }[];
  completedRounds: number;
}

export interface DemoResult {
  parties: Record<string, PartyResult>;
  rounds: number;
  runId: string;
  auditLog: string;
  verified: boolean;
  /** replayed: completed rounds whose model `audit verify --replay` recomputed from the aggregates */
  audit: { entries: number; rounds: number; receipts: number; replayed: number; aggregatesRecomputed: number; failures: unknown[]; error?: string };
  policy: string;
  policyHash: string;
  noiseMultiplier: number;
  plot: string;
  table: string;
  scale: string;
  seed: number;
  wallSeconds: number;
  timings: Record<string, number>;
}

// ---------------------------------------------------------------------------------------------
// child processes

/** `node [this process's node flags] fedbridge.js ARGS` next to this file (dist/bin after `npm run build`). */
function defaultSpawnCli(args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  const cli = path.join(__dirname, `fedbridge${path.extname(__filename)}`);
  return spawn(process.execPath, [...process.execArgv, cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
}

class Children {
  private readonly live = new Set<ChildProcess>();
  add(c: ChildProcess): ChildProcess {
    this.live.add(c);
    c.once('exit', () => this.live.delete(c));
    c.on('error', () => this.live.delete(c)); // could not start: exitOf() reports it
    return c;
  }
  /** SIGTERM to every child this demo started and that still runs. */
  killAll(): void {
    for (const c of this.live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }
}

function lastLines(s: string, n = 6): string {
  return s.trim().split('\n').slice(-n).join('\n');
}

/** Resolves when the child exits; a child that could not be started counts as exit code 127. */
function exitOf(c: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve({ code: c.exitCode, signal: c.signalCode });
  return new Promise((resolve) => {
    c.once('exit', (code, signal) => resolve({ code, signal }));
    c.once('error', () => resolve({ code: c.exitCode ?? 127, signal: null }));
  });
}

// ---------------------------------------------------------------------------------------------

function sampleMetrics(m: { 'hr@10': number; 'ndcg@10': number }): Metrics {
  return { 'hr@10': m['hr@10'], 'ndcg@10': m['ndcg@10'] };
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const log = o.log ?? ((m: string) => process.stderr.write(`[demo] ${m}\n`));
  const spawnCli = o.spawnCli ?? defaultSpawnCli;
  const children = new Children();
  const onAbort = () => children.killAll();
  if (o.signal?.aborted) throw new Error('aborted');
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  let tStep = Date.now();
  const mark = (name: string) => {
    timings[name] = (Date.now() - tStep) / 1000;
    tStep = Date.now();
  };
  const work = path.resolve(o.work);
  fs.rmSync(work, { recursive: true, force: true });
  const dirs = {
    data: path.join(work, 'data'),
    logs: path.join(work, 'logs'),
    coordinator: path.join(work, 'coordinator'),
    nodes: Object.fromEntries(DEMO_PARTIES.map((p) => [p, path.join(work, 'nodes', p)])) as Record<string, string>,
  };
  fs.mkdirSync(dirs.logs, { recursive: true });
  const rounds = o.rounds ?? DEMO_PARAMS.rounds;

  /** Runs `fedbridge ARGS` to completion; stdout is returned, stderr goes to WORK/logs/NAME.log. */
  const cli = async (name: string, args: string[], env?: NodeJS.ProcessEnv, allowFail = false): Promise<{ stdout: string; code: number | null }> => {
    const c = children.add(spawnCli(args, env));
    let out = '';
    let err = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    c.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
    const { code, signal } = await exitOf(c);
    fs.appendFileSync(path.join(dirs.logs, `${name}.log`), `$ fedbridge ${args.map((a) => (/^[A-Za-z0-9_./:=,@+-]*$/.test(a) ? a : JSON.stringify(a))).join(' ')}\n${err}`);
    if (code !== 0 && !allowFail) throw new Error(`fedbridge ${args.slice(0, 3).join(' ')} failed (exit ${code ?? signal}): ${lastLines(err || out)}`);
    return { stdout: out, code };
  };
  const jsonOut = (s: string): Record<string, unknown> => {
    const line = s.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new Error(`expected a JSON line, got: ${line.slice(0, 200)}`);
    }
  };

  let coordinator: ChildProcess | null = null;
  const stopCoordinator = async (): Promise<void> => {
    if (!coordinator) return;
    const c = coordinator;
    coordinator = null;
    if (c.exitCode !== null || c.signalCode !== null) throw new Error(`the coordinator exited early (code ${c.exitCode ?? c.signalCode}); see ${path.join(dirs.logs, 'coordinator.log')}`);
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
    const { code, signal } = await exitOf(c);
    clearTimeout(timer);
    if (code !== 0) throw new Error(`the coordinator did not stop cleanly (exit ${code ?? signal}); see ${path.join(dirs.logs, 'coordinator.log')}`);
  };

  try {
    // ---- 1-2. data and nodes ------------------------------------------------------------------
    const [{ generateSynthetic }, { initNode }, { importCsv }, { loadDataset }] = await Promise.all([
      import('../participant-node/data/generate'),
      import('../participant-node/identity'),
      import('../participant-node/data/import'),
      import('../participant-node/data/store'),
    ]);
    log(`generating ${o.scale} synthetic data for ${DEMO_PARTIES.join(', ')} (seed ${o.seed}) in ${dirs.data}`);
    const manifest = await generateSynthetic({ out: dirs.data, seed: o.seed, scale: o.scale, parties: DEMO_PARTIES, usersPerParty: o.usersPerParty, itemsPerParty: o.itemsPerParty, partyUsers: o.partyUsers });
    mark('generate');
    const file = (p: string, f: string) => path.join(dirs.data, p, f);
    for (const p of DEMO_PARTIES) {
      await initNode(dirs.nodes[p], p);
      const r = await importCsv({ dataDir: dirs.nodes[p], users: file(p, 'users.csv'), items: file(p, 'items.csv'), interactions: file(p, 'interactions.csv') });
      log(`node ${p}: imported ${r.counts.users} users, ${r.counts.interactions.stored} interactions, ${r.counts.items} catalogue items`);
    }
    const dsMeta = loadDataset(dirs.nodes.platform);
    mark('import');
    void manifest;

    // ---- 3. coordinator -------------------------------------------------------------------------
    const init = jsonOut(
      (
        await cli('coordinator-init', [
          'coordinator', 'init', '--dir', dirs.coordinator, '--federation', 'fedbridge-demo', '--parties', DEMO_PARTIES.join(','),
          '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--http-tls', '--json',
        ])
      ).stdout,
    ) as { config: string; coordinatorPublicKey: string; operatorTokenFile: string; certs: { ca: string; clients: Record<string, { cert: string; key: string }> } };
    const certs = init.certs;
    coordinator = children.add(spawnCli(['coordinator', 'start', '--config', init.config]));
    const coordLog = fs.createWriteStream(path.join(dirs.logs, 'coordinator.log'));
    const ports = await new Promise<{ grpc: number; http: number }>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`the coordinator did not report its ports within 120 s; see ${path.join(dirs.logs, 'coordinator.log')}`)), 120_000);
      const c = coordinator!;
      c.stdout!.on('data', (d: Buffer) => coordLog.write(d));
      c.stderr!.on('data', (d: Buffer) => {
        coordLog.write(d);
        buf += d.toString('utf8');
        const m = /gRPC \(TLS[^)]*\) on [^\s]+:(\d+), HTTPS? on [^\s]+:(\d+)/.exec(buf);
        if (m) {
          clearTimeout(timer);
          resolve({ grpc: Number(m[1]), http: Number(m[2]) });
        }
      });
      c.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the coordinator exited (code ${code}) before it was ready: ${lastLines(buf)}`));
      });
    });
    const grpcAddr = `127.0.0.1:${ports.grpc}`;
    log(`coordinator running (pid ${coordinator.pid}): gRPC with mutual TLS on ${grpcAddr}, HTTPS (health, metrics, audit API) on 127.0.0.1:${ports.http}`);
    const operatorConn = ['--coordinator', grpcAddr, '--ca', certs.ca, '--token-file', init.operatorTokenFile, '--tls-cert', certs.clients.operator.cert, '--tls-key', certs.clients.operator.key];
    mark('coordinator');

    // ---- 4. policy ----------------------------------------------------------------------------
    const { parse: parseYaml, stringify } = await import('yaml');
    const { validatePolicy, policyHash } = await import('../shared/policy/schema');
    const { calibrateSigma } = await import('../shared/dp/rdp');
    const { composeEpsilon, LEDGER_ORDERS } = await import('../participant-node/privacy/ledger');
    const { localDpsgdCharge } = await import('../participant-node/privacy/charge');
    const { sodiumReady } = await import('../shared/crypto/sodium');
    await sodiumReady();
    const policyFile = path.join(work, 'policy.yaml');
    await cli('policy', [
      'policy', 'init', '--out', policyFile, '--federation', 'fedbridge-demo', '--coordinator-key', init.coordinatorPublicKey,
      ...DEMO_PARTIES.flatMap((p) => ['--node-dir', dirs.nodes[p]]),
      '--catalogue-hash', dsMeta.catalogueHash, '--num-items', String(dsMeta.items.length),
    ]);
    // noise multiplier: the smallest sigma with eps(rounds x steps) <= budget under the ledger's accountant
    const P = DEMO_PARAMS;
    const totalSteps = rounds * P.stepsPerRound;
    let sigma = calibrateSigma(P.epsilon, P.delta, P.samplingRate, totalSteps, LEDGER_ORDERS);
    const runEps = (s: number) =>
      composeEpsilon(Array.from({ length: rounds }, (_, k) => localDpsgdCharge({ round: k + 1, noiseMultiplier: s, q: P.samplingRate, steps: P.stepsPerRound, clip: P.clipNorm, delta: P.delta })), P.delta).epsilon;
    while (runEps(sigma) > P.epsilon) sigma *= 1 + 1e-6;
    const base = validatePolicy(parseYaml(fs.readFileSync(policyFile, 'utf8')));
    const { offerRanges } = await import('../shared/fl/offers');
    const policy = validatePolicy({
      ...base,
      // each party trains (and noises) only its own offers; items' rows are averaged over their provider
      catalogue: { ...base.catalogue, offers: offerRanges(dsMeta.items) },
      model: { ...base.model, embeddingDim: P.embeddingDim, hiddenDim: P.hiddenDim },
      training: { ...base.training, rounds, localSteps: P.stepsPerRound, learningRate: P.learningRate, negativesPerPositive: P.local.negatives, serverOptimizer: P.serverOptimizer, offerScope: 'own' },
      secagg: { ...base.secagg, threshold: 2 },
      // the parties let auditors download the run's models, aggregates and the coordinator's view of
      // each round: step 9 recomputes every aggregate from the signed masked inputs and replays the model chain
      audit: { auditorArtifacts: true, auditorServerView: true },
      privacy: {
        ...base.privacy,
        mechanism: 'local-dpsgd',
        clipNorm: P.clipNorm,
        noiseMultiplier: sigma,
        samplingRate: P.samplingRate,
        stepsPerRound: P.stepsPerRound,
        delta: P.delta,
        epsilonBudget: P.epsilon,
        maxInteractionsPerUser: P.maxInteractionsPerUser,
      },
      timeouts: { ...base.timeouts, phaseSeconds: P.phaseSeconds },
    });
    const hash = policyHash(policy);
    fs.writeFileSync(
      policyFile,
      `# fedbridge demo policy: written by 'fedbridge policy init', then the demo's parameters (bin/demo.ts DEMO_PARAMS).\n` +
        `# noise multiplier ${sigma} calibrated so that ${rounds} rounds x ${P.stepsPerRound} DP-SGD steps at q=${P.samplingRate} spend epsilon <= ${P.epsilon} (delta ${P.delta}) per party.\n` +
        `# policy hash: ${hash}\n` +
        stringify(policy, { lineWidth: 0 }),
    );
    const sigs: Record<string, string> = {};
    for (const p of DEMO_PARTIES) {
      const r = jsonOut((await cli('policy', ['policy', 'sign', policyFile, '--data-dir', dirs.nodes[p], '--json'])).stdout) as { out: string; policyHash: string };
      if (r.policyHash !== hash) throw new Error(`${p} signed policy ${r.policyHash}, the demo wrote ${hash}`);
      sigs[p] = (JSON.parse(fs.readFileSync(r.out, 'utf8')) as { signature: string }).signature;
    }
    await cli('policy', ['policy', 'sign', policyFile, '--key-file', path.join(dirs.coordinator, 'coordinator.key'), '--signer', policy.coordinator.name, '--json']);
    const pv = jsonOut((await cli('policy', ['policy', 'verify', policyFile, '--json'])).stdout) as { ok: boolean };
    if (!pv.ok) throw new Error('policy verify: not every signature verifies');
    log(`policy ${hash.slice(0, 16)}…: ${rounds} rounds x ${P.stepsPerRound} DP-SGD steps, q ${P.samplingRate}, clip ${P.clipNorm}, noise multiplier ${sigma.toFixed(4)} (calibrated: epsilon <= ${P.epsilon} at delta ${P.delta} per party); signed by ${DEMO_PARTIES.join(', ')} and the coordinator`);
    for (const p of DEMO_PARTIES) {
      const pub = policy.parties.find((x) => x.name === p)!.publicKey;
      await cli('operator', ['coordinator', 'enroll', ...operatorConn, '--name', p, '--public-key', pub, '--cert', certs.clients[p].cert, '--json']);
    }
    log(`enrolled ${DEMO_PARTIES.join(', ')} (Ed25519 keys bound to their TLS client certificates)`);
    const { sharedParameterLayout } = await import('../shared/model/layout');
    const { initSharedParams } = await import('../shared/model/init');
    const initial = initSharedParams(sharedParameterLayout(policy.model, policy.vocabularies), o.seed);
    const initialFile = path.join(work, 'initial-model.f32');
    fs.writeFileSync(initialFile, new Uint8Array(initial.buffer, initial.byteOffset, initial.byteLength));
    mark('policy');

    // ---- 5. federation ------------------------------------------------------------------------
    const progress: Record<number, Record<string, { eps?: number; hr?: number }>> = {};
    const alive = new Set(DEMO_PARTIES);
    const roundStart: Record<number, number> = { 1: Date.now() };
    const evalSeed = o.seed + 1000;
    const reportRound = (r: number) => {
      const got = progress[r] ?? {};
      if (![...alive].every((p) => got[p]?.eps !== undefined)) return;
      if ((progress[r] as { printed?: boolean }).printed) return;
      (progress[r] as unknown as { printed: boolean }).printed = true;
      const secs = ((Date.now() - (roundStart[r] ?? Date.now())) / 1000).toFixed(0);
      roundStart[r + 1] = Date.now();
      log(`round ${r}/${rounds} done in ${secs} s: ` + DEMO_PARTIES.filter((p) => got[p]).map((p) => `${p} HR@10 ${got[p].hr?.toFixed(3) ?? '-'} eps ${got[p].eps!.toFixed(2)}`).join(' | '));
    };
    const connected = new Set<string>();
    let onConnected: () => void = () => undefined;
    const nodeProcs: Record<string, ChildProcess> = {};
    const nodeOut: Record<string, string> = {};
    for (const p of DEMO_PARTIES) {
      const args = [
        'node', 'join', '--data-dir', dirs.nodes[p], '--coordinator', grpcAddr, '--policy', policyFile, '--ca', certs.ca,
        '--cert', certs.clients[p].cert, '--key', certs.clients[p].key, '--holdout', 'last', '--backend', o.backend ?? 'auto',
        '--eval-sample', String(Math.min(1000, P.roundEvalUsers)), '--eval-seed', String(evalSeed), '--json',
      ];
      const c = children.add(spawnCli(args));
      nodeProcs[p] = c;
      nodeOut[p] = '';
      const logStream = fs.createWriteStream(path.join(dirs.logs, `node-${p}.log`));
      logStream.write(`$ fedbridge ${args.join(' ')}\n`);
      let buf = '';
      c.stdout!.on('data', (d: Buffer) => (nodeOut[p] += d.toString('utf8')));
      c.stderr!.on('data', (d: Buffer) => {
        logStream.write(d);
        buf += d.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (/\bconnected: /.test(line) && !connected.has(p)) {
            connected.add(p);
            onConnected();
          }
          let m = /round (\d+): model v\d+ on \d+ sampled held-out users: HR@10 ([\d.]+)/.exec(line);
          if (m) ((progress[Number(m[1])] ??= {})[p] ??= {}).hr = Number(m[2]);
          m = /round (\d+) completed: .*lifetime epsilon ([\d.]+)/.exec(line);
          if (m) {
            ((progress[Number(m[1])] ??= {})[p] ??= {}).eps = Number(m[2]);
            reportRound(Number(m[1]));
          }
          if (/refusing round|aborted:/.test(line)) log(`${p}: ${line.replace(/^\[[\d:]+\]\s*/, '')}`);
        }
      });
      c.once('exit', (code) => {
        logStream.end();
        if (code !== 0) {
          alive.delete(p);
          log(`node ${p} exited with code ${code}; see ${path.join(dirs.logs, `node-${p}.log`)}`);
        }
      });
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not every node connected within 180 s (connected: ${[...connected].join(', ') || 'none'}); see ${dirs.logs}`)), 180_000);
      onConnected = () => {
        if (connected.size === DEMO_PARTIES.length) {
          clearTimeout(timer);
          resolve();
        }
      };
      for (const p of DEMO_PARTIES) nodeProcs[p].once('exit', (code) => code !== 0 && !connected.has(p) && reject(new Error(`node ${p} exited (code ${code}) before connecting; see ${path.join(dirs.logs, `node-${p}.log`)}`)));
      onConnected();
    });
    mark('nodes');
    const started = jsonOut(
      (await cli('operator', ['coordinator', 'runs', 'start', ...operatorConn, '--policy', policyFile, ...DEMO_PARTIES.flatMap((p) => ['--signature', `${p}=${sigs[p]}`]), '--initial-model', initialFile, '--json'])).stdout,
    ) as { runId: string; state: string };
    roundStart[1] = Date.now();
    log(`run ${started.runId} started (${started.state}): ${DEMO_PARTIES.length} nodes, ${rounds} rounds, secure aggregation + user-level DP`);
    const exits = await Promise.all(DEMO_PARTIES.map((p) => exitOf(nodeProcs[p])));
    const summaries: Record<string, { rounds: { round: number; outcome: string }[]; epsilon: number; finalModelVersion: number | null }> = {};
    DEMO_PARTIES.forEach((p, k) => {
      if (exits[k].code !== 0) throw new Error(`node ${p} failed (exit ${exits[k].code ?? exits[k].signal}); see ${path.join(dirs.logs, `node-${p}.log`)}`);
      summaries[p] = jsonOut(nodeOut[p]) as never;
    });
    const status = jsonOut((await cli('operator', ['coordinator', 'runs', 'status', ...operatorConn, '--run', started.runId, '--json'])).stdout) as { state: string; roundsCompleted: number; roundsPlanned: number };
    if (status.state !== 'completed') throw new Error(`run ${started.runId} ended in state ${status.state} (${status.roundsCompleted}/${status.roundsPlanned} rounds)`);
    log(`run ${started.runId} completed: ${status.roundsCompleted}/${status.roundsPlanned} rounds`);
    mark('federation');

    // ---- 6-7. evaluation: federated first (local training replaces DIR/model), then local, pooled
    const tf = await import('@tensorflow/tfjs');
    const { selectBackend } = await import('../participant-node/model/backend');
    const { poolDatasets, trainPooled, evaluatePooledParty, evaluateSavedModel, sampleUsers } = await import('../participant-node/model/pooled');
    const { readGroundTruth } = await import('../participant-node/data/import');
    const { readLedger, summarizeLedger } = await import('../participant-node/privacy/ledger');
    const sel = await selectBackend(tf, (o.backend ?? 'auto') as never);
    const evalN = o.evalUsers ?? P.evalUsers;
    const datasets = Object.fromEntries(DEMO_PARTIES.map((p) => [p, loadDataset(dirs.nodes[p])]));
    const samples = Object.fromEntries(DEMO_PARTIES.map((p) => [p, sampleUsers(datasets[p].users.length, evalN === 'all' ? Number.MAX_SAFE_INTEGER : evalN, evalSeed)]));
    type Ev = Awaited<ReturnType<typeof evaluateSavedModel>>;
    const evals: Record<string, { federated: Ev; personalised?: Ev; local: Ev; pooled?: Awaited<ReturnType<typeof evaluatePooledParty>> }> = {};
    for (const p of DEMO_PARTIES) {
      const fed = await evaluateSavedModel(dirs.nodes[p], samples[p], { seed: evalSeed, groundTruth: file(p, 'ground_truth.csv') });
      if (fed.training.kind !== 'federated') throw new Error(`${p}: the saved model is not the federated one (${String(fed.training.kind)})`);
      fs.cpSync(path.join(dirs.nodes[p], 'model'), path.join(dirs.nodes[p], 'model-federated'), { recursive: true });
      evals[p] = { federated: fed } as never;
    }
    mark('evaluate-federated');
    // Local-only baselines and fed+local personalisation train in child processes (`fedbridge node
    // train-local`, as each party would run them: plain, and `--from-saved --freeze-towers` on the
    // federated model), two chains side by side, while this process trains the pooled model: on 2
    // cores the three streams of training share both cores instead of leaving one idle (tfjs-wasm is
    // single-threaded on Node). Local-only trains in a copy of what train-local reads from the node's
    // directory (node.json and data/: no keys, ledger or models), so it cannot overwrite the federated
    // model that personalisation continues from (in the node's own directory, after the federated
    // model was evaluated and kept in model-federated). Same seeds and options as the in-process
    // training they replace: the same models.
    const localDirs = Object.fromEntries(DEMO_PARTIES.map((p) => [p, path.join(work, 'local-only', p)])) as Record<string, string>;
    for (const p of DEMO_PARTIES) for (const f of ['node.json', 'data']) fs.cpSync(path.join(dirs.nodes[p], f), path.join(localDirs[p], f), { recursive: true });
    const L = P.local;
    const trainArgs = (dir: string, epochs: number, lr: number, extra: string[]) =>
      ['node', 'train-local', '--data-dir', dir, '--epochs', String(epochs), '--batch-size', String(L.batchSize), '--negatives', String(L.negatives), '--lr', String(lr), '--seed', String(o.seed), '--holdout', 'last', '--policy', policyFile, '--backend', o.backend ?? 'auto', ...extra, '--json'];
    const chain = (label: string, argsOf: (p: string) => string[]) => {
      const trained: Record<string, { epochs: number; steps: number; samplesPerSecond: number; backend: string }> = {};
      const done = (async () => {
        for (const p of DEMO_PARTIES) trained[p] = jsonOut((await cli(`${label}-${p}`, argsOf(p))).stdout) as never;
        return trained;
      })();
      done.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled meanwhile
      return done;
    };
    const localChain = chain('local-only', (p) => trainArgs(localDirs[p], p === 'platform' ? L.platformEpochs : L.insurerEpochs, L.learningRate, []));
    const Pers = P.personalise;
    const persChain = Pers
      ? chain('personalise', (p) => trainArgs(dirs.nodes[p], p === 'platform' ? Pers.platformEpochs : Pers.insurerEpochs, Pers.learningRate, ['--from-saved', ...(Pers.freezeTowers ? ['--freeze-towers'] : [])]))
      : null;
    const pooled = poolDatasets(DEMO_PARTIES.map((p) => datasets[p]));
    // negatives as the parties draw them under the policy's offer scope
    const pt = await trainPooled(pooled, demoPooledOptions(DEMO_PARTIES, policy.model, policy.vocabularies, o.seed, policy.training.offerScope === 'own'));
    try {
      log(`pooled ceiling: ${pooled.ds.users.length} users, ${pt.split.train.user.length} training interactions (each party's repeated as often as in its local training), ${pt.train.epochs} epoch(s), ${pt.train.steps} steps, ${Math.round(pt.train.samplesPerSecond)} samples/s on ${sel.backend} (alongside the child processes' training)`);
      for (const p of DEMO_PARTIES) {
        const truth = await readGroundTruth(file(p, 'ground_truth.csv'), datasets[p]);
        evals[p].pooled = await evaluatePooledParty(pt.model, pooled, pt.split, p, samples[p], { seed: evalSeed, truth });
      }
    } finally {
      pt.model.dispose();
    }
    mark('pooled');
    const trainedLine = (tr: { epochs: number; steps: number; samplesPerSecond: number; backend: string }) =>
      `${tr.epochs} epoch(s), ${tr.steps} steps, ${Math.round(tr.samplesPerSecond)} samples/s on ${tr.backend} (child process)`;
    if (Pers && persChain) {
      const trained = await persChain;
      for (const p of DEMO_PARTIES) {
        log(`fed+local ${p}: ${trainedLine(trained[p])}`);
        evals[p].personalised = await evaluateSavedModel(dirs.nodes[p], samples[p], { seed: evalSeed, groundTruth: file(p, 'ground_truth.csv') });
      }
      log(`federated + local personalisation: each party trained the federated model further on its own data (${Pers.platformEpochs} / ${Pers.insurerEpochs} epochs)`);
      mark('personalise');
    }
    const localTrained = await localChain;
    for (const p of DEMO_PARTIES) {
      log(`local-only ${p}: ${trainedLine(localTrained[p])}`);
      evals[p].local = await evaluateSavedModel(localDirs[p], samples[p], { seed: evalSeed, groundTruth: file(p, 'ground_truth.csv') });
    }
    mark('local');

    // ---- results -----------------------------------------------------------------------------
    const parties: Record<string, PartyResult> = {};
    for (const p of DEMO_PARTIES) {
      const e = evals[p];
      const ledger = summarizeLedger(readLedger(dirs.nodes[p]));
      const perRound = new Map<number, { round: number; epsilon: number; 'hr@10'?: number; 'ndcg@10'?: number }>();
      for (const r of ledger.rounds) perRound.set(r.round, { round: r.round, epsilon: r.epsilon });
      const roundsFile = path.join(dirs.nodes[p], 'federation', 'rounds.jsonl');
      if (fs.existsSync(roundsFile)) {
        for (const line of fs.readFileSync(roundsFile, 'utf8').split('\n').filter(Boolean)) {
          const q = JSON.parse(line) as { round: number; 'hr@10': number; 'ndcg@10': number; epsilon: number };
          const cur = perRound.get(q.round) ?? { round: q.round, epsilon: q.epsilon };
          perRound.set(q.round, { ...cur, 'hr@10': q['hr@10'], 'ndcg@10': q['ndcg@10'] });
        }
      }
      const domains = Object.keys(e.local.loo.byDomain).sort();
      const cd = e.local.crossDomain && e.federated.crossDomain && e.pooled!.crossDomain;
      const pers = e.personalised;
      parties[p] = {
        local: sampleMetrics(e.local.loo.metrics),
        federated: sampleMetrics(e.federated.loo.metrics),
        personalised: pers ? sampleMetrics(pers.loo.metrics) : null,
        pooled: sampleMetrics(e.pooled!.loo.metrics),
        popularity: sampleMetrics(e.local.loo.baseline.popularity),
        crossDomain: cd
          ? {
              local: sampleMetrics(e.local.crossDomain!.overall),
              federated: sampleMetrics(e.federated.crossDomain!.overall),
              personalised: pers?.crossDomain ? sampleMetrics(pers.crossDomain.overall) : null,
              pooled: sampleMetrics(e.pooled!.crossDomain!.overall),
              popularity: sampleMetrics(e.local.crossDomain!.baseline.popularity),
            }
          : null,
        byDomain: Object.fromEntries(
          domains.map((d) => [
            d,
            {
              count: e.local.loo.byDomain[d].count,
              local: sampleMetrics(e.local.loo.byDomain[d]),
              federated: sampleMetrics(e.federated.loo.byDomain[d] ?? { 'hr@10': NaN, 'ndcg@10': NaN }),
              personalised: pers ? sampleMetrics(pers.loo.byDomain[d] ?? { 'hr@10': NaN, 'ndcg@10': NaN }) : null,
              pooled: sampleMetrics(e.pooled!.loo.byDomain[d] ?? { 'hr@10': NaN, 'ndcg@10': NaN }),
              popularity: sampleMetrics(e.local.loo.baseline.popularity.byDomain[d]),
            },
          ]),
        ),
        epsilon: ledger.epsilon,
        budget: ledger.budget ?? P.epsilon,
        evaluated: { users: e.local.users, totalUsers: e.local.totalUsers, heldOut: e.local.loo.metrics.count, crossDomainCases: e.local.crossDomain?.overall.count ?? 0 },
        rounds: [...perRound.values()].sort((a, b) => a.round - b.round),
        completedRounds: summaries[p].rounds.filter((r) => r.outcome === 'completed').length,
      };
    }

    // ---- 8. table and plot ---------------------------------------------------------------------
    const { formatResultsTable } = await import('../participant-node/report/table');
    const { demoPlotSvg } = await import('../participant-node/report/plot');
    const sampled = DEMO_PARTIES.some((p) => parties[p].evaluated.users < parties[p].evaluated.totalUsers);
    const rows: { party: string; metric: string; values: (number | null)[] }[] = [];
    const v = (m: Metrics | null | undefined, k: keyof Metrics) => (m && Number.isFinite(m[k]) ? m[k] : null);
    const withPers = P.personalise !== null;
    const cols = (m: { local?: Metrics | null; federated?: Metrics | null; personalised?: Metrics | null; pooled?: Metrics | null; popularity?: Metrics | null } | null, k: keyof Metrics) =>
      [v(m?.local, k), v(m?.federated, k), ...(withPers ? [v(m?.personalised, k)] : []), v(m?.pooled, k), v(m?.popularity, k)];
    for (const p of DEMO_PARTIES) {
      const r = parties[p];
      rows.push({ party: p, metric: 'HR@10', values: cols(r, 'hr@10') });
      rows.push({ party: p, metric: 'NDCG@10', values: cols(r, 'ndcg@10') });
      for (const [d, m] of Object.entries(r.byDomain)) rows.push({ party: p, metric: `HR@10 ${d} (n=${m.count})`, values: cols(m, 'hr@10') });
      rows.push({ party: p, metric: 'cross-domain HR@10', values: cols(r.crossDomain, 'hr@10') });
      rows.push({ party: p, metric: 'cross-domain NDCG@10', values: cols(r.crossDomain, 'ndcg@10') });
    }
    const table = formatResultsTable(
      {
        title: [
          `fedbridge demo: ${DEMO_PARTIES.length} parties, ${status.roundsCompleted} federated rounds (secure aggregation + user-level DP-SGD), ${o.scale} data, seed ${o.seed}, backend ${sel.backend}`,
          `leave-one-out HR@10 / NDCG@10 (100 sampled negatives from the target's own provider and domain) and cross-domain quality against the generator's hidden ground truth;`,
          sampled
            ? `evaluated on a fixed seeded sample of ${evalN} users per party (the same users, held-out items and negatives for every column); '*' = best trained model`
            : `evaluated on every user of each party; '*' = best trained model`,
          `local = each party alone (no DP); federated = the run's final global model with each party's private embeddings (DP, eps below);`,
          ...(withPers ? ['fed+local = the federated model trained further on the party\'s own data (never released, so no further DP);'] : []),
          `pooled = one model on all data in one place (no DP: the ceiling for one shared model; fed+local, fine-tuned per party, can exceed it); popularity = most-taken-up items of the party`,
        ],
        columns: ['local', 'federated', ...(withPers ? ['fed+local'] : []), 'pooled', 'popularity'],
        rows,
        footer: [
          'privacy spent (user-level, from each node\'s ledger):',
          ...DEMO_PARTIES.map((p) => `  ${p.padEnd(10)} epsilon ${parties[p].epsilon.toFixed(3)} of budget ${parties[p].budget} (delta ${P.delta}), ${parties[p].completedRounds} rounds completed`),
        ],
      },
      { markBest: withPers ? [0, 1, 2, 3] : [0, 1, 2] },
    );
    const plotFile = path.join(work, 'demo-plot.svg');
    fs.writeFileSync(
      plotFile,
      demoPlotSvg({
        title: `fedbridge demo (${o.scale} data, seed ${o.seed}): federated quality and privacy per round`,
        rounds: status.roundsCompleted,
        budget: P.epsilon,
        // the dashed local-only and pooled lines are the table's figures (its larger sample, other
        // negatives): they differ from the curve's last point by sampling noise as well
        qualityLabel: `HR@10, ${Math.min(1000, P.roundEvalUsers)} users; dashed: table's ${(o.evalUsers ?? P.evalUsers) === 'all' ? 'all' : o.evalUsers ?? P.evalUsers}`,
        series: DEMO_PARTIES.map((p) => ({
          party: p,
          quality: parties[p].rounds.filter((r) => r['hr@10'] !== undefined).map((r) => ({ round: r.round, value: r['hr@10']! })),
          epsilon: [{ round: 0, value: 0 }, ...parties[p].rounds.map((r) => ({ round: r.round, value: r.epsilon }))],
          localQuality: parties[p].local['hr@10'],
          pooledQuality: parties[p].pooled['hr@10'],
        })),
      }),
    );
    mark('report');

    // ---- 9. audit ------------------------------------------------------------------------------
    // the table and plot above stand on their own; an audit step that fails is reported, and the
    // demo then exits non-zero (verified: false) rather than hiding the results it did compute
    const auditLog = path.join(work, 'audit.jsonl');
    const artifactsDir = path.join(work, 'audit-artifacts');
    let audit: { ok: boolean; entries: number; rounds: number; failures: unknown[]; receipts?: number; replay?: { replayed: number; aggregatesRecomputed: number }; error?: string };
    try {
      const token = (jsonOut((await cli('operator', ['coordinator', 'tokens', 'issue', ...operatorConn, '--role', 'auditor', '--label', 'demo', '--json'])).stdout) as { token: string }).token;
      // over TLS (the coordinator's certificate, from the federation CA): the bearer token never travels in clear
      await cli('audit', ['audit', 'export', '--coordinator', `https://127.0.0.1:${ports.http}`, '--ca', certs.ca, '--out', auditLog, '--artifacts', artifactsDir, '--json'], { FEDBRIDGE_AUDITOR_TOKEN: token });
      const receiptDirs = DEMO_PARTIES.map((p) => path.join(dirs.nodes[p], 'receipts')).filter((d) => fs.existsSync(d));
      const ver = await cli('audit', ['audit', 'verify', auditLog, '--policy', policyFile, ...receiptDirs.flatMap((d) => ['--receipts', d]), '--replay', artifactsDir, '--json'], undefined, true);
      audit = jsonOut(ver.stdout) as typeof audit;
      if (ver.code !== 0) audit.ok = false;
      log(`audit log ${auditLog}: ${audit.entries} entries, ${audit.rounds} rounds, ${receiptDirs.length ? `receipts of ${receiptDirs.length} parties, ` : ''}model chain replayed for ${audit.replay?.replayed ?? 0} rounds (aggregates recomputed from the masked inputs for ${audit.replay?.aggregatesRecomputed ?? 0}), ${audit.ok ? 'verified' : `NOT verified (${audit.failures.length} failures)`}`);
    } catch (e) {
      audit = { ok: false, entries: 0, rounds: 0, failures: [], error: (e as Error).message };
      log(`audit step failed: ${(e as Error).message}`);
    }
    mark('audit');

    // ---- 10. stop --------------------------------------------------------------------------------
    await stopCoordinator();
    const result: DemoResult = {
      parties,
      rounds: status.roundsCompleted,
      runId: started.runId,
      auditLog,
      verified: audit.ok === true,
      audit: { entries: audit.entries, rounds: audit.rounds, receipts: audit.receipts ?? 0, replayed: audit.replay?.replayed ?? 0, aggregatesRecomputed: audit.replay?.aggregatesRecomputed ?? 0, failures: audit.failures, ...(audit.error ? { error: audit.error } : {}) },
      policy: policyFile,
      policyHash: hash,
      noiseMultiplier: sigma,
      plot: plotFile,
      table,
      scale: o.scale,
      seed: o.seed,
      wallSeconds: (Date.now() - t0) / 1000,
      timings,
    };
    fs.writeFileSync(path.join(work, 'results.json'), JSON.stringify({ ...result, table: undefined }, null, 2) + '\n');
    return result;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    children.killAll();
    coordinator = null;
  }
}

/** The `--json` line (DESIGN §8): {"parties":{P:{"local","federated","pooled","epsilon"}},"rounds","auditLog","verified"} plus extras. */
export function demoJson(r: DemoResult) {
  return {
    parties: Object.fromEntries(
      Object.entries(r.parties).map(([p, x]) => [p, { local: x.local, federated: x.federated, pooled: x.pooled, personalised: x.personalised, popularity: x.popularity, crossDomain: x.crossDomain, epsilon: x.epsilon, budget: x.budget }]),
    ),
    rounds: r.rounds,
    auditLog: r.auditLog,
    verified: r.verified,
    plot: r.plot,
    runId: r.runId,
    policyHash: r.policyHash,
    scale: r.scale,
    seed: r.seed,
    wallSeconds: r.wallSeconds,
  };
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('demo')
    .description('the whole federation on loopback: coordinator + 3 nodes, SecAgg + DP rounds, baselines, table, plot, audit')
    .option('--scale <scale>', 'small|default|large', 'default')
    .option('--seed <n>', 'data / initial model / evaluation seed', '1')
    .option('--rounds <n>', `federated rounds (default ${DEMO_PARAMS.rounds})`)
    .option('--party-users <list>', 'users of particular parties, overriding the scale, e.g. insurer=2000,insurer2=2000')
    .option('--eval-users <n|all>', `users evaluated per party: all, or a seeded sample of n (default ${DEMO_PARAMS.evalUsers})`)
    .option('--work <dir>', 'working directory (wiped first)', '.fedbridge-demo')
    .option('--backend <name>', 'tfjs backend for every training: auto|gpu|webgpu|node|wasm|cpu', 'auto')
    .option('--json', 'end with one JSON line of the results (DESIGN §8)')
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ scale: string; seed: string; rounds?: string; partyUsers?: string; evalUsers?: string; work: string; backend: string; json?: boolean }>();
  if (!['small', 'default', 'large'].includes(o.scale)) throw new UserError(`--scale must be small, default or large, got "${o.scale}"`);
  const partyUsers = o.partyUsers === undefined ? undefined : (await import('../participant-node/data/generate')).parsePartyUsers(o.partyUsers);
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const r = await runDemo({
    signal: ac.signal,
    scale: o.scale as DemoOptions['scale'],
    seed: parseNumberOption('--seed', o.seed, { integer: true, min: 0, max: 2 ** 31 - 1 }),
    rounds: o.rounds === undefined ? undefined : parseNumberOption('--rounds', o.rounds, { integer: true, min: 1, max: 1000 }),
    partyUsers,
    evalUsers: parseEvalUsers(o.evalUsers),
    work: o.work,
    backend: o.backend,
  });
  process.stdout.write('\n' + r.table);
  process.stdout.write(`\nplot: ${r.plot}\n`);
  process.stdout.write(
    r.audit.error
      ? `audit log: ${r.auditLog}: NOT verified: ${r.audit.error}\n`
      : `audit log: ${r.auditLog} (${r.audit.entries} entries, ${r.audit.rounds} rounds, ${r.audit.receipts} party receipts checked, model chain replayed for ${r.audit.replayed} rounds, ${r.audit.aggregatesRecomputed} aggregates recomputed from the masked inputs): ${r.verified ? 'verified, every check passed' : `NOT verified (${r.audit.failures.length} failures)`}\n`,
  );
  process.stdout.write(`finished in ${r.wallSeconds.toFixed(0)} s (${Object.entries(r.timings).map(([k, s]) => `${k} ${s.toFixed(0)} s`).join(', ')}); logs and node data under ${path.dirname(r.plot)}\n`);
  if (o.json) printJson(demoJson(r));
  return r.verified ? 0 : 1;
}

if (require.main === module) {
  let stopping = false;
  process.once('SIGINT', () => (stopping = true));
  process.once('SIGTERM', () => (stopping = true));
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      if (e instanceof UserError) {
        process.stderr.write(`demo: ${e.message}\n`);
        process.exitCode = e.exitCode;
      } else if ((e as { code?: string }).code?.startsWith('commander.')) {
        process.exitCode = (e as { exitCode?: number }).exitCode === 0 ? 0 : 2;
      } else {
        process.stderr.write(`demo: ${stopping ? 'interrupted' : 'failed'}: ${(e as Error).message}\n`);
        process.exitCode = 1;
      }
    },
  );
}
