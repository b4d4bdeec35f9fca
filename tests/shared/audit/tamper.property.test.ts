/**
 * Issue 6 "Done means": any single-byte change (whitespace included), entry deletion, reordering or
 * insertion anywhere in an exported log — and truncation of its tail, given the parties' receipts —
 * makes verify fail, and the first failure names the right entry: the first line at which the
 * tampered file differs from the original.
 */
import fc from 'fast-check';
import { sodiumReady } from '../../../shared/crypto/sodium';
import { verifyLog, type VerifyResult } from '../../../shared/audit';
import { makeFederation, generateLog, type Federation, type GeneratedLog } from './fixture';

let fed: Federation;
let log: GeneratedLog;
let lines: string[]; // without "\n"
const enc = new TextEncoder();

beforeAll(async () => {
  await sodiumReady();
  fed = await makeFederation();
  log = generateLog(fed, [{}, { drop: [{ party: 'insurer2', phase: 'consistency' }] }, { abortAfter: 'mask' }, {}]);
  lines = log.text.split('\n').slice(0, -1);
});

const verify = (bytes: Uint8Array): VerifyResult =>
  verifyLog(bytes, { policy: fed.policy, receipts: log.receipts.map((r, i) => ({ source: `receipt-${i}.json`, receipt: r })) });

/** first line index at which `b` differs from the original (lists of "\n"-terminated lines; an unterminated rest differs from any line) */
function firstDiff(b: Uint8Array): number {
  const got = Buffer.from(b).toString('latin1').split('\n');
  const rest = got.pop()!;
  if (rest.length) got.push('\u0000unterminated:' + rest);
  const want = lines.map((l) => Buffer.from(enc.encode(l)).toString('latin1'));
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  return i;
}

const join = (ls: string[]) => enc.encode(ls.map((l) => l + '\n').join(''));
const runs = { numRuns: 40 };

test('the untouched log verifies (with every party receipt)', () => {
  const r = verify(log.bytes);
  expect(r.failures).toEqual([]);
  expect(r.entries).toBe(lines.length);
});

test('any single-byte change fails at the line holding that byte', () => {
  fc.assert(
    fc.property(fc.nat({ max: log.bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.constantFrom(0x20, 0x0a, 0x09, 0x0d, -1), (pos, delta, ws) => {
      const b = new Uint8Array(log.bytes);
      // half of the cases: a whitespace byte (space, newline, tab, CR) instead of a random one
      b[pos] = ws >= 0 && ws !== b[pos] && delta % 2 === 0 ? ws : (b[pos] + delta) & 0xff;
      const line = log.bytes.subarray(0, pos).reduce((n, x) => n + (x === 0x0a ? 1 : 0), 0);
      const r = verify(b);
      expect(r.ok).toBe(false);
      expect(r.failures[0].entry).toBe(line);
      expect(firstDiff(b)).toBe(line);
    }),
    { numRuns: 100 },
  );
});

test('inserting a byte (whitespace included) anywhere fails at that line', () => {
  fc.assert(
    fc.property(fc.nat({ max: log.bytes.length }), fc.constantFrom(0x20, 0x0a, 0x09, 0x0d, 0x7b, 0x30), (pos, byte) => {
      const b = new Uint8Array(log.bytes.length + 1);
      b.set(log.bytes.subarray(0, pos), 0);
      b[pos] = byte;
      b.set(log.bytes.subarray(pos), pos + 1);
      const r = verify(b);
      expect(r.ok).toBe(false);
      expect(r.failures[0].entry).toBe(firstDiff(b));
    }),
    runs,
  );
});

test('deleting any entry fails at its index', () => {
  fc.assert(
    fc.property(fc.nat({ max: lines.length - 1 }), (k) => {
      const r = verify(join(lines.filter((_, i) => i !== k)));
      expect(r.ok).toBe(false);
      expect(r.failures[0].entry).toBe(k);
    }),
    runs,
  );
});

test('moving any entry elsewhere fails at the first moved position', () => {
  fc.assert(
    fc.property(fc.nat({ max: lines.length - 1 }), fc.nat({ max: lines.length - 1 }), (from, to) => {
      fc.pre(from !== to);
      const ls = [...lines];
      const [x] = ls.splice(from, 1);
      ls.splice(to, 0, x);
      const r = verify(join(ls));
      expect(r.ok).toBe(false);
      expect(r.failures[0].entry).toBe(Math.min(from, to));
    }),
    runs,
  );
});

test('inserting an entry (a copy of another, a forged line or junk) anywhere fails at the first differing line', () => {
  fc.assert(
    fc.property(fc.nat({ max: lines.length }), fc.nat({ max: lines.length - 1 }), fc.constantFrom('copy', 'junk', 'empty', 'resigned'), (at, src, kind) => {
      let line: string;
      if (kind === 'copy') line = lines[src];
      else if (kind === 'junk') line = '{"entry":{},"idx":0}';
      else if (kind === 'empty') line = '';
      else {
        // a line with the right index and prevHash but signed by someone else than the coordinator
        const o = JSON.parse(lines[src]);
        o.idx = at;
        line = JSON.stringify({ entry: { ...o.entry, idx: at }, idx: at, prevHash: o.prevHash, signature: o.signature });
      }
      const ls = [...lines];
      ls.splice(at, 0, line);
      const b = join(ls);
      const r = verify(b);
      expect(r.ok).toBe(false);
      expect(r.failures[0].entry).toBe(firstDiff(b));
      expect(firstDiff(b)).toBeGreaterThanOrEqual(at);
    }),
    runs,
  );
});

test('truncating the tail anywhere fails at the first missing entry, given the parties\' receipts', () => {
  for (let k = 0; k < lines.length; k++) {
    const r = verify(join(lines.slice(0, k)));
    expect(r.ok).toBe(false);
    expect(r.failures[0].entry).toBe(k);
  }
  // without the parties' receipts a truncated log is indistinguishable from a shorter history
  const alone = verifyLog(join(lines.slice(0, lines.length - 1)), { policy: fed.policy });
  expect(alone.failures).toEqual([]);
});
