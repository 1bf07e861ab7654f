#!/usr/bin/env bash
# notify_browser.sh - the web inbox in headless Chromium: starts the service
# on a temporary data directory and a free loopback port, then runs
# tests/e2e/browser/inbox.cjs (open /, choose a user, send a notice via the
# page, see it arrive live with badge and count, mark read, count drops) and
# keeps a screenshot at $BUILD_DIR/e2e-inbox.png.
# Needs the Debian chromium and node/npm (scripts/deps.sh); playwright-core,
# pinned in tests/e2e/browser/package.json, is installed from the npm registry
# into $BUILD_DIR/e2e-node on first run. No browser is downloaded.
# NOTIFY_E2E_STACK=seed runs it on RabbitMQ + MariaDB with separate consumer
# processes (ctest e2e_notify_browser_seed_stack), screenshot
# $BUILD_DIR/e2e-inbox-seed.png; NOTIFY_E2E_STACK=pg on PostgreSQL
# (e2e_notify_browser_pg_stack, e2e-inbox-pg.png).
source "$(dirname "$0")/lib/notify.bash"
BUILD_DIR=${BUILD_DIR:-$(dirname "$SLUICE")}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
for tool in node npm "$CHROMIUM"; do
  command -v "$tool" >/dev/null || { echo "notify_browser: $tool not found (run scripts/deps.sh)" >&2; exit 1; }
done

need_playwright || { finish; exit; }

start_server
SHOT="$BUILD_DIR/e2e-inbox.png"
[ "$STACK" = sqlite ] || SHOT="$BUILD_DIR/e2e-inbox-$STACK.png"
rm -f "$SHOT"
NODE_PATH="$NODE_DIR/node_modules" CHROMIUM="$CHROMIUM" \
  timeout 200 node "$SRC_DIR/tests/e2e/browser/inbox.cjs" "$URL" "$SHOT"
rc=$?
if [ $rc -ne 0 ]; then
  bad "inbox.cjs exited with status $rc"
  echo "server stderr:" >&2; tail -20 "$WORK/server.err" >&2
fi
[ -f "$SHOT" ] && echo "screenshot: $SHOT"
finish
