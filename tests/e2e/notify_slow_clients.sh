#!/usr/bin/env bash
# notify_slow_clients.sh - slow and dead clients cannot hold the server's
# connections (issue 22). web.idle_timeout is 30 s here, so only the fixes
# can end these connections within the bounds checked:
#  - web.read_timeout 2 s: a request whose headers (or body) trickle in one
#    line (byte) per 0.5 s is cut within the bound, not kept while bytes come;
#  - web.write_timeout 2 s: a client that does not read its answers is cut;
#  - a chunked body past web.max_body is not read to its end: cut at twice
#    the limit (a body a little over it still gets its 413, notify_api);
#  - event streams whose client went away are noticed at once (not at the
#    15 s ping): sluice_sse_clients drops within 8 s;
#  - an event stream whose client stopped reading is ended once 256 KiB of
#    its events wait (the socket is shut, so libmicrohttpd lets it go).
# Every wait is bounded; counts, not speed, are asserted.
source "$(dirname "$0")/lib/notify.bash"
PY=/usr/bin/python3
SLOW="$(dirname "$0")/lib/slow_client.py"

metric() { curl -s -m 10 "${URL%/}/metrics" | awk -v n="$1" '$1 == n { print $2; exit }'; }
metric_is() { [ "$(metric "$1")" = "$2" ]; }
metric_ge() { local v; v=$(metric "$1"); [ -n "$v" ] && [ "$v" -ge "$2" ]; }
closed_within() { # closed_within OUT MAX: the client's line says closed after at most MAX s
  local t; t=$(sed -n 's/^closed_after=\([-0-9.]*\).*/\1/p' <<<"$1")
  [ -n "$t" ] && awk -v t="$t" -v m="$2" 'BEGIN { exit !(t >= 0 && t <= m) }'
}

start_server SLUICE_WEB_READ_TIMEOUT=2 SLUICE_WEB_WRITE_TIMEOUT=2 SLUICE_WEB_IDLE_TIMEOUT=30 SLUICE_WEB_MAX_BODY=4096
HP=${URL#http://}; HP=${HP%%/*}; HOST=${HP%:*}; PORT=${HP##*:}

# ---- read_timeout: the whole request, not one byte per idle period ----
out=$($PY "$SLOW" slow-headers "$HOST" "$PORT" 15)
check "trickled headers cut by read_timeout ($out)" closed_within "$out" 10
out=$($PY "$SLOW" slow-body "$HOST" "$PORT" 15)
check "trickled body cut by read_timeout ($out)" closed_within "$out" 10
check "two read timeouts counted" metric_ge 'sluice_http_timeouts_total{kind="read"}' 2
CASE="a normal request is served"; call GET /healthz; expect 200 10000

# ---- write_timeout: a client that does not read ----
out=$($PY "$SLOW" no-read "$HOST" "$PORT" 400 60)
check "an unread answer cut by write_timeout ($out)" matches "$out" '^closed_after=cut'
check "one write timeout counted" metric_ge 'sluice_http_timeouts_total{kind="write"}' 1

# ---- a chunked body over max_body: cut at the limit ----
out=$($PY "$SLOW" chunked "$HOST" "$PORT" 20)
check "chunked body cut at max_body ($out)" closed_within "$out" 10
check "counted as a 413" [ "$(metric 'sluice_http_requests_total{route="other",code="413"}')" = 1 ]
call POST /api/msg/product -d 'uid=41&type=1&data=marker'
check "nothing of the cut body stored" wait_until 10 count_is 41 1

# ---- event streams whose clients went away ----
pids=()
for i in 1 2 3 4 5; do
  curl -s -N -m 60 "${URL%/}/api/msg/stream?uid=$((50 + i))" > "$WORK/sse-$i.out" &
  pids+=($!)
done
check "5 streams open" wait_until 20 metric_is sluice_sse_clients 5
for p in "${pids[@]}"; do kill -9 "$p"; wait "$p" 2>/dev/null; done
check "closed streams noticed within 8 s, not at the 15 s ping" wait_until 8 metric_is sluice_sse_clients 0
check "streams had their hello" grep -q '^event: hello' "$WORK/sse-1.out"

# ---- an event stream that is not read: ended once its buffer is full ----
out=$($PY "$SLOW" sse-stall "$HOST" "$PORT" 4242 2000 15)
check "an unread event stream is ended ($out)" closed_within "$out" 15
check "the unread stream's notices are all stored" wait_until 20 count_is 4242 2000

finish
