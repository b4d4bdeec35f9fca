/**
 * Who may download a model version: the parties of the run it belongs to, as that run's policy
 * names and pins them (name and enrolled key). A party enrolled later, outside that policy (e.g.
 * mid-run, for a later run), gets PERMISSION_DENIED: the model is derived from the data of the
 * run's parties, who agreed in the signed policy on who takes part.
 *
 * A version maps to its run by `run_id` (the versions a run's rounds produce) or, for the initial
 * model a run starts from (stored with no run), by the run whose round 1 starts from it (runOfModel,
 * also what the audit API's model download uses). Both are fixed once written, as is a run's
 * policy, so the answer is cached per version.
 */
import { permissionDenied } from '../grpc/errors';
import type { ModelVersionRow, ParticipantRow, Repository, RunRow } from '../storage/repository';

/**
 * The run model version `model` belongs to: its `run_id` (a version a round of the run produced)
 * or, for a run's initial model (stored with no run), the run whose round 1 starts from it; null
 * for a version of no run.
 */
export async function runOfModel(repo: Pick<Repository, 'run' | 'runStartingFrom'>, model: Pick<ModelVersionRow, 'version' | 'runId'>): Promise<RunRow | null> {
  const runId = model.runId ?? (await repo.runStartingFrom(model.version));
  return runId === null ? null : repo.run(runId);
}

interface Pinned {
  runId: string;
  /** party name -> its public key (base64) in the run's policy */
  parties: Map<string, string>;
}

export class ModelAccess {
  private readonly byVersion = new Map<number, Promise<Pinned | null>>();

  constructor(
    private readonly repo: Pick<Repository, 'run' | 'policySignatures' | 'runStartingFrom'>,
    private readonly keep = 256,
  ) {}

  /** Throws PERMISSION_DENIED unless `party` is one of the parties of the run `model` belongs to. */
  async check(party: ParticipantRow, model: ModelVersionRow): Promise<void> {
    const pinned = await this.pinnedFor(model);
    if (!pinned) throw permissionDenied(`DownloadModel: model version ${model.version} belongs to no run`);
    const key = pinned.parties.get(party.name);
    if (key === undefined) throw permissionDenied(`DownloadModel: model version ${model.version} belongs to run ${pinned.runId}, whose policy does not name party "${party.name}"`);
    if (key !== Buffer.from(party.publicKey).toString('base64')) throw permissionDenied(`DownloadModel: model version ${model.version} belongs to run ${pinned.runId}, whose policy pins another key for party "${party.name}"`);
  }

  private pinnedFor(model: ModelVersionRow): Promise<Pinned | null> {
    let p = this.byVersion.get(model.version);
    if (!p) {
      p = this.lookup(model);
      if (this.byVersion.size >= this.keep) this.byVersion.delete(this.byVersion.keys().next().value!);
      this.byVersion.set(model.version, p);
      p.catch(() => this.byVersion.delete(model.version)); // a storage error is not remembered
    }
    return p;
  }

  private async lookup(model: ModelVersionRow): Promise<Pinned | null> {
    const run = await runOfModel(this.repo, model);
    if (!run) return null;
    // the policy's parties under their pinned keys: the signatures stored with it (one per party)
    const signers = await this.repo.policySignatures(run.policyHash);
    return { runId: run.id, parties: new Map(signers.map((s) => [s.party, Buffer.from(s.publicKey).toString('base64')])) };
  }
}
