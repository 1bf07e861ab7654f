#!/usr/bin/env bash
# notify_metrics.sh - /metrics is valid Prometheus text: after traffic on every
# kind of route and status (posts, bad input, 404, 405, 413, preflights, a
# CORS refusal, a cached /widget.js, the event stream, admin), the page must
# pass `promtool check metrics` (Debian package prometheus, installed by
# scripts/deps.sh) with no complaint. promtool itself is shown to refuse a
# broken copy (so the check can fail), and what promtool does not check is
# checked here: status labels are codes or "other", histogram buckets are
# cumulative and end at _count, and the counters count the requests made -
# the ingest commits too (rounds, their messages, each POST's wait for its
# commit).
source "$(dirname "$0")/lib/notify.bash"
PROMTOOL=${PROMTOOL:-$(command -v promtool)}
if [ -z "$PROMTOOL" ]; then
  bad "promtool not found: install the Debian package prometheus (scripts/deps.sh does)"
  finish; exit
fi
start_server
U=$(( RANDOM + 500 ))

# ---- traffic ----
for i in 1 2 3; do call POST /api/msg/product -d "uid=$U&type=1&data=metrics $i"; expect 200 10000; done
call POST /api/msg/product -d "uid=$U&type=x&data=bad"; expect 400 10001
call POST /api/msg/product -d "uid=$U&type=1"; expect 400 10001
call GET /api/msg/product; expect 405 10001
call GET /no/such/route; expect 404 10001
head -c 70000 /dev/zero | tr '\0' a >"$WORK/big.txt" # over web.max_body (65536)
call POST /api/msg/product -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$WORK/big.txt"
expect 413 10001
wait_until 20 count_is "$U" 3 || bad "the three notices were not stored"
call GET "/api/msg/list?uid=$U"; expect 200 10000
call POST /api/msg/read -d "uid=$U&all=true"; expect 200 10000
curl -s -o /dev/null -X OPTIONS -H 'Origin: http://site.example' -H 'Access-Control-Request-Method: POST' "${URL%/}/api/msg/read"
call POST /api/admin/failed/retry -H 'Origin: http://site.example' -d 'all=true'; expect 403 10001
call GET /api/admin/failed; expect 200 10000
ETAG=$(curl -s -i "${URL%/}/widget.js" | grep -i '^ETag:' | cut -d' ' -f2 | tr -d '\r')
curl -s -o /dev/null -H "If-None-Match: $ETAG" "${URL%/}/widget.js"
curl -s -o /dev/null -m 1 "${URL%/}/api/msg/stream?uid=$U"
call GET /healthz; expect 200 10000

# ---- the page ----
call GET /metrics
check "metrics 200" [ "$STATUS" = 200 ]
printf '%s\n' "$BODY" >"$WORK/metrics.txt"
out=$("$PROMTOOL" check metrics <"$WORK/metrics.txt" 2>&1); st=$?
check "promtool check metrics passes (status $st): $out" [ "$st" = 0 ]
check "promtool has no complaint: $out" [ -z "$out" ]

# promtool can fail: a counter without _total, a sample of no known family.
sed 's/^sluice_http_requests_total/sluice_http_requests/; s/^# \(HELP\|TYPE\) sluice_http_requests_total/# \1 sluice_http_requests/' \
  "$WORK/metrics.txt" >"$WORK/broken1.txt"
"$PROMTOOL" check metrics <"$WORK/broken1.txt" >/dev/null 2>&1
check "promtool refuses a counter without _total" [ $? != 0 ]
printf 'sluice_bad{route="x" 1\n' >>"$WORK/broken2.txt"
cat "$WORK/metrics.txt" >>"$WORK/broken2.txt"
"$PROMTOOL" check metrics <"$WORK/broken2.txt" >/dev/null 2>&1
check "promtool refuses a malformed sample" [ $? != 0 ]

# ---- what promtool does not check ----
bad_codes=$(grep -o '^sluice_http_requests_total{[^}]*}' "$WORK/metrics.txt" | grep -v -E 'code="([1-5][0-9][0-9]|other)"')
check "every code label is a status or other: $bad_codes" [ -z "$bad_codes" ]
hist=$(awk '
  /^sluice_(http_request_duration|ingest_round|ingest_commit_wait)_seconds_bucket/ {
    r = $0; sub(/_bucket.*/, "", r); if (match($0, /route="[^"]*"/)) r = r substr($0, RSTART, RLENGTH)
    if ((r in last) && $2 + 0 < last[r]) print "decreasing bucket: " $0
    last[r] = $2 + 0
    if ($0 ~ /le="\+Inf"/) inf[r] = $2 + 0
  }
  /^sluice_(http_request_duration|ingest_round|ingest_commit_wait)_seconds_count/ {
    r = $0; sub(/_count.*/, "", r); if (match($0, /route="[^"]*"/)) r = r substr($0, RSTART, RLENGTH)
    if (!(r in inf) || inf[r] != $2 + 0) print "+Inf bucket differs from _count: " $0
    n++
  }
  END { if (n < 7) print "only " n " histograms (routes and ingest)" }' "$WORK/metrics.txt")
check "histograms are cumulative and end at _count: $hist" [ -z "$hist" ]
metric() { awk -v k="$1" '$1 == k { print $2 }' "$WORK/metrics.txt"; }
check "3 posts counted 200" [ "$(metric 'sluice_http_requests_total{route="/api/msg/product",code="200"}')" = 3 ]
check "2 bad posts counted 400" [ "$(metric 'sluice_http_requests_total{route="/api/msg/product",code="400"}')" = 2 ]
check "the wrong method counted 405 (other)" [ "$(metric 'sluice_http_requests_total{route="other",code="405"}')" = 1 ]
check "the big body counted 413 (other)" [ "$(metric 'sluice_http_requests_total{route="other",code="413"}')" = 1 ]
check "the admin CORS refusal counted 403" [ "$(metric 'sluice_http_requests_total{route="/api/admin/failed/retry",code="403"}')" = 1 ]
check "the cached widget counted 304" [ "$(metric 'sluice_http_requests_total{route="/widget.js",code="304"}')" = 1 ]
check "published notify counted" [ "$(metric 'sluice_queue_published_total{topic="notify"}')" = 3 ]
handled=$(metric 'sluice_consumer_handler_seconds_count{topic="notify"}')
check "the consumer counted its 3 notices handled ($handled)" [ "$handled" = 3 ]
spent=$(metric 'sluice_consumer_handler_seconds_sum{topic="notify"}')
check "the consumer's handler time is measured, not 0 ($spent)" awk -v v="$spent" 'BEGIN { exit !(v > 0 && v < 60) }'
# the POSTs went through the loops' commits (the shipped sqlite:// queue):
# 3 notices plus 1 mark read, each answered after its commit
rounds=$(metric sluice_ingest_rounds_total); msgs=$(metric sluice_ingest_round_messages_total)
check "commit rounds counted ($rounds)" [ "${rounds:-0}" -ge 1 ]
check "no more rounds than messages ($rounds for $msgs)" [ "${rounds:-0}" -le "${msgs:-0}" ]
check "the rounds queued the 4 producing requests ($msgs)" [ "$msgs" = 4 ]
check "each round in the round histogram" [ "$(metric sluice_ingest_round_seconds_count)" = "$rounds" ]
check "each POST's commit wait measured" [ "$(metric sluice_ingest_commit_wait_seconds_count)" = 4 ]
waited=$(metric sluice_ingest_commit_wait_seconds_sum)
check "the commit waits took time, not 0 ($waited)" awk -v v="$waited" 'BEGIN { exit !(v > 0 && v < 60) }'
stop_server
finish
