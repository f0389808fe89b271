// The console's shell and flag pages in headless Chromium against the real
// binary: first-admin setup, login/logout, the flag editor (rules, rollout,
// field errors, 412), live toggles across two browser contexts, evaluate-as,
// history diff and restore, shortcuts, axe-core scans, the 10,000-flag render
// time and the UI's size. Run by tests/integration/console_ui.rs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startFlagbase, launchBrowser, newPage, loginPage, axeSerious, uiSize, http, createUser, login, repoRoot, PASSWORD } from "./harness.mjs";

const ADMIN = "admin@example.com";
let fb;
let browser;
let adminToken;
const pages = [];

before(async () => {
  fb = await startFlagbase();
  browser = await launchBrowser();
});
after(async () => {
  for (const p of pages) {
    if (!p.isClosed()) await p.context().close();
  }
  if (browser) await browser.close();
  if (fb) await fb.stop();
});

async function open(opts) {
  const p = await newPage(browser, fb, opts);
  pages.push(p);
  return p;
}

async function noSerious(page, what) {
  const v = await axeSerious(page);
  assert.deepEqual(v, [], `${what}: axe found serious/critical violations:\n${JSON.stringify(v, null, 2)}`);
}

/**
 * Answers the change stream with one snapshot of `flags`: a test that serves
 * the flag list from a synthetic set must serve the stream from it too. The
 * real stream's snapshot would otherwise bring the server's own flags into
 * the list whenever it arrived after the page subscribed (a race, so the
 * counts the test waits for came out wrong only sometimes).
 */
async function streamOnly(page, flags) {
  const body = `retry: 600000\nevent: snapshot\ndata: ${JSON.stringify({ seq: 1, flags })}\n\n`;
  await page.route(/\/api\/v1\/stream/, (r) => r.fulfill({ contentType: "text/event-stream", body }));
}

function noErrors(page) {
  assert.deepEqual(page.errors, [], "the page logged errors (CSP violations, exceptions)");
}

// Screenshots for the README: docs/screenshots/ with UPDATE_SCREENSHOTS=1,
// otherwise the server's temporary directory (a test run leaves the tree clean).
const shot = (name) => (process.env.UPDATE_SCREENSHOTS === "1" ? join(repoRoot, "docs", "screenshots", name) : join(fb.dir, name));

const flagApi = async (key) => (await http(fb, "GET", `/api/v1/flags/${key}`, { token: adminToken })).body;

test("first-admin setup in the browser, then logout and login", async () => {
  assert.ok(fb.setupToken, "a fresh server prints a setup token");
  const page = await open();
  await page.goto("/ui/flags");
  await page.waitForURL(/\/ui\/login/);
  await page.getByText("No admin exists yet").waitFor();
  await noSerious(page, "login page");

  await page.goto(`/ui/setup?token=${encodeURIComponent(fb.setupToken)}`);
  await noSerious(page, "setup page");
  await page.getByLabel("Admin email").fill(ADMIN);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Repeat password").fill("something else");
  await page.getByRole("button", { name: "Create admin and sign in" }).click();
  await page.getByText("The passwords differ.").waitFor();
  await page.getByLabel("Repeat password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create admin and sign in" }).click();
  await page.waitForURL(/\/ui\/flags$/);
  await page.getByRole("heading", { name: "Flags" }).waitFor();
  await page.getByText("No flags yet").waitFor();
  adminToken = await login(fb, ADMIN);

  // Logout from the user menu ends the session server-side.
  const cookiesBefore = await page.context().cookies();
  const session = cookiesBefore.find((c) => c.name === "flagbase_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict", JSON.stringify(cookiesBefore));
  await page.getByRole("button", { name: new RegExp(ADMIN) }).click();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/ui\/login/);
  const old = await fetch(`${fb.url}/auth/session`, { headers: { Cookie: `flagbase_session=${session.value}` } });
  assert.equal(old.status, 401, "the old cookie no longer works after logout");
  await page.goto("/ui/flags");
  await page.waitForURL(/\/ui\/login\?next=/);

  await page.getByLabel("Email").fill(ADMIN);
  await page.getByLabel("Password").fill("wrong password!");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Wrong email or password.").waitFor();
  await page.getByLabel("Email").fill(ADMIN);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/ui\/flags$/);
  noErrors(page);
});

