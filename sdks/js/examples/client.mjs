// Client mode (what a browser page does) with a client token: values for one
// context over OFREP, refetched when the change stream says so.
//   FLAGBASE_URL=http://localhost:8080 FLAGBASE_TOKEN=fbk_... node examples/client.mjs
import { FlagbaseClient } from "../src/index.js";

const flags = await new FlagbaseClient({
  baseUrl: process.env.FLAGBASE_URL ?? "http://localhost:8080",
  token: process.env.FLAGBASE_TOKEN,
  mode: "client",
  context: { targetingKey: "user-42", plan: "pro" },
}).init();
console.log(Object.fromEntries(flags.keys().map((k) => [k, flags.value(k)])));
flags.onChange((c) => console.log(`${c.key} is now`, flags.value(c.key)));
