/**
 * replayModelChain: recomputes every model of every run in an exported audit log from the run's
 * initial model and its rounds' unmasked aggregates, and checks each against the hashes the log
 * holds (`fedbridge audit verify --replay DIR`). Pure (no I/O), but Node only: the mask PRG of the
 * aggregate's recomputation (shared/crypto/prg.ts) uses node:crypto's ChaCha20, so the auditor page
 * (browser) does not replay. Requires `await sodiumReady()` first. Meant for a log that verifyLog accepted: it reads the
 * entries that parse and ignores the rest (verifyLog reports those).
 *
 * The computation, for each run of the log, with `policy` = the policy whose hash the run names:
 *
 *   model_0 := the initial model's bytes; BLAKE2b-256(model_0) must be run-started.initialModelHash
 *   state   := a fresh server-optimizer state (a run's initial model is stored without one)
 *   for each round-completed entry of the run, in log order:
 *     its parentModelVersion must be the version the chain is at (the run's initial version, then
 *       the previous completed round's modelVersion);
 *     sum_k   := the round's aggregate, u32 little-endian, encodedDimension(d, rotated) words, each
 *                below 2^bitWidth; BLAKE2b-256(bytes) must be the entry's aggregateHash
 *     model_k := roundNextModel(policy, runId, round, model_{k-1}, sum_k, entry.survivors, state)
 *                (shared/fl/round-params.ts: the function the coordinator itself computes with:
 *                decoding with the round's public rotation seed, averaging over the survivors, or
 *                per provider under offer scope `own`, then FedAvg or FedAdam; updates `state`)
 *     BLAKE2b-256(model_k as float32 little-endian) must be the entry's modelHash
 *   Aborted rounds change nothing: the retry starts from the same base model and state, as the
 *   coordinator's does (the state is stored with each model version).
 *
 * What it adds to verifyLog: the parties' receipts already prove that they all received the model
 * whose hash is logged; the replay proves that this model is exactly what the signed policy's
 * decoding, averaging and server optimizer make of the logged aggregates, starting from the logged
 * initial model, so the coordinator cannot have steered the model (a planted backdoor, a different
 * learning rate, a dropped party's update kept) without it showing. What it cannot prove: that each
 * aggregate is the true sum of the survivors' masked inputs, unless the policy also releases the
 * server view (below); nor anything about the initial model beyond its hash.
 *
 * With the server view (policy audit.auditorServerView: the survivors' masked inputs, their
 * self-mask seeds and the dropped parties' mask keys, as the coordinator held them), each aggregate
 * is recomputed too, before it is used:
 *     every masked input y_u of the view must hash (BLAKE2b-256 of u32 LE) to the digest party u
 *       signed in the round's mask entry, and the view must hold exactly the mask entry's parties;
 *     sum_k := recomputeAggregate(round context, U2 = share parties, U3 = mask parties, the
 *              advertise entry's signed keys, view) (shared/secagg/unmask.ts: each seed checked
 *              against its signed commitment, each key against its advertised public key, then
 *              the masks removed with the code the coordinator runs);
 *     BLAKE2b-256(sum_k) must be the entry's aggregateHash.
 * (When the entry carries serverViewHash, the view's bytes must hash to it first: the log then pins
 * the view itself, and a damaged or substituted file is named as such.)
 * The round context is the coordinator's: federation, run, round, the policy's parties and their
 * pinned keys, threshold, neighbour degree, bit width, publicRoundSeed('graph', ...), and
 * encodedDimension(d, rotated). Then the chain runs from the parties' signed inputs to the models.
 *
 * Float determinism: roundNextModel is IEEE-754 arithmetic in JavaScript (float64 intermediate,
 * float32 storage, Math.sqrt correctly rounded), so every engine computes the same bits.
 *
 * Failures are VerifyFailure items (entry index, field `replay.*`, expected, found). After a failed
 * round the rest of its run cannot be recomputed (its next base model is unknown); those rounds
 * count as not replayed and a warning says so; other runs go on. A missing artifact (the auditor has
 * no bytes for a model or an aggregate) is a failure too: the chain is then not shown.
 */
