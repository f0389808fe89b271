//! Flag helpers shared by the flag pages: summaries, filters, the stale rule
//! and the editable part of a stored flag.

/** The fields of a stored flag that make its definition (what PUT accepts). */
export const SPEC_FIELDS = ['key', 'name', 'description', 'enabled', 'type', 'default_value', 'variants', 'rules', 'rollout_percentage', 'targeted_users', 'bucket_by'];

/** The definition part of a stored flag or audit `spec` (drops version, timestamps...). */
export function specOf(flag) {
  const out = {};
  for (const k of SPEC_FIELDS) if (flag[k] !== undefined && flag[k] !== null) out[k] = flag[k];
  return out;
}

/** Has a percentage rollout or weighted variants. */
export function hasRollout(f) {
  return (typeof f.rollout_percentage === 'number') || (Array.isArray(f.variants) && f.variants.some((v) => typeof v.weight === 'number'));
}

const WEEK_MS = 7 * 24 * 3600 * 1000;

/** Stale: not evaluated for 7 days (or never) and created more than 7 days ago. */
export function isStale(f, usage, now = Date.now()) {
  const created = Date.parse(f.created_at || '');
  if (!(now - created > WEEK_MS)) return false;
  const u = usage && usage[f.key];
  const last = u && u.last_evaluated_at ? Date.parse(u.last_evaluated_at) : NaN;
  return Number.isNaN(last) || now - last > WEEK_MS;
}

/** A short text for the rollout column. */
export function rolloutText(f) {
  if (Array.isArray(f.variants) && f.variants.some((v) => typeof v.weight === 'number')) {
    return f.variants.map((v) => `${v.key} ${v.weight ?? 0}%`).join(' · ');
  }
  if (typeof f.rollout_percentage === 'number') return `${f.rollout_percentage}%`;
  return '';
}

/** Filters flags by the list's query: {q, type, enabled, rollout, stale}. */
export function filterFlags(flags, query, usage) {
  const q = (query.q || '').trim().toLowerCase();
  const now = Date.now();
  return flags.filter((f) => {
    if (q && !(f.key.toLowerCase().includes(q) || (f.name || '').toLowerCase().includes(q) || (f.description || '').toLowerCase().includes(q))) return false;
    if (query.type && (f.type || 'boolean') !== query.type) return false;
    if (query.enabled === 'true' && !f.enabled) return false;
    if (query.enabled === 'false' && f.enabled) return false;
    if (query.rollout === 'true' && !hasRollout(f)) return false;
    if (query.rollout === 'false' && hasRollout(f)) return false;
    if (query.stale === 'true' && !isStale(f, usage, now)) return false;
    return true;
  });
}

/** Compact JSON for a value in a cell. */
export function short(v, max = 60) {
  const s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v);
  if (s === undefined) return '';
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
