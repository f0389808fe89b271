// Shared harness for the console's browser tests: starts the real flagbase
// binary ($FLAGBASE_BIN) on a free port in a temporary directory, as
// tests/integration/harness.rs does, and drives headless Chromium through
// playwright-core. Set FLAGBASE_UI_DIR to serve ui/ from disk (ui.dev_dir)
// while editing the console, without rebuilding the binary.
import { spawn } from "node:child_process";
import { mkdtemp, rm, readdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, "..", "..");
export const uiDir = join(repoRoot, "ui");
export const PASSWORD = "correct horse battery";
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const START_TIMEOUT_MS = 60_000;

/** Lines from a child's stream, with a way to await one. */
class Lines {
  constructor() {
    this.lines = [];
    this.waiters = [];
  }
  push(line) {
    this.lines.push(line);
    this.waiters = this.waiters.filter((w) => {
      if (w.pred(line)) {
        w.resolve(line);
        return false;
      }
      return true;
    });
  }
  /** Resolves with the first line (seen or future) matching `pred`. */
  waitFor(what, pred, timeoutMs = START_TIMEOUT_MS) {
    const seen = this.lines.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out waiting for ${what}; output so far:\n${this.lines.join("\n")}`));
      }, timeoutMs);
      w.resolve = (l) => {
        clearTimeout(t);
        resolve(l);
      };
      this.waiters.push(w);
    });
  }
}

/**
 * Starts flagbase. `opts.args` are extra arguments after `start`
 * (e.g. ["--set", "k=v"]), `opts.env` extra environment.
 * Returns {url, setupToken, dir, stdout, stderr, stop()}.
 */
export async function startFlagbase(opts = {}) {
  const bin = process.env.FLAGBASE_BIN;
  assert.ok(bin, "FLAGBASE_BIN is not set: run these tests through tests/integration/console_ui.rs (or set it to target/debug/flagbase)");
  const dir = await mkdtemp(join(tmpdir(), "flagbase-ui-"));
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("FLAGBASE_") && k !== "NO_COLOR") env[k] = v;
  }
  // Side by side with other tests: the bus takes a free port too.
  env.FLAGBASE_EVENTS_NATS_PORT = "0";
  Object.assign(env, opts.env || {});
  const args = ["--log-format", "json", "-l", "debug", "start", "--host", "127.0.0.1", "--port", "0"];
  if (process.env.FLAGBASE_UI_DIR) args.push("--set", `ui.dev_dir=${process.env.FLAGBASE_UI_DIR}`);
  args.push(...(opts.args || []));
  const child = spawn(bin, args, { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  const stdout = new Lines();
  const stderr = new Lines();
  createInterface({ input: child.stdout }).on("line", (l) => stdout.push(l));
  createInterface({ input: child.stderr }).on("line", (l) => stderr.push(l));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const ready = stdout.waitFor("the end of the banner", (l) => l.startsWith("Ready."));
  const early = exited.then((s) => {
    throw new Error(`flagbase exited (${JSON.stringify(s)}) before listening:\n${stderr.lines.join("\n")}`);
  });
  await Promise.race([ready, early]);
  early.catch(() => {});
  const httpLine = stdout.lines.find((l) => /^\s*http:\s/.test(l));
  assert.ok(httpLine, `no http line in the banner:\n${stdout.lines.join("\n")}`);
  const url = httpLine.trim().split(/\s+/).pop().replace("//0.0.0.0:", "//127.0.0.1:");
  const tokenLine = stdout.lines.find((l) => l.trim().startsWith("setup token: "));
  const setupToken = tokenLine ? tokenLine.trim().slice("setup token: ".length) : null;
  let stopped = false;
  return {
    url,
    setupToken,
    dir,
    stdout,
    stderr,
    child,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A JSON request against the server; returns {status, headers, body}. */
export async function http(fb, method, path, { body, token, headers = {} } = {}) {
  const h = { ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (token) h.Authorization = `Bearer ${token}`;
  const res = await fetch(fb.url + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Completes first-admin setup over the API; returns the admin's JWT. */
export async function setupAdmin(fb, email = "admin@example.com") {
  assert.ok(fb.setupToken, "the banner shows no setup token");
  const r = await http(fb, "POST", "/setup", { body: { token: fb.setupToken, email, password: PASSWORD } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.token;
}

/** Creates a user as `adminToken` (role: user | developer | admin); returns its JWT. */
export async function createUser(fb, adminToken, email, role) {
  const r = await http(fb, "POST", "/auth/register", { body: { email, password: PASSWORD, role }, token: adminToken });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return login(fb, email);
}

/** Logs in over the API; returns a JWT. */
export async function login(fb, email) {
  const r = await http(fb, "POST", "/auth/login", { body: { email, password: PASSWORD } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.token;
}

/** Launches headless Chromium (fails loudly when it is missing). */
export async function launchBrowser() {
  try {
    await stat(CHROMIUM);
  } catch {
    assert.fail(`Chromium not found at ${CHROMIUM}; run scripts/install-test-deps.sh`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/**
 * A new browser context + page on the server, collecting console errors and
 * page errors into `page.errors` (tests assert it stays empty).
 */
export async function newPage(browser, fb, { colorScheme = "light", viewport = { width: 1280, height: 860 } } = {}) {
  const context = await browser.newContext({ baseURL: fb.url, colorScheme, viewport });
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    // HTTP error statuses the UI handles (401 probe, 404, 412) are not page errors.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) page.errors.push(`console: ${m.text()}`);
  });
  return page;
}

/** Signs `page` in through the login form and waits for the flag list. */
export async function loginPage(page, email, password = PASSWORD) {
  await page.goto("/ui/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/ui\/(?!login)/);
  await page.locator("#header:not([hidden])").waitFor();
}

/** Runs axe-core on the page; returns violations of impact serious or critical. */
export async function axeSerious(page, { exclude = [] } = {}) {
  const { createRequire } = await import("node:module");
  const require = createRequire(import.meta.url);
  const { readFile } = await import("node:fs/promises");
  const source = await readFile(require.resolve("axe-core/axe.min.js"), "utf8");
  // The CSP forbids inline scripts in the page; evaluate() runs in an isolated world.
  await page.evaluate(source);
  const result = await page.evaluate(async (exclude) => {
    const r = await window.axe.run({ exclude: exclude.map((s) => [s]) }, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  }, exclude);
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/** Total size in bytes of every file under ui/. */
export async function uiSize(dir = uiDir) {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) total += await uiSize(p);
    else total += (await stat(p)).size;
  }
  return total;
}
