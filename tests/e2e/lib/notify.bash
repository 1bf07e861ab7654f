# notify.bash - helpers for the notification service's black-box tests
# (sourced by tests/e2e/notify_*.sh; not a test itself).
# Each test runs in its own temporary directory with its own server on an
# ephemeral loopback port (web.server_addr 127.0.0.1:0; the URL is read from
# the server's first stdout line), so tests can run in parallel.
set -uo pipefail

SLUICE=${SLUICE:-$(dirname "$0")/../../build/sluice}
SRC_DIR=${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-e2e.XXXXXX")
PASS=0
FAIL=0
SERVER_PID=""
URL=""

cleanup() {
  { [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" && wait "$SERVER_PID"; } 2>/dev/null
  for p in "${EXTRA_PIDS[@]:-}"; do { [ -n "$p" ] && kill -9 "$p" && wait "$p"; } 2>/dev/null; done
  if [ "$FAIL" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else echo "work dir kept: $WORK"; fi
}
trap cleanup EXIT
EXTRA_PIDS=()

export SLUICE_WEB_SERVER_ADDR=127.0.0.1:0
export SLUICE_WEB_DEBUG=false
export SLUICE_CONSUMERS_BACKOFF_MS=${SLUICE_CONSUMERS_BACKOFF_MS:-20}

ok()   { PASS=$((PASS + 1)); }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
matches() { [[ $1 =~ $2 ]]; }

# start_server [extra env assignments...]: starts `sluice notify serve` in $WORK.
start_server() {
  (cd "$WORK" && exec env "$@" "$SLUICE" notify serve --config "$SRC_DIR/config/config.yaml" \
      >"$WORK/server.out" 2>>"$WORK/server.err") &
  SERVER_PID=$!
  local i
  for i in $(seq 1 200); do
    URL=$(grep -o 'http://[^ ]*' "$WORK/server.out" 2>/dev/null | head -1)
    [ -n "$URL" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "server did not start:"; cat "$WORK/server.err" >&2
  exit 1
}

stop_server() { # graceful
  [ -z "$SERVER_PID" ] && return
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
  > "$WORK/server.out"
}

kill9_server() {
  [ -z "$SERVER_PID" ] && return
  { kill -9 "$SERVER_PID"; wait "$SERVER_PID"; } 2>/dev/null
  SERVER_PID=""
  > "$WORK/server.out"
}

# call METHOD PATH [curl args...]: sets STATUS and BODY.
call() {
  local m=$1 p=$2; shift 2
  local out
  out=$(curl -s -m 10 -X "$m" -w '\n%{http_code}' "$@" "${URL%/}$p")
  STATUS=${out##*$'\n'}
  BODY=${out%$'\n'*}
}

jget() { # jget a.b.0.c: value from BODY (null when absent); objects as compact JSON
  local f=".${1//./.}"
  f=$(sed -E 's/\.([0-9]+)/[\1]/g' <<<"$f")
  jq -c -r "$f // \"null\" | if type == \"object\" or type == \"array\" then tojson else . end" <<<"$BODY" 2>/dev/null
}
jlen() { jq -r ".${1} | length" <<<"$BODY" 2>/dev/null; }

# expect STATUS CODE [msg-substring]: checks the last call.
expect() {
  local st=$1 code=$2 sub=${3:-}
  local c; c=$(jget code)
  if [ "$STATUS" != "$st" ] || [ "$c" != "$code" ]; then
    bad "${CASE:-?}: want HTTP $st code $code, got HTTP $STATUS body $BODY"; return 1; fi
  if [ -n "$sub" ] && [[ "$BODY" != *"$sub"* ]]; then
    bad "${CASE:-?}: message lacks '$sub': $BODY"; return 1; fi
  ok
}

# wait_until TIMEOUT_S CMD...: poll CMD every 50 ms.
wait_until() {
  local t=$1; shift
  local end=$(( $(date +%s%N) + t * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do "$@" && return 0; sleep 0.05; done
  return 1
}

count_is() { # count_is UID N: user's notification_count == N
  call GET "/api/user/info?uid=$1"; [ "$(jget data.notification_count)" = "$2" ]
}

finish() {
  echo "$PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
}
