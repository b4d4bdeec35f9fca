/**
 * Local (non-federated) use of a node: train on the node's own data, evaluate, open a recommender.
 * The CLI commands `node train-local | evaluate | recommend | serve` are thin wrappers over these.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomInt } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../shared/cli/errors';
import { DEFAULT_VOCABULARIES, type Vocabularies } from '../shared/data/vocab';
import type { ModelConfig } from '../shared/model/layout';
import { parsePolicyYaml, PolicyError } from '../shared/policy/schema';
import { Xoshiro128 } from '../shared/util/prng';
import { sodiumReady } from '../shared/crypto/sodium';
import { readNodeInfo } from './identity';
import { loadDataset } from './data/store';
import { readGroundTruth } from './data/import';
import type { NodeDataset } from './data/dataset';
import { selectBackend, type BackendChoice, type BackendSelection } from './model/backend';
import { TwoTowerModel } from './model/twotower';
import { domainIndex, encodeFeatures, leaveOneOutSplit, allPositives, trainEpochs, ownOfferPools, type NegativePools, type TrainProgress } from './model/train';
import { evaluateCrossDomain, evaluateModel, type CrossDomainReport, type EvalReport } from './model/evaluate';
import { loadModel, modelDir, readModelMeta, saveModel } from './model/store';
import { DpSgdTrainer, offerScope, type OfferScope } from './model/dpsgd';
import { ExampleKey } from './model/coins';
import { calibrateSigma, ACCOUNTING_ORDERS, epsilonFromRdp, rdpSampledGaussian } from '../shared/dp/rdp';
import type { TrainResult } from './model/train';
import { Recommender } from './serve/recommend';

export interface ModelSpec {
  model: ModelConfig;
  vocabularies: Vocabularies;
  /** the policy's offers when its training.offerScope is `own` (train on the party's own offers) */
  offers?: Record<string, Array<[number, number]>>;
}

/** Model dimensions and vocabularies: from the policy when given, else the defaults. */
export function modelSpec(ds: NodeDataset, policyFile?: string): ModelSpec {
  if (policyFile) {
    let policy;
    try {
      policy = parsePolicyYaml(fs.readFileSync(policyFile, 'utf8'));
    } catch (e) {
      if (e instanceof PolicyError) throw new UserError(`${policyFile}: ${e.message}`);
      throw new UserError(`cannot read policy ${policyFile}: ${(e as Error).message}`);
    }
    if (policy.catalogue.hash !== ds.catalogueHash) {
      throw new UserError(`the imported catalogue (hash ${ds.catalogueHash.slice(0, 16)}…) is not the policy's catalogue (${policy.catalogue.hash.slice(0, 16)}…)`);
    }
    return { model: policy.model, vocabularies: policy.vocabularies, offers: policy.training.offerScope === 'own' ? policy.catalogue.offers : undefined };
  }
  return {
    model: { architecture: 'two-tower-v1', embeddingDim: 32, hiddenDim: 64, numItems: ds.items.length },
    vocabularies: DEFAULT_VOCABULARIES,
  };
}

export interface TrainLocalOptions {
  backend: BackendChoice;
  epochs: number;
  batchSize: number;
  negatives: number;
  learningRate: number;
  /**
   * initialisation and shuffling seed; random (from the OS CSPRNG) when absent, and recorded. With
   * `dp` it sets the initialisation only: DP-SGD draws its examples from a fresh secret key
   * (model/coins.ts) that no seed reproduces, since the examples depend on the data.
   */
  seed?: number;
  /** 'last': hold out each user's latest interaction so `evaluate` is honest; 'none': train on everything */
  holdout: 'last' | 'none';
  policy?: string;
  /** user-level DP-SGD instead of plain training: sigma is calibrated to (epsilon, delta) over `steps` */
  dp?: LocalDpOptions;
  /**
   * Start from the model saved in DIR/model (e.g. the federated model `node join` saved, with this
   * party's private embeddings) instead of a fresh one: local personalisation. The result never
   * leaves the node, so it needs no DP; it replaces DIR/model.
   */
  fromSaved?: boolean;
  /** replace a saved federated (or personalised) model with a fresh local-only one */
  replace?: boolean;
  /**
   * with fromSaved: keep the saved model's feature towers f, g fixed and adapt only the item rows
   * and the private user embeddings to this party's data (keeps what the towers learnt from the
   * federation, e.g. cross-domain taste, while fitting the party's own offers)
   */
  freezeTowers?: boolean;
  onProgress?: (p: TrainProgress) => void;
  log?: (msg: string) => void;
}

