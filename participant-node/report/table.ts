/**
 * The demo's results table: rows = party x metric, columns = trainings (local-only, federated,
 * pooled, popularity). Plain fixed-width text; a missing figure prints as "-" (never a guess).
 */

export interface TableRow {
  party: string;
  metric: string;
  /** one value per column, null where that figure does not exist */
  values: (number | null)[];
}

export interface ResultsTable {
  title: string[];
  columns: string[];
  rows: TableRow[];
  /** lines printed under the table (epsilon per party, notes) */
  footer: string[];
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

export function formatNumber(x: number | null, digits = 4): string {
  return x === null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

/** Renders the table; the best model value of a row (not popularity) is marked with '*'. */
export function formatResultsTable(t: ResultsTable, opts: { markBest?: number[] } = {}): string {
  const partyW = Math.max(5, ...t.rows.map((r) => r.party.length)) + 2;
  const metricW = Math.max(6, ...t.rows.map((r) => r.metric.length)) + 2;
  const colW = Math.max(10, ...t.columns.map((c) => c.length + 2));
  const lines: string[] = [...t.title, ''];
  lines.push(pad('party', partyW) + pad('metric', metricW) + t.columns.map((c) => pad(c, colW, true)).join(''));
  lines.push('-'.repeat(partyW + metricW + colW * t.columns.length));
  let last = '';
  for (const r of t.rows) {
    const cand = (opts.markBest ?? []).filter((k) => r.values[k] !== null && Number.isFinite(r.values[k]!));
    const best = cand.length ? Math.max(...cand.map((k) => r.values[k]!)) : null;
    const cells = r.values.map((v, k) => {
      const mark = best !== null && cand.includes(k) && v === best ? '*' : ' ';
      return pad(formatNumber(v) + mark, colW, true);
    });
    lines.push(pad(r.party === last ? '' : r.party, partyW) + pad(r.metric, metricW) + cells.join(''));
    last = r.party;
  }
  if (t.footer.length) lines.push('', ...t.footer);
  return lines.join('\n') + '\n';
}
