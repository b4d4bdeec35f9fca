/**
 * Mask PRG: the ChaCha20 keystream (RFC 8439 §2.4) keyed by a full 256-bit seed, read as
 * little-endian 32-bit words (Bonawitz et al. 2017 §4: PRG(b_u), PRG(s_uv)).
 *
 * Implementation: Node's OpenSSL ChaCha20 (`createCipheriv('chacha20', key, iv)`, where the
 * 16-byte iv is the RFC 8439 block counter (u32 LE) followed by the 96-bit nonce) encrypting
 * zeros, which yields the keystream itself. It is about 3x faster than libsodium's wasm build; a
 * known-answer test checks it against RFC 8439 §2.4.2/A.1 and libsodium-wrappers-sumo.
 *
 * The nonce is fixed to zero and the counter starts at 0: this is safe because every mask seed is
 * used for exactly one keystream (seeds are fresh per round and per pair, see kdf.ts). A 32-bit
 * block counter allows 2^32 * 64 bytes = 256 GiB, i.e. 2^36 words per seed; longer requests are
 * refused.
 *
 * A mask mod 2^b (8 <= b <= 32) takes the low b bits of each word, which is uniform on [0, 2^b)
 * because 2^b divides 2^32. Masks are added into an accumulator in place, one 64 KiB keystream
 * block at a time: no copy of the vector, memory O(block). `MaskAccumulator` keeps the vector
 * inside the kernel's WebAssembly memory, so a mask costs one keystream copy and one SIMD pass;
 * `addMask` works on any Uint32Array (each block is copied into wasm memory and back).
 *
 * The modular add runs in a 181-byte WebAssembly SIMD kernel (i32x4.add / i32x4.sub, then
 * v128.and with the mask; source below), about 4x faster than the scalar JavaScript loop, which
 * remains the fallback where WebAssembly SIMD is missing or the host is big-endian. Both paths are
 * checked against libsodium's ChaCha20 for every b in tests/shared/crypto/kat.test.ts.
 *
 *   (func $add (param $acc i32) (param $ks i32) (param $bytes i32) (param $mask i32)
 *     (block (loop
 *       (br_if 1 (i32.eqz (local.get $bytes)))
 *       (v128.store (local.get $acc)
 *         (v128.and (i32x4.add (v128.load (local.get $acc)) (v128.load (local.get $ks)))
 *                   (i32x4.splat (local.get $mask))))
 *       (local.set $acc (i32.add (local.get $acc) (i32.const 16)))
 *       (local.set $ks (i32.add (local.get $ks) (i32.const 16)))
 *       (local.set $bytes (i32.sub (local.get $bytes) (i32.const 16)))
 *       (br 0))))
 *   $sub: the same with i32x4.sub. Memory: 2 pages; [0, 64K) accumulator block, [64K, 128K) keystream.
 *
 * Note: OpenSSL keeps its own copy of the key inside the cipher context, which Node frees when the
 * cipher object is collected; we cannot wipe that copy (callers wipe their seeds).
 */
import { createCipheriv } from 'node:crypto';
import { endianness } from 'node:os';
import { abytes, aint, au32 } from '../util/check';

export const PRG_SEED_LENGTH = 32;
const BLOCK_BYTES = 1 << 16; // 64 KiB of keystream per update
const ZEROS = new Uint8Array(BLOCK_BYTES);
const LITTLE_ENDIAN = endianness() === 'LE';
/** Most words one seed may produce (2^32 ChaCha20 blocks of 16 words). */
export const PRG_MAX_WORDS = 2 ** 36;

/** Asserts `bits` is an integer in [8, 32]; returns it. */
export function abits(bits: unknown): number {
  return aint('bits', bits, 8, 32);
}

/** The bit mask 2^b - 1 as a 32-bit pattern usable with `&`. */
export function modMask(bits: number): number {
  return 2 ** abits(bits) - 1;
}

/**
 * `length` bytes of the raw ChaCha20 keystream for (key, nonce, initial counter) — RFC 8439
 * §2.4 with plaintext all zeros. For known-answer tests and interop; masks use `addMask`.
 */
