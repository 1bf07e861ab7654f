# notify.bash - helpers for the notification service's black-box tests
# (sourced by tests/e2e/notify_*.sh; not a test itself).
# Each test runs in its own temporary directory with its own server on an
# ephemeral loopback port (web.server_addr 127.0.0.1:0; the URL is read from
# the server's first stdout line), so tests can run in parallel.
#
# NOTIFY_E2E_STACK picks the stack the service runs on:
#   sqlite (default)  the embedded default: sqlite:// queue and store,
#                     consumers in the server process
#   seed              the seed's stack: amqp:// queue ($SL_RABBITMQ_URL) and
#                     mysql:// store ($SL_MARIADB_URL), both from the ctest
#                     fixtures, with `sluice notify consume notify` and `read`
#                     as separate processes. Each run gets its own database
#                     and exchange/queue name prefix, so runs never see each
#                     other's data; the database is dropped afterwards.
#   pg                PostgreSQL: postgres:// queue and store on the
#                     fixture's server ($SL_POSTGRES_URL), consumers as
#                     separate processes like the seed stack. Each run gets
#                     a schema of its own for both (schema=), dropped
#                     afterwards.
# SEPARATE_CONSUMERS is true on the seed and pg stacks.
# Checks that cannot hold on a stack call skip_check with the reason.
set -uo pipefail

SLUICE=${SLUICE:-$(dirname "$0")/../../build/sluice}
SRC_DIR=${SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-e2e.XXXXXX")
PASS=0
FAIL=0
SERVER_PID=""
URL=""

STACK=${NOTIFY_E2E_STACK:-sqlite}
CONSUMER_PIDS=()
MY_DB=""
PG_SCHEMA=""
SEPARATE_CONSUMERS=false
case $STACK in seed | pg) SEPARATE_CONSUMERS=true ;; esac

