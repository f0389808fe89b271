//! Gateway routes (`/ui/gateway`): every route with its gating flag and that
//! flag's live state, create / edit / delete (admins; the API's field errors
//! on the field), and "try a request as…", which asks the proxy's own
//! routing (`POST /api/v1/gateway/simulate`) where a caller would go.

import { h, replace, append, field, setFieldError, pretty } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';

const TEXT = ['path', 'flag_key', 'target', 'fallback_target', 'timeout', 'require_role'];

/** The edit form of one route (or a new one): returns the form element. */
function routeForm(ctx, route, done) {
  const f = {};
  for (const k of TEXT) {
    const label = { path: 'Path (under /gateway)', flag_key: 'Gating flag', target: 'Target', fallback_target: 'Fallback target (flag off)', timeout: 'Timeout', require_role: 'Required role' }[k];
    const input = k === 'require_role'
      ? h('select', null, ['', 'user', 'developer', 'admin'].map((r) => h('option', { value: r, selected: (route[k] || '') === r }, r || 'anyone')))
      : h('input', { type: 'text', value: route[k] || '', autocomplete: 'off', spellcheck: 'false', placeholder: k === 'target' ? 'http://127.0.0.1:3000 or function:<name>' : null });
    f[k] = field(label, input, { name: k });
  }
  f.methods = field('Methods', h('input', { type: 'text', value: (route.methods || []).join(', '), placeholder: 'all' }), { name: 'methods' });
  f.variants = field('Targets per variant (JSON)', h('textarea', { rows: 3, spellcheck: 'false', class: 'mono' }, route.variants && Object.keys(route.variants).length ? pretty(route.variants) : ''), { name: 'variants', hint: '{"beta": "http://127.0.0.1:3001"}' });
  const strip = h('input', { type: 'checkbox', id: `strip-${route.id || 'new'}`, checked: route.strip_prefix !== false });
  const fwd = h('input', { type: 'checkbox', id: `fwd-${route.id || 'new'}`, checked: !!route.forward_authorization });

  async function save(ev) {
    ev.preventDefault();
    Object.values(f).forEach((x) => setFieldError(x, null));
    const body = { strip_prefix: strip.checked, forward_authorization: fwd.checked };
    for (const k of TEXT) if (f[k].input.value.trim()) body[k] = f[k].input.value.trim();
    const methods = f.methods.input.value.split(',').map((m) => m.trim().toUpperCase()).filter(Boolean);
    if (methods.length) body.methods = methods;
    if (f.variants.input.value.trim()) {
      try {
        body.variants = JSON.parse(f.variants.input.value);
      } catch {
        setFieldError(f.variants, 'not valid JSON');
        return;
      }
    }
    try {
      if (route.id) await ctx.api.put(`/api/v1/gateway/routes/${seg(route.id)}`, body);
      else await ctx.api.post('/api/v1/gateway/routes', body);
      ctx.toast(`Route ${body.path} saved.`);
      await done();
    } catch (e) {
      const key = e.field && e.field.split(/[.[]/)[0];
      if (key && f[key]) setFieldError(f[key], e.message);
      else toastError(e, 'Could not save the route');
    }
  }
  return h('form', { class: 'card', onsubmit: save, 'aria-label': route.id ? `Edit route ${route.path}` : 'New route' },
    h('h2', null, route.id ? `Edit ${route.path}` : 'New route'),
    h('div', { class: 'grid-2' }, Object.values(f).map((x) => x.wrap)),
    h('p', null, h('label', null, strip, ' Strip the path prefix'), ' ', h('label', null, fwd, ' Forward the caller\'s Authorization')),
    h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save route'), ' ',
    h('button', { type: 'button', class: 'btn', onclick: () => done() }, 'Cancel'));
}

/** "Try a request as…": method, path and a context or a role. */
function simulator(ctx) {
  const method = field('Method', h('select', null, ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => h('option', { value: m }, m))), { name: 'method' });
  const path = field('Path', h('input', { type: 'text', value: ctx.query.path || '/gateway/', spellcheck: 'false' }), { name: 'path' });
  const context = field('Caller context (JSON)', h('textarea', { rows: 3, spellcheck: 'false', class: 'mono' }, ctx.query.context || '{"targetingKey": "user-1", "role": "developer"}'), { name: 'context' });
  const out = h('div', { 'aria-live': 'polite', 'data-testid': 'simulation' });
  async function run(ev) {
    ev.preventDefault();
    setFieldError(context, null);
    let c;
    try {
      c = JSON.parse(context.input.value || '{}');
    } catch {
      setFieldError(context, 'not valid JSON');
      return;
    }
    ctx.setQuery({ path: path.input.value, context: context.input.value });
    try {
      const r = await ctx.api.post('/api/v1/gateway/simulate', { method: method.input.value, path: path.input.value, context: c });
      replace(out, r.matched
        ? h('dl', { class: 'facts' }, h('dt', null, 'Target'), h('dd', null, h('code', null, r.target || 'none (503)')), h('dt', null, 'Route'), h('dd', null, r.route.path),
          h('dt', null, 'Flag'), h('dd', null, r.flag ? `${r.flag} (${r.flag_enabled ? 'on' : 'off'}), variant ${r.variant ?? '—'}` : 'none'), h('dt', null, 'Why'), h('dd', null, r.reason))
        : h('p', { class: 'notice' }, `No route serves ${r.path}: the caller gets 404.`));
    } catch (e) {
      if (e.field === 'path') setFieldError(path, e.message);
      else toastError(e, 'Could not simulate');
    }
  }
  return h('form', { class: 'card', onsubmit: run, 'aria-label': 'Try a request as' }, h('h2', null, 'Try a request as…'),
    h('div', { class: 'grid-2' }, method.wrap, path.wrap), context.wrap,
    h('button', { type: 'submit', class: 'btn btn-primary' }, 'Simulate'), out);
}

