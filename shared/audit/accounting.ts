/**
 * What the auditor recomputes about privacy (issue 6): the parameters a round must have under the
 * policy, and each party's lifetime epsilon from the logged parameters of every round it was
 * charged for, with the project's accountant (shared/dp/rdp.ts).
 *
 * The composition is the node ledger's (participant-node/privacy/ledger.ts, checked equal in
 * tests/shared/audit/accounting.test.ts): RDP at the orders [1.25, 1.5, 1.75, 2..128, 256] summed
 * over rounds, then the CKS/Balle conversion at the policy's delta.
 *   local-dpsgd: Poisson-subsampled Gaussian, noise multiplier sigma, rate q, `steps` DP-SGD steps;
 *   round-noise: the (distributed) discrete Gaussian (rdpDdg), integer sensitivities from the
 *     encoder's own bound (contributionSensitivity: clip C, scale gamma, conditional rounding with
 *     the default beta, padded dimension when rotated), noise variance per share
 *     (gamma sigma C)^2 / n_min rationalised upwards exactly as the sampler does, n_min shares
 *     (1 per-party), one composition per round. Fractional orders use ceil(order).
 * A party is charged for a round when its masked input was accepted (DESIGN §4: the budget is
 * charged when the masked input is sent, so an aborted round still counts).
 */
import type { Policy } from '../policy/schema';
import { sharedParameterLayout, layoutSize } from '../model/layout';
import { epsilonFromRdp, rdpDdg, rdpSampledGaussian, ACCOUNTING_ORDERS } from '../dp/rdp';
import { contributionSensitivity, noiseVariance, DEFAULT_BETA, type EncodeParams } from '../dp/encode';
import { rationalizeVariance } from '../dp/discrete';
import type { RoundParams } from './entries';

export const ACCOUNTANT_ORDERS: readonly number[] = ACCOUNTING_ORDERS;

/** Number of shared model coordinates under the policy's model and vocabularies. */
export function policyDimension(policy: Policy): number {
  return layoutSize(sharedParameterLayout(policy.model, policy.vocabularies));
}

/** The parameters every round of a run under `policy` must log (and use). */
export function expectedRoundParams(policy: Policy): RoundParams {
  const p = policy.privacy;
  return {
    mechanism: p.mechanism,
    clipNorm: p.clipNorm,
    noiseMultiplier: p.noiseMultiplier,
    samplingRate: p.samplingRate,
    steps: p.mechanism === 'local-dpsgd' ? p.stepsPerRound : 1,
    delta: p.delta,
    noiseMode: p.noiseMode,
    nMin: p.nMin,
    gamma: policy.secagg.scale,
    bits: policy.secagg.bitWidth,
    dimension: policyDimension(policy),
    rotation: policy.secagg.rotation,
    threshold: policy.secagg.threshold,
  };
}

/** Encoder parameters implied by round parameters (round-noise accounting needs the sensitivities). */
export function encodeParamsOf(r: RoundParams): EncodeParams {
  return {
    clip: r.clipNorm,
    gamma: r.gamma,
    bits: r.bits,
    rotationSeed: r.rotation === 'hadamard' ? new Uint8Array(32) : null,
    beta: DEFAULT_BETA,
    noise: r.mechanism === 'round-noise' ? { sigma: r.noiseMultiplier * r.clipNorm, mode: r.noiseMode, nMin: r.nMin } : null,
  };
}

/** Length of the vector a party masks and sends (padded to a power of two when rotated). */
export function encodedLength(r: RoundParams): number {
  return contributionSensitivity(encodeParamsOf(r), r.dimension).encodedDimension;
}

const rdpCache = new Map<string, readonly number[]>();

/** RDP at ACCOUNTANT_ORDERS of one charged round (memoised per parameter set). Throws RangeError on parameters the accountant refuses. */
export function roundRdp(r: RoundParams): readonly number[] {
  const key = JSON.stringify([r.mechanism, r.clipNorm, r.noiseMultiplier, r.samplingRate, r.steps, r.noiseMode, r.nMin, r.gamma, r.bits, r.dimension, r.rotation]);
  let v = rdpCache.get(key);
  if (!v) {
    v = Object.freeze(roundRdpUncached(r));
    if (rdpCache.size > 1000) rdpCache.clear();
    rdpCache.set(key, v);
  }
  return v;
}

function roundRdpUncached(r: RoundParams): number[] {
  if (r.mechanism === 'local-dpsgd') return rdpSampledGaussian(r.samplingRate, r.noiseMultiplier, r.steps, ACCOUNTANT_ORDERS);
  const enc = encodeParamsOf(r);
  const { l2, l1, encodedDimension } = contributionSensitivity(enc, r.dimension);
  const { num, den } = rationalizeVariance(noiseVariance(enc));
  const shares = r.noiseMode === 'distributed' ? r.nMin : 1;
  const ints = ACCOUNTANT_ORDERS.map((a) => Math.ceil(a));
  const uniq = [...new Set(ints)];
  const vals = rdpDdg({ localVariance: num / den, parties: shares, l2, l1, dimension: encodedDimension, q: r.samplingRate, steps: r.steps }, uniq);
  const byOrder = new Map(uniq.map((a, i) => [a, vals[i]]));
  return ints.map((a) => byOrder.get(a)!);
}

/** Lifetime epsilon at `delta` after the given charged rounds. */
export function composeEpsilon(rounds: readonly RoundParams[], delta: number): number {
  if (rounds.length === 0) return 0;
  const total = new Array<number>(ACCOUNTANT_ORDERS.length).fill(0);
  for (const r of rounds) roundRdp(r).forEach((v, i) => (total[i] += v));
  return epsilonFromRdp(ACCOUNTANT_ORDERS, total, delta).epsilon;
}

/**
 * Running RDP totals per party (composition is a sum at each order), so a log of R rounds costs
 * O(R) accountant evaluations instead of recomposing every party's history at every round.
 */
export class RdpLedger {
  private readonly totals = new Map<string, number[]>();

  charge(party: string, r: RoundParams): void {
    const add = roundRdp(r);
    const t = this.totals.get(party) ?? new Array<number>(ACCOUNTANT_ORDERS.length).fill(0);
    for (let i = 0; i < t.length; i++) t[i] += add[i];
    this.totals.set(party, t);
  }

  /** An independent copy (a coordinator restores it when the transaction that charged fails). */
  clone(): RdpLedger {
    const c = new RdpLedger();
    for (const [p, t] of this.totals) c.totals.set(p, [...t]);
    return c;
  }

  /** Lifetime epsilon of `party` at `delta` (0 if never charged). */
  epsilon(party: string, delta: number): number {
    const t = this.totals.get(party);
    return t ? epsilonFromRdp(ACCOUNTANT_ORDERS, t, delta).epsilon : 0;
  }
}

/** The lifetime budget of a party under the policy (its own override, else the policy's). */
export function partyBudget(policy: Policy, party: string): number {
  return policy.parties.find((p) => p.name === party)?.epsilonBudget ?? policy.privacy.epsilonBudget;
}

/** Relative tolerance when comparing a logged epsilon with the recomputed one (floating point only). */
export const EPSILON_RTOL = 1e-9;

export function epsilonMatches(logged: number, recomputed: number): boolean {
  return Math.abs(logged - recomputed) <= EPSILON_RTOL * Math.max(1, Math.abs(recomputed));
}
