#!/usr/bin/env bash
# notify_browser_auth.sh - the web inbox signing in with a token in headless
# Chromium (tests/e2e/browser/signin.cjs) against `sluice notify serve` with
# auth.mode tokens; screenshot at $BUILD_DIR/e2e-inbox-signin.png. Needs what
# notify_browser.sh needs (chromium, node, npm; playwright-core installed
# into $BUILD_DIR/e2e-node by that test's pinned package.json).
source "$(dirname "$0")/lib/notify.bash"
BUILD_DIR=${BUILD_DIR:-$(dirname "$SLUICE")}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
for tool in node npm "$CHROMIUM"; do
  command -v "$tool" >/dev/null || { echo "notify_browser_auth: $tool not found (run scripts/deps.sh)" >&2; exit 1; }
done
need_playwright || { finish; exit; }

export SLUICE_AUTH_SECRET="browser-e2e-$RANDOM-$RANDOM-0123456789abcdef0123"
E2E_UID=$(( RANDOM + 100 ))
USER_TOKEN=$("$SLUICE" notify token --config "$SRC_DIR/config/config.yaml" --uid "$E2E_UID")
PRODUCER_TOKEN=$("$SLUICE" notify token --config "$SRC_DIR/config/config.yaml" --producer)
start_server SLUICE_AUTH_MODE=tokens
SHOT="$BUILD_DIR/e2e-inbox-signin.png"
rm -f "$SHOT"
USER_TOKEN=$USER_TOKEN PRODUCER_TOKEN=$PRODUCER_TOKEN E2E_UID=$E2E_UID NODE_PATH="$NODE_DIR/node_modules" \
  CHROMIUM="$CHROMIUM" timeout 200 node "$SRC_DIR/tests/e2e/browser/signin.cjs" "$URL" "$SHOT"
rc=$?
if [ $rc -ne 0 ]; then
  bad "signin.cjs exited with status $rc"
  echo "server stderr:" >&2; tail -20 "$WORK/server.err" >&2
fi
[ -f "$SHOT" ] && echo "screenshot: $SHOT"
finish
