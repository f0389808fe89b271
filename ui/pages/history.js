//! History: the audit timeline for one flag (`/ui/flags/<key>/history`) or
//! for everything (`/ui/history`, admins), with field-level diffs and
//! "restore this version" (PUT the old definition with If-Match, after a
//! confirmation; a deleted flag is created again).

import { h, replace, fmtTime, fmtAgo, append } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';
import { specOf, short } from '../lib/flagutil.js';

/** Flattens a JSON value to {path: leaf} ("rules[0].conditions[1].value"). */
export function flatten(v, prefix = '', out = {}) {
  if (Array.isArray(v)) {
    if (!v.length) out[prefix] = [];
    v.forEach((x, i) => flatten(x, `${prefix}[${i}]`, out));
  } else if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (!keys.length && prefix) out[prefix] = {};
    for (const k of keys) flatten(v[k], prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = v;
  }
  return out;
}

/** Field-level differences between two JSON values: [{path, before, after}]. */
export function diff(before, after) {
  const a = flatten(before || {});
  const b = flatten(after || {});
  const paths = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const out = [];
  for (const p of paths) {
    const x = JSON.stringify(a[p]);
    const y = JSON.stringify(b[p]);
    if (x !== y) out.push({ path: p, before: a[p], after: b[p] });
  }
  return out;
}

const ACTIONS = {
  'flag.create': 'created',
  'flag.update': 'edited',
  'flag.toggle': 'toggled',
  'flag.delete': 'deleted',
  'flag.disable': 'disabled by the detector',
  'user.create': 'user created',
  'user.role': 'role changed',
  'user.delete': 'user deleted',
  'token.create': 'token created',
  'token.delete': 'token revoked',
};

