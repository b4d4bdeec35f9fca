/**
 * The auditor page (browser): loads an exported audit log, the policy YAML the parties signed and
 * optionally the parties' receipts, runs shared/audit's verifyLog *in the browser*, and shows the
 * verification status, the rounds timeline with the parties of each phase, epsilon per party over
 * rounds (inline SVG), and every failure (entry, field, expected, found).
 *
 * Inputs: query parameters `?log=URL&policy=URL[&policy=URL...][&receipts=URL]` (more than one
 * policy for a log with runs of several: each run is checked against the policy it names; a
 * receipts URL returns a JSON array of receipts), or the file pickers (several policy files), or — when served by the coordinator — the auditor token
 * field, which pages through GET ../audit/v1/log (proto/fedbridge/v1/audit-api.openapi.yaml).
 * Bundled by build.js (esbuild); imports only pure modules (no Node APIs).
 */
import { sodiumReady } from '../../../../shared/crypto/sodium';
import { parsePolicyYaml } from '../../../../shared/policy/schema';
import { verifyLog, type VerifyResult } from '../../../../shared/audit/verify';

const $ = (id: string): HTMLElement => document.getElementById(id)!;

function el(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

const COLOURS = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989'];

/** epsilon of each party after each round (carried forward when a party was not charged). */
function epsilonSeries(r: VerifyResult): { labels: string[]; series: Map<string, number[]> } {
  const parties = Object.keys(r.budgets);
  const series = new Map(parties.map((p) => [p, [] as number[]]));
  const last = new Map(parties.map((p) => [p, 0]));
  const labels: string[] = [];
  for (const s of r.timeline) {
    labels.push(`${s.round}`);
    for (const p of parties) {
      if (s.epsilon[p] !== undefined) last.set(p, s.epsilon[p]);
      series.get(p)!.push(last.get(p)!);
    }
  }
  return { labels, series };
}

function renderChart(r: VerifyResult): void {
  const box = $('chart');
  box.replaceChildren();
  const { labels, series } = epsilonSeries(r);
  if (labels.length === 0) {
    box.append('no rounds');
    return;
  }
  const W = 640;
  const H = 260;
  const L = 48;
  const B = 28;
  const budgetMax = Math.max(...Object.values(r.budgets));
  const yMax = Math.max(budgetMax, ...[...series.values()].flat()) * 1.05 || 1;
  const x = (i: number) => L + (labels.length === 1 ? (W - L - 10) / 2 : (i * (W - L - 10)) / (labels.length - 1));
  const y = (v: number) => H - B - (v / yMax) * (H - B - 10);
  const s = svg('svg', { width: W, height: H + 20 * series.size, viewBox: `0 0 ${W} ${H + 20 * series.size}`, role: 'img', 'aria-label': 'epsilon per party over rounds', id: 'eps-chart' });
  s.append(svg('line', { x1: L, y1: H - B, x2: W - 5, y2: H - B, stroke: '#888' }), svg('line', { x1: L, y1: 5, x2: L, y2: H - B, stroke: '#888' }));
  for (let k = 0; k <= 4; k++) {
    const v = (yMax * k) / 4;
    const t = svg('text', { x: 4, y: y(v) + 4 });
    t.textContent = v.toFixed(2);
    s.append(t);
  }
  labels.forEach((lab, i) => {
    const t = svg('text', { x: x(i) - 4, y: H - B + 14 });
    t.textContent = lab;
    s.append(t);
  });
  let k = 0;
  for (const [party, vals] of series) {
    const c = COLOURS[k % COLOURS.length];
    const budget = r.budgets[party];
    s.append(svg('line', { x1: L, x2: W - 5, y1: y(budget), y2: y(budget), stroke: c, 'stroke-dasharray': '4 3', 'stroke-opacity': 0.6 }));
    s.append(svg('polyline', { points: vals.map((v, i) => `${x(i)},${y(v)}`).join(' '), fill: 'none', stroke: c, 'stroke-width': 2, 'data-party': party }));
    vals.forEach((v, i) => s.append(svg('circle', { cx: x(i), cy: y(v), r: 3, fill: c })));
    const t = svg('text', { x: L, y: H + 14 + 20 * k, fill: c });
    t.textContent = `${party}: epsilon ${vals[vals.length - 1].toFixed(3)} of budget ${budget} (dashed)`;
    s.append(t);
    k++;
  }
  box.append(s);
}

function renderTimeline(r: VerifyResult): void {
  const rows = r.timeline.map((s) =>
    el(
      'tr',
      { class: 'round', 'data-status': s.status },
      el('td', {}, s.runId),
      el('td', { class: 'num' }, String(s.round)),
      el('td', { class: s.status }, s.status + (s.reason ? `: ${s.reason}` : '')),
      el('td', {}, ...(['advertise', 'share', 'mask', 'consistency', 'unmask'] as const).map((ph) => el('div', {}, `${ph}: ${(s.phases[ph] ?? []).join(', ') || '-'}`))),
      el('td', {}, (s.survivors ?? []).join(', ') || '-'),
      el('td', {}, Object.entries(s.epsilon).map(([p, e]) => `${p} ${e.toFixed(3)}`).join(', ') || '-'),
      el('td', {}, s.receipts.join(', ') || '-'),
    ),
  );
  const head = el('tr', {}, ...['run', 'round', 'outcome', 'parties per phase', 'survivors', 'epsilon after', 'receipts'].map((h) => el('th', {}, h)));
  $('timeline').replaceChildren(el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows)));
}

