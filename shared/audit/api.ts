/**
 * The read-only audit API's page logic (proto/fedbridge/v1/audit-api.openapi.yaml), transport-free:
 * the coordinator's HTTP controller checks the auditor token, reads rows [from, from + limit) from
 * storage and returns `auditLogPage(...)` as `application/x-ndjson`. Invalid query parameters give
 * an AuditApiError (HTTP 400) with a one-line reason; nothing is written.
 */
import { exportLine, type AuditRecord } from './chain';

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