export function chacha20Keystream(key: Uint8Array, nonce: Uint8Array, counter: number, length: number): Uint8Array {
  abytes('key', key, 32);
  abytes('nonce', nonce, 12);
  aint('counter', counter, 0, 0xffffffff);
  aint('length', length, 0);
  if (counter + Math.ceil(length / 64) > 2 ** 32) throw new RangeError('"length" exceeds the 32-bit ChaCha20 block counter');
  const iv = new Uint8Array(16);
  new DataView(iv.buffer).setUint32(0, counter, true);
  iv.set(nonce, 4);
  const c = createCipheriv('chacha20', key, iv);
  const out = new Uint8Array(length);
  for (let off = 0; off < length; off += BLOCK_BYTES) {
    const n = Math.min(BLOCK_BYTES, length - off);
    out.set(c.update(ZEROS.subarray(0, n)), off);
  }
  return out;
}

/** Assembles the SIMD kernel module (see the module doc for its text form). */
function kernelBytes(): Uint8Array<ArrayBuffer> {
  const leb = (n: number): number[] => {
    const o: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      o.push(b);
    } while (n);
    return o;
  };
  const section = (id: number, bytes: number[]) => [id, ...leb(bytes.length), ...bytes];
  const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
  const body = (op: number[]) => {
    const code = [
      0x02, 0x40, 0x03, 0x40, // block, loop
      0x20, 2, 0x45, 0x0d, 1, // br_if 1 (bytes == 0)
      0x20, 0, 0x20, 0, 0xfd, 0x00, 4, 0, 0x20, 1, 0xfd, 0x00, 4, 0, // acc, load acc, load ks
      ...op, 0x20, 3, 0xfd, 0x11, 0xfd, 0x4e, 0xfd, 0x0b, 4, 0, // add|sub, splat mask, and, store
      0x20, 0, 0x41, 0x10, 0x6a, 0x21, 0, // acc += 16
      0x20, 1, 0x41, 0x10, 0x6a, 0x21, 1, // ks += 16
      0x20, 2, 0x41, 0x10, 0x6b, 0x21, 2, // bytes -= 16
      0x0c, 0, 0x0b, 0x0b, 0x0b, // br 0, end loop, end block, end func
    ];
    const b = [0, ...code]; // no extra locals
    return [...leb(b.length), ...b];
  };
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 0]), // type (i32 x4) -> ()
    ...section(3, [2, 0, 0]), // two functions of type 0
    ...section(5, [1, 0, 2]), // memory, 2 pages
    ...section(7, [3, ...name('add'), 0, 0, ...name('sub'), 0, 1, ...name('mem'), 2, 0]),
    ...section(10, [2, ...body([0xfd, 0xae, 0x01]), ...body([0xfd, 0xb1, 0x01])]), // i32x4.add, i32x4.sub
  ]);
}

interface Kernel {
  add: (acc: number, ks: number, bytes: number, mask: number) => void;
  sub: (acc: number, ks: number, bytes: number, mask: number) => void;
  mem: Uint8Array;
}

interface KernelExports {
  add: Kernel['add'];
  sub: Kernel['sub'];
  mem: WebAssembly.Memory;
}

function compileKernel(): WebAssembly.Module | null {
  if (!LITTLE_ENDIAN || typeof WebAssembly !== 'object') return null;
  try {
    const bytes = kernelBytes();
    return WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  } catch {
    return null;
  }
}

const KERNEL_MODULE = compileKernel();

function instantiate(): KernelExports {
  return new WebAssembly.Instance(KERNEL_MODULE!, {}).exports as unknown as KernelExports;
}

function loadKernel(): Kernel | null {
  if (!KERNEL_MODULE) return null;
  try {
    const e = instantiate();
    return { add: e.add, sub: e.sub, mem: new Uint8Array(e.mem.buffer) };
  } catch {
    return null;
  }
}

const KERNEL = loadKernel();

