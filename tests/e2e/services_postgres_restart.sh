#!/usr/bin/env bash
# services_postgres_restart.sh - scripts/services.sh postgres as the tests
# use it: the sluice role logs in over TCP with its password (a wrong one is
# refused), the server listens on 127.0.0.1 only, start is idempotent, and a
# committed row survives `restart` (fast shutdown with a client still
# connected) as well as a kill -9 of the server followed by `start`.
set -euo pipefail
: "${SL_POSTGRES_URL:?run through ctest (sl_require_service postgres)}"
: "${SL_SERVICES_SH:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$SL_POSTGRES_URL" -c "$1"; }

[ "$(q 'SELECT current_user')" = sluice ] || fail "not logged in as sluice"
port=$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"$SL_POSTGRES_URL")
bad=${SL_POSTGRES_URL/sluice:sluice@/sluice:wrong@}
if psql -X -q -c 'SELECT 1' "$bad" >/dev/null 2>&1; then fail "a wrong password was accepted"; fi
[ "$(q "SHOW listen_addresses")" = 127.0.0.1 ] || fail "listens beyond 127.0.0.1"

q "DROP TABLE IF EXISTS svc_probe; CREATE TABLE svc_probe (v int); INSERT INTO svc_probe VALUES (1)"
[ "$("$SL_SERVICES_SH" start postgres)" = "$SL_POSTGRES_URL" ] || fail "start again did not print the URL"

# restart with a client connected: the fast shutdown does not wait for it.
psql -X -q -c 'SELECT pg_sleep(60)' "$SL_POSTGRES_URL" >/dev/null 2>&1 &
client=$!
sleep 0.5
t0=$(date +%s)
"$SL_SERVICES_SH" restart postgres >/dev/null
(($(date +%s) - t0 < 30)) || fail "restart waited for the connected client"
wait "$client" 2>/dev/null || true
[ "$(q 'SELECT count(*) FROM svc_probe')" = 1 ] || fail "committed row lost by restart"

# kill -9 the postmaster (by its recorded PID), then start: crash recovery.
q "INSERT INTO svc_probe VALUES (2)"
dir=${SL_SERVICES_DIR:-/tmp/sluice-services}
pid=$(cat "$dir/postgres/pid")
kill -9 "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "postmaster $pid survived kill -9"
"$SL_SERVICES_SH" start postgres >/dev/null
[ "$(cat "$dir/postgres/pid")" != "$pid" ] || fail "start after kill -9 did not start a new server"
[ "$(q 'SELECT count(*) FROM svc_probe')" = 2 ] || fail "committed row lost by kill -9"
"$SL_SERVICES_SH" status postgres | grep -q "postgres running" || fail "status does not say running"
q "DROP TABLE svc_probe"
echo "ok: postgres service on port $port"