export async function render(root, ctx) {
  const { api } = ctx;
  const key = ctx.params.key || null;
  const canEdit = ctx.user.role !== 'user';
  if (!key && !ctx.isAdmin()) {
    append(root, h('h1', null, 'History'), h('p', { class: 'notice' }, 'The global audit log is for admins. Open a flag to see its own history.'), h('a', { href: '/ui/flags' }, 'Go to flags'));
    return;
  }
  if (key && !canEdit) {
    append(root, h('h1', null, `History of ${key}`), h('p', { class: 'notice' }, 'Flag history needs the developer role.'));
    return;
  }
  // Names for actors (admins can list users; others see "you" or an id).
  const names = new Map([[ctx.user.id, `${ctx.user.email} (you)`]]);
  if (ctx.isAdmin()) {
    try {
      for (const u of (await api.get('/api/v1/users')).users) if (!names.has(u.id)) names.set(u.id, u.email);
    } catch {
      // Ids then.
    }
  }
  const actorName = (id) => names.get(id) || (id ? `user ${String(id).slice(0, 8)}…` : 'system');

  const target = h('input', { type: 'search', id: 'h-target', 'data-search': true, value: ctx.query.target || '', placeholder: 'flag:checkout or user:…', autocomplete: 'off' });
  const list = h('ol', { class: 'timeline', 'aria-label': 'Changes, newest first' });
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load older changes');
  const status = h('p', { class: 'muted', role: 'status' });
  let cursor = null;

  const endpoint = () => {
    const q = new URLSearchParams({ limit: '50' });
    if (cursor) q.set('cursor', cursor);
    if (key) return `/api/v1/flags/${seg(key)}/history?${q}`;
    if (target.value.trim()) q.set('target', target.value.trim());
    return `/api/v1/audit?${q}`;
  };

  async function load(reset) {
    if (reset) {
      cursor = null;
      replace(list);
    }
    more.disabled = true;
    try {
      const page = await api.get(endpoint());
      for (const rec of page.records) list.append(entry(rec));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.textContent = list.children.length ? `${list.children.length} change${list.children.length === 1 ? '' : 's'} shown` : 'No changes recorded yet.';
    } catch (e) {
      toastError(e, 'Could not load the history');
    } finally {
      more.disabled = false;
    }
  }

  function entry(rec) {
    const flagKey = rec.target && rec.target.startsWith('flag:') ? rec.target.slice(5) : null;
    const beforeSpec = rec.before && rec.before.spec ? rec.before.spec : rec.before;
    const afterSpec = rec.after && rec.after.spec ? rec.after.spec : rec.after;
    const changes = diff(beforeSpec, afterSpec);
    const restorable = flagKey && canEdit && rec.after && rec.after.spec;
    const rows = changes.map((c) => h('tr', null,
      h('th', { scope: 'row', class: 'mono' }, c.path),
      h('td', { class: 'diff-before' }, c.before === undefined ? h('span', { class: 'muted' }, '—') : h('del', null, short(c.before, 120))),
      h('td', { class: 'diff-after' }, c.after === undefined ? h('span', { class: 'muted' }, '—') : h('ins', null, short(c.after, 120)))));
    const version = rec.after && typeof rec.after.version === 'number' ? `version ${rec.after.version}` : '';
    return h('li', { class: 'entry card', dataset: { seq: rec.seq, action: rec.action } },
      h('div', { class: 'entry-head' },
        h('span', { class: 'badge' }, `#${rec.seq}`), ' ',
        flagKey && !key ? h('a', { href: `/ui/flags/${seg(flagKey)}`, class: 'mono' }, flagKey) : !key ? h('span', { class: 'mono' }, rec.target) : null,
        ' ', h('strong', null, ACTIONS[rec.action] || rec.action), version ? h('span', { class: 'muted' }, ` → ${version}`) : null,
        h('span', { class: 'spacer' }),
        h('span', { class: 'muted' }, actorName(rec.actor), ' · ', h('time', { datetime: rec.at, title: fmtTime(rec.at) }, fmtAgo(rec.at)))),
      rec.reason ? h('p', { class: 'reason' }, h('span', { class: 'muted' }, 'Reason: '), rec.reason) : null,
      rec.unreadable ? h('p', { class: 'notice' }, `Part of this record cannot be read back (${rec.unreadable.join(', ')}).`) : null,
      rows.length
        ? h('table', { class: 'table diff' }, h('caption', { class: 'visually-hidden' }, `Changes in #${rec.seq}`), h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After'))), h('tbody', null, rows))
        : null,
      restorable ? h('button', { type: 'button', class: 'btn btn-small', onclick: () => restore(flagKey, rec) }, `Restore this version${version ? ` (${version})` : ''}`) : null);
  }

  async function restore(flagKey, rec) {
    const spec = specOf(rec.after.spec);
    let current = null;
    try {
      current = await api.get(`/api/v1/flags/${seg(flagKey)}`);
    } catch (e) {
      if (e.status !== 404) return toastError(e, 'Could not read the flag');
    }
    const changes = current ? diff(specOf(current), spec) : [];
    if (current && !changes.length) {
      ctx.toast(`${flagKey} already has this definition.`);
      return;
    }
    const body = current
      ? h('div', null, h('p', null, `${flagKey} goes back to the definition of change #${rec.seq}. Fields that change:`), h('ul', null, changes.slice(0, 12).map((c) => h('li', null, h('code', null, c.path)))), changes.length > 12 ? h('p', null, `…and ${changes.length - 12} more.`) : null)
      : `${flagKey} no longer exists; it will be created again with the definition of change #${rec.seq}.`;
    const ok = await ctx.confirm({ title: `Restore ${flagKey}?`, body, confirmLabel: 'Restore' });
    if (!ok) return;
    try {
      const saved = current ? await api.put(`/api/v1/flags/${seg(flagKey)}`, spec, { ifMatch: current.etag }) : await api.post('/api/v1/flags', spec);
      ctx.toast(`${flagKey} restored (now version ${saved.version}).`, { kind: 'success' });
      await load(true);
    } catch (e) {
      toastError(e, e.status === 412 ? `${flagKey} changed meanwhile; nothing restored, try again` : 'Restore failed');
    }
  }

  more.addEventListener('click', () => load(false));
  let timer = null;
  target.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      ctx.setQuery({ target: target.value.trim() });
      load(true);
    }, 250);
  });

  append(
    root,
    key ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/ui/flags' }, 'Flags'), ' / ', h('a', { href: `/ui/flags/${seg(key)}` }, key), ' / ') : null,
    h('h1', null, key ? `History of ${key}` : 'History'),
    key ? null : h('div', { class: 'filters' }, h('label', { for: 'h-target' }, 'Target'), target),
    status,
    list,
    more,
  );
  await load(true);
  return () => clearTimeout(timer);
}
