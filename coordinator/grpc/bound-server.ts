/**
 * NestJS's gRPC transport binds its server but drops the bound port. Tests and the CLI listen on
 * port 0 and need the port the OS chose, so this strategy re-implements `createClient` (same
 * options handling as Nest 11's ServerGrpc) and keeps the port. Used via
 * `connectMicroservice({ strategy: new BoundServerGrpc(options, interceptors) })`; the grpc-js server
 * interceptors (malformed.ts) go on the one server it creates.
 */
import * as grpc from '@grpc/grpc-js';
import { ServerGrpc, type GrpcOptions } from '@nestjs/microservices';

export class BoundServerGrpc extends ServerGrpc {
  private port: number | null = null;
  private readonly bindWaiters: ((port: number) => void)[] = [];

  constructor(
    private readonly grpcOptions: GrpcOptions['options'],
    private readonly interceptors: grpc.ServerInterceptor[] = [],
  ) {
    super(grpcOptions);
  }

  /** The port the server is bound to (resolves once bound). */
  boundPort(): Promise<number> {
    if (this.port !== null) return Promise.resolve(this.port);
    return new Promise((resolve) => this.bindWaiters.push(resolve));
  }

  override async createClient(): Promise<grpc.Server> {
    const o = this.grpcOptions;
    const channelOptions: Record<string, unknown> = { ...(o.channelOptions ?? {}) };
    if (o.maxSendMessageLength) channelOptions['grpc.max_send_message_length'] = o.maxSendMessageLength;
    if (o.maxReceiveMessageLength) channelOptions['grpc.max_receive_message_length'] = o.maxReceiveMessageLength;
    if (o.maxMetadataSize) channelOptions['grpc.max_metadata_size'] = o.maxMetadataSize;
    const server = new grpc.Server({ ...(channelOptions as grpc.ServerOptions), interceptors: this.interceptors });
    const credentials = o.credentials ?? grpc.ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(o.url ?? 'localhost:5000', credentials, (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.port = port;
    for (const w of this.bindWaiters.splice(0)) w(port);
    return server;
  }
}
