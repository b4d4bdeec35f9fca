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

/** `n` bytes from libsodium's CSPRNG (randombytes_buf). */
export function randomBytes(n: number): Uint8Array {
  return sodium().randombytes_buf(n);
}
