//! The console shell: session bootstrap, header and navigation, theme,
//! keyboard shortcuts and the History API router that loads page modules.

import { api, request, setCsrf, setUnauthorizedHandler } from './lib/api.js';
import { h, clear, replace } from './lib/dom.js';
import { createStream } from './lib/stream.js';
import { toast, confirm, dialog, addShortcut, installShortcuts, showShortcuts, errorBox, loading } from './lib/ui.js';

// The route table: one row per line (ui-platform appends its rows here).
// `public`: reachable without a session; `admin`: admins only.
const routes = [
  { path: '/ui/login', page: () => import('./pages/login.js'), title: 'Sign in', public: true },
  { path: '/ui/setup', page: () => import('./pages/setup.js'), title: 'Set up', public: true },
  { path: '/ui/flags', page: () => import('./pages/flags.js'), title: 'Flags' },
  // Not /ui/flags/new: "new" is a valid flag key.
  { path: '/ui/new-flag', page: () => import('./pages/flag.js'), title: 'New flag' },
  { path: '/ui/flags/:key', page: () => import('./pages/flag.js'), title: 'Flag' },
  { path: '/ui/flags/:key/history', page: () => import('./pages/history.js'), title: 'Flag history' },
  { path: '/ui/evaluate', page: () => import('./pages/evaluate.js'), title: 'Evaluate' },
  { path: '/ui/history', page: () => import('./pages/history.js'), title: 'History' },
  { path: '/ui/gateway', page: () => import('./pages/gateway.js'), title: 'Gateway' },
  { path: '/ui/functions', page: () => import('./pages/functions.js'), title: 'Functions' },
  { path: '/ui/functions/:name', page: () => import('./pages/function.js'), title: 'Function' },
  { path: '/ui/anomalies', page: () => import('./pages/anomalies.js'), title: 'Anomalies' },
  { path: '/ui/users', page: () => import('./pages/users.js'), title: 'Users', admin: true },
  { path: '/ui/tokens', page: () => import('./pages/tokens.js'), title: 'Tokens' },
];

// The header's navigation (pages may not be merged yet: a missing page shows "not found").
const nav = [
  { href: '/ui/flags', label: 'Flags' },
  { href: '/ui/evaluate', label: 'Evaluate' },
  { href: '/ui/history', label: 'History' },
  { href: '/ui/gateway', label: 'Gateway' },
  { href: '/ui/functions', label: 'Functions' },
  { href: '/ui/anomalies', label: 'Anomalies' },
  { href: '/ui/users', label: 'Users', admin: true },
  { href: '/ui/tokens', label: 'Tokens' },
];

const main = document.getElementById('main');
const header = document.getElementById('header');
const stream = createStream();
let user = null;
let cleanup = null;
let renderSeq = 0;
let firstRender = true;
let rendered = '';

// Theme: `prefers-color-scheme` unless the user picked one (stored in localStorage).
const THEME_KEY = 'flagbase.theme';
function applyTheme(theme) {
  if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
function currentTheme() {
  const t = document.documentElement.dataset.theme;
  if (t) return t;
  return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}
function toggleTheme() {
  const next = currentTheme() === 'dark' ? 'light' : 'dark';
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
  renderHeader();
}
applyTheme(localStorage.getItem(THEME_KEY));

function compile(path) {
  const names = [];
  const re = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:(\w+)/g, (_, n) => {
    names.push(n);
    return '([^/]+)';
  });
  return { re: new RegExp(`^${re}/?$`), names };
}
const compiled = routes.map((r) => ({ ...r, ...compile(r.path) }));

function match(pathname) {
  for (const r of compiled) {
    const m = r.re.exec(pathname);
    if (m) {
      const params = {};
      r.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1])));
      return { route: r, params };
    }
  }
  return null;
}

/** Navigates within the console (pushState unless `replace`). */
export function navigate(path, opts = {}) {
  if (opts.replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

/** Updates the URL query without reloading or re-rendering (null/'' removes a key). */
function setQuery(obj) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(obj)) {
    if (v === null || v === undefined || v === '' || v === false) url.searchParams.delete(k);
    else url.searchParams.set(k, String(v));
  }
  history.replaceState(null, '', url.pathname + url.search);
  rendered = url.pathname + url.search;
}

function isAdmin() {
  return user && user.role === 'admin';
}

function renderHeader() {
  if (!user) {
    header.hidden = true;
    clear(header);
    return;
  }
  header.hidden = false;
  const here = location.pathname;
  const links = nav
    .filter((n) => !n.admin || isAdmin())
    .map((n) => {
      const current = here === n.href || here.startsWith(`${n.href}/`);
      return h('li', null, h('a', { href: n.href, 'aria-current': current ? 'page' : null }, n.label));
    });
  const dark = currentTheme() === 'dark';
  const menuId = 'user-menu';
  const menuButton = h('button', { type: 'button', class: 'btn btn-ghost', 'aria-haspopup': 'true', 'aria-expanded': 'false', 'aria-controls': menuId }, user.email, ' ▾');
  const menu = h(
    'div',
    { class: 'menu', id: menuId, hidden: true },
    h('p', { class: 'muted' }, `Role: ${user.role}`),
    h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => showShortcuts() }, 'Keyboard shortcuts (?)'),
    h('button', { type: 'button', class: 'btn btn-ghost', onclick: logout }, 'Sign out'),
  );
  const closeMenu = () => {
    menu.hidden = true;
    menuButton.setAttribute('aria-expanded', 'false');
  };
  menuButton.addEventListener('click', () => {
    menu.hidden = !menu.hidden;
    menuButton.setAttribute('aria-expanded', String(!menu.hidden));
    if (!menu.hidden) menu.querySelector('button').focus();
  });
  menu.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      closeMenu();
      menuButton.focus();
    }
  });
  menu.addEventListener('focusout', (e) => {
    if (!menu.contains(e.relatedTarget) && e.relatedTarget !== menuButton) closeMenu();
  });
  replace(
    header,
    h('a', { class: 'brand', href: '/ui/flags' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '⚑'), 'Flagbase'),
    h('nav', { 'aria-label': 'Main' }, h('ul', { class: 'nav' }, links)),
    h(
      'div',
      { class: 'header-tools' },
      h('button', { type: 'button', class: 'btn btn-ghost', id: 'theme-toggle', 'aria-pressed': String(dark), onclick: toggleTheme }, dark ? '☀ Light' : '☾ Dark'),
      h('div', { class: 'menu-wrap' }, menuButton, menu),
    ),
  );
}

