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

function header(tag: number, len: number): Uint8Array {
  const h = new Uint8Array(5);
  h[0] = tag;
  new DataView(h.buffer).setUint32(1, len, true);
  return h;
}

function u64le(v: number): Uint8Array {
  aint('integer field', v, 0);
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, v % 0x100000000, true);
  dv.setUint32(4, Math.floor(v / 0x100000000), true);
  return b;
}

function encodeOne(f: Field, out: Uint8Array[]): void {
  if (f instanceof Uint8Array) {
    out.push(header(0x01, f.length), f);
  } else if (typeof f === 'string') {
    const b = te.encode(f);
    out.push(header(0x02, b.length), b);
  } else if (typeof f === 'number') {
    out.push(header(0x03, 8), u64le(f));
  } else if (Array.isArray(f)) {
    const inner: Uint8Array[] = [];
    const cnt = new Uint8Array(4);
    new DataView(cnt.buffer).setUint32(0, f.length, true);
    inner.push(cnt);
    for (const s of f) {
      if (typeof s !== 'string') throw new TypeError(`list field expected strings, got ${describe(s)}`);
      encodeOne(s, inner);
    }
    const body = concatBytes(...inner);
    out.push(header(0x04, body.length), body);
  } else {
    throw new TypeError(`cannot encode field of type ${describe(f)}`);
  }
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
  const out: Uint8Array[] = [];
  for (const f of fields) encodeOne(f, out);
  return concatBytes(...out);
}
