// The JavaScript SDK in headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core): the SDK's own ES modules load in a page, hash and
// evaluate every spec/ vector there, and, in client mode with a client token,
// read OFREP values from a live Flagbase and refetch them when the change
// stream says so. Run by tests/integration/sdk_js.rs, which starts Flagbase
// and passes FLAGBASE_URL, FLAGBASE_ADMIN and FLAGBASE_CLIENT_TOKEN.
//
// The page's origin is a small server here that serves the SDK and forwards
// /ofrep/ and /api/ to Flagbase (as an app's own backend would), so no CORS
// setup is involved.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile, readdir } from "node:fs/promises";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { dirname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = join(here, "..", "src");
const specDir = join(here, "..", "..", "..", "spec", "evaluation");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

const env = (name) => {
  const v = process.env[name];
  assert.ok(v, `${name} is not set: run this suite through tests/integration/sdk_js.rs`);
  return v;
};
const upstream = env("FLAGBASE_URL");
const admin = env("FLAGBASE_ADMIN");
const clientToken = env("FLAGBASE_CLIENT_TOKEN");

let server;
let origin;
let browser;
let page;

async function serve(req, res) {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/") {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end("<!doctype html><meta charset=utf-8><title>sdk</title>");
    return;
  }
  if (url.pathname.startsWith("/sdk/")) {
    const file = normalize(url.pathname.slice("/sdk/".length));
    if (file.startsWith("..") || !file.endsWith(".js")) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": "text/javascript" });
    res.end(await readFile(join(sdkDir, file)));
    return;
  }
  // Everything else goes to Flagbase, streamed (the change stream is SSE).
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const headers = { ...req.headers };
  delete headers.host;
  // The upstream request ends with the page's: an open change stream must
  // not outlive the browser (nor keep this process alive).
  const upstreamDone = new AbortController();
  res.on("close", () => upstreamDone.abort());
  const resp = await fetch(`${upstream}${req.url}`, {
    method: req.method,
    headers,
    body: chunks.length ? Buffer.concat(chunks) : undefined,
    signal: upstreamDone.signal,
  });
  const out = Object.fromEntries(resp.headers);
  delete out["transfer-encoding"];
  delete out["content-length"];
  delete out["content-encoding"];
  res.writeHead(resp.status, out);
  if (resp.body) Readable.fromWeb(resp.body).on("error", () => res.destroy()).pipe(res);
  else res.end();
}

before(async () => {
  server = createServer((req, res) => serve(req, res).catch(() => res.destroy()));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  page = await browser.newPage();
  await page.goto(`${origin}/`);
});

after(async () => {
  await browser?.close();
  server?.closeAllConnections?.();
  server?.close();
});

test("every spec vector hashes and evaluates the same in the browser", async () => {
  const files = (await readdir(specDir)).filter((f) => f.endsWith(".json"));
  assert.ok(files.length >= 5);
  const vectors = [];
  for (const f of files) vectors.push(...JSON.parse(await readFile(join(specDir, f), "utf8")));
  const failures = await page.evaluate(async (cases) => {
    const { Snapshot, fnv1a32, bucket, position } = await import("/sdk/engine.js");
    const bad = [];
    const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    for (const c of cases) {
      if ("input" in c) {
        const got = [fnv1a32(c.input), bucket(c.flag_key, c.bucket_value), position(c.flag_key, c.bucket_value)];
        if (!eq(got, [c.hash, c.bucket, c.position])) bad.push(c.description);
        continue;
      }
      const e = new Snapshot([c.flag]).evaluate(c.key ?? c.flag.key, c.context);
      const want = c.expected;
      const ok =
        eq(e.value, want.value) &&
        e.variant === (want.variant ?? null) &&
        e.reason === want.reason &&
        e.errorCode === (want.error_code ?? null);
      if (!ok) bad.push(`${c.description}: ${JSON.stringify(e)}`);
    }
    return bad;
  }, vectors);
  assert.deepEqual(failures, []);
});

test("client mode in the browser: OFREP values, refetched on the change stream", async () => {
  const result = await page.evaluate(
    async ({ token }) => {
      const { FlagbaseClient } = await import("/sdk/index.js");
      const client = await new FlagbaseClient({
        baseUrl: location.origin,
        token,
        mode: "client",
        context: { targetingKey: "josé-😀", plan: "pro" },
      }).init();
      window.sdk = client;
      window.changes = [];
      client.onChange((c) => window.changes.push(c));
      return { state: client.state, on: client.isEnabled("browser-flag") };
    },
    { token: clientToken },
  );
  assert.deepEqual(result, { state: "connected", on: true });

  const resp = await fetch(`${upstream}/api/v1/flags/browser-flag/toggle`, {
    method: "PATCH",
    headers: { Authorization: `Bearer ${admin}` },
  });
  assert.equal(resp.status, 200);
  await page.waitForFunction(() => window.changes.some((c) => c.key === "browser-flag"), null, {
    timeout: 30_000,
  });
  const after = await page.evaluate(() => {
    const e = window.sdk.evaluate("browser-flag");
    window.sdk.close();
    return [e.value, e.reason];
  });
  assert.deepEqual(after, [false, "DISABLED"]);
});
