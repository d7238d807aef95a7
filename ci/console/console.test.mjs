// The operator console in a real browser: headless Chromium (the system's, never a downloaded
// one) driven by playwright-core against an embedded gantry started by ci/console_test.sh.
// Scenario: log in with the dev token, watch a queue fill and drain, retry a dead job and watch
// it complete, watch a workspace become ready. Screenshots of each page go to
// $GANTRY_SCREENSHOTS (target/console-screenshots/).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.GANTRY_URL;
const SHOTS = process.env.GANTRY_SCREENSHOTS;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT = { timeout: 60_000 };

let browser;
let page;
let token;

before(async () => {
  assert.ok(BASE, "GANTRY_URL must point at the server under test");
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (err) => console.error("page error:", err));
});

after(async () => {
  await browser?.close();
});

const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

/** The API, with the token the console logged in with (the same one the page uses). */
async function api(path, { method = "GET", body } = {}) {
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The number in a cell of the Queues table. */
const queueCell = (queue, col) => `#queues tr[data-queue="${queue}"] td[data-col="${col}"]`;

test("log in with the embedded dev token", async () => {
  await page.goto(`${BASE}/console/`);
  await page.locator("#login").waitFor(WAIT);
  await shot("01-login");
  await page.click("#login");
  await page.locator("#nav a[data-page=queues]").waitFor(WAIT);
  token = await page.evaluate(() => sessionStorage.getItem("gantry.console.token"));
  assert.ok(token, "the console keeps its token");
  const me = await api("/v1/me");
  assert.equal(me.sub, "local");
  assert.equal(me.is_platform_admin, true);
  assert.match(await page.locator("#who").innerText(), /gantry-admin/);
});

test("a queue fills and drains on the Queues page", async () => {
  await page.goto(`${BASE}/console/#/queues`);
  await page.locator(queueCell("probe", "pending")).waitFor(WAIT);
  await page.fill("#main input[type=number]", "120");
  await page.click("#enqueue-probes");
  // Filling: jobs waiting or running (the server runs 4 probes at a time, 100 ms each).
  await page.waitForFunction(
    ([p, r]) => Number(document.querySelector(p)?.textContent) + Number(document.querySelector(r)?.textContent) > 0,
    [queueCell("probe", "pending"), queueCell("probe", "running")],
    WAIT,
  );
  await shot("02-queues-filling");
  // Drained: nothing waiting or running, and all 120 done within the hour.
  await page.waitForFunction(
    ([p, r, d]) => document.querySelector(p)?.textContent === "0" && document.querySelector(r)?.textContent === "0"
      && Number(document.querySelector(d)?.textContent) >= 120,
    [queueCell("probe", "pending"), queueCell("probe", "running"), queueCell("probe", "done_last_hour")],
    WAIT,
  );
  await shot("03-queues-drained");
});

test("a dead job is retried from the Jobs page and completes", async () => {
  // Two attempts allowed (GANTRY_QUEUE_PROBE_MAX_ATTEMPTS=2) and both fail: dead.
  const batch = await api("/v1/admin/probes", { method: "POST", body: { count: 1, fail_attempts: 2 } });
  await page.goto(`${BASE}/console/#/jobs?queue=probe&state=dead`);
  const row = page.locator("#jobs tr[data-job]").first();
  for (let i = 0; !(await row.count()); i++) {
    assert.ok(i < 60, "no dead job appeared");
    await new Promise((r) => setTimeout(r, 500));
    await page.reload();
  }
  await row.waitFor(WAIT);
  assert.match(await row.innerText(), /told to fail/);
  await shot("04-jobs-dead");
  const id = await row.getAttribute("data-job");
  await row.click();
  await page.locator("#retry").waitFor(WAIT);
  assert.match(await page.locator("#args").innerText(), /fail_attempts/);
  await shot("05-job-dead");
  await page.click("#retry");
  await page.locator('td[data-field="state"]', { hasText: "done" }).waitFor(WAIT);
  await shot("06-job-retried-done");
  const job = await api(`/v1/admin/jobs/${id}`);
  assert.equal(job.state, "done");
  assert.equal(job.attempt, 3);
  const progress = await api(`/v1/admin/probes/${batch.batch_id}`);
  assert.equal(progress.completed, 1);
});

test("a workspace becomes ready on the Workspaces page", async () => {
  const org = await api("/v1/orgs", { method: "POST", body: { name: "Acme", slug: "acme" } });
  await api(`/v1/orgs/${org.id}/workspaces`, { method: "POST", body: { name: "staging", plan: "shared" } });
  // The console reads the caller's organizations at log-in: load it again to see the new one.
  await page.goto(`${BASE}/console/#/workspaces`);
  await page.reload();
  const status = page.locator('tr[data-workspace="staging"] td[data-col="status"]');
  await status.waitFor(WAIT);
  await shot("07-workspaces-provisioning");
  await page.locator('tr[data-workspace="staging"] td[data-col="status"] .badge', { hasText: "ready" }).waitFor(WAIT);
  await shot("08-workspaces-ready");
  const list = await api(`/v1/orgs/${org.id}/workspaces`);
  assert.equal(list.items[0].status, "ready");
});

test("the other pages render", async () => {
  await page.goto(`${BASE}/console/#/outbox`);
  await page.locator("#backlog", { hasText: /^\d+$/ }).waitFor(WAIT);
  await page.locator("#deliveries td").first().waitFor(WAIT);
  await shot("09-outbox");
  await page.goto(`${BASE}/console/#/health`);
  await page.locator("h2", { hasText: "Acme" }).waitFor(WAIT);
  await shot("10-health");
  await page.goto(`${BASE}/console/#/org`);
  await page.locator("#main tr.clickable").first().click();
  await page.locator("h2", { hasText: "Codegen jobs" }).waitFor(WAIT);
  await shot("11-org");
});
