/**
 * Everything a running coordinator holds, built once by createCoordinator (coordinator/main.ts) and
 * provided to the NestJS modules under the CTX token (explicit tokens: no reliance on emitted
 * decorator metadata).
 */
import type { Ed25519KeyPair } from '../shared/crypto/sign';
import type { CoordinatorConfig } from './config/config';
import type { CoordinatorMetrics } from './http/metrics';
import type { PartyAuthenticator } from './identity/authenticate';
import type { EventHub } from './rounds/events';
import type { RoundsService } from './rounds/rounds.service';
import type { AuditSealer, Repository } from './storage/repository';
import type { CoordinatorAudit } from './audit/log';
import type { UploadRegistry } from './participant/uploads';
import type { DownloadSlots, ModelCache } from './participant/downloads';

export const CTX = Symbol('fedbridge.coordinator.context');

export interface CoordinatorContext {
  config: CoordinatorConfig;
  identity: Ed25519KeyPair;
  repo: Repository;
  sealer: AuditSealer;
  /** the audit log writer: every entry is appended through it (coordinator/audit/log.ts) */
  audit: CoordinatorAudit;
  events: EventHub;
  metrics: CoordinatorMetrics;
  auth: PartyAuthenticator;
  rounds: RoundsService;
  /** masked-input uploads being received (participant/uploads.ts) */
  uploads: UploadRegistry;
  /** model versions served by DownloadModel, one buffer each, and its open downloads (participant/downloads.ts) */
  models: ModelCache;
  downloads: DownloadSlots;
  log: (line: string) => void;
  startedAt: number;
}
