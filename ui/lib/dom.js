//! DOM helpers: every element is built with createElement and text nodes, so
//! API data never reaches innerHTML (the CSP and XSS safety depend on it).

/**
 * h('button', {class: 'x', onclick: fn, 'aria-label': 'Close'}, 'text', child)
 * Attributes: `class`, `on<event>` (listener), `dataset` (object), boolean
 * values set/omit the attribute, `value`/`checked`/`selected` as properties.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'dataset') {
        Object.assign(el.dataset, v);
      } else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'indeterminate') {
        el[k] = v;
      } else if (v === true) {
        el.setAttribute(k, '');
      } else {
        el.setAttribute(k, String(v));
      }
    }
  }
  append(el, children);
  return el;
}

/** Appends children (strings become text nodes; arrays are flattened; null skipped). */
export function append(el, ...children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, ...c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Removes every child of `el`. */
export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

let ids = 0;
/** A unique id for label/for and aria-describedby pairs. */
export function uid(prefix = 'id') {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form field: returns {wrap, input, error} with the label and an error slot wired up. */
export function field(label, input, { hint, name } = {}) {
  const id = input.id || uid(name || 'f');
  input.id = id;
  const errId = `${id}-err`;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  const error = h('p', { class: 'field-error', id: errId, hidden: true, role: 'alert' });
  const described = [hintEl ? `${id}-hint` : null, errId].filter(Boolean).join(' ');
  input.setAttribute('aria-describedby', described);
  if (name) input.dataset.field = name;
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl, error);
  return { wrap, input, error };
}

/** Shows (or clears with null) an error message on a field made by `field()`. */
export function setFieldError(f, message) {
  f.error.textContent = message || '';
  f.error.hidden = !message;
  if (message) f.input.setAttribute('aria-invalid', 'true');
  else f.input.removeAttribute('aria-invalid');
}

/** Formats an RFC 3339 / epoch value as a short local date-time. */
export function fmtTime(v) {
  if (v === null || v === undefined || v === '') return '';
  const d = typeof v === 'number' ? new Date(v < 1e12 ? v * 1000 : v) : new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** "3 minutes ago" style relative time for a date. */
export function fmtAgo(v) {
  if (!v) return 'never';
  const d = new Date(typeof v === 'number' && v < 1e12 ? v * 1000 : v);
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (Number.isNaN(s)) return String(v);
  const units = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60]];
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  for (const [u, secs] of units) if (Math.abs(s) >= secs) return rtf.format(-Math.round(s / secs), u);
  return rtf.format(-s, 'second');
}

/** Stable JSON for display (2-space indent). */
export function pretty(v) {
  return JSON.stringify(v, null, 2);
}