export async function render(root, ctx) {
  const { api } = ctx;
  const editor = h('div');
  const list = h('div', { 'aria-live': 'polite' });
  const admin = ctx.isAdmin();
  let flags = new Map();

  async function load() {
    replace(editor);
    if (!admin) {
      replace(list, h('p', { class: 'notice' }, 'Routes are managed by admins; you can still simulate a request.'));
      return;
    }
    const [{ routes }, page] = await Promise.all([api.get('/api/v1/gateway/routes'), api.get('/api/v1/flags?limit=1000')]);
    flags = new Map(page.flags.map((fl) => [fl.key, fl]));
    if (!routes.length) {
      replace(list, h('p', { class: 'empty' }, 'No routes yet: requests under /gateway get 404.'));
      return;
    }
    replace(list, h('table', { class: 'table' }, h('caption', { class: 'visually-hidden' }, 'Gateway routes'),
      h('thead', null, h('tr', null, ['Path', 'Flag', 'Target', 'Fallback', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, routes.map((r) => {
        const fl = r.flag_key && flags.get(r.flag_key);
        const state = !r.flag_key ? h('span', { class: 'muted' }, 'always') : h('span', null, h('a', { href: `/ui/flags/${seg(r.flag_key)}` }, r.flag_key), ' ',
          h('span', { class: `badge ${fl && fl.enabled ? 'badge-ok' : 'badge-warn'}`, 'data-flag-state': r.flag_key }, fl ? (fl.enabled ? 'on' : 'off') : 'missing'));
        return h('tr', { dataset: { route: r.path } }, h('td', null, h('code', null, r.path)), h('td', null, state), h('td', null, h('code', null, r.target)),
          h('td', null, r.fallback_target ? h('code', null, r.fallback_target) : '503'),
          h('td', null, h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Edit ${r.path}`, onclick: () => replace(editor, routeForm(ctx, r, load)) }, 'Edit'), ' ',
            h('button', { type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Delete ${r.path}`, onclick: () => remove(r) }, 'Delete')));
      }))));
  }

  async function remove(r) {
    if (!(await ctx.confirm({ title: `Delete route ${r.path}?`, body: 'Requests to it get 404 at once.', confirmLabel: 'Delete' }))) return;
    try {
      await api.del(`/api/v1/gateway/routes/${seg(r.id)}`);
      ctx.toast(`Route ${r.path} deleted.`);
      await load();
    } catch (e) {
      toastError(e, 'Could not delete the route');
    }
  }

  append(root, h('div', { class: 'page-head' }, h('h1', null, 'Gateway'), h('span', { class: 'spacer' }),
    admin ? h('button', { type: 'button', class: 'btn btn-primary', onclick: () => replace(editor, routeForm(ctx, {}, load)) }, '+ New route') : null),
  editor, list, ctx.user.role === 'user' ? null : simulator(ctx));
  await load();
  // The gating flags' state follows the stream.
  return ctx.stream.on('flag', (ev) => {
    const fl = ev.flag;
    if (!fl) return;
    for (const badge of root.querySelectorAll(`[data-flag-state="${CSS.escape(fl.key)}"]`)) {
      badge.textContent = fl.enabled ? 'on' : 'off';
      badge.className = `badge ${fl.enabled ? 'badge-ok' : 'badge-warn'}`;
    }
  });
}
