/**
 * Free text that crosses a trust boundary (an operator's reason, a token label, anything read from
 * an audit log): the one rule for what it may hold, and how to show it on a terminal.
 *
 * Control characters: C0 (U+0000-U+001F: NUL, ESC, newline ...), DEL (U+007F), C1 (U+0080-U+009F,
 * e.g. the 8-bit CSI U+009B), the line and paragraph separators (U+2028, U+2029) and the bidi
 * marks and embedding/override/isolate controls (U+200E, U+200F, U+202A-U+202E, U+2066-U+2069). Printed raw, they let the
 * text move the cursor, hide what follows (ESC[8m), fake lines or reorder what is displayed.
 */

/** Most characters of a free-text field (a reason, a label) an operator may give (the operator API). */
export const MAX_FREE_TEXT = 200;
/**
 * Most characters of a free-text field in the audit log: the operator's MAX_FREE_TEXT and what the
 * coordinator adds around it (e.g. "operator: " before an abort reason), so nothing an operator
 * gave is cut.
 */
export const MAX_LOGGED_TEXT = 256;

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const CONTROL_ALL = new RegExp(CONTROL.source, 'g');

const codePoint = (c: string): string => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * What is wrong with `text` as a free-text field (at most `max` characters, no control
 * character), as a phrase ("is 3000000 characters long, at most 200", "holds the control character
 * U+001B at position 12"), or null when it is fine. Never repeats the text itself.
 */
export function freeTextProblem(text: string, max = MAX_FREE_TEXT): string | null {
  if (text.length > max) return `is ${text.length} characters long, at most ${max}`;
  const m = CONTROL.exec(text);
  if (m) return `holds the control character ${codePoint(m[0])} at position ${m.index} (no control characters: C0, DEL, C1, line separators, bidi controls)`;
  return null;
}

/**
 * `text` made safe to keep as a free-text field: each control character replaced by a space and
 * the result cut to `max` characters (ending in "..." when cut). For text the coordinator composes
 * itself (e.g. an abort reason quoting an error message), so what it logs passes freeTextProblem.
 */
export function toFreeText(text: string, max = MAX_FREE_TEXT): string {
  const clean = text.replace(CONTROL_ALL, ' ');
  return clean.length <= max ? clean : `${clean.slice(0, max - 3)}...`;
}

/**
 * Untrusted text for a terminal: every control character written as a JSON-style escape
 * (ESC -> \u001b, newline -> \u000a), so nothing in it can act on the terminal or start a line.
 * Everything else is kept as it is.
 */
export function forTerminal(text: string): string {
  return text.replace(CONTROL_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
