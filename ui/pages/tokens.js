//! API tokens (`/ui/tokens`): create one with its kind and role (the secret is
//! shown once, with a copy button), list them, revoke one after a
//! confirmation. Everyone manages their own tokens; admins see all.

import { h, replace, append, field, setFieldError, fmtTime } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';

const ROLES = ['user', 'developer', 'admin'];

export async function render(root, ctx) {
  const { api } = ctx;
  const mine = ROLES.slice(0, ROLES.indexOf(ctx.user.role) + 1);
  const list = h('div', { 'aria-live': 'polite' });
  const secret = h('div');

  const name = field('Name', h('input', { type: 'text', required: true, maxlength: 100, autocomplete: 'off' }), { name: 'name' });
  const role = field('Role', h('select', null, mine.map((r) => h('option', { value: r }, r))), { name: 'role' });
  const kind = field(
    'Kind',
    h('select', null, h('option', { value: 'server' }, 'server (backends, SDKs that evaluate locally)'), h('option', { value: 'client' }, 'client (browsers and mobile apps; role user)')),
    { name: 'kind', hint: 'A client token never sees flag definitions: it can only evaluate.' },
  );
  const expires = field('Expires in', h('input', { type: 'text', placeholder: 'e.g. 30d (empty: never)', autocomplete: 'off' }), { name: 'expires_in' });
  const fields = { name, role, kind, expires_in: expires };

  async function create(ev) {
    ev.preventDefault();
    Object.values(fields).forEach((f) => setFieldError(f, null));
    const body = { name: name.input.value.trim(), role: role.input.value, kind: kind.input.value };
    if (expires.input.value.trim()) body.expires_in = expires.input.value.trim();
    try {
      const t = await api.post('/api/v1/tokens', body);
      const value = h('code', { class: 'secret', 'data-testid': 'token-secret' }, t.token);
      const copy = h('button', { type: 'button', class: 'btn btn-small', onclick: async () => {
        try {
          await navigator.clipboard.writeText(t.token);
          ctx.toast('Copied to the clipboard.');
        } catch {
          ctx.toast('Copy failed: select the token and copy it yourself.', { kind: 'error' });
        }
      } }, 'Copy');
      replace(secret, h('div', { class: 'notice', role: 'status' }, h('p', null, h('strong', null, `Token ${t.name} created. `), 'Copy it now: it is shown only once.'), h('p', null, value, ' ', copy)));
      name.input.value = '';
      await load();
    } catch (e) {
      const f = e.field && fields[e.field];
      if (f) setFieldError(f, e.message);
      else toastError(e, 'Could not create the token');
    }
  }

  async function revoke(t) {
    const ok = await ctx.confirm({ title: `Revoke token ${t.name}?`, body: `Every request that uses ${t.name} (${t.kind}, role ${t.role}) fails from now on. This cannot be undone.`, confirmLabel: 'Revoke' });
    if (!ok) return;
    try {
      await api.del(`/api/v1/tokens/${seg(t.id)}`);
      ctx.toast(`Token ${t.name} revoked.`);
      await load();
    } catch (e) {
      toastError(e, 'Could not revoke the token');
    }
  }

  async function load() {
    const { tokens } = await api.get('/api/v1/tokens');
    if (!tokens.length) {
      replace(list, h('p', { class: 'empty' }, 'No tokens yet.'));
      return;
    }
    replace(list, h('table', { class: 'table' },
      h('caption', { class: 'visually-hidden' }, 'API tokens'),
      h('thead', null, h('tr', null, ['Name', 'Kind', 'Role', 'Created', 'Expires', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, tokens.map((t) => h('tr', { dataset: { token: t.name } },
        h('td', null, t.name), h('td', null, h('span', { class: 'badge' }, t.kind)), h('td', null, t.role),
        h('td', null, fmtTime(t.created_at)), h('td', null, t.expires_at ? fmtTime(t.expires_at) : 'never'),
        h('td', null, h('button', { type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Revoke ${t.name}`, onclick: () => revoke(t) }, 'Revoke')),
      )))));
  }

  append(root,
    h('div', { class: 'page-head' }, h('h1', null, 'API tokens')),
    h('form', { class: 'card', onsubmit: create, 'aria-label': 'New token' }, h('h2', null, 'New token'),
      h('div', { class: 'grid-2' }, name.wrap, role.wrap, kind.wrap, expires.wrap),
      h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create token')),
    secret, list);
  await load();
}
