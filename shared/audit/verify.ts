/**
 * verifyLog: everything an auditor can check from an exported log, the signed policy and the
 * parties' own receipts — without the coordinator's code or database (issue 6, DESIGN §3).
 * Pure (no I/O); runs in Node and in the browser. Requires `await sodiumReady()` first.
 *
 * Checks, each failure named by (entry index, field, expected, found), sorted by entry:
 *  1. bytes: every line is UTF-8, one JSON object, byte-for-byte its RFC 8785 canonical encoding,
 *     terminated by "\n"; nothing else in the file (chain.ts explains why this catches any byte);
 *  2. chain: line i has idx i, prevHash = chain(i-1), a valid coordinator signature (key pinned in
 *     the policy), and entry.idx = i;
 *  3. schema: each entry is one of the types of entries.ts, strictly; its free text (reasons,
 *     labels) at most 256 characters without control characters (entries.ts#freeTextIssues);
 *  4. policy: each registered policy hash is one of the auditor's policies (usually one; more for a
 *     log with runs of several, e.g. after a party left), signed by every party of that policy with
 *     its pinned key; a run and its rounds carry the hash of a registered policy, and every check
 *     below uses that run's policy; a run plans its policy's number of rounds;
 *  5. rounds: numbered 1, 2, ... per run (an aborted round is retried as the next number); no
 *     round starts once the run's planned rounds (training.rounds) completed; every accountant
 *     parameter equals the policy's (accounting.ts#expectedRoundParams); parties are policy parties; at least max(2, t, n_min
 *     when distributed) parties start; phases in protocol order, each phase's parties a subset of
 *     the previous phase's; each party's signed key advertisement, masked-input digest (bits and
 *     length from the policy) and survivor-list signature verify under its pinned key; a completed
 *     round had >= t parties in every phase (and >= n_min masked inputs when distributed), its
 *     survivors are exactly the parties whose masked input arrived, its model version follows the
 *     one it started from; the Merkle root covers exactly the round's entries;
 *  6. privacy: every party whose masked input was accepted is charged for the round (aborted ones
 *     too); its lifetime epsilon is recomputed from the logged parameters of all its charged rounds
 *     with the project's accountant (accounting.ts) and must equal the logged value and stay within
 *     its budget;
 *  7. receipts: each receipt entry is signed by its party's pinned key over a head that is the
 *     chain hash of an earlier entry at or after its round's completion, naming that round's model
 *     hash; each receipt the parties hold (`receipts`) must verify the same way against this log
 *     and appear in it — so a truncated tail, or a history rewritten and re-signed by the
 *     coordinator, fails.
 * Warnings (not failures): a run still running or a round still open at the end of the log, and no
 * receipts given (completeness is then not checked).
 * What this cannot prove (README.md): that a party really added the noise it declared.
 */
import { policyHash as computePolicyHash, type Policy } from '../policy/schema';
import { verifyPolicySignature } from '../policy/sign';
import { minMaskedInputs } from '../fl/noise-floor';
import { ed25519Verify } from '../crypto/sign';
import { sodium } from '../crypto/sodium';
import { AUDIT_GENESIS, auditChainHash, parseExportLine, splitLines, verifyAuditSignature } from './chain';
import { bytesEqual, fromBase64, fromHex, toHex } from './bytes';
import { checkEntry, freeTextIssues, PHASES, type AuditEntry, type EntryOf, type Phase, type Receipt, type RoundParams } from './entries';
import { RdpLedger, encodedLength, epsilonMatches, expectedRoundParams, partyBudget } from './accounting';
import { merkleRoot } from './merkle';
import { verifyReceiptSignature } from './receipt';
import { advertiseKeysBytes, maskedInputBytes, survivorListBytes } from './secagg-sigs';

export interface VerifyFailure {
  entry: number;
  field: string;
  expected: string;
  found: string;
}

export interface RoundSummary {
  runId: string;
  round: number;
  /** the hash of the policy the round's run names */
  policyHash: string;
  status: 'open' | 'completed' | 'aborted';
  startIdx: number;
  closeIdx: number | null;
  parties: string[];
  phases: Partial<Record<Phase, string[]>>;
  survivors: string[] | null;
  /** lifetime epsilon per charged party after this round, as logged */
  epsilon: Record<string, number>;
  modelVersion: number | null;
  modelHash: string | null;
  reason: string | null;
  /** parties whose receipt for this round is in the log */
  receipts: string[];
}

