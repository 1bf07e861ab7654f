// widget.cjs - the embeddable inbox widget (/widget.js) on a third-party page
// in headless Chromium through playwright-core (run by
// tests/e2e/notify_widget.sh, which starts two services, the page's own
// static server and installs playwright-core; not a test by itself).
//
// Environment (all set by notify_widget.sh):
//   SITE_DIR, SITE_URL  where the static server serves pages from, and its URL
//                       as the pages are opened: http://localhost:PORT, an
//                       origin the services list in web.cors_origins
//   SITE_URL_UNLISTED   the same server as http://127.0.0.1:PORT (an origin
//                       service A does not list)
//   URL_A, UID_A        service A: auth.mode off, web.cors_origins = SITE_URL
//   URL_B, UID_B        service B: auth.mode tokens, web.cors_origins "*"
//   USER_TOKEN          UID_B's user token; PRODUCER_TOKEN posts for anyone
//   SHOT_DIR            screenshots: e2e-widget.png, e2e-widget-tokens.png
//   CHROMIUM, E2E_STEP_MS (default 20000: how long one step may wait)
//
// The host page is hostile: "* { display: none !important }" plus rules that
// hide, shrink, blur or disable every element (only html and body are let
// through, or nothing would render at all), so everything the widget shows
// proves its shadow root and :host rule hold. Notices are posted from
// outside the page (this process) and must arrive live: the page never
// reloads. Every step asserts on the widget's DOM (read through its open
// shadow root) and on the service's own answers.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run through tests/e2e/notify_widget.sh)`);
  return v;
};
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

const HOSTILE = `
  * { display: none !important; visibility: hidden !important; opacity: 0 !important;
      pointer-events: none !important; transform: scale(0) !important; color: red !important;
      font-size: 40px !important; position: static !important; }
  html, body { display: block !important; visibility: visible !important; opacity: 1 !important;
               pointer-events: auto !important; transform: none !important; }
  html { font-size: 4px !important; }
  sluice-inbox { width: 0 !important; height: 0 !important; overflow: hidden !important;
                 clip-path: inset(50%) !important; filter: blur(8px) !important; }
  button, ul, li, div, span, svg, p { all: unset !important; display: none !important; }
`;

// A third-party page embedding src/widget.js with the given data attributes
// (hostile: with the CSS above; body: markup before the script).
function writePage(name, src, attrs, hostile = true, body = "") {
  const a = Object.entries(attrs).map(([k, v]) => ` data-${k}="${v}"`).join("");
  fs.writeFileSync(path.join(env("SITE_DIR"), name), `<!doctype html>
<html><head><meta charset="utf-8"><title>a third-party shop</title><link rel="icon" href="data:,">
<style>${hostile ? HOSTILE : ""}</style></head>
<body>
<p id="hostp">the host page's own paragraph (hidden by its own CSS)</p>
${body}
<script>window.unread = []; document.addEventListener("sluice-unread", (e) => window.unread.push(e.detail.count));</script>
<script src="${src}/widget.js"${a} async></script>
</body></html>
`);
}

// POST a notice to a service; returns its id.
async function post(base, uid, data, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(base + "/api/msg/product", { method: "POST", headers, body: JSON.stringify({ uid: Number(uid), type: 1, data }) });
  const j = await r.json();
  check(j.code === 10000, `post to ${base} refused: ${JSON.stringify(j)}`);
  return j.data.id;
}

async function serverCount(base, uid, token) {
  const r = await fetch(`${base}/api/user/info?uid=${uid}`, { headers: token ? { Authorization: "Bearer " + token } : {} });
  return (await r.json()).data.notification_count;
}

// Evaluate fn inside the widget's shadow root (the first <sluice-inbox>).
const inWidget = (page, fn, arg) =>
  page.evaluate(([src, a]) => {
    const host = document.querySelector("sluice-inbox");
    const root = host && host.shadowRoot;
    return root ? new Function("host", "root", "arg", src)(host, root, a) : null;
  }, [fn, arg]);

const waitWidget = (page, body, arg) =>
  page.waitForFunction(([src, a]) => {
    const host = document.querySelector("sluice-inbox");
    const root = host && host.shadowRoot;
    return !!root && new Function("host", "root", "arg", src)(host, root, a);
  }, [body, arg]);

