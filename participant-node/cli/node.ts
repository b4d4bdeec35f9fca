/**
 * `fedbridge node ...` commands. Heavy modules (tfjs) are imported inside actions.
 */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { parseNumberOption, printJson, UserError } from '../../shared/cli/errors';
import type { BackendChoice } from '../model/backend';
import type { TrainProgress } from '../model/train';

/** The bearer token of `node serve --token-file`: a regular file only its owner can read, 16+ characters. */
function readTokenFile(file: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new UserError(`--token-file ${file}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new UserError(`--token-file ${file} is not a regular file`);
  if ((st.mode & 0o077) !== 0) throw new UserError(`--token-file ${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run 'chmod 600 ${file}'`);
  const token = fs.readFileSync(file, 'utf8').trim();
  if (!/^[\x21-\x7e]{16,}$/.test(token)) throw new UserError(`--token-file ${file}: expected one token of at least 16 printable ASCII characters, no spaces (e.g. 'openssl rand -hex 32 > ${file}')`);
  return token;
}

const BACKEND_HELP = 'tfjs backend: auto|gpu|webgpu|node|wasm|cpu (auto tries them in that order; env FEDBRIDGE_BACKEND)';

/** Progress bar on a TTY, plain log lines (one per epoch, and every ~5 s) otherwise. */
function progressReporter(): { onProgress: (p: TrainProgress) => void; stop: () => void } {
  if (process.stderr.isTTY) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const cliProgress = require('cli-progress') as typeof import('cli-progress');
    const bar = new cliProgress.SingleBar(
      { format: 'epoch {epoch}/{epochs} [{bar}] batch {value}/{total} | loss {loss} | {sps} samples/s', stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let epoch = 0;
    return {
      onProgress: (p) => {
        if (p.epoch !== epoch) {
          if (epoch) bar.stop();
          epoch = p.epoch;
          bar.start(p.batches, 0, { epoch: p.epoch, epochs: p.epochs, loss: '-', sps: '-' });
        }
        bar.update(p.batch, { loss: p.loss.toFixed(4), sps: Math.round(p.samplesPerSecond) });
      },
      stop: () => bar.stop(),
    };
  }
  let last = 0;
  return {
    onProgress: (p) => {
      const now = Date.now();
      if (p.batch === p.batches || now - last > 5000) {
        last = now;
        process.stderr.write(`epoch ${p.epoch}/${p.epochs} batch ${p.batch}/${p.batches} loss ${p.loss.toFixed(4)} ${Math.round(p.samplesPerSecond)} samples/s\n`);
      }
    },
    stop: () => {},
  };
}

export function registerNodeCommands(node: Command): void {
  node
    .command('init')
    .description('create a node data dir with a fresh Ed25519 identity (private key file mode 0600)')
    .requiredOption('--data-dir <dir>', 'the node data directory')
    .requiredOption('--name <name>', 'party name, e.g. platform or insurer')
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: { dataDir: string; name: string; json?: boolean }) => {
      const { initNode } = await import('../identity');
      const info = await initNode(opts.dataDir, opts.name);
      if (opts.json) printJson({ name: info.name, publicKey: info.publicKey, dataDir: opts.dataDir });
      else process.stderr.write(`initialised node "${info.name}" in ${opts.dataDir}\npublic key: ${info.publicKey}\n`);
    });

  node
    .command('train-local')
    .description("train the recommender on this node's own data only (no federation) and save it in DIR/model")
    .requiredOption('--data-dir <dir>', 'the node data directory')
    .option('--epochs <n>', 'passes over the training interactions', '3')
    .option('--batch-size <n>', 'examples per step (positives + negatives)', '1024')
    .option('--negatives <n>', 'sampled negatives per positive, from the positive item\'s domain', '4')
    .option('--lr <x>', 'Adam learning rate', '0.005')
    .option('--seed <n>', 'initialisation/shuffle seed (default: random, printed); with --dp-epsilon it sets the initialisation only')
    .option('--holdout <mode>', "last: hold out each user's latest interaction for `node evaluate`; none: train on all", 'last')
    .option('--policy <file>', 'take model dimensions and vocabularies from the federation policy')
    .option('--from-saved', 'continue from the saved model (e.g. the federated one: local personalisation, never released)')
    .option('--freeze-towers', 'with --from-saved: keep the feature towers, adapt only item rows and user embeddings')
    .option('--replace', 'replace a saved federated (or personalised) model with the local-only one (refused otherwise)')
    .option('--backend <name>', BACKEND_HELP, 'auto')
    .option('--dp-epsilon <x>', 'train with user-level DP-SGD at this epsilon (sigma is calibrated by the RDP accountant)')
    .option('--dp-delta <x>', 'DP delta', '1e-6')
    .option('--dp-steps <n>', 'DP-SGD steps in total (e.g. 20 rounds x 50 steps)', '1000')
    .option('--dp-q <x>', 'Poisson sampling rate of users per step', '0.01')
    .option('--dp-clip <x>', 'per-user L2 clip norm C', '1')
    .option('--dp-max-interactions <n>', 'contribution bound: positives per user per step', '32')
    .option('--dp-lr <x>', 'learning rate of the DP optimizer (dense Adam)', '0.001')
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: Record<string, string | boolean | undefined>, cmd: Command) => {
      const holdout = opts.holdout as string;
      if (opts.dpEpsilon === undefined) {
        // a DP setting without --dp-epsilon would otherwise train a NON-private model without a word
        const given = ['dpDelta', 'dpSteps', 'dpQ', 'dpClip', 'dpMaxInteractions', 'dpLr'].filter((k) => cmd.getOptionValueSource(k) === 'cli');
        if (given.length) throw new UserError(`${given.map((k) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())).join(', ')} applies to DP-SGD training: give --dp-epsilon too (without it the model is trained without differential privacy)`);
      }
      if (holdout !== 'last' && holdout !== 'none') throw new UserError(`--holdout must be last or none, got "${holdout}"`);
      const args = {
        backend: opts.backend as BackendChoice,
        epochs: parseNumberOption('--epochs', opts.epochs as string, { integer: true, min: 1, max: 10_000 }),
        batchSize: parseNumberOption('--batch-size', opts.batchSize as string, { integer: true, min: 2, max: 1_000_000 }),
        negatives: parseNumberOption('--negatives', opts.negatives as string, { integer: true, min: 1, max: 100 }),
        learningRate: parseNumberOption('--lr', opts.lr as string, { min: 1e-9, max: 10 }),
        seed: opts.seed === undefined ? undefined : parseNumberOption('--seed', opts.seed as string, { integer: true, min: 0, max: 2 ** 31 - 1 }),
        holdout: holdout as 'last' | 'none',
        policy: opts.policy as string | undefined,
        fromSaved: Boolean(opts.fromSaved),
        replace: Boolean(opts.replace),
        freezeTowers: Boolean(opts.freezeTowers),
        dp:
          opts.dpEpsilon === undefined
            ? undefined
            : {
                epsilon: parseNumberOption('--dp-epsilon', opts.dpEpsilon as string, { min: 1e-6, max: 1e4 }),
                delta: parseNumberOption('--dp-delta', opts.dpDelta as string, { min: 1e-30, max: 0.1 }),
                steps: parseNumberOption('--dp-steps', opts.dpSteps as string, { integer: true, min: 1, max: 10_000_000 }),
                samplingRate: parseNumberOption('--dp-q', opts.dpQ as string, { min: 1e-9, max: 1 }),
                clipNorm: parseNumberOption('--dp-clip', opts.dpClip as string, { min: 1e-9, max: 1e6 }),
                maxInteractionsPerUser: parseNumberOption('--dp-max-interactions', opts.dpMaxInteractions as string, { integer: true, min: 1, max: 100_000 }),
                learningRate: parseNumberOption('--dp-lr', opts.dpLr as string, { min: 1e-9, max: 10 }),
              },
      };
      const { trainLocal } = await import('../local');
      const progress = progressReporter();
      let r;
      try {
        r = await trainLocal(opts.dataDir as string, { ...args, onProgress: progress.onProgress, log: (m) => process.stderr.write(m + '\n') });
      } finally {
        progress.stop();
      }
      if (opts.json) {
        printJson({ party: r.party, backend: r.backend, adapter: r.adapter, epochs: r.epochs, steps: r.steps, samplesPerSecond: r.samplesPerSecond, finalLoss: r.finalLoss, epochLosses: r.epochLosses, seed: r.seed, holdout: r.holdout, dp: r.dp });
      } else {
        process.stderr.write(`trained ${r.epochs} epochs (${r.steps} steps) on ${r.backend}: ${Math.round(r.samplesPerSecond)} samples/s, final loss ${r.finalLoss.toFixed(4)}, seed ${r.seed}\n`);
        if (r.dp) process.stderr.write(`user-level DP: epsilon ${r.dp.epsilon.toFixed(3)} (delta ${r.dp.delta}, order ${r.dp.order}) with sigma ${r.dp.sigma.toFixed(4)}, q ${r.dp.samplingRate}, ${r.dp.steps} steps, clip ${r.dp.clipNorm}\n`);
      }
    });

  node
    .command('evaluate')
    .description('leave-one-out HR@10 and NDCG@10 (100 sampled same-domain negatives), full-catalogue recall@50, per domain, vs a popularity baseline')
    .requiredOption('--data-dir <dir>', 'the node data directory')
    .option('--ground-truth <file>', 'CSV user_id,item_id of hidden cross-domain take-ups (from data generate) to score cross-domain quality')
    .option('--seed <n>', 'seed of the negative sampling (same seed = same candidates)', '1')
    .option('--backend <name>', BACKEND_HELP, 'auto')
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: { dataDir: string; groundTruth?: string; seed: string; backend: string; json?: boolean }) => {
      const seed = parseNumberOption('--seed', opts.seed, { integer: true, min: 0, max: 2 ** 31 - 1 });
      const { evaluateLocal } = await import('../local');
      const r = await evaluateLocal(opts.dataDir, { backend: opts.backend as BackendChoice, groundTruth: opts.groundTruth, seed });
      if (opts.json) {
        printJson(r);
        return;
      }
      const f = (x: number) => x.toFixed(4);
      const lines = [
        `party ${r.party}: ${r.metrics.count} held-out interactions`,
        `  model       HR@10 ${f(r.metrics['hr@10'])}  NDCG@10 ${f(r.metrics['ndcg@10'])}  recall@50 ${f(r.metrics['recall@50'])}`,
        `  popularity  HR@10 ${f(r.baseline.popularity['hr@10'])}  NDCG@10 ${f(r.baseline.popularity['ndcg@10'])}  recall@50 ${f(r.baseline.popularity['recall@50'])}`,
        ...Object.entries(r.byDomain).map(([d, m]) => `  ${d.padEnd(10)}  HR@10 ${f(m['hr@10'])}  NDCG@10 ${f(m['ndcg@10'])}  (n=${m.count}; popularity HR@10 ${f(r.baseline.popularity.byDomain[d]?.['hr@10'] ?? 0)})`),
      ];
      if (r.crossDomain) lines.push(`  cross-domain (hidden ground truth) HR@10 ${f(r.crossDomain.overall['hr@10'])} NDCG@10 ${f(r.crossDomain.overall['ndcg@10'])} (popularity HR@10 ${f(r.crossDomain.baseline.popularity['hr@10'])})`);
      process.stdout.write(lines.join('\n') + '\n');
    });

  node
    .command('recommend')
    .description('top-K items from the latest model for a known user, or a cold-start user given by --features')
    .requiredOption('--data-dir <dir>', 'the node data directory')
    .option('--user <id>', 'user id (of this party)')
    .option('--features <spec>', 'cold-start user: age_band=25-34,region=north,life_stage=student,interests=programming|design')
    .option('--k <n>', 'how many items', '10')
    .option('--domain <domain>', 'only items of this domain: course|insurance|finance')
    .option('--backend <name>', BACKEND_HELP, 'auto')
    .option('--json', 'print the result as one JSON object')
    .action(async (opts: { dataDir: string; user?: string; features?: string; k: string; domain?: string; backend: string; json?: boolean }) => {
      if (!opts.user && !opts.features) throw new UserError('give --user ID, or --features for a cold-start user');
      const k = parseNumberOption('--k', opts.k, { integer: true, min: 1, max: 1000 });
      const { openRecommender } = await import('../local');
      const { parseFeatureSpec } = await import('../serve/recommend');
      const features = opts.features ? parseFeatureSpec(opts.features) : undefined;
      const { rec, close } = await openRecommender(opts.dataDir, opts.backend as BackendChoice);
      try {
        const out = await rec.recommend({ userId: opts.user, features, k, domain: opts.domain as never });
        if (opts.json) printJson(out);
        else process.stdout.write(out.items.map((it, n) => `${String(n + 1).padStart(3)}. ${it.itemId.padEnd(22)} ${it.domain.padEnd(10)} ${it.score.toFixed(4)}`).join('\n') + '\n');
      } finally {
        close();
      }
    });

  node
    .command('join')
    .description('take part in the federation: subscribe to the coordinator, train with DP, secure-aggregate, adopt each new global model')
    .requiredOption('--data-dir <dir>', 'the node data directory (initialised and imported)')
    .requiredOption('--coordinator <host:port>', "the coordinator's gRPC address")
    .requiredOption('--policy <file>', 'the federation policy YAML this node signed')
    .requiredOption('--ca <file>', "the federation CA certificate (from 'fedbridge coordinator certs')")
    .option('--cert <file>', "this party's TLS client certificate (mutual TLS)")
    .option('--key <file>', "this party's TLS client key")
    .option('--holdout <mode>', "last: keep each user's latest interaction out of training (so 'node evaluate' is honest); none", 'last')
    .option('--max-rounds <n>', 'leave after this many completed rounds')
    .option('--eval-sample <n>', 'after each round, evaluate the adopted model on this many sampled users (<= 1000) into DIR/federation/rounds.jsonl')
    .option('--eval-seed <n>', 'seed of that user sample and of the evaluation negatives', '1')
    .option('--backend <name>', BACKEND_HELP, 'auto')
    .option('--json', 'print a summary as one JSON object when the run ends')
    .action(async (opts: { dataDir: string; coordinator: string; policy: string; ca: string; cert?: string; key?: string; holdout: string; maxRounds?: string; evalSample?: string; evalSeed: string; backend: string; json?: boolean }) => {
      if (opts.holdout !== 'last' && opts.holdout !== 'none') throw new UserError(`--holdout must be last or none, got "${opts.holdout}"`);
      if (!/^[^\s:]+:\d{1,5}$/.test(opts.coordinator)) throw new UserError(`--coordinator expects host:port, got "${opts.coordinator}"`);
      if (Boolean(opts.cert) !== Boolean(opts.key)) throw new UserError('--cert and --key go together (mutual TLS)');
      const maxRounds = opts.maxRounds === undefined ? undefined : parseNumberOption('--max-rounds', opts.maxRounds, { integer: true, min: 1 });
      const evalSample =
        opts.evalSample === undefined
          ? undefined
          : { users: parseNumberOption('--eval-sample', opts.evalSample, { integer: true, min: 1, max: 1000 }), seed: parseNumberOption('--eval-seed', opts.evalSeed, { integer: true, min: 0, max: 2 ** 31 - 1 }) };
      const { joinFederation } = await import('../federation/client');
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const r = await joinFederation({
          dataDir: opts.dataDir,
          coordinator: opts.coordinator,
          policyFile: opts.policy,
          caFile: opts.ca,
          certFile: opts.cert,
          keyFile: opts.key,
          holdout: opts.holdout as 'last' | 'none',
          backend: opts.backend as BackendChoice,
          maxRounds,
          evalSample,
          signal: ac.signal,
          log: (m) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`),
        });
        if (opts.json) printJson({ party: r.party, finalModelVersion: r.finalModelVersion, epsilon: r.epsilon, rounds: r.rounds.map(({ encoded: _e, ...rest }) => rest) });
        else process.stderr.write(`left the federation: ${r.rounds.filter((x) => x.outcome === 'completed').length} rounds completed, model v${r.finalModelVersion ?? '-'}, lifetime epsilon ${r.epsilon.toFixed(3)}\n`);
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });

  node
    .command('serve')
    .description('serve GET /recommendations/:userId?k=10&domain=insurance from the latest model (localhost by default)')
    .requiredOption('--data-dir <dir>', 'the node data directory')
    .option('--host <host>', 'address to bind (default: loopback only; any other address needs --token-file)', '127.0.0.1')
    .option('--port <n>', 'port (0 = any free port)', '8787')
    .option('--token-file <file>', "a secret (mode 0600, at least 16 characters) every request must send as 'Authorization: Bearer TOKEN'")
    .option('--backend <name>', BACKEND_HELP, 'auto')
    .action(async (opts: { dataDir: string; host: string; port: string; tokenFile?: string; backend: string }) => {
      const port = parseNumberOption('--port', opts.port, { integer: true, min: 0, max: 65535 });
      const { createRecommendationServer, isLoopbackHost, listen } = await import('../serve/http');
      if (!isLoopbackHost(opts.host) && opts.tokenFile === undefined) {
        throw new UserError(`--host ${opts.host} serves the party's users' recommendations beyond this machine: give --token-file F (a secret, mode 0600) that clients send as 'Authorization: Bearer TOKEN'`);
      }
      const token = opts.tokenFile === undefined ? undefined : readTokenFile(opts.tokenFile);
      const { openRecommender } = await import('../local');
      const { rec, party } = await openRecommender(opts.dataDir, opts.backend as BackendChoice);
      const server = createRecommendationServer(rec, (m) => process.stderr.write(m + '\n'), { token });
      const bound = await listen(server, port, opts.host);
      process.stderr.write(`node ${party}: serving recommendations on http://${opts.host}:${bound}/recommendations/:userId\n`);
      await new Promise<void>((resolve) => {
        const stop = () => server.close(() => resolve());
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
