/** The audit format (issue 6): pure, no I/O; used by the coordinator, the CLI and the auditor page. */
export * from './chain';
export * from './entries';
export * from './merkle';
export * from './receipt';
export * from './accounting';
export * from './writer';
export * from './verify';
export * from './secagg-sigs';
export * from './recorder';
export * from './api';
export * from './evidence';
