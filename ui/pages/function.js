//! One function (`/ui/functions/<name>`): settings (timeout, memory, flag,
//! env), versions with rollback, a test invocation (status, headers, body),
//! the invocation log with stderr tails, triggers, a new version, delete.

import { h, replace, append, field, setFieldError, fmtTime, fmtAgo, pretty } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';
import { uploadForm } from './functions.js';

const MiB = 1024 * 1024;

export async function render(root, ctx) {
  const { api } = ctx;
  const name = ctx.params.name;
  const base = `/api/v1/functions/${seg(name)}`;
  const dev = ctx.user.role !== 'user';
  const body = h('div');
  append(root, h('p', { class: 'crumbs' }, h('a', { href: '/ui/functions' }, 'Functions'), ' /'), h('div', { class: 'page-head' }, h('h1', null, name)), body);

  async function load() {
    const [fn, { invocations }, { triggers }] = await Promise.all([api.get(base), api.get(`${base}/invocations`), api.get(`${base}/triggers`)]);
    replace(body, dev ? settings(fn) : null, versions(fn), dev ? invoke() : null, log(invocations), triggerList(triggers),
      dev ? uploadForm(ctx, name, load) : null,
      dev ? h('p', null, h('button', { type: 'button', class: 'btn btn-danger', onclick: remove }, 'Delete function')) : null);
  }

  function settings(fn) {
    const s = fn.settings;
    const f = {
      timeout: field('Timeout', h('input', { type: 'text', value: s.timeout }), { name: 'timeout', hint: 'e.g. 250ms, 5s' }),
      memory_limit: field('Memory limit (MiB)', h('input', { type: 'number', min: 1, step: 1, value: Math.round(s.memory_limit / MiB) }), { name: 'memory_limit' }),
      flag_key: field('Gating flag', h('input', { type: 'text', value: s.flag_key || '', placeholder: 'none: runs for every caller' }), { name: 'flag_key' }),
      env: field('Environment (JSON)', h('textarea', { rows: 3, class: 'mono', spellcheck: 'false' }, pretty(s.env || {})), { name: 'env', hint: 'Not secret: every developer can read it.' }),
    };
    async function save(ev) {
      ev.preventDefault();
      Object.values(f).forEach((x) => setFieldError(x, null));
      let env;
      try {
        env = JSON.parse(f.env.input.value || '{}');
      } catch {
        setFieldError(f.env, 'not valid JSON');
        return;
      }
      const patch = { timeout: f.timeout.input.value.trim(), memory_limit: Number(f.memory_limit.input.value) * MiB, flag_key: f.flag_key.input.value.trim() || null, env };
      try {
        await api.patch(base, patch);
        await load();
        ctx.toast('Settings saved.');
      } catch (e) {
        const k = e.field && e.field.split('.')[0];
        if (k && f[k]) setFieldError(f[k], e.message);
        else toastError(e, 'Could not save the settings');
      }
    }
    return h('form', { class: 'card', onsubmit: save, 'aria-label': 'Settings' }, h('h2', null, 'Settings'),
      h('div', { class: 'grid-2' }, Object.values(f).map((x) => x.wrap)), h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save settings'));
  }

  function versions(fn) {
    const activate = async (v) => {
      if (!(await ctx.confirm({ title: `Make version ${v.version} active?`, body: `Every call to ${name} runs version ${v.version} (sha256 ${v.sha256.slice(0, 12)}…) from now on.`, confirmLabel: 'Activate' }))) return;
      try {
        await api.post(`${base}/activate`, { version: v.version });
        await load();
        ctx.toast(`Version ${v.version} is active.`);
      } catch (e) {
        toastError(e, 'Could not activate');
      }
    };
    return h('section', { class: 'card', 'aria-label': 'Versions' }, h('h2', null, 'Versions'), h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['Version', 'SHA-256', 'Size', 'Uploaded', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, [...fn.versions].reverse().map((v) => h('tr', { dataset: { version: v.version } },
        h('td', null, `v${v.version}`), h('td', null, h('code', null, v.sha256.slice(0, 16))), h('td', null, `${v.size} B`), h('td', null, fmtTime(v.created_at)),
        h('td', null, v.version === fn.active_version ? h('span', { class: 'badge badge-ok' }, 'active')
          : dev ? h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Activate version ${v.version}`, onclick: () => activate(v) }, v.version < fn.active_version ? 'Roll back' : 'Activate') : null))))));
  }

  function invoke() {
    const method = field('Method', h('select', null, ['POST', 'GET', 'PUT', 'DELETE'].map((m) => h('option', { value: m }, m))), { name: 'method' });
    const input = field('Request body', h('textarea', { rows: 3, class: 'mono', spellcheck: 'false' }), { name: 'body' });
    const out = h('div', { 'aria-live': 'polite', 'data-testid': 'invoke-result' });
    async function run(ev) {
      ev.preventDefault();
      // The raw response matters here (status, headers, any body), so the
      // request goes through fetch on the public route, like any caller.
      try {
        const m = method.input.value;
        const r = await api.request(m, `/functions/${seg(name)}`, { text: m === 'GET' ? undefined : input.input.value });
        replace(out, h('pre', { class: 'mono' }, typeof r.body === 'string' ? r.body : pretty(r.body)), h('p', null, `Status ${r.status}`));
      } catch (e) {
        replace(out, h('p', { class: 'error-box' }, `Status ${e.status}: ${e.message}`));
      }
      await reloadLog();
    }
    return h('form', { class: 'card', onsubmit: run, 'aria-label': 'Test invocation' }, h('h2', null, 'Test invocation'),
      h('div', { class: 'grid-2' }, method.wrap, input.wrap), h('button', { type: 'submit', class: 'btn btn-primary' }, 'Run'), out);
  }

  const logBox = h('section', { class: 'card', 'aria-label': 'Invocations' });
  function log(invocations) {
    replace(logBox, h('h2', null, 'Recent invocations'), invocations.length ? h('table', { class: 'table' },
      h('thead', null, h('tr', null, ['When', 'Version', 'Status', 'Outcome', 'Duration', 'Exit', 'stderr'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, invocations.map((i) => h('tr', null, h('td', null, fmtAgo(i.at)), h('td', null, `v${i.version}`), h('td', null, String(i.status)),
        h('td', null, h('span', { class: `badge ${i.outcome === 'ok' ? 'badge-ok' : 'badge-danger'}` }, i.outcome)), h('td', null, `${i.duration_us} µs`),
        h('td', null, i.exit_code ?? '—'), h('td', null, i.stderr_tail ? h('pre', { class: 'mono' }, i.stderr_tail) : ''))))) : h('p', { class: 'empty' }, 'Not run yet.'));
    return logBox;
  }
  async function reloadLog() {
    const { invocations } = await api.get(`${base}/invocations`);
    log(invocations);
  }

  function triggerList(triggers) {
    const spec = field('Subject or schedule', h('input', { type: 'text', placeholder: 'orders.created  or  */10 * * * * *' }), { name: 'trigger' });
    async function add(ev) {
      ev.preventDefault();
      setFieldError(spec, null);
      const v = spec.input.value.trim();
      const isCron = v.split(/\s+/).length >= 5;
      try {
        await api.post(`${base}/triggers`, isCron ? { schedule: v } : { subject: v });
        await load();
      } catch (e) {
        setFieldError(spec, e.message);
      }
    }
    const del = async (t) => {
      try {
        await api.del(`${base}/triggers/${seg(t.id)}`);
        await load();
      } catch (e) {
        toastError(e, 'Could not remove the trigger');
      }
    };
    return h('section', { class: 'card', 'aria-label': 'Triggers' }, h('h2', null, 'Triggers'),
      triggers.length ? h('ul', null, triggers.map((t) => h('li', null, h('code', null, t.subject || t.schedule), ' ', dev ? h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Remove trigger ${t.subject || t.schedule}`, onclick: () => del(t) }, 'Remove') : null)))
        : h('p', { class: 'muted' }, 'Runs only when called.'),
      dev ? h('form', { onsubmit: add, 'aria-label': 'Add a trigger' }, spec.wrap, h('button', { type: 'submit', class: 'btn' }, 'Add trigger')) : null);
  }

  async function remove() {
    if (!(await ctx.confirm({ title: `Delete ${name}?`, body: 'Its versions, settings and triggers go too; routes that target it answer 404.', confirmLabel: 'Delete' }))) return;
    try {
      await api.del(base);
      ctx.toast(`${name} deleted.`);
      ctx.navigate('/ui/functions');
    } catch (e) {
      toastError(e, 'Could not delete');
    }
  }

  await load();
}
