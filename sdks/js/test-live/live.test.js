// The JavaScript SDK against a live Flagbase (started by
// tests/integration/sdk_js.rs, which passes FLAGBASE_URL, FLAGBASE_ADMIN (a
// session that may write flags), FLAGBASE_SERVER_TOKEN and
// FLAGBASE_CLIENT_TOKEN). Not part of `npm test`: it needs that server.
import { test } from "node:test";
import assert from "node:assert/strict";

import { FlagbaseClient } from "../src/index.js";

const env = (name) => {
  const v = process.env[name];
  assert.ok(v, `${name} is not set: run this suite through tests/integration/sdk_js.rs`);
  return v;
};
const base = env("FLAGBASE_URL");
const admin = env("FLAGBASE_ADMIN");
const serverToken = env("FLAGBASE_SERVER_TOKEN");
const clientToken = env("FLAGBASE_CLIENT_TOKEN");

async function api(method, path, body, token = admin) {
  const resp = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

async function serverFlags() {
  const r = await api("GET", "/api/v1/flags?limit=1000", undefined, serverToken);
  assert.equal(r.status, 200);
  return r.body.flags.sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** Resolves with the next change for `key` (rejects after a bound on a hang). */
function nextChange(client, key) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no change for ${key}`)), 30_000);
    const off = client.onChange((c) => {
      if (c.key === key) {
        clearTimeout(timer);
        off();
        resolve(c);
      }
    });
  });
}

test("local mode follows every change and evaluates like the server", async () => {
  const client = await new FlagbaseClient({ baseUrl: base, token: serverToken }).init();
  try {
    assert.equal(client.state, "connected");
    assert.deepEqual(client.snapshot().flags, await serverFlags());
    const ctx = { targetingKey: "josé-ünï-😀", plan: "pro" };
    const rest = await api("POST", "/api/v1/evaluate", { context: ctx }, serverToken);
    for (const e of rest.body.flags) {
      const mine = client.evaluate(e.key, ctx);
      assert.deepEqual([mine.value, mine.variant, mine.reason], [e.value, e.variant, e.reason], e.key);
    }

    const toggled = nextChange(client, "off");
    assert.equal((await api("PATCH", "/api/v1/flags/off/toggle")).status, 200);
    assert.equal((await toggled).kind, "updated");
    assert.equal(client.isEnabled("off", ctx), true);

    const deleted = nextChange(client, "banner");
    assert.equal((await api("DELETE", "/api/v1/flags/banner")).status, 204);
    assert.equal((await deleted).kind, "deleted");
    assert.equal(client.value("banner", ctx, "fallback"), "fallback");

    const created = nextChange(client, "fresh-js");
    const flag = { key: "fresh-js", type: "string", enabled: true, default_value: "x",
      rules: [{ attribute: "country", operator: "in", value: "NL, BE", variant: "benelux" }] };
    assert.equal((await api("POST", "/api/v1/flags", flag)).status, 201);
    await created;
    assert.equal(client.value("fresh-js", { country: "be" }), "benelux");
    assert.deepEqual(client.snapshot().flags, await serverFlags());
  } finally {
    client.close();
  }
});

test("local mode refuses a client token", async () => {
  const client = new FlagbaseClient({ baseUrl: base, token: clientToken });
  await assert.rejects(client.init(), (e) => e.status === 403);
});

test("client mode serves OFREP values and refetches on the change stream", async () => {
  const ctx = { targetingKey: "user-7", plan: "pro" };
  const client = await new FlagbaseClient({ baseUrl: base, token: clientToken, mode: "client", context: ctx }).init();
  try {
    assert.equal(client.state, "connected");
    assert.equal(client.isEnabled("new-checkout-ui"), true);
    const changed = nextChange(client, "new-checkout-ui");
    assert.equal((await api("PATCH", "/api/v1/flags/new-checkout-ui/toggle")).status, 200);
    await changed;
    assert.equal(client.isEnabled("new-checkout-ui"), false);
    assert.equal(client.evaluate("new-checkout-ui").reason, "DISABLED");
    // No definition ever reaches a client token.
    assert.equal((await api("GET", "/api/v1/flags", undefined, clientToken)).status, 403);
  } finally {
    client.close();
  }
});
