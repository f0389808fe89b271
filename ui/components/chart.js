//! Charts drawn as SVG with our own code: per-variant exposures and errors
//! of a flag over its metrics window (`GET /api/v1/flags/{key}/metrics`).

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return el;
}

/** Horizontal bars: for each variant, exposures and errors in the window. */
export function variantBars(metrics) {
  const rows = Object.entries(metrics.variants || {}).map(([variant, types]) => ({
    variant,
    exposures: types.exposure ? types.exposure.count : 0,
    errors: types.error ? types.error.count : 0,
  }));
  const max = Math.max(1, ...rows.flatMap((r) => [r.exposures, r.errors]));
  const rowH = 34;
  const width = 520;
  const left = 110;
  const scale = (n) => ((width - left - 60) * n) / max;
  const title = `Exposures and errors per variant over the last ${metrics.window}`;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${rows.length * rowH + 10}`, class: 'chart', role: 'img', 'aria-label': title }, svg('title', null, title));
  rows.forEach((r, i) => {
    const y = i * rowH + 4;
    chart.append(
      svg('text', { x: 0, y: y + 18, class: 'chart-label' }, r.variant),
      svg('rect', { x: left, y, width: scale(r.exposures), height: 12, class: 'chart-exposures' }),
      svg('text', { x: left + scale(r.exposures) + 4, y: y + 10, class: 'chart-value' }, `${r.exposures} exposures`),
      svg('rect', { x: left, y: y + 14, width: scale(r.errors), height: 12, class: 'chart-errors' }),
      svg('text', { x: left + scale(r.errors) + 4, y: y + 24, class: 'chart-value' }, `${r.errors} errors`),
    );
  });
  return rows.length ? chart : document.createTextNode('No events in the window.');
}
