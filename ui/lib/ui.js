//! Shared UI pieces: toasts (with an optional action such as Undo), modal
//! dialogs on <dialog> (focus is trapped and Esc closes them natively), and
//! the keyboard shortcut registry behind `?`.

import { h, clear, uid } from './dom.js';

/**
 * Shows a toast. `opts.action = {label, run}` adds a button (e.g. Undo);
 * `opts.kind` is 'info' | 'error' | 'success'. Returns a function that dismisses it.
 */
export function toast(text, opts = {}) {
  const box = document.getElementById('toasts');
  if (!box) return () => {};
  const kind = opts.kind || 'info';
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : null });
  const dismiss = () => el.remove();
  el.append(h('span', { class: 'toast-text' }, text));
  if (opts.action) {
    el.append(
      h('button', {
        type: 'button',
        class: 'btn btn-small',
        onclick: async () => {
          dismiss();
          await opts.action.run();
        },
      }, opts.action.label),
    );
  }
  el.append(h('button', { type: 'button', class: 'btn-icon', 'aria-label': 'Dismiss', onclick: dismiss }, '×'));
  box.append(el);
  // Long enough to reach an Undo button with the keyboard.
  const ms = opts.timeout ?? (opts.action ? 10000 : 5000);
  if (ms > 0) setTimeout(dismiss, ms);
  return dismiss;
}

/** Toast for a caught error (ApiError or anything else). */
export function toastError(e, prefix) {
  const msg = e && e.message ? e.message : String(e);
  return toast(prefix ? `${prefix}: ${msg}` : msg, { kind: 'error' });
}

/**
 * A modal dialog. `opts`: title, body (string or Node), confirmLabel,
 * cancelLabel, danger, input: {label, placeholder, maxLength, optional}
 * and `content` (extra nodes). Resolves `{ok, value}`.
 */
export function dialog(opts) {
  return new Promise((resolve) => {
    const titleId = uid('dlg');
    const bodyId = uid('dlgb');
    let input = null;
    const parts = [];
    if (opts.body) parts.push(typeof opts.body === 'string' ? h('p', { id: bodyId }, opts.body) : h('div', { id: bodyId }, opts.body));
    if (opts.content) parts.push(opts.content);
    if (opts.input) {
      const id = uid('dlgi');
      input = h('input', {
        id,
        type: 'text',
        maxlength: opts.input.maxLength,
        placeholder: opts.input.placeholder,
        value: opts.input.value || '',
      });
      parts.push(h('div', { class: 'field' }, h('label', { for: id }, opts.input.label), input));
    }
    const ok = h('button', { type: 'submit', class: opts.danger ? 'btn btn-danger' : 'btn btn-primary', value: 'ok' }, opts.confirmLabel || 'OK');
    const cancel = h('button', { type: 'button', class: 'btn', value: 'cancel' }, opts.cancelLabel || 'Cancel');
    const form = h('form', { method: 'dialog' }, h('h2', { id: titleId }, opts.title || 'Confirm'), ...parts, h('div', { class: 'dialog-actions' }, cancel, ok));
    const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'aria-describedby': opts.body ? bodyId : null }, form);
    let result = { ok: false, value: null };
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      result = { ok: true, value: input ? input.value : null };
      dlg.close();
    });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => {
      dlg.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(result);
    });
    const opener = document.activeElement;
    document.body.append(dlg);
    dlg.showModal();
    (input || ok).focus();
  });
}

/** confirm({title, body, confirmLabel, danger}) -> Promise<boolean>. */
export async function confirm(opts) {
  return (await dialog(opts)).ok;
}

// Keyboard shortcuts: single keys ('/', '?') and two-key sequences ('g f').
const shortcuts = [];
let pending = null;
let pendingTimer = null;

/** Registers a shortcut; returns a function that removes it. */
export function addShortcut(keys, description, run) {
  const s = { keys, description, run };
  shortcuts.push(s);
  return () => {
    const i = shortcuts.indexOf(s);
    if (i >= 0) shortcuts.splice(i, 1);
  };
}

function typing(target) {
  if (!target || !(target instanceof Element)) return false;
  const tag = target.tagName;
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || target.isContentEditable;
}

/** Installs the global key handler (once, by the shell). */
export function installShortcuts() {
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    if (typing(e.target) || document.querySelector('dialog[open]')) return;
    const key = e.key;
    if (pending) {
      const combo = `${pending} ${key}`;
      pending = null;
      clearTimeout(pendingTimer);
      const s = shortcuts.find((x) => x.keys === combo);
      if (s) {
        e.preventDefault();
        s.run(e);
      }
      return;
    }
    if (shortcuts.some((x) => x.keys.startsWith(`${key} `))) {
      pending = key;
      pendingTimer = setTimeout(() => (pending = null), 1500);
      return;
    }
    const s = shortcuts.find((x) => x.keys === key);
    if (s) {
      e.preventDefault();
      s.run(e);
    }
  });
}

/** The `?` dialog listing every shortcut. */
export function showShortcuts() {
  const rows = shortcuts.map((s) => h('tr', null, h('td', null, ...s.keys.split(' ').flatMap((k, i) => [i ? ' then ' : null, h('kbd', null, k)])), h('td', null, s.description)));
  rows.push(h('tr', null, h('td', null, h('kbd', null, 'Esc')), h('td', null, 'Close a dialog')));
  const table = h('table', { class: 'table shortcuts' }, h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Keys'), h('th', { scope: 'col' }, 'Action'))), h('tbody', null, rows));
  return dialog({ title: 'Keyboard shortcuts', content: table, confirmLabel: 'Close', cancelLabel: 'Cancel' });
}

/** A loading placeholder for a page. */
export function loading(root, text = 'Loading…') {
  clear(root);
  root.append(h('p', { class: 'muted', role: 'status' }, text));
}

/** A page-level error box. */
export function errorBox(e) {
  return h('div', { class: 'error-box', role: 'alert' }, h('strong', null, 'Something went wrong. '), e && e.message ? e.message : String(e));
}
