/**
 * libsodium-wrappers loader. libsodium is WebAssembly and must be initialised once before use;
 * every crypto module awaits `sodiumReady()` (cheap after the first call) or calls `sodium()`
 * after it, which throws if the library was not initialised yet.
 */
import _sodium from 'libsodium-wrappers';

let ready = false;

export async function sodiumReady(): Promise<typeof _sodium> {
  if (!ready) {
    await _sodium.ready;
    ready = true;
  }
  return _sodium;
}

/** The initialised libsodium; throws if `sodiumReady()` was never awaited. */
export function sodium(): typeof _sodium {
  if (!ready) throw new Error('libsodium is not initialised: await sodiumReady() first');
  return _sodium;
}

const SMALL = 256;
const MAX_EXPANSION = 2 ** 30;

/**
 * `n` bytes from libsodium's CSPRNG.
 *
 * Up to 256 bytes: `randombytes_buf` directly (the system CSPRNG). Larger requests, which noise and
 * sampling make by the megabyte, are the ChaCha20 keystream of `randombytes_buf_deterministic` under
 * a FRESH 256-bit key drawn from `randombytes_buf` for this request alone and wiped after use (one key
 * per GiB at most). This is the construction of libsodium's own ChaCha20 randombytes implementation;
 * it exists because libsodium-wrappers' randombytes_buf fetches system entropy in tiny pieces in
 * WebAssembly (measured here: ~120 KB/s, against ~120 MB/s for the keyed expansion).
 */
export function randomBytes(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`"n" expected a non-negative integer, got ${n}`);
  const s = sodium();
  if (n <= SMALL) return s.randombytes_buf(n);
  const out = n <= MAX_EXPANSION ? null : new Uint8Array(n);
  if (!out) {
    const key = s.randombytes_buf(32); // randombytes_SEEDBYTES
    try {
      return s.randombytes_buf_deterministic(n, key);
    } finally {
      s.memzero(key);
    }
  }
  for (let off = 0; off < n; off += MAX_EXPANSION) {
    const key = s.randombytes_buf(32);
    const block = s.randombytes_buf_deterministic(Math.min(MAX_EXPANSION, n - off), key);
    out.set(block, off);
    s.memzero(key);
    s.memzero(block);
  }
  return out;
}
