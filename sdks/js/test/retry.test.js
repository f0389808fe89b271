// The reconnect delay follows the server's `retry:` hint, with the SDK's own
// backoff on repeated failures.
import { test } from "node:test";
import assert from "node:assert/strict";
import { reconnectDelay } from "../src/index.js";

const options = { backoffMin: 250, backoffMax: 30_000 };

test("the server's retry hint is the reconnect delay", () => {
  assert.equal(reconnectDelay(3000, options, 0), 3000);
  assert.equal(reconnectDelay(null, options, 0), 250);
  assert.equal(reconnectDelay(undefined, options, 0), 250);
});

test("repeated failures back off from the hint up to the maximum", () => {
  assert.equal(reconnectDelay(3000, options, 1), 6000);
  assert.equal(reconnectDelay(3000, options, 2), 12000);
  assert.equal(reconnectDelay(3000, options, 5), 30_000);
  assert.equal(reconnectDelay(3000, options, 1e9), 30_000);
  assert.equal(reconnectDelay(null, options, 3), 2000);
});
