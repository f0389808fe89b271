//! Anomalies (`/ui/anomalies?resolved=&flag=`): what the detector opened,
//! each with its decision record and the flag's exposures and errors over
//! the last hour (SVG, with its changes marked), and "resolve" for developers.

import { h, replace, append, fmtTime, pretty } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';
import { decisionText } from '../components/detector-banner.js';
import { lineChart } from '../components/chart.js';

export async function render(root, ctx) {
  const { api } = ctx;
  const resolved = ctx.query.resolved === 'true' ? 'true' : 'false';
  const flag = ctx.query.flag || '';
  const list = h('div', { 'aria-live': 'polite' });
  const filter = h('select', { id: 'an-resolved', onchange: () => ctx.navigate(`/ui/anomalies?resolved=${filter.value}${flag ? `&flag=${seg(flag)}` : ''}`, { replace: true }) },
    h('option', { value: 'false', selected: resolved === 'false' }, 'Open'), h('option', { value: 'true', selected: resolved === 'true' }, 'Resolved'));

  async function resolve(a) {
    try {
      await api.post(`/api/v1/anomalies/${seg(a.id)}/resolve`, {});
      ctx.toast(`Anomaly on ${a.flag_key} resolved. The flag stays as it is: turn it on from its page.`);
      await load();
    } catch (e) {
      toastError(e, 'Could not resolve');
    }
  }

  async function load() {
    const { anomalies } = await api.get(`/api/v1/anomalies?resolved=${resolved}${flag ? `&flag=${seg(flag)}` : ''}`);
    if (!anomalies.length) {
      replace(list, h('p', { class: 'empty' }, resolved === 'false' ? 'No open anomalies: every guarded rollout looks healthy.' : 'Nothing resolved yet.'));
      return;
    }
    const cards = [];
    for (const a of anomalies) {
      const chart = h('div');
      cards.push(h('article', { class: 'card', 'data-anomaly': a.flag_key },
        h('h2', null, h('a', { href: `/ui/flags/${seg(a.flag_key)}` }, a.flag_key), ' ', h('span', { class: `badge ${a.action === 'disable' ? 'badge-danger' : 'badge-warn'}` }, a.action === 'disable' ? 'disabled' : 'alert')),
        h('p', null, `Opened ${fmtTime(a.opened_at)}: `, decisionText(a.decision)),
        a.resolved_at ? h('p', { class: 'muted' }, `Resolved ${fmtTime(a.resolved_at)}`) : null,
        chart,
        h('details', null, h('summary', null, 'Decision record'), h('pre', { class: 'mono' }, pretty(a.decision))),
        !a.resolved_at && ctx.user.role !== 'user' ? h('button', { type: 'button', class: 'btn', onclick: () => resolve(a) }, 'Resolve') : null));
      const k = seg(a.flag_key);
      Promise.all([api.get(`/api/v1/flags/${k}/metrics/series?window=1h&step=1m`), api.get(`/api/v1/flags/${k}/history?limit=50`)])
        .then(([s, hist]) => replace(chart, lineChart(s, hist.records))).catch(() => {});
    }
    replace(list, cards);
  }

  append(root, h('div', { class: 'page-head' }, h('h1', null, 'Anomalies')),
    h('div', { class: 'filters' }, h('label', { for: 'an-resolved', class: 'filter-label' }, 'Show'), filter, flag ? h('span', null, `flag ${flag} `, h('a', { href: '/ui/anomalies' }, 'all flags')) : null),
    list);
  await load();
}
