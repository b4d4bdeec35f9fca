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
 * inside the kernel's WebAssembly memory and adds a whole sum of masks in one cache-blocked pass
 * (`addMasks`); `addMask` works on any Uint32Array (each block is copied into wasm memory and back).
 *
 * The modular add runs in a WebAssembly SIMD kernel, about 4x faster than the scalar JavaScript
 * loop, which remains the fallback where WebAssembly SIMD is missing or the host is big-endian.
 * Both paths are checked against libsodium's ChaCha20 for every b in
 * tests/shared/crypto/kat.test.ts. Its function kKpP (1 <= K <= 4, 0 <= P <= K) adds the first
 * P of K keystream slots, each BLOCK_BYTES apart, and subtracts the others, in one pass over the
 * accumulator:
 *
 *   (func $kKpP (param $acc i32) (param $ks i32) (param $bytes i32) (param $mask i32)
 *     (local $end i32) (local $m v128)
 *     (local.set $end (i32.add (local.get $acc) (local.get $bytes)))   ;; bytes: a multiple of 32
 *     (local.set $m (i32x4.splat (local.get $mask)))
 *     (block (loop
 *       (br_if 1 (i32.ge_u (local.get $acc) (local.get $end)))
 *       ;; two lanes, at memarg offsets o = 0 and o = 16 (S = BLOCK_BYTES):
 *       (v128.store offset=o (local.get $acc)
 *         (v128.and (local.get $m)
 *           (i32x4.sub                                                ;; slots P..K-1: i32x4.sub
 *             (i32x4.add (i32x4.add (v128.load offset=o (local.get $acc)) ;; slots 0..P-1: i32x4.add
 *                                   (v128.load offset=o (local.get $ks)))
 *                        (v128.load offset=o+S (local.get $ks)))
 *             (v128.load offset=o+(K-1)S (local.get $ks)))))
 *       (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
 *       (local.set $ks (i32.add (local.get $ks) (i32.const 32)))
 *       (br 0))))
 *
 * Memory: [0, 4 * 64K) four keystream slots, then (MaskAccumulator) the accumulator, grown to fit.
 * `addMask` on a JavaScript vector uses slot 0 for the keystream and slot 1 for the vector block,
 * and zeroes both when done.
 *
 * Note: OpenSSL keeps its own copy of the key inside the cipher context, which Node frees when the
 * cipher object is collected; we cannot wipe that copy (callers wipe their seeds).
 */
import { createCipheriv } from 'node:crypto';
import { endianness } from 'node:os';
import { abytes, aint, au32, describe } from '../util/check';

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
    const ks = c.update(ZEROS.subarray(0, n));
    out.set(ks, off);
    ks.fill(0);
  }
  return out;
}

/** Unsigned LEB128 (WebAssembly indices, sizes and memarg offsets). */
function leb(n: number): number[] {
  const o: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    o.push(b);
  } while (n);
  return o;
}

/** Signed LEB128 (i32.const immediates). */
function sleb(n: number): number[] {
  const o: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) return [...o, b];
    o.push(b | 0x80);
  }
}

/** Bytes the kernel handles per loop iteration (2 x v128); callers pass multiples of it. */
const KERNEL_STEP = 32;
/** Words below this count at the end of a block go through the scalar loop. */
const STEP_WORDS = KERNEL_STEP / 4;
/** Keystream slots in the kernel's memory: kKpP adds up to this many per pass. */
const SLOTS = 4;
const SCRATCH_BYTES = SLOTS * BLOCK_BYTES;

