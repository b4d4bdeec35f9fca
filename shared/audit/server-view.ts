/**
 * The server view of one round (shared/secagg/unmask.ts) as the coordinator stores and serves it
 * to auditors (policy audit.auditorServerView), and as `audit export --artifacts` writes it:
 *
 *   {"format":"fedbridge-server-view/1",
 *    "maskedInputs":{"<party>":"<base64 of y_u as u32 little-endian>",...},
 *    "selfMaskSeeds":{"<party>":"<base64 of b_u, 32 bytes>",...},
 *    "maskKeys":{"<party>":"<base64 of s_sk_v, 32 bytes>",...}}
 *
 * canonical JSON (RFC 8785). Decoding is strict (unknown fields, bad base64, lengths not a multiple
 * of 4 refused) and never throws: it returns the problem. Whether the content is right is
 * recomputeAggregate's and the replay's business.
 */
import { z } from 'zod';
import { canonicalize } from 'json-canonicalize';
import { fromBase64, toBase64 } from './bytes';
import type { ServerView } from '../secagg/unmask';
import { u32FromLeBytes, u32LeBytes } from '../secagg/messages';

export const SERVER_VIEW_FORMAT = 'fedbridge-server-view/1';

const b64map = z.record(z.string().min(1).max(128), z.string());
const viewSchema = z.object({ format: z.literal(SERVER_VIEW_FORMAT), maskedInputs: b64map, selfMaskSeeds: b64map, maskKeys: b64map }).strict();

export function encodeServerView(view: ServerView): Uint8Array {
  const obj = (m: ReadonlyMap<string, Uint8Array>) => Object.fromEntries([...m].map(([k, b]) => [k, toBase64(b)]));
  const text = canonicalize({
    format: SERVER_VIEW_FORMAT,
    maskedInputs: obj(new Map([...view.maskedInputs].map(([k, v]) => [k, u32LeBytes(v)]))),
    selfMaskSeeds: obj(view.selfMaskSeeds),
    maskKeys: obj(view.maskKeys),
  });
  return new TextEncoder().encode(text);
}

export function decodeServerView(bytes: Uint8Array): { ok: true; view: ServerView } | { ok: false; problem: string } {
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return { ok: false, problem: 'not UTF-8 JSON' };
  }
  const r = viewSchema.safeParse(obj);
  if (!r.success) return { ok: false, problem: r.error.issues.map((i) => `${['view', ...i.path.map(String)].join('.')}: ${i.message}`).join('; ') };
  try {
    const bytesOf = (m: Record<string, string>, what: string) => new Map(Object.entries(m).map(([k, v]) => [k, fromBase64(`${what}.${k}`, v)]));
    const inputs = bytesOf(r.data.maskedInputs, 'maskedInputs');
    const maskedInputs = new Map<string, Uint32Array>();
    for (const [k, b] of inputs) {
      if (b.length % 4 !== 0) return { ok: false, problem: `view.maskedInputs.${k}: ${b.length} bytes is not a whole number of u32 words` };
      maskedInputs.set(k, u32FromLeBytes(b));
    }
    return { ok: true, view: { maskedInputs, selfMaskSeeds: bytesOf(r.data.selfMaskSeeds, 'selfMaskSeeds'), maskKeys: bytesOf(r.data.maskKeys, 'maskKeys') } };
  } catch (e) {
    return { ok: false, problem: `view: ${(e as Error).message}` };
  }
}
