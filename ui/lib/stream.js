//! One shared EventSource on the flag change stream (`/api/v1/stream`, the
//! session cookie authenticates it). Pages subscribe with
//! `stream.on('flag', fn)` and receive `{type: 'updated'|'deleted'|'snapshot', key, flag?}`.

export function createStream(url = '/api/v1/stream') {
  const listeners = new Map();
  let es = null;
  let state = 'closed';

  const emit = (name, payload) => {
    for (const fn of listeners.get(name) || []) {
      try {
        fn(payload);
      } catch (e) {
        console.error('stream listener failed', e);
      }
    }
  };
  const setState = (s) => {
    if (s === state) return;
    state = s;
    emit('state', s);
  };
  const parse = (ev) => {
    try {
      return JSON.parse(ev.data);
    } catch {
      return null;
    }
  };

  function open() {
    if (es) return;
    setState('connecting');
    es = new EventSource(url, { withCredentials: true });
    es.addEventListener('open', () => setState('connected'));
    // EventSource reconnects by itself (with Last-Event-ID); report the gap.
    es.addEventListener('error', () => setState(es && es.readyState === EventSource.CLOSED ? 'closed' : 'connecting'));
    es.addEventListener('snapshot', (ev) => {
      const d = parse(ev);
      if (!d) return;
      setState('connected');
      emit('snapshot', d);
      for (const flag of d.flags || []) emit('flag', { type: 'snapshot', key: flag.key, flag });
    });
    es.addEventListener('flag_updated', (ev) => {
      const d = parse(ev);
      if (d && d.flag) emit('flag', { type: 'updated', key: d.flag.key, flag: d.flag, seq: d.seq });
    });
    es.addEventListener('flag_deleted', (ev) => {
      const d = parse(ev);
      if (d) emit('flag', { type: 'deleted', key: d.key, seq: d.seq });
    });
  }

  function close() {
    if (es) es.close();
    es = null;
    setState('closed');
  }

  return {
    open,
    close,
    get state() {
      return state;
    },
    /** Subscribes; returns the unsubscribe function (return it from a page's cleanup). */
    on(name, fn) {
      if (!listeners.has(name)) listeners.set(name, new Set());
      listeners.get(name).add(fn);
      return () => listeners.get(name)?.delete(fn);
    },
  };
}
