/**
 * Errors of the secure-aggregation protocol. Each carries a gRPC status name so the transport
 * layer can map it 1:1 (CONVENTIONS.md), and a message a person can act on.
 */
export type SecAggCode =
  | 'INVALID_ARGUMENT' // malformed message or argument
  | 'FAILED_PRECONDITION' // message not allowed in the current phase (out of phase, duplicate)
  | 'PERMISSION_DENIED' // sender not allowed to send this (unknown party, not a survivor)
  | 'UNAUTHENTICATED' // bad signature, wrong federation or round (replay)
  | 'ABORTED'; // the client refused the round (protocol violation by the coordinator)

export class SecAggError extends Error {
  override readonly name = 'SecAggError';
  constructor(
    readonly code: SecAggCode,
    message: string,
  ) {
    super(message);
  }
}

/** Runs `fn`; a TypeError/RangeError from an argument check becomes SecAggError INVALID_ARGUMENT. */
export function asInvalidArgument<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw new SecAggError('INVALID_ARGUMENT', e.message);
    throw e;
  }
}
