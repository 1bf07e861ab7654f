// inbox.cjs - the web inbox of `sluice notify serve` driven by headless
// Chromium through playwright-core (run by tests/e2e/notify_browser.sh, which
// starts the server and installs playwright-core; not a test by itself).
//
// Usage: node inbox.cjs URL SCREENSHOT
// Environment: CHROMIUM (default /usr/bin/chromium), E2E_UID (default 4242),
// E2E_STEP_MS (how long one step may wait for the page, default 20000: a
// whole run takes about 8 s, the margin is for a loaded 2-core machine, where
// even starting chromium can take half a minute).
//
// It acts as a person would: opens /, chooses a user, sends a test notice with
// the page's form, and waits for it to appear live (the page never reloads:
// its list is refreshed only by server-sent events), then posts a second
// notice from outside the page (another client) and waits for that too, checks
// the unread badge, the count and the title, marks one notice read and sees
// the count drop, and saves a screenshot. Every step asserts on the DOM; any
// failed step, page error or console error exits non-zero. No browser is ever
// downloaded: the Debian chromium is launched with a fresh profile directory.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node inbox.cjs URL SCREENSHOT");
  process.exit(2);
}
const base = url.replace(/\/$/, "");
const uid = process.env.E2E_UID || "4242";
const STEP_MS = Number(process.env.E2E_STEP_MS || 20000);
let passed = 0;
let failed = 0;

async function step(what, fn) {
  try {
    await fn();
    passed++;
  } catch (e) {
    failed++;
    console.error(`FAIL: ${what}: ${e.message.split("\n")[0]}`);
    throw e;
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-chromium-"));
  let ctx = null;
  try {
    // A persistent context on a fresh directory: playwright passes it to
    // chromium as --user-data-dir.
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"],
      viewport: { width: 1000, height: 640 },
      timeout: 90000,
    });
    await drive(ctx);
  } finally {
    if (ctx) await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function drive(ctx) {
  const errors = [];
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.setDefaultTimeout(STEP_MS);
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()} (${m.location().url})`); });
  page.on("requestfailed", (r) => {
    // The event stream is cut when the browser closes; anything else is a bug.
    if (!r.url().includes("/api/msg/stream")) errors.push("request failed: " + r.url());
  });

  await step("open / shows the inbox", async () => {
    const resp = await page.goto(base + "/");
    check(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
    check((await page.title()).includes("sluice inbox"), "title lacks 'sluice inbox'");
    await page.locator("#uid").waitFor();
    await page.locator("#send button[type=submit]").waitFor();
  });

  await step("a bad user id is refused with a visible error", async () => {
    await page.fill("#uid", "-1");
    await page.click("#load");
    await page.waitForFunction(() => document.querySelector("#sendmsg.error") !== null);
    check((await page.textContent("#sendmsg")).includes("uid"), "error does not name uid");
  });

  await step("choose a user", async () => {
    await page.fill("#uid", uid);
    await page.click("#load");
    await page.waitForFunction(() => document.getElementById("status").textContent === "live");
    await page.waitForFunction((u) => location.search === "?uid=" + u, uid);
    await page.waitForFunction(() => document.querySelector("#list li.empty") !== null);
    check((await page.textContent("#count")) === "0", "new user's count is not 0");
    check(await page.locator("#count.zero").count() === 1, "zero badge lacks class zero");
  });

  let sentId = "";
  await step("send a test notice via the page; it appears live", async () => {
    await page.fill("#data", "hello from the browser");
    await page.selectOption("#stype", "2");
    await page.click("#send button[type=submit]");
    await page.waitForFunction(() => /^queued [0-9a-f-]{36}$/.test(document.getElementById("sendmsg").textContent));
    sentId = (await page.textContent("#sendmsg")).slice(7);
    check(await page.locator("#sendmsg.error").count() === 0, "success still shown as an error");
    check((await page.inputValue("#data")) === "", "input not cleared after send");
    await page.waitForFunction(() => {
      const li = document.querySelector("#list li.unread");
      return li && li.textContent.includes("hello from the browser");
    });
    const meta = await page.textContent("#list li.unread .meta");
    check(meta.includes("type 2"), `meta '${meta}' lacks the type`);
    await page.waitForFunction(() => document.getElementById("count").textContent === "1");
    check(await page.locator("#count.zero").count() === 0, "badge of 1 still has class zero");
    check((await page.title()).startsWith("(1) "), `title '${await page.title()}' lacks the count`);
    await page.waitForFunction((u) => document.getElementById("nick").textContent === "user" + u, uid);
  });

  await step("a notice from another client appears live, newest first", async () => {
    const r = await fetch(base + "/api/msg/product", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ uid: Number(uid), type: 1, data: "second <b>not bold</b>" }),
    });
    const j = await r.json();
    check(j.code === 10000 && j.data.id !== sentId, "second notice not accepted: " + JSON.stringify(j));
    await page.waitForFunction(() => document.querySelectorAll("#list li.unread").length === 2);
    const first = await page.textContent("#list li:first-child .body");
    check(first.startsWith("second <b>not bold</b>"), `newest first / escaped text: '${first}'`);
    check(await page.locator("#list li b").count() === 0, "notice data rendered as HTML");
    await page.waitForFunction(() => document.getElementById("count").textContent === "2");
    check((await page.title()).startsWith("(2) "), "title lacks the count 2");
  });

  await step("mark one read: the count drops, the item loses its badge", async () => {
    const item = page.locator("#list li", { hasText: "hello from the browser" });
    await item.locator("button.mark").click();
    await page.waitForFunction(() => document.getElementById("count").textContent === "1");
    await page.waitForFunction(() => {
      const li = [...document.querySelectorAll("#list li")].find((l) => l.textContent.includes("hello from the browser"));
      return li && !li.classList.contains("unread") && !li.querySelector("button.mark");
    });
    check(await page.locator("#list li.unread").count() === 1, "other notice is no longer unread");
    const j = await (await fetch(`${base}/api/user/info?uid=${uid}`)).json();
    check(j.data.notification_count === 1, `server count ${j.data.notification_count}, want 1`);
  });

  await step("screenshot", async () => {
    await page.screenshot({ path: shot, fullPage: true });
    check(fs.statSync(shot).size > 1000, "screenshot is empty");
  });

  await step("mark all read: the count is 0", async () => {
    await page.click("#readall");
    await page.waitForFunction(() => document.getElementById("count").textContent === "0");
    await page.waitForFunction(() => document.querySelectorAll("#list li.unread").length === 0);
    check(await page.locator("#count.zero").count() === 1, "zero badge lacks class zero");
    check((await page.title()) === "sluice inbox", `title '${await page.title()}' still counts`);
  });

  await step("no page or console errors", async () => {
    check(errors.length === 0, errors.join("; "));
  });
}

main()
  .catch((e) => {
    if (failed === 0) {
      failed++;
      console.error("FAIL: " + (e && e.stack ? e.stack : e));
    }
  })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exitCode = failed === 0 ? 0 : 1;
  });