/** Which implementation adds masks: 'wasm-simd' or 'js' (for benchmarks and tests). */
export const MASK_KERNEL: 'wasm-simd' | 'js' = KERNEL ? 'wasm-simd' : 'js';

function keystreamCipher(seed: Uint8Array) {
  return createCipheriv('chacha20', seed, new Uint8Array(16));
}

function words(ks: Uint8Array, nWords: number): Uint32Array {
  if (LITTLE_ENDIAN && ks.byteOffset % 4 === 0) return new Uint32Array(ks.buffer, ks.byteOffset, nWords);
  const w = new Uint32Array(nWords);
  const dv = new DataView(ks.buffer, ks.byteOffset, ks.byteLength);
  for (let i = 0; i < nWords; i++) w[i] = dv.getUint32(4 * i, true);
  return w;
}

/**
 * acc[i] <- acc[i] + sign * PRG(seed)[i]  (mod 2^bits), in place, for every i < acc.length.
 * PRG(seed)[i] is keystream word i masked to `bits` bits. `acc` entries are expected in
 * [0, 2^bits); the result is again in [0, 2^bits). `forceJs` selects the scalar fallback (tests).
 */
export function addMask(acc: Uint32Array, seed: Uint8Array, sign: 1 | -1, bits = 32, forceJs = false): void {
  au32('acc', acc);
  abytes('seed', seed, PRG_SEED_LENGTH);
  if (sign !== 1 && sign !== -1) throw new RangeError(`"sign" expected 1 or -1, got ${String(sign)}`);
  const mask = modMask(bits);
  const m = acc.length;
  if (m > PRG_MAX_WORDS) throw new RangeError(`"acc" is longer than ${PRG_MAX_WORDS} words`);
  const c = keystreamCipher(seed);
  const blockWords = BLOCK_BYTES / 4;
  const useKernel = KERNEL !== null && !forceJs;
  const accBytes = new Uint8Array(acc.buffer, acc.byteOffset, acc.byteLength);
  for (let off = 0; off < m; off += blockWords) {
    const n = Math.min(blockWords, m - off);
    const ks = c.update(ZEROS.subarray(0, 4 * n));
    if (useKernel) {
      const k = KERNEL!;
      const simdWords = n & ~3;
      k.mem.set(ks, BLOCK_BYTES);
      k.mem.set(accBytes.subarray(4 * off, 4 * (off + simdWords)), 0);
      (sign === 1 ? k.add : k.sub)(0, BLOCK_BYTES, 4 * simdWords, mask | 0);
      accBytes.set(k.mem.subarray(0, 4 * simdWords), 4 * off);
      if (simdWords === n) continue;
      const w = words(ks, n);
      for (let i = simdWords; i < n; i++) acc[off + i] = (sign === 1 ? acc[off + i] + w[i] : acc[off + i] - w[i]) & mask;
      continue;
    }
    const w = words(ks, n);
    if (bits === 32) {
      // Uint32Array stores wrap mod 2^32 (ToUint32), so plain += / -= is exact modular arithmetic.
      if (sign === 1) for (let i = 0; i < n; i++) acc[off + i] += w[i];
      else for (let i = 0; i < n; i++) acc[off + i] -= w[i];
    } else if (sign === 1) {
      for (let i = 0; i < n; i++) acc[off + i] = (acc[off + i] + w[i]) & mask;
    } else {
      for (let i = 0; i < n; i++) acc[off + i] = (acc[off + i] - w[i]) & mask;
    }
  }
}

/** PRG(seed) as a fresh vector of `length` words mod 2^bits (for tests and small uses). */
export function expandMask(seed: Uint8Array, length: number, bits = 32, forceJs = false): Uint32Array {
  aint('length', length, 0, PRG_MAX_WORDS);
  const out = new Uint32Array(length);
  addMask(out, seed, 1, bits, forceJs);
  return out;
}

/** Most words a MaskAccumulator keeps in WebAssembly memory (4 GiB wasm32 limit, minus scratch). */
const WASM_MAX_WORDS = (65536 * 65536 - 2 * BLOCK_BYTES) / 4;

