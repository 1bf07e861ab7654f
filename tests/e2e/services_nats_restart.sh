#!/usr/bin/env bash
# services_nats_restart.sh - scripts/services.sh nats as the tests use it:
# JetStream is on, the server listens on 127.0.0.1 only, start is idempotent,
# and a message the server acked (sluice pub on nats://) survives `restart`
# as well as a kill -9 of the server followed by `start`.
set -euo pipefail
: "${SL_NATS_URL:?run through ctest (sl_require_service nats)}"
: "${SL_SERVICES_SH:?}" "${SLUICE:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
port=${SL_NATS_URL##*:}
dir=${SL_SERVICES_DIR:-/tmp/sluice-services}

[ "$("$SL_SERVICES_SH" start nats)" = "$SL_NATS_URL" ] || fail "start again did not print the URL"
grep -q '^listen: "127.0.0.1:' "$dir/nats/nats.conf" || fail "config does not bind 127.0.0.1"
if command -v ss >/dev/null; then
  addrs=$(ss -ltnH "sport = :$port" | awk '{print $4}' | sort -u)
  [ "$addrs" = "127.0.0.1:$port" ] || fail "listens on '$addrs', want 127.0.0.1:$port only"
fi

topic=svc-probe-$$-$RANDOM
"$SLUICE" pub "$SL_NATS_URL" "$topic" "before-restart" >/dev/null
t0=$(date +%s)
"$SL_SERVICES_SH" restart nats >/dev/null 2>&1
(($(date +%s) - t0 < 60)) || fail "restart took over 60 s"
got=$(timeout 30 "$SLUICE" sub "$SL_NATS_URL" "$topic" --group g --count 1 | cut -f3)
[ "$got" = "before-restart" ] || fail "acked message lost by restart (got '$got')"

# kill -9 the server (by its recorded PID), then start: the stream is still there.
"$SLUICE" pub "$SL_NATS_URL" "$topic" "before-kill" >/dev/null
pid=$(cat "$dir/nats/pid")
kill -9 "$pid"
for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
"$SL_SERVICES_SH" start nats >/dev/null 2>&1
[ "$(cat "$dir/nats/pid")" != "$pid" ] || fail "start after kill -9 did not start a new server"
got=$(timeout 30 "$SLUICE" sub "$SL_NATS_URL" "$topic" --group g --count 1 | cut -f3)
[ "$got" = "before-kill" ] || fail "acked message lost by kill -9 (got '$got')"
"$SL_SERVICES_SH" status nats | grep -q "nats running" || fail "status does not say running"
echo "ok: nats service on port $port"
