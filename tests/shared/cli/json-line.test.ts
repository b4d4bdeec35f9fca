/**
 * `--json` output (printJson / jsonLine, shared/cli/errors.ts): one line that reads back as exactly
 * the object printed, with no control character raw in it, though the object's strings hold text
 * from an untrusted source (an audit log's reasons and labels).
 */
import { jsonLine } from '../../../shared/cli/errors';

const CONTROLS = ['\u0000', '\u0007', '\n', '\r', '\u001b', '\u007f', '\u0085', '\u009b', '\u2028', '\u2029', '\u200e', '\u200f', '\u202e', '\u2066', '\u2069'];
const RAW = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

test('every control character is escaped, and the line parses back to the same object', () => {
  const obj = { reason: `operator: ${CONTROLS.join('x')}[31m fake\\ "q"`, nested: [{ label: '\u009b2J\u007f' }], n: 3, keep: 'Größe € 保険 🙂' };
  const line = jsonLine(obj);
  expect(line).not.toMatch(RAW);
  expect(line).toContain('\\u009b');
  expect(line).toContain('\\u007f');
  expect(line).toContain('Größe € 保険 🙂');
  expect(JSON.parse(line)).toEqual(obj);
});

test('plain objects print as JSON.stringify prints them', () => {
  const obj = { ok: true, entries: 107, failures: [], path: 'C:\\audit\\log.jsonl' };
  expect(jsonLine(obj)).toBe(JSON.stringify(obj));
});
