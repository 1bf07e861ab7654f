#!/usr/bin/env bash
# notify_health.sh - /healthz tells the truth about writes, and a failure
# repeated for every message does not flood the log (issue 22).
#  - every write failing (queue refusing, retry log on a full disk): /healthz
#    503 naming the writers and why (it said 200 "ok" before);
#  - the queue and store URLs only with admin credentials, never for being
#    on loopback;
#  - repeated warnings: at most 5 of one shape per 10 s in main.log, the rest
#    counted in /metrics (sluice_log_suppressed_total) and summed up in one
#    line.
source "$(dirname "$0")/lib/notify.bash"

metric() { # metric NAME: its value in /metrics (first series)
  curl -s -m 10 "${URL%/}/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { print $2; exit }'
}
at_least() { local v; v=$(metric "$1"); [ -n "$v" ] && [ "${v%.*}" -ge "$2" ]; }

# ---- write health: the queue refuses, the retry log is on a full disk ----
mkdir -p "$WORK/logs" && ln -sf /dev/full "$WORK/logs/notice_retry.log"
start_server SLUICE_NOTIFY_FAULT_PUBLISH=1 SLUICE_WEB_ADMIN_TOKEN=tok-7
CASE="healthy before any write"; call GET /healthz; expect 200 10000
check "no queue URL for a loopback peer without credentials" [ "$(jget data.queue)" = null ]
check "no store URL for a loopback peer without credentials" [ "$(jget data.store)" = null ]
CASE="healthz with the admin token"; call GET /healthz -H 'X-Admin-Token: tok-7'; expect 200 10000
check "the queue URL for the token" matches "$(jget data.queue)" '^sqlite://'
N=40
t0=$(date +%s)
seq 1 $N | xargs -P 8 -I{} curl -s -m 30 -o /dev/null -w '%{http_code}\n' -d 'uid=5&type=1&data=n{}' \
  "${URL%/}/api/msg/product" > "$WORK/codes"
t1=$(date +%s)
check "every post refused with 503" [ "$(grep -c '^503$' "$WORK/codes")" = $N ]
CASE="healthz once writes fail"; call GET /healthz; expect 503 10001 "writes failing"
check "healthz names the queue" matches "$BODY" 'queue writes fail: I/O error'
check "healthz names the retry log on a full disk" matches "$BODY" 'retry log writes fail: No space left on device'

# ---- the same error $N times: at most 5 lines per 10 s, the rest counted ----
# (bounds from the time the posts took: sanitizer builds are slow)
written() { grep -v 'more like this' "$WORK/logs/main.log" | grep -c "$1"; }
lines=$(written 'retry log could not be written')
most=$(( 5 * ((t1 - t0) / 10 + 2) ))
check "at most 5 of the identical errors per 10 s written (got $lines of $N in $((t1 - t0)) s)" \
  [ "$lines" -ge 1 ] && [ "$lines" -le "$most" ] && [ "$lines" -lt "$N" ]
check "every one written or counted in /metrics" at_least sluice_log_suppressed_total $((N - lines))
stop_server
rm -f "$WORK/logs/notice_retry.log"
check "a summary line counts what was left out" \
  grep -q '"msg":"[0-9]* more like this in the last [0-9]* s were not logged.*retry log could not be written' "$WORK/logs/main.log"

# ---- one warning per failed delivery (the issue's full-disk flood) ----
: > "$WORK/logs/main.log"
start_server SLUICE_NOTIFY_FAULT_UID=77 SLUICE_CONSUMERS_MAX_FAILURES=1000 SLUICE_CONSUMERS_BACKOFF_MS=1 \
  SLUICE_CONSUMERS_BACKOFF_MAX_MS=2
t0=$(date +%s)
call POST /api/msg/product -d 'uid=77&type=1&data=never-stored'
check "30 failed deliveries" wait_until 90 at_least 'sluice_consumer_failed_total' 30
t1=$(date +%s)
fails=$(written 'notify message .* failed (')
most=$(( 5 * ((t1 - t0) / 10 + 2) ))
check "failed deliveries logged at most 5 times per 10 s (got $fails in $((t1 - t0)) s)" [ "$fails" -le "$most" ]
check "the others counted" at_least sluice_log_suppressed_total $((30 - fails))
stop_server

# ---- consumers.nice: -1 (the shipped default) is 10 on a durable queue, 0 on
# mem://; a value given is taken as it is ----
consumer_nice() { # the niceness of the notify consumer's thread (sl-h:notify)
  local t
  for t in /proc/"$SERVER_PID"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = sl-h:notify ] && { awk '{print $19}' "$t/stat"; return; }
  done
  echo none
}
nice_is() { [ "$(consumer_nice)" = "$1" ]; }
for c in "sqlite 10" "mem 0" "given 3"; do
  set -- $c
  case $1 in
    sqlite) start_server ;;
    mem) start_server SLUICE_QUEUE_URL=mem://notify ;;
    given) start_server SLUICE_CONSUMERS_NICE=3 ;;
  esac
  check "consumers.nice on $1: the notify consumer runs at nice $2 (got $(consumer_nice))" wait_until 10 nice_is "$2"
  stop_server
done

finish
