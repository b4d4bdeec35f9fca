/**
 * A typed grpc-js client for the operator API (generated from federation.proto), over TLS with the
 * operator bearer token in metadata. Used by the `fedbridge coordinator` operator commands, the demo
 * and tests.
 */
import * as grpc from '@grpc/grpc-js';
import { OperatorServiceClient, OperatorServiceService, type RunStatus } from '../../proto/gen/grpc/fedbridge/v1/federation';
import { strictClient } from '../../shared/proto/wire-check';
import { sodium } from '../../shared/crypto/sodium';
import { clientTlsFiles } from '../../shared/cli/tls';

export interface OperatorClientOptions {
  address: string; // host:port
  caFile: string;
  token: string;
  /** client certificate (needed when the coordinator requires mutual TLS on its port) */
  certFile?: string;
  keyFile?: string;
  /** TLS server name to check (default: the host of `address`, or localhost for IPs) */
  serverName?: string;
}

export function operatorClient(o: OperatorClientOptions): { client: OperatorServiceClient; metadata: grpc.Metadata } {
  // checked before connecting (UserError naming the flag): a key that is not the certificate's would
  // otherwise throw from inside Node's TLS stack, a CA file without a certificate be ignored
  const tls = clientTlsFiles({
    ca: { name: '--ca', file: o.caFile },
    cert: o.certFile ? { name: '--tls-cert', file: o.certFile } : undefined,
    key: o.keyFile ? { name: '--tls-key', file: o.keyFile } : undefined,
  });
  const creds = grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  const host = o.address.slice(0, o.address.lastIndexOf(':'));
  const serverName = o.serverName ?? (/^[\d.]+$|^\[/.test(host) ? 'localhost' : host);
  // every response checked strictly before it is decoded (shared/proto/wire-check.ts)
  const Client = strictClient<typeof OperatorServiceClient>(OperatorServiceService, 'fedbridge.v1.OperatorService');
  const client = new Client(o.address, creds, { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName });
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${o.token}`);
  return { client, metadata };
}

/** Promise wrapper for a unary call: `await unary(client.getRunStatus.bind(client), req, md)`. */
export function unary<Req, Res>(
  fn: (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall,
  req: Req,
  md: grpc.Metadata,
  timeoutMs = 30_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/**
 * StartRun as a client stream: the request first, then the initial model (flat float32 bytes) in
 * chunks of `chunkBytes`, announced by size and BLAKE2b-256. Requires sodiumReady().
 */
export function startRun(
  client: OperatorServiceClient,
  md: grpc.Metadata,
  req: { policyYaml: string; signatures: { party: string; signature: Uint8Array }[] },
  initialModel: Uint8Array,
  chunkBytes = 1024 * 1024,
  timeoutMs = 60_000,
): Promise<RunStatus> {
  return new Promise((resolve, reject) => {
    const call = client.startRun(md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
    call.on('error', () => undefined);
    call.write({
      start: {
        policyYaml: req.policyYaml,
        signatures: req.signatures,
        initialModelBytes: String(initialModel.length),
        initialModelHash: sodium().crypto_generichash(32, initialModel, null),
      },
      index: 0,
      data: new Uint8Array(0),
    });
    for (let i = 0, k = 0; i < initialModel.length; i += chunkBytes, k++) {
      call.write({ start: undefined, index: k, data: initialModel.subarray(i, Math.min(initialModel.length, i + chunkBytes)) });
    }
    call.end();
  });
}
