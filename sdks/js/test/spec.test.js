// Every shared vector in spec/evaluation through the JavaScript engine:
// hashing on UTF-8 bytes, and evaluation results identical to the Rust
// engine's. A missing or empty vector file fails.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

import { Snapshot, fnv1a32, bucket, position } from "../src/engine.js";

const specDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "spec", "evaluation");
const files = readdirSync(specDir).filter((f) => f.endsWith(".json"));

test("the vector files are there", () => {
  for (const f of ["hashing.json", "order.json", "rules.json", "rollout.json", "variants.json"]) {
    assert.ok(files.includes(f), f);
  }
});

/** Numbers compare numerically, everything else structurally. */
function sameValue(a, b) {
  return assert.deepStrictEqual(a, b);
}

for (const file of files) {
  const cases = JSON.parse(readFileSync(join(specDir, file), "utf8"));
  test(`${file}: ${cases.length} cases`, () => {
    assert.ok(cases.length > 0, `${file} is empty`);
    for (const c of cases) {
      if ("input" in c) {
        assert.equal(fnv1a32(c.input), c.hash, c.description);
        assert.equal(bucket(c.flag_key, c.bucket_value), c.bucket, c.description);
        assert.equal(fnv1a32(`${c.input}:fraction`), c.fraction_hash, c.description);
        assert.equal(position(c.flag_key, c.bucket_value), c.position, c.description);
        continue;
      }
      const snapshot = new Snapshot([c.flag]);
      const got = snapshot.evaluate(c.key ?? c.flag.key, c.context);
      const want = c.expected;
      try {
        sameValue(got.value, want.value);
        assert.equal(got.variant, want.variant ?? null);
        assert.equal(got.reason, want.reason);
        assert.equal(got.errorCode, want.error_code ?? null);
      } catch (e) {
        e.message = `${file}: ${c.description}: ${e.message}`;
        throw e;
      }
    }
  });
}

test("non-ASCII ids hash their UTF-8 bytes, not UTF-16 units", () => {
  // "é" is one UTF-16 unit but two UTF-8 bytes; "😀" two units, four bytes.
  const bytes = (s) => [...new TextEncoder().encode(s)];
  const reference = (s) => bytes(s).reduce((h, b) => Math.imul(h ^ b, 0x01000193) >>> 0, 0x811c9dc5);
  for (const id of ["josé", "用户-42", "😀", "Ünïcødé-ñ"]) {
    assert.equal(fnv1a32(`flag:${id}`), reference(`flag:${id}`), id);
  }
});

test("inline UTF-8 hashing equals hashing TextEncoder's bytes, lone surrogates included", () => {
  const reference = (s) => [...new TextEncoder().encode(s)].reduce((h, b) => Math.imul(h ^ b, 0x01000193) >>> 0, 0x811c9dc5);
  for (const s of ["", "a", "\u007f\u0080", "\u07ff\u0800", "\uffff", "😀x", "\ud800", "a\udc00b", "\ud83d", "ß-Ω-中-𝄞"]) {
    assert.equal(fnv1a32(s), reference(s), JSON.stringify(s));
  }
});
