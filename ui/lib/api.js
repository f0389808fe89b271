//! The console's HTTP client: same-origin fetch with the session cookie,
//! `X-CSRF-Token` on every non-GET, JSON error bodies turned into `ApiError`,
//! and the ETag of each response kept for If-Match.

/** An API error: `status` (HTTP), `code` and `message` from the body, `field` when one input is at fault. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || `request failed (${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || 'error';
    this.field = field || null;
  }
}

let csrf = null;
let onUnauthorized = null;

/** Sets the CSRF token returned by /auth/session (null after logout). */
export function setCsrf(token) {
  csrf = token || null;
}

/** What to do on a 401 (the shell navigates to /ui/login). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * Low-level request: returns `{status, etag, body}`; throws ApiError on a
 * non-2xx status. `opts`: `body` (JSON unless FormData), `text` (a raw text body), `ifMatch`, `quiet401`
 * (do not navigate to login, for the session probe and the login form).
 */
export async function request(method, path, opts = {}) {
  const headers = { Accept: 'application/json' };
  let body;
  if (opts.body instanceof FormData) {
    body = opts.body;
  } else if (opts.text !== undefined) {
    headers['Content-Type'] = 'text/plain';
    body = opts.text;
  } else if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  if (opts.ifMatch) headers['If-Match'] = opts.ifMatch;
  let res;
  try {
    res = await fetch(path, { method, headers, body, credentials: 'same-origin', signal: opts.signal });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection and try again.');
  }
  const etag = res.headers.get('ETag');
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const err = data && typeof data === 'object' ? data : {};
    const apiErr = new ApiError(res.status, err.code, err.error, err.field);
    if (res.status === 401 && !opts.quiet401 && onUnauthorized) onUnauthorized(apiErr);
    throw apiErr;
  }
  return { status: res.status, etag, body: data };
}

// The body comes back as is; objects carry a non-enumerable `etag` so that
// sending the object back (PUT) never includes it.
async function bodyOf(method, path, opts) {
  const r = await request(method, path, opts);
  if (r.body && typeof r.body === 'object') {
    Object.defineProperty(r.body, 'etag', { value: r.etag, enumerable: false, configurable: true, writable: true });
  }
  return r.body;
}

export const api = {
  request,
  get: (path, opts = {}) => bodyOf('GET', path, opts),
  post: (path, body, opts = {}) => bodyOf('POST', path, { ...opts, body }),
  put: (path, body, opts = {}) => bodyOf('PUT', path, { ...opts, body }),
  patch: (path, body, opts = {}) => bodyOf('PATCH', path, { ...opts, body }),
  del: (path, opts = {}) => bodyOf('DELETE', path, opts),
  upload: (path, formData, opts = {}) => bodyOf('POST', path, { ...opts, body: formData }),
};

/** Encodes one path segment (flag keys, names). */
export const seg = (s) => encodeURIComponent(String(s));