const badge = (page) => inWidget(page, "const b = root.querySelector('.badge'); return b.hidden ? '' : b.textContent;");
const waitBadge = (page, text) =>
  waitWidget(page, "const b = root.querySelector('.badge'); return (b.hidden ? '' : b.textContent) === arg;", text);
const texts = (page) =>
  inWidget(page, "return [...root.querySelectorAll('.list .item .body')].map((b) => b.firstChild.textContent);");

async function newPage(ctx, errors, tolerate) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(STEP_MS);
  if (!tolerate) {
    page.on("pageerror", (e) => errors.push("page error: " + e.message));
    page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()} (${m.location().url})`); });
    page.on("requestfailed", (r) => {
      if (!r.url().includes("/api/msg/stream")) errors.push("request failed: " + r.url());
    });
  }
  return page;
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-chromium-"));
  let ctx = null;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"],
      viewport: { width: 900, height: 640 },
      timeout: 90000,
    });
    await authOff(ctx);
    await tokens(ctx);
    await refused(ctx);
  } finally {
    if (ctx) await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

// Service A (auth off, this site's origin listed): everything a user does.
async function authOff(ctx) {
  const site = env("SITE_URL"), base = env("URL_A"), uid = env("UID_A");
  const errors = [];
  writePage("shop.html", base, { server: base, uid, "page-size": 5, title: "Your notices" });
  const page = await newPage(ctx, errors);

  const names = [];
  for (let i = 1; i <= 6; i++) {
    names.push(`notice ${i}`);
    await post(base, uid, `notice ${i}`);
  }
  // Stored by the consumer before the page opens (the widget's first page).
  for (let i = 0; i < 200 && (await serverCount(base, uid)) !== 6; i++) await new Promise((r) => setTimeout(r, 50));

  await step("the widget loads on a page of another origin, goes live, counts 6", async () => {
    const resp = await page.goto(site + "/shop.html");
    check(resp && resp.status() === 200, `page answered ${resp && resp.status()}`);
    check(new URL(site).origin !== new URL(base).origin, "the page and the service share an origin");
    await waitWidget(page, "return root.querySelector('.status').textContent === 'live';");
    await waitBadge(page, "6");
  });

  await step("the host page's hostile CSS is in force, and does not reach the widget", async () => {
    const hostp = await page.evaluate(() => getComputedStyle(document.getElementById("hostp")).display);
    check(hostp === "none", `the hostile CSS is not applied to the page (p is ${hostp})`);
    const st = await page.evaluate(() => {
      const host = document.querySelector("sluice-inbox");
      const cs = getComputedStyle(host);
      const r = host.shadowRoot.querySelector(".bell").getBoundingClientRect();
      const x = r.left + r.width / 2, y = r.top + r.height / 2;
      const hit = host.shadowRoot.elementFromPoint(x, y);
      const f = getComputedStyle(host.shadowRoot.querySelector(".w")).fontSize;
      return { display: cs.display, visibility: cs.visibility, opacity: cs.opacity, filter: cs.filter,
               w: r.width, h: r.height, top: document.elementFromPoint(x, y) === host,
               hitBell: !!hit && !!hit.closest(".bell"), font: f };
    });
    check(st.display !== "none" && st.visibility === "visible" && st.opacity === "1" && st.filter === "none",
          `host styles leak in: ${JSON.stringify(st)}`);
    check(st.w >= 30 && st.h >= 30, `bell is ${st.w}x${st.h}`);
    check(st.top && st.hitBell, `the bell is not what a click there reaches: ${JSON.stringify(st)}`);
    check(st.font === "14px", `the page's font size reaches the widget: ${st.font}`);
  });

  await step("notices posted through the API arrive live: the badge counts", async () => {
    names.push("<img src=x onerror=\"window.pwned=1\">");
    await post(base, uid, names[6]);
    await waitBadge(page, "7");
    names.push("live one");
    await post(base, uid, "live one");
    await waitBadge(page, "8");
    check(await page.evaluate(() => window.unread.includes(8)), "no sluice-unread event with 8");
  });

  await step("the bell opens the list: newest first, live ones on a first page of 5, all unread, text not HTML", async () => {
    await page.locator("sluice-inbox .bell").click();
    await waitWidget(page, "return !root.querySelector('.pop').hidden && root.querySelectorAll('.list .item').length === 7;");
    const t = await texts(page);
    check(JSON.stringify(t) === JSON.stringify(names.slice(1).reverse()), `list is ${JSON.stringify(t)}`);
    check(await inWidget(page, "return root.querySelectorAll('.list .item.unread').length;") === 7, "not all unread");
    check(await inWidget(page, "return root.querySelectorAll('.list img').length;") === 0, "notice text rendered as HTML");
    check(await page.evaluate(() => window.pwned === undefined), "notice text ran as script");
    check(await inWidget(page, "return !root.querySelector('.more').hidden;"), "no Load more with 8 notices and pages of 5");
  });

  await step("load more appends the older notices, then hides", async () => {
    await page.locator("sluice-inbox .more").click();
    await waitWidget(page, "return root.querySelectorAll('.list .item').length === 8;");
    const t = await texts(page);
    check(JSON.stringify(t) === JSON.stringify(names.slice().reverse()), `list is ${JSON.stringify(t)}`);
    await waitWidget(page, "return root.querySelector('.more').hidden;");
  });

  await step("a notice posted while the list is open appears on top live", async () => {
    await post(base, uid, "live two");
    await waitWidget(page, "const b = root.querySelector('.list .item .body'); return b && b.firstChild.textContent === 'live two';");
    await waitBadge(page, "9");
    check((await texts(page)).length === 9, "list does not hold 9 notices");
  });

  await step("mark read: the item loses its mark, the badge and the server count drop", async () => {
    const item = page.locator("sluice-inbox .item", { hasText: "notice 3" });
    await item.locator(".mark").click();
    await waitWidget(page, `const li = [...root.querySelectorAll('.item')].find((l) => l.textContent.startsWith('notice 3'));
                            return li && !li.classList.contains('unread') && !li.querySelector('.mark');`);
    await waitBadge(page, "8");
    check(await serverCount(base, uid) === 8, "server count is not 8");
    check(await inWidget(page, "return root.querySelectorAll('.list .item.unread').length;") === 8, "other items changed");
  });

  await step("screenshot (list open)", async () => {
    await inWidget(page, "root.querySelector('.list').scrollTop = 0;");
    const shot = path.join(env("SHOT_DIR"), "e2e-widget.png");
    await page.screenshot({ path: shot });
    check(fs.statSync(shot).size > 1000, "screenshot is empty");
  });

  await step("mark all read: no badge, nothing unread, server count 0", async () => {
    await page.locator("sluice-inbox .all").click();
    await waitBadge(page, "");
    await waitWidget(page, "return root.querySelectorAll('.list .item.unread').length === 0;");
    check(await serverCount(base, uid) === 0, "server count is not 0");
    check(await page.evaluate(() => window.unread[window.unread.length - 1] === 0), "last sluice-unread is not 0");
  });

  await step("Escape closes the list", async () => {
    await page.keyboard.press("Escape");
    await waitWidget(page, "return root.querySelector('.pop').hidden;");
  });

  await step("no page or console errors, no failed requests", async () => {
    check(errors.length === 0, errors.join("; "));
  });
  await page.close();

  // The same user's widget in an element of the page (data-target), its
  // server taken from the script's own URL, the default page size.
  writePage("inline.html", base, { uid, target: "#bar" }, false,
            '<header id="bar" style="display:flex;justify-content:flex-end;padding:8px">a shop header</header>');
  const inline = await newPage(ctx, errors);
  await step("data-target: the bell sits in the page's element; server from the script URL", async () => {
    await inline.goto(site + "/inline.html");
    await waitWidget(inline, "return root.querySelector('.status').textContent === 'live';");
    const st = await inline.evaluate(() => {
      const host = document.querySelector("sluice-inbox");
      return { parent: host.parentElement.id, corner: host.hasAttribute("data-corner"), pos: getComputedStyle(host).position };
    });
    check(st.parent === "bar" && !st.corner && st.pos === "relative", `placed ${JSON.stringify(st)}`);
    check((await badge(inline)) === "", "everything was read, yet a badge");
    await inline.locator("sluice-inbox .bell").click();
    await waitWidget(inline, "return !root.querySelector('.pop').hidden && root.querySelectorAll('.list .item').length === 9;");
    check(await inWidget(inline, "return root.querySelectorAll('.list .item.unread').length;") === 0, "unread items");
    check(await inWidget(inline, "return root.querySelector('.more').hidden;"), "Load more with 9 notices and pages of 10");
    check(await inWidget(inline, "return root.querySelector('.pop').classList.contains('down');"), "a top bar opens up");
    check(errors.length === 0, errors.join("; "));
  });
  await inline.close();
}

