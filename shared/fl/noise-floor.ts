/**
 * The distributed-noise floor (DESIGN §4 step 3; issue 4).
 *
 * With `round-noise` in `distributed` mode each party adds a discrete Gaussian share of variance
 * (gamma sigma)^2 / n_min per coordinate, and the accountant (node ledger, coordinator, auditor)
 * charges each round as the sum of n_min such shares, i.e. the full sigma. Who can see how many
 * shares in an unmasked sum of s survivors' inputs:
 *
 *   - the coordinator (and anyone the new model reaches without being a party): all s shares;
 *   - a party: the model is the sum, and the party knows its own input and its own noise share, so
 *     it can subtract them; what protects the OTHER parties' users from it is s - 1 shares.
 *
 * The charge is honest for every observer only if s - 1 >= n_min, so a round is unmasked only with
 * at least n_min + 1 masked inputs, and a policy needs n_min <= parties - 1 (with 2 parties no
 * n_min >= 2 fits: that is the two-party rule, `per-party` noise). Parties that collude pool their
 * shares; that is outside the guarantee (shared/secagg/index.ts).
 *
 * Both sides enforce it: the coordinator aborts the round once masked input closes with fewer
 * inputs, a node refuses to sign such a survivor list (so nothing gets unmasked), and the auditor
 * fails a completed round that had fewer.
 */
import type { Policy } from '../policy/schema';

/** The fewest masked inputs a round of `policy` may unmask with (1 when the floor does not apply). */
export function minMaskedInputs(policy: Policy): number {
  const p = policy.privacy;
  return p.mechanism === 'round-noise' && p.noiseMode === 'distributed' ? p.nMin + 1 : 1;
}

/** Why a round with `survivors` masked inputs must not be unmasked under `policy`, or null. */
export function noiseFloorViolation(policy: Policy, survivors: number): string | null {
  const need = minMaskedInputs(policy);
  if (survivors >= need) return null;
  const nMin = policy.privacy.nMin;
  return `distributed noise needs masked inputs from at least n_min + 1 = ${need} parties (each party can remove its own noise share from the sum, so every observer must still see n_min = ${nMin} shares), only ${survivors} sent a masked input; the sum would not be differentially private`;
}