test("create and edit a flag with rules and a rollout; field errors land on the field", async () => {
  const page = await open();
  await loginPage(page, ADMIN);
  await page.getByRole("link", { name: "+ New flag" }).click();
  await page.waitForURL(/\/ui\/new-flag$/);
  await page.getByLabel("Key").fill("new-checkout");
  await page.getByLabel("Name").fill("New checkout");

  // Rule 1: country in US, CA -> true.
  await page.getByRole("button", { name: "+ Rule" }).click();
  const rule1 = page.locator(".rule").nth(0);
  await rule1.getByLabel("Attribute").fill("country");
  await rule1.getByLabel("Operator").selectOption("in");
  await rule1.getByLabel("Value", { exact: true }).fill("US, CA");
  await rule1.getByLabel("Serve value").selectOption("true");
  // Rule 2: appVersion semver_gt -> first an invalid partial version.
  await page.getByRole("button", { name: "+ Rule" }).click();
  const rule2 = page.locator(".rule").nth(1);
  await rule2.getByLabel("Attribute").fill("appVersion");
  await rule2.getByLabel("Operator").selectOption("semver_gt");
  await rule2.getByLabel("Value", { exact: true }).fill("2.4");
  await rule2.getByLabel("Serve value").selectOption("true");
  // Rollout 12.5% with the number field; the slider follows.
  await page.getByLabel('Percentage rollout of the "on" value').check();
  await page.getByLabel("Rollout percentage", { exact: true }).fill("12.5");
  assert.equal(await page.getByLabel("Rollout percentage (slider)").inputValue(), "12.5");

  await page.getByRole("button", { name: "Create flag" }).click();
  await rule2.getByText("Enter a full SemVer version").waitFor();
  await rule2.getByLabel("Value", { exact: true }).fill("2.4.0");

  // A server-side field error (an invalid regex) is shown on its input.
  await rule1.getByLabel("Operator").selectOption("matches");
  await rule1.getByLabel("Value", { exact: true }).fill("(unclosed");
  await page.getByRole("button", { name: "Create flag" }).click();
  const regexInput = rule1.getByLabel("Value", { exact: true });
  await page.locator('.rule [aria-invalid="true"][data-path="rules[0].conditions[0].value"]').waitFor();
  const describedBy = await regexInput.getAttribute("aria-describedby");
  const msg = await page.locator(`#${describedBy.split(" ").pop()}`).textContent();
  assert.match(msg, /rules\[0\]\.conditions\[0\]\.value/);
  await rule1.getByLabel("Operator").selectOption("in");
  await rule1.getByLabel("Value", { exact: true }).fill("US, CA");

  // Keyboard reordering: Alt+ArrowUp inside rule 2 moves it first.
  await rule2.getByLabel("Attribute").focus();
  await page.keyboard.press("Alt+ArrowUp");
  assert.equal(await page.locator(".rule").nth(0).getByLabel("Attribute").inputValue(), "appVersion");
  await noSerious(page, "new flag editor");

  await page.getByRole("button", { name: "Create flag" }).click();
  await page.waitForURL(/\/ui\/flags\/new-checkout$/);
  let f = await flagApi("new-checkout");
  assert.equal(f.rollout_percentage, 12.5);
  assert.deepEqual(f.rules.map((r) => r.conditions[0].attribute), ["appVersion", "country"]);
  assert.deepEqual(f.rules[1].conditions[0].value, ["US", "CA"]);
  assert.equal(f.rules[0].conditions[0].value, "2.4.0");

  // Edit: drag rule 2 onto rule 1, then back with the button: order follows.
  const attrs = () => page.locator(".rule").evaluateAll((rs) => rs.map((r) => r.querySelector('input[aria-label="Attribute"]').value));
  await page.locator(".rule").nth(1).locator(".drag-handle").dragTo(page.locator(".rule").nth(0).locator(".rule-title"));
  assert.deepEqual(await attrs(), ["country", "appVersion"]);
  await page.getByRole("button", { name: "Move rule 2 up" }).click();
  assert.deepEqual(await attrs(), ["appVersion", "country"]);
  await page.getByRole("button", { name: "Move rule 2 up" }).click();
  await page.getByLabel("Rollout percentage", { exact: true }).fill("33.333");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText("Saved new-checkout (version 2)").waitFor();
  f = await flagApi("new-checkout");
  assert.equal(f.version, 2);
  assert.equal(f.rollout_percentage, 33.333);
  assert.deepEqual(f.rules.map((r) => r.conditions[0].attribute), ["country", "appVersion"]);
  await noSerious(page, "flag editor");
  await page.setViewportSize({ width: 1280, height: 1400 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: shot("flag-editor.png") });
  assert.equal(await page.locator(".conflict:not([hidden])").count(), 0, "our own save is not reported as someone else's");
  noErrors(page);
});

