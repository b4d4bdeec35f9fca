/**
 * Random bit sources for the exact samplers (discrete Laplace / discrete Gaussian / Bernoulli).
 *
 * The samplers consume *bits*, never floating-point uniforms: every decision they take is a
 * comparison of uniformly random bits with an exact rational, so the output distribution is
 * exactly the one stated (Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for Differential
 * Privacy", §5), given a perfect bit source.
 *
 * - `CsprngBitSource` (the default, and the only one product code uses) draws 256 KiB at a time from
 *   libsodium's CSPRNG (`csprngBytes` below) and hands out 32-bit words and single bits from it.
 *   Batching matters: one wasm call per 64k words instead of one per sample.
 * - `ScriptedBitSource` replays a fixed bit string and throws `BitsExhausted` when the sampler wants
 *   more; the exactness tests enumerate every bit string to compute output probabilities exactly.
 *
 * Nothing here touches the JS engine's non-cryptographic RNG.
 */
import { aint } from '../util/check';
import { randomBytes } from '../crypto/sodium';

/**
 * `n` bytes from libsodium's CSPRNG (shared/crypto/sodium.ts `randomBytes`: a fresh 256-bit key from
 * `randombytes_buf` expanded with ChaCha20 by `randombytes_buf_deterministic`; libsodium-wrappers'
 * plain randombytes_buf runs at ~120 KB/s in wasm). Requires `await sodiumReady()`.
 */
export function csprngBytes(n: number): Uint8Array {
  aint('n', n, 0, 2 ** 30);
  return randomBytes(n);
}

export interface BitSource {
  /** One uniformly random bit (0 or 1). */
  bit(): number;
  /** `k` uniformly random bits as an unsigned integer, 1 <= k <= 32. */
  bits(k: number): number;
  /** A uniformly random integer in [0, n), for 1 <= n <= 2^52 (rejection sampling, exact). */
  uniform(n: number): number;
}

/** Number of bits needed to write `v` (v >= 0, v < 2^53): bitLength(0) = 0, bitLength(1) = 1. */
export function bitLength(v: number): number {
  if (v < 4294967296) return 32 - Math.clz32(v);
  return 32 + (32 - Math.clz32(Math.floor(v / 4294967296)));
}

const TWO32 = 4294967296;
const TWO52 = 4503599627370496;

/**
 * Shared implementation of `bits` / `uniform` on top of a 32-bit word supplier. Subclasses provide
 * `nextWord()`. Kept as one concrete class per source so call sites in hot loops stay monomorphic.
 */
abstract class WordBitSource implements BitSource {
  private word = 0;
  private nbits = 0;

  protected abstract nextWord(): number;

  bit(): number {
    if (this.nbits === 0) {
      this.word = this.nextWord();
      this.nbits = 32;
    }
    const b = this.word & 1;
    this.word >>>= 1;
    this.nbits--;
    return b;
  }

  bits(k: number): number {
    if (k < 32 && this.nbits >= k) {
      const out = this.word & ((1 << k) - 1);
      this.word >>>= k;
      this.nbits -= k;
      return out;
    }
    if (k === 32 && this.nbits === 0) return this.nextWord();
    let out = 0;
    let have = 0;
    while (have < k) {
      if (this.nbits === 0) {
        this.word = this.nextWord();
        this.nbits = 32;
      }
      const take = Math.min(k - have, this.nbits);
      const chunk = take === 32 ? this.word : this.word & ((1 << take) - 1);
      out += (chunk >>> 0) * 2 ** have;
      this.word = take === 32 ? 0 : this.word >>> take;
      this.nbits -= take;
      have += take;
    }
    return out;
  }

  uniform(n: number): number {
    if (!(n >= 1 && n <= TWO52 && Number.isInteger(n))) throw new RangeError(`"n" expected an integer in [1, 2^52], got ${n}`);
    if (n === 1) return 0;
    const k = bitLength(n - 1);
    for (;;) {
      let v: number;
      if (k <= 32) v = this.bits(k);
      else v = this.bits(k - 32) * TWO32 + this.bits(32);
      if (v < n) return v;
    }
  }
}

/** Bits from libsodium's CSPRNG (`csprngBytes`), fetched in batches of `batchBytes` (default 256 KiB). */
export class CsprngBitSource extends WordBitSource {
  private buf: Uint32Array = new Uint32Array(0);
  private pos = 0;
  private readonly batchWords: number;

  /** Requires `await sodiumReady()` to have run (shared/crypto/sodium.ts). */
  constructor(batchBytes = 262144) {
    super();
    aint('batchBytes', batchBytes, 4, 1 << 26);
    this.batchWords = batchBytes >>> 2;
  }

  protected nextWord(): number {
    if (this.pos === this.buf.length) {
      this.buf.fill(0); // used random bits determine secret noise: wipe them
      const bytes = csprngBytes(this.batchWords * 4);
      this.buf = new Uint32Array(bytes.buffer, bytes.byteOffset, this.batchWords);
      this.pos = 0;
    }
    return this.buf[this.pos++];
  }
}

/** Thrown by ScriptedBitSource when the script has no bits left. */
export class BitsExhausted extends Error {
  constructor() {
    super('scripted bit source exhausted');
    this.name = 'BitsExhausted';
  }
}

/**
 * Replays a fixed sequence of bits (for tests). Bits are consumed in order, one at a time, so a
 * test knows exactly how many bits a sampler read (`consumed`).
 */
export class ScriptedBitSource implements BitSource {
  private pos = 0;
  constructor(private readonly script: ArrayLike<number>) {
    for (let i = 0; i < script.length; i++) {
      if (script[i] !== 0 && script[i] !== 1) throw new RangeError(`"script" expected bits (0/1), got ${script[i]} at index ${i}`);
    }
  }

  get consumed(): number {
    return this.pos;
  }

  bit(): number {
    if (this.pos >= this.script.length) throw new BitsExhausted();
    return this.script[this.pos++];
  }

  bits(k: number): number {
    let out = 0;
    for (let i = 0; i < k; i++) out = out * 2 + this.bit();
    return out;
  }

  uniform(n: number): number {
    if (!(n >= 1 && n <= TWO52 && Number.isInteger(n))) throw new RangeError(`"n" expected an integer in [1, 2^52], got ${n}`);
    if (n === 1) return 0;
    const k = bitLength(n - 1);
    for (;;) {
      const v = this.bits(k);
      if (v < n) return v;
    }
  }
}
