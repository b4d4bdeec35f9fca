/**
 * InOrder (participant-node/federation/in-order.ts) on a real gRPC server stream over loopback: while
 * the node is busy with one event, a coordinator that streams as fast as flow control lets it gets
 * only a bounded number of messages out; once the node is free again every message arrives, in
 * order, none lost. Without the bound (highWater = Infinity: the node's behaviour before) the same
 * server gets all of them out into the node's memory while the node is still busy.
 */
import { PassThrough } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { InOrder } from '../../../participant-node/federation/in-order';
import { rawParticipantService } from '../../raw-service';

const N = 3000;
const SIZE = 1024;
const RawClient = grpc.makeGenericClientConstructor(rawParticipantService, 'ParticipantService');

/** message i: its index in the first 4 bytes, padded to SIZE */
const message = (i: number) => {
  const b = Buffer.alloc(SIZE, 0x5a);
  b.writeUInt32BE(i, 0);
  return b;
};

describe('InOrder over a real gRPC stream', () => {
  let server: grpc.Server;
  let address: string;
  /** messages the server's current Subscribe call has written (it waits for 'drain' when write says so) */
  let written = 0;

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(rawParticipantService, {
      subscribe: async (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        let cancelled = false;
        call.on('cancelled', () => (cancelled = true));
        written = 0;
        for (let i = 0; i < N && !cancelled; i++) {
          const more = call.write(message(i));
          written = i + 1;
          if (!more) await new Promise((r) => call.once('drain', r));
        }
        call.end();
      },
    } as unknown as grpc.UntypedServiceImplementation);
    const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    address = `127.0.0.1:${port}`;
  });
  afterAll(() => server.forceShutdown());

  /** Resolves once `written` has not changed for `quietMs`. */
  async function settled(quietMs = 600): Promise<number> {
    let last = -1;
    let since = Date.now();
    for (;;) {
      await new Promise((r) => setTimeout(r, 50));
      if (written !== last) {
        last = written;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) return written;
    }
  }

  async function run(highWater: number) {
    const client = new RawClient(address, grpc.credentials.createInsecure()) as unknown as { subscribe(b: Buffer): grpc.ClientReadableStream<Buffer>; close(): void };
    written = 0;
    const call = client.subscribe(Buffer.alloc(0));
    const errors: unknown[] = [];
    const q = new InOrder(call, (e) => errors.push(e), highWater);
    const received: number[] = [];
    let release!: () => void;
    const busy = new Promise<void>((r) => (release = r));
    call.on('data', (m: Buffer) => {
      const i = m.readUInt32BE(0);
      q.push(async () => {
        if (i === 0) await busy; // the node is busy with its first event (a round's training)
        received.push(i);
      });
    });
    const ended = new Promise<void>((res, rej) => {
      call.on('end', () => void q.idle().then(res));
      call.on('error', rej);
    });
    // unbounded: wait until all N wait in the node's queue; bounded: until the sender is held back
    const whileBusy = highWater === Infinity ? await waitFor(() => q.pending === N) : await settled();
    const backlog = q.pending;
    release();
    await ended;
    client.close();
    return { whileBusy, backlog, received, errors };
  }

  async function waitFor(cond: () => boolean): Promise<number> {
    while (!cond()) await new Promise((r) => setTimeout(r, 20));
    return written;
  }

  test('bounded: the sender is held back while the node is busy; then every message, in order', async () => {
    const r = await run(64);
    // the backlog stays at the high-water mark; the rest waits in the stream's small buffer and
    // HTTP/2's flow-control window (64 KiB = 64 messages here), or at the sender
    expect(r.backlog).toBeLessThanOrEqual(64);
    expect(r.whileBusy).toBeLessThan(N / 4);
    expect(r.received).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(r.errors).toEqual([]);
  });

  test('unbounded (the behaviour before): the sender gets every message into the busy node', async () => {
    const r = await run(Infinity);
    expect(r.whileBusy).toBe(N);
    expect(r.backlog).toBe(N);
    expect(r.received).toEqual(Array.from({ length: N }, (_, i) => i));
  });

  test('a task that throws is reported and the next one still runs, in order', async () => {
    const stream = new PassThrough({ objectMode: true });
    const errors: unknown[] = [];
    const q = new InOrder(stream, (e) => errors.push(e), 2);
    const order: number[] = [];
    q.push(async () => {
      order.push(1);
      throw new Error('boom');
    });
    q.push(async () => void order.push(2));
    expect(stream.isPaused()).toBe(true); // two pending at highWater 2
    await q.idle();
    expect(order).toEqual([1, 2]);
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom']);
    expect(stream.isPaused()).toBe(false);
    expect(q.pending).toBe(0);
    expect(() => new InOrder(stream, () => undefined, 1)).toThrow(/highWater must be at least 2/);
  });
});
