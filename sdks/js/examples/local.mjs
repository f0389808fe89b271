// Local evaluation in Node with a server token:
//   FLAGBASE_URL=http://localhost:8080 FLAGBASE_TOKEN=fbk_... node examples/local.mjs new-checkout-ui
import { FlagbaseClient } from "../src/index.js";

const key = process.argv[2] ?? "new-checkout-ui";
const flags = await new FlagbaseClient({
  baseUrl: process.env.FLAGBASE_URL ?? "http://localhost:8080",
  token: process.env.FLAGBASE_TOKEN,
}).init();
flags.onChange((c) => console.log(`change #${c.seq}: ${c.key} ${c.kind}`));
const ctx = { targetingKey: "user-42", plan: "pro" };
console.log(`${key} =`, flags.value(key, ctx), `(${flags.state})`);
setInterval(() => console.log(`${key} =`, flags.value(key, ctx), `(${flags.state})`), 2000);