cleanup() {
  { [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" && wait "$SERVER_PID"; } 2>/dev/null
  for p in "${CONSUMER_PIDS[@]:-}"; do { [ -n "$p" ] && kill -9 "$p" && wait "$p"; } 2>/dev/null; done
  [ -z "$MY_DB" ] || my_sql -e "DROP DATABASE IF EXISTS $MY_DB" || true
  [ -z "$PG_SCHEMA" ] || pg_sql -c "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" || true
  for p in "${EXTRA_PIDS[@]:-}"; do { [ -n "$p" ] && kill -9 "$p" && wait "$p"; } 2>/dev/null; done
  if [ "$FAIL" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else echo "work dir kept: $WORK"; fi
}
trap cleanup EXIT
EXTRA_PIDS=()

export SLUICE_WEB_SERVER_ADDR=127.0.0.1:0
export SLUICE_GRPC_SERVER_ADDR=127.0.0.1:0
export SLUICE_WEB_DEBUG=false
export SLUICE_CONSUMERS_BACKOFF_MS=${SLUICE_CONSUMERS_BACKOFF_MS:-20}

# ---- the seed's stack (NOTIFY_E2E_STACK=seed) ----
my_sql() { # the mariadb client on the fixture's server, as the fixture's user
  "$(command -v mariadb || command -v mysql)" --no-defaults -h "$MY_HOST" -P "$MY_PORT" \
    -u "$MY_USER" -p"$MY_PASS" "$@"
}

# mysql_fresh_db: a new database on the fixture's server ($SL_MARIADB_URL),
# dropped at exit; SLUICE_STORE_URL points at it. Sets RUN (its name).
mysql_fresh_db() {
  local re='^mysql://([^:@/]+):([^@]*)@([^:/]+):([0-9]+)/([A-Za-z0-9_]+)$'
  [[ ${SL_MARIADB_URL:-} =~ $re ]] || { echo "SL_MARIADB_URL '${SL_MARIADB_URL:-}' is not mysql://user:pass@host:port/db (run through ctest)" >&2; exit 1; }
  MY_USER=${BASH_REMATCH[1]} MY_PASS=${BASH_REMATCH[2]} MY_HOST=${BASH_REMATCH[3]} MY_PORT=${BASH_REMATCH[4]}
  RUN="e2e_$$_$RANDOM"
  my_sql -e "CREATE DATABASE $RUN" || { echo "cannot create database $RUN" >&2; exit 1; }
  MY_DB=$RUN
  export SLUICE_STORE_URL="mysql://$MY_USER:$MY_PASS@$MY_HOST:$MY_PORT/$RUN"
}

setup_seed_stack() {
  [ -n "${SL_RABBITMQ_URL:-}" ] || { echo "seed stack: SL_RABBITMQ_URL is not set (run through ctest)" >&2; exit 1; }
  mysql_fresh_db
  local run=$RUN sep='?'
  [[ $SL_RABBITMQ_URL == *\?* ]] && sep='&'
  export SLUICE_QUEUE_URL="$SL_RABBITMQ_URL${sep}exchange_prefix=$run.&queue_prefix=$run."
  export SLUICE_CONSUMERS_IN_PROCESS=false
  echo "seed stack: queue $SLUICE_QUEUE_URL, store $SLUICE_STORE_URL"
}

# ---- PostgreSQL (NOTIFY_E2E_STACK=pg) ----
pg_sql() { # psql on the fixture's server, as the fixture's user
  PGPASSWORD=$PG_PASS PGCONNECT_TIMEOUT=10 PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" \
    -U "$PG_USER" -d "$PG_DBNAME" "$@"
}

# pg_fresh_schema: a new schema on the fixture's server ($SL_POSTGRES_URL),
# dropped at exit; SLUICE_STORE_URL keeps the store's tables in it. Sets RUN
# (its name) and PG_URL (the fixture's URL). Connections get 30 s, not the
# default 5 s: under sanitizers on a loaded machine a PostgreSQL handshake
# (fork, SCRAM) has been seen to take longer.
pg_fresh_schema() {
  local re='^postgres://([^:@/]+):([^@]*)@([^:/]+):([0-9]+)/([A-Za-z0-9_]+)$'
  [[ ${SL_POSTGRES_URL:-} =~ $re ]] || { echo "SL_POSTGRES_URL '${SL_POSTGRES_URL:-}' is not postgres://user:pass@host:port/db (run through ctest)" >&2; exit 1; }
  PG_USER=${BASH_REMATCH[1]} PG_PASS=${BASH_REMATCH[2]} PG_HOST=${BASH_REMATCH[3]} PG_PORT=${BASH_REMATCH[4]}
  PG_DBNAME=${BASH_REMATCH[5]} PG_URL=$SL_POSTGRES_URL
  RUN="e2e_$$_$RANDOM"
  pg_sql -c "CREATE SCHEMA $RUN" || { echo "cannot create schema $RUN" >&2; exit 1; }
  PG_SCHEMA=$RUN
  export SLUICE_STORE_URL="$PG_URL?schema=$RUN&connect_timeout=30s"
}

# The queue in the same schema; a killed consumer's claims come back after
# ack_deadline (30 s by default, 5 s here to keep the tests short).
# NOTIFY_PG_QUEUE=sqlite puts the queue on sqlite:// in $WORK instead (the
# store alone on PostgreSQL).
setup_pg_stack() {
  pg_fresh_schema
  if [ "${NOTIFY_PG_QUEUE:-postgres}" = sqlite ]; then
    export SLUICE_QUEUE_URL="sqlite://./data/queue.db?ack=batch&ack_deadline=5s"
  else
    export SLUICE_QUEUE_URL="$PG_URL?schema=$RUN&ack_deadline=5s&connect_timeout=30s"
  fi
  export SLUICE_CONSUMERS_IN_PROCESS=false
  echo "pg stack: queue $SLUICE_QUEUE_URL, store $SLUICE_STORE_URL"
}

# start_consumer TOPIC [env assignments...]: `sluice notify consume TOPIC`
# in $WORK with its own log dir (logs-TOPIC); returns once it has subscribed.
# Its PID is CONSUMER_PID[TOPIC] (and in CONSUMER_PIDS).
declare -A CONSUMER_PID=()
start_consumer() {
  local t=$1 pid _; shift
  (cd "$WORK" && exec env SLUICE_LOG_DIR="logs-$t" "$@" "$SLUICE" notify consume "$t" \
      --config "${NOTIFY_CONFIG:-$SRC_DIR/config/config.yaml}" >"$WORK/consume-$t.out" 2>>"$WORK/consume-$t.err") &
  pid=$!
  CONSUMER_PID[$t]=$pid
  CONSUMER_PIDS+=($pid)
  for _ in $(seq 1 600); do
    grep -q '^sluice notify: consuming' "$WORK/consume-$t.out" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "consumer $t did not start:"; cat "$WORK/consume-$t.err" >&2
  exit 1
}

# kill9_consumer TOPIC: SIGKILL the consumer of TOPIC (no clean stop).
kill9_consumer() {
  local pid=${CONSUMER_PID[$1]:-} p keep=()
  [ -n "$pid" ] || return 0
  { kill -9 "$pid"; wait "$pid"; } 2>/dev/null
  for p in "${CONSUMER_PIDS[@]:-}"; do [ -n "$p" ] && [ "$p" != "$pid" ] && keep+=("$p"); done
  CONSUMER_PIDS=("${keep[@]:-}")
  unset "CONSUMER_PID[$1]"
}

# start_consumers [env assignments...]: the notify and the read consumer.
start_consumers() {
  start_consumer notify "$@"
  start_consumer read "$@"
}

# stop_consumers: graceful stop; every consumer must exit 0 (sanitizer
# reports, leaks included, make it exit non-zero).
stop_consumers() {
  local p st
  for p in "${CONSUMER_PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done
  for p in "${CONSUMER_PIDS[@]:-}"; do
    [ -n "$p" ] || continue
    wait "$p"; st=$?
    check "consumer pid $p exits cleanly (status $st)" [ "$st" = 0 ]
  done
  CONSUMER_PIDS=()
  CONSUMER_PID=()
}

if [ "$STACK" = seed ]; then
  setup_seed_stack
elif [ "$STACK" = pg ]; then
  setup_pg_stack
elif [ "$STACK" != sqlite ]; then
  echo "NOTIFY_E2E_STACK must be sqlite, seed or pg, not '$STACK'" >&2; exit 1
fi

ok()   { PASS=$((PASS + 1)); }
skip_check() { echo "SKIP ($STACK stack): $1: $2"; }
bad()  { FAIL=$((FAIL + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
matches() { [[ $1 =~ $2 ]]; }

# start_server [extra env assignments...]: starts `sluice notify serve` in $WORK
# with --config $NOTIFY_CONFIG (default: the shipped config/config.yaml).
# On the seed and pg stacks it first starts the notify and read consumers (with the
# same environment) unless they run already; stop_server stops them too, as
# stopping the server does on the embedded default, while kill9_server kills
# the server process alone.
start_server() {
  $SEPARATE_CONSUMERS && [ -z "${CONSUMER_PIDS[*]:-}" ] && start_consumers "$@"
  (cd "$WORK" && exec env "$@" "$SLUICE" notify serve --config "${NOTIFY_CONFIG:-$SRC_DIR/config/config.yaml}" \
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
  tail -n 5 "$WORK"/logs/main.log >&2 2>/dev/null
  FAIL=$((FAIL + 1)) # keep the work dir
  exit 1
}

stop_server() { # graceful: the server exits 0 (a crash, or a sanitizer's report at exit, fails)
  if [ -n "$SERVER_PID" ]; then
    local st
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null; st=$?
    SERVER_PID=""
    > "$WORK/server.out"
    check "the server exits cleanly on SIGTERM (status $st)" [ "$st" = 0 ]
    [ "$st" = 0 ] || tail -n 30 "$WORK/server.err" >&2
  fi
  $SEPARATE_CONSUMERS && stop_consumers
  return 0
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

# need_playwright: playwright-core, pinned in tests/e2e/browser/package.json,
# into $BUILD_DIR/e2e-node (NODE_DIR), once per pinned version. The browser
# tests share that directory and ctest may run them at once: the install
# holds a lock on it (two npm installs into one prefix break each other).
# Returns 1 (after reporting it) when npm fails.
need_playwright() {
  NODE_DIR="$BUILD_DIR/e2e-node"
  local pkg="$SRC_DIR/tests/e2e/browser/package.json" rc=0
  mkdir -p "$NODE_DIR"
  exec {lockfd}>"$NODE_DIR.lock"
  flock "$lockfd"
  if ! cmp -s "$pkg" "$NODE_DIR/package.json" || [ ! -d "$NODE_DIR/node_modules/playwright-core" ]; then
    cp "$pkg" "$NODE_DIR/package.json"
    if ! PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$NODE_DIR" --no-audit --no-fund \
        --loglevel=error >"$WORK/npm.log" 2>&1; then
      cat "$WORK/npm.log" >&2
      rm -f "$NODE_DIR/package.json"
      bad "npm install playwright-core"
      rc=1
    fi
  fi
  exec {lockfd}>&-
  return $rc
}

finish() {
  $SEPARATE_CONSUMERS && stop_server
  stop_consumers
  echo "$PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
}