test("variant weights must sum to 100, shown live", async () => {
  const page = await open();
  await loginPage(page, ADMIN);
  await page.goto("/ui/new-flag");
  await page.getByLabel("Key").fill("button-color");
  await page.getByLabel("Type").selectOption("string");
  await page.getByLabel("Default value").fill("blue");
  await page.getByLabel("Split traffic between variants by weight").check();
  for (const [k, v, w] of [["blue", "blue", "50"], ["green", "green", "40"]]) {
    await page.getByRole("button", { name: "+ Variant" }).click();
    const row = page.locator(".variants tbody tr").last();
    await row.getByLabel("Variant key").fill(k);
    await row.getByLabel("Variant value").fill(v);
    await row.getByLabel("Variant weight (%)").fill(w);
  }
  await page.getByText("Weights sum to 90% — they must sum to 100%").waitFor();
  await page.locator(".variants tbody tr").last().getByLabel("Variant weight (%)").fill("50");
  await page.getByText("Weights sum to 100% ✓").waitFor();
  await page.getByRole("button", { name: "Create flag" }).click();
  await page.waitForURL(/\/ui\/flags\/button-color$/);
  const f = await flagApi("button-color");
  assert.deepEqual(f.variants.map((v) => v.weight), [50, 50]);
  noErrors(page);
});

test("a toggle in one browser context appears live in another; reason is audited; undo", async () => {
  const viewer = await open();
  await loginPage(viewer, ADMIN);
  await viewer.goto("/ui/flags");
  const row = viewer.locator('tr[data-key="new-checkout"]');
  await row.waitFor();
  assert.equal(await row.locator("input.switch").isChecked(), false);
  await viewer.locator(".live[data-state=connected]").waitFor();

  const dev = await open({ colorScheme: "dark" });
  await createUser(fb, adminToken, "dev@example.com", "developer");
  await loginPage(dev, "dev@example.com");
  await dev.goto("/ui/flags");
  // Admin-only navigation is hidden from a developer.
  assert.equal(await dev.getByRole("link", { name: "Users" }).count(), 0);
  assert.equal(await viewer.getByRole("link", { name: "Users" }).count(), 1);
  await dev.getByRole("checkbox", { name: "Turn on new-checkout" }).click();
  const dialog = dev.getByRole("dialog");
  await dialog.getByText("will start serving its rules and rollout").waitFor();
  await dialog.getByLabel(/Reason/).fill("launch for EU");
  await dialog.getByRole("button", { name: "Turn on" }).click();
  await dev.getByText("new-checkout is now on.").waitFor();

  // The other context sees it without a reload.
  await viewer.locator('tr[data-key="new-checkout"] input.switch:checked').waitFor();
  const hist = (await http(fb, "GET", "/api/v1/flags/new-checkout/history", { token: adminToken })).body.records;
  assert.equal(hist[0].action, "flag.toggle");
  assert.equal(hist[0].reason, "launch for EU");

  // Undo from the toast flips it back (and the viewer follows again).
  await dev.getByRole("button", { name: "Undo" }).click();
  await dev.getByText("new-checkout is off again.").waitFor();
  await viewer.locator('tr[data-key="new-checkout"] input.switch:not(:checked)').waitFor();
  assert.equal((await flagApi("new-checkout")).enabled, false);
  // The system's dark preference applies without a stored choice.
  assert.equal(await dev.evaluate(() => getComputedStyle(document.body).backgroundColor), "rgb(15, 20, 25)");
  assert.equal(await viewer.evaluate(() => getComputedStyle(document.body).backgroundColor), "rgb(247, 248, 250)");
  await noSerious(dev, "flag list (dark theme)");
  noErrors(viewer);
  noErrors(dev);
});

