/**
 * Reassembles a chunked client stream (masked inputs, initial models) and checks it as it arrives:
 * each chunk at most `maxChunkBytes` (RESOURCE_EXHAUSTED), indices 0..count-1 in order, no more
 * chunks or bytes than announced, no empty chunk (INVALID_ARGUMENT); at the end, the exact count
 * and size, and the BLAKE2b-256 announced in the signed/authenticated opening message (a chunk
 * altered in flight fails here). Nothing is handed on before `finish()` succeeds.
 */
import { sodium } from '../../shared/crypto/sodium';
import { invalid, resourceExhausted, StatusError } from './errors';

export class ChunkAssembler {
  private readonly parts: Uint8Array[] = [];
  private received = 0;
  private next = 0;
  private readonly state: ReturnType<ReturnType<typeof sodium>['crypto_generichash_init']>;

  constructor(
    private readonly what: string,
    readonly totalBytes: number,
    /** announced number of chunks; null = any number (only the total size is announced) */
    readonly chunkCount: number | null,
    private readonly hash: Uint8Array,
    private readonly maxChunkBytes: number,
    maxTotalBytes: number,
  ) {
    if (!Number.isInteger(totalBytes) || totalBytes < 0) throw invalid(`${what}: total size must be a non-negative integer, got ${totalBytes}`);
    // (a uint64 above 2^53 arrives rounded, but far above any limit: refused as too large, not as malformed)
    if (totalBytes > maxTotalBytes) throw resourceExhausted(`${what}: ${totalBytes} bytes exceed the limit of ${maxTotalBytes}`);
    const minChunks = Math.ceil(totalBytes / maxChunkBytes);
    if (chunkCount !== null && (chunkCount < minChunks || chunkCount > totalBytes)) throw invalid(`${what}: ${chunkCount} chunks cannot carry ${totalBytes} bytes in chunks of 1..${maxChunkBytes} bytes`);
    if (!(hash instanceof Uint8Array) || hash.length !== 32) throw invalid(`${what}: the BLAKE2b-256 hash must be 32 bytes, got ${hash?.length ?? 0}`);
    this.state = sodium().crypto_generichash_init(null, 32);
  }

  add(index: number, data: Uint8Array | undefined): void {
    const d = data ?? new Uint8Array(0);
    if (d.length > this.maxChunkBytes) throw resourceExhausted(`${this.what}: chunk ${index} is ${d.length} bytes, the limit is ${this.maxChunkBytes}`);
    if (d.length === 0) throw invalid(`${this.what}: chunk ${index} is empty`);
    if (index !== this.next) throw invalid(`${this.what}: expected chunk ${this.next}, got chunk ${index}`);
    if (this.chunkCount !== null && this.next >= this.chunkCount) throw invalid(`${this.what}: more than the announced ${this.chunkCount} chunks`);
    if (this.received + d.length > this.totalBytes) throw invalid(`${this.what}: more than the announced ${this.totalBytes} bytes`);
    sodium().crypto_generichash_update(this.state, d);
    this.parts.push(new Uint8Array(d));
    this.received += d.length;
    this.next++;
  }

  get receivedBytes(): number {
    return this.received;
  }

  /** Drops the chunks held so far (the upload failed); the assembler is unusable afterwards. */
  release(): void {
    this.parts.length = 0;
    this.received = 0;
  }

  finish(): Uint8Array {
    if ((this.chunkCount !== null && this.next !== this.chunkCount) || this.received !== this.totalBytes) {
      throw invalid(`${this.what}: got ${this.next} chunks / ${this.received} bytes, announced ${this.chunkCount ?? 'any'} / ${this.totalBytes}`);
    }
    const digest = sodium().crypto_generichash_final(this.state, 32);
    if (Buffer.compare(Buffer.from(digest), Buffer.from(this.hash)) !== 0) {
      throw invalid(`${this.what}: BLAKE2b-256 of the received data does not match the announced hash (data altered in transit?)`);
    }
    const out = new Uint8Array(this.received);
    let o = 0;
    for (const p of this.parts.splice(0)) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

/**
 * Consumes a client stream of chunk messages with an async `onFirst` (authentication, binding) and
 * settles once: rejects at the first failure (the rest of the stream is ignored and the chunks
 * held so far are released), resolves with `onEnd`'s result after the stream completed. An error
 * the source reports as a StatusError settles it with that status.
 */
export function consumeChunkStream<M, R>(
  stream: { subscribe(o: { next(m: M): void; error(e: unknown): void; complete(): void }): unknown },
  handlers: { onFirst(m: M): Promise<ChunkAssembler>; chunk(m: M): { index: number; data: Uint8Array | undefined; hasOpen: boolean }; onEnd(data: Uint8Array): Promise<R> },
  what: string,
): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    let settled = false;
    let asm: ChunkAssembler | null = null;
    let chain: Promise<void> = Promise.resolve();
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      (asm as ChunkAssembler | null)?.release(); // what this stream sent is dropped at once
      reject(e);
    };
    stream.subscribe({
      next: (m) => {
        chain = chain.then(async () => {
          if (settled) return;
          try {
            if (!asm) {
              asm = await handlers.onFirst(m);
              return;
            }
            const c = handlers.chunk(m);
            if (c.hasOpen) throw invalid(`${what}: the opening message may only come first`);
            asm.add(c.index, c.data);
          } catch (e) {
            fail(e);
          }
        });
      },
      error: (e) => {
        // a StatusError is the source's own verdict (an idle stream, a round that moved on): kept as is
        chain = chain.then(() => fail(e instanceof StatusError ? e : invalid(`${what}: stream failed: ${(e as Error)?.message ?? String(e)}`)));
      },
      complete: () => {
        chain = chain.then(async () => {
          if (settled) return;
          try {
            if (!asm) throw invalid(`${what}: empty stream`);
            const r = await handlers.onEnd(asm.finish());
            if (!settled) {
              settled = true;
              resolve(r);
            }
          } catch (e) {
            fail(e);
          }
        });
      },
    });
  });
}
