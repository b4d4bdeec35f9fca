/**
 * A request whose protobuf bytes do not decode gets INVALID_ARGUMENT with the reason, on every RPC.
 *
 * grpc-js answers such a request itself, before any handler runs, with INTERNAL "Error deserializing
 * request" (server-interceptors.js, BaseServerInterceptingCall): a status that says the server is
 * broken, not the request. Two pieces, wired in coordinator/main.ts, turn it into a client error:
 *
 *  1. `guardRequestDeserializers(packageDefinition)` (NestJS's `onLoadPackageDefinition` hook, run
 *     before the services are built): every method's `requestDeserialize` is wrapped so that it never
 *     throws; bytes that break the protobuf wire format (checked strictly first, `shared/proto/wire-check.ts`:
 *     protobufjs alone reads some damaged bytes as a different message) or that protobufjs cannot
 *     decode come back as a `MalformedRequest` naming the message type and the reason.
 *  2. `malformedRequestInterceptor` (a grpc-js server interceptor on the one server): the first
 *     `MalformedRequest` of a call is answered INVALID_ARGUMENT; grpc-js then closes the call for
 *     the handler as a client cancellation would (its listener's onCancel). The handler never sees
 *     that message nor a half-close, so a unary or server-streaming handler is never invoked, and a
 *     client-streaming handler (which stores nothing before its stream completed and checked out)
 *     sees its stream cancelled and discards what it had. No state changes.
 * The two go together: without the interceptor a handler would receive the MalformedRequest value.
 *
 * Only decoding is caught here: a message that decodes but breaks a rule (lengths, phases,
 * signatures) is the handlers' to refuse, with their own codes.
 */
import * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { wireSchemaOf, wireViolation } from '../../shared/proto/wire-check';

/** What a guarded deserializer returns for bytes that do not decode. */
export class MalformedRequest {
  constructor(readonly messageType: string, readonly reason: string) {}

  get details(): string {
    return `malformed request: the bytes are not a valid ${this.messageType} protobuf message (${this.reason})`;
  }
}

interface MethodDefinitionLike {
  path?: unknown;
  requestDeserialize?: unknown;
  requestType?: { type?: { name?: unknown } };
}

/**
 * Wraps, in place, every method's request deserializer in a proto-loader package definition.
 * Returns the number of methods guarded (every service method of the definition).
 */
export function guardRequestDeserializers(def: PackageDefinition): number {
  const schema = wireSchemaOf(def);
  let guarded = 0;
  for (const [name, entry] of Object.entries(def)) {
    // services are objects of method definitions; message and enum types carry `format`
    if (typeof entry !== 'object' || entry === null || 'format' in entry) continue;
    for (const method of Object.values(entry as Record<string, MethodDefinitionLike>)) {
      if (typeof method !== 'object' || method === null || typeof method.requestDeserialize !== 'function') continue;
      const inner = method.requestDeserialize as (b: Buffer) => unknown;
      if ((inner as { guarded?: boolean }).guarded) continue;
      // every request type of ours lives in its service's package (fedbridge.v1)
      const typeName = typeof method.requestType?.type?.name === 'string' ? `${name.replace(/\.[^.]*$/, '')}.${method.requestType.type.name}` : '';
      if (!schema.has(typeName)) throw new Error(`guardRequestDeserializers: no message descriptor for the request type of ${String(method.path)} (${typeName || 'unnamed'})`);
      const wrapped = (bytes: Buffer): unknown => {
        // protobufjs decodes some damaged bytes as another message instead of failing (shared/proto/wire-check.ts)
        const violation = wireViolation(bytes, typeName, schema);
        if (violation !== null) return new MalformedRequest(typeName, violation);
        try {
          return inner(bytes);
        } catch (e) {
          return new MalformedRequest(typeName, e instanceof Error ? e.message : String(e));
        }
      };
      (wrapped as { guarded?: boolean }).guarded = true;
      method.requestDeserialize = wrapped;
      guarded++;
    }
  }
  return guarded;
}

/**
 * The server interceptor of piece 2. `onReject` is told of each refusal (the coordinator counts it in
 * fedbridge_rejected_requests_total and logs the method).
 */
export function malformedRequestInterceptor(onReject?: (path: string, m: MalformedRequest) => void): grpc.ServerInterceptor {
  return (method, call) => {
    let rejected = false;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMessage: (message, pass) => {
            if (rejected) return;
            if (message instanceof MalformedRequest) {
              rejected = true;
              onReject?.(method.path, message);
              // grpc-js then tells the handler's listener onCancel (sendStatus -> notifyOnCancel)
              call.sendStatus({ code: grpc.status.INVALID_ARGUMENT, details: message.details, metadata: new grpc.Metadata() });
              return;
            }
            pass(message);
          },
          onReceiveHalfClose: (pass) => {
            if (!rejected) pass();
          },
        });
      },
    });
  };
}