test("flag list filters live in the URL; shortcuts work", async () => {
  await http(fb, "POST", "/api/v1/flags", { token: adminToken, body: { key: "dark-mode", enabled: true } });
  const page = await open();
  await loginPage(page, ADMIN);
  await page.goto("/ui/flags?type=string");
  await page.locator('tr[data-key="button-color"]').waitFor();
  assert.equal(await page.locator('tr[data-key="new-checkout"]').count(), 0);
  await page.getByLabel("Type").selectOption("");
  await page.getByLabel("State").selectOption("true");
  await page.waitForURL(/enabled=true/);
  await page.locator('tr[data-key="dark-mode"]').waitFor();
  assert.equal(await page.locator('tr[data-key="button-color"]').count(), 0);
  await page.getByLabel("State").selectOption("");
  await page.getByLabel("Rollout").selectOption("true");
  await page.locator('tr[data-key="new-checkout"]').waitFor();
  assert.equal(await page.locator('tr[data-key="dark-mode"]').count(), 0);
  await page.reload();
  assert.equal(await page.getByLabel("Rollout").inputValue(), "true");
  await page.getByRole("button", { name: "Clear filters" }).first().click();
  await page.locator(".count", { hasText: /^3 flags$/ }).waitFor().catch(async (e) => {
    throw new Error(`${e.message}; count says: ${await page.locator(".count").textContent()}; url ${page.url()}`);
  });
  await page.screenshot({ path: shot("flag-list.png") });

  // "/" focuses search; typing filters and lands in the URL.
  await page.locator("h1").click();
  await page.keyboard.press("/");
  assert.equal(await page.evaluate(() => document.activeElement.id), "flag-search");
  await page.keyboard.type("dark");
  await page.waitForURL(/q=dark/);
  await page.locator('tr[data-key="dark-mode"]').waitFor();
  assert.equal(await page.locator('tr[data-key="new-checkout"]').count(), 0);
  // "?" lists shortcuts; Esc closes; "g h" goes to history.
  await page.locator("h1").click();
  await page.keyboard.press("?");
  await page.getByRole("dialog").getByText("Go to flags").waitFor();
  await page.keyboard.press("Escape");
  await page.getByRole("dialog").waitFor({ state: "detached" });
  await page.keyboard.press("g");
  await page.keyboard.press("h");
  await page.waitForURL(/\/ui\/history$/);
  // Theme toggle persists.
  await page.getByRole("button", { name: /Dark/ }).click();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
  await page.reload();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(await bg(), "rgb(15, 20, 25)", "the dark palette applies");
  await noSerious(page, "global history (dark)");
  noErrors(page);
});

test("evaluate as: value, variant, reason, matched rule, failed conditions, bucket", async () => {
  const page = await open();
  await loginPage(page, ADMIN);
  await http(fb, "PATCH", "/api/v1/flags/new-checkout/toggle", { token: adminToken, body: {} });
  await page.goto("/ui/flags/new-checkout");
  await page.getByRole("link", { name: "Evaluate as…" }).click();
  await page.waitForURL(/\/ui\/evaluate\?flag=new-checkout/);
  const rows = page.locator(".ctx-rows tbody tr");
  await rows.nth(0).getByLabel("Value", { exact: true }).fill("user-42");
  await page.getByRole("button", { name: "+ Attribute" }).click();
  await rows.nth(1).getByLabel("Attribute name").fill("country");
  await rows.nth(1).getByLabel("Value", { exact: true }).fill("FR");
  await page.getByRole("button", { name: "Evaluate" }).click();
  await page.getByRole("heading", { name: "Result for new-checkout" }).waitFor();
  const explained = (await http(fb, "POST", "/api/v1/flags/new-checkout/explain", { token: adminToken, body: { context: { targetingKey: "user-42", country: "FR" } } })).body;
  assert.equal(await page.locator(".ev-reason").textContent(), explained.reason);
  assert.equal((await page.locator(".ev-bucket").textContent()).startsWith(String(explained.bucket)), true);
  assert.equal(await page.locator(".ev-rule").textContent(), "none");
  await page.locator(".cond-fail", { hasText: "country" }).first().waitFor();
  await page.waitForURL(/context=/);

  // JSON mode, and a context that matches rule 1.
  await page.getByLabel("JSON", { exact: true }).check();
  await page.getByLabel("Context as JSON").fill('{"targetingKey": "user-42", "country": "us"}');
  await page.getByRole("button", { name: "Evaluate" }).click();
  await page.locator(".ev-rule", { hasText: "Rule 1" }).waitFor();
  assert.equal(await page.locator(".ev-reason").textContent(), "TARGETING_MATCH");
  assert.equal(await page.locator(".ev-value").textContent(), "true");
  await noSerious(page, "evaluate");
  // The URL restores the same evaluation.
  await page.reload();
  await page.locator(".ev-rule", { hasText: "Rule 1" }).waitFor();
  // Pick a user: their id becomes the targetingKey.
  await page.getByLabel("Attributes").check();
  await page.getByLabel("Fill from a user").selectOption({ label: "dev@example.com (developer)" });
  const devId = (await http(fb, "GET", "/api/v1/users", { token: adminToken })).body.users.find((u) => u.email === "dev@example.com").id;
  const ctxNow = await page.locator(".ctx-rows tbody tr").evaluateAll((trs) => Object.fromEntries(trs.map((tr) => [...tr.querySelectorAll("input")].map((i) => i.value))));
  assert.equal(ctxNow.targetingKey, devId, JSON.stringify(ctxNow));
  assert.equal(ctxNow.email, "dev@example.com");
  noErrors(page);
});

