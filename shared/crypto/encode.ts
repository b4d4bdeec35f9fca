/**
 * Canonical, unambiguous byte encoding for everything we hash, derive keys from or sign.
 *
 * Every field is written as `tag(1) || length(u32 LE) || bytes`, so no two different field lists
 * encode to the same bytes (prefix-free). Tags: 0x01 bytes, 0x02 UTF-8 string, 0x03 unsigned
 * integer (u64 LE, 8 bytes), 0x04 list of strings (count u32 LE, then each as a string field).
 * Used for KDF contexts (kdf.ts), commitments (hash.ts) and signed protocol messages.
 */
import { aint, describe } from '../util/check';

export type Field = Uint8Array | string | number | readonly string[];

const te = new TextEncoder();

/** Field -> (tag, body bytes); list bodies are encoded recursively. */
function body(f: Field): [number, Uint8Array] {
  if (f instanceof Uint8Array) return [0x01, f];
  if (typeof f === 'string') return [0x02, te.encode(f)];
  if (typeof f === 'number') return [0x03, u64le(f)];
  if (Array.isArray(f)) {
    const parts: Uint8Array[] = [];
    const cnt = new Uint8Array(4);
    new DataView(cnt.buffer).setUint32(0, f.length, true);
    parts.push(cnt);
    for (const s of f) {
      if (typeof s !== 'string') throw new TypeError(`list field expected strings, got ${describe(s)}`);
      parts.push(encodeFields(s));
    }
    return [0x04, concatBytes(...parts)];
  }
  throw new TypeError(`cannot encode field of type ${describe(f)}`);
}

function u64le(v: number): Uint8Array {
  aint('integer field', v, 0);
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, v % 0x100000000, true);
  dv.setUint32(4, Math.floor(v / 0x100000000), true);
  return b;
}

/** Concatenation of byte arrays (one copy). */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** The canonical encoding of a list of fields (see module doc). Injective over field lists. */
export function encodeFields(...fields: Field[]): Uint8Array {
  const bodies = fields.map(body);
  let len = 0;
  for (const [, b] of bodies) len += 5 + b.length;
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  let off = 0;
  for (const [tag, b] of bodies) {
    out[off] = tag;
    dv.setUint32(off + 1, b.length, true);
    out.set(b, off + 5);
    off += 5 + b.length;
  }
  return out;
}
