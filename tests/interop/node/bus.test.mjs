// Interop: the NATS project's Node client (@nats-io/transport-node) against
// Flagbase's embedded bus: connect, token auth, pub/sub, wildcards, queue
// groups, headers, request/reply, no-responders, unsubscribe-after-N,
// permission errors, Flagbase's own flag events, and reconnection after
// Flagbase restarts on the same bus port.
//
// Needs FLAGBASE_URL (http://127.0.0.1:PORT), FLAGBASE_NATS_URL
// (nats://127.0.0.1:PORT, no credential) and FLAGBASE_TOKEN (an `fbk_` API
// token of a developer). Run by `tests/integration/bus_interop.rs`, which
// restarts Flagbase when this suite publishes on `interop.control.restart`;
// see tests/interop/README.md.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { connect, errors, headers } from '@nats-io/transport-node';

const BASE_URL = process.env.FLAGBASE_URL;
const NATS_URL = process.env.FLAGBASE_NATS_URL;
const TOKEN = process.env.FLAGBASE_TOKEN;
if (!BASE_URL || !NATS_URL || !TOKEN) {
  throw new Error('set FLAGBASE_URL, FLAGBASE_NATS_URL and FLAGBASE_TOKEN; see tests/interop/README.md');
}
const servers = NATS_URL;
/** A safety net against a hung suite, not a timing assertion. */
const PATIENCE = 30_000;

let nc;

before(async () => {
  nc = await connect({ servers, token: TOKEN, name: 'node-interop', maxReconnectAttempts: -1, reconnectTimeWait: 100 });
});

after(async () => {
  await nc?.close();
});

/** Resolves with the next `n` messages of `sub`. */
async function take(sub, n) {
  const out = [];
  if (n === 0) return out;
  for await (const m of sub) {
    out.push(m);
    if (out.length === n) break;
  }
  return out;
}

