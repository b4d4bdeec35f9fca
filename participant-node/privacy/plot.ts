/**
 * A small self-contained SVG line chart of the lifetime epsilon after each charged round, with the
 * budget as a dashed line. Hand-written SVG (no dependency, no native build).
 */
import type { LedgerSummary } from './ledger';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function epsilonPlotSvg(s: LedgerSummary, title = 'Privacy budget spent'): string {
  const W = 480;
  const H = 300;
  const L = 56;
  const R = 16;
  const T = 36;
  const B = 44;
  const pw = W - L - R;
  const ph = H - T - B;
  const n = s.rounds.length;
  const ymax = niceMax(Math.max(s.budget ?? 0, ...s.rounds.map((r) => r.epsilon), 1e-9) * 1.05);
  const x = (i: number) => L + (n <= 1 ? pw / 2 : (i * pw) / (n - 1));
  const y = (v: number) => T + ph - (v / ymax) * ph;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`);
  // axes and y ticks
  parts.push(`<line x1="${L}" y1="${T + ph}" x2="${L + pw}" y2="${T + ph}" stroke="black"/>`);
  parts.push(`<line x1="${L}" y1="${T}" x2="${L}" y2="${T + ph}" stroke="black"/>`);
  for (let k = 0; k <= 5; k++) {
    const v = (ymax * k) / 5;
    parts.push(`<line x1="${L - 4}" y1="${y(v).toFixed(1)}" x2="${L}" y2="${y(v).toFixed(1)}" stroke="black"/>`);
    parts.push(`<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${+v.toPrecision(3)}</text>`);
  }
  parts.push(`<text x="14" y="${T + ph / 2}" transform="rotate(-90 14 ${T + ph / 2})" text-anchor="middle">epsilon${s.delta !== null ? ` (delta = ${s.delta})` : ''}</text>`);
  parts.push(`<text x="${L + pw / 2}" y="${H - 8}" text-anchor="middle">charged round</text>`);
  if (n > 0) {
    const step = Math.max(1, Math.ceil(n / 10));
    for (let i = 0; i < n; i += step) {
      parts.push(`<text x="${x(i).toFixed(1)}" y="${T + ph + 16}" text-anchor="middle">${s.rounds[i].round}</text>`);
    }
  }
  if (s.budget !== null) {
    parts.push(`<line x1="${L}" y1="${y(s.budget).toFixed(1)}" x2="${L + pw}" y2="${y(s.budget).toFixed(1)}" stroke="#c0392b" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${L + pw - 4}" y="${(y(s.budget) - 5).toFixed(1)}" text-anchor="end" fill="#c0392b">budget ${s.budget}</text>`);
  }
  if (n > 0) {
    const pts = s.rounds.map((r, i) => `${x(i).toFixed(1)},${y(r.epsilon).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="#2c6fbb" stroke-width="2" points="${pts}"/>`);
    s.rounds.forEach((r, i) => parts.push(`<circle cx="${x(i).toFixed(1)}" cy="${y(r.epsilon).toFixed(1)}" r="3" fill="#2c6fbb"><title>round ${r.round}: epsilon ${r.epsilon.toFixed(4)}</title></circle>`));
  } else {
    parts.push(`<text x="${L + pw / 2}" y="${T + ph / 2}" text-anchor="middle" fill="#777">no rounds charged yet</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
