//! Users and roles (`/ui/users`, admins): add a person, change a role
//! (confirmed; the server refuses to demote the last admin), remove one.

import { h, replace, append, field, setFieldError, fmtTime } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';

const ROLES = ['user', 'developer', 'admin'];

export async function render(root, ctx) {
  const { api } = ctx;
  append(root, h('div', { class: 'page-head' }, h('h1', null, 'Users')));
  if (!ctx.isAdmin()) {
    append(root, h('p', { class: 'notice' }, 'Managing users needs the admin role.'));
    return;
  }
  const list = h('div', { 'aria-live': 'polite' });
  const email = field('Email', h('input', { type: 'email', required: true, autocomplete: 'off' }), { name: 'email' });
  const password = field('Password', h('input', { type: 'password', required: true, minlength: 8, autocomplete: 'new-password' }), { name: 'password', hint: 'At least 8 characters; give it to them through a safe channel.' });
  const role = field('Role', h('select', null, ROLES.map((r) => h('option', { value: r }, r))), { name: 'role' });
  const fields = { email, password, role };

  async function add(ev) {
    ev.preventDefault();
    Object.values(fields).forEach((f) => setFieldError(f, null));
    try {
      const u = await api.post('/api/v1/users', { email: email.input.value.trim(), password: password.input.value, role: role.input.value });
      ctx.toast(`${u.email} added as ${u.role}.`);
      email.input.value = '';
      password.input.value = '';
      await load();
    } catch (e) {
      const f = e.field && fields[e.field];
      if (f) setFieldError(f, e.message);
      else if (e.status === 409) setFieldError(email, e.message);
      else toastError(e, 'Could not add the user');
    }
  }

  async function setRole(u, select) {
    const to = select.value;
    const ok = await ctx.confirm({ title: `Make ${u.email} ${to}?`, body: `${u.email} changes from ${u.role} to ${to}; their open sessions end and their tokens keep at most the new role.`, confirmLabel: 'Change role' });
    if (!ok) {
      select.value = u.role;
      return;
    }
    try {
      await api.put(`/api/v1/users/${seg(u.id)}/role`, { role: to });
      ctx.toast(`${u.email} is now ${to}.`);
      await load();
    } catch (e) {
      select.value = u.role;
      toastError(e, 'Could not change the role');
    }
  }

  async function remove(u) {
    const ok = await ctx.confirm({ title: `Remove ${u.email}?`, body: 'Their sessions and API tokens stop working at once.', confirmLabel: 'Remove' });
    if (!ok) return;
    try {
      await api.del(`/api/v1/users/${seg(u.id)}`);
      ctx.toast(`${u.email} removed.`);
      await load();
    } catch (e) {
      toastError(e, 'Could not remove the user');
    }
  }

  async function load() {
    const { users } = await api.get('/api/v1/users');
    replace(list, h('table', { class: 'table' },
      h('caption', { class: 'visually-hidden' }, 'Users'),
      h('thead', null, h('tr', null, ['Email', 'Role', 'Created', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, users.map((u) => {
        const select = h('select', { 'aria-label': `Role of ${u.email}`, onchange: () => setRole(u, select) }, ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r)));
        return h('tr', { dataset: { user: u.email } }, h('td', null, u.email), h('td', null, select), h('td', null, fmtTime(u.created_at)),
          h('td', null, u.id === ctx.user.id ? h('span', { class: 'muted' }, 'you') : h('button', { type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Remove ${u.email}`, onclick: () => remove(u) }, 'Remove')));
      }))));
  }

  append(root,
    h('form', { class: 'card', onsubmit: add, 'aria-label': 'Add a user' }, h('h2', null, 'Add a user'),
      h('div', { class: 'grid-2' }, email.wrap, password.wrap, role.wrap),
      h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add user')),
    list);
  await load();
}