function within(what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up waiting for ${what}`)), PATIENCE);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next status event of `conn` of type `type`. */
async function nextStatus(conn, type) {
  for await (const s of conn.status()) {
    if (s.type === type) return s;
  }
  throw new Error(`status stream ended before ${type}`);
}

test('token auth: a Flagbase token is admitted, a wrong one refused', async () => {
  assert.equal(nc.isClosed(), false);
  assert.equal(nc.info.proto, 1);
  assert.equal(nc.info.headers, true);
  await assert.rejects(
    connect({ servers, token: 'fbk_nope_nope', reconnect: false }),
    (err) => err instanceof errors.AuthorizationError || /Authorization Violation/.test(String(err)),
  );
});

test('pub/sub with * and > wildcards', async () => {
  const star = nc.subscribe('interop.*.x');
  const full = nc.subscribe('interop.>');
  await nc.flush();
  nc.publish('interop.a.x', 'one');
  nc.publish('interop.a.b.c', 'two');
  nc.publish('interop.b.x', 'three');
  const starred = await within('star', take(star, 2));
  assert.deepEqual(starred.map((m) => [m.subject, m.string()]), [['interop.a.x', 'one'], ['interop.b.x', 'three']]);
  const all = await within('full', take(full, 3));
  assert.deepEqual(all.map((m) => m.subject), ['interop.a.x', 'interop.a.b.c', 'interop.b.x']);
  star.unsubscribe();
  full.unsubscribe();
});

test('queue group: each message goes to one member; plain subscribers get all', async () => {
  const counts = [0, 0];
  const members = [0, 1].map((i) => nc.subscribe('interop.q', { queue: 'workers', callback: () => { counts[i] += 1; } }));
  let plain = 0;
  const watcher = nc.subscribe('interop.q', { callback: () => { plain += 1; } });
  await nc.flush();
  for (let i = 0; i < 20; i++) nc.publish('interop.q', `${i}`);
  // Our own messages come back before the PONG that answers this flush.
  await nc.flush();
  assert.equal(counts[0] + counts[1], 20, `queue members got ${counts}`);
  assert.equal(plain, 20);
  members.forEach((s) => s.unsubscribe());
  watcher.unsubscribe();
});

test('headers travel with the message', async () => {
  const sub = nc.subscribe('interop.h', { max: 1 });
  const h = headers();
  h.set('X-Flag', 'checkout');
  h.append('X-Multi', 'a');
  h.append('X-Multi', 'b');
  nc.publish('interop.h', 'payload', { headers: h });
  const [m] = await within('a message with headers', take(sub, 1));
  assert.equal(m.string(), 'payload');
  assert.equal(m.headers.get('X-Flag'), 'checkout');
  assert.deepEqual(m.headers.values('X-Multi'), ['a', 'b']);
});

test('request/reply', async () => {
  const responder = nc.subscribe('interop.echo', {
    callback: (_err, m) => m.respond(`echo:${m.string()}`),
  });
  await nc.flush();
  const reply = await nc.request('interop.echo', 'hi', { timeout: PATIENCE });
  assert.equal(reply.string(), 'echo:hi');
  responder.unsubscribe();
});

test('a request nobody answers gets no-responders at once', async () => {
  await assert.rejects(
    nc.request('interop.nobody.home', 'x', { timeout: PATIENCE }),
    (err) => (err instanceof errors.RequestError && err.isNoResponders()) || err instanceof errors.NoRespondersError,
  );
});

test('unsubscribe after N messages', async () => {
  const sub = nc.subscribe('interop.max', { max: 3 });
  await nc.flush();
  for (let i = 0; i < 5; i++) nc.publish('interop.max', `${i}`);
  const got = [];
  for await (const m of sub) got.push(m.string());
  assert.deepEqual(got, ['0', '1', '2']);
  assert.equal(sub.isClosed(), true);
});

test('publishing under flagbase.> is refused and the connection stays', async () => {
  const status = nextStatus(nc, 'error');
  nc.publish('flagbase.flag.disabled', 'forged');
  const s = await within('the permission error', status);
  assert.ok(s.error instanceof errors.PermissionViolationError, String(s.error));
  assert.equal(s.error.operation, 'publish');
  assert.equal(s.error.subject, 'flagbase.flag.disabled');
  await nc.flush();
  assert.equal(nc.isClosed(), false);
});

test('a developer may not subscribe to user events', async () => {
  const sub = nc.subscribe('flagbase.user.>');
  const err = await within('the subscription to close', sub.closed);
  assert.ok(err instanceof errors.PermissionViolationError, String(err));
  assert.equal(err.operation, 'subscription');
  assert.equal(err.subject, 'flagbase.user.>');
  await nc.flush();
  assert.equal(nc.isClosed(), false);
});

test("Flagbase's flag events arrive for API changes, in order", async () => {
  const sub = nc.subscribe('flagbase.flag.>');
  await nc.flush();
  const key = 'node-bus-interop';
  const call = async (method, path, body) => {
    const r = await fetch(`${BASE_URL}/api/v1/flags${path}`, {
      method,
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: body && JSON.stringify(body),
    });
    assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${await r.text()}`);
  };
  await call('POST', '', { key, enabled: true, default_value: false });
  await call('PATCH', `/${key}/toggle`);
  await call('DELETE', `/${key}`);
  const events = await within('three flag events', take(sub, 3));
  assert.deepEqual(events.map((m) => m.subject), ['flagbase.flag.created', 'flagbase.flag.toggled', 'flagbase.flag.deleted']);
  const bodies = events.map((m) => m.json());
  assert.ok(bodies.every((b) => b.key === key));
  assert.deepEqual(bodies.map((b) => b.seq - bodies[0].seq), [0, 1, 2]);
  sub.unsubscribe();
});

test('the client reconnects after Flagbase restarts and its subscriptions work again', async () => {
  const sub = nc.subscribe('interop.after');
  await nc.flush();
  const reconnected = nextStatus(nc, 'reconnect');
  // The Rust test restarts Flagbase on the same bus port when it sees this.
  nc.publish('interop.control.restart', '');
  await nc.flush();
  await within('the client to reconnect', reconnected);
  await nc.flush();
  nc.publish('interop.after', 'still here');
  const [m] = await within('a message after the restart', take(sub, 1));
  assert.equal(m.string(), 'still here');
});