function renderFailures(r: VerifyResult): void {
  if (r.failures.length === 0) {
    $('failures').replaceChildren(el('p', {}, 'none'));
    return;
  }
  const head = el('tr', {}, ...['entry', 'field', 'expected', 'found'].map((h) => el('th', {}, h)));
  const rows = r.failures.map((f) => el('tr', { class: 'failure' }, el('td', { class: 'num' }, String(f.entry)), el('td', {}, el('code', {}, f.field)), el('td', {}, el('code', {}, f.expected)), el('td', {}, el('code', {}, f.found))));
  $('failures').replaceChildren(el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows)));
}

function render(r: VerifyResult): void {
  const st = $('status');
  st.dataset.status = r.ok ? 'verified' : 'failed';
  st.textContent = r.ok
    ? `verified: ${r.entries} entries, ${r.rounds} rounds — every check passed`
    : `NOT verified: ${r.failures.length} failure(s), the first at entry ${r.failures[0].entry} (${r.failures[0].field})`;
  $('summary').replaceChildren(
    el('p', {}, `policy hash `, el('code', { id: 'policy-hash' }, r.policyHash)),
    el('p', {}, `chain head `, el('code', { id: 'chain-head' }, r.head ?? '(empty log)'), ` — compare it with the receipts the parties hold`),
    ...r.warnings.map((w) => el('p', { class: 'muted warning' }, `note: ${w}`)),
  );
  renderChart(r);
  renderTimeline(r);
  renderFailures(r);
}

async function fetchBytes(url: string, token?: string): Promise<Uint8Array> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function fetchFromCoordinator(token: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let from = 0;
  for (;;) {
    const page = await fetchBytes(new URL(`v1/log?from=${from}&limit=1000`, location.href.replace(/[^/]*$/, '')).toString(), token);
    if (page.length === 0) break;
    parts.push(page);
    from += page.reduce((n, b) => n + (b === 0x0a ? 1 : 0), 0);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const fileBytes = async (f: File): Promise<Uint8Array> => new Uint8Array(await f.arrayBuffer());

async function run(input: { log: Uint8Array; policyTexts: string[]; receipts: unknown[] }): Promise<void> {
  await sodiumReady();
  let policies;
  try {
    policies = input.policyTexts.map((t) => parsePolicyYaml(t));
  } catch (e) {
    const st = $('status');
    st.dataset.status = 'failed';
    st.textContent = `NOT verified: the policy is invalid (${(e as Error).message})`;
    return;
  }
  // the first policy is the one reported; a RangeError (policies of two coordinators) is shown as such
  const r = verifyLog(input.log, { policy: policies[0], otherPolicies: policies.slice(1), receipts: input.receipts.map((receipt, i) => ({ source: `receipt ${i + 1}`, receipt })) });
  render(r);
}

function showError(e: unknown): void {
  const st = $('status');
  st.dataset.status = 'failed';
  st.textContent = `NOT verified: ${(e as Error).message}`;
}

async function fromQuery(): Promise<boolean> {
  const q = new URLSearchParams(location.search);
  const log = q.get('log');
  const policyUrls = q.getAll('policy');
  if (!log || !policyUrls.length) return false;
  $('status').textContent = 'verifying…';
  const receiptsUrl = q.get('receipts');
  const [logBytes, policyBytes, receipts] = await Promise.all([
    fetchBytes(log),
    Promise.all(policyUrls.map((u) => fetchBytes(u))),
    receiptsUrl ? fetchBytes(receiptsUrl).then((b) => JSON.parse(new TextDecoder().decode(b)) as unknown[]) : Promise.resolve([]),
  ]);
  await run({ log: logBytes, policyTexts: policyBytes.map((b) => new TextDecoder().decode(b)), receipts });
  return true;
}

async function fromForm(): Promise<void> {
  const logFile = ($('logFile') as HTMLInputElement).files?.[0];
  const policyFiles = Array.from(($('policyFile') as HTMLInputElement).files ?? []);
  const token = ($('token') as HTMLInputElement).value.trim();
  if (!policyFiles.length) throw new Error('choose the policy file the parties signed (several for a log with runs of several policies)');
  const log = logFile ? await fileBytes(logFile) : token ? await fetchFromCoordinator(token) : null;
  if (!log) throw new Error('choose an exported log, or give an auditor token to fetch it');
  const receipts: unknown[] = [];
  for (const f of Array.from(($('receiptFiles') as HTMLInputElement).files ?? [])) {
    try {
      receipts.push(JSON.parse(await f.text()));
    } catch {
      receipts.push(null);
    }
  }
  await run({ log, policyTexts: await Promise.all(policyFiles.map((f) => f.text())), receipts });
}

window.addEventListener('DOMContentLoaded', () => {
  $('verify').addEventListener('click', () => {
    fromForm().catch(showError);
  });
  fromQuery().catch(showError);
});