export interface VerifyResult {
  ok: boolean;
  entries: number;
  rounds: number;
  failures: VerifyFailure[];
  policyHash: string;
  /** chain hash of the last line (hex), or null for an empty log */
  head: string | null;
  timeline: RoundSummary[];
  runs: { runId: string; startIdx: number; status: 'running' | 'completed' | 'aborted'; roundsPlanned: number }[];
  /** budget of each party under the policy (for charts) */
  budgets: Record<string, number>;
  /** notes that are not failures (e.g. a party that did not countersign a round) */
  warnings: string[];
}

export interface VerifyOptions {
  policy: Policy;
  /**
   * Other policies whose runs the same log holds (the parties signed a new policy, e.g. after one
   * of them left). Each run, its rounds and its receipts are checked against the policy whose hash
   * they carry; epsilon is composed over every charged round of every policy (the node's lifetime
   * ledger; the coordinator logs it so), with the delta and budget of the run's policy. All must pin
   * the coordinator key and federation of `policy` (a RangeError otherwise: the auditor's input).
   */
  otherPolicies?: readonly Policy[];
  /** receipts kept by the parties (e.g. read from --receipts DIR), with where each came from */
  receipts?: { source: string; receipt: unknown }[];
}

interface RunState {
  status: 'running' | 'completed' | 'aborted';
  runId: string;
  startIdx: number;
  roundsPlanned: number;
  version: number;
  completed: number;
  lastRound: number;
  closed: boolean;
}

interface RoundState {
  summary: RoundSummary;
  secaggRound: number;
  params: RoundParams;
  baseVersion: number;
  lastPhase: number;
  phaseParties: Map<Phase, string[]>;
  charged: string[];
}

const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v) ?? String(v));
const sameSet = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && new Set(a).size === a.length && a.every((x) => b.includes(x));

/** What the checks need of one policy. */
interface PolicyContext {
  policy: Policy;
  hash: string;
  partyKeys: Map<string, Uint8Array>;
  expected: RoundParams;
  minParties: number;
  t: number;
}

