//! Evaluate as (`/ui/evaluate?flag=&context=`): a context as key/value rows
//! or JSON (or filled from a user), explained by POST /api/v1/flags/{key}/explain:
//! value, variant, reason, the rule that matched, each condition's outcome
//! and the bucket. Records no exposure.

import { h, clear, replace, pretty, append } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { short } from '../lib/flagutil.js';

/** A row's text as a context value: JSON literals (numbers, booleans, lists) parse, the rest is a string. */
function parseCell(s) {
  const t = s.trim();
  if (/^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null|\[.*\]|\{.*\})$/.test(t)) {
    try {
      const v = JSON.parse(t);
      // Integers beyond 2^53 stay strings: JSON numbers that large are rounded.
      if (typeof v === 'number' && !Number.isSafeInteger(v) && Number.isInteger(v)) return t;
      return v;
    } catch {
      return s;
    }
  }
  return s;
}
const cellText = (v) => (typeof v === 'string' ? v : JSON.stringify(v));

export async function render(root, ctx) {
  const { api } = ctx;
  if (ctx.user.role === 'user') {
    append(root, h('h1', null, 'Evaluate as'), h('p', { class: 'notice' }, 'Explaining an evaluation needs the developer role.'));
    return;
  }
  let context = {};
  if (ctx.query.context) {
    try {
      const c = JSON.parse(ctx.query.context);
      if (c && typeof c === 'object' && !Array.isArray(c)) context = c;
    } catch {
      // A bad context in the URL starts empty.
    }
  }
  if (!Object.keys(context).length) context = { targetingKey: '' };

  const keys = [];
  try {
    let cursor = null;
    do {
      const p = await api.get(`/api/v1/flags?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      keys.push(...p.flags.map((f) => f.key));
      cursor = p.next_cursor;
    } while (cursor && keys.length < 20000);
  } catch {
    // The key field still works.
  }
  const flagIn = h('input', { type: 'text', id: 'ev-flag', list: 'ev-flags', value: ctx.query.flag || '', autocomplete: 'off', spellcheck: 'false', class: 'mono', required: true });
  const datalist = h('datalist', { id: 'ev-flags' }, keys.slice(0, 5000).map((k) => h('option', { value: k })));

  // Context editor: rows or JSON.
  const modeRows = h('input', { type: 'radio', name: 'ev-mode', id: 'ev-mode-rows', value: 'rows', checked: true });
  const modeJson = h('input', { type: 'radio', name: 'ev-mode', id: 'ev-mode-json', value: 'json' });
  const rowsBody = h('tbody');
  const rowsTable = h('table', { class: 'table ctx-rows' }, h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Attribute'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))), rowsBody);
  const jsonIn = h('textarea', { id: 'ev-json', rows: '8', spellcheck: 'false', hidden: true, 'aria-label': 'Context as JSON' });
  const ctxError = h('p', { class: 'field-error', role: 'alert', hidden: true });
  function addRow(k = '', v = '') {
    const ki = h('input', { type: 'text', value: k, 'aria-label': 'Attribute name', class: 'mono', spellcheck: 'false' });
    const vi = h('input', { type: 'text', value: v === '' ? '' : cellText(v), 'aria-label': `Value`, spellcheck: 'false' });
    const tr = h('tr', null, h('td', null, ki), h('td', null, vi), h('td', null, h('button', { type: 'button', class: 'btn-icon', 'aria-label': 'Remove attribute', onclick: () => tr.remove() }, '✕')));
    rowsBody.append(tr);
    return ki;
  }
  function fromRows() {
    const out = {};
    for (const tr of rowsBody.children) {
      const [ki, vi] = tr.querySelectorAll('input');
      const k = ki.value.trim();
      if (k) out[k] = parseCell(vi.value);
    }
    return out;
  }
  function toRows(obj) {
    clear(rowsBody);
    for (const [k, v] of Object.entries(obj)) addRow(k, v);
    if (!rowsBody.children.length) addRow();
  }
  function readContext() {
    if (modeJson.checked) {
      const v = JSON.parse(jsonIn.value || '{}');
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('The context must be a JSON object.');
      return v;
    }
    return fromRows();
  }
  const setMode = () => {
    ctxError.hidden = true;
    if (modeJson.checked) {
      jsonIn.value = pretty(fromRows());
      rowsTable.hidden = addBtn.hidden = true;
      jsonIn.hidden = false;
    } else {
      try {
        toRows(JSON.parse(jsonIn.value || '{}'));
      } catch (e) {
        ctxError.textContent = `Not valid JSON: ${e.message}`;
        ctxError.hidden = false;
        modeJson.checked = true;
        return;
      }
      rowsTable.hidden = addBtn.hidden = false;
      jsonIn.hidden = true;
    }
  };
  modeRows.addEventListener('change', setMode);
  modeJson.addEventListener('change', setMode);
  const addBtn = h('button', { type: 'button', class: 'btn btn-small', onclick: () => addRow().focus() }, '+ Attribute');
  toRows(context);

  // Pick a user (admins can list users): fills targetingKey, email and role.
  let picker = null;
  if (ctx.isAdmin()) {
    try {
      const { users } = await api.get('/api/v1/users');
      const sel = h('select', { id: 'ev-user' }, h('option', { value: '' }, '— pick a user —'), users.map((u) => h('option', { value: u.id }, `${u.email} (${u.role})`)));
      sel.addEventListener('change', () => {
        const u = users.find((x) => x.id === sel.value);
        if (!u) return;
        const c = { ...readContextSafe(), targetingKey: u.id, email: u.email, role: u.role };
        if (modeJson.checked) jsonIn.value = pretty(c);
        else toRows(c);
      });
      picker = h('div', { class: 'field' }, h('label', { for: 'ev-user' }, 'Fill from a user'), sel);
    } catch {
      picker = null;
    }
  }
  function readContextSafe() {
    try {
      return readContext();
    } catch {
      return {};
    }
  }

  const result = h('section', { class: 'card result', 'aria-live': 'polite', 'aria-labelledby': 'ev-result-h', hidden: true });
  const flagErr = h('p', { class: 'field-error', role: 'alert', hidden: true, id: 'ev-flag-err' });
  flagIn.setAttribute('aria-describedby', 'ev-flag-err');
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Evaluate');

  async function run() {
    flagErr.hidden = ctxError.hidden = true;
    const key = flagIn.value.trim();
    if (!key) {
      flagErr.textContent = 'Choose a flag.';
      flagErr.hidden = false;
      flagIn.focus();
      return;
    }
    let c;
    try {
      c = readContext();
    } catch (e) {
      ctxError.textContent = e.message;
      ctxError.hidden = false;
      return;
    }
    ctx.setQuery({ flag: key, context: JSON.stringify(c) });
    submit.disabled = true;
    try {
      const [r, flag] = await Promise.all([api.post(`/api/v1/flags/${seg(key)}/explain`, { context: c }), api.get(`/api/v1/flags/${seg(key)}`).catch(() => null)]);
      show(r, flag, key);
    } catch (e) {
      if (e.status === 404) {
        flagErr.textContent = `No flag named ${key}.`;
        flagErr.hidden = false;
        flagIn.focus();
      } else {
        result.hidden = false;
        replace(result, h('h2', { id: 'ev-result-h' }, 'Result'), h('p', { class: 'error-box' }, e.message));
      }
    } finally {
      submit.disabled = false;
    }
  }

  function show(r, flag, key) {
    result.hidden = false;
    const matched = typeof r.rule_index === 'number' ? `Rule ${r.rule_index + 1}` : 'none';
    const dl = h('dl', { class: 'facts' },
      h('dt', null, 'Value'), h('dd', null, h('code', { class: 'ev-value' }, short(r.value, 200))),
      h('dt', null, 'Variant'), h('dd', null, r.variant === null || r.variant === undefined ? h('span', { class: 'muted' }, '—') : h('code', null, String(r.variant))),
      h('dt', null, 'Reason'), h('dd', null, h('span', { class: 'badge ev-reason' }, r.reason), r.decided_by ? h('span', { class: 'muted' }, ` (decided by ${r.decided_by})`) : null),
      h('dt', null, 'Matched rule'), h('dd', { class: 'ev-rule' }, matched),
      h('dt', null, 'Bucket'), h('dd', { class: 'ev-bucket' }, r.bucket === null || r.bucket === undefined ? h('span', { class: 'muted' }, 'no bucket value (no user id / bucket attribute)') : `${r.bucket} of 100`),
    );
    const ruleRows = (r.rules || []).map((rule) => h('li', { class: rule.matched ? 'rule-ok' : 'rule-no' },
      h('strong', null, `Rule ${rule.index + 1}: `, rule.matched ? 'matched' : 'did not match'),
      h('ul', null, (rule.conditions || []).map((c) => h('li', { class: c.passed ? 'cond-ok' : 'cond-fail' },
        h('span', { class: 'badge ' + (c.passed ? 'badge-ok' : 'badge-danger') }, c.passed ? 'passed' : 'failed'), ' ',
        h('code', null, c.attribute), ` ${c.operator} `, h('code', null, short(c.values ?? c.value, 80)),
        h('span', { class: 'muted' }, ' — context has '), c.actual === null || c.actual === undefined ? h('em', null, 'nothing') : h('code', null, short(c.actual, 80)))))));
    replace(result,
      h('h2', { id: 'ev-result-h' }, `Result for ${key}`),
      flag && !flag.enabled ? h('p', { class: 'notice' }, 'This flag is off: every caller gets its default.') : null,
      dl,
      ruleRows.length ? [h('h3', null, 'Rules'), h('ol', { class: 'explain-rules' }, ruleRows)] : h('p', { class: 'muted' }, 'This flag has no rules.'),
      h('p', null, h('a', { href: `/ui/flags/${seg(key)}` }, `Open ${key} in the editor`)),
    );
  }

  const form = h('form', { class: 'card', novalidate: true, onsubmit: (e) => {
    e.preventDefault();
    run();
  } },
    h('div', { class: 'field' }, h('label', { for: 'ev-flag' }, 'Flag'), flagIn, datalist, flagErr),
    h('fieldset', null, h('legend', null, 'Context'),
      h('div', { class: 'row', role: 'radiogroup', 'aria-label': 'Context editor' }, modeRows, h('label', { for: 'ev-mode-rows' }, 'Attributes'), modeJson, h('label', { for: 'ev-mode-json' }, 'JSON')),
      picker,
      rowsTable, addBtn, jsonIn, ctxError,
      h('p', { class: 'hint' }, 'targetingKey (or userId) is the user id used for bucketing. Numbers, true/false and [lists] are read as JSON; anything else is text.')),
    submit,
  );
  append(root, h('h1', null, 'Evaluate as'), h('p', { class: 'muted' }, 'See what a flag serves for a context, and why. Nothing is recorded.'), form, result);
  if (ctx.query.flag && ctx.query.context) run();
  else if (!ctx.query.flag) flagIn.focus();
}
