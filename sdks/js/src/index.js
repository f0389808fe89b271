// Flagbase JavaScript SDK: one client, two modes with the same surface.
//
// * "local" (a server token; backends): every flag definition is held in
//   memory, kept current through GET /api/v1/stream (Server-Sent Events read
//   over fetch, so the Authorization header works in Node), and evaluated in
//   process by the JavaScript port of the engine. Reconnects with backoff and
//   jitter, resumes with Last-Event-ID, takes a fresh snapshot when told.
// * "client" (a client token; browsers and apps): evaluated values for one
//   context from OFREP's bulk endpoint, refetched when the change stream the
//   bulk response advertises says so. No definition ever reaches the client.

import { Snapshot } from "./engine.js";
import { SseParser } from "./sse.js";

export { Snapshot, fnv1a32, bucket, position, compileFlag, evaluateFlag, fold } from "./engine.js";
export { SseParser } from "./sse.js";

const DEFAULTS = {
  mode: "local",
  initTimeout: 10_000,
  backoffMin: 250,
  backoffMax: 30_000,
  idleTimeout: 45_000,
};

const NOT_FOUND = Object.freeze({ value: null, variant: null, reason: "ERROR", errorCode: "FLAG_NOT_FOUND" });

/** An HTTP error answer from Flagbase ({"error", "code"} body). */
export class FlagbaseError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(resp) {
  let code = "UNKNOWN";
  let message = resp.statusText;
  try {
    const body = await resp.json();
    code = body.code ?? body.errorCode ?? code;
    message = body.error ?? body.errorDetails ?? message;
  } catch {
    // Not our error shape (a proxy's page): keep the status line.
  }
  return new FlagbaseError(resp.status, code, message);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const wake = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", wake);
      resolve();
    }, ms);
    signal?.addEventListener("abort", wake, { once: true });
  });
}

/** A delay drawn from [d/2, d], so a fleet does not reconnect in step. */
/**
 * The delay before reconnect number `attempt` (0 after a clean end): the
 * server's `retry:` hint if one arrived, else `backoffMin`, doubled per failed
 * attempt up to `backoffMax`.
 */
export function reconnectDelay(hint, options, attempt) {
  const base = hint ?? options.backoffMin;
  return Math.min(options.backoffMax, base * 2 ** Math.min(attempt, 16));
}

