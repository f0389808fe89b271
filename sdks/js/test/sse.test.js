// The SSE parser: the documented stream, and any split of the bytes gives
// the same events (chunks from fetch end anywhere, even inside a character).
import { test } from "node:test";
import assert from "node:assert/strict";
import { SseParser } from "../src/sse.js";

const enc = new TextEncoder();

function all(chunks) {
  const p = new SseParser();
  return chunks.flatMap((c) => p.feed(c).events);
}

test("the documented stream", () => {
  const p = new SseParser();
  const out = p.feed(enc.encode('retry: 3000\n\nevent: snapshot\nid: 41\ndata: {"seq":41}\n\n: heartbeat\n\nevent: resync\ndata: {}\n\n'));
  assert.equal(out.retry, 3000);
  assert.ok(out.comment);
  assert.deepEqual(out.events, [
    { event: "snapshot", data: '{"seq":41}', id: "41" },
    { event: "resync", data: "{}", id: "41" },
  ]);
});

test("any split gives the same events", () => {
  const body = enc.encode("\ufeffevent: a\r\ndata: x\r\ndata:y\r\n\r\nid: 7\rdata: é\r\rdata\n\n");
  const whole = all([body]);
  assert.deepEqual(whole, [
    { event: "a", data: "x\ny", id: null },
    { event: "message", data: "é", id: "7" },
    { event: "message", data: "", id: "7" },
  ]);
  for (let i = 0; i <= body.length; i++) {
    assert.deepEqual(all([body.slice(0, i), body.slice(i)]), whole, `split at ${i}`);
  }
  assert.deepEqual(all([...body].map((b) => Uint8Array.of(b))), whole);
});
