/**
 * Whether this node's imported data can take part under a policy: the checks `node join` makes
 * before it connects, and `policy sign --data-dir` before the node signs (so that a party does not
 * agree to a policy it would then refuse at every round):
 *   - catalogue: the catalogue it imported is the policy's (catalogue.hash);
 *   - offers: under offer scope `own`, the policy's catalogue.offers give this party exactly the
 *     items its catalogue names it provider of;
 *   - users: under `round-noise` with privacy.maxUsersPerParty, its users with an (in-scope)
 *     training interaction (DP-SGD's and the encoder's population) are within the cap that bounds
 *     the encoding against wrap-around (update.ts `userCapProblem`).
 * Pure over the loaded dataset: no I/O.
 */
import type { Policy } from '../../shared/policy/schema';
import type { NodeDataset } from '../data/dataset';
import { offerScope, positivesByUser, type OfferScope } from '../model/dpsgd';
import type { Positives } from '../model/train';
import { userCapProblem } from './update';

export interface AdmissionProblem {
  kind: 'catalogue' | 'offers' | 'users';
  message: string;
}

/**
 * The first reason `party`'s dataset `ds` cannot train under `policy` with training positives
 * `positives` (`problem`, null when it can), and its offer scope (null unless the policy's scope is
 * `own` and the offers agree).
 */
export function admission(ds: NodeDataset, party: string, policy: Policy, positives: Positives): { problem: AdmissionProblem | null; scope: OfferScope | null } {
  if (ds.catalogueHash !== policy.catalogue.hash) {
    return { problem: { kind: 'catalogue', message: `the imported catalogue (${ds.catalogueHash.slice(0, 16)}…) is not the policy's catalogue (${policy.catalogue.hash.slice(0, 16)}…)` }, scope: null };
  }
  let scope: OfferScope | null = null;
  if (policy.training.offerScope === 'own') {
    try {
      scope = offerScope(party, policy.catalogue.offers ?? {}, ds.items);
    } catch (err) {
      return { problem: { kind: 'offers', message: (err as Error).message }, scope: null };
    }
  }
  // the sampling population as the trainer counts it: users with an (in-scope) training interaction
  const overCap = userCapProblem(policy, positivesByUser(positives, scope?.own ?? null).byUser.size);
  return { problem: overCap ? { kind: 'users', message: overCap } : null, scope };
}