export function verifyLog(data: Uint8Array, opts: VerifyOptions): VerifyResult {
  const { policy } = opts;
  const failures: VerifyFailure[] = [];
  const warnings: string[] = [];
  const fail = (entry: number, field: string, expected: unknown, found: unknown): void => {
    failures.push({ entry, field, expected: show(expected), found: show(found) });
  };
  const pHash = computePolicyHash(policy);
  // the policies are the auditor's own, validated input: their keys are decoded leniently (schema-checked length)
  const so = sodium();
  const pinned = (k: string) => so.from_base64(k, so.base64_variants.ORIGINAL);
  const coordinatorKey = pinned(policy.coordinator.publicKey);
  const contextOf = (p: Policy): PolicyContext => ({
    policy: p,
    hash: computePolicyHash(p),
    partyKeys: new Map(p.parties.map((q) => [q.name, pinned(q.publicKey)])),
    expected: expectedRoundParams(p),
    minParties: Math.max(2, p.secagg.threshold, minMaskedInputs(p)),
    t: p.secagg.threshold,
  });
  const contexts = new Map<string, PolicyContext>();
  for (const p of [policy, ...(opts.otherPolicies ?? [])]) {
    if (p.coordinator.publicKey !== policy.coordinator.publicKey) throw new RangeError(`policy ${computePolicyHash(p)} pins another coordinator key than policy ${pHash}: one log has one coordinator`);
    if (p.federationId !== policy.federationId) throw new RangeError(`policy ${computePolicyHash(p)} is for federation "${p.federationId}", policy ${pHash} for "${policy.federationId}"`);
    const c = contextOf(p);
    contexts.set(c.hash, c);
  }
  const knownHashes = [...contexts.keys()];
  /** what a policy hash must be: the one policy's, or one of the given policies' */
  const expectedPolicyHash = knownHashes.length === 1 ? knownHashes[0] : `one of the given policies (${knownHashes.join(', ')})`;
  /** the policy of the run in progress (or of the last run); `policy` before the first run */
  let cur = contexts.get(pHash)!;

  // ---- 1-3: bytes, chain, signatures, schema
  const { lines, endsWithNewline } = data.length === 0 ? { lines: [], endsWithNewline: true } : splitLines(data);
  // an empty file proves nothing about any round: most likely the wrong file, or an export that failed
  if (lines.length === 0) fail(0, 'entries', 'at least one entry (a coordinator logs its first enrolment)', 0);
  const heads: (Uint8Array | null)[] = [];
  const entries: (AuditEntry | null)[] = [];
  const entryBytes: (Uint8Array | null)[] = [];
  lines.forEach((line, i) => {
    const p = parseExportLine(line);
    if (!p.ok) {
      fail(i, p.field, p.expected, p.found);
      heads.push(null);
      entries.push(null);
      entryBytes.push(null);
      return;
    }
    const r = p.record;
    entryBytes.push(r.entry);
    if (i === lines.length - 1 && !endsWithNewline) fail(i, 'encoding', 'the line to end with "\\n"', 'end of file');
    if (r.idx !== i) fail(i, 'idx', i, r.idx);
    const prev = i === 0 ? AUDIT_GENESIS : heads[i - 1];
    if (prev && !bytesEqual(prev, r.prevHash)) fail(i, 'prevHash', toHex(prev), toHex(r.prevHash));
    if (!verifyAuditSignature(r.idx, r.prevHash, r.entry, r.signature, coordinatorKey)) fail(i, 'signature', "a valid signature by the policy's coordinator key", 'invalid');
    heads.push(auditChainHash(r.idx, r.prevHash, r.entry));
    const c = checkEntry(p.entry);
    if (!c.ok) {
      for (const is of c.issues) fail(i, is.field, is.message, show(fieldAt(p.entry, is.field)));
      entries.push(null);
      return;
    }
    if (c.entry.idx !== i) fail(i, 'entry.idx', i, c.entry.idx);
    for (const t of freeTextIssues(c.entry)) fail(i, t.field, t.expected, t.message);
    entries.push(c.entry);
  });

  // ---- 4-7: semantics
  const registered = new Set<string>();
  const runs: RunState[] = [];
  let run: RunState | null = null;
  let rnd: RoundState | null = null;
  let maxVersion = -1;
  const timeline: RoundSummary[] = [];
  const completedRounds = new Map<string, { closeIdx: number; modelHash: string; policyHash: string; summary: RoundSummary }>();
  const ledger = new RdpLedger();
  const chargeErrors = new Map<string, string>();
  const receiptSigs = new Set<string>();

  /** An entry of the current run (its rounds, phases, end) carries the run's policy hash. */
  const checkPolicyHash = (i: number, e: { policyHash: string }): void => {
    if (e.policyHash !== cur.hash) fail(i, 'entry.policyHash', cur.hash, e.policyHash);
  };
  /** The context of a policy the auditor gave, or a failure naming the hashes it knows. */
  const givenPolicy = (i: number, field: string, hash: string): PolicyContext | null => {
    const c = contexts.get(hash);
    if (!c) fail(i, field, expectedPolicyHash, hash);
    return c ?? null;
  };
  const partySubset = (i: number, field: string, parties: readonly string[], allowed: readonly string[]): void => {
    const seen = new Set<string>();
    for (const p of parties) {
      if (seen.has(p)) fail(i, field, 'each party once', `${p} twice`);
      seen.add(p);
      if (!allowed.includes(p)) fail(i, field, `a subset of [${allowed.join(', ')}]`, p);
    }
  };
  const inRound = (i: number, e: { runId: string; round: number }): RoundState | null => {
    if (!rnd || rnd.summary.runId !== e.runId || rnd.summary.round !== e.round) {
      fail(i, 'entry.round', rnd ? `${rnd.summary.runId} round ${rnd.summary.round} (the open round)` : 'an open round (round-started first)', `${e.runId} round ${e.round}`);
      return null;
    }
    return rnd;
  };
  const checkEpsilon = (i: number, e: { epsilon: Record<string, number> }, r: RoundState): void => {
    const logged = Object.keys(e.epsilon);
    if (!sameSet(logged, r.charged)) fail(i, 'entry.epsilon', `epsilon for exactly the charged parties [${[...r.charged].sort().join(', ')}]`, `[${logged.sort().join(', ')}]`);
    for (const party of r.charged) {
      const err = chargeErrors.get(party);
      if (err) {
        fail(i, `entry.epsilon.${party}`, 'parameters the accountant accepts', err);
        continue;
      }
      let recomputed: number;
      try {
        recomputed = ledger.epsilon(party, cur.policy.privacy.delta);
      } catch (err) {
        // a hostile log must give a failure, never an exception (policy.privacy.delta is validated
        // with the policy, so this is the accountant refusing what the logged rounds add up to)
        fail(i, `entry.epsilon.${party}`, 'rounds the accountant can compose', (err as Error).message);
        continue;
      }
      const v = e.epsilon[party];
      if (v === undefined) continue;
      if (!epsilonMatches(v, recomputed)) fail(i, `entry.epsilon.${party}`, recomputed, v);
      const budget = partyBudget(cur.policy, party);
      const worst = Math.max(v, recomputed);
      if (!(worst <= budget)) fail(i, `entry.epsilon.${party}`, `<= budget ${budget}`, worst);
    }
  };
  const checkMerkle = (i: number, e: { merkle: { from: number; count: number; root: string } }, r: RoundState): void => {
    const from = r.summary.startIdx;
    if (e.merkle.from !== from) fail(i, 'entry.merkle.from', from, e.merkle.from);
    if (e.merkle.count !== i - from) fail(i, 'entry.merkle.count', i - from, e.merkle.count);
    const leaves = entryBytes.slice(from, i);
    if (leaves.some((b) => b === null)) return; // already failed at that line
    const root = toHex(merkleRoot(leaves as Uint8Array[]));
    if (e.merkle.root !== root) fail(i, 'entry.merkle.root', root, e.merkle.root);
  };
  const paramsEqual = (i: number, field: string, got: RoundParams, want: RoundParams): void => {
    for (const k of Object.keys(want) as (keyof RoundParams)[]) {
      if (got[k] !== want[k]) fail(i, `${field}.${k}`, want[k], got[k]);
    }
  };

  let lastAt = -1;
  /** party name -> its enrolled key (base64), from the participant-enrolled / -removed entries so far */
  const enrolled = new Map<string, string>();
  /** When the policy is registered and a run of it starts, every policy party enrolled so far has its pinned key. */
  const enrolledAsPinned = (i: number, c: PolicyContext): void => {
    for (const p of c.policy.parties) {
      const key = enrolled.get(p.name);
      if (key !== undefined && key !== p.publicKey) fail(i, `enrolled.${p.name}`, p.publicKey, key);
    }
  };
  /** token id -> its state, from the token-issued / token-revoked entries so far */
  const tokens = new Map<string, 'valid' | 'revoked'>();
  entries.forEach((e, i) => {
    if (!e) return;
    if (e.at < lastAt) fail(i, 'entry.at', `>= ${lastAt} (time of the previous entry)`, e.at);
    lastAt = Math.max(lastAt, e.at);
    switch (e.type) {
      case 'participant-enrolled':
        if (enrolled.has(e.name)) fail(i, 'entry.name', 'a party not enrolled at this point (participant-removed first)', e.name);
        enrolled.set(e.name, e.publicKey);
        return;
      case 'participant-removed': {
        const key = enrolled.get(e.name);
        if (key === undefined) fail(i, 'entry.name', 'a party enrolled earlier in the log', e.name);
        else if (key !== e.publicKey) fail(i, 'entry.publicKey', key, e.publicKey);
        if (run && !run.closed) fail(i, 'entry.type', `run-completed or run-aborted of run ${run.runId} first`, 'participant-removed');
        enrolled.delete(e.name);
        return;
      }
      case 'token-issued':
        if (tokens.has(e.tokenId)) fail(i, 'entry.tokenId', 'a token id not issued before', e.tokenId);
        else tokens.set(e.tokenId, 'valid');
        return;
      case 'token-revoked': {
        const state = tokens.get(e.tokenId);
        if (state === undefined) fail(i, 'entry.tokenId', 'a token issued earlier in the log', e.tokenId);
        else if (state === 'revoked') fail(i, 'entry.tokenId', 'a token not revoked before', e.tokenId);
        else tokens.set(e.tokenId, 'revoked');
        return;
      }
      case 'policy-registered': {
        const c = givenPolicy(i, 'entry.policyHash', e.policyHash);
        if (!c) return;
        if (registered.has(e.policyHash)) fail(i, 'entry.policyHash', 'a policy not registered before', e.policyHash);
        const seen = new Set<string>();
        for (const s of e.signatures) {
          const key = c.partyKeys.get(s.party);
          if (!key) {
            fail(i, 'entry.signatures', 'signatures of policy parties only', s.party);
            continue;
          }
          if (seen.has(s.party)) fail(i, `entry.signatures.${s.party}`, 'one signature', 'two');
          seen.add(s.party);
          const pinned = c.policy.parties.find((p) => p.name === s.party)!.publicKey;
          if (s.publicKey !== pinned) fail(i, `entry.signatures.${s.party}.publicKey`, pinned, s.publicKey);
          if (!verifyPolicySignature(c.hash, safe(() => fromBase64('signature', s.signature, 64)) ?? new Uint8Array(0), key)) fail(i, `entry.signatures.${s.party}.signature`, `${s.party}'s signature of policy ${c.hash}`, 'invalid');
        }
        for (const p of c.policy.parties) if (!seen.has(p.name)) fail(i, `entry.signatures.${p.name}`, `a signature by ${p.name}`, 'missing');
        enrolledAsPinned(i, c);
        registered.add(e.policyHash);
        return;
      }
      case 'run-started': {
        // an unknown policy is one failure here; the run is still followed (its entries then fail on
        // their hash against the policy of the run before), as with a single policy
        const c = givenPolicy(i, 'entry.policyHash', e.policyHash);
        if (c) cur = c;
        if (c && !registered.has(e.policyHash)) fail(i, 'entry.policyHash', 'a policy registered earlier in the log (policy-registered)', e.policyHash);
        if (run && !run.closed) fail(i, 'entry.type', `run-completed or run-aborted of run ${run.runId} first`, 'run-started');
        if (runs.some((r) => r.runId === e.runId)) fail(i, 'entry.runId', 'a new run id', e.runId);
        if (e.roundsPlanned !== cur.policy.training.rounds) fail(i, 'entry.roundsPlanned', cur.policy.training.rounds, e.roundsPlanned);
        if (c) enrolledAsPinned(i, c);
        if (e.initialModelVersion <= maxVersion) fail(i, 'entry.initialModelVersion', `> ${maxVersion} (versions only grow)`, e.initialModelVersion);
        maxVersion = Math.max(maxVersion, e.initialModelVersion);
        run = { status: 'running', runId: e.runId, startIdx: i, roundsPlanned: e.roundsPlanned, version: e.initialModelVersion, completed: 0, lastRound: 0, closed: false };
        runs.push(run);
        rnd = null;
        return;
      }
      case 'round-started': {
        checkPolicyHash(i, e);
        if (!run || run.closed || run.runId !== e.runId) {
          fail(i, 'entry.runId', run && !run.closed ? run.runId : 'a running run (run-started first)', e.runId);
          return;
        }
        if (rnd) fail(i, 'entry.type', `round-completed or round-aborted of round ${rnd.summary.round} first`, 'round-started');
        // training.rounds counts completed rounds (model versions): an aborted round is retried as the
        // next round number (coordinator/rounds), so the number may pass it; a round after the
        // planned ones completed may not start (the parties' data would be used for a round they never agreed to)
        if (run.completed >= run.roundsPlanned) fail(i, 'entry.type', `run-completed or run-aborted: the run's ${run.roundsPlanned} planned rounds (policy training.rounds) have completed`, `round-started of round ${e.round} after ${run.completed} completed rounds`);
        if (e.round !== run.lastRound + 1) fail(i, 'entry.round', run.lastRound + 1, e.round);
        // the parties' secure-aggregation signatures are bound to (run, secaggRound): one number per round
        if (e.secaggRound !== e.round) fail(i, 'entry.secaggRound', e.round, e.secaggRound);
        if (e.baseModelVersion !== run.version) fail(i, 'entry.baseModelVersion', run.version, e.baseModelVersion);
        partySubset(i, 'entry.parties', e.parties, cur.policy.parties.map((p) => p.name));
        if (e.parties.length < cur.minParties) fail(i, 'entry.parties', `at least ${cur.minParties} parties (threshold t=${cur.t}${minMaskedInputs(cur.policy) > 1 ? `, n_min + 1=${minMaskedInputs(cur.policy)}` : ''})`, `${e.parties.length}`);
        paramsEqual(i, 'entry.params', e.params, cur.expected);
        run.lastRound = e.round;
        const summary: RoundSummary = { runId: e.runId, round: e.round, policyHash: e.policyHash, status: 'open', startIdx: i, closeIdx: null, parties: [...e.parties], phases: {}, survivors: null, epsilon: {}, modelVersion: null, modelHash: null, reason: null, receipts: [] };
        timeline.push(summary);
        rnd = { summary, secaggRound: e.secaggRound, params: e.params, baseVersion: e.baseModelVersion, lastPhase: -1, phaseParties: new Map(), charged: [] };
        return;
      }
      case 'round-phase': {
        checkPolicyHash(i, e);
        const r = inRound(i, e);
        if (!r) return;
        const pi = PHASES.indexOf(e.phase);
        if (pi !== r.lastPhase + 1) fail(i, 'entry.phase', PHASES[r.lastPhase + 1] ?? '(no phase after unmask)', e.phase);
        const prevParties = pi > 0 ? (r.phaseParties.get(PHASES[pi - 1]) ?? []) : r.summary.parties;
        partySubset(i, 'entry.parties', e.parties, prevParties);
        const fed = policy.federationId;
        const extra = (k: 'advertisements' | 'maskedInputs' | 'survivors' | 'survivorSignatures', allowed: Phase[]): void => {
          if (e[k] !== undefined && !allowed.includes(e.phase)) fail(i, `entry.${k}`, `absent in phase ${e.phase}`, 'present');
          if (e[k] === undefined && allowed.includes(e.phase)) fail(i, `entry.${k}`, `present in phase ${e.phase}`, 'absent');
        };
        extra('advertisements', ['advertise']);
        extra('maskedInputs', ['mask']);
        extra('survivors', ['consistency']);
        extra('survivorSignatures', ['consistency']);
        const checkSigned = (field: string, items: { party: string; signature: string }[], msg: (it: never) => Uint8Array): void => {
          if (!sameSet(items.map((x) => x.party), e.parties)) fail(i, field, `one per phase party [${e.parties.join(', ')}]`, `[${items.map((x) => x.party).join(', ')}]`);
          for (const it of items) {
            const key = cur.partyKeys.get(it.party);
            if (!key) continue; // reported by partySubset
            let ok = false;
            try {
              ok = ed25519Verify(fromBase64('signature', it.signature, 64), msg(it as never), key);
            } catch {
              ok = false;
            }
            if (!ok) fail(i, `${field}.${it.party}.signature`, `${it.party}'s signature`, 'invalid');
          }
        };
        if (e.phase === 'advertise' && e.advertisements) {
          checkSigned('entry.advertisements', e.advertisements, (a: EntryOf<'round-phase'>['advertisements'] extends (infer T)[] | undefined ? T : never) =>
            advertiseKeysBytes(fed, r.summary.runId, r.secaggRound, a.party, fromBase64('cPk', a.cPk, 32), fromBase64('sPk', a.sPk, 32), fromHex('selfMaskCommitment', a.selfMaskCommitment, 32)),
          );
        }
        if (e.phase === 'mask' && e.maskedInputs) {
          const len = safe(() => encodedLength(r.params));
          for (const m of e.maskedInputs) {
            if (m.bits !== cur.expected.bits) fail(i, `entry.maskedInputs.${m.party}.bits`, cur.expected.bits, m.bits);
            if (len !== null && m.length !== len) fail(i, `entry.maskedInputs.${m.party}.length`, len, m.length);
          }
          checkSigned('entry.maskedInputs', e.maskedInputs, (m: { party: string; bits: number; length: number; digest: string }) =>
            maskedInputBytes(fed, r.summary.runId, r.secaggRound, m.party, m.bits, m.length, fromHex('digest', m.digest, 32)),
          );
          // charged: the masked input left the party (DESIGN §4)
          for (const p of e.parties) {
            if (!cur.partyKeys.has(p)) continue;
            try {
              ledger.charge(p, r.params);
            } catch (err) {
              chargeErrors.set(p, (err as Error).message);
            }
          }
          r.charged = e.parties.filter((p) => cur.partyKeys.has(p));
        }
        if (e.phase === 'consistency' && e.survivors && e.survivorSignatures) {
          const masked = [...(r.phaseParties.get('mask') ?? [])].sort();
          const survivors = e.survivors;
          if (survivors.join('\n') !== masked.join('\n')) fail(i, 'entry.survivors', `[${masked.join(', ')}] (the parties whose masked input arrived, sorted)`, `[${survivors.join(', ')}]`);
          checkSigned('entry.survivorSignatures', e.survivorSignatures, (s: { party: string }) => survivorListBytes(fed, r.summary.runId, r.secaggRound, s.party, survivors));
        }
        r.phaseParties.set(e.phase, [...e.parties]);
        r.summary.phases[e.phase] = [...e.parties];
        r.lastPhase = Math.max(r.lastPhase, pi);
        return;
      }
      case 'round-completed': {
        checkPolicyHash(i, e);
        const r = inRound(i, e);
        if (!r || !run) return;
        if (r.lastPhase !== PHASES.length - 1) fail(i, 'entry.type', `all phases logged before completion (last: ${PHASES[r.lastPhase] ?? 'none'})`, 'round-completed');
        for (const ph of PHASES) {
          const n = r.phaseParties.get(ph)?.length ?? 0;
          if (n < cur.t) fail(i, `parties.${ph}`, `at least t=${cur.t} parties in phase ${ph}`, n);
        }
        const masked = [...(r.phaseParties.get('mask') ?? [])].sort();
        if (masked.length < minMaskedInputs(cur.policy)) fail(i, 'parties.mask', `at least n_min + 1=${minMaskedInputs(cur.policy)} masked inputs (distributed noise; each party can remove its own share)`, masked.length);
        if ([...e.survivors].sort().join('\n') !== masked.join('\n')) fail(i, 'entry.survivors', `[${masked.join(', ')}]`, `[${e.survivors.join(', ')}]`);
        paramsEqual(i, 'entry.params', e.params, cur.expected);
        paramsEqual(i, 'entry.params', e.params, r.params);
        if (e.parentModelVersion !== r.baseVersion) fail(i, 'entry.parentModelVersion', r.baseVersion, e.parentModelVersion);
        if (e.modelVersion <= maxVersion) fail(i, 'entry.modelVersion', `> ${maxVersion} (versions only grow)`, e.modelVersion);
        maxVersion = Math.max(maxVersion, e.modelVersion);
        checkMerkle(i, e, r);
        checkEpsilon(i, e, r);
        // the coordinator keeps copies of the masked inputs (its view) only where the policy releases them to auditors
        if (e.serverViewHash !== undefined && !cur.policy.audit?.auditorServerView) {
          fail(i, 'entry.serverViewHash', 'absent: the policy does not set audit.auditorServerView, so the coordinator keeps no view of the round', e.serverViewHash);
        }
        if (e.serverViewHash === undefined && cur.policy.audit?.auditorServerView) warnings.push(`${e.runId} round ${e.round}: no serverViewHash although the policy sets audit.auditorServerView (a coordinator from before it was logged: the view is checked by --replay only)`);
        run.version = e.modelVersion;
        run.completed++;
        Object.assign(r.summary, { status: 'completed', closeIdx: i, survivors: [...e.survivors], epsilon: { ...e.epsilon }, modelVersion: e.modelVersion, modelHash: e.modelHash });
        completedRounds.set(`${e.runId}\n${e.round}`, { closeIdx: i, modelHash: e.modelHash, policyHash: cur.hash, summary: r.summary });
        rnd = null;
        return;
      }
      case 'round-aborted': {
        checkPolicyHash(i, e);
        const r = inRound(i, e);
        if (!r) return;
        if (e.baseModelVersion !== r.baseVersion) fail(i, 'entry.baseModelVersion', r.baseVersion, e.baseModelVersion);
        if (e.phase !== null && PHASES.indexOf(e.phase) > r.lastPhase + 1) fail(i, 'entry.phase', `a phase reached by the round (up to ${PHASES[r.lastPhase + 1] ?? 'unmask'}) or null`, e.phase);
        checkMerkle(i, e, r);
        checkEpsilon(i, e, r);
        Object.assign(r.summary, { status: 'aborted', closeIdx: i, epsilon: { ...e.epsilon }, reason: e.reason });
        rnd = null;
        return;
      }
      case 'receipt': {
        const rc = e.receipt;
        const known = givenPolicy(i, 'entry.policyHash', rc.policyHash);
        const rcPolicy = known ?? cur;
        if (rc.federationId !== policy.federationId) fail(i, 'entry.receipt.federationId', policy.federationId, rc.federationId);
        const key = rcPolicy.partyKeys.get(rc.party);
        if (!key) fail(i, 'entry.receipt.party', 'a policy party', rc.party);
        else if (!verifyReceiptSignature(rc, key)) fail(i, 'entry.receipt.signature', `${rc.party}'s signature`, 'invalid');
        receiptSigs.add(rc.signature);
        const done = completedRounds.get(`${rc.runId}\n${rc.round}`);
        if (!done) {
          fail(i, 'entry.receipt.round', 'a round completed earlier in the log', `${rc.runId} round ${rc.round}`);
          return;
        }
        if (rc.headIdx < done.closeIdx || rc.headIdx >= i) fail(i, 'entry.receipt.headIdx', `in [${done.closeIdx}, ${i - 1}]`, rc.headIdx);
        else {
          const h = heads[rc.headIdx];
          if (h && toHex(h) !== rc.head) fail(i, 'entry.receipt.head', toHex(h), rc.head);
        }
        if (rc.modelHash !== done.modelHash) fail(i, 'entry.receipt.modelHash', done.modelHash, rc.modelHash);
        if (known && rc.policyHash !== done.policyHash) fail(i, 'entry.receipt.policyHash', done.policyHash, rc.policyHash);
        if (!done.summary.receipts.includes(rc.party)) done.summary.receipts.push(rc.party);
        return;
      }
      case 'run-completed':
      case 'run-aborted': {
        checkPolicyHash(i, e);
        if (!run || run.closed || run.runId !== e.runId) {
          fail(i, 'entry.runId', run && !run.closed ? run.runId : 'a running run', e.runId);
          return;
        }
        if (rnd) {
          fail(i, 'entry.type', `round-completed or round-aborted of round ${rnd.summary.round} first`, e.type);
          rnd = null;
        }
        if (e.type === 'run-completed') {
          if (run.completed !== run.roundsPlanned) fail(i, 'entry.type', `${run.roundsPlanned} completed rounds before run-completed`, run.completed);
          if (e.finalModelVersion !== run.version) fail(i, 'entry.finalModelVersion', run.version, e.finalModelVersion);
        }
        run.closed = true;
        run.status = e.type === 'run-completed' ? 'completed' : 'aborted';
        return;
      }
    }
  });

  // the end of the log: a run or round still open is either in progress or cut off (a suffix can
  // be dropped without breaking the chain; only the parties' receipts show that)
  const lastRun = run as RunState | null; // assigned in the callback above (not narrowed)
  const openRound = rnd as RoundState | null;
  if (lastRun && !lastRun.closed) warnings.push(`${lastRun.runId}: the run is still running at the end of the log (${lastRun.completed} of ${lastRun.roundsPlanned} rounds completed): in progress, or the log was cut off`);
  if (openRound) warnings.push(`${openRound.summary.runId} round ${openRound.summary.round}: the round is still open at the end of the log`);
  if (lines.length > 0 && !registered.has(pHash)) warnings.push(`the policy ${pHash} given first is not registered in this log: no run of it was checked`);
  // parties that completed a round but did not countersign it (a party may crash: a note, not a failure)
  for (const s of timeline) {
    if (s.status !== 'completed') continue;
    const missing = (s.survivors ?? []).filter((p) => !s.receipts.includes(p));
    if (missing.length) warnings.push(`${s.runId} round ${s.round}: no receipt in the log from ${missing.join(', ')}`);
  }
  if (lines.length > 0 && !opts.receipts?.length) warnings.push('completeness not checked: no party receipts given (a log cut off after any entry verifies on its own; give the parties\' receipts with --receipts)');

  // ---- 7: the parties' own receipts
  const n = lines.length;
  for (const { source, receipt } of opts.receipts ?? []) {
    const rc = receipt as Receipt;
    const rcPolicy = typeof rc === 'object' && rc !== null ? contexts.get(rc.policyHash) : undefined;
    const key = rcPolicy?.partyKeys.get(rc.party);
    const where = typeof rc?.headIdx === 'number' && Number.isSafeInteger(rc.headIdx) && rc.headIdx >= 0 ? rc.headIdx : n;
    if (typeof rc === 'object' && rc !== null && !rcPolicy) {
      fail(Math.min(where, n), `receipts.${source}.policyHash`, expectedPolicyHash, rc.policyHash);
      continue;
    }
    if (!key || !verifyReceiptSignature(rc, key)) {
      fail(Math.min(where, n), `receipts.${source}`, "a receipt signed by a policy party's pinned key", 'invalid or unsigned receipt');
      continue;
    }
    if (rc.headIdx >= n) {
      fail(n, 'length', `at least ${rc.headIdx + 1} entries (receipt ${source} of ${rc.party} covers entry ${rc.headIdx})`, `${n} entries`);
      continue;
    }
    const h = heads[rc.headIdx];
    if (!h) continue; // that line already failed
    if (toHex(h) !== rc.head) {
      fail(rc.headIdx, 'chainHash', `${rc.head} (countersigned by ${rc.party}, ${source})`, toHex(h));
      continue;
    }
    if (!receiptSigs.has(rc.signature)) fail(n, 'receipt', `the receipt of ${rc.party} over entry ${rc.headIdx} (${source}) in the log`, 'missing');
  }

  failures.sort((a, b) => a.entry - b.entry);
  const lastHead = heads.length ? heads[heads.length - 1] : null;
  const budgets: Record<string, number> = {};
  for (const p of policy.parties) budgets[p.name] = partyBudget(policy, p.name);
  return {
    ok: failures.length === 0,
    entries: n,
    rounds: timeline.length,
    failures,
    policyHash: pHash,
    head: lastHead ? toHex(lastHead) : null,
    timeline,
    runs: runs.map((r) => ({ runId: r.runId, startIdx: r.startIdx, status: r.status, roundsPlanned: r.roundsPlanned })),
    budgets,
    warnings,
  };
}

function safe<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

function fieldAt(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = { entry: obj };
  for (const k of path.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur === undefined ? '(missing)' : cur;
}
