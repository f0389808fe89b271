//! The flag list: search and filters kept in the URL, a virtualised table
//! (only the visible rows exist in the DOM, so 10,000 flags stay fast), live
//! rows from the change stream, and a confirmed toggle with reason and undo.

import { h, replace, fmtAgo, append } from '../lib/dom.js';
import { seg } from '../lib/api.js';
import { toastError } from '../lib/ui.js';
import { filterFlags, isStale, rolloutText } from '../lib/flagutil.js';

const ROW_HEIGHT = 44;
const OVERSCAN = 8;

/** Loads every flag, page by page. */
async function loadAll(api) {
  const out = [];
  let cursor = null;
  do {
    const page = await api.get(`/api/v1/flags?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...page.flags);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

export async function render(root, ctx) {
  const { api } = ctx;
  const canEdit = ctx.user.role !== 'user';
  const started = performance.now();
  const query = {
    q: ctx.query.q || '',
    type: ctx.query.type || '',
    enabled: ctx.query.enabled || '',
    rollout: ctx.query.rollout || '',
    stale: ctx.query.stale || '',
  };

  const search = h('input', { type: 'search', id: 'flag-search', 'data-search': true, placeholder: 'Search key, name or description  ( / )', value: query.q, autocomplete: 'off' });
  const sel = (id, label, name, options) => {
    const s = h('select', { id, name }, options.map(([v, t]) => h('option', { value: v, selected: query[name] === v }, t)));
    return [h('label', { for: id, class: 'filter-label' }, label), s];
  };
  const [typeLabel, typeSel] = sel('f-type', 'Type', 'type', [['', 'Any'], ['boolean', 'Boolean'], ['string', 'String'], ['number', 'Number'], ['json', 'JSON']]);
  const [enLabel, enSel] = sel('f-enabled', 'State', 'enabled', [['', 'Any'], ['true', 'On'], ['false', 'Off']]);
  const [roLabel, roSel] = sel('f-rollout', 'Rollout', 'rollout', [['', 'Any'], ['true', 'Has rollout'], ['false', 'No rollout']]);
  const staleBox = h('input', { type: 'checkbox', id: 'f-stale', checked: query.stale === 'true' });
  const count = h('p', { class: 'muted count', role: 'status', 'aria-live': 'polite' });
  const clearBtn = h('button', { type: 'button', class: 'btn btn-ghost' }, 'Clear filters');

  const filters = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter flags', onsubmit: (e) => e.preventDefault() },
    h('label', { for: 'flag-search', class: 'visually-hidden' }, 'Search flags'),
    search,
    h('span', { class: 'filter' }, typeLabel, typeSel),
    h('span', { class: 'filter' }, enLabel, enSel),
    h('span', { class: 'filter' }, roLabel, roSel),
    h('span', { class: 'filter' }, staleBox, h('label', { for: 'f-stale' }, 'Stale only')),
    clearBtn,
  );

  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'table flag-table', 'aria-label': 'Flags', 'aria-rowcount': '0' },
    h('thead', null, h('tr', { 'aria-rowindex': '1' },
      h('th', { scope: 'col', class: 'c-on' }, 'On'),
      h('th', { scope: 'col', class: 'c-key' }, 'Flag'),
      h('th', { scope: 'col', class: 'c-type' }, 'Type'),
      h('th', { scope: 'col', class: 'c-roll' }, 'Rollout'),
      h('th', { scope: 'col', class: 'c-rules' }, 'Rules'),
      h('th', { scope: 'col', class: 'c-upd' }, 'Updated'),
      h('th', { scope: 'col', class: 'c-eval' }, 'Last evaluated'),
    )),
    tbody,
  );
  const scroller = h('div', { class: 'flag-scroll' }, table);
  const empty = h('div', { class: 'empty', hidden: true });

  // Subscribe before loading so a change made meanwhile is applied after it.
  let loaded = false;
  const early = [];
  const offFlag = ctx.stream.on('flag', (ev) => (loaded ? onFlag(ev) : early.push(ev)));
  // Controls appear with the data: a filter used before the flags arrive would act on nothing.
  const wait = h('p', { class: 'muted', role: 'status' }, 'Loading flags…');
  root.append(wait);
  let flags;
  let usage = {};
  try {
    const [all, u] = await Promise.all([loadAll(api), api.get('/api/v1/flags/usage').catch(() => ({ flags: {} }))]);
    flags = all;
    usage = u.flags || {};
  } catch (e) {
    offFlag();
    toastError(e, 'Could not load flags');
    throw e;
  }
  wait.remove();
  append(
    root,
    h('div', { class: 'page-head' },
      h('h1', null, 'Flags'),
      h('span', { class: 'spacer' }),
      h('span', { class: 'live', title: 'Live updates from the change stream' }, h('span', { class: 'live-dot', 'aria-hidden': 'true' }), ' ', h('span', { class: 'live-text' }, 'Live')),
      canEdit ? h('a', { class: 'btn btn-primary', href: '/ui/new-flag' }, '+ New flag') : null,
    ),
    filters,
    count,
    scroller,
    empty,
  );
  const liveText = root.querySelector('.live-text');
  const liveDot = root.querySelector('.live');
  const showLive = (s) => {
    liveText.textContent = s === 'connected' ? 'Live' : s === 'connecting' ? 'Reconnecting…' : 'Offline';
    liveDot.dataset.state = s;
  };
  showLive(ctx.stream.state);

  const byKey = new Map(flags.map((f) => [f.key, f]));
  let shown = [];

  function rowFor(f, index) {
    const on = h('input', {
      type: 'checkbox',
      class: 'switch',
      checked: !!f.enabled,
      disabled: !canEdit,
      'aria-label': `${f.enabled ? 'Turn off' : 'Turn on'} ${f.key}`,
      dataset: { key: f.key },
    });
    on.addEventListener('click', (e) => {
      e.preventDefault();
      toggle(f.key);
    });
    const stale = isStale(f, usage);
    const u = usage[f.key];
    return h(
      'tr',
      { 'aria-rowindex': String(index + 2), dataset: { key: f.key }, class: f.enabled ? 'on' : 'off' },
      h('td', { class: 'c-on' }, on),
      h('td', { class: 'c-key' },
        h('a', { href: `/ui/flags/${seg(f.key)}`, class: 'flag-key' }, f.key),
        f.name && f.name !== f.key ? h('span', { class: 'flag-name muted' }, f.name) : null),
      h('td', { class: 'c-type' }, h('span', { class: 'badge' }, f.type || 'boolean')),
      h('td', { class: 'c-roll' }, rolloutText(f) || h('span', { class: 'muted' }, '—')),
      h('td', { class: 'c-rules' }, String((f.rules || []).length)),
      h('td', { class: 'c-upd' }, h('time', { datetime: f.updated_at, title: f.updated_at }, fmtAgo(f.updated_at))),
      h('td', { class: 'c-eval' }, u && u.last_evaluated_at ? fmtAgo(u.last_evaluated_at) : h('span', { class: 'muted' }, 'never'), stale ? [' ', h('span', { class: 'badge badge-warn' }, 'stale')] : null),
    );
  }

  // Virtualisation: spacer rows above and below the visible window.
  let lastRange = '';
  function paint(force) {
    const top = scroller.scrollTop;
    const height = scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(shown.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const range = `${first}:${last}:${shown.length}`;
    if (!force && range === lastRange) return;
    lastRange = range;
    const rows = [];
    if (first > 0) rows.push(h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: '7', class: `sp`, dataset: { h: first * ROW_HEIGHT } })));
    for (let i = first; i < last; i++) rows.push(rowFor(shown[i], i));
    if (last < shown.length) rows.push(h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: '7', class: 'sp', dataset: { h: (shown.length - last) * ROW_HEIGHT } })));
    // Keep focus on the same switch/link when rows are rebuilt under it.
    const active = document.activeElement;
    const activeKey = active && tbody.contains(active) ? active.closest('tr')?.dataset.key : null;
    const activeClass = active && active.className;
    replace(tbody, rows);
    // Heights go through CSSOM (style attributes are forbidden by the CSP).
    for (const td of tbody.querySelectorAll('td.sp')) td.style.height = `${td.dataset.h}px`;
    // The spacers may have grown the scroller: fill the larger window too.
    if (scroller.clientHeight > height + 1) {
      lastRange = '';
      paint(false);
      return;
    }
    if (activeKey) {
      const tr = [...tbody.children].find((r) => r.dataset.key === activeKey);
      const el = tr && (activeClass ? tr.querySelector(`.${String(activeClass).split(' ')[0]}`) : null);
      if (el) el.focus({ preventScroll: true });
    }
  }

  function applyFilters() {
    shown = filterFlags(flags, query, usage);
    table.setAttribute('aria-rowcount', String(shown.length + 1));
    count.textContent = shown.length === flags.length ? `${flags.length} flag${flags.length === 1 ? '' : 's'}` : `${shown.length} of ${flags.length} flags`;
    const none = shown.length === 0;
    empty.hidden = !none;
    scroller.hidden = none;
    if (none) {
      replace(empty, flags.length === 0
        ? h('p', null, 'No flags yet. ', canEdit ? h('a', { href: '/ui/new-flag' }, 'Create the first one') : 'A developer can create one.', '.')
        : h('p', null, 'No flag matches these filters. ', h('button', { type: 'button', class: 'btn btn-small', onclick: resetFilters }, 'Clear filters')));
    }
    ctx.setQuery(query);
    paint(true);
  }

  function resetFilters() {
    Object.assign(query, { q: '', type: '', enabled: '', rollout: '', stale: '' });
    search.value = '';
    typeSel.value = enSel.value = roSel.value = '';
    staleBox.checked = false;
    applyFilters();
  }

  let searchTimer = null;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      query.q = search.value;
      scroller.scrollTop = 0;
      applyFilters();
    }, 60);
  });
  for (const [s, name] of [[typeSel, 'type'], [enSel, 'enabled'], [roSel, 'rollout']]) {
    s.addEventListener('change', () => {
      query[name] = s.value;
      applyFilters();
    });
  }
  staleBox.addEventListener('change', () => {
    query.stale = staleBox.checked ? 'true' : '';
    applyFilters();
  });
  clearBtn.addEventListener('click', resetFilters);
  scroller.addEventListener('scroll', () => paint(false), { passive: true });
  const onResize = () => paint(true);
  window.addEventListener('resize', onResize);

  async function toggle(key) {
    const seen = byKey.get(key);
    if (!seen) return;
    const turningOn = !seen.enabled;
    const res = await ctx.dialog({
      title: `${turningOn ? 'Turn on' : 'Turn off'} ${key}?`,
      body: turningOn
        ? `“${key}” will start serving its rules and rollout to every caller.`
        : `“${key}” will serve its default (${seen.type === 'boolean' || !seen.type ? 'false' : 'its default value'}) to every caller.`,
      confirmLabel: turningOn ? 'Turn on' : 'Turn off',
      danger: !turningOn,
      input: { label: 'Reason (optional, kept in the audit log)', maxLength: 500 },
    });
    if (!res.ok) return;
    try {
      // Toggle exactly the version the user saw: a change in between is a 412.
      const current = await api.get(`/api/v1/flags/${seg(key)}`);
      if (current.enabled !== seen.enabled) {
        upsert(current);
        ctx.toast(`${key} was already ${current.enabled ? 'on' : 'off'} (changed by someone else).`, { kind: 'error' });
        return;
      }
      const body = res.value && res.value.trim() ? { reason: res.value.trim() } : {};
      const updated = await api.patch(`/api/v1/flags/${seg(key)}/toggle`, body, { ifMatch: current.etag });
      upsert(updated);
      ctx.toast(`${key} is now ${updated.enabled ? 'on' : 'off'}.`, {
        kind: 'success',
        action: {
          label: 'Undo',
          run: async () => {
            try {
              const back = await api.patch(`/api/v1/flags/${seg(key)}/toggle`, { reason: `undo${body.reason ? `: ${body.reason}` : ''}`.slice(0, 500) }, { ifMatch: updated.etag });
              upsert(back);
              ctx.toast(`${key} is ${back.enabled ? 'on' : 'off'} again.`);
            } catch (e) {
              toastError(e, e.status === 412 ? `${key} changed since; not undone` : 'Undo failed');
            }
          },
        },
      });
    } catch (e) {
      toastError(e, `Could not toggle ${key}`);
    }
  }

  function upsert(flag) {
    const old = byKey.get(flag.key);
    // Never replace a newer version with an older one (stream and response race).
    if (old && typeof old.version === 'number' && typeof flag.version === 'number' && flag.version < old.version) return;
    if (old) Object.assign(old, flag);
    else {
      flags.push(flag);
      flags.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      byKey.set(flag.key, flag);
    }
    scheduleRefresh();
  }
  let refreshQueued = false;
  function scheduleRefresh() {
    if (refreshQueued) return;
    refreshQueued = true;
    requestAnimationFrame(() => {
      refreshQueued = false;
      applyFilters();
    });
  }

  function onFlag(ev) {
    if (ev.type === 'deleted') {
      if (byKey.delete(ev.key)) {
        const i = flags.findIndex((f) => f.key === ev.key);
        if (i >= 0) flags.splice(i, 1);
        scheduleRefresh();
      }
    } else if (ev.flag) {
      upsert(ev.flag);
    }
  }
  const offState = ctx.stream.on('state', showLive);

  loaded = true;
  early.forEach(onFlag);
  applyFilters();
  root.dataset.renderMs = String(Math.round(performance.now() - started));
  if (ctx.query.q) search.focus();

  return () => {
    offFlag();
    offState();
    window.removeEventListener('resize', onResize);
    clearTimeout(searchTimer);
  };
}

