/**
 * uploadWithRetry (participant-node/federation/client.ts): a masked input whose upload ended in
 * UNAVAILABLE, DEADLINE_EXCEEDED or CANCELLED is sent again (the same bytes: the caller's `send`
 * closes over one encoded message); any other status, or a resend status after the last wait, is
 * thrown. The coordinator's side of an identical resend is in tests/coordinator/upload-idempotent.test.ts. The real-node path (a storage fault in the
 * coordinator, answered UNAVAILABLE, then a stored resend) is in tests/integration/federation-nodes.test.ts.
 */
import * as grpc from '@grpc/grpc-js';
import { uploadWithRetry } from '../../../participant-node/federation/client';

function statusError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), { code, details, metadata: new grpc.Metadata() });
}

/** A `send` that fails with the given errors in order, then acknowledges; records what it sent. */
function sender(failures: grpc.ServiceError[], payload: Uint8Array) {
  const sent: Uint8Array[] = [];
  return {
    sent,
    send: async () => {
      sent.push(payload);
      const f = failures.shift();
      if (f) throw f;
      return { ok: true };
    },
  };
}

describe('uploadWithRetry', () => {
  const payload = new Uint8Array([1, 2, 3]);

  it('sends the same bytes again after each UNAVAILABLE, waiting as told, and returns the acknowledgement', async () => {
    const s = sender([statusError(grpc.status.UNAVAILABLE, 'could not store'), statusError(grpc.status.UNAVAILABLE, 'could not store')], payload);
    const retries: [number, string, number][] = [];
    const t0 = Date.now();
    await expect(uploadWithRetry(s.send, [20, 40, 80], (a, e, w) => retries.push([a, e.details, w]))).resolves.toEqual({ ok: true });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(55);
    expect(retries).toEqual([[1, 'could not store', 20], [2, 'could not store', 40]]);
    expect(s.sent).toHaveLength(3);
    for (const b of s.sent) expect(b).toBe(payload);
  });

  it('also resends after DEADLINE_EXCEEDED and CANCELLED (each can hide a stored input; the coordinator acks an identical resend again)', async () => {
    const s = sender([statusError(grpc.status.DEADLINE_EXCEEDED, 'deadline'), statusError(grpc.status.CANCELLED, 'reset by peer')], payload);
    const retries: [number, grpc.status][] = [];
    await expect(uploadWithRetry(s.send, [1, 1, 1], (a, e) => retries.push([a, e.code]))).resolves.toEqual({ ok: true });
    expect(retries).toEqual([[1, grpc.status.DEADLINE_EXCEEDED], [2, grpc.status.CANCELLED]]);
    expect(s.sent).toHaveLength(3);
    for (const b of s.sent) expect(b).toBe(payload);
  });

  it('throws any other status at once, without a resend', async () => {
    for (const code of [grpc.status.FAILED_PRECONDITION, grpc.status.INVALID_ARGUMENT, grpc.status.UNAUTHENTICATED, grpc.status.ALREADY_EXISTS, grpc.status.PERMISSION_DENIED, grpc.status.INTERNAL]) {
      const s = sender([statusError(code, 'no')], payload);
      const onRetry = jest.fn();
      await expect(uploadWithRetry(s.send, [1, 1], onRetry)).rejects.toMatchObject({ code });
      expect(s.sent).toHaveLength(1);
      expect(onRetry).not.toHaveBeenCalled();
    }
    const plain = sender([new Error('socket gone') as grpc.ServiceError], payload);
    await expect(uploadWithRetry(plain.send, [1], () => undefined)).rejects.toThrow('socket gone');
    expect(plain.sent).toHaveLength(1);
  });

  it('gives up after the last wait with the last UNAVAILABLE', async () => {
    const s = sender([1, 2, 3].map((i) => statusError(grpc.status.UNAVAILABLE, `attempt ${i}`)), payload);
    await expect(uploadWithRetry(s.send, [1, 1], () => undefined)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE, details: 'attempt 3' });
    expect(s.sent).toHaveLength(3);
    const none = sender([statusError(grpc.status.UNAVAILABLE, 'once')], payload);
    await expect(uploadWithRetry(none.send, [], () => undefined)).rejects.toMatchObject({ details: 'once' });
    expect(none.sent).toHaveLength(1);
  });

  it('does not resend once the node is leaving (signal aborted)', async () => {
    const ac = new AbortController();
    ac.abort();
    const s = sender([statusError(grpc.status.UNAVAILABLE, 'x')], payload);
    await expect(uploadWithRetry(s.send, [1, 1], () => undefined, ac.signal)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(s.sent).toHaveLength(1);
    const own = sender([statusError(grpc.status.CANCELLED, 'cancelled on the client')], payload);
    await expect(uploadWithRetry(own.send, [1, 1], () => undefined, ac.signal)).rejects.toMatchObject({ code: grpc.status.CANCELLED });
    expect(own.sent).toHaveLength(1);
  });
});
