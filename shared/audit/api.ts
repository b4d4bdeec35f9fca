/**
 * The read-only audit API's page logic (proto/fedbridge/v1/audit-api.openapi.yaml), transport-free:
 * the coordinator's HTTP controller checks the auditor token, reads rows [from, from + limit) from
 * storage and returns `auditLogPage(...)` as `application/x-ndjson`. Invalid query parameters give
 * an AuditApiError (HTTP 400) with a one-line reason; nothing is written. The artifact downloads
 * (GET /audit/v1/models/{version}, GET /audit/v1/runs/{runId}/rounds/{round}/aggregate) read their
 * path parameters with parsePathInteger and parsePathRunId, and name the body's BLAKE2b-256 in the
 * AUDIT_ARTIFACT_HASH_HEADER response header.
 */
import { exportLine, type AuditRecord } from './chain';
import { runIdSchema } from './entries';

export const AUDIT_API_MAX_LIMIT = 10_000;
export const AUDIT_API_DEFAULT_LIMIT = 1_000;

export class AuditApiError extends Error {
  constructor(
    message: string,
    readonly httpStatus: 400 | 401 = 400,
  ) {
    super(message);
    this.name = 'AuditApiError';
  }
}

/** Parses `from` (required) and `limit` (optional) of GET /audit/v1/log. */
export function parseLogQuery(q: { from?: string | null; limit?: string | null }): { from: number; limit: number } {
  const int = (name: string, v: string, min: number, max: number): number => {
    if (!/^\d{1,16}$/.test(v)) throw new AuditApiError(`"${name}" must be a non-negative integer, got ${JSON.stringify(v.slice(0, 20))}`);
    const n = Number(v);
    if (n < min || n > max) throw new AuditApiError(`"${name}" must be in [${min}, ${max}], got ${n}`);
    return n;
  };
  if (q.from === undefined || q.from === null) throw new AuditApiError('"from" is required (the index of the first entry)');
  const from = int('from', q.from, 0, Number.MAX_SAFE_INTEGER);
  const limit = q.limit === undefined || q.limit === null ? AUDIT_API_DEFAULT_LIMIT : int('limit', q.limit, 1, AUDIT_API_MAX_LIMIT);
  return { from, limit };
}

/** The response body for stored rows (already in index order, starting at `from`). */
export function auditLogPage(rows: readonly AuditRecord[], from: number): string {
  rows.forEach((r, k) => {
    if (r.idx !== from + k) throw new RangeError(`stored audit rows are not contiguous: expected index ${from + k}, got ${r.idx}`);
  });
  return rows.map(exportLine).join('');
}

/**
 * The response header of the artifact downloads (a model version's bytes, a round's aggregate):
 * the BLAKE2b-256 of the body, 64 lowercase hex characters, as the coordinator stored and logged it.
 */
export const AUDIT_ARTIFACT_HASH_HEADER = 'X-Fedbridge-Blake2b-256';

/**
 * A model version or round number in an API path: a non-negative decimal integer, ASCII digits only
 * (no sign, no spaces), at most 16 digits and at most 2^53 - 1. AuditApiError (400) otherwise.
 */
export function parsePathInteger(name: 'version' | 'round', v: string): number {
  const n = /^[0-9]{1,16}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new AuditApiError(`the ${name} in the path must be a non-negative decimal integer (digits only, at most 16, no sign), got ${JSON.stringify(v.slice(0, 20))}${v.length > 20 ? ` (${v.length} characters)` : ''}`);
  return n;
}

/** A run id in an API path: what audit entries carry as `runId` (1 to 128 characters). AuditApiError (400) otherwise. */
export function parsePathRunId(v: string): string {
  if (!runIdSchema.safeParse(v).success) throw new AuditApiError(`the run id in the path must be 1 to 128 characters (as audit entries carry it), got ${v.length}`);
  return v;
}
