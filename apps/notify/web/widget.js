/*
 * widget.js - the sluice inbox widget: one <script> tag puts a bell with the
 * unread count and a popover list of a user's notices on any page.
 *
 *   <script src="https://notify.example.com/widget.js" data-uid="42" async></script>
 *   <script src="https://notify.example.com/widget.js" data-token="eyJ..." async></script>
 *
 * Served by `sluice notify serve` at /widget.js (embedded in the binary, no
 * CDN, no build step). Options are data attributes of the script tag:
 *   data-server     the service's URL (default: where widget.js came from)
 *   data-uid        whose notices (auth.mode off)
 *   data-token      a user token (auth.mode tokens); its sub is the uid
 *   data-page-size  notices per page of the list, 1..100 (default 10)
 *   data-target     CSS selector of an element to put the bell in (default:
 *                   fixed in a corner of the window)
 *   data-position   that corner: top-right (default), top-left, bottom-right,
 *                   bottom-left
 *   data-title      the popover's heading (default "Notifications")
 * The widget's element, <sluice-inbox>, fires a bubbling "sluice-unread"
 * event (detail.count) whenever the count changes.
 *
 * Everything lives in an open shadow root under <sluice-inbox>: the page's
 * CSS cannot reach inside, and the :host rule below resets the element
 * itself with !important, which beats the page's own !important rules (CSS
 * scoping: for important declarations the shadow tree's win), so even
 * "* { display: none !important }" leaves the widget visible. Sizes are in
 * px (rem would follow the page's root font size).
 *
 * Data: GET /api/msg/list (pages by cursor), /api/user/info, POST
 * /api/msg/read, and the event stream /api/msg/stream (EventSource; the
 * token goes as ?token= because EventSource cannot send headers). Calls go
 * to another origin, so the service must list this page's origin in
 * web.cors_origins (default "*"). Notice text is always set as text, never
 * as HTML.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;

  var CSS = [
    ":host{all:initial!important;display:inline-block!important;position:relative!important;",
    "visibility:visible!important;opacity:1!important;pointer-events:auto!important;",
    "z-index:2147483000!important;width:auto!important;height:auto!important;margin:0!important}",
    ":host([data-corner]){position:fixed!important}",
    ":host([data-corner=top-right]){top:12px!important;right:12px!important}",
    ":host([data-corner=top-left]){top:12px!important;left:12px!important}",
    ":host([data-corner=bottom-right]){bottom:12px!important;right:12px!important}",
    ":host([data-corner=bottom-left]){bottom:12px!important;left:12px!important}",
    ".w{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2330;position:relative}",
    "button{font:inherit;cursor:pointer}",
    ".bell{all:unset;box-sizing:border-box;position:relative;display:inline-flex;align-items:center;",
    "justify-content:center;width:40px;height:40px;border-radius:50%;background:#fff;color:#1d2330;",
    "box-shadow:0 1px 4px rgba(0,0,0,.25);cursor:pointer}",
    ".bell:focus-visible{outline:2px solid #2f6fed;outline-offset:2px}",
    ".bell svg{width:22px;height:22px;display:block}",
    ".bell.err{color:#c22}",
    ".badge{position:absolute;top:-3px;right:-3px;min-width:18px;height:18px;padding:0 5px;box-sizing:border-box;",
    "border-radius:9px;background:#d33;color:#fff;font:600 11px/18px system-ui,sans-serif;text-align:center}",
    ".badge[hidden],.pop[hidden],.more[hidden],.alert[hidden],.empty[hidden]{display:none}",
    ".pop{position:absolute;width:340px;max-width:calc(100vw - 24px);background:#fff;border:1px solid #dde1ea;",
    "border-radius:10px;box-shadow:0 8px 28px rgba(0,0,0,.18);overflow:hidden;text-align:left}",
    ".pop.down{top:48px}.pop.up{bottom:48px}.pop.right{right:0}.pop.left{left:0}",
    ".head{display:flex;align-items:center;gap:8px;padding:10px 12px;border-bottom:1px solid #e8ebf1}",
    ".title{font-weight:600;flex:1}",
    ".status{font-size:11px;color:#8a91a1}.status.live{color:#1a8a3a}",
    ".link{all:unset;cursor:pointer;color:#2f6fed;font-size:12px}",
    ".link:disabled{color:#aab;cursor:default}",
    ".link:focus-visible{outline:2px solid #2f6fed}",
    ".list{list-style:none;margin:0;padding:0;max-height:360px;overflow-y:auto}",
    ".item{display:flex;gap:10px;align-items:flex-start;padding:9px 12px;border-bottom:1px solid #f0f2f6}",
    ".item.unread{background:#fff7e0}",
    ".dot{flex:none;width:8px;height:8px;margin-top:6px;border-radius:50%;background:transparent}",
    ".unread .dot{background:#d33}",
    ".body{flex:1;min-width:0;white-space:pre-wrap;word-break:break-word}",
    ".meta{display:block;font-size:11px;color:#8a91a1;margin-top:2px}",
    ".empty{padding:22px 12px;text-align:center;color:#8a91a1}",
    ".alert{padding:8px 12px;background:#fdecec;color:#a11;font-size:12px}",
    ".more{all:unset;display:block;width:100%;box-sizing:border-box;padding:9px;text-align:center;",
    "color:#2f6fed;cursor:pointer;font-size:13px}",
  ].join("");
  var BELL = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" ' +
    'stroke-linejoin="round" aria-hidden="true"><path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/>' +
    '<path d="M13.73 21a2 2 0 0 1-3.46 0"/></svg>';

  var ds = script.dataset;
  var server = (ds.server || (script.src ? new URL(".", script.src).href : "")).replace(/\/+$/, "");
  var token = (ds.token || "").trim();
  var uid = (ds.uid || "").trim();
  var size = Math.min(100, Math.max(1, parseInt(ds.pageSize || "10", 10) || 10));
  var configError = "";
  if (token && !uid) uid = tokenSub(token) || "";
  if (!server) configError = "data-server is required";
  else if (!/^\d+$/.test(uid)) configError = token ? "data-token is not a user token (no numeric sub)" : "data-uid or data-token is required";
  else if (token && tokenSub(token) && tokenSub(token) !== uid) configError = "data-uid differs from the token's user";

  var host = document.createElement("sluice-inbox");
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML = "<style>" + CSS + "</style>" +
    '<div class="w"><button class="bell" type="button" aria-haspopup="dialog" aria-expanded="false">' + BELL +
    '<span class="badge" hidden>0</span></button>' +
    '<div class="pop" role="dialog" hidden><div class="head"><span class="title"></span>' +
    '<span class="status">offline</span><button class="link all" type="button">Mark all read</button></div>' +
    '<div class="alert" role="alert" hidden></div><ul class="list"></ul><div class="empty">No notifications</div>' +
    '<button class="more" type="button" hidden>Load more</button></div></div>';
  var $ = function (sel) { return root.querySelector(sel); };
  $(".title").textContent = ds.title || "Notifications";
  $(".pop").setAttribute("aria-label", ds.title || "Notifications");

  var items = [], count = 0, cursor = 0, loaded = false, es = null, retry = 1000, syncing = null, again = false;

  function tokenSub(t) {
    try {
      var p = JSON.parse(atob(t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      return typeof p.sub === "string" && /^\d+$/.test(p.sub) ? p.sub : null;
    } catch (e) { return null; }
  }

  function api(method, path, body) {
    var headers = {};
    var opt = { method: method, headers: headers, mode: "cors", credentials: "omit", cache: "no-store" };
    if (token) headers.Authorization = "Bearer " + token;
    if (body) { headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
    return fetch(server + path, opt).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (j) {
        if (j && j.code === 10000) return j.data;
        var e = new Error(j && j.msg ? j.msg : "HTTP " + r.status);
        e.status = r.status;
        throw e;
      });
    }, function () { throw new Error("cannot reach " + server + " (offline, or this page's origin is not allowed)"); });
  }

  function showError(e) {
    var m = e ? (e.status === 401 ? "sign-in refused: " : "") + e.message : "";
    $(".alert").textContent = m; /* not ".err": the bell wears that class while in error */
    $(".alert").hidden = !m;
    $(".bell").classList.toggle("err", !!m);
    $(".bell").title = m;
  }

  function setCount(n) {
    count = Math.max(0, n | 0);
    var b = $(".badge");
    b.textContent = count > 99 ? "99+" : String(count);
    b.hidden = count === 0;
    var label = (ds.title || "Notifications") + (count ? ", " + count + " unread" : "");
    $(".bell").setAttribute("aria-label", label);
    $(".all").disabled = count === 0;
    host.dispatchEvent(new CustomEvent("sluice-unread", { bubbles: true, detail: { count: count } }));
  }

  function render() {
    var ul = $(".list");
    ul.textContent = "";
    items.forEach(function (n) {
      var li = document.createElement("li");
      li.className = "item" + (n.status ? "" : " unread");
      li.dataset.id = n.id;
      var dot = document.createElement("span");
      dot.className = "dot";
      var body = document.createElement("div");
      body.className = "body";
      body.textContent = n.data;
      var meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = n.create_time || n.updated_at || "";
      body.appendChild(meta);
      li.append(dot, body);
      if (!n.status) {
        var b = document.createElement("button");
        b.type = "button";
        b.className = "link mark";
        b.textContent = "Mark read";
        b.onclick = function () { markRead(n); };
        li.appendChild(b);
      }
      ul.appendChild(li);
    });
    $(".empty").hidden = items.length > 0 || !loaded;
    $(".more").hidden = !cursor;
  }

  function page(after) {
    return api("GET", "/api/msg/list?uid=" + uid + "&size=" + size + (after ? "&cursor=" + after : ""));
  }

  // Bring the top of the list up to date (new notices, changed statuses);
  // one run at a time, a request during a run makes one more run.
  function sync() {
    if (syncing) { again = true; return syncing; }
    syncing = Promise.all([page(0), api("GET", "/api/user/info?uid=" + uid)]).then(function (res) {
      var top = res[0].list || [];
      setCount(res[1].notification_count);
      var known = {};
      items.forEach(function (n) { known[n.id] = n; });
      var fresh = top.filter(function (n) { return !known[n.id]; });
      if (!loaded || !items.length || (fresh.length === top.length && items[0].id < top[top.length - 1].id)) {
        items = top; // first load, or more new notices than a page: start over
        cursor = res[0].next_cursor || 0;
      } else {
        top.forEach(function (n) { if (known[n.id]) known[n.id].status = n.status; });
        items = fresh.concat(items);
      }
      if (!count) items.forEach(function (n) { n.status = 1; });
      loaded = true;
      showError(null);
      render();
    }).catch(showError).then(function () {
      syncing = null;
      if (again) { again = false; sync(); }
    });
    return syncing;
  }

  function loadMore() {
    if (!cursor) return;
    $(".more").disabled = true;
    page(cursor).then(function (d) {
      var known = {};
      items.forEach(function (n) { known[n.id] = true; });
      items = items.concat((d.list || []).filter(function (n) { return !known[n.id]; }));
      cursor = d.next_cursor || 0;
      render();
    }).catch(showError).then(function () { $(".more").disabled = false; });
  }

  // uid goes as a string (exact past 2^53). The answer means the read is
  // queued; the stream's "read" event brings the new count (and a fallback
  // sync in case events were lost).
  function markRead(n) {
    api("POST", "/api/msg/read", { uid: uid, id: n.id }).then(function () {
      n.status = 1;
      render();
      setTimeout(sync, 1500);
    }).catch(showError);
  }

  function markAll() {
    api("POST", "/api/msg/read", { uid: uid, all: true }).then(function () {
      items.forEach(function (n) { n.status = 1; });
      render();
      setTimeout(sync, 1500);
    }).catch(showError);
  }

  function status(text) {
    $(".status").textContent = text;
    $(".status").classList.toggle("live", text === "live");
  }

  function connect() {
    if (es) es.close();
    es = new EventSource(server + "/api/msg/stream?uid=" + uid + (token ? "&token=" + encodeURIComponent(token) : ""));
    var onCount = function (e) {
      try { setCount(JSON.parse(e.data).notification_count); } catch (x) { /* a malformed event changes nothing */ }
      sync();
    };
    es.addEventListener("hello", function (e) { retry = 1000; status("live"); onCount(e); });
    es.addEventListener("notice", onCount);
    es.addEventListener("read", onCount);
    es.onerror = function () {
      status("reconnecting");
      if (es.readyState === EventSource.CLOSED) { // refused (401, 403, CORS): try again later
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 60000);
        sync();
      }
    };
  }

  function place() {
    var pop = $(".pop"), r = $(".bell").getBoundingClientRect();
    var right = r.left + r.width / 2 > window.innerWidth / 2;
    var up = r.top + r.height / 2 > window.innerHeight * 0.6;
    pop.className = "pop " + (up ? "up " : "down ") + (right ? "right" : "left");
  }

  function toggle(open) {
    var pop = $(".pop");
    if (open === undefined) open = pop.hidden;
    if (open) place();
    pop.hidden = !open;
    $(".bell").setAttribute("aria-expanded", String(open));
  }

  $(".bell").onclick = function () { toggle(); };
  $(".all").onclick = markAll;
  $(".more").onclick = loadMore;
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape" || $(".pop").hidden) return;
    toggle(false);
    $(".bell").focus();
  });
  document.addEventListener("click", function (e) {
    if (e.composedPath().indexOf(host) < 0) toggle(false);
  });

  function mount() {
    var target = null;
    try { target = ds.target ? document.querySelector(ds.target) : null; } catch (e) { /* a bad selector: the corner */ }
    if (!target) host.setAttribute("data-corner", /^(top|bottom)-(left|right)$/.test(ds.position || "") ? ds.position : "top-right");
    (target || document.body || document.documentElement).appendChild(host);
    if (configError) {
      showError(new Error(configError));
      console.error("sluice widget: " + configError);
      return;
    }
    setCount(0);
    render();
    connect();
    sync();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
