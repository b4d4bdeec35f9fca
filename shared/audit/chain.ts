/**
 * The audit hash chain and its stored/exported form (issue 6; same construction as the first
 * coordinator log, coordinator/audit/log.ts, which now re-exports these functions).
 *
 *   entry(i)     = the RFC 8785 canonical JSON bytes of entry i (UTF-8)
 *   genesis      = 32 zero bytes
 *   prevHash(i)  = chain(i-1)  (genesis for i = 0)
 *   chain(i)     = BLAKE2b-256( "fedbridge/v1/audit-chain" || 0x00 || u64be(i) || prevHash(i) || entry(i) )
 *   signature(i) = Ed25519( "fedbridge/v1/audit-entry" || 0x00 || u64be(i) || prevHash(i) || entry(i) )
 *                  by the coordinator's identity key (pinned in the policy, RFC 8032)
 *   head         = chain(n-1) of the newest entry: what parties countersign in receipts
 *
 * The domain prefixes keep a chain hash from ever being a valid message of another kind. Because
 * chain(i) covers prevHash(i), changing, dropping, inserting or reordering any entry changes every
 * later chain hash, so a party's receipt over a later head no longer matches.
 *
 * Export line (one per entry, JSON Lines): the canonical JSON of
 *   {"entry": <entry>, "idx": i, "prevHash": "<64 hex>", "signature": "<base64 of 64 bytes>"}
 * followed by "\n". Canonical JSON sorts keys, so the line is exactly
 *   '{"entry":' + entry(i) + ',"idx":' + i + ',"prevHash":"' + hex + '","signature":"' + b64 + '"}'
 * i.e. the stored entry bytes appear verbatim, and a line is canonical iff the stored entry is.
 * Any byte that differs (whitespace included) makes the line non-canonical or changes entry(i),
 * prevHash(i) or signature(i) — each detected at entry i.
 */
import { canonicalize } from 'json-canonicalize';
import { ed25519Sign, ed25519Verify } from '../crypto/sign';
import { sodium } from '../crypto/sodium';
import { bytesEqual, concat, fromBase64, fromHex, toBase64, toHex, u64be, utf8, utf8Strict } from './bytes';

const CHAIN_DOMAIN = utf8.encode('fedbridge/v1/audit-chain\0');
const SIGN_DOMAIN = utf8.encode('fedbridge/v1/audit-entry\0');
export const AUDIT_GENESIS: Uint8Array = new Uint8Array(32);

/** chain(i) of the module doc. Requires `await sodiumReady()`. */
export function auditChainHash(idx: number, prevHash: Uint8Array, entry: Uint8Array): Uint8Array {
  return sodium().crypto_generichash(32, concat(CHAIN_DOMAIN, u64be(idx), prevHash, entry), null);
}

/** The message the coordinator signs for entry i. */
export function auditSigningMessage(idx: number, prevHash: Uint8Array, entry: Uint8Array): Uint8Array {
  return concat(SIGN_DOMAIN, u64be(idx), prevHash, entry);
}

export function signAuditEntry(idx: number, prevHash: Uint8Array, entry: Uint8Array, coordinatorSecretKey: Uint8Array): Uint8Array {
  return ed25519Sign(auditSigningMessage(idx, prevHash, entry), coordinatorSecretKey);
}

export function verifyAuditSignature(idx: number, prevHash: Uint8Array, entry: Uint8Array, signature: Uint8Array, coordinatorPublicKey: Uint8Array): boolean {
  return ed25519Verify(signature, auditSigningMessage(idx, prevHash, entry), coordinatorPublicKey);
}

/** RFC 8785 canonical JSON bytes of an entry object (what is stored and chained). */
export function canonicalEntryBytes(entry: Record<string, unknown>): Uint8Array {
  return utf8.encode(canonicalize(entry));
}

/** One stored audit row (the coordinator's table has exactly these columns, plus created_at). */
export interface AuditRecord {
  idx: number;
  prevHash: Uint8Array;
  entry: Uint8Array;
  signature: Uint8Array;
}

