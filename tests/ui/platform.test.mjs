// The console's platform pages in headless Chromium against the real binary:
// API tokens (secret shown once, revocation), users and roles, a gateway
// route created and edited from the UI with the "try a request as…"
// simulator, a function uploaded, invoked and rolled back, the detector's
// banner on a flag it turned off and re-enabling it, and axe-core scans.
// Run by tests/integration/console_ui_platform.rs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import { startFlagbase, launchBrowser, newPage, loginPage, axeSerious, http, setupAdmin, repoRoot } from "./harness.mjs";

const ADMIN = "admin@example.com";
let fb;
let browser;
let adminToken;
let page;

before(async () => {
  // Short detector intervals so 11 errors turn a flag off within a second.
  fb = await startFlagbase({ args: ["--set", "metrics.bucket=1s", "--set", "metrics.flush_interval=100ms", "--set", "anomaly.interval=200ms", "--set", "anomaly.window=5s"] });
  browser = await launchBrowser();
  adminToken = await setupAdmin(fb, ADMIN);
  page = await newPage(browser, fb);
  await loginPage(page, ADMIN);
});
after(async () => {
  if (browser) await browser.close();
  if (fb) await fb.stop();
});

async function noSerious(what) {
  const v = await axeSerious(page);
  assert.deepEqual(v, [], `${what}: axe found serious/critical violations:\n${JSON.stringify(v, null, 2)}`);
  assert.deepEqual(page.errors, [], "the page logged errors (CSP violations, exceptions)");
}

const api = (method, path, body) => http(fb, method, path, { body, token: adminToken });