export interface LocalDpOptions {
  epsilon: number;
  delta: number;
  /** total DP-SGD steps (e.g. rounds x steps per round) */
  steps: number;
  samplingRate: number;
  clipNorm: number;
  maxInteractionsPerUser: number;
  learningRate: number;
}

export interface TrainLocalResult {
  party: string;
  backend: string;
  adapter?: string;
  epochs: number;
  steps: number;
  samplesPerSecond: number;
  finalLoss: number;
  epochLosses: number[];
  seed: number;
  holdout: 'last' | 'none';
  dp?: { epsilon: number; delta: number; sigma: number; order: number; steps: number; samplingRate: number; clipNorm: number };
}

export async function trainLocal(dataDir: string, o: TrainLocalOptions): Promise<TrainLocalResult> {
  const info = readNodeInfo(dataDir);
  const ds = loadDataset(dataDir);
  const spec = { ...modelSpec(ds, o.policy) };
  const sel: BackendSelection = await selectBackend(tf, o.backend);
  await sodiumReady(); // CSPRNG for DP sampling and noise
  const seed = o.seed ?? randomInt(0, 2 ** 31);
  if (o.freezeTowers && !o.fromSaved) throw new UserError('--freeze-towers needs --from-saved: a fresh model has no trained towers to keep');
  if (o.freezeTowers && o.dp) throw new UserError('--freeze-towers applies to non-DP personalisation, not to --dp-epsilon training');
  if (!o.fromSaved && !o.replace) {
    // a federated model is the product of a whole run (and of its privacy budget): never lost silently
    const saved = fs.existsSync(path.join(modelDir(dataDir), 'meta.json')) ? readModelMeta(dataDir).training : null;
    let base: Record<string, unknown> | null = saved;
    while (base?.kind === 'personalised') base = base.from as Record<string, unknown> | null; // personalised from what
    if (saved && base?.kind === 'federated') {
      const what = `${saved.kind === 'personalised' ? 'a personalisation of ' : ''}the federated model of run ${String(base.runId)} (version ${String(base.modelVersion)})`;
      throw new UserError(`${modelDir(dataDir)} holds ${what}; train-local would replace it with a local-only model. Pass --replace to do that, or --from-saved to personalise it`);
    }
  }
  let positives = o.holdout === 'last' ? leaveOneOutSplit(ds).train : allPositives(ds);
  // the policy trains each party on its own offers: the same examples here (positives of its own
  // offers, negatives from them), so local-only and federated models are trained alike
  let pools: NegativePools = domainIndex(ds);
  if (spec.offers) {
    let scope;
    try {
      scope = offerScope(info.name, spec.offers, ds.items);
    } catch (e) {
      throw new UserError(`${o.policy}: ${(e as Error).message}`);
    }
    pools = ownOfferPools(pools, scope.own);
    const keep = Array.from(positives.item, (i) => scope.own[i] === 1);
    const dropped = keep.filter((k) => !k).length;
    if (dropped > 0) {
      o.log?.(`offer scope: ${dropped} interaction(s) with other providers' items are not used`);
      positives = { user: positives.user.filter((_, j) => keep[j]), item: positives.item.filter((_, j) => keep[j]) };
    }
  }
  let model = TwoTowerModel.forPolicy(spec.model, spec.vocabularies, ds.users.length, { learningRate: o.learningRate, initSeed: seed });
  let from: Record<string, unknown> | null = null;
  if (o.fromSaved) {
    const saved = loadModel(dataDir, { learningRate: o.learningRate }); // continue at the requested rate
    if (saved.meta.catalogueHash !== ds.catalogueHash || saved.userIds.length !== ds.users.length || saved.userIds.some((id, k) => ds.users[k].id !== id)) {
      saved.model.dispose();
      model.dispose();
      throw new UserError(`the saved model in ${dataDir} does not match the imported data (catalogue or users differ); cannot continue from it`, 1);
    }
    if ((saved.meta.training.holdout ?? 'none') !== o.holdout) {
      saved.model.dispose();
      model.dispose();
      throw new UserError(`the saved model was trained with holdout ${String(saved.meta.training.holdout)}, not ${o.holdout}: continuing would train on held-out interactions or change the protocol`, 1);
    }
    model.dispose();
    model = saved.model;
    from = saved.meta.training;
    spec.model = saved.meta.model;
    spec.vocabularies = saved.meta.vocabularies;
  }
  try {
    const f = encodeFeatures(ds, spec.vocabularies);
    model.setFeatures(f.users, f.items);
    o.log?.(`training ${info.name}: ${ds.users.length} users, ${positives.user.length} interactions, ${ds.items.length} items, backend ${sel.backend}${o.dp ? `, user-level DP-SGD (epsilon ${o.dp.epsilon}, delta ${o.dp.delta})` : ''}`);
    let dpInfo: TrainLocalResult['dp'];
    const r = o.dp
      ? await (async () => {
          const res = await trainDp(model, positives, domainIndex(ds), o.dp!, o.negatives, ExampleKey.fresh(), o.onProgress, spec.offers ? offerScope(info.name, spec.offers, ds.items) : null);
          dpInfo = res.dp;
          return res.train;
        })()
      : await trainEpochs(model, positives, pools, {
          epochs: o.epochs,
          batchSize: o.batchSize,
          negatives: o.negatives,
          rng: new Xoshiro128(seed ^ 0x2545f491),
          onProgress: o.onProgress,
          freezeTowers: o.freezeTowers,
        });
    await saveModel(
      dataDir,
      model,
      {
        model: spec.model,
        vocabularies: spec.vocabularies,
        catalogueHash: ds.catalogueHash,
        learningRate: o.learningRate,
        initSeed: seed,
        training: { kind: from ? 'personalised' : 'local', from, freezeTowers: Boolean(o.freezeTowers), backend: sel.backend, epochs: r.epochs, steps: r.steps, batchSize: o.batchSize, negatives: o.negatives, holdout: o.holdout, finalLoss: r.finalLoss, dp: dpInfo ?? null },
      },
      ds.users.map((u) => u.id),
    );
    return {
      party: info.name,
      backend: sel.backend,
      adapter: sel.adapter,
      epochs: r.epochs,
      steps: r.steps,
      samplesPerSecond: r.samplesPerSecond,
      finalLoss: r.finalLoss,
      epochLosses: r.epochLosses,
      seed,
      holdout: o.holdout,
      dp: dpInfo,
    };
  } finally {
    model.dispose();
  }
}

