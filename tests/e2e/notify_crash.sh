#!/usr/bin/env bash
# notify_crash.sh - durability of the notification service, on the embedded
# default (sqlite:// queue and store) or, with NOTIFY_E2E_STACK=seed (ctest
# e2e_notify_crash_seed_stack), on RabbitMQ + MariaDB, or with
# NOTIFY_E2E_STACK=pg (e2e_notify_crash_pg_stack) on PostgreSQL:
#  1. 4 concurrent clients post notices while the server is killed with
#     SIGKILL and restarted 5 times; afterwards every notice that was answered
#     with code 10000 appears in the list exactly once. On those stacks the
#     consumers are separate processes and keep running: only the server
#     (the publishing side) dies.
#  2. Consumers as separate processes (consumers.in_process=false; always so
#     on the seed and pg stacks): the `sluice notify consume notify` process is killed
#     with SIGKILL mid-stream and restarted, 3 times; every answered notice is
#     stored exactly once.
# Sizes shrink with SL_TEST_SCALE (sanitizer runs).
source "$(dirname "$0")/lib/notify.bash"
SCALE=${SL_TEST_SCALE:-1}
PER_ROUND=$(awk -v s="$SCALE" 'BEGIN { n = int(40 * s); print (n < 8 ? 8 : n) }')
# A killed consumer's unacked deliveries come back once the queue's
# ack_deadline passed (RabbitMQ: as soon as its connection drops; sqlite://:
# 30 s by default, 5 s here to keep the test short; postgres://: 5 s, set by
# the pg stack).
[ "$STACK" = sqlite ] && export SLUICE_QUEUE_URL="sqlite://./data/queue.db?ack=batch&ack_deadline=5s"

# client C: post until $WORK/stop exists; record "id data" of answered ones.
client() {
  local c=$1 i=0 out
  while [ ! -e "$WORK/stop" ] && [ $i -lt 2000 ]; do
    i=$((i + 1))
    out=$(curl -s -m 5 -X POST -d "uid=$((BASE + c))&type=1&data=$PHASE-c$c-$i" "${URL%/}/api/msg/product" 2>/dev/null)
    if [[ $out == *'"code":10000'* && $out =~ \"id\":\"([^\"]+)\" ]]; then
      echo "${BASH_REMATCH[1]} $PHASE-c$c-$i" >> "$WORK/answered.$c"
    fi
  done
}

answered_total() { cat "$WORK"/answered.* 2>/dev/null | wc -l; }

# all_stored: every answered id is in the lists of its uid exactly once.
all_stored() {
  : > "$WORK/stored"
  local c cur
  for c in 0 1 2 3; do
    cur=0
    while :; do
      call GET "/api/msg/list?uid=$((BASE + c))&size=100&cursor=$cur"
      jq -r '.data.list[] | "\(.order_sn) \(.data)"' <<<"$BODY" >> "$WORK/stored"
      cur=$(jget data.next_cursor)
      [ "$cur" = 0 ] && break
    done
  done
  sort "$WORK/stored" > "$WORK/stored.s"
  cat "$WORK"/answered.* | sort > "$WORK/answered.s"
  [ -z "$(comm -23 "$WORK/answered.s" "$WORK/stored.s")" ]
}

# ---- 1. kill -9 the server under load, 5 times ----
BASE=100 PHASE=a
start_server
# Restarts keep the port: the clients hold the URL.
export SLUICE_WEB_SERVER_ADDR=127.0.0.1:$(sed -E 's#.*:([0-9]+)/#\1#' <<<"$URL")
for c in 0 1 2 3; do client $c & EXTRA_PIDS+=($!); done
for round in 1 2 3 4 5; do
  before=$(answered_total)
  wait_until 60 bash -c "[ \$(cat $WORK/answered.* 2>/dev/null | wc -l) -ge $((before + PER_ROUND)) ]"
  kill9_server
  start_server
done
touch "$WORK/stop"
for p in "${EXTRA_PIDS[@]}"; do wait "$p" 2>/dev/null; done
EXTRA_PIDS=()
N=$(answered_total)
echo "answered $N notices across 5 kill -9 restarts"
check "clients got answers" [ "$N" -ge $((PER_ROUND * 5)) ]
check "every answered notice stored" wait_until 60 all_stored
check "no notice stored twice" [ -z "$(cut -d' ' -f2- "$WORK/stored.s" | sort | uniq -d)" ]
check "no id stored twice" [ -z "$(cut -d' ' -f1 "$WORK/stored.s" | sort | uniq -d)" ]
stop_server

# ---- 2. separate consumer process killed mid-stream ----
rm -f "$WORK"/answered.* "$WORK/stop"
BASE=200 PHASE=b
export SLUICE_CONSUMERS_IN_PROCESS=false
start_server # on the seed and pg stacks with its notify and read consumers
$SEPARATE_CONSUMERS || start_consumer notify
for c in 0 1 2 3; do client $c & EXTRA_PIDS+=($!); done
for round in 1 2 3; do
  before=$(answered_total)
  wait_until 60 bash -c "[ \$(cat $WORK/answered.* 2>/dev/null | wc -l) -ge $((before + PER_ROUND)) ]"
  kill9_consumer notify
  start_consumer notify
done
touch "$WORK/stop"
for p in "${EXTRA_PIDS[@]}"; do wait "$p" 2>/dev/null; done
EXTRA_PIDS=()
echo "answered $(answered_total) notices across 3 consumer kill -9 restarts"
check "every answered notice stored (separate consumer)" wait_until 60 all_stored
check "no notice stored twice (separate consumer)" [ -z "$(cut -d' ' -f2- "$WORK/stored.s" | sort | uniq -d)" ]
stop_server
finish
