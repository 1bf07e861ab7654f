#!/usr/bin/env bash
# notify_widget.sh - the embeddable inbox widget (/widget.js) in headless
# Chromium on a third-party page: a tiny static server of its own
# (tests/e2e/browser/static.cjs) serves the page from another origin, with
# hostile CSS, and tests/e2e/browser/widget.cjs drives it against two
# services: A with auth.mode off and web.cors_origins listing the page's
# origin only, B with auth.mode tokens (the widget given data-token).
# Screenshots: $BUILD_DIR/e2e-widget.png, $BUILD_DIR/e2e-widget-tokens.png.
# Before the browser, curl checks what a browser relies on: the script's
# content type and caching (ETag, 304), CORS answers for listed, unlisted and
# admin cases, and that a bad web.cors_origins stops the service at start.
# Needs chromium, node, npm (scripts/deps.sh); playwright-core as pinned in
# tests/e2e/browser/package.json, installed into $BUILD_DIR/e2e-node.
source "$(dirname "$0")/lib/notify.bash"
BUILD_DIR=${BUILD_DIR:-$(dirname "$SLUICE")}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
for tool in node npm "$CHROMIUM"; do
  command -v "$tool" >/dev/null || { echo "notify_widget: $tool not found (run scripts/deps.sh)" >&2; exit 1; }
done
need_playwright || { finish; exit; }
CONFIG="$SRC_DIR/config/config.yaml"

# ---- a bad origin list is refused (serve stops at start), naming the key ----
for bad_list in 'https://app.example.com/' 'ftp://x.example' '*, https://a.example' 'https://a.example:99999'; do
  out=$(cd "$WORK" && SLUICE_WEB_CORS_ORIGINS="$bad_list" timeout 20 "$SLUICE" notify config --config "$CONFIG" 2>&1 >/dev/null)
  st=$?
  check "web.cors_origins '$bad_list' is refused (status $st): $out" matches "$st:$out" '^[1-9][0-9]*:.*web\.cors_origins'
done
out=$(cd "$WORK" && SLUICE_WEB_CORS_ORIGINS='https://a.example/path' timeout 20 "$SLUICE" notify serve --config "$CONFIG" 2>&1 >/dev/null)
st=$?
check "serve does not start with a bad web.cors_origins (status $st): $out" matches "$st:$out" '^[1-9][0-9]*:.*web\.cors_origins'
out=$(SLUICE_WEB_CORS_ORIGINS='https://a.example, http://localhost:8080' "$SLUICE" notify config --config "$CONFIG" 2>&1)
check "a good list is taken as given: $(grep cors_origins <<<"$out")" \
  grep -q '^  cors_origins: "https://a.example, http://localhost:8080"$' <<<"$out"

# ---- the third-party site: its own static server, its own origin ----
SITE_DIR="$WORK/site"
mkdir -p "$SITE_DIR"
node "$SRC_DIR/tests/e2e/browser/static.cjs" "$SITE_DIR" >"$WORK/static.out" 2>"$WORK/static.err" &
EXTRA_PIDS+=($!)
wait_until 30 grep -q '^http://' "$WORK/static.out" || { bad "static server did not start: $(cat "$WORK/static.err")"; finish; exit; }
SITE_PORT=$(sed -n 's|^http://127.0.0.1:\([0-9]*\)/$|\1|p' "$WORK/static.out")
SITE_URL="http://localhost:$SITE_PORT"

# ---- service A: auth off, only the site's origin listed ----
start_server SLUICE_WEB_CORS_ORIGINS="$SITE_URL, https://*.example.org"
URL_A=${URL%/}
UID_A=$(( RANDOM + 1000 ))
UID_C=$(( UID_A + 40000 )) # the curl checks' user: the browser's UID_A starts empty

