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
const BLOCK = 65536;

/**
 * `n` bytes from libsodium's CSPRNG.
 *
 * Up to 256 bytes: `randombytes_buf` directly (the system CSPRNG). Larger requests, which noise and
 * sampling make by the megabyte, are expanded block by block: each 64 KiB block is the ChaCha20
 * keystream of `randombytes_buf_deterministic` under a FRESH 256-bit key drawn from
 * `randombytes_buf` for that block alone and wiped after use. This is the construction of
 * libsodium's own ChaCha20 randombytes implementation; it exists because libsodium-wrappers'
 * randombytes_buf fetches system entropy in tiny pieces in WebAssembly (measured here: ~760 ms for
 * 64 KiB, against ~0.4 ms for the keyed expansion).
 */
export function randomBytes(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`"n" expected a non-negative integer, got ${n}`);
  const s = sodium();
  if (n <= SMALL) return s.randombytes_buf(n);
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += BLOCK) {
    const len = Math.min(BLOCK, n - off);
    const key = s.randombytes_buf(32); // randombytes_SEEDBYTES
    const block = s.randombytes_buf_deterministic(len, key);
    out.set(block, off);
    s.memzero(key);
    s.memzero(block);
  }
  return out;
}