test("history shows field diffs and restores an old version after confirmation", async () => {
  const cur = await http(fb, "GET", "/api/v1/flags/new-checkout", { token: adminToken });
  const body = { ...cur.body, rollout_percentage: 75, description: "bigger" };
  for (const k of ["version", "created_at", "updated_at", "updated_by"]) delete body[k];
  const put = await http(fb, "PUT", "/api/v1/flags/new-checkout", { token: adminToken, body, headers: { "If-Match": cur.headers.get("etag") } });
  assert.equal(put.status, 200, JSON.stringify(put.body));

  const page = await open();
  await loginPage(page, ADMIN);
  await page.goto("/ui/flags/new-checkout/history");
  const latest = page.locator(".entry").first();
  await latest.locator("tr", { hasText: "rollout_percentage" }).waitFor();
  assert.equal(await latest.locator("tr", { hasText: "rollout_percentage" }).locator("del").textContent(), "33.333");
  assert.equal(await latest.locator("tr", { hasText: "rollout_percentage" }).locator("ins").textContent(), "75");
  await noSerious(page, "flag history");

  // Restore version 2 (rollout 33.333).
  const v2 = page.locator(".entry", { hasText: "→ version 2" });
  await v2.getByRole("button", { name: /Restore this version/ }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("rollout_percentage").waitFor();
  await dialog.getByRole("button", { name: "Restore" }).click();
  await page.getByText(/new-checkout restored/).waitFor();
  const f = await flagApi("new-checkout");
  assert.equal(f.rollout_percentage, 33.333);
  assert.equal(f.description, undefined);
  noErrors(page);
});

test("a concurrent edit is detected (412) and can be reloaded or overwritten deliberately", async () => {
  const page = await open();
  await loginPage(page, ADMIN);
  await page.goto("/ui/flags/dark-mode");
  await page.getByLabel("Name").fill("Dark mode (mine)");
  // Someone else saves first.
  const cur = await http(fb, "GET", "/api/v1/flags/dark-mode", { token: adminToken });
  const r = await http(fb, "PUT", "/api/v1/flags/dark-mode", { token: adminToken, body: { key: "dark-mode", enabled: true, name: "Theirs" }, headers: { "If-Match": cur.headers.get("etag") } });
  assert.equal(r.status, 200);
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText("Someone else changed this flag while you were editing.").waitFor();
  assert.equal((await flagApi("dark-mode")).name, "Theirs", "nothing was silently overwritten");
  await page.getByRole("button", { name: "Overwrite with mine" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Overwrite" }).click();
  await page.getByText(/Saved dark-mode/).waitFor();
  assert.equal((await flagApi("dark-mode")).name, "Dark mode (mine)");
  noErrors(page);
});

test("usable with the keyboard alone: skip link, toggle dialog, Esc restores focus", async () => {
  const page = await open();
  await loginPage(page, ADMIN);
  await page.goto("/ui/flags");
  await page.locator('tr[data-key="dark-mode"]').waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.id), "main");
  // Tab forward to the first switch; Space opens the confirmation.
  let onSwitch = false;
  for (let i = 0; i < 20 && !onSwitch; i++) {
    await page.keyboard.press("Tab");
    onSwitch = await page.evaluate(() => document.activeElement.classList.contains("switch"));
  }
  assert.ok(onSwitch, "a flag switch is reachable with Tab");
  const label = await page.evaluate(() => document.activeElement.getAttribute("aria-label"));
  await page.keyboard.press("Space");
  await page.getByRole("dialog").waitFor();
  await page.keyboard.press("Escape");
  await page.getByRole("dialog").waitFor({ state: "detached" });
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute("aria-label")), label, "focus returns to the switch");
  noErrors(page);
});