import { policyHash as computePolicyHash, type Policy } from '../policy/schema';
import { encodedDimension } from '../dp/encode';
import { roundNextModel, roundSecAggInfo } from '../fl/round-params';
import { newServerState, type ServerOptimizerState } from '../fl/server';
import { layoutSize, sharedParameterLayout } from '../model/layout';
import { sodium } from '../crypto/sodium';
import { parseExportLine, splitLines } from './chain';
import { fromBase64, fromHex, toHex } from './bytes';
import { RoundContext } from '../secagg/round';
import { recomputeAggregate, type AdvertisedKeys } from '../secagg/unmask';
import { u32FromLeBytes, u32LeBytes } from '../secagg/messages';
import { decodeServerView } from './server-view';
import { checkEntry } from './entries';
import type { VerifyFailure } from './verify';

/** Where the replay gets its bytes (e.g. the directory `audit export --artifacts` wrote). */
export interface ReplayArtifacts {
  /** the bytes of model version `version`, or null when the auditor does not have them */
  model(version: number): Uint8Array | null;
  /** the unmasked aggregate of (runId, round), or null when the auditor does not have it */
  aggregate(runId: string, round: number): Uint8Array | null;
  /** the server view of (runId, round) (server-view.ts), or null; asked for only under audit.auditorServerView */
  serverView?(runId: string, round: number): Uint8Array | null;
}

export interface ReplayedRound {
  runId: string;
  round: number;
  /** log index of the round-completed entry */
  entry: number;
  modelVersion: number;
  status: 'replayed' | 'failed' | 'not-replayed';
  /** the aggregate itself was recomputed from the server view and matched */
  aggregateRecomputed: boolean;
}

export interface ReplayResult {
  ok: boolean;
  /** completed rounds whose model was recomputed and matched */
  replayed: number;
  /** of those, rounds whose aggregate was also recomputed from the server view */
  aggregatesRecomputed: number;
  rounds: ReplayedRound[];
  failures: VerifyFailure[];
  warnings: string[];
}

/** What the round's entries say that the aggregate's recomputation needs. */
interface RoundLog {
  secaggRound: number;
  parties: string[];
  ads: Map<string, AdvertisedKeys>;
  shared: string[] | null;
  masked: string[] | null;
  digests: Map<string, string>;
}

interface RunChain {
  runId: string;
  policy: Policy | null;
  /** the version and weights the chain is at; null once a round failed (or the start did) */
  at: { version: number; weights: Float32Array; state: ServerOptimizerState } | null;
  /** why the chain stopped (for the warning) */
  stopped: string | null;
}

const hashHex = (b: Uint8Array): string => toHex(sodium().crypto_generichash(32, b, null));

/** Float32 little-endian bytes -> a fresh Float32Array (whatever the platform's byte order). */
function floatsOf(b: Uint8Array): Float32Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Float32Array(b.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(4 * i, true);
  return out;
}

/** A Float32Array as little-endian bytes. */
export function float32LeBytes(v: Float32Array): Uint8Array {
  const out = new Uint8Array(v.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < v.length; i++) dv.setFloat32(4 * i, v[i], true);
  return out;
}