// Service B (auth.mode tokens): the widget signs in with data-token alone.
async function tokens(ctx) {
  const site = env("SITE_URL"), base = env("URL_B"), uid = env("UID_B");
  const user = env("USER_TOKEN"), producer = env("PRODUCER_TOKEN");
  const errors = [];
  writePage("portal.html", base, { server: base, token: user, position: "bottom-left" });
  const page = await newPage(ctx, errors);

  await step("tokens: the widget goes live with its user token (uid from the token)", async () => {
    await page.goto(site + "/portal.html");
    await waitWidget(page, "return root.querySelector('.status').textContent === 'live';");
    check((await badge(page)) === "", "a new user's badge is shown");
  });

  await step("tokens: notices from a producer arrive live", async () => {
    await post(base, uid, "first for the token", producer);
    await post(base, uid, "second for the token", producer);
    await waitBadge(page, "2");
    await page.locator("sluice-inbox .bell").click();
    await waitWidget(page, "return root.querySelectorAll('.list .item.unread').length === 2;");
    const t = await texts(page);
    check(t[0] === "second for the token" && t[1] === "first for the token", `list is ${JSON.stringify(t)}`);
    check(await inWidget(page, "return root.querySelector('.pop').classList.contains('up');"), "bottom corner opens down");
  });

  await step("tokens: mark read and mark all read", async () => {
    await page.locator("sluice-inbox .item", { hasText: "first for the token" }).locator(".mark").click();
    await waitBadge(page, "1");
    check(await serverCount(base, uid, user) === 1, "server count is not 1");
    const shot = path.join(env("SHOT_DIR"), "e2e-widget-tokens.png");
    await page.screenshot({ path: shot });
    check(fs.statSync(shot).size > 1000, "screenshot is empty");
    await page.locator("sluice-inbox .all").click();
    await waitBadge(page, "");
    check(await serverCount(base, uid, user) === 0, "server count is not 0");
  });

  await step("tokens: no page or console errors, no failed requests", async () => {
    check(errors.length === 0, errors.join("; "));
  });
  await page.close();
}