test("the stale filter: not evaluated for 7 days (or never) and older than 7 days", async () => {
  const page = await open();
  await loginPage(page, ADMIN);
  const day = 24 * 3600 * 1000;
  const ago = (d) => new Date(Date.now() - d * day).toISOString();
  const flags = [
    { key: "old-never", created_at: ago(30), updated_at: ago(30) },
    { key: "old-idle", created_at: ago(30), updated_at: ago(30) },
    { key: "old-busy", created_at: ago(30), updated_at: ago(30) },
    { key: "young-never", created_at: ago(2), updated_at: ago(2) },
  ].map((f) => ({ ...f, enabled: true, type: "boolean", version: 1 }));
  const usage = { "old-idle": { last_evaluated_at: ago(9), exposures_24h: 0 }, "old-busy": { last_evaluated_at: ago(1), exposures_24h: 5 } };
  await page.route(/\/api\/v1\/flags\?/, (r) => r.fulfill({ contentType: "application/json", body: JSON.stringify({ flags, next_cursor: null }) }));
  await page.route(/\/api\/v1\/flags\/usage$/, (r) => r.fulfill({ contentType: "application/json", body: JSON.stringify({ flags: usage }) }));
  await streamOnly(page, flags);
  await page.goto("/ui/flags?stale=true");
  await page.locator(".count", { hasText: "2 of 4 flags" }).waitFor();
  const keys = await page.locator(".flag-table tbody tr[data-key]").evaluateAll((trs) => trs.map((t) => t.dataset.key));
  assert.deepEqual(keys, ["old-never", "old-idle"]);
  assert.equal(await page.getByLabel("Stale only").isChecked(), true);
  noErrors(page);
});

test("10,000 flags render quickly (virtualised) and filter responsively", async () => {
  const page = await open();
  await loginPage(page, ADMIN);
  const N = 10_000;
  const now = new Date().toISOString();
  const all = Array.from({ length: N }, (_, i) => ({
    key: `flag-${String(i).padStart(5, "0")}`,
    name: `Flag ${i}`,
    enabled: i % 2 === 0,
    type: ["boolean", "string", "number", "json"][i % 4],
    rollout_percentage: i % 3 === 0 ? 10 : undefined,
    rules: [],
    version: 1,
    created_at: now,
    updated_at: now,
  }));
  // The list endpoint answers from this synthetic set, 1000 per page (the API's maximum).
  await page.route(/\/api\/v1\/flags\?/, (route) => {
    const u = new URL(route.request().url());
    const start = Number(u.searchParams.get("cursor") || 0);
    const limit = Number(u.searchParams.get("limit") || 100);
    const slice = all.slice(start, start + limit);
    const next = start + limit < N ? String(start + limit) : null;
    route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ flags: slice, next_cursor: next }) });
  });
  // The stream says nothing of these (10,000 upserts would be measured too).
  await streamOnly(page, []);
  const t0 = Date.now();
  await page.goto("/ui/flags");
  await page.getByText(`${N} flags`).waitFor();
  const total = Date.now() - t0;
  const renderMs = Number(await page.locator(".page").getAttribute("data-render-ms"));
  const rowsInDom = await page.locator(".flag-table tbody tr:not(.spacer)").count();
  assert.ok(rowsInDom < 120, `virtualised: ${rowsInDom} rows in the DOM`);
  // The visible window is filled: the row at its bottom edge exists.
  const visibleRows = await page.locator(".flag-scroll").evaluate((el) => Math.floor(el.clientHeight / 44));
  assert.ok(rowsInDom >= visibleRows, `${rowsInDom} rows for a window of ${visibleRows}`);
  // Scroll to the end: the last flag is reachable.
  await page.locator(".flag-scroll").evaluate((el) => (el.scrollTop = el.scrollHeight));
  await page.locator('tr[data-key="flag-09999"]').waitFor();
  const f0 = Date.now();
  await page.getByLabel("Search flags").fill("flag-0999");
  await page.getByText(`10 of ${N} flags`).waitFor();
  const filterMs = Date.now() - f0;
  console.log(`# UI 10k flags: page load to rows ${total} ms (fetch + render ${renderMs} ms), search filter ${filterMs} ms, ${rowsInDom} rows in the DOM`);
  noErrors(page);
});

test("the whole UI stays under 150 KiB", async () => {
  const bytes = await uiSize();
  console.log(`# UI size: ${bytes} bytes (${(bytes / 1024).toFixed(1)} KiB) uncompressed`);
  assert.ok(bytes < 150 * 1024, `ui/ is ${bytes} bytes, over 150 KiB`);
});