/**
 * Local user-level DP-SGD: sigma is the smallest noise multiplier that keeps `steps` Poisson-
 * subsampled Gaussian steps at rate q within (epsilon, delta) (RDP accountant, shared/dp/rdp.ts);
 * the epsilon reported is recomputed from the steps actually taken.
 */
async function trainDp(
  model: TwoTowerModel,
  positives: { user: Uint32Array; item: Uint32Array },
  domains: ReturnType<typeof domainIndex>,
  dp: LocalDpOptions,
  negatives: number,
  key: ExampleKey,
  onProgress?: (p: TrainProgress) => void,
  scope: OfferScope | null = null,
): Promise<{ train: TrainResult; dp: NonNullable<TrainLocalResult['dp']> }> {
  const sigma = calibrateSigma(dp.epsilon, dp.delta, dp.samplingRate, dp.steps, ACCOUNTING_ORDERS);
  const trainer = new DpSgdTrainer(model, positives, domains, { clipNorm: dp.clipNorm, noiseMultiplier: sigma, samplingRate: dp.samplingRate, maxInteractionsPerUser: dp.maxInteractionsPerUser, negatives, learningRate: dp.learningRate, scope }, key);
  const t0 = process.hrtime.bigint();
  let samples = 0;
  let lossSum = 0;
  let finalLoss = NaN;
  for (let s = 1; s <= dp.steps; s++) {
    const info = await trainer.step();
    samples += info.examples;
    if (!Number.isNaN(info.loss)) {
      finalLoss = info.loss;
      lossSum += info.loss;
    }
    if (onProgress) {
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      onProgress({ epoch: 1, epochs: 1, batch: s, batches: dp.steps, loss: info.loss, samplesPerSecond: samples / Math.max(secs, 1e-9) });
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const orders = ACCOUNTING_ORDERS;
  const eps = epsilonFromRdp(orders, rdpSampledGaussian(dp.samplingRate, sigma, dp.steps, orders), dp.delta);
  return {
    train: { epochs: 1, steps: dp.steps, samples, seconds, samplesPerSecond: samples / Math.max(seconds, 1e-9), finalLoss, epochLosses: [lossSum / dp.steps] },
    dp: { epsilon: eps.epsilon, delta: dp.delta, sigma, order: eps.order, steps: dp.steps, samplingRate: dp.samplingRate, clipNorm: dp.clipNorm },
  };
}

export interface EvaluateResult extends EvalReport {
  party: string;
  crossDomain?: CrossDomainReport;
}

/** Loads the saved model and the dataset, checks they belong together. */
async function openModel(dataDir: string, backend: BackendChoice) {
  const info = readNodeInfo(dataDir);
  const ds = loadDataset(dataDir);
  await selectBackend(tf, backend);
  const { model, meta, userIds } = loadModel(dataDir);
  if (meta.catalogueHash !== ds.catalogueHash) {
    model.dispose();
    throw new UserError(`the model in ${dataDir} was trained on another catalogue than the imported one; retrain it`, 1);
  }
  if (userIds.length !== ds.users.length || userIds.some((id, k) => ds.users[k].id !== id)) {
    model.dispose();
    throw new UserError(`the data in ${dataDir} was re-imported after the model was trained (the users differ); retrain it`, 1);
  }
  const f = encodeFeatures(ds, meta.vocabularies);
  model.setFeatures(f.users, f.items);
  return { info, ds, model, meta };
}

export async function evaluateLocal(dataDir: string, o: { backend: BackendChoice; groundTruth?: string; seed?: number }): Promise<EvaluateResult> {
  const { info, ds, model, meta } = await openModel(dataDir, o.backend);
  try {
    if (meta.training.holdout !== 'last') {
      throw new UserError(`the model in ${dataDir} was trained on every interaction (holdout ${String(meta.training.holdout)}), so a leave-one-out evaluation would score items it has seen; retrain with --holdout last`, 1);
    }
    const split = leaveOneOutSplit(ds);
    const rep = await evaluateModel(model, ds, split, o.seed ?? 1);
    const out: EvaluateResult = { party: info.name, ...rep };
    if (o.groundTruth) {
      const truth = await readGroundTruth(o.groundTruth, ds);
      out.crossDomain = await evaluateCrossDomain(model, ds, split, truth, (o.seed ?? 1) + 1);
    }
    return out;
  } finally {
    model.dispose();
  }
}

export async function openRecommender(dataDir: string, backend: BackendChoice): Promise<{ rec: Recommender; close: () => void; party: string }> {
  const { info, ds, model, meta } = await openModel(dataDir, backend);
  try {
    return { rec: await Recommender.open(model, ds, meta.vocabularies), close: () => model.dispose(), party: info.name };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
