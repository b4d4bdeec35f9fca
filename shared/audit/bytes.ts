/**
 * Byte helpers for the audit format that run unchanged in Node and in a browser bundle (no
 * Buffer): hex, standard base64 with padding (RFC 4648 §4, the encoding of keys in the policy),
 * big-endian u64, concatenation, constant-time-free equality (all compared values are public).
 */
import { sodium } from '../crypto/sodium';

export function toHex(b: Uint8Array): string {
  return sodium().to_hex(b);
}

/** Strict: 2n lowercase hex characters, else RangeError naming `name`. */
export function fromHex(name: string, s: string, length?: number): Uint8Array {
  if (typeof s !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(s)) throw new RangeError(`"${name}" expected lowercase hex, got ${JSON.stringify(String(s).slice(0, 20))}`);
  if (length !== undefined && s.length !== 2 * length) throw new RangeError(`"${name}" expected ${length} bytes of hex, got ${s.length / 2}`);
  return sodium().from_hex(s);
}

export function toBase64(b: Uint8Array): string {
  const s = sodium();
  return s.to_base64(b, s.base64_variants.ORIGINAL);
}

/** Strict standard base64 with padding; re-encoding must give the same text (no alternative spellings). */
export function fromBase64(name: string, s: string, length?: number): Uint8Array {
  const so = sodium();
  let out: Uint8Array;
  try {
    if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new Error('alphabet');
    out = so.from_base64(s, so.base64_variants.ORIGINAL);
  } catch {
    throw new RangeError(`"${name}" expected standard base64, got ${JSON.stringify(String(s).slice(0, 20))}`);
  }
  if (toBase64(out) !== s) throw new RangeError(`"${name}" is not the canonical base64 of its bytes`);
  if (length !== undefined && out.length !== length) throw new RangeError(`"${name}" expected ${length} bytes, got ${out.length}`);
  return out;
}

export function u64be(i: number): Uint8Array {
  if (!Number.isSafeInteger(i) || i < 0) throw new RangeError(`"idx" expected a non-negative safe integer, got ${i}`);
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, Math.floor(i / 0x100000000));
  dv.setUint32(4, i % 0x100000000);
  return b;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export const utf8 = new TextEncoder();
/** Fatal UTF-8 decoder: invalid byte sequences throw instead of becoming U+FFFD. */
export const utf8Strict = new TextDecoder('utf-8', { fatal: true });
