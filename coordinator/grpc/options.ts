/**
 * One place for the runtime proto-loader options and proto paths, used by the NestJS server and by
 * every grpc-js client built on proto-loader. They match the ts-proto options of buf.gen.yaml
 * (forceLong=string <-> longs: String; numeric enums <-> enums: Number; non-optional scalar fields
 * <-> defaults: true); tests/coordinator/proto-roundtrip.test.ts keeps them in step.
 */
export { FEDERATION_PROTO, LOADER_OPTIONS, PROTO_PACKAGE, PROTO_ROOT, SECAGG_PROTO } from '../../shared/proto/files';

/** Receive limit of the gRPC server: a guard only; vectors travel as chunks far below it. */
export const GRPC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS; Node's
 * default is unbounded). A node uses a handful (its event stream, an upload, a few downloads, the
 * unary calls); each open stream costs server memory, so one connection cannot open thousands.
 */
export const GRPC_MAX_CONCURRENT_STREAMS = 64;