export function replayModelChain(log: Uint8Array, policies: readonly Policy[], artifacts: ReplayArtifacts): ReplayResult {
  const byHash = new Map(policies.map((p) => [computePolicyHash(p), p]));
  const failures: VerifyFailure[] = [];
  const warnings: string[] = [];
  const rounds: ReplayedRound[] = [];
  const runs = new Map<string, RunChain>();
  const roundLogs = new Map<string, RoundLog>();
  const key = (runId: string, round: number) => `${runId}\n${round}`;
  const fail = (entry: number, field: string, expected: string, found: string) => failures.push({ entry, field, expected, found });

  /** Recomputes a round's aggregate from the server view and checks its hash; returns why it failed, or null. */
  const recomputeFromView = (i: number, runId: string, round: number, policy: Policy, words: number, r: RoundLog | undefined, aggregateHash: string, viewHash: string | undefined): string | null => {
    if (!r || !r.shared || !r.masked) {
      fail(i, 'replay.serverView', `round ${round}'s round-started, share and mask entries`, 'missing from the log');
      return `round ${round}'s entries are incomplete`;
    }
    const bytes = artifacts.serverView?.(runId, round) ?? null;
    if (!bytes) {
      fail(i, 'replay.serverView', `the server view of round ${round} of run ${runId} (the policy sets audit.auditorServerView)`, 'missing');
      return `the server view of round ${round} is missing`;
    }
    if (viewHash !== undefined && hashHex(bytes) !== viewHash) {
      fail(i, 'replay.serverView.hash', `${viewHash} (the logged serverViewHash)`, hashHex(bytes));
      return `the server view of round ${round} is not the one the log pins`;
    }
    const dec = decodeServerView(bytes);
    if (!dec.ok) {
      fail(i, 'replay.serverView', 'a server view (fedbridge-server-view/1)', dec.problem);
      return `the server view of round ${round} cannot be read`;
    }
    let bad = false;
    for (const [u, y] of dec.view.maskedInputs) {
      const signed = r.digests.get(u);
      if (signed === undefined) continue; // recomputeAggregate names inputs outside U3
      const d = hashHex(u32LeBytes(y));
      if (d !== signed) {
        fail(i, `replay.serverView.maskedInputs.${u}`, `${signed} (the digest ${u} signed)`, d);
        bad = true;
      }
    }
    if (bad) return `round ${round}'s server view holds a masked input its party did not sign`;
    const ctx = new RoundContext(roundSecAggInfo(policy, runId, r.secaggRound));
    const got = recomputeAggregate(ctx, r.shared, r.masked, r.ads, dec.view);
    if (!got.ok) {
      for (const p of got.problems) fail(i, 'replay.serverView', 'the server view of the round', p);
      return `round ${round}'s server view does not unmask`;
    }
    const h = hashHex(u32LeBytes(got.sum));
    if (h !== aggregateHash) {
      fail(i, 'replay.serverView.aggregateHash', `${h} (recomputed from the signed masked inputs)`, aggregateHash);
      return `round ${round}'s logged aggregate is not the sum of its masked inputs`;
    }
    return null;
  };

  const { lines } = splitLines(log);
  lines.forEach((line, i) => {
    if (line.length === 0) return;
    const parsed = parseExportLine(line);
    if (!parsed.ok) return;
    const checked = checkEntry(parsed.entry);
    if (!checked.ok) return;
    const e = checked.entry;
    if (e.type === 'run-started') {
      const policy = byHash.get(e.policyHash) ?? null;
      const run: RunChain = { runId: e.runId, policy, at: null, stopped: null };
      runs.set(e.runId, run);
      if (!policy) {
        run.stopped = `its policy ${e.policyHash} is not among the given policies`;
        return;
      }
      const d = layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
      const bytes = artifacts.model(e.initialModelVersion);
      if (!bytes) {
        fail(i, 'replay.initialModel', `the bytes of model version ${e.initialModelVersion} (run ${e.runId}'s initial model)`, 'missing');
        run.stopped = 'its initial model is missing';
        return;
      }
      if (bytes.length !== 4 * d) {
        fail(i, 'replay.initialModel.length', `${4 * d} bytes (${d} float32 parameters of the policy's model)`, `${bytes.length} bytes`);
        run.stopped = 'its initial model has the wrong size';
        return;
      }
      const h = hashHex(bytes);
      if (h !== e.initialModelHash) {
        fail(i, 'replay.initialModelHash', e.initialModelHash, h);
        run.stopped = 'its initial model does not match the logged hash';
        return;
      }
      run.at = { version: e.initialModelVersion, weights: floatsOf(bytes), state: newServerState() };
      return;
    }
    if (e.type === 'round-started') {
      roundLogs.set(key(e.runId, e.round), { secaggRound: e.secaggRound, parties: [...e.parties], ads: new Map(), shared: null, masked: null, digests: new Map() });
      return;
    }
    if (e.type === 'round-phase') {
      const r = roundLogs.get(key(e.runId, e.round));
      if (!r) return;
      try {
        if (e.phase === 'advertise') for (const a of e.advertisements ?? []) r.ads.set(a.party, { sPk: fromBase64('sPk', a.sPk, 32), selfMaskCommitment: fromHex('selfMaskCommitment', a.selfMaskCommitment, 32) });
      } catch {
        // a malformed advertisement: verifyLog reports it; the recomputation then finds the party's keys missing
      }
      if (e.phase === 'share') r.shared = [...e.parties];
      if (e.phase === 'mask') {
        r.masked = [...e.parties];
        for (const m of e.maskedInputs ?? []) r.digests.set(m.party, m.digest);
      }
      return;
    }
    if (e.type !== 'round-completed') return;
    const run = runs.get(e.runId);
    const rec: ReplayedRound = { runId: e.runId, round: e.round, entry: i, modelVersion: e.modelVersion, status: 'not-replayed', aggregateRecomputed: false };
    rounds.push(rec);
    if (!run) {
      warnings.push(`round ${e.round} of run ${e.runId} (entry ${i}) not replayed: the log has no run-started entry for its run`);
      return;
    }
    if (!run.at || !run.policy) {
      return;
    }
    const policy = run.policy;
    const stop = (why: string) => {
      rec.status = 'failed';
      run.at = null;
      run.stopped = why;
    };
    if (e.parentModelVersion !== run.at.version) {
      fail(i, 'replay.parentModelVersion', String(run.at.version), String(e.parentModelVersion));
      return stop(`round ${e.round} does not start from the chain's model`);
    }
    const d = run.at.weights.length;
    const rotated = policy.secagg.rotation === 'hadamard';
    const words = encodedDimension(d, rotated);
    const agg = artifacts.aggregate(e.runId, e.round);
    if (!agg) {
      fail(i, 'replay.aggregate', `the aggregate of round ${e.round} of run ${e.runId}`, 'missing');
      return stop(`the aggregate of round ${e.round} is missing`);
    }
    if (agg.length !== 4 * words) {
      fail(i, 'replay.aggregate.length', `${4 * words} bytes (${words} u32 words)`, `${agg.length} bytes`);
      return stop(`the aggregate of round ${e.round} has the wrong size`);
    }
    const aggHash = hashHex(agg);
    if (aggHash !== e.aggregateHash) {
      fail(i, 'replay.aggregateHash', e.aggregateHash, aggHash);
      return stop(`the aggregate of round ${e.round} does not match the logged hash`);
    }
    if (policy.audit?.auditorServerView) {
      const why = recomputeFromView(i, e.runId, e.round, policy, words, roundLogs.get(key(e.runId, e.round)), e.aggregateHash, e.serverViewHash);
      if (why) return stop(why);
      rec.aggregateRecomputed = true;
    }
    const sum = u32FromLeBytes(agg);
    const bits = policy.secagg.bitWidth;
    if (bits < 32) {
      const k = sum.findIndex((w) => w >= 2 ** bits);
      if (k >= 0) {
        fail(i, 'replay.aggregate', `words below 2^${bits} (secagg.bitWidth)`, `word ${k} = ${sum[k]}`);
        return stop(`the aggregate of round ${e.round} is not reduced mod 2^${bits}`);
      }
    }
    let next: Float32Array;
    try {
      next = roundNextModel(policy, e.runId, e.round, run.at.weights, sum, e.survivors, run.at.state);
    } catch (err) {
      fail(i, 'replay.model', 'a model computable from the aggregate', (err as Error).message);
      return stop(`round ${e.round}'s model cannot be computed`);
    }
    const h = hashHex(float32LeBytes(next));
    if (h !== e.modelHash) {
      fail(i, 'replay.modelHash', `${h} (recomputed from the aggregate and the previous model)`, e.modelHash);
      return stop(`round ${e.round}'s logged model is not the one its aggregate gives`);
    }
    rec.status = 'replayed';
    run.at = { version: e.modelVersion, weights: next, state: run.at.state };
  });

  for (const run of runs.values()) {
    const skipped = rounds.filter((r) => r.runId === run.runId && r.status === 'not-replayed').length;
    if (run.stopped && skipped) warnings.push(`run ${run.runId}: ${skipped} completed round(s) not replayed: ${run.stopped}`);
  }
  const replayed = rounds.filter((r) => r.status === 'replayed');
  return { ok: failures.length === 0, replayed: replayed.length, aggregatesRecomputed: replayed.filter((r) => r.aggregateRecomputed).length, rounds, failures, warnings };
}
