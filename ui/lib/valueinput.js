//! Typed inputs for flag values and condition operands: each returns
//! `{el, get()}`, where get() returns the JSON value or throws an Error
//! whose message suits a field error.

import { h } from './dom.js';

/** An input for a value of a flag type (boolean, string, number, json). */
export function valueInput(type, value, attrs = {}) {
  type = type || 'boolean';
  if (type === 'boolean') {
    const s = h('select', attrs, h('option', { value: 'true', selected: value === true }, 'true'), h('option', { value: 'false', selected: value !== true }, 'false'));
    return { el: s, get: () => s.value === 'true' };
  }
  if (type === 'number') {
    const i = h('input', { ...attrs, type: 'number', step: 'any', inputmode: 'decimal', value: typeof value === 'number' ? String(value) : '' });
    return {
      el: i,
      get: () => {
        if (i.value.trim() === '') throw new Error('Enter a number.');
        const n = Number(i.value);
        if (!Number.isFinite(n)) throw new Error('Enter a number.');
        return n;
      },
    };
  }
  if (type === 'json') {
    const t = h('textarea', { ...attrs, rows: '3', spellcheck: 'false', value: value === undefined ? '' : JSON.stringify(value, null, 2) });
    return {
      el: t,
      get: () => {
        let v;
        try {
          v = JSON.parse(t.value);
        } catch (e) {
          throw new Error(`Not valid JSON: ${e.message}`);
        }
        if (v === null) throw new Error('JSON values cannot be null.');
        return v;
      },
    };
  }
  const i = h('input', { ...attrs, type: 'text', value: typeof value === 'string' ? value : value === undefined ? '' : String(value) });
  return { el: i, get: () => i.value };
}

/** Operators with what their operand looks like. */
export const OPERATORS = [
  ['equals', 'equals', 'scalar'],
  ['not_equals', 'does not equal', 'scalar'],
  ['in', 'is one of', 'list'],
  ['not_in', 'is not one of', 'list'],
  ['contains', 'contains', 'scalar'],
  ['not_contains', 'does not contain', 'scalar'],
  ['starts_with', 'starts with', 'text'],
  ['ends_with', 'ends with', 'text'],
  ['matches', 'matches regex', 'regex'],
  ['gt', '>', 'number'],
  ['gte', '≥', 'number'],
  ['lt', '<', 'number'],
  ['lte', '≤', 'number'],
  ['semver_eq', 'version =', 'semver'],
  ['semver_gt', 'version >', 'semver'],
  ['semver_lt', 'version <', 'semver'],
  ['before', 'before (date)', 'date'],
  ['after', 'after (date)', 'date'],
  ['exists', 'exists', 'none'],
  ['not_exists', 'does not exist', 'none'],
];

export function operandKind(op) {
  const o = OPERATORS.find((x) => x[0] === op);
  return o ? o[2] : 'scalar';
}

const SEMVER = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function pad(n) {
  return String(n).padStart(2, '0');
}
/** RFC 3339 -> the value of a datetime-local input (local time). */
function toLocalInput(v) {
  const d = new Date(v);
  if (typeof v !== 'string' || Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** An operand input that matches the operator. */
export function operandInput(op, value, attrs = {}) {
  const kind = operandKind(op);
  if (kind === 'none') {
    return { el: h('span', { class: 'muted operand-none' }, 'no value needed'), get: () => undefined };
  }
  if (kind === 'list') {
    const text = Array.isArray(value) ? value.join(', ') : typeof value === 'string' ? value : '';
    const i = h('input', { ...attrs, type: 'text', value: text, placeholder: 'US, CA, MX' });
    return {
      el: i,
      get: () => {
        const items = i.value.split(',').map((s) => s.trim()).filter(Boolean);
        if (!items.length) throw new Error('Enter at least one value, separated by commas.');
        // Keep numbers the user had as numbers; everything else as strings
        // (the engine compares numeric strings exactly, as numbers).
        const orig = Array.isArray(value) ? value : [];
        return items.map((s) => (orig.some((o) => typeof o === 'number' && String(o) === s) ? Number(s) : s));
      },
    };
  }
  if (kind === 'number') {
    const i = h('input', { ...attrs, type: 'text', inputmode: 'decimal', value: value === undefined || value === null ? '' : String(value), placeholder: '21' });
    return {
      el: i,
      get: () => {
        const s = i.value.trim();
        if (!NUMERIC.test(s)) throw new Error('Enter a number (e.g. 21 or 0.5).');
        // Exact: large integers and long decimals stay strings.
        const n = Number(s);
        return String(n) === s ? n : s;
      },
    };
  }
  if (kind === 'semver') {
    const i = h('input', { ...attrs, type: 'text', value: typeof value === 'string' ? value : '', placeholder: '2.4.0' });
    return {
      el: i,
      get: () => {
        const s = i.value.trim();
        if (!SEMVER.test(s)) throw new Error('Enter a full SemVer version such as 2.4.0 (2.4 is not one).');
        return s;
      },
    };
  }
  if (kind === 'date') {
    const i = h('input', { ...attrs, type: 'datetime-local', value: toLocalInput(value) });
    return {
      el: i,
      get: () => {
        const d = new Date(i.value);
        if (!i.value || Number.isNaN(d.getTime())) throw new Error('Pick a date and time.');
        return d.toISOString();
      },
    };
  }
  if (kind === 'regex') {
    const i = h('input', { ...attrs, type: 'text', class: 'mono', value: typeof value === 'string' ? value : '', placeholder: '^user-[0-9]+$', spellcheck: 'false' });
    return {
      el: i,
      get: () => {
        if (!i.value) throw new Error('Enter a regular expression.');
        return i.value;
      },
    };
  }
  // scalar / text: strings; booleans and numbers the definition had stay typed.
  const text = value === undefined || value === null ? '' : typeof value === 'string' ? value : String(value);
  const i = h('input', { ...attrs, type: 'text', value: text });
  return {
    el: i,
    get: () => {
      if (i.value === '') throw new Error('Enter a value.');
      if (typeof value === 'number' && String(value) === i.value) return value;
      if (typeof value === 'boolean' && String(value) === i.value) return value;
      return i.value;
    },
  };
}
