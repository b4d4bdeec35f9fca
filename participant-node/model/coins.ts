/**
 * Per-user example coins of DP-SGD (model/dpsgd.ts): the random choices that pick a sampled user's
 * positive subset and its negatives.
 *
 * The coins of user u at step t are a keyed PRF of (t, u) and nothing else: BLAKE2b (libsodium
 * crypto_generichash) keyed with a secret 256-bit `ExampleKey`, 64-byte blocks
 *   block_j = BLAKE2b-512(key = K, "fedbridge/dpsgd-coins/v1" || t (u64 LE) || u (u32 LE) || j (u32 LE)),
 * read as little-endian 32-bit words; `nextInt(n)` is rejection sampling over those words. So which
 * examples u gets never depends on which other users exist, were sampled, or how many interactions
 * they have — the property the DP-SGD sensitivity argument needs (a single sequential stream shared
 * by all users would shift with every earlier user).
 *
 * The key is fresh CSPRNG output per training (`ExampleKey.fresh()`), held only in memory: it has no
 * accessor, refuses JSON serialisation and prints as `ExampleKey(secret)`. Tests that need
 * reproducible examples inject one explicitly with `ExampleKey.forTesting(bytes)`; there is no seed
 * that a CLI prints or a model file stores.
 */
import { sodium } from '../../shared/crypto/sodium';

const KEY_BYTES = 32;
const BLOCK_BYTES = 64;
const COINS_TAG = new TextEncoder().encode('fedbridge/dpsgd-coins/v1');
const SUBKEY_TAG = 'fedbridge/dpsgd-subkey/v1\0';

export class ExampleKey {
  readonly #key: Uint8Array;

  private constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) throw new RangeError(`an example key is ${KEY_BYTES} bytes, got ${key instanceof Uint8Array ? key.length : typeof key}`);
    this.#key = Uint8Array.from(key);
  }

  /** A fresh 256-bit key from libsodium's CSPRNG (one per training; never printed or stored). */
  static fresh(): ExampleKey {
    const k = sodium().randombytes_buf(KEY_BYTES);
    try {
      return new ExampleKey(k);
    } finally {
      sodium().memzero(k);
    }
  }

  /** TESTS ONLY: a fixed key, for reproducible examples. Production code calls `fresh()`. */
  static forTesting(key: Uint8Array): ExampleKey {
    return new ExampleKey(key);
  }

  /**
   * An independent key for one context (e.g. one federated round), so that step indices restarting
   * at 0 in each context never reuse coins: BLAKE2b-256 keyed with this key over the label.
   */
  derive(label: string): ExampleKey {
    const s = sodium();
    const k = s.crypto_generichash(KEY_BYTES, SUBKEY_TAG + label, this.#key);
    try {
      return new ExampleKey(k);
    } finally {
      s.memzero(k);
    }
  }

  /** The coins of user `user` at step `step` (a function of the key, step and user only). */
  coins(step: number, user: number): KeyedCoins {
    if (!Number.isSafeInteger(step) || step < 0) throw new RangeError(`"step" expected a non-negative integer, got ${step}`);
    if (!Number.isInteger(user) || user < 0 || user > 0xffffffff) throw new RangeError(`"user" expected an integer in [0, 2^32), got ${user}`);
    return new KeyedCoins(this.#key, step, user);
  }

  toJSON(): never {
    throw new Error('an ExampleKey is secret and is never serialised');
  }

  toString(): string {
    return 'ExampleKey(secret)';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return 'ExampleKey(secret)';
  }
}

/** Uniform draws from the keyed PRF blocks of one (step, user). */
export class KeyedCoins {
  private readonly msg: Uint8Array;
  private readonly view: DataView;
  private block = 0;
  private words: DataView | null = null;
  private pos = BLOCK_BYTES;

  constructor(
    private readonly key: Uint8Array,
    step: number,
    user: number,
  ) {
    const t = COINS_TAG.length;
    this.msg = new Uint8Array(t + 16);
    this.msg.set(COINS_TAG);
    this.view = new DataView(this.msg.buffer);
    this.view.setUint32(t, step % 0x100000000, true);
    this.view.setUint32(t + 4, Math.floor(step / 0x100000000), true);
    this.view.setUint32(t + 8, user, true);
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    if (this.pos === BLOCK_BYTES) {
      if (this.block > 0xffffffff) throw new RangeError('example coins exhausted (2^32 blocks of one user and step)');
      this.view.setUint32(COINS_TAG.length + 12, this.block++, true);
      const b = sodium().crypto_generichash(BLOCK_BYTES, this.msg, this.key);
      this.words = new DataView(b.buffer, b.byteOffset, BLOCK_BYTES);
      this.pos = 0;
    }
    const x = this.words!.getUint32(this.pos, true);
    this.pos += 4;
    return x;
  }

  /** Uniform integer in [0, n), 0 < n <= 2^32, without modulo bias (rejection sampling). */
  nextInt(n: number): number {
    if (!(Number.isInteger(n) && n > 0 && n <= 0x100000000)) throw new RangeError(`"n" expected an integer in (0, 2^32], got ${n}`);
    const limit = Math.floor(0x100000000 / n) * n;
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }
}
