//! The flag editor (`/ui/flags/<key>` and `/ui/new-flag`): typed default and
//! variants, rules whose operand inputs follow the operator (reordered by
//! drag or with Alt+↑/↓), a rollout slider with a number field, live weight
//! sum, the API's field errors on the field, and If-Match: a concurrent edit
//! (412) is shown with "reload" or a deliberate "overwrite".

import { h, replace, uid, fmtTime, fmtAgo, append } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';
import { specOf } from '../lib/flagutil.js';
import { valueInput, operandInput, OPERATORS } from '../lib/valueinput.js';

const KEY_RE = /^[A-Za-z0-9_.-]{1,128}$/;

export async function render(root, ctx) {
  const { api } = ctx;
  const isNew = !ctx.params.key;
  const canEdit = ctx.user.role !== 'user';
  let flag = null;
  if (!isNew) flag = await api.get(`/api/v1/flags/${seg(ctx.params.key)}`);
  let etag = flag ? flag.etag : null;
  const base = flag ? specOf(flag) : { key: '', enabled: false, type: 'boolean' };

  // ---- error plumbing: every input that can be blamed carries data-path.
  const errorSlots = new Map();
  const general = h('div', { class: 'error-box', role: 'alert', hidden: true });
  function slot(path, input) {
    const id = uid('err');
    const p = h('p', { class: 'field-error', id, hidden: true, role: 'alert' });
    input.dataset.path = path;
    // One error id per input, replaced when rows are renumbered.
    const prev = (input.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && x !== input.dataset.errId);
    input.dataset.errId = id;
    input.setAttribute('aria-describedby', [...prev, id].join(' '));
    errorSlots.set(path, { p, input });
    return p;
  }
  function clearErrors() {
    general.hidden = true;
    for (const { p, input } of errorSlots.values()) {
      p.hidden = true;
      p.textContent = '';
      input.removeAttribute('aria-invalid');
    }
  }
  function showError(path, message) {
    // Try the exact path, then its parents ("rules[0].conditions[1].value" -> "rules[0]").
    let p = path || '';
    while (p) {
      const s = errorSlots.get(p);
      if (s && s.input.isConnected && s.p.isConnected) {
        s.p.textContent = message;
        s.p.hidden = false;
        s.input.setAttribute('aria-invalid', 'true');
        s.input.focus();
        return;
      }
      const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
      p = cut > 0 ? p.slice(0, cut) : '';
    }
    general.textContent = message;
    general.hidden = false;
    general.scrollIntoView({ block: 'nearest' });
  }
  class FieldError extends Error {
    constructor(path, message) {
      super(message);
      this.path = path;
    }
  }
  const read = (path, ctl) => {
    try {
      return ctl.get();
    } catch (e) {
      throw new FieldError(path, e.message);
    }
  };

  // ---- basics
  const keyIn = h('input', { type: 'text', id: 'f-key', value: base.key, required: true, readonly: !isNew, autocomplete: 'off', spellcheck: 'false', class: 'mono' });
  const nameIn = h('input', { type: 'text', id: 'f-name', value: base.name || '', maxlength: 4096 });
  const descIn = h('textarea', { id: 'f-desc', rows: '2', value: base.description || '', maxlength: 4096 });
  const enabledIn = h('input', { type: 'checkbox', class: 'switch', id: 'f-enabled', checked: !!base.enabled });
  const typeSel = h('select', { id: 'f-type' }, ['boolean', 'string', 'number', 'json'].map((t) => h('option', { value: t, selected: (base.type || 'boolean') === t }, t)));
  const bucketIn = h('input', { type: 'text', id: 'f-bucket', value: base.bucket_by || '', placeholder: 'userId (default)' });
  const targetsIn = h('textarea', { id: 'f-targets', rows: '2', value: (base.targeted_users || []).join('\n'), placeholder: 'one user id per line' });

  let type = base.type || 'boolean';
  const defaultWrap = h('div', { class: 'default-ctl' });
  let defaultCtl = null;
  function buildDefault(value) {
    defaultCtl = valueInput(type, value, { id: 'f-default' });
    replace(defaultWrap, defaultCtl.el, slot('default_value', defaultCtl.el));
  }
  buildDefault(base.default_value);

  // ---- variants
  const variants = [];
  const variantList = h('tbody');
  const weighted = h('input', { type: 'checkbox', id: 'f-weighted', checked: (base.variants || []).some((v) => typeof v.weight === 'number') });
  const weightSum = h('p', { class: 'weight-sum', role: 'status', 'aria-live': 'polite' });
  function updateWeightSum() {
    const on = weighted.checked;
    for (const v of variants) v.weightIn.disabled = !on;
    weightSum.hidden = !on || variants.length === 0;
    variantList.parentElement.hidden = variants.length === 0;
    const total = variants.reduce((s, v) => s + (Number(v.weightIn.value) || 0), 0);
    const rounded = Math.round(total * 1000) / 1000;
    weightSum.textContent = `Weights sum to ${rounded}%${rounded === 100 ? ' ✓' : ' — they must sum to 100%'}`;
    weightSum.classList.toggle('bad', rounded !== 100);
    rolloutBox.disabled = on;
    if (on && rolloutBox.checked) {
      rolloutBox.checked = false;
      syncRollout();
    }
  }
  function addVariant(v = {}) {
    const i = variants.length;
    const keyI = h('input', { type: 'text', class: 'mono', value: v.key || '', 'aria-label': 'Variant key', spellcheck: 'false' });
    const valCtl = valueInput(type, v.value, { 'aria-label': 'Variant value' });
    const weightIn = h('input', { type: 'number', min: '0', max: '100', step: '0.001', value: typeof v.weight === 'number' ? String(v.weight) : '', 'aria-label': 'Variant weight (%)', class: 'num' });
    const rec = { keyI, valCtl, weightIn };
    const valCell = h('td');
    rec.valCell = valCell;
    const remove = h('button', { type: 'button', class: 'btn-icon', 'aria-label': 'Remove variant', onclick: () => {
      variants.splice(variants.indexOf(rec), 1);
      rec.row.remove();
      renumberVariants();
      updateWeightSum();
      refreshServe();
      updateWeightSum();
    } }, '✕');
    rec.row = h('tr', null, h('td', null, keyI), valCell, h('td', null, weightIn), h('td', null, remove));
    variants.push(rec);
    variantList.append(rec.row);
    renumberVariants();
    weightIn.addEventListener('input', updateWeightSum);
    keyI.addEventListener('change', refreshServe);
    void i;
  }
  function renumberVariants() {
    errorSlots.forEach((v, k) => {
      if (k.startsWith('variants[')) errorSlots.delete(k);
    });
    variants.forEach((rec, i) => {
      replace(rec.valCell, rec.valCtl.el, slot(`variants[${i}].value`, rec.valCtl.el));
      const cells = rec.row.children;
      const keyErr = slot(`variants[${i}].key`, rec.keyI);
      replace(cells[0], rec.keyI, keyErr);
      replace(cells[2], rec.weightIn, slot(`variants[${i}].weight`, rec.weightIn));
    });
  }
  (base.variants || []).forEach((v) => addVariant(v));
  weighted.addEventListener('change', updateWeightSum);

  // ---- rollout
  const rolloutBox = h('input', { type: 'checkbox', id: 'f-rollout-on', checked: typeof base.rollout_percentage === 'number' });
  const slider = h('input', { type: 'range', id: 'f-rollout-range', min: '0', max: '100', step: '0.001', value: String(base.rollout_percentage ?? 0), 'aria-label': 'Rollout percentage (slider)' });
  const pct = h('input', { type: 'number', id: 'f-rollout', min: '0', max: '100', step: '0.001', value: String(base.rollout_percentage ?? 0), class: 'num', 'aria-label': 'Rollout percentage' });
  const rolloutErr = slot('rollout_percentage', pct);
  slider.addEventListener('input', () => (pct.value = slider.value));
  pct.addEventListener('input', () => (slider.value = pct.value));
  function syncRollout() {
    slider.disabled = pct.disabled = !rolloutBox.checked;
  }
  rolloutBox.addEventListener('change', syncRollout);
  syncRollout();

  // ---- rules
  const rules = [];
  const ruleList = h('ol', { class: 'rules', 'aria-label': 'Rules, first match wins' });
  const ruleStatus = h('p', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });

  function serveControl(current) {
    const names = variants.map((v) => v.keyI.value.trim()).filter(Boolean);
    if (names.length) {
      const s = h('select', { 'aria-label': 'Serve variant' }, names.map((n) => h('option', { value: n, selected: current === n }, n)));
      return { el: s, get: () => s.value };
    }
    return valueInput(type, current, { 'aria-label': 'Serve value' });
  }
  function refreshServe() {
    for (const r of rules) {
      let cur;
      try {
        cur = r.serve.get();
      } catch {
        cur = undefined;
      }
      r.serve = serveControl(cur);
      replace(r.serveCell, r.serve.el);
    }
    renumberRules();
  }

  function conditionRow(rule, c = {}) {
    const attr = h('input', { type: 'text', value: c.attribute || '', 'aria-label': 'Attribute', placeholder: 'country', spellcheck: 'false', class: 'mono' });
    const op = h('select', { 'aria-label': 'Operator' }, OPERATORS.map(([v, label]) => h('option', { value: v, selected: (c.operator || 'equals') === v }, label)));
    const operandCell = h('span', { class: 'operand' });
    const cond = { attr, op, operand: operandInput(op.value, c.value, { 'aria-label': 'Value' }), operandCell };
    op.addEventListener('change', () => {
      let prev;
      try {
        prev = cond.operand.get();
      } catch {
        prev = undefined;
      }
      cond.operand = operandInput(op.value, prev, { 'aria-label': 'Value' });
      renumberRules();
    });
    const remove = h('button', { type: 'button', class: 'btn-icon', 'aria-label': 'Remove condition', onclick: () => {
      rule.conds.splice(rule.conds.indexOf(cond), 1);
      cond.row.remove();
      renumberRules();
    } }, '✕');
    cond.row = h('li', { class: 'cond' }, attr, op, operandCell, remove);
    return cond;
  }

  function addRule(r = {}, focus = false) {
    const conds = r.conditions || (r.attribute ? [{ attribute: r.attribute, operator: r.operator, value: r.value }] : [{}]);
    const rule = { conds: [], priority: r.priority || 0 };
    rule.condList = h('ul', { class: 'conds' });
    for (const c of conds) {
      const cond = conditionRow(rule, c);
      rule.conds.push(cond);
      rule.condList.append(cond.row);
    }
    rule.serve = serveControl(r.variant);
    rule.serveCell = h('span', { class: 'serve' }, rule.serve.el);
    rule.title = h('h3', { class: 'rule-title' });
    const up = h('button', { type: 'button', class: 'btn btn-small', onclick: () => move(rule, -1) }, '↑');
    const down = h('button', { type: 'button', class: 'btn btn-small', onclick: () => move(rule, 1) }, '↓');
    rule.up = up;
    rule.down = down;
    const handle = h('span', { class: 'drag-handle', 'aria-hidden': 'true', title: 'Drag to reorder' }, '⠿');
    rule.card = h(
      'li',
      { class: 'rule card', draggable: 'true', tabindex: '-1' },
      h('div', { class: 'rule-head' }, handle, rule.title, h('span', { class: 'spacer' }), up, down,
        h('button', { type: 'button', class: 'btn btn-small', onclick: () => {
          const i = rules.indexOf(rule);
          rules.splice(i, 1);
          rule.card.remove();
          renumberRules();
          ruleStatus.textContent = `Rule ${i + 1} removed.`;
        } }, 'Remove')),
      h('p', { class: 'muted rule-if' }, 'If all of:'),
      rule.condList,
      h('button', { type: 'button', class: 'btn btn-small', onclick: () => {
        const cond = conditionRow(rule, {});
        rule.conds.push(cond);
        rule.condList.append(cond.row);
        renumberRules();
        cond.attr.focus();
      } }, '+ Condition'),
      h('div', { class: 'row rule-serve' }, h('span', null, 'then serve'), rule.serveCell),
    );
    rule.card.addEventListener('keydown', (e) => {
      if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
        e.preventDefault();
        move(rule, e.key === 'ArrowUp' ? -1 : 1, document.activeElement);
      }
    });
    // Drag and drop between rule cards.
    rule.card.addEventListener('dragstart', (e) => {
      dragging = rule;
      e.dataTransfer.effectAllowed = 'move';
      e.dataTransfer.setData('text/plain', String(rules.indexOf(rule)));
      rule.card.classList.add('dragging');
    });
    rule.card.addEventListener('dragend', () => {
      rule.card.classList.remove('dragging');
      dragging = null;
    });
    rule.card.addEventListener('dragover', (e) => {
      if (dragging && dragging !== rule) e.preventDefault();
    });
    rule.card.addEventListener('drop', (e) => {
      e.preventDefault();
      if (!dragging || dragging === rule) return;
      const from = rules.indexOf(dragging);
      const to = rules.indexOf(rule);
      placeAt(dragging, to, from);
    });
    rules.push(rule);
    ruleList.append(rule.card);
    renumberRules();
    if (focus) rule.conds[0].attr.focus();
  }
  let dragging = null;
  function placeAt(rule, to, from) {
    rules.splice(from, 1);
    rules.splice(to, 0, rule);
    for (const r of rules) ruleList.append(r.card);
    renumberRules();
    ruleStatus.textContent = `Rule moved to position ${to + 1} of ${rules.length}.`;
  }
  function move(rule, delta, keepFocus) {
    const from = rules.indexOf(rule);
    const to = from + delta;
    if (to < 0 || to >= rules.length) return;
    placeAt(rule, to, from);
    (keepFocus && keepFocus.isConnected ? keepFocus : delta < 0 ? rule.up : rule.down).focus();
  }
  function renumberRules() {
    errorSlots.forEach((v, k) => {
      if (k.startsWith('rules[')) errorSlots.delete(k);
    });
    rules.forEach((r, i) => {
      r.title.textContent = `Rule ${i + 1}`;
      r.card.setAttribute('aria-label', `Rule ${i + 1} of ${rules.length}`);
      r.up.disabled = i === 0;
      r.down.disabled = i === rules.length - 1;
      r.up.setAttribute('aria-label', `Move rule ${i + 1} up`);
      r.down.setAttribute('aria-label', `Move rule ${i + 1} down`);
      r.conds.forEach((c, j) => {
        const p = `rules[${i}].conditions[${j}]`;
        replace(c.operandCell, c.operand.el, c.operand.el.tagName ? slot(`${p}.value`, c.operand.el) : null);
        c.row.querySelectorAll(':scope > .field-error').forEach((x) => x.remove());
        c.row.append(slot(`${p}.attribute`, c.attr), slot(`${p}.operator`, c.op));
      });
      replace(r.serveCell, r.serve.el, slot(`rules[${i}].variant`, r.serve.el));
      r.card.querySelectorAll(':scope > .rule-error').forEach((x) => x.remove());
      // A whole-rule error focuses the card itself (it has tabindex=-1).
      const ruleErr = slot(`rules[${i}]`, r.card);
      ruleErr.classList.add('rule-error');
      r.card.append(ruleErr);
    });
  }
  (base.rules || []).slice().sort((a, b) => (a.priority || 0) - (b.priority || 0)).forEach((r) => addRule(r));

  typeSel.addEventListener('change', () => {
    type = typeSel.value;
    buildDefault(undefined);
    for (const v of variants) v.valCtl = valueInput(type, undefined, { 'aria-label': 'Variant value' });
    renumberVariants();
    refreshServe();
  });

  // ---- collect the definition from the form
  function collect() {
    const spec = {};
    const key = keyIn.value.trim();
    if (!KEY_RE.test(key)) throw new FieldError('key', 'Use 1–128 letters, digits, "-", "_" or ".".');
    spec.key = key;
    if (nameIn.value.trim()) spec.name = nameIn.value.trim();
    if (descIn.value.trim()) spec.description = descIn.value;
    spec.enabled = enabledIn.checked;
    spec.type = type;
    spec.default_value = read('default_value', defaultCtl);
    if (variants.length) {
      spec.variants = variants.map((v, i) => {
        const out = { key: v.keyI.value.trim(), value: read(`variants[${i}].value`, v.valCtl) };
        if (!out.key) throw new FieldError(`variants[${i}].key`, 'Name the variant.');
        if (weighted.checked) {
          const w = Number(v.weightIn.value);
          if (v.weightIn.value === '' || !(w >= 0 && w <= 100)) throw new FieldError(`variants[${i}].weight`, 'A weight from 0 to 100.');
          out.weight = w;
        }
        return out;
      });
      if (weighted.checked) {
        const sum = Math.round(spec.variants.reduce((s, v) => s + v.weight, 0) * 1000) / 1000;
        if (sum !== 100) throw new FieldError('variants[0].weight', `Weights sum to ${sum}%, not 100%.`);
      }
    }
    if (rules.length) {
      spec.rules = rules.map((r, i) => ({
        conditions: r.conds.map((c, j) => {
          const p = `rules[${i}].conditions[${j}]`;
          const attribute = c.attr.value.trim();
          if (!attribute) throw new FieldError(`${p}.attribute`, 'Name the context attribute.');
          const cond = { attribute, operator: c.op.value };
          const v = read(`${p}.value`, c.operand);
          if (v !== undefined) cond.value = v;
          return cond;
        }),
        variant: read(`rules[${i}].variant`, r.serve),
        priority: i,
      }));
      spec.rules.forEach((r, i) => {
        if (!r.conditions.length) throw new FieldError(`rules[${i}]`, 'A rule needs at least one condition.');
      });
    }
    if (rolloutBox.checked) {
      const p = Number(pct.value);
      if (pct.value === '' || !(p >= 0 && p <= 100)) throw new FieldError('rollout_percentage', 'A percentage from 0 to 100 (up to 3 decimals).');
      spec.rollout_percentage = p;
    }
    const targets = targetsIn.value.split('\n').map((s) => s.trim()).filter(Boolean);
    if (targets.length) spec.targeted_users = targets;
    if (bucketIn.value.trim()) spec.bucket_by = bucketIn.value.trim();
    return spec;
  }

  // ---- saving
  const conflict = h('div', { class: 'notice conflict', role: 'alert', hidden: true });
  const saveBtn = h('button', { type: 'submit', class: 'btn btn-primary', disabled: !canEdit }, isNew ? 'Create flag' : 'Save changes');
  const meta = h('p', { class: 'muted meta' });
  function showMeta() {
    if (flag) meta.textContent = `Version ${flag.version} · updated ${fmtAgo(flag.updated_at)} (${fmtTime(flag.updated_at)})`;
  }
  showMeta();

  let saving = null;
  function save(overwrite) {
    saving = doSave(overwrite).finally(() => (saving = null));
    return saving;
  }
  async function doSave(overwrite) {
    clearErrors();
    conflict.hidden = true;
    let spec;
    try {
      spec = collect();
    } catch (e) {
      if (e instanceof FieldError) showError(e.path, e.message);
      else showError('', e.message);
      return;
    }
    saveBtn.disabled = true;
    try {
      if (isNew) {
        const created = await api.post('/api/v1/flags', spec);
        ctx.toast(`Flag ${created.key} created.`, { kind: 'success' });
        ctx.navigate(`/ui/flags/${seg(created.key)}`, { replace: true });
        return;
      }
      let match = etag;
      if (overwrite) match = (await api.get(`/api/v1/flags/${seg(spec.key)}`)).etag;
      const saved = await api.put(`/api/v1/flags/${seg(spec.key)}`, spec, { ifMatch: match });
      flag = saved;
      etag = saved.etag;
      showMeta();
      ctx.toast(`Saved ${saved.key} (version ${saved.version}).`, { kind: 'success' });
    } catch (e) {
      if (e.status === 412) {
        let theirs = null;
        try {
          theirs = await api.get(`/api/v1/flags/${seg(spec.key)}`);
        } catch {
          // Shown without details.
        }
        replace(conflict,
          h('strong', null, 'Someone else changed this flag while you were editing. '),
          theirs ? `It is now at version ${theirs.version} (updated ${fmtAgo(theirs.updated_at)}). ` : '',
          'Your changes were not saved.',
          h('div', { class: 'row conflict-actions' },
            h('button', { type: 'button', class: 'btn', onclick: () => ctx.navigate(location.pathname, { replace: true }) }, 'Reload their version (discard mine)'),
            h('a', { class: 'btn btn-ghost', href: `/ui/flags/${seg(spec.key)}/history`, target: '_blank' }, 'See what changed'),
            h('button', { type: 'button', class: 'btn btn-danger', onclick: async () => {
              if (await ctx.confirm({ title: 'Overwrite their changes?', body: `Your version of ${spec.key} replaces theirs entirely. Their change stays in the history.`, confirmLabel: 'Overwrite', danger: true })) save(true);
            } }, 'Overwrite with mine')));
        conflict.hidden = false;
        conflict.scrollIntoView({ block: 'nearest' });
        conflict.querySelector('button').focus();
      } else if (e.field) {
        showError(e.field, e.message);
      } else {
        showError('', e.message);
      }
    } finally {
      saveBtn.disabled = !canEdit;
    }
  }

  async function remove() {
    const ok = await ctx.confirm({ title: `Delete ${flag.key}?`, body: `Every caller gets FLAG_NOT_FOUND for “${flag.key}” from now on. This cannot be undone (the history is kept).`, confirmLabel: 'Delete flag', danger: true });
    if (!ok) return;
    try {
      await api.del(`/api/v1/flags/${seg(flag.key)}`, { ifMatch: etag });
      ctx.toast(`Deleted ${flag.key}.`);
      ctx.navigate('/ui/flags');
    } catch (e) {
      toastError(e, e.status === 412 ? 'Changed by someone else meanwhile; reload first' : 'Delete failed');
    }
  }

  // ---- layout
  const lbl = (forId, text) => h('label', { for: forId }, text);
  const banner = h('div', { class: 'banner-slot' });
  const form = h(
    'form',
    { class: 'editor', novalidate: true, onsubmit: (e) => {
      e.preventDefault();
      save(false);
    } },
    general,
    conflict,
    h('section', { class: 'card', 'aria-labelledby': 'sec-basics' },
      h('h2', { id: 'sec-basics' }, 'Basics'),
      h('div', { class: 'grid-2' },
        h('div', { class: 'field' }, lbl('f-key', 'Key'), keyIn, slot('key', keyIn)),
        h('div', { class: 'field' }, lbl('f-name', 'Name'), nameIn, slot('name', nameIn)),
        h('div', { class: 'field' }, lbl('f-type', 'Type'), typeSel, slot('type', typeSel)),
        h('div', { class: 'field field-inline' }, enabledIn, lbl('f-enabled', 'Enabled (serves rules and rollout)')),
      ),
      h('div', { class: 'field' }, lbl('f-desc', 'Description'), descIn, slot('description', descIn)),
      h('div', { class: 'field' }, lbl('f-default', 'Default value'), defaultWrap, h('p', { class: 'hint' }, 'Served when the flag is off or nothing else applies.')),
    ),
    h('section', { class: 'card', 'aria-labelledby': 'sec-variants' },
      h('h2', { id: 'sec-variants' }, 'Variants'),
      h('div', { class: 'field field-inline' }, weighted, lbl('f-weighted', 'Split traffic between variants by weight')),
      h('table', { class: 'table variants' }, h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Weight %'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))), variantList),
      weightSum,
      h('button', { type: 'button', class: 'btn btn-small', onclick: () => {
        addVariant({});
        updateWeightSum();
        refreshServe();
        variants[variants.length - 1].keyI.focus();
      } }, '+ Variant'),
    ),
    h('section', { class: 'card', 'aria-labelledby': 'sec-rules' },
      h('h2', { id: 'sec-rules' }, 'Rules'),
      h('p', { class: 'hint' }, 'Tried top to bottom; the first rule whose conditions all hold decides. Reorder by dragging, with the arrows, or Alt+↑ / Alt+↓ inside a rule.'),
      ruleList,
      ruleStatus,
      h('button', { type: 'button', class: 'btn btn-small', onclick: () => addRule({}, true) }, '+ Rule'),
    ),
    h('section', { class: 'card', 'aria-labelledby': 'sec-rollout' },
      h('h2', { id: 'sec-rollout' }, 'Rollout and targeting'),
      h('div', { class: 'field field-inline' }, rolloutBox, lbl('f-rollout-on', 'Percentage rollout of the "on" value')),
      h('div', { class: 'row rollout' }, slider, pct, h('span', null, '%')),
      rolloutErr,
      h('div', { class: 'grid-2' },
        h('div', { class: 'field' }, lbl('f-targets', 'Targeted users (always on)'), targetsIn, slot('targeted_users', targetsIn)),
        h('div', { class: 'field' }, lbl('f-bucket', 'Bucket by attribute'), bucketIn, slot('bucket_by', bucketIn)),
      ),
    ),
    h('div', { class: 'row save-bar' }, saveBtn, meta),
  );
  updateWeightSum();

  append(root, [
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/ui/flags' }, 'Flags'), ' / '),
    h('div', { class: 'page-head' },
      h('h1', null, isNew ? 'New flag' : flag.key),
      h('span', { class: 'spacer' }),
      !isNew ? h('a', { class: 'btn', href: `/ui/evaluate?flag=${seg(flag.key)}` }, 'Evaluate as…') : null,
      !isNew ? h('a', { class: 'btn', href: `/ui/flags/${seg(flag.key)}/history` }, 'History') : null,
      !isNew && canEdit ? h('button', { type: 'button', class: 'btn btn-danger', onclick: remove }, 'Delete') : null,
    ),
    banner,
    canEdit ? null : h('p', { class: 'notice' }, 'Your role can read this flag but not change it.'),
    form,
  ]);
  if (isNew) keyIn.focus();

  // The detector's banner (ui-platform's component); absent until merged.
  if (!isNew) {
    import('../components/detector-banner.js')
      .then(async (m) => {
        const el = await m.detectorBanner(flag.key, ctx);
        if (el && banner.isConnected) banner.append(el);
      })
      .catch(() => {});
  }

  // A change from someone else while editing: say so before they save.
  const off = ctx.stream.on('flag', async (ev) => {
    if (isNew || ev.key !== flag.key || ev.type === 'snapshot') return;
    // Our own save may be announced before its response arrives.
    if (saving) await saving;
    if (ev.type === 'deleted') {
      replace(conflict, h('strong', null, 'This flag was just deleted by someone else.'));
      conflict.hidden = false;
    } else if (ev.flag && typeof ev.flag.version === 'number' && ev.flag.version > flag.version) {
      replace(conflict,
        h('strong', null, `Version ${ev.flag.version} was just saved by someone else. `),
        'Saving now will be refused unless you choose to overwrite.',
        h('div', { class: 'row conflict-actions' }, h('button', { type: 'button', class: 'btn', onclick: () => ctx.navigate(location.pathname, { replace: true }) }, 'Reload their version')));
      conflict.hidden = false;
    }
  });
  return off;
}

