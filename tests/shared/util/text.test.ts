/**
 * shared/util/text.ts: the free-text rule (at most 200 characters, no control characters) and how
 * untrusted text is shown on a terminal (control characters as \uXXXX escapes, nothing else changed).
 */
import { forTerminal, freeTextProblem, MAX_FREE_TEXT, toFreeText } from '../../../shared/util/text';

const CONTROLS = ['\u0000', '\u0007', '\n', '\r', '\u001b', '\u007f', '\u0085', '\u009b', '\u2028', '\u2029', '\u200e', '\u200f', '\u202e', '\u2066', '\u2069'];

test('forTerminal escapes every control character (C0, DEL, C1, separators, bidi) and keeps the rest', () => {
  expect(forTerminal('operator)\n  verified: every check passed\n\u001b[8m')).toBe('operator)\\u000a  verified: every check passed\\u000a\\u001b[8m');
  for (const c of CONTROLS) {
    const out = forTerminal(`a${c}b`);
    expect(out).toBe(`a\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}b`);
    expect(out).not.toContain(c);
  }
  // printable text, other scripts and emoji are kept as they are
  expect(forTerminal('Größe 5 € — 保険 🙂 \\ "q"')).toBe('Größe 5 € — 保険 🙂 \\ "q"');
});

test('freeTextProblem: length and control characters, never quoting the text', () => {
  expect(freeTextProblem('operator stop')).toBeNull();
  expect(freeTextProblem('x'.repeat(MAX_FREE_TEXT))).toBeNull();
  expect(freeTextProblem('x'.repeat(MAX_FREE_TEXT + 1))).toBe('is 201 characters long, at most 200');
  expect(freeTextProblem('stop\u001b[8m')).toBe('holds the control character U+001B at position 4 (no control characters: C0, DEL, C1, line separators, bidi controls)');
  for (const c of CONTROLS) expect(freeTextProblem(`a${c}`)).toMatch(/^holds the control character U\+[0-9A-F]{4} at position 1 /);
});

test('toFreeText makes any text pass the rule: controls become spaces, long text is cut with "..."', () => {
  expect(toFreeText('storage failed:\nSQLITE_BUSY\u001b')).toBe('storage failed: SQLITE_BUSY ');
  const long = toFreeText(`e${'\n'.repeat(10)}${'y'.repeat(5000)}`);
  expect(long).toHaveLength(MAX_FREE_TEXT);
  expect(long.endsWith('...')).toBe(true);
  for (const s of [long, toFreeText(CONTROLS.join('')), toFreeText('fine')]) expect(freeTextProblem(s)).toBeNull();
});
