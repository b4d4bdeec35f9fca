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
import { status, StatusError, toStatusError } from './errors';

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
 * The raw call as the `{subscribe}` source consumeChunkStream reads, with two guards (rules of
 * grpc/README: bad or idle input never holds the server). A cancelled call (the client went away,
 * or grpc/malformed.ts refused an undecodable message) errors the source, so the consumer settles
 * and drops what it had received instead of waiting for an end that never comes; and
 *   - idle: no message for `idleMs` (the first one included: a stream that never opens is ended
 *     too) errors the source with DEADLINE_EXCEEDED;
 *   - `end(err)`: the owner ends the stream from outside (e.g. its round moved on) with `err`.
 * Either way the consumer (consumeChunkStream) settles with that status and drops what it held;
 * `stop()` (the consumer settled) clears the timer. Timers are injectable for tests.
 */
export function guardedCallSource<M>(
  call: ServerReadableStream<M, unknown>,
  opts: { what: string; idleMs: number; timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(h: unknown): void } },
) {
  const t = opts.timers ?? { setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms), clearTimeout: (h: unknown) => clearTimeout(h as NodeJS.Timeout) };
  let sink: { error(e: unknown): void } | null = null;
  let early: unknown = null;
  let timer: unknown = null;
  let stopped = false;
  const clear = () => {
    if (timer !== null) t.clearTimeout(timer);
    timer = null;
  };
  const end = (e: unknown) => {
    if (stopped) return;
    stopped = true;
    clear();
    if (sink) sink.error(e);
    else early = e;
  };
  const arm = () => {
    clear();
    if (!stopped) timer = t.setTimeout(() => end(new StatusError(status.DEADLINE_EXCEEDED, `${opts.what}: no message for ${opts.idleMs} ms (grpc.streamIdleMs); the stream was ended and what it sent was dropped`)), opts.idleMs);
  };
  arm();
  return {
    end,
    stop: () => {
      stopped = true;
      clear();
    },
    source: {
      subscribe(o: { next(m: M): void; error(e: unknown): void; complete(): void }) {
        sink = o;
        if (early !== null) return o.error(early);
        call.on('data', (m: M) => {
          if (stopped) return;
          arm();
          o.next(m);
        });
        call.on('error', (e: unknown) => o.error(e));
        call.on('cancelled', () => {
          stopped = true;
          clear();
          o.error(new Error('the call was cancelled before its stream ended'));
        });
        call.on('end', () => {
          clear();
          o.complete();
        });
      },
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
