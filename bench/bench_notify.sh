#!/usr/bin/env bash
# bench_notify.sh BUILD_DIR - the notification service's HTTP benchmark
# (issue 6), run by bench/run.sh:
#  1. Throughput: wrk drives POST /api/msg/product (form bodies, 1000 users;
#     bench/wrk_post.lua) against `sluice notify serve` on the embedded
#     default (sqlite:// queue with sync=full: answered = durably queued;
#     consumers in process), against the same service with its queue on
#     mem:// (no durability at all: what the request path itself costs) and,
#     in the same run under the same wrk settings, against bench_http_peer, a
#     bare libmicrohttpd server answering a fixed JSON body from a pool of
#     SL_BENCH_HTTP_THREADS threads (4: its best here; 2 and 8 measured no
#     better). Ours runs as shipped: web.threads 0, an event loop per usable
#     CPU (SL_BENCH_OURS_THREADS sets another count). Rounds alternate
#     between the sides after a warm-up; each
#     side's best round counts. Any non-2xx answer fails. When it is built,
#     bench_http_peer_h2o (the same fixed answer on h2o's event loop) joins
#     the rounds, printed for information: what another HTTP engine would
#     leave of the two cores.
#     Then one round per side at higher concurrency (SL_BENCH_WRK_CONNS_HIGH,
#     256; 0 skips it), printed for information: durable queueing commits
#     the requests waiting together, so ours gains from more clients while
#     the peer, bound by CPU, does not. The ratio line uses the first setting.
#     Then, for information, one round against the request path alone: the
#     service on mem:// with no consumer in the process (nothing stored).
#  2. End-to-end delay at about half of our peak: wrk paces the same POSTs
#     (a per-connection delay) while bench_notify_probe posts probe notices
#     and polls /api/msg/list until each is visible.
# Prints per-round wrk lines, then
#   e2e_delay_ms p50=<ms> p99=<ms> target_p99=50
#   ratio: notify_http_post_nodurable ours=<req/s> peer=<req/s> ratio=<ours/peer> target=0.7
#   ratio: notify_http_post ours=<req/s> peer=<req/s> ratio=<ours/peer> target=0.35
# Knobs: SL_BENCH_HTTP_SECS (per round, 4), SL_BENCH_HTTP_ROUNDS (2),
# SL_BENCH_WRK_THREADS (2), SL_BENCH_WRK_CONNS (32), SL_BENCH_HTTP_THREADS
# (the peers' threads, 4), SL_BENCH_OURS_THREADS (web.threads, the
# config's), SL_BENCH_WRK_CONNS_HIGH (256),
# SL_BENCH_PROBES (200), SL_BENCH_PROBE_RATE (20/s), SL_BENCH_PATH_ONLY (1: one
# round against the request path alone, printed for information; 0 skips it).
set -euo pipefail
B=$(cd "${1:?usage: bench_notify.sh BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
SLUICE="$B/sluice"
PEER="$B/bench/bench_http_peer"
PEER_H2O="$B/bench/bench_http_peer_h2o" # optional: the same answer on h2o's event loop
PROBE="$B/bench/bench_notify_probe"
SECS=${SL_BENCH_HTTP_SECS:-4}
ROUNDS=${SL_BENCH_HTTP_ROUNDS:-2}
WT=${SL_BENCH_WRK_THREADS:-2}
WC=${SL_BENCH_WRK_CONNS:-32}
WCH=${SL_BENCH_WRK_CONNS_HIGH:-256}
THREADS=${SL_BENCH_HTTP_THREADS:-4}
OURS_THREADS=()
[ -z "${SL_BENCH_OURS_THREADS:-}" ] || OURS_THREADS=(SLUICE_WEB_THREADS="$SL_BENCH_OURS_THREADS")
PROBES=${SL_BENCH_PROBES:-200}
PROBE_RATE=${SL_BENCH_PROBE_RATE:-20}
for x in "$SLUICE" "$PEER" "$PROBE"; do
  [ -x "$x" ] || { echo "bench_notify: $x not built" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "bench_notify: wrk not found (scripts/deps.sh)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-notify.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_url FILE PID: the URL a server printed first.
wait_url() {
  local i u
  for i in $(seq 1 100); do
    u=$(grep -o 'http://[^ ]*' "$1" 2>/dev/null | head -1 || true)
    [ -n "$u" ] && { echo "${u%/}"; return 0; }
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench_notify: server did not start:" >&2; cat "$1".err >&2 || true
  return 1
}

# start_ours NAME [VAR=VALUE...]: `sluice notify serve` on a fresh data
# directory; sets OURS, OURS_PID.
start_ours() {
  local name=$1; shift
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec env "$@" SLUICE_WEB_SERVER_ADDR=127.0.0.1:0 SLUICE_GRPC_SERVER_ADDR=127.0.0.1:0 SLUICE_WEB_DEBUG=false \
     "${OURS_THREADS[@]}" "$SLUICE" notify serve --config "$HERE/../config/config.yaml" \
     >"$WORK/$name.out" 2>"$WORK/$name.out.err") &
  OURS_PID=$!
  PIDS+=("$OURS_PID")
  OURS=$(wait_url "$WORK/$name.out" "$OURS_PID")
}
start_ours mem SLUICE_QUEUE_URL=mem://notify
MEM=$OURS MEM_PID=$OURS_PID
start_ours ours
"$PEER" "$THREADS" >"$WORK/peer.out" 2>"$WORK/peer.out.err" &
PIDS+=($!)
PEER_URL=$(wait_url "$WORK/peer.out" "${PIDS[-1]}")
H2O_URL=""
if [ -x "$PEER_H2O" ]; then
  "$PEER_H2O" "$THREADS" >"$WORK/peer_h2o.out" 2>"$WORK/peer_h2o.out.err" &
  PIDS+=($!)
  H2O_URL=$(wait_url "$WORK/peer_h2o.out" "${PIDS[-1]}")
fi

# run_wrk URL SECS CONNS [env...]: prints wrk_post.lua's WRK line.
run_wrk() {
  local url=$1 secs=$2 conns=$3; shift 3
  env "$@" wrk -t"$WT" -c"$conns" -d"${secs}s" --timeout 5s -s "$HERE/wrk_post.lua" "$url" \
    | grep '^WRK ' || { echo "bench_notify: wrk failed on $url" >&2; return 1; }
}
field() { sed -nE "s/.* $1=([0-9.]+).*/\1/p" <<<"$2"; }
# check_ok SIDE LINE: a round whose answers were not all 2xx is no result.
check_ok() {
  if [ "$(field non2xx "$2")" != 0 ]; then
    echo "bench_notify: $1 answered non-2xx: $2" >&2; tail -5 "$WORK"/*.err >&2; exit 1
  fi
}
best() { awk -v a="$1" -v b="$2" 'BEGIN { print ((b + 0 > a + 0) ? b : a) }'; }

echo "wrk -t$WT -c$WC, ${SECS}s rounds, peers' threads $THREADS, ours web.threads ${SL_BENCH_OURS_THREADS:-0 (one per CPU)}; ours: $OURS (sqlite:// sync=full), ours_mem: $MEM (mem://), peer: $PEER_URL"
run_wrk "$OURS" 1 "$WC" >/dev/null
run_wrk "$MEM" 1 "$WC" >/dev/null
run_wrk "$PEER_URL" 1 "$WC" >/dev/null
[ -z "$H2O_URL" ] || run_wrk "$H2O_URL" 1 "$WC" >/dev/null
ours_rps=0 mem_rps=0 peer_rps=0 h2o_rps=0 ours_p99="" peer_p99=""
for r in $(seq 1 "$ROUNDS"); do
  line=$(run_wrk "$OURS" "$SECS" "$WC"); check_ok ours "$line"; echo "round $r ours: ${line#WRK }"
  v=$(field rps "$line"); [ "$(best "$ours_rps" "$v")" = "$v" ] && ours_p99=$(field p99_ms "$line")
  ours_rps=$(best "$ours_rps" "$v")
  line=$(run_wrk "$MEM" "$SECS" "$WC"); check_ok ours_mem "$line"; echo "round $r ours_mem: ${line#WRK }"
  mem_rps=$(best "$mem_rps" "$(field rps "$line")")
  line=$(run_wrk "$PEER_URL" "$SECS" "$WC"); check_ok peer "$line"; echo "round $r peer: ${line#WRK }"
  v=$(field rps "$line"); [ "$(best "$peer_rps" "$v")" = "$v" ] && peer_p99=$(field p99_ms "$line")
  peer_rps=$(best "$peer_rps" "$v")
  if [ -n "$H2O_URL" ]; then
    line=$(run_wrk "$H2O_URL" "$SECS" "$WC"); check_ok peer_h2o "$line"; echo "round $r peer_h2o: ${line#WRK }"
    h2o_rps=$(best "$h2o_rps" "$(field rps "$line")")
  fi
done
echo "p99_latency_ms ours=$ours_p99 peer=$peer_p99"
# Another engine (information): would a different HTTP library leave the
# service more of the cores? Both sides answer the same fixed body.
[ -z "$H2O_URL" ] || awk -v h="$h2o_rps" -v p="$peer_rps" 'BEGIN {
  printf "http engines (information, fixed answer): libmicrohttpd=%d h2o=%d ratio=%.2f\n", p, h, (p > 0 ? h / p : 0) }'
if [ "$WCH" -gt 0 ]; then
  hi_o=$(run_wrk "$OURS" "$SECS" "$WCH"); check_ok ours "$hi_o"
  hi_p=$(run_wrk "$PEER_URL" "$SECS" "$WCH"); check_ok peer "$hi_p"
  awk -v o="$(field rps "$hi_o")" -v p="$(field rps "$hi_p")" -v c="$WCH" \
      -v oq="$(field p99_ms "$hi_o")" -v pq="$(field p99_ms "$hi_p")" 'BEGIN {
    printf "at %d connections (information): ours=%d peer=%d ratio=%.2f p99_ms ours=%s peer=%s\n", c, o, p, (p > 0 ? o / p : 0), oq, pq }'
fi

# The request path alone (information): mem:// with no consumer in the
# process, so nothing is stored and the queue only grows (its buffer holds
# the round). What ours_mem adds to it is the consumers storing the notices
# on the same cores.
if [ "${SL_BENCH_PATH_ONLY:-1}" = 1 ]; then
  DUR=$OURS DUR_PID=$OURS_PID
  start_ours path SLUICE_QUEUE_URL="mem://notify?buffer=4000000" SLUICE_CONSUMERS_IN_PROCESS=false
  run_wrk "$OURS" 1 "$WC" >/dev/null
  po=$(run_wrk "$OURS" "$SECS" "$WC"); check_ok ours_path "$po"
  kill "$OURS_PID"; wait "$OURS_PID" 2>/dev/null || true
  OURS=$DUR OURS_PID=$DUR_PID
  awk -v o="$(field rps "$po")" -v p="$peer_rps" 'BEGIN {
    printf "request path alone (information: mem://, no consumer in the process): ours=%d peer=%d ratio=%.2f\n", o, p, (p > 0 ? o / p : 0) }'
fi

metric() { sed -nE "s/^$1\{topic=\"notify\"\} ([0-9.e+-]+)/\1/p" <<<"$M"; }
M=$(curl -s -m 5 "$OURS/metrics")
rounds=$ROUNDS; [ "$WCH" -gt 0 ] && rounds=$((ROUNDS + 1))
awk -v n="$(metric sluice_consumer_processed_total)" -v t=$((SECS * rounds + 2)) \
    -v s="$(metric sluice_consumer_handler_seconds_sum)" -v c="$(metric sluice_consumer_handler_seconds_count)" \
    'BEGIN { printf "consumers applied %d notices during the load rounds (~%d/s), handler mean %.2f ms\n", n, n / t, (c > 0 ? s * 1000 / c : 0) }' 
# The backlog of those rounds is durable; the delay is measured on a fresh
# instance so that it does not wait behind it.
kill "$OURS_PID" "$MEM_PID"; wait "$OURS_PID" "$MEM_PID" 2>/dev/null || true
start_ours ours2

# end-to-end delay at about half of our peak: paced wrk (twice the
# connections, so that a slow answer holds back less of the rate) + probes.
half=$(awk -v r="$ours_rps" 'BEGIN { printf "%d", r / 2 }')
pause=$(awk -v c="$((2 * WC))" -v h="$half" 'BEGIN { d = int(c * 1000 / (h > 1 ? h : 1)); print (d < 1 ? 1 : d) }')
psecs=$(awk -v n="$PROBES" -v r="$PROBE_RATE" 'BEGIN { printf "%d", n / r + 3 }')
run_wrk "$OURS" "$psecs" "$((2 * WC))" WRK_DELAY_MS="$pause" >"$WORK/paced" &
WRK_PID=$!
sleep 1
"$PROBE" "$OURS/" "$PROBES" "$PROBE_RATE" 10000000 >"$WORK/probe" || { kill "$WRK_PID"; exit 1; }
wait "$WRK_PID" || exit 1
line=$(cat "$WORK/paced"); check_ok "ours (paced)" "$line"
echo "paced load (target ~$half req/s, ${pause} ms between requests per connection): ${line#WRK }"
sed -n 2p "$WORK/probe"
sed -n 1p "$WORK/probe"
awk -v o="$mem_rps" -v p="$peer_rps" 'BEGIN {
  printf "ratio: notify_http_post_nodurable ours=%d peer=%d ratio=%.2f target=0.7\n", o, p, (p > 0 ? o / p : 0) }'
awk -v o="$ours_rps" -v p="$peer_rps" 'BEGIN {
  printf "ratio: notify_http_post ours=%d peer=%d ratio=%.2f target=0.35\n", o, p, (p > 0 ? o / p : 0) }'
