//! First-admin setup: `/ui/setup?token=` posts /setup, then signs in with
//! /auth/session using the same credentials.

import { h, field, setFieldError, append } from '../lib/dom.js';
import { request } from '../lib/api.js';

export async function render(root, ctx) {
  const token = field('Setup token', h('input', { type: 'text', name: 'token', autocomplete: 'off', required: true, value: ctx.query.token || '' }), {
    hint: 'Printed by the server at its first start.',
  });
  const email = field('Admin email', h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true }));
  const password = field('Password', h('input', { type: 'password', name: 'password', autocomplete: 'new-password', required: true, minlength: 8 }));
  const confirmPw = field('Repeat password', h('input', { type: 'password', name: 'password2', autocomplete: 'new-password', required: true }));
  const error = h('div', { class: 'error-box', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create admin and sign in');
  const fields = { token, email, password };
  const form = h('form', { class: 'card', novalidate: true }, error, token.wrap, email.wrap, password.wrap, confirmPw.wrap, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    for (const f of [token, email, password, confirmPw]) setFieldError(f, null);
    let bad = null;
    if (!token.input.value.trim()) bad = bad || setBad(token, 'Enter the setup token.');
    if (!email.input.value.trim()) bad = bad || setBad(email, 'Enter an email.');
    if (!password.input.value) bad = bad || setBad(password, 'Choose a password.');
    if (password.input.value !== confirmPw.input.value) bad = bad || setBad(confirmPw, 'The passwords differ.');
    if (bad) {
      bad.input.focus();
      return;
    }
    submit.disabled = true;
    const creds = { email: email.input.value.trim(), password: password.input.value };
    try {
      await request('POST', '/setup', { body: { token: token.input.value.trim(), ...creds }, quiet401: true });
      const s = await request('POST', '/auth/session', { body: creds, quiet401: true });
      ctx.setSession(s.body);
      ctx.toast('Admin created. Welcome to Flagbase.', { kind: 'success' });
      ctx.navigate('/ui/flags', { replace: true });
    } catch (err) {
      const f = err.field && fields[err.field];
      if (f) {
        setFieldError(f, err.message);
        f.input.focus();
      } else {
        error.textContent = err.message;
        error.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  });
  append(root, h('div', { class: 'auth' }, h('h1', null, 'Set up Flagbase'), h('p', { class: 'muted' }, 'Create the first admin account.'), form));
  (ctx.query.token ? email : token).input.focus();
}

function setBad(f, msg) {
  setFieldError(f, msg);
  return f;
}