CASE="widget.js"
H=$(curl -s -i "$URL_A/widget.js")
check "widget.js 200" grep -q '^HTTP/1.1 200' <<<"$H"
check "widget.js is JavaScript" grep -qi '^Content-Type: text/javascript; charset=utf-8' <<<"$H"
check "widget.js is cacheable" grep -qi '^Cache-Control: public, max-age=[1-9]' <<<"$H"
check "widget.js nosniff" grep -qi '^X-Content-Type-Options: nosniff' <<<"$H"
check "widget.js body is the widget" grep -q 'attachShadow' <<<"$H"
ETAG=$(grep -i '^ETag:' <<<"$H" | cut -d' ' -f2 | tr -d '\r')
check "widget.js has an ETag" matches "$ETAG" '^"[0-9a-f]{20}"$'
H=$(curl -s -i -H "If-None-Match: $ETAG" "$URL_A/widget.js")
check "widget.js revalidates with 304" grep -q '^HTTP/1.1 304' <<<"$H"
check "304 has no body" [ -z "$(sed -n '/^\r$/,$p' <<<"$H" | tail -n +2)" ]
H=$(curl -s -i -H 'If-None-Match: "0000"' "$URL_A/widget.js")
check "another ETag gets the script" grep -q '^HTTP/1.1 200' <<<"$H"
H=$(curl -s -I "$URL_A/widget.js")
check "HEAD widget.js" grep -q '^HTTP/1.1 200' <<<"$H"

CASE="CORS"
H=$(curl -s -i -X OPTIONS -H "Origin: $SITE_URL" -H 'Access-Control-Request-Method: POST' \
      -H 'Access-Control-Request-Headers: content-type' "$URL_A/api/msg/read")
check "preflight of a listed origin: 204" grep -q '^HTTP/1.1 204' <<<"$H"
check "preflight names the origin" grep -qi "^Access-Control-Allow-Origin: $SITE_URL"$'\r' <<<"$H"
check "preflight allows POST" grep -qi '^Access-Control-Allow-Methods: POST' <<<"$H"
check "preflight allows Content-Type" grep -qi '^Access-Control-Allow-Headers: .*Content-Type' <<<"$H"
check "preflight varies by origin" grep -qi '^Vary: Origin' <<<"$H"
H=$(curl -s -i -H "Origin: $SITE_URL" "$URL_A/api/user/info?uid=$UID_C")
check "a listed origin's GET names it" grep -qi "^Access-Control-Allow-Origin: $SITE_URL"$'\r' <<<"$H"
for o in https://a.example.org https://b.c.example.org; do
  H=$(curl -s -i -X OPTIONS -H "Origin: $o" "$URL_A/api/msg/list")
  check "a subdomain of a *. entry is let in: $o" grep -qi "^Access-Control-Allow-Origin: $o"$'\r' <<<"$H"
done
for o in https://example.org https://evilexample.org http://a.example.org https://a.example.org:8443 null; do
  H=$(curl -s -i -X OPTIONS -H "Origin: $o" "$URL_A/api/msg/list")
  check "not let in: $o" grep -q '^HTTP/1.1 403' <<<"$H"
done
H=$(curl -s -i -X OPTIONS -H 'Origin: http://evil.example' -H 'Access-Control-Request-Method: POST' "$URL_A/api/msg/read")
check "preflight of an unlisted origin: 403" grep -q '^HTTP/1.1 403' <<<"$H"
check "... without CORS headers" bash -c '! grep -qi "^Access-Control-Allow" <<<"$1"' _ "$H"
call POST /api/msg/read -H 'Origin: http://evil.example' -d "uid=$UID_C&all=true"
expect 403 10001 "not in web.cors_origins"
call POST /api/msg/product -H "Origin: $SITE_URL" -d "uid=$UID_C&type=1&data=form post from the site"
expect 200 10000
wait_until 20 count_is "$UID_C" 1 || bad "the listed origin's notice was not stored"
call POST /api/msg/read -d "uid=$UID_C&all=true"
expect 200 10000
wait_until 20 count_is "$UID_C" 0 || bad "mark all read (no Origin) did not apply"
H=$(curl -s -i -X OPTIONS -H "Origin: $SITE_URL" -H 'Access-Control-Request-Method: GET' "$URL_A/api/admin/failed")
check "admin preflight from a listed origin: 403" grep -q '^HTTP/1.1 403' <<<"$H"
call POST /api/admin/failed/retry -H "Origin: $SITE_URL" -d 'all=true'
expect 403 10001 "admin routes do not answer web pages of origin"
H=$(curl -s -i "$URL_A/api/admin/failed")
check "admin answers carry no CORS header" bash -c '! grep -qi "^Access-Control-Allow" <<<"$1"' _ "$H"
check "admin still answers loopback without Origin" grep -q '^HTTP/1.1 200' <<<"$H"
call GET /api/admin/failed -H "Origin: ${URL_A}"
expect 200 10000