/** Assembles the SIMD kernel module (see the module doc for its text form). */
function kernelBytes(): Uint8Array<ArrayBuffer> {
  const section = (id: number, bytes: number[]) => [id, ...leb(bytes.length), ...bytes];
  const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const load = (base: number, off: number) => [...get(base), 0xfd, 0x00, 4, ...leb(off)];
  const ADD = [0xfd, 0xae, 0x01]; // i32x4.add
  const SUB = [0xfd, 0xb1, 0x01]; // i32x4.sub
  // store(acc + off, (load(acc + off) + slot_0 + ... + slot_{p-1} - slot_p - ... - slot_{k-1}) & m)
  const lane = (k: number, p: number, off: number) => {
    const chain: number[] = [];
    for (let j = 0; j < k; j++) chain.push(...load(1, off + j * BLOCK_BYTES), ...(j < p ? ADD : SUB));
    return [...get(0), ...load(0, off), ...chain, ...get(5), 0xfd, 0x4e, 0xfd, 0x0b, 4, ...leb(off)];
  };
  const body = (k: number, p: number) => {
    const code = [
      ...get(0), ...get(2), 0x6a, ...set(4), // end = acc + bytes
      ...get(3), 0xfd, 0x11, ...set(5), // m = i32x4.splat(mask)
      0x02, 0x40, 0x03, 0x40, // block, loop
      ...get(0), ...get(4), 0x4f, 0x0d, 1, // br_if 1 (acc >= end)
      ...lane(k, p, 0), ...lane(k, p, 16),
      ...get(0), 0x41, ...sleb(KERNEL_STEP), 0x6a, ...set(0), // acc += 32
      ...get(1), 0x41, ...sleb(KERNEL_STEP), 0x6a, ...set(1), // ks += 32
      0x0c, 0, 0x0b, 0x0b, 0x0b, // br 0, end loop, end block, end func
    ];
    const b = [2, 1, 0x7f, 1, 0x7b, ...code]; // locals: $end i32 (4), $m v128 (5)
    return [...leb(b.length), ...b];
  };
  const fns: { k: number; p: number }[] = [];
  for (let k = 1; k <= SLOTS; k++) for (let p = 0; p <= k; p++) fns.push({ k, p });
  const pages = SCRATCH_BYTES / 65536 + 1;
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 0]), // type (i32 x4) -> ()
    ...section(3, [fns.length, ...fns.map(() => 0)]), // functions of type 0
    ...section(5, [1, 0, ...leb(pages)]), // memory: the slots and one more page
    ...section(7, [fns.length + 1, ...fns.flatMap((f, i) => [...name(kernelName(f.k, f.p)), 0, i]), ...name('mem'), 2, 0]),
    ...section(10, [fns.length, ...fns.flatMap((f) => body(f.k, f.p))]),
  ]);
}

type KernelFn = (acc: number, ks: number, bytes: number, mask: number) => void;
type KernelName = `k${number}p${number}`;

/** The kernel adding k slots, the first p of them with + and the rest with -. */
function kernelName(k: number, p: number): KernelName {
  return `k${k}p${p}`;
}

type KernelExports = Record<KernelName, KernelFn> & { mem: WebAssembly.Memory };

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

/** The instance `addMask` on JavaScript vectors uses (slot 0: keystream, slot 1: vector block). */
function loadKernel(): KernelExports | null {
  if (!KERNEL_MODULE) return null;
  try {
    return instantiate();
  } catch {
    return null;
  }
}

const KERNEL = loadKernel();
const KERNEL_MEM = KERNEL ? new Uint8Array(KERNEL.mem.buffer) : new Uint8Array(0);

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

/** addScalar over a keystream block `ks` of n words; a word copy made for alignment/endianness is wiped after. */
function addKeystreamScalar(a: Uint32Array, off: number, ks: Uint8Array, n: number, from: number, sign: 1 | -1, mask: number): void {
  const w = words(ks, n);
  addScalar(a, off, w, from, n, sign, mask);
  if (w.buffer !== ks.buffer) w.fill(0);
}

