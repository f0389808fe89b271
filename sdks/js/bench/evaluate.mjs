// JavaScript SDK local evaluation cost per check, on the flags of the Rust
// benches (crates/flagbase-engine/benches, crates/flagbase-sdk/benches):
// `client.isEnabled` (what applications call) and the bare engine
// `Snapshot.evaluate`, interleaved in rounds; prints the median ns/check.
//   node sdks/js/bench/evaluate.mjs
import { FlagbaseClient, Snapshot } from "../src/index.js";

const tenRules = Array.from({ length: 9 }, (_, i) => ({
  attribute: "role", operator: "equals", value: `role-${i}`, variant: false, priority: i,
}));
tenRules.push({ attribute: "role", operator: "equals", value: "developer", variant: true, priority: 9 });
const flags = [
  { key: "simple", enabled: true, default_value: true },
  { key: "one-rule", enabled: true, rules: [{ attribute: "role", operator: "equals", value: "developer", variant: true }] },
  { key: "ten-rules", enabled: true, rules: tenRules },
  { key: "rollout", enabled: true, rollout_percentage: 25 },
  { key: "variants", type: "string", enabled: true, default_value: "none",
    variants: ["a", "b", "c", "d"].map((k) => ({ key: k, value: k, weight: 25 })) },
];

// A client started offline from a bootstrap (nothing listens on port 9).
const client = await new FlagbaseClient({
  baseUrl: "http://127.0.0.1:9", token: "bench", bootstrap: { seq: 1, flags }, initTimeout: 500, backoffMin: 60_000,
}).init();
const engine = new Snapshot(flags);
const ctx = { targetingKey: "user-42", role: "developer" };
const N = 200_000;

function time(f) {
  const start = process.hrtime.bigint();
  let sink = 0;
  for (let i = 0; i < N; i++) if (f()) sink++;
  return [Number(process.hrtime.bigint() - start) / N, sink];
}

const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
console.log("case        engine ns  sdk ns  (median of 15 interleaved rounds of 200k checks)");
for (const { key } of flags) {
  const e = [];
  const s = [];
  for (let round = 0; round < 15; round++) {
    e.push(time(() => engine.evaluate(key, ctx).value === true)[0]);
    s.push(time(() => client.isEnabled(key, ctx))[0]);
  }
  console.log(`${key.padEnd(10)} ${median(e).toFixed(0).padStart(10)} ${median(s).toFixed(0).padStart(7)}`);
}
// Non-ASCII ids: the UTF-8 path of the hash.
const wide = { targetingKey: "josé-用户-😀", role: "developer" };
const e = [];
const s = [];
for (let round = 0; round < 15; round++) {
  e.push(time(() => engine.evaluate("rollout", wide).value === true)[0]);
  s.push(time(() => client.isEnabled("rollout", wide))[0]);
}
console.log(`${"rollout-utf8".padEnd(10)} ${median(e).toFixed(0).padStart(8)} ${median(s).toFixed(0).padStart(7)}`);
client.close();
