/**
 * The demo's plot: two panels side by side in one self-contained SVG (hand-written, no dependency),
 *   left:  quality (HR@10 on each party's sampled held-out users) of the federated model after each
 *          round, one line per party, with the party's local-only and pooled figures as dashed /
 *          dotted horizontal references;
 *   right: lifetime epsilon of each party after each round (from its privacy ledger), with the
 *          budget as a dashed line.
 * Only points that were measured are drawn; a party with no measured round has no line.
 */

export interface PartySeries {
  party: string;
  /** federated HR@10 after each completed round */
  quality: { round: number; value: number }[];
  /** lifetime epsilon after each charged round */
  epsilon: { round: number; value: number }[];
  localQuality?: number | null;
  pooledQuality?: number | null;
}

export interface DemoPlot {
  title: string;
  rounds: number;
  budget: number | null;
  qualityLabel: string;
  series: PartySeries[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

interface Panel {
  x0: number;
  title: string;
  ymax: number;
  yLabel: string;
}

export function demoPlotSvg(p: DemoPlot): string {
  const W = 960;
  const H = 380;
  const L = 60;
  const R = 20;
  const T = 56;
  const B = 70;
  const panelW = W / 2;
  const pw = panelW - L - R;
  const ph = H - T - B;
  const nR = Math.max(1, p.rounds);
  const qVals = p.series.flatMap((s) => [...s.quality.map((q) => q.value), s.localQuality ?? 0, s.pooledQuality ?? 0]);
  const eVals = p.series.flatMap((s) => s.epsilon.map((e) => e.value));
  const panels: Panel[] = [
    { x0: 0, title: `Federated quality per round (${p.qualityLabel})`, ymax: niceMax(Math.max(0.05, ...qVals) * 1.05), yLabel: 'HR@10' },
    { x0: panelW, title: 'Privacy spent per party (lifetime epsilon)', ymax: niceMax(Math.max(p.budget ?? 0, ...eVals, 1e-9) * 1.05), yLabel: 'epsilon' },
  ];
  const x = (panel: Panel, round: number) => panel.x0 + L + (round / nR) * pw;
  const y = (panel: Panel, v: number) => T + ph - (Math.max(0, v) / panel.ymax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  for (const panel of panels) {
    out.push(`<text x="${panel.x0 + L + pw / 2}" y="${T - 14}" text-anchor="middle" font-size="12">${esc(panel.title)}</text>`);
    out.push(`<line x1="${panel.x0 + L}" y1="${T + ph}" x2="${panel.x0 + L + pw}" y2="${T + ph}" stroke="black"/>`);
    out.push(`<line x1="${panel.x0 + L}" y1="${T}" x2="${panel.x0 + L}" y2="${T + ph}" stroke="black"/>`);
    for (let k = 0; k <= 5; k++) {
      const v = (panel.ymax * k) / 5;
      const yy = y(panel, v).toFixed(1);
      out.push(`<line x1="${panel.x0 + L - 4}" y1="${yy}" x2="${panel.x0 + L + pw}" y2="${yy}" stroke="${k ? '#eee' : 'black'}"/>`);
      out.push(`<text x="${panel.x0 + L - 7}" y="${yy}" text-anchor="end" dominant-baseline="middle">${+v.toPrecision(3)}</text>`);
    }
    const step = Math.max(1, Math.ceil(nR / 10));
    for (let r = 0; r <= nR; r += step) {
      const xx = x(panel, r).toFixed(1);
      out.push(`<line x1="${xx}" y1="${T + ph}" x2="${xx}" y2="${T + ph + 4}" stroke="black"/>`);
      out.push(`<text x="${xx}" y="${T + ph + 16}" text-anchor="middle">${r}</text>`);
    }
    out.push(`<text x="${panel.x0 + L + pw / 2}" y="${T + ph + 32}" text-anchor="middle">round</text>`);
    out.push(`<text x="${panel.x0 + 14}" y="${T + ph / 2}" text-anchor="middle" transform="rotate(-90 ${panel.x0 + 14} ${T + ph / 2})">${esc(panel.yLabel)}</text>`);
  }
  const [qp, ep] = panels;
  const poly = (panel: Panel, pts: { round: number; value: number }[], color: string, extra = '') =>
    pts.length
      ? `<polyline fill="none" stroke="${color}" stroke-width="2"${extra} points="${pts.map((q) => `${x(panel, q.round).toFixed(1)},${y(panel, q.value).toFixed(1)}`).join(' ')}"/>` +
        pts.map((q) => `<circle cx="${x(panel, q.round).toFixed(1)}" cy="${y(panel, q.value).toFixed(1)}" r="2.5" fill="${color}"/>`).join('')
      : '';
  p.series.forEach((s, k) => {
    const c = COLORS[k % COLORS.length];
    out.push(poly(qp, s.quality, c));
    if (s.localQuality !== null && s.localQuality !== undefined && Number.isFinite(s.localQuality)) {
      const yy = y(qp, s.localQuality).toFixed(1);
      out.push(`<line x1="${x(qp, 0)}" y1="${yy}" x2="${x(qp, nR)}" y2="${yy}" stroke="${c}" stroke-dasharray="6 4" stroke-width="1.2"/>`);
    }
    if (s.pooledQuality !== null && s.pooledQuality !== undefined && Number.isFinite(s.pooledQuality)) {
      const yy = y(qp, s.pooledQuality).toFixed(1);
      out.push(`<line x1="${x(qp, 0)}" y1="${yy}" x2="${x(qp, nR)}" y2="${yy}" stroke="${c}" stroke-dasharray="1 3" stroke-width="1.5"/>`);
    }
    out.push(poly(ep, s.epsilon, c));
  });
  if (p.budget !== null && Number.isFinite(p.budget)) {
    const yy = y(ep, p.budget).toFixed(1);
    out.push(`<line x1="${x(ep, 0)}" y1="${yy}" x2="${x(ep, nR)}" y2="${yy}" stroke="black" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${x(ep, nR) - 4}" y="${Number(yy) - 5}" text-anchor="end">budget ${p.budget}</text>`);
  }
  // legend
  const ly = H - 14;
  let lx = 20;
  p.series.forEach((s, k) => {
    const c = COLORS[k % COLORS.length];
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${c}" stroke-width="2"/><text x="${lx + 27}" y="${ly}" dominant-baseline="middle">${esc(s.party)}</text>`);
    lx += 40 + s.party.length * 7;
  });
  out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="gray" stroke-dasharray="6 4"/><text x="${lx + 27}" y="${ly}" dominant-baseline="middle">local-only</text>`);
  lx += 100;
  out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="gray" stroke-dasharray="1 3" stroke-width="1.5"/><text x="${lx + 27}" y="${ly}" dominant-baseline="middle">pooled (ceiling)</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
