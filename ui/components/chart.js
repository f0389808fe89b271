//! A flag's exposures and errors per variant over time, drawn as SVG by our
//! own code from GET /api/v1/flags/{key}/metrics/series, with a marker at
//! each change from the flag's history.

const NS = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs, text) => {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
};

/** `series`: the endpoint's body; `changes`: history records (`at`, `action`). */
export function lineChart(series, changes = []) {
  const W = 560, H = 180, L = 36, B = 20;
  const from = Date.parse(series.from) / 1000;
  const to = Date.now() / 1000;
  const lines = new Map();
  for (const p of series.points) {
    if (p.event_type !== 'exposure' && p.event_type !== 'error') continue;
    const k = `${p.variant} ${p.event_type}s`;
    if (!lines.has(k)) lines.set(k, []);
    lines.get(k).push(p);
  }
  const max = Math.max(1, ...series.points.map((p) => p.count));
  const x = (t) => L + ((W - L - 4) * (t - from)) / Math.max(1, to - from);
  const y = (n) => H - B - ((H - B - 8) * n) / max;
  const title = `Exposures and errors per variant, last ${series.window}`;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H + 16 * lines.size}`, class: 'chart', role: 'img', 'aria-label': title });
  chart.append(svg('title', {}, title), svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'chart-axis' }), svg('text', { x: 0, y: 14, class: 'chart-value' }, String(max)));
  for (const c of changes) {
    const t = Date.parse(c.at) / 1000;
    if (t < from) continue;
    const m = svg('line', { x1: x(t), y1: 4, x2: x(t), y2: H - B, class: 'chart-marker' });
    m.append(svg('title', {}, `${c.action} by ${c.actor} at ${c.at}`));
    chart.append(m);
  }
  let i = 0;
  for (const [k, pts] of lines) {
    const cls = `chart-line chart-${k.endsWith('errors') ? 'errors' : 'exposures'} chart-v${i % 4}`;
    chart.append(svg('polyline', { points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.count).toFixed(1)}`).join(' '), class: cls }));
    chart.append(svg('text', { x: L, y: H + 12 + 16 * i, class: `chart-value ${cls}` }, `— ${k}`));
    i += 1;
  }
  return chart;
}