/**
 * The export line of a stored row, built from the stored bytes verbatim (never re-encoded), with
 * the trailing "\n". If the stored entry is not canonical JSON the line is not canonical either and
 * verifyLog reports it at this index.
 */
export function exportLine(r: AuditRecord): string {
  const entryText = utf8Strict.decode(r.entry);
  return `{"entry":${entryText},"idx":${r.idx},"prevHash":"${toHex(r.prevHash)}","signature":"${toBase64(r.signature)}"}\n`;
}

export type ParsedLine =
  | { ok: true; record: AuditRecord; entry: Record<string, unknown> }
  | { ok: false; field: string; expected: string; found: string };

function preview(s: string): string {
  return s.length > 60 ? `${JSON.stringify(s.slice(0, 60))}...` : JSON.stringify(s);
}

/**
 * Parses one line (without its "\n") of an exported log and checks that it is byte-for-byte the
 * canonical encoding of what it says. Never throws.
 */
export function parseExportLine(bytes: Uint8Array): ParsedLine {
  let text: string;
  try {
    text = utf8Strict.decode(bytes);
  } catch {
    return { ok: false, field: 'line', expected: 'UTF-8 text', found: 'invalid UTF-8' };
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return { ok: false, field: 'line', expected: 'one JSON object', found: preview(text) };
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return { ok: false, field: 'line', expected: 'one JSON object', found: preview(text) };
  const o = obj as Record<string, unknown>;
  const keys = Object.keys(o).sort().join(',');
  if (keys !== 'entry,idx,prevHash,signature') return { ok: false, field: 'line', expected: 'keys entry, idx, prevHash, signature', found: keys };
  let canonical: string;
  try {
    canonical = canonicalize(o);
  } catch {
    return { ok: false, field: 'line', expected: 'canonical JSON (RFC 8785)', found: 'not encodable' };
  }
  if (canonical !== text) {
    let at = 0;
    while (at < text.length && text[at] === canonical[at]) at++;
    return { ok: false, field: 'encoding', expected: `canonical JSON (RFC 8785): ${preview(canonical.slice(at, at + 24))} at character ${at}`, found: preview(text.slice(at, at + 24)) };
  }
  if (typeof o.entry !== 'object' || o.entry === null || Array.isArray(o.entry)) return { ok: false, field: 'entry', expected: 'a JSON object', found: typeof o.entry };
  if (typeof o.idx !== 'number' || !Number.isSafeInteger(o.idx) || o.idx < 0) return { ok: false, field: 'idx', expected: 'a non-negative integer', found: String(o.idx) };
  let prevHash: Uint8Array;
  let signature: Uint8Array;
  try {
    prevHash = fromHex('prevHash', String(o.prevHash), 32);
  } catch (e) {
    return { ok: false, field: 'prevHash', expected: '32 bytes as 64 lowercase hex characters', found: (e as Error).message };
  }
  try {
    signature = fromBase64('signature', String(o.signature), 64);
  } catch (e) {
    return { ok: false, field: 'signature', expected: '64 bytes as standard base64', found: (e as Error).message };
  }
  const entry = o.entry as Record<string, unknown>;
  return { ok: true, record: { idx: o.idx, prevHash, entry: canonicalEntryBytes(entry), signature }, entry };
}

/** Splits an exported log into its lines (bytes, without "\n"); `final` says whether the data ended with "\n". */
export function splitLines(data: Uint8Array): { lines: Uint8Array[]; endsWithNewline: boolean } {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0x0a) {
      lines.push(data.subarray(start, i));
      start = i + 1;
    }
  }
  const endsWithNewline = start === data.length;
  if (!endsWithNewline) lines.push(data.subarray(start));
  return { lines, endsWithNewline };
}

/** Chain hashes of a sequence of records (no checks): heads[i] = chain(i). */
export function chainHeads(records: readonly AuditRecord[]): Uint8Array[] {
  return records.map((r) => auditChainHash(r.idx, r.prevHash, r.entry));
}

export { bytesEqual };