function jitter(d) {
  return d / 2 + (Math.random() * d) / 2;
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class FlagbaseClient {
  /**
   * @param {object} options see index.d.ts (FlagbaseOptions)
   */
  constructor(options) {
    this.options = { ...DEFAULTS, ...options };
    const { baseUrl, token, mode } = this.options;
    if (!/^https?:\/\//.test(baseUrl ?? "")) throw new TypeError("baseUrl must start with http:// or https://");
    if (!token) throw new TypeError("token is required");
    if (mode !== "local" && mode !== "client") throw new TypeError('mode must be "local" or "client"');
    this.base = baseUrl.replace(/\/+$/, "");
    this.fetch = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    this.listeners = new Set();
    this.stateListeners = new Set();
    this._state = "connecting";
    this.closed = new AbortController();
    // The server's last `retry:` hint (ms): the base reconnect delay.
    this.retryHint = null;
    // Local mode: definitions. Client mode: evaluations by key.
    this.snapshotState = { seq: 0, flags: new Map(), engine: new Snapshot() };
    this.evaluations = new Map();
    this.context = this.options.context ?? {};
    this.etag = null;
    this.resumable = false;
  }

  /** "connecting" | "connected" | "disconnected" | "rejected" | "closed". */
  get state() {
    return this._state;
  }

  /** Sequence number of the last change applied (local mode). */
  get seq() {
    return this.snapshotState.seq;
  }

  setState(s) {
    if (this._state === s || this._state === "closed") return;
    this._state = s;
    for (const f of this.stateListeners) f(s);
  }

  /** Calls `f(state)` on every connection state change; returns an unsubscribe function. */
  onStateChange(f) {
    this.stateListeners.add(f);
    return () => this.stateListeners.delete(f);
  }

  /** Calls `f({key, kind, seq})` after each change; returns an unsubscribe function. */
  onChange(f) {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  emit(changes) {
    for (const c of changes) for (const f of this.listeners) f(c);
  }

  /**
   * Loads the flags (first snapshot or OFREP answer), then keeps them current
   * in the background. Falls back to `bootstrap` when the server cannot be
   * reached within `initTimeout`; fails when it refuses the credential.
   */
  async init() {
    const boot = this.options.bootstrap;
    if (boot) this.applyBootstrap(boot);
    let settle;
    const first = new Promise((resolve) => (settle = resolve));
    this.loop = this.options.mode === "local" ? this.runLocal(settle) : this.runClient(settle);
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(new Error(`no answer from ${this.base} within ${this.options.initTimeout} ms`)), this.options.initTimeout);
    });
    const outcome = await Promise.race([first, timeout]);
    clearTimeout(timer);
    if (outcome === true) return this;
    const refused = outcome instanceof FlagbaseError && (outcome.status === 401 || outcome.status === 403);
    if (boot && !refused) return this;
    this.close();
    throw outcome;
  }

  applyBootstrap(boot) {
    if (this.options.mode === "local") {
      const flags = new Map(boot.flags.map((f) => [f.key, f]));
      this.snapshotState = { seq: boot.seq ?? 0, flags, engine: new Snapshot(flags.values()) };
    } else {
      this.evaluations = new Map(boot.flags.map((e) => [e.key, e]));
    }
  }

  /** What `bootstrap` accepts: the definitions (local) or evaluations (client) in force. */
  snapshot() {
    if (this.options.mode === "local") {
      const flags = [...this.snapshotState.flags.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      return { seq: this.snapshotState.seq, flags };
    }
    return { flags: [...this.evaluations.values()] };
  }

  /** Flag keys held, sorted. */
  keys() {
    const m = this.options.mode === "local" ? this.snapshotState.flags : this.evaluations;
    return [...m.keys()].sort();
  }

  /**
   * The evaluation of `key`: {value, variant, reason, errorCode}. In local
   * mode for `ctx`; in client mode for the client's context (`ctx` is
   * ignored: use setContext).
   */
  evaluate(key, ctx = {}) {
    if (this.options.mode === "local") return this.snapshotState.engine.evaluate(key, ctx);
    return this.evaluations.get(key) ?? NOT_FOUND;
  }

  /** Whether boolean flag `key` is on (false for unknown flags). */
  isEnabled(key, ctx) {
    return this.evaluate(key, ctx).value === true;
  }

  /** The variant key served, or null. */
  variant(key, ctx) {
    return this.evaluate(key, ctx).variant ?? null;
  }

  /** The value served, or `fallback` for an unknown flag. */
  value(key, ctx, fallback = null) {
    const e = this.evaluate(key, ctx);
    return e.errorCode ? fallback : e.value;
  }

  /** Stops the stream; the last values keep serving. */
  close() {
    this.closed.abort();
    this.setState("closed");
  }

  request(path, init = {}) {
    return this.fetch(path.startsWith("http") ? path : `${this.base}${path}`, {
      ...init,
      headers: { Authorization: `Bearer ${this.options.token}`, ...(init.headers ?? {}) },
    });
  }

  // --- the stream, shared by both modes ---------------------------------------

  /**
   * Reads one SSE response until it ends. `onEvent` returns "resync" to stop
   * early. Resolves "resync" (clean end) or throws (failure, idle timeout).
   */
  async readStream(resp, onEvent) {
    const parser = new SseParser();
    const reader = resp.body.getReader();
    const idle = this.options.idleTimeout;
    // One listener per stream, not per chunk.
    const signal = this.closed.signal;
    let onAbort;
    const aborted = new Promise((resolve) => {
      onAbort = () => resolve({ done: true });
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await this.readChunks(reader, parser, idle, aborted, onEvent);
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  async readChunks(reader, parser, idle, aborted, onEvent) {
    for (;;) {
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("stream idle")), idle);
      });
      let chunk;
      try {
        chunk = await Promise.race([reader.read(), timeout, aborted]);
      } catch (e) {
        reader.cancel().catch(() => {});
        throw e;
      } finally {
        clearTimeout(timer);
      }
      if (chunk.done) {
        reader.cancel().catch(() => {});
        return "resync";
      }
      const parsed = parser.feed(chunk.value);
      // The server's `retry:` hint, bounded so a hostile one cannot park us.
      if (parsed.retry != null) this.retryHint = Math.min(parsed.retry, this.options.backoffMax);
      for (const ev of parsed.events) {
        if ((await onEvent(ev)) === "resync") {
          reader.cancel().catch(() => {});
          return "resync";
        }
      }
    }
  }

  /** Connect, read, back off, reconnect, until closed. */
  async reconnectLoop(connectOnce, settle) {
    let attempt = 0;
    const signal = this.closed.signal;
    while (!signal.aborted) {
      let delay;
      try {
        await connectOnce(() => {
          attempt = 0;
        });
        delay = jitter(reconnectDelay(this.retryHint, this.options, 0));
      } catch (e) {
        if (signal.aborted) break;
        const rejected = e instanceof FlagbaseError && (e.status === 401 || e.status === 403);
        this.setState(rejected ? "rejected" : "disconnected");
        this.lastError = e;
        settle(e);
        const step = reconnectDelay(this.retryHint, this.options, attempt);
        attempt++;
        delay = jitter(rejected ? this.options.backoffMax : step);
      }
      await sleep(delay, signal);
      if (!signal.aborted && this._state !== "rejected") this.setState("connecting");
    }
  }

  // --- local mode ---------------------------------------------------------------

  async runLocal(settle) {
    await this.reconnectLoop(async (connected) => {
      const headers = { Accept: "text/event-stream" };
      if (this.resumable) headers["Last-Event-ID"] = String(this.snapshotState.seq);
      const resp = await this.request("/api/v1/stream", { headers, signal: this.closed.signal });
      if (!resp.ok) throw await errorOf(resp);
      if (this.resumable) {
        this.setState("connected");
        connected();
      }
      await this.readStream(resp, (ev) => {
        if (ev.event === "resync") return "resync";
        this.applyLocal(ev);
        if (ev.event === "snapshot") {
          this.resumable = true;
          this.setState("connected");
          connected();
          settle(true);
        }
      });
    }, settle);
  }

  applyLocal(ev) {
    const cur = this.snapshotState;
    let next;
    let changes;
    switch (ev.event) {
      case "snapshot": {
        const data = JSON.parse(ev.data);
        const flags = new Map(data.flags.map((f) => [f.key, f]));
        next = { seq: data.seq, flags, engine: new Snapshot(flags.values()) };
        changes = [];
        for (const [k, f] of flags) if (!same(cur.flags.get(k), f)) changes.push({ key: k, kind: "updated", seq: data.seq });
        for (const k of cur.flags.keys()) if (!flags.has(k)) changes.push({ key: k, kind: "deleted", seq: data.seq });
        break;
      }
      case "flag_updated": {
        const data = JSON.parse(ev.data);
        if (data.seq <= cur.seq) return;
        const flags = new Map(cur.flags);
        flags.set(data.flag.key, data.flag);
        next = { seq: data.seq, flags, engine: cur.engine.withFlag(data.flag) };
        changes = [{ key: data.flag.key, kind: "updated", seq: data.seq }];
        break;
      }
      case "flag_deleted": {
        const data = JSON.parse(ev.data);
        if (data.seq <= cur.seq) return;
        const flags = new Map(cur.flags);
        flags.delete(data.key);
        next = { seq: data.seq, flags, engine: cur.engine.withoutFlag(data.key) };
        changes = [{ key: data.key, kind: "deleted", seq: data.seq }];
        break;
      }
      default:
        return; // events for newer clients
    }
    this.snapshotState = next;
    this.emit(changes);
  }

  // --- client mode --------------------------------------------------------------

  /** Switches the context the values are for and refetches them (client mode). */
  async setContext(ctx) {
    this.context = ctx ?? {};
    this.etag = null;
    await this.refetch();
  }

  /** Fetches the evaluations for the context (OFREP bulk, conditional on the ETag). */
  async refetch() {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (this.etag) headers["If-None-Match"] = this.etag;
    const resp = await this.request("/ofrep/v1/evaluate/flags", {
      method: "POST",
      headers,
      body: JSON.stringify({ context: this.context }),
      signal: this.closed.signal,
    });
    if (resp.status === 304) return;
    if (!resp.ok) throw await errorOf(resp);
    const body = await resp.json();
    this.etag = resp.headers.get("ETag");
    this.eventStreams = body.eventStreams ?? this.eventStreams;
    const next = new Map();
    for (const f of body.flags ?? []) {
      next.set(
        f.key,
        f.errorCode
          ? { key: f.key, value: null, variant: null, reason: "ERROR", errorCode: f.errorCode }
          : { key: f.key, value: f.value, variant: f.variant ?? null, reason: f.reason, errorCode: null },
      );
    }
    const changes = [];
    for (const [k, e] of next) if (!same(this.evaluations.get(k), e)) changes.push({ key: k, kind: "updated", seq: null });
    for (const k of this.evaluations.keys()) if (!next.has(k)) changes.push({ key: k, kind: "deleted", seq: null });
    this.evaluations = next;
    this.emit(changes);
  }

  /**
   * The SSE entry the bulk response advertises, as an absolute URL; Flagbase's
   * own /ofrep/v1/events when none is advertised.
   */
  changeStreamUrl() {
    const streams = Array.isArray(this.eventStreams) ? this.eventStreams : [];
    const sse = streams.find((s) => (s.type ?? "sse").toLowerCase() === "sse" && (s.url || s.endpoint));
    if (!sse) return `${this.base}/ofrep/v1/events`;
    // ADR-0008: `endpoint` is {origin?, requestUri}; without an origin the
    // OFREP base URL's origin goes in front. A plain `url` string is read too.
    const endpoint = sse.endpoint;
    if (endpoint && typeof endpoint === "object") {
      return new URL(endpoint.requestUri ?? "/ofrep/v1/events", endpoint.origin ?? new URL(this.base).origin).toString();
    }
    return new URL(sse.url ?? endpoint, `${this.base}/`).toString();
  }

  async runClient(settle) {
    await this.reconnectLoop(async (connected) => {
      // Every (re)connect refetches: changes may have happened while away.
      await this.refetch();
      const url = this.changeStreamUrl();
      const resp = await this.request(url, { headers: { Accept: "text/event-stream" }, signal: this.closed.signal });
      if (!resp.ok) throw await errorOf(resp);
      this.setState("connected");
      connected();
      settle(true);
      await this.readStream(resp, async (ev) => {
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch {
          return undefined;
        }
        if (data?.type === "refetchEvaluation" && (!data.etag || data.etag !== this.etag)) await this.refetch();
        else if (ev.event === "resync") return "resync";
        return undefined;
      });
    }, settle);
  }
}

/** `new FlagbaseClient(options)`. */
export function createClient(options) {
  return new FlagbaseClient(options);
}
