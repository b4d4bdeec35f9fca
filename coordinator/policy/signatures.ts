/**
 * Policy acceptance before a run (issue 5, DESIGN §3): the coordinator will not start a run until
 * every enrolled party has signed the same policy hash, with the key it was enrolled with, and the
 * policy pins this coordinator's own key. The signed message is shared/policy/sign.ts's
 * ("fedbridge/v1/policy" || 0x00 || policyHash), the one `fedbridge policy sign` produces.
 */
import { ed25519Verify } from '../../shared/crypto/sign';
import { policySigningMessage, signPolicyHash } from '../../shared/policy/sign';
import type { Policy } from '../../shared/policy/schema';
import type { ParticipantRow } from '../storage/repository';
import { failedPrecondition, invalid, permissionDenied } from '../grpc/errors';

export { policySigningMessage, signPolicyHash };

export interface AcceptedSignature {
  party: string;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

/**
 * Checks a policy and its signatures against the enrolment and this coordinator. Returns the
 * verified signatures (one per party, in policy order) or throws a StatusError naming the problem.
 */
export function checkPolicyAcceptance(args: {
  policy: Policy;
  policyHash: string;
  federationId: string;
  coordinatorPublicKey: Uint8Array;
  enrolled: ParticipantRow[];
  signatures: { party: string; signature: Uint8Array }[];
}): AcceptedSignature[] {
  const { policy } = args;
  if (policy.federationId !== args.federationId) {
    throw failedPrecondition(`policy is for federation "${policy.federationId}", this coordinator serves "${args.federationId}"`);
  }
  if (policy.coordinator.publicKey !== Buffer.from(args.coordinatorPublicKey).toString('base64')) {
    throw failedPrecondition("policy pins a different coordinator key (coordinator.publicKey) than this coordinator's identity");
  }
  const enrolled = new Map(args.enrolled.map((p) => [p.name, p]));
  for (const party of policy.parties) {
    const e = enrolled.get(party.name);
    if (!e) throw failedPrecondition(`policy party "${party.name}" is not enrolled (fedbridge coordinator enroll)`);
    if (Buffer.from(e.publicKey).toString('base64') !== party.publicKey) throw failedPrecondition(`policy gives party "${party.name}" a different public key than its enrolment`);
  }
  const inPolicy = new Set(policy.parties.map((p) => p.name));
  for (const e of args.enrolled) {
    if (!inPolicy.has(e.name)) throw failedPrecondition(`enrolled party "${e.name}" is not in the policy: every enrolled party must sign the same policy`);
  }
  const byParty = new Map<string, Uint8Array>();
  for (const s of args.signatures) {
    if (s.party === policy.coordinator.name && !inPolicy.has(s.party)) continue; // the coordinator's own signature is the auditor's business
    if (byParty.has(s.party)) throw invalid(`two signatures for party "${s.party}"`);
    if (!inPolicy.has(s.party)) throw invalid(`signature from "${s.party}", which is not a policy party`);
    if (!(s.signature instanceof Uint8Array) || s.signature.length !== 64) throw invalid(`signature of "${s.party}" must be 64 bytes, got ${s.signature?.length}`);
    byParty.set(s.party, s.signature);
  }
  const msg = policySigningMessage(args.policyHash);
  return policy.parties.map((party) => {
    const sig = byParty.get(party.name);
    if (!sig) throw failedPrecondition(`party "${party.name}" has not signed policy ${args.policyHash}`);
    const pk = enrolled.get(party.name)!.publicKey;
    if (!ed25519Verify(sig, msg, pk)) throw permissionDenied(`signature of party "${party.name}" does not verify for policy ${args.policyHash}`);
    return { party: party.name, publicKey: pk, signature: sig };
  });
}
