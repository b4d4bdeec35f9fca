/**
 * Registers a controller's gRPC handlers. ts-proto's generated `XControllerMethods()` decorator maps
 * client-streaming RPCs to Nest's GrpcStreamMethod, whose Observable is buffered until the handler's
 * Promise resolves (Nest 11): a handler that awaits the end of the stream then never sees it, and an
 * eager subscriber sees early messages twice. Client-streaming RPCs here therefore use
 * GrpcStreamCall (the raw grpc-js call, in order, with back-pressure), and everything else
 * GrpcMethod, as the generated decorator would.
 */
import { GrpcMethod, GrpcStreamCall } from '@nestjs/microservices';
import type { sendUnaryData, ServerReadableStream } from '@grpc/grpc-js';
import { toStatusError } from './errors';

export function GrpcController(service: string, methods: { unary: string[]; clientStream: string[] }) {
  return function (constructor: Function): void {
    for (const m of methods.unary) {
      const d = Reflect.getOwnPropertyDescriptor(constructor.prototype, m);
      if (!d) throw new Error(`${constructor.name} has no method ${m}`);
      GrpcMethod(service, m)(constructor.prototype[m], m, d);
      Object.defineProperty(constructor.prototype, m, d);
    }
    for (const m of methods.clientStream) {
      const d = Reflect.getOwnPropertyDescriptor(constructor.prototype, m);
      if (!d) throw new Error(`${constructor.name} has no method ${m}`);
      GrpcStreamCall(service, m)(constructor.prototype[m], m, d);
      Object.defineProperty(constructor.prototype, m, d);
    }
  };
}

/**
 * The raw call as the `{subscribe}` source consumeChunkStream reads. A cancelled call (the client
 * went away, or grpc/malformed.ts refused an undecodable message) errors the source, so the
 * consumer settles and drops what it had received instead of waiting for an end that never comes.
 */
export function callSource<M>(call: ServerReadableStream<M, unknown>) {
  return {
    subscribe(o: { next(m: M): void; error(e: unknown): void; complete(): void }) {
      call.on('data', (m: M) => o.next(m));
      call.on('error', (e: unknown) => o.error(e));
      call.on('cancelled', () => o.error(new Error('the call was cancelled before its stream ended')));
      call.on('end', () => o.complete());
    },
  };
}

/** Settles a raw client-streaming call from a promise, with a status error on failure. */
export function answer<R>(callback: sendUnaryData<R>, p: Promise<R>, log?: (line: string) => void): Promise<void> {
  return p.then(
    (res) => callback(null, res),
    (e) => {
      const s = toStatusError(e, log);
      callback({ code: s.code, details: s.message, message: s.message, name: 'StatusError' } as never, null);
    },
  );
}
