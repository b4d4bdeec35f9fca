/**
 * DownloadModel without per-call copies or unbounded buffering (ParticipantController.downloadModel):
 *
 *   - ModelCache: one buffer per model version, read from storage once (concurrent first reads share
 *     one query) and kept for the `keep` versions asked for most recently (a hit counts: the version
 *     the nodes are downloading stays while an older one is asked for once); every call's chunks are
 *     views into it (before, each call read the row and built all its chunks up front);
 *   - DownloadSlots: at most `max` downloads per party at a time (RESOURCE_EXHAUSTED beyond); each
 *     open download reports how many chunks it has written, so tests can see production follow the
 *     client's reading (a client that reads nothing gets what fits in the HTTP/2 window, no more).
 * The write-stall limit (grpc.streamIdleMs) is applied by the controller while it waits for `drain`.
 */
import type { ModelVersionRow, Repository } from '../storage/repository';
import { resourceExhausted } from '../grpc/errors';

export class ModelCache {
  private readonly rows = new Map<number, Promise<ModelVersionRow | null>>();
  /** storage reads made (tests: two downloads of one version read it once) */
  reads = 0;

  constructor(
    private readonly repo: Pick<Repository, 'modelVersion' | 'latestModelVersionNumber'>,
    private readonly keep = 2,
  ) {}

  /** Model version `version`, or the latest for 0; null when it does not exist. */
  async get(version: number): Promise<ModelVersionRow | null> {
    if (version === 0) {
      version = await this.repo.latestModelVersionNumber(); // the newest may change: asked every time (no bytes read)
      if (version === 0) return null;
    }
    let p = this.rows.get(version);
    if (p) this.remember(version, p); // most recently asked for: evicted last
    else {
      this.reads++;
      const q = this.repo.modelVersion(version);
      p = q;
      this.remember(version, q);
      q.then(
        (r) => void (r === null && this.rows.get(version) === q && this.rows.delete(version)),
        () => void (this.rows.get(version) === q && this.rows.delete(version)),
      );
    }
    return p;
  }

  private remember(version: number, p: Promise<ModelVersionRow | null>): void {
    this.rows.delete(version);
    this.rows.set(version, p);
    while (this.rows.size > this.keep) this.rows.delete(this.rows.keys().next().value as number);
  }

  /** Versions held now. */
  get size(): number {
    return this.rows.size;
  }
}

export interface DownloadProgress {
  party: string;
  version: number;
  written: number;
  total: number;
}

export class DownloadSlots {
  private readonly open = new Set<DownloadProgress>();

  constructor(private readonly max: number) {}

  /** Registers a download of `party`; RESOURCE_EXHAUSTED past the per-party limit. Returns it and its release. */
  claim(party: string, version: number, total: number): { progress: DownloadProgress; release(): void } {
    if (this.count(party) >= this.max) {
      throw resourceExhausted(`DownloadModel: party "${party}" already has ${this.max} downloads in progress (grpc.maxDownloadsPerParty); wait for one to end`);
    }
    const progress: DownloadProgress = { party, version, written: 0, total };
    this.open.add(progress);
    return { progress, release: () => void this.open.delete(progress) };
  }

  count(party?: string): number {
    let n = 0;
    for (const d of this.open) if (!party || d.party === party) n++;
    return n;
  }

  list(): DownloadProgress[] {
    return [...this.open].map((d) => ({ ...d }));
  }
}
