/**
 * A small, fast, seeded, NON-cryptographic PRNG (xoshiro128**; Blackman & Vigna 2018) for
 * reproducible synthetic data, model initialisation and training-order shuffles.
 *
 * Never use it for keys, masks, seeds, DP noise or DP sampling: those come from libsodium's CSPRNG
 * (shared/crypto/sodium.ts). In training, seed it from the CSPRNG unless reproducibility is asked for.
 */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** Seeds from a 32-bit integer through splitmix32, or from >= 16 bytes. */
  constructor(seed: number | Uint8Array) {
    if (typeof seed === 'number') {
      let x = seed >>> 0;
      const next = () => {
        x = (x + 0x9e3779b9) >>> 0;
        let z = x;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
        return (z ^ (z >>> 16)) >>> 0;
      };
      this.s0 = next();
      this.s1 = next();
      this.s2 = next();
      this.s3 = next();
    } else {
      if (seed.length < 16) throw new RangeError(`"seed" expected at least 16 bytes, got length=${seed.length}`);
      const v = new DataView(seed.buffer, seed.byteOffset, 16);
      this.s0 = v.getUint32(0, true);
      this.s1 = v.getUint32(4, true);
      this.s2 = v.getUint32(8, true);
      this.s3 = v.getUint32(12, true);
    }
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3 >>> 0, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992;
  }

  /** Uniform integer in [0, n), 0 < n <= 2^32, without modulo bias (rejection sampling). */
  nextInt(n: number): number {
    if (!(Number.isInteger(n) && n > 0 && n <= 0x100000000)) throw new RangeError(`"n" expected an integer in (0, 2^32], got ${n}`);
    const limit = Math.floor(0x100000000 / n) * n; // largest multiple of n <= 2^32
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal (Box–Muller). */
  nextGaussian(): number {
    let u = 0;
    while (u === 0) u = this.nextFloat();
    const v = this.nextFloat();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = a[i];
      a[i] = a[j];
      a[j] = tmp;
    }
    return a;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
