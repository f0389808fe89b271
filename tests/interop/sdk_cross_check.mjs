// Cross-check driver for the JavaScript SDK (run by
// tests/integration/sdk_cross_check.rs): starts a local-mode client against
// FLAGBASE_URL with FLAGBASE_TOKEN, reads {"contexts", "keys"}
// on stdin and prints, for each context, each key's [value, variant, reason].
import { FlagbaseClient } from "../../sdks/js/src/index.js";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { contexts, keys } = JSON.parse(input);
const client = await new FlagbaseClient({ baseUrl: process.env.FLAGBASE_URL, token: process.env.FLAGBASE_TOKEN }).init();
if (client.state !== "connected") throw new Error(`not connected: ${client.state}`);
const out = contexts.map((ctx) =>
  keys.map((k) => {
    const e = client.evaluate(k, ctx);
    return [e.value, e.variant, e.reason];
  }),
);
client.close();
process.stdout.write(JSON.stringify(out));
