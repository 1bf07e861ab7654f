// signin.cjs - the web inbox signing in with a token (auth.mode tokens),
// driven by headless Chromium through playwright-core (run by
// tests/e2e/notify_browser_auth.sh, which starts the server with tokens and
// issues them; not a test by itself).
//
// Usage: node signin.cjs URL SCREENSHOT   (env USER_TOKEN, PRODUCER_TOKEN, E2E_UID)
//
// Opens the inbox without a token: the API answers 401 and the page shows
// its token field. Signs in with a user token: the uid comes from the
// token, the event stream goes live (?token=), a notice posted by a producer
// appears live, marking it read works; the token sits in sessionStorage and
// survives a reload; another user's inbox is refused (403 shown); signing
// out forgets the token. Every step asserts on the DOM; any page error, or a
// console error other than the expected 401/403 loads, fails.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, shot] = process.argv.slice(2);
const userToken = process.env.USER_TOKEN, producerToken = process.env.PRODUCER_TOKEN;
if (!url || !shot || !userToken || !producerToken) {
  console.error("usage: USER_TOKEN=.. PRODUCER_TOKEN=.. node signin.cjs URL SCREENSHOT");
  process.exit(2);
}
const base = url.replace(/\/$/, "");
const uid = process.env.E2E_UID || "77";
const STEP_MS = Number(process.env.E2E_STEP_MS || 20000);
let passed = 0, failed = 0;

async function step(what, fn) {
  try { await fn(); passed++; } catch (e) {
    failed++;
    console.error(`FAIL: ${what}: ${e.message.split("\n")[0]}`);
    throw e;
  }
}
function check(cond, msg) { if (!cond) throw new Error(msg); }

async function post(pathq, body, token) {
  const r = await fetch(base + pathq, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

async function drive(ctx) {
  const errors = [];
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.setDefaultTimeout(STEP_MS);
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  page.on("console", (m) => {
    // Chromium logs every 401/403 answer as a failed resource load: those are the point here.
    if (m.type() === "error" && !/status of 40[13]/.test(m.text())) errors.push("console: " + m.text());
  });

  await step("without a token the page asks for one", async () => {
    const resp = await page.goto(`${base}/?uid=${uid}`);
    check(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
    await page.waitForFunction(() => !document.getElementById("signin").hidden);
    await page.waitForFunction(() => document.querySelector("#sendmsg.error") !== null);
    check((await page.textContent("#sendmsg")).includes("token"), "the error does not mention the token");
    check(await page.locator("#signout").isHidden(), "sign out shown while signed out");
  });

  await step("a malformed token is refused by the page", async () => {
    await page.fill("#token", "not a token");
    await page.click("#signinbtn");
    await page.waitForFunction(() => document.getElementById("sendmsg").textContent.includes("not a token"));
    check(await page.evaluate(() => sessionStorage.getItem("sluice.token")) === null, "bad token stored");
  });

  await step("sign in with a user token: its uid opens, the stream is live", async () => {
    await page.fill("#uid", "1");
    await page.fill("#token", userToken);
    await page.click("#signinbtn");
    await page.waitForFunction(() => document.getElementById("status").textContent === "live");
    check((await page.inputValue("#uid")) === uid, "uid not taken from the token");
    check((await page.inputValue("#token")) === "", "token left in the field");
    check(await page.evaluate(() => sessionStorage.getItem("sluice.token")) === userToken, "token not in sessionStorage");
    check(await page.evaluate(() => localStorage.length) === 0, "something kept in localStorage");
    await page.waitForFunction(() => document.querySelector("#list li.empty") !== null);
    check(await page.locator("#signout").isVisible(), "sign out not offered");
  });

  await step("a producer's notice appears live; mark read works", async () => {
    const r = await post("/api/msg/product", { uid: Number(uid), type: 1, data: "signed-in notice" }, producerToken);
    check(r.status === 200 && r.json.code === 10000, "producer post refused: " + JSON.stringify(r.json));
    await page.waitForFunction(() => {
      const li = document.querySelector("#list li.unread");
      return li && li.textContent.includes("signed-in notice");
    });
    await page.waitForFunction(() => document.getElementById("count").textContent === "1");
    await page.locator("#list li", { hasText: "signed-in notice" }).locator("button.mark").click();
    await page.waitForFunction(() => document.getElementById("count").textContent === "0");
  });

  await step("the page's own send is refused for a user token (403 shown)", async () => {
    await page.fill("#data", "from a user token");
    await page.click("#send button[type=submit]");
    await page.waitForFunction(() => document.getElementById("sendmsg").textContent.includes("producer token"));
  });

  await step("screenshot", async () => {
    await page.screenshot({ path: shot, fullPage: true });
    check(fs.statSync(shot).size > 1000, "screenshot is empty");
  });

  await step("a reload keeps the session; another user's inbox is refused", async () => {
    await page.reload();
    await page.waitForFunction(() => document.getElementById("status").textContent === "live");
    await page.fill("#uid", String(Number(uid) + 1));
    await page.click("#load");
    await page.waitForFunction(() => document.getElementById("sendmsg").textContent.includes("may not access uid"));
  });

  await step("sign out forgets the token", async () => {
    await page.click("#signout");
    check(await page.evaluate(() => sessionStorage.getItem("sluice.token")) === null, "token still stored");
    await page.waitForFunction(() => document.getElementById("sendmsg").textContent === "signed out");
  });

  await step("no page or console errors", async () => { check(errors.length === 0, errors.join("; ")); });
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-chromium-"));
  let ctx = null;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1000, height: 640 },
      timeout: 90000,
    });
    await drive(ctx);
  } finally {
    if (ctx) await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main()
  .catch((e) => { if (failed === 0) { failed++; console.error("FAIL: " + (e && e.stack ? e.stack : e)); } })
  .finally(() => { console.log(`${passed} passed, ${failed} failed`); process.exitCode = failed === 0 ? 0 : 1; });
