//! Functions (`/ui/functions`): the list with each one's active version and
//! settings, and an upload form (multipart `POST /api/v1/functions`) that
//! creates a function or adds a version to it.

import { h, replace, append, field, setFieldError, fmtAgo } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';

/** The upload form; `fixedName` when adding a version to one function. */
export function uploadForm(ctx, fixedName, done) {
  const name = field('Name', h('input', { type: 'text', required: true, value: fixedName || '', readonly: !!fixedName, autocomplete: 'off', spellcheck: 'false' }), { name: 'name' });
  const module = field('Module (.wasm)', h('input', { type: 'file', accept: '.wasm,application/wasm', required: true }), { name: 'module', hint: 'A WASI preview1 command module; each upload becomes the active version.' });
  async function upload(ev) {
    ev.preventDefault();
    setFieldError(name, null);
    setFieldError(module, null);
    const file = module.input.files[0];
    if (!file) {
      setFieldError(module, 'choose a .wasm file');
      return;
    }
    const form = new FormData();
    form.append('name', name.input.value.trim());
    form.append('module', file, file.name);
    try {
      const v = await ctx.api.upload('/api/v1/functions', form);
      await done(v);
      ctx.toast(`${v.name} version ${v.version} is active.`);
    } catch (e) {
      if (e.field === 'name') setFieldError(name, e.message);
      else if (e.status === 400 || e.status === 413) setFieldError(module, e.message);
      else toastError(e, 'Upload failed');
    }
  }
  return h('form', { class: 'card', onsubmit: upload, 'aria-label': fixedName ? 'Upload a new version' : 'Upload a function' },
    h('h2', null, fixedName ? 'Upload a new version' : 'Upload a function'),
    h('div', { class: 'grid-2' }, name.wrap, module.wrap), h('button', { type: 'submit', class: 'btn btn-primary' }, 'Upload'));
}

export async function render(root, ctx) {
  const list = h('div', { 'aria-live': 'polite' });
  const dev = ctx.user.role !== 'user';
  async function load() {
    const { functions } = await ctx.api.get('/api/v1/functions');
    if (!functions.length) {
      replace(list, h('p', { class: 'empty' }, 'No functions yet.'));
      return;
    }
    replace(list, h('table', { class: 'table' }, h('caption', { class: 'visually-hidden' }, 'Functions'),
      h('thead', null, h('tr', null, ['Name', 'Active version', 'Flag', 'Timeout', 'Updated'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, functions.map((f) => h('tr', { dataset: { function: f.name } },
        h('td', null, h('a', { href: `/ui/functions/${seg(f.name)}` }, f.name)), h('td', null, `v${f.active_version}`),
        h('td', null, f.settings.flag_key || h('span', { class: 'muted' }, '—')), h('td', null, f.settings.timeout), h('td', null, fmtAgo(f.updated_at)))))));
  }
  append(root, h('div', { class: 'page-head' }, h('h1', null, 'Functions')),
    dev ? uploadForm(ctx, null, (v) => ctx.navigate(`/ui/functions/${seg(v.name)}`)) : null, list);
  await load();
}
