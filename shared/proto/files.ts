/**
 * Where the .proto files are and the proto-loader options that match the generated ts-proto code
 * (buf.gen.yaml: forceLong=string <-> longs: String; numeric enums <-> enums: Number; non-optional
 * scalar fields <-> defaults: true); tests/coordinator/proto-roundtrip.test.ts keeps them in step.
 * Used by the coordinator's gRPC server and clients and by the strict wire check (wire-check.ts),
 * which the coordinator and the node both run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Options } from '@grpc/proto-loader';

export const LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: String,
  enums: Number,
  defaults: true,
  oneofs: true,
  arrays: true,
};

export const PROTO_PACKAGE = 'fedbridge.v1';

function findProtoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'proto');
    if (fs.existsSync(path.join(candidate, 'fedbridge', 'v1', 'federation.proto'))) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find proto/fedbridge/v1/federation.proto above ${__dirname}`);
}

export const PROTO_ROOT = findProtoRoot();
export const FEDERATION_PROTO = path.join(PROTO_ROOT, 'fedbridge', 'v1', 'federation.proto');
export const SECAGG_PROTO = path.join(PROTO_ROOT, 'fedbridge', 'v1', 'secagg.proto');
