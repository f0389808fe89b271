//! Sign-in page: POST /auth/session, then on to `?next=` (a /ui/ path only).

import { h, field, setFieldError, append } from '../lib/dom.js';
import { request } from '../lib/api.js';

/** Only console paths are followed after sign-in (no open redirect). */
export function safeNext(next) {
  if (typeof next === 'string' && next.startsWith('/ui/') && !next.startsWith('//')) return next;
  return '/ui/flags';
}

export async function render(root, ctx) {
  if (ctx.user) {
    ctx.navigate(safeNext(ctx.query.next), { replace: true });
    return;
  }
  let setupNeeded = false;
  try {
    const s = (await request('GET', '/setup/status', { quiet401: true })).body;
    setupNeeded = !!(s && (s.needs_setup ?? s.setup_required ?? s.pending));
  } catch {
    // The form works without it.
  }
  const email = field('Email', h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true }));
  const password = field('Password', h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true }));
  const error = h('div', { class: 'error-box', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Sign in');
  const form = h('form', { class: 'card', novalidate: true }, error, email.wrap, password.wrap, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    setFieldError(email, email.input.value.trim() ? null : 'Enter your email.');
    setFieldError(password, password.input.value ? null : 'Enter your password.');
    if (!email.input.value.trim() || !password.input.value) return;
    submit.disabled = true;
    try {
      const r = await request('POST', '/auth/session', {
        body: { email: email.input.value.trim(), password: password.input.value },
        quiet401: true,
      });
      ctx.setSession(r.body);
      ctx.navigate(safeNext(ctx.query.next), { replace: true });
    } catch (err) {
      error.textContent = err.status === 401 ? 'Wrong email or password.' : err.message;
      error.hidden = false;
      password.input.value = '';
      password.input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  append(
    root,
    h(
      'div',
      { class: 'auth' },
      h('h1', null, 'Sign in to Flagbase'),
      setupNeeded ? h('p', { class: 'notice' }, 'No admin exists yet. Open the setup link printed by the server (', h('code', null, '/ui/setup?token=…'), ') to create one.') : null,
      form,
    ),
  );
  email.input.focus();
}