# ---- service B: auth.mode tokens, the default origin list "*" ----
A_PID=$SERVER_PID A_WORK=$WORK
export SLUICE_AUTH_SECRET="widget-e2e-$RANDOM-$RANDOM-0123456789abcdef0123"
UID_B=$(( RANDOM + 1000 ))
USER_TOKEN=$("$SLUICE" notify token --config "$CONFIG" --uid "$UID_B")
PRODUCER_TOKEN=$("$SLUICE" notify token --config "$CONFIG" --producer)
mkdir -p "$WORK/b"
(cd "$WORK/b" && exec env SLUICE_AUTH_MODE=tokens "$SLUICE" notify serve --config "$CONFIG" \
    >"$WORK/b/server.out" 2>>"$WORK/b/server.err") &
B_PID=$!
EXTRA_PIDS+=($B_PID)
wait_until 30 grep -q 'http://' "$WORK/b/server.out" || { bad "service B did not start: $(cat "$WORK/b/server.err")"; finish; exit; }
URL_B=$(grep -o 'http://[^ ]*' "$WORK/b/server.out" | head -1)
URL_B=${URL_B%/}
H=$(curl -s -i -X OPTIONS -H 'Origin: http://anywhere.example' -H 'Access-Control-Request-Headers: authorization' "$URL_B/api/msg/list")
check "B: preflight from any origin with \"*\"" grep -qi '^Access-Control-Allow-Origin: \*' <<<"$H"
check "B: preflight allows Authorization" grep -qi '^Access-Control-Allow-Headers: Authorization' <<<"$H"

# ---- the browser ----
rm -f "$BUILD_DIR/e2e-widget.png" "$BUILD_DIR/e2e-widget-tokens.png"
SITE_DIR=$SITE_DIR SITE_URL=$SITE_URL SITE_URL_UNLISTED="http://127.0.0.1:$SITE_PORT" \
URL_A=$URL_A UID_A=$UID_A URL_B=$URL_B UID_B=$UID_B USER_TOKEN=$USER_TOKEN PRODUCER_TOKEN=$PRODUCER_TOKEN \
SHOT_DIR=$BUILD_DIR NODE_PATH="$NODE_DIR/node_modules" CHROMIUM="$CHROMIUM" \
  timeout 200 node "$SRC_DIR/tests/e2e/browser/widget.cjs"
rc=$?
if [ $rc -ne 0 ]; then
  bad "widget.cjs exited with status $rc"
  echo "service A stderr:" >&2; tail -20 "$WORK/server.err" >&2
  echo "service B stderr:" >&2; tail -20 "$WORK/b/server.err" >&2
fi
for f in e2e-widget.png e2e-widget-tokens.png; do [ -f "$BUILD_DIR/$f" ] && echo "screenshot: $BUILD_DIR/$f"; done

# ---- both services stop cleanly (sanitizer reports make the status non-zero) ----
kill -TERM "$B_PID" 2>/dev/null; wait "$B_PID"; st=$?
check "service B exits cleanly (status $st)" [ "$st" = 0 ]
kill -TERM "$A_PID" 2>/dev/null; wait "$A_PID"; st=$?
SERVER_PID=""
check "service A exits cleanly (status $st)" [ "$st" = 0 ]
finish