test("an API token is created with its secret shown once, then revoked", async () => {
  await page.goto("/ui/tokens");
  await page.getByLabel("Name").fill("ci-deploy");
  await page.getByLabel("Role").selectOption("developer");
  await page.getByRole("button", { name: "Create token" }).click();
  const secret = await page.getByTestId("token-secret").textContent();
  assert.match(secret, /^fbk_/);
  const me = await fetch(`${fb.url}/auth/me`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(me.status, 200, "the shown secret works");
  await noSerious("tokens page");
  // A reload never shows it again.
  await page.reload();
  await page.locator("[data-token='ci-deploy']").waitFor();
  assert.equal(await page.getByTestId("token-secret").count(), 0);
  assert.ok(!(await page.content()).includes(secret));

  await page.getByRole("button", { name: "Revoke ci-deploy" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
  await page.getByText("Token ci-deploy revoked.").waitFor();
  const after = await fetch(`${fb.url}/auth/me`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(after.status, 401, "a revoked token stops working");
});

test("an admin adds a user and changes their role", async () => {
  await page.goto("/ui/users");
  await page.getByLabel("Email").fill("dev@example.com");
  await page.getByLabel("Password").fill("long enough pw");
  await page.getByLabel("Role", { exact: true }).selectOption("user");
  await page.getByRole("button", { name: "Add user" }).click();
  await page.getByText("dev@example.com added as user.").waitFor();
  await noSerious("users page");
  await page.getByLabel("Role of dev@example.com").selectOption("developer");
  await page.getByRole("dialog").getByRole("button", { name: "Change role" }).click();
  await page.getByText("dev@example.com is now developer.").waitFor();
  const { body } = await api("GET", "/api/v1/users");
  assert.equal(body.users.find((u) => u.email === "dev@example.com").role, "developer");
});

test("a gateway route is created and edited in the UI and the simulator shows where a caller goes", async () => {
  assert.equal((await api("POST", "/api/v1/flags", { key: "beta-backend", enabled: true, rules: [{ attribute: "role", operator: "equals", value: "developer", variant: true }] })).status, 201);
  await page.goto("/ui/gateway");
  await page.getByRole("button", { name: "+ New route" }).click();
  await page.getByLabel("Path (under /gateway)").fill("/gateway/shop");
  await page.getByLabel("Gating flag").fill("beta-backend");
  await page.getByLabel("Target", { exact: true }).fill("http://127.0.0.1:9101");
  await page.getByLabel("Fallback target (flag off)").fill("http://127.0.0.1:9102");
  await page.getByRole("button", { name: "Save route" }).click();
  await page.locator("[data-route='/gateway/shop']").waitFor();
  await page.locator("[data-flag-state='beta-backend']", { hasText: "on" }).waitFor();
  await noSerious("gateway page");

  // A field error lands on its field.
  await page.getByRole("button", { name: "Edit /gateway/shop" }).click();
  await page.getByLabel("Target", { exact: true }).fill("ftp://nowhere");
  await page.getByRole("button", { name: "Save route" }).click();
  await page.locator("[data-field='target'][aria-invalid='true']").waitFor();
  await page.getByLabel("Target", { exact: true }).fill("http://127.0.0.1:9103");
  await page.getByRole("button", { name: "Save route" }).click();
  await page.locator("[data-route='/gateway/shop']", { hasText: "9103" }).waitFor();

  await page.getByLabel("Path", { exact: true }).fill("/gateway/shop/cart");
  await page.getByLabel("Caller context (JSON)").fill('{"targetingKey": "u1", "role": "developer"}');
  await page.getByRole("button", { name: "Simulate" }).click();
  await page.getByTestId("simulation").getByText("http://127.0.0.1:9103").waitFor();
  await page.getByLabel("Caller context (JSON)").fill('{"targetingKey": "u2", "role": "user"}');
  await page.getByRole("button", { name: "Simulate" }).click();
  await page.getByTestId("simulation").getByText("http://127.0.0.1:9102").waitFor();
  assert.match(page.url(), /context=/, "the simulator's input is in the URL");
});

test("a function is uploaded, invoked, given a new version and rolled back", async () => {
  const wasm = join(repoRoot, "examples", "functions", "hello.wasm");
  await page.goto("/ui/functions");
  await page.getByLabel("Name").fill("hello");
  await page.getByLabel("Module (.wasm)").setInputFiles(wasm);
  await page.getByRole("button", { name: "Upload" }).click();
  await page.waitForURL(/\/ui\/functions\/hello$/);
  await page.getByRole("heading", { name: "hello", exact: true }).waitFor();
  await noSerious("function page");

  await page.getByLabel("Request body").fill("from the console");
  await page.getByRole("button", { name: "Run" }).click();
  await page.getByTestId("invoke-result").getByText("You sent: from the console").waitFor();
  await page.getByText("Status 200").waitFor();

  // A second version, then roll back to the first.
  await page.getByLabel("Module (.wasm)").setInputFiles(wasm);
  await page.getByRole("button", { name: "Upload" }).click();
  await page.getByText("hello version 2 is active.").waitFor();
  await page.getByRole("button", { name: "Activate version 1" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Activate" }).click();
  await page.getByText("Version 1 is active.", { exact: true }).waitFor();
  const { body } = await api("GET", "/api/v1/functions/hello");
  assert.equal(body.active_version, 1);

  // Not WebAssembly: the API's reason on the module field.
  const bad = join(fb.dir, "bad.wasm");
  await writeFile(bad, "not wasm");
  await page.getByLabel("Module (.wasm)").setInputFiles(bad);
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("[data-field='module'][aria-invalid='true']").waitFor();
});

test("the detector's banner shows on a flag it turned off, and re-enabling turns it back on", async () => {
  assert.equal((await api("POST", "/api/v1/flags", { key: "new-search", enabled: true })).status, 201);
  const errors = Array.from({ length: 11 }, () => ({ flag_key: "new-search", variant: "false", event_type: "error" }));
  assert.equal((await api("POST", "/api/v1/events", errors)).status, 202);
  // The detector acts within a few ticks; wait on its state, not on time.
  for (let i = 0; i < 300; i++) {
    const { body } = await api("GET", "/api/v1/anomalies?flag=new-search&resolved=false");
    if (body.anomalies.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.goto("/ui/anomalies");
  await page.locator("[data-anomaly='new-search']").waitFor();
  await page.locator("[data-anomaly='new-search'] svg.chart").waitFor();
  // Errors over time as a line, and the detector's change as a marker.
  assert.ok((await page.locator("[data-anomaly='new-search'] svg.chart polyline.chart-errors").count()) >= 1);
  assert.ok((await page.locator("[data-anomaly='new-search'] svg.chart line.chart-marker").count()) >= 1);
  await noSerious("anomalies page");

  await page.goto("/ui/flags/new-search");
  const banner = page.getByTestId("detector-banner");
  await banner.waitFor();
  assert.match(await banner.textContent(), /turned this flag off/);
  await banner.getByRole("button", { name: "Re-enable" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Turn on" }).click();
  await page.getByText("new-search is on again.").waitFor();
  const { body: flag } = await api("GET", "/api/v1/flags/new-search");
  assert.equal(flag.enabled, true);
  const { body: open } = await api("GET", "/api/v1/anomalies?flag=new-search&resolved=false");
  assert.equal(open.anomalies.length, 0);
});
