/**
 * Errors that carry a gRPC status (CONVENTIONS.md): the protocol and service layers throw
 * StatusError; controllers turn any error into an RpcException with the right code and a message a
 * person can act on. Unexpected errors become INTERNAL with a generic message (details only in the
 * coordinator's log), so internals never leak to a client.
 */
import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { ConflictError, StoredDataDamaged } from '../storage/repository';

export { status };

export class StatusError extends Error {
  constructor(readonly code: status, message: string) {
    super(message);
    this.name = 'StatusError';
  }
}

/**
 * A client-supplied string as a status message may quote it: at most `max` characters (64, the
 * longest party name), with how many more there were. A message never grows with what a client
 * sent (a 200,000-character run id echoed whole made the status trailers too large to deliver).
 */
export function clientText(s: string, max = 64): string {
  const t = String(s);
  return t.length <= max ? t : `${t.slice(0, max)}... (${t.length} characters)`;
}

export const invalid = (m: string) => new StatusError(status.INVALID_ARGUMENT, m);
export const unauthenticated = (m: string) => new StatusError(status.UNAUTHENTICATED, m);
export const permissionDenied = (m: string) => new StatusError(status.PERMISSION_DENIED, m);
export const failedPrecondition = (m: string) => new StatusError(status.FAILED_PRECONDITION, m);
export const resourceExhausted = (m: string) => new StatusError(status.RESOURCE_EXHAUSTED, m);
export const notFound = (m: string) => new StatusError(status.NOT_FOUND, m);
export const alreadyExists = (m: string) => new StatusError(status.ALREADY_EXISTS, m);

const NAMED: Record<string, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  ABORTED: status.ABORTED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
};

/** Node socket errors of a connection to the database server. */
const SOCKET_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTCONN']);

/**
 * The store could not be reached or could not write just now, a condition that passes (a lost or
 * refused PostgreSQL connection, a server shutting down or starting; SQLite busy, an I/O error, a
 * full disk): the short name of the condition, or null for any other error. Such an error is no
 * verdict on the request, so the party is told UNAVAILABLE (send it again), not INTERNAL.
 */
export function storageUnavailable(e: unknown): string | null {
  // duck-typed, not `instanceof Error`: better-sqlite3's native addon keeps the SqliteError class of
  // the first JS realm that loaded it (one per jest test file), so its errors need not be instances
  // of this realm's Error (a busy store was answered INTERNAL in CI for exactly that reason)
  if (typeof e !== 'object' || e === null || typeof (e as { message?: unknown }).message !== 'string') return null;
  const code = String((e as { code?: unknown }).code ?? '');
  if (/^SQLITE_(BUSY|IOERR|FULL|LOCKED)/.test(code)) return code; // better-sqlite3: SQLITE_IOERR_WRITE etc.
  if (/^08[0-9A-Z]{3}$/.test(code) || /^57P0[123]$/.test(code) || code === '53300') return `PostgreSQL ${code}`; // connection exception; admin/crash shutdown, cannot connect now; too many connections
  if (SOCKET_CODES.has(code)) return code;
  // pg: a connection that ended under a query (no code)
  if (/^Connection terminated|^Client has encountered a connection error|^Connection terminated unexpectedly|timeout exceeded when trying to connect/.test((e as { message: string }).message)) return 'connection to PostgreSQL lost';
  return null;
}

/** Maps any thrown value to a StatusError (protocol errors carry a status name in `code`). */
export function toStatusError(e: unknown, log?: (line: string) => void): StatusError {
  if (e instanceof StatusError) return e;
  if (e instanceof RpcException) {
    const err = e.getError() as { code?: unknown; message?: unknown };
    if (typeof err === 'object' && err && typeof err.code === 'number') return new StatusError(err.code as status, String(err.message ?? ''));
  }
  if (e instanceof ConflictError) return new StatusError(status.FAILED_PRECONDITION, e.message);
  if (e instanceof StoredDataDamaged) {
    log?.(e.message);
    return new StatusError(status.DATA_LOSS, e.message);
  }
  const down = storageUnavailable(e);
  if (down) {
    log?.(`storage unavailable: ${(e as Error)?.stack ?? String(e)}`);
    return new StatusError(status.UNAVAILABLE, `the coordinator's storage is unavailable just now (${down}); send the request again shortly`);
  }
  const named = (e as { code?: unknown })?.code;
  if (e instanceof Error && typeof named === 'string' && named in NAMED) return new StatusError(NAMED[named], e.message);
  log?.(`internal error: ${(e as Error)?.stack ?? String(e)}`);
  return new StatusError(status.INTERNAL, 'internal error in the coordinator (see its log)');
}

export function toRpcException(e: unknown, log?: (line: string) => void): RpcException {
  const s = toStatusError(e, log);
  return new RpcException({ code: s.code, message: s.message });
}