/** a[off + i] <- (a[off + i] + sign * w[i]) & mask for i in [from, to) (scalar; exact mod 2^32 via ToUint32). */
function addScalar(a: Uint32Array, off: number, w: Uint32Array, from: number, to: number, sign: 1 | -1, mask: number): void {
  if (sign === 1) for (let i = from; i < to; i++) a[off + i] = (a[off + i] + w[i]) & mask;
  else for (let i = from; i < to; i++) a[off + i] = (a[off + i] - w[i]) & mask;
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
    let done = 0;
    if (useKernel) {
      const k = KERNEL!;
      const mem = KERNEL_MEM;
      done = n & ~(STEP_WORDS - 1);
      mem.set(ks, 0);
      mem.set(accBytes.subarray(4 * off, 4 * (off + done)), BLOCK_BYTES);
      k[kernelName(1, sign === 1 ? 1 : 0)](BLOCK_BYTES, 0, 4 * done, mask | 0);
      accBytes.set(mem.subarray(BLOCK_BYTES, BLOCK_BYTES + 4 * done), 4 * off);
    }
    // Uint32Array stores wrap mod 2^32 (ToUint32), so the scalar loop is exact modular arithmetic.
    if (done < n) addKeystreamScalar(acc, off, ks, n, done, sign, mask);
    ks.fill(0); // keystream is mask material: wiped, not left to the garbage collector
  }
  if (useKernel) {
    // keystream and vector blocks (mask material) do not outlive the call in the shared instance
    const used = 4 * Math.min(m, blockWords);
    KERNEL_MEM.fill(0, 0, used);
    KERNEL_MEM.fill(0, BLOCK_BYTES, BLOCK_BYTES + used);
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
const WASM_MAX_WORDS = (65536 * 65536 - SCRATCH_BYTES - 65536) / 4;

/** One term of a sum of masks: `sign * PRG(seed)`. */
export interface MaskTerm {
  seed: Uint8Array;
  sign: 1 | -1;
}

function checkTerms(terms: readonly MaskTerm[]): void {
  if (!Array.isArray(terms)) throw new TypeError(`"terms" expected an array of { seed, sign }, got ${describe(terms)}`);
  terms.forEach((t: unknown, i) => {
    if (typeof t !== 'object' || t === null) throw new TypeError(`"terms[${i}]" expected { seed, sign }, got ${describe(t)}`);
    const { seed, sign } = t as MaskTerm;
    abytes(`terms[${i}].seed`, seed, PRG_SEED_LENGTH);
    if (sign !== 1 && sign !== -1) throw new RangeError(`"terms[${i}].sign" expected 1 or -1, got ${String(sign)}`);
  });
}

/**
 * Splits terms into groups of at most SLOTS, positive terms first, so the kernel adds each group
 * in one pass (k{K}p{P}: the first P slots added, the other K - P subtracted): ceil(terms / 4)
 * passes in all. Any split gives the same sum.
 */
function groupTerms(terms: readonly MaskTerm[]): MaskTerm[][] {
  const sorted = [...terms.filter((t) => t.sign === 1), ...terms.filter((t) => t.sign === -1)];
  const groups: MaskTerm[][] = [];
  for (let i = 0; i < sorted.length; i += SLOTS) groups.push(sorted.slice(i, i + SLOTS));
  return groups;
}

/**
 * A vector mod 2^bits that masks and vectors are added into, kept in its own WebAssembly memory
 * (no copy of the vector in and out per mask, unlike `addMask` on a JavaScript array). Used by the
 * client (y_u) and the coordinator (the sum). Falls back to a plain Uint32Array with the scalar
 * path where the kernel is unavailable or the vector exceeds wasm32 memory. Call `wipe()` when the
 * contents are secret.
 *
 * `addMasks` adds a whole sum of masks in one cache-blocked pass. Each term gets one ChaCha20
 * cipher, streamed across blocks, so its keystream is exactly the one `addMask` draws. For each
 * 64 KiB block of the vector it draws that block of every term's keystream, copies them four at a
 * time into the kernel's slots, and adds (or subtracts) the four in one SIMD pass while the vector
 * block is hot in L1/L2. A 1e6-word vector is no longer in cache once keystream generation has run
 * (Node allocates every keystream block afresh and frees them in batches of tens of MB), and
 * fetching it from memory makes an add pass 2-3x slower than with the vector in cache (about 0.3-0.45
 * vs 0.13 ms per 4 MB where this was measured, against about 1.1 ms for the keystream itself); with
 * addMasks the vector travels to the core once per call instead of once per mask.
 * For b < 32 only the last pass over a block reduces mod 2^b, the others add mod 2^32: exact,
 * because 2^b divides 2^32, so reducing once at the end leaves the same residue.
 */
export class MaskAccumulator {
  readonly length: number;
  readonly bits: number;
  private readonly mask: number;
  private readonly view: Uint32Array;
  private readonly bytes: Uint8Array; // the whole wasm memory (slots at 0, vector at SCRATCH_BYTES)
  private readonly kernel: KernelExports | null;

  constructor(length: number, bits = 32, forceJs = false) {
    this.length = aint('length', length, 0, PRG_MAX_WORDS);
    this.bits = abits(bits);
    this.mask = modMask(bits);
    if (KERNEL_MODULE && !forceJs && length <= WASM_MAX_WORDS) {
      const k = instantiate();
      const need = Math.ceil((SCRATCH_BYTES + 4 * length) / 65536);
      const have = k.mem.buffer.byteLength / 65536;
      if (need > have) k.mem.grow(need - have);
      this.kernel = k;
      this.bytes = new Uint8Array(k.mem.buffer);
      this.view = new Uint32Array(k.mem.buffer, SCRATCH_BYTES, length);
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

  /** Overwrites the contents (and the kernel's keystream slots) with zeros. */
  wipe(): void {
    this.view.fill(0);
    if (this.kernel) this.bytes.fill(0, 0, SCRATCH_BYTES);
  }

  /** this <- this + sign * PRG(seed) mod 2^bits (see addMask). */
  addMask(seed: Uint8Array, sign: 1 | -1): void {
    abytes('seed', seed, PRG_SEED_LENGTH);
    if (sign !== 1 && sign !== -1) throw new RangeError(`"sign" expected 1 or -1, got ${String(sign)}`);
    this.addMasks([{ seed, sign }]);
  }

  /**
   * this <- this + sum_j terms[j].sign * PRG(terms[j].seed) mod 2^bits, in one cache-blocked
   * pass (see the class doc); equal to calling addMask for each term, in any order. Every term is
   * checked before the contents change.
   */
  addMasks(terms: readonly MaskTerm[]): void {
    checkTerms(terms);
    if (terms.length === 0) return;
    if (!this.kernel) {
      for (const t of terms) addMask(this.view, t.seed, t.sign, this.bits, true);
      return;
    }
    const k = this.kernel;
    const groups = groupTerms(terms).map((g) => ({
      signs: g.map((t) => t.sign),
      ciphers: g.map((t) => keystreamCipher(t.seed)),
      fn: k[kernelName(g.length, g.filter((t) => t.sign === 1).length)],
    }));
    const last = groups.length - 1;
    const blockWords = BLOCK_BYTES / 4;
    const bytes = this.bytes;
    const a = this.view;
    const mask = this.mask;
    const ks: Uint8Array[] = [];
    for (let off = 0; off < this.length; off += blockWords) {
      const n = Math.min(blockWords, this.length - off);
      const simd = n & ~(STEP_WORDS - 1);
      const zeros = ZEROS.subarray(0, 4 * n);
      for (let g = 0; g <= last; g++) {
        const { signs, ciphers, fn } = groups[g];
        for (let j = 0; j < ciphers.length; j++) {
          ks[j] = ciphers[j].update(zeros);
          bytes.set(ks[j], j * BLOCK_BYTES);
        }
        // mod 2^32 for every pass but the block's last, which reduces mod 2^bits
        const m = g === last ? mask : 0xffffffff;
        fn(SCRATCH_BYTES + 4 * off, 0, 4 * simd, m | 0);
        if (simd < n) for (let j = 0; j < ciphers.length; j++) addKeystreamScalar(a, off, ks[j], n, simd, signs[j], j === ciphers.length - 1 ? m : 0xffffffff);
        // keystream is mask material: wiped, not left to the garbage collector
        for (let j = 0; j < ciphers.length; j++) ks[j].fill(0);
      }
    }
  }

  /** this <- this + v mod 2^bits, for a vector with entries < 2^bits. */
  addVector(v: Uint32Array): void {
    au32('v', v, this.length);
    const a = this.view;
    const mask = this.mask;
    if (!this.kernel) {
      for (let i = 0; i < v.length; i++) a[i] = (a[i] + v[i]) & mask;
      return;
    }
    const k = this.kernel;
    const vb = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const blockWords = BLOCK_BYTES / 4;
    for (let off = 0; off < this.length; off += blockWords) {
      const n = Math.min(blockWords, this.length - off);
      const src = vb.subarray(4 * off, 4 * (off + n));
      this.bytes.set(src, 0);
      const simd = n & ~(STEP_WORDS - 1);
      k.k1p1(SCRATCH_BYTES + 4 * off, 0, 4 * simd, mask | 0);
      if (simd < n) addScalar(a, off, words(src, n), simd, n, 1, mask);
    }
  }
}