async function logout() {
  try {
    await api.del('/auth/session');
  } catch {
    // Signed out locally either way; the server session expires on its own.
  }
  setSession(null);
  navigate('/ui/login', { replace: true });
}

/** Sets (or clears) the signed-in user and CSRF token. */
function setSession(session) {
  user = session ? session.user : null;
  setCsrf(session ? session.csrf_token : null);
  if (user) stream.open();
  else stream.close();
  renderHeader();
}

/** Asks the server for the current session; null when signed out. */
async function loadSession() {
  try {
    const r = await request('GET', '/auth/session', { quiet401: true });
    return r.body;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

async function render() {
  const seq = ++renderSeq;
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  const url = new URL(location.href);
  rendered = url.pathname + url.search;
  let path = url.pathname;
  if (path === '/ui' || path === '/ui/' || path === '/') {
    history.replaceState(null, '', '/ui/flags');
    path = '/ui/flags';
  }
  const found = match(path);
  if (found && !found.route.public && !user) {
    const next = encodeURIComponent(path + url.search);
    history.replaceState(null, '', `/ui/login?next=${next}`);
    return render();
  }
  renderHeader();
  loading(main);
  if (!found) {
    document.title = 'Not found · Flagbase';
    replace(main, h('h1', null, 'Page not found'), h('p', null, 'There is nothing at this address. ', h('a', { href: '/ui/flags' }, 'Go to flags')));
    return;
  }
  if (found.route.admin && !isAdmin()) {
    replace(main, h('h1', null, 'Admins only'), h('p', null, 'Your role cannot see this page.'));
    return;
  }
  document.title = `${found.route.title} · Flagbase`;
  let mod;
  try {
    mod = await found.route.page();
  } catch (e) {
    if (seq !== renderSeq) return;
    replace(main, h('h1', null, found.route.title), errorBox(new Error('This page could not be loaded.')));
    console.error(e);
    return;
  }
  if (seq !== renderSeq) return;
  const ctx = {
    api,
    params: found.params,
    query: Object.fromEntries(url.searchParams),
    navigate,
    user,
    stream,
    toast,
    confirm,
    dialog,
    setQuery,
    setSession,
    isAdmin,
  };
  const root = h('div', { class: 'page' });
  replace(main, root);
  try {
    const c = await mod.render(root, ctx);
    if (seq !== renderSeq) {
      if (typeof c === 'function') c();
      return;
    }
    if (typeof c === 'function') cleanup = c;
  } catch (e) {
    if (seq !== renderSeq) return;
    if (e && e.status === 401) return;
    console.error(e);
    replace(root, h('h1', null, found.route.title), errorBox(e));
  }
  // After an in-app navigation, move focus to the new page for screen
  // readers (unless the page focused something itself); a fresh load keeps
  // the document start, so the skip link is the first Tab stop.
  const first = firstRender;
  firstRender = false;
  if (!first && seq === renderSeq && (document.activeElement === document.body || !document.activeElement)) {
    const h1 = main.querySelector('h1');
    if (h1) {
      h1.tabIndex = -1;
      h1.focus({ preventScroll: true });
    }
  }
}

// Same-origin links under /ui/ navigate without a reload.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest && e.target.closest('a[href]');
  // In-page anchors (the skip link) keep the browser's own behaviour.
  if (!a || a.target || a.hasAttribute('download') || a.getAttribute('href').startsWith('#')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/')) return;
  e.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});
// A fragment change (the skip link) also fires popstate: only a new path or query re-renders.
window.addEventListener('popstate', () => {
  if (location.pathname + location.search !== rendered) render();
});

setUnauthorizedHandler(() => {
  if (!user) return;
  setSession(null);
  toast('Your session has ended. Please sign in again.', { kind: 'error' });
  navigate(`/ui/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
});

installShortcuts();
addShortcut('/', 'Focus the search box', () => {
  const s = document.querySelector('[data-search]') || document.querySelector('input[type="search"]');
  if (s) s.focus();
});
addShortcut('g f', 'Go to flags', () => user && navigate('/ui/flags'));
addShortcut('g e', 'Go to evaluate', () => user && navigate('/ui/evaluate'));
addShortcut('g h', 'Go to history', () => user && navigate('/ui/history'));
addShortcut('n', 'New flag', () => user && user.role !== 'user' && navigate('/ui/new-flag'));
addShortcut('?', 'Show keyboard shortcuts', () => showShortcuts());

(async function boot() {
  try {
    setSession(await loadSession());
  } catch (e) {
    replace(main, errorBox(e));
    return;
  }
  document.body.dataset.ready = 'true';
  render();
})();
