//! The banner at the top of a flag the anomaly detector turned off: what it
//! saw (its decision record), and "re-enable" (the toggle API, confirmed)
//! with "resolve" for the anomaly. Null when the flag has no open anomaly.

import { h, fmtAgo } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';

/** One line saying what the detector decided, from its decision record. */
export function decisionText(d) {
  const arms = (d.arms || []).map((a) => `${a.variant}: ${a.errors} ${d.metric} in ${a.exposures} exposures`).join('; ');
  const stat = d.statistic ? `${d.statistic.name} ${d.statistic.value} over threshold ${d.threshold}` : '';
  return `${d.metric} ${stat} in ${d.window ? d.window.seconds : '?'} s (${arms})`;
}

export async function detectorBanner(flagKey, ctx) {
  const { anomalies } = await ctx.api.get(`/api/v1/anomalies?flag=${seg(flagKey)}&resolved=false&limit=1`);
  const a = anomalies[0];
  if (!a) return null;
  const dev = ctx.user.role !== 'user';
  const disabled = a.action === 'disable';
  async function reenable() {
    const ok = await ctx.confirm({ title: `Turn ${flagKey} back on?`, body: `The detector turned it off ${fmtAgo(a.opened_at)}. Turning it on serves its rules and rollout again and resolves the anomaly; the detector then counts only new events.`, confirmLabel: 'Turn on' });
    if (!ok) return;
    try {
      await ctx.api.post(`/api/v1/anomalies/${seg(a.id)}/resolve`, {});
      const flag = await ctx.api.get(`/api/v1/flags/${seg(flagKey)}`);
      if (!flag.enabled) await ctx.api.patch(`/api/v1/flags/${seg(flagKey)}/toggle`, { reason: `re-enabled after anomaly ${a.id}` }, { ifMatch: flag.etag });
      ctx.toast(`${flagKey} is on again.`);
      banner.remove();
    } catch (e) {
      toastError(e, 'Could not turn the flag back on');
    }
  }
  const banner = h('div', { class: 'detector-banner', role: 'alert', 'data-testid': 'detector-banner' },
    h('p', null, h('strong', null, disabled ? 'The anomaly detector turned this flag off ' : 'The anomaly detector flagged this rollout '), fmtAgo(a.opened_at), '.'),
    h('p', null, decisionText(a.decision)),
    h('p', null, h('a', { href: `/ui/anomalies?flag=${seg(flagKey)}` }, 'Decision record'), ' ',
      dev ? h('button', { type: 'button', class: 'btn btn-small btn-primary', onclick: reenable }, disabled ? 'Re-enable' : 'Resolve') : null));
  return banner;
}