/**
 * A vector mod 2^bits that masks and vectors are added into, kept in its own WebAssembly memory
 * so each mask costs one keystream copy and one SIMD pass (no copy of the accumulator in and out,
 * unlike `addMask` on a JavaScript array). Used by the client (y_u) and the coordinator (the sum).
 * Falls back to a plain Uint32Array with the scalar path where the kernel is unavailable or the
 * vector exceeds wasm32 memory. Call `wipe()` when the contents are secret.
 */
export class MaskAccumulator {
  readonly length: number;
  readonly bits: number;
  private readonly mask: number;
  private readonly view: Uint32Array;
  private readonly bytes: Uint8Array; // the whole wasm memory (scratch at 0, vector at BLOCK_BYTES)
  private readonly kernel: KernelExports | null;

  constructor(length: number, bits = 32, forceJs = false) {
    this.length = aint('length', length, 0, PRG_MAX_WORDS);
    this.bits = abits(bits);
    this.mask = modMask(bits);
    if (KERNEL_MODULE && !forceJs && length <= WASM_MAX_WORDS) {
      const k = instantiate();
      const need = Math.ceil((BLOCK_BYTES + 4 * length) / 65536);
      const have = k.mem.buffer.byteLength / 65536;
      if (need > have) k.mem.grow(need - have);
      this.kernel = k;
      this.bytes = new Uint8Array(k.mem.buffer);
      this.view = new Uint32Array(k.mem.buffer, BLOCK_BYTES, length);
    } else {
      this.kernel = null;
      this.view = new Uint32Array(length);
      this.bytes = new Uint8Array(this.view.buffer);
    }
  }

  /** Replaces the contents with `x` (entries must be < 2^bits). */
  set(x: Uint32Array): void {
    au32('x', x, this.length);
    this.view.set(x);
  }

  /** A copy of the contents. */
  read(): Uint32Array {
    return this.view.slice();
  }

  /** Overwrites the contents (and the kernel's keystream scratch) with zeros. */
  wipe(): void {
    this.view.fill(0);
    if (this.kernel) this.bytes.fill(0, 0, BLOCK_BYTES);
  }

  /** this <- this + sign * PRG(seed) mod 2^bits (see addMask). */
  addMask(seed: Uint8Array, sign: 1 | -1): void {
    abytes('seed', seed, PRG_SEED_LENGTH);
    if (sign !== 1 && sign !== -1) throw new RangeError(`"sign" expected 1 or -1, got ${String(sign)}`);
    if (!this.kernel) return addMask(this.view, seed, sign, this.bits, true);
    const c = keystreamCipher(seed);
    this.blocks((off, n) => c.update(ZEROS.subarray(0, 4 * n)), sign);
  }

  /** this <- this + v mod 2^bits, for a vector with entries < 2^bits. */
  addVector(v: Uint32Array): void {
    au32('v', v, this.length);
    if (!this.kernel) {
      const a = this.view;
      const mask = this.mask;
      for (let i = 0; i < v.length; i++) a[i] = (a[i] + v[i]) & mask;
      return;
    }
    const vb = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    this.blocks((off, n) => vb.subarray(4 * off, 4 * (off + n)), 1);
  }

  /** Feeds `length` words in blocks: source(off, n) gives n words (as bytes) to add at `off`. */
  private blocks(source: (off: number, n: number) => Uint8Array, sign: 1 | -1): void {
    const k = this.kernel!;
    const fn = sign === 1 ? k.add : k.sub;
    const blockWords = BLOCK_BYTES / 4;
    const mask = this.mask;
    for (let off = 0; off < this.length; off += blockWords) {
      const n = Math.min(blockWords, this.length - off);
      const src = source(off, n);
      this.bytes.set(src, 0);
      const simd = n & ~3;
      fn(BLOCK_BYTES + 4 * off, 0, 4 * simd, mask | 0);
      if (simd === n) continue;
      const w = words(src, n);
      const a = this.view;
      for (let i = simd; i < n; i++) a[off + i] = (sign === 1 ? a[off + i] + w[i] : a[off + i] - w[i]) & mask;
    }
  }
}
