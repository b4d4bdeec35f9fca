/**
 * The distributed-noise floor (DESIGN §4 step 3; issue 4): with `round-noise` in `distributed` mode
 * each party adds only sigma^2 / n_min of the noise, so the sum is DP only if at least n_min parties'
 * noisy inputs reach it. A dropped party's noise never does. Both sides enforce it: the coordinator
 * aborts the round once masked input closes with fewer than n_min inputs, and a node refuses to sign
 * the survivor list (so nothing gets unmasked) if the coordinator claims fewer.
 */
import type { Policy } from '../policy/schema';

/** Why a round with `survivors` masked inputs must not be unmasked under `policy`, or null. */
export function noiseFloorViolation(policy: Policy, survivors: number): string | null {
  const p = policy.privacy;
  if (p.mechanism !== 'round-noise' || p.noiseMode !== 'distributed') return null;
  if (survivors >= p.nMin) return null;
  return `distributed noise needs the inputs of at least n_min = ${p.nMin} parties in the sum, only ${survivors} sent a masked input; the sum would not be differentially private`;
}