// What must not work: a token the service refuses, an origin it does not list.
async function refused(ctx) {
  const user = env("USER_TOKEN");
  const forged = user.slice(0, user.lastIndexOf(".") + 1) + "AAAA" + user.slice(user.lastIndexOf(".") + 5);
  writePage("forged.html", env("URL_B"), { server: env("URL_B"), token: forged });
  let page = await newPage(ctx, [], true);
  await step("a refused token shows the error on the widget, no notices", async () => {
    await page.goto(env("SITE_URL") + "/forged.html");
    await waitWidget(page, "return root.querySelector('.bell').classList.contains('err');");
    const msg = await inWidget(page, "return root.querySelector('.alert').textContent;");
    check(/refused/.test(msg), `error text '${msg}'`);
    check(await inWidget(page, "return root.querySelector('.bell svg') !== null && root.querySelector('.bell .badge') !== null;"),
      "the bell lost its icon or badge to the error text");
    check(await inWidget(page, "return root.querySelectorAll('.list .item').length;") === 0, "items shown");
  });
  await page.close();

  writePage("elsewhere.html", env("URL_A"), { server: env("URL_A"), uid: env("UID_A") });
  page = await newPage(ctx, [], true);
  await step("a page of an origin service A does not list gets nothing (CORS)", async () => {
    await page.goto(env("SITE_URL_UNLISTED") + "/elsewhere.html");
    await waitWidget(page, "return root.querySelector('.bell').classList.contains('err');");
    const msg = await inWidget(page, "return root.querySelector('.alert').textContent;");
    check(/cannot reach/.test(msg), `error text '${msg}'`);
    check(await inWidget(page, "return root.querySelectorAll('.list .item').length;") === 0, "items shown");
  });
  await page.close();
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
