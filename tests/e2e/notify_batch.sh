#!/usr/bin/env bash
# notify_batch.sh - the batched paths of the notification service under
# concurrent clients:
#  1. 16 clients post at once: the POSTs' publishes are batched (one queue
#     commit for the requests that wait together) and the notify consumer
#     stores batches in one store transaction. Every POST is answered 10000
#     with its own id, and every id is stored exactly once, counts add up.
#  2. The same with every batch store transaction failing (test hook
#     SLUICE_NOTIFY_FAULT_BATCH=1): the consumer applies the notices one by
#     one instead, so still every answered notice is stored exactly once and
#     nothing is parked.
#  3. (embedded stack) The queue on mem://: the POSTs publish inline on the
#     HTTP loops (no wait for a commit); the same checks hold,
#     and with the queue refusing everything (SLUICE_NOTIFY_FAULT_PUBLISH=1)
#     every POST is answered 503 with its request in notice_retry.log. Live
#     events reach this process's streams without the queue's events topic.
#     A full queue makes a POST wait queue.publish_wait_ms, then 503.
# Sizes shrink with SL_TEST_SCALE (sanitizer runs).
source "$(dirname "$0")/lib/notify.bash"
SCALE=${SL_TEST_SCALE:-1}
PER_CLIENT=$(awk -v s="$SCALE" 'BEGIN { n = int(20 * s); print (n < 8 ? 8 : n) }')
CLIENTS=16
USERS=8

# burst PHASE BASE: CLIENTS clients post PER_CLIENT notices each to uids
# BASE..BASE+USERS-1; every answer goes to $WORK/answers.PHASE.
burst() {
  local phase=$1 base=$2 c pids=()
  for c in $(seq 1 $CLIENTS); do
    (
      for i in $(seq 1 "$PER_CLIENT"); do
        curl -s -m 20 -X POST -d "uid=$((base + (c + i) % USERS))&type=1&data=$phase-c$c-$i" \
          "${URL%/}/api/msg/product"
        echo
      done > "$WORK/answers.$phase.$c"
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  cat "$WORK"/answers."$phase".* > "$WORK/answers.$phase"
}

# stored_ids BASE: order_sn of every stored notice of the burst's users.
stored_ids() {
  local u cur
  for u in $(seq "$1" $(($1 + USERS - 1))); do
    cur=0
    while :; do
      call GET "/api/msg/list?uid=$u&size=100&cursor=$cur"
      jq -r '.data.list[].order_sn' <<<"$BODY"
      cur=$(jget data.next_cursor)
      [ "$cur" = 0 ] && break
    done
  done
}

counts_add_up() { # counts_add_up BASE TOTAL: notification_count over the users
  local u sum=0 n
  for u in $(seq "$1" $(($1 + USERS - 1))); do
    call GET "/api/user/info?uid=$u"
    n=$(jget data.notification_count)
    [ "$n" = null ] && n=0
    sum=$((sum + n))
  done
  [ "$sum" = "$2" ]
}

check_phase() { # check_phase PHASE BASE
  local phase=$1 base=$2 total=$((CLIENTS * PER_CLIENT))
  check "$phase: every POST answered 10000" \
    [ "$(grep -c '"code":10000' "$WORK/answers.$phase")" = "$total" ]
  jq -r '.data.id' "$WORK/answers.$phase" | sort > "$WORK/ids.$phase"
  check "$phase: every answer has its own id" [ "$(sort -u "$WORK/ids.$phase" | wc -l)" = "$total" ]
  check "$phase: counts add up" wait_until 60 counts_add_up "$base" "$total"
  stored_ids "$base" | sort > "$WORK/stored.$phase"
  check "$phase: every answered id stored exactly once" cmp -s "$WORK/ids.$phase" "$WORK/stored.$phase"
}

start_server
burst plain 300
check_phase plain 300
stop_server

start_server SLUICE_NOTIFY_FAULT_BATCH=1
burst fallback 400
check_phase fallback 400
check "fallback: batches were applied one by one" \
  grep -q 'applying them one by one' "$WORK"/logs*/main.log
call GET /api/admin/failed?min_count=0
check "fallback: nothing counted as failed" [ "$(jlen data.list)" = 0 ]
stop_server

if [ "$STACK" = sqlite ]; then
  start_server SLUICE_QUEUE_URL=mem://notify
  curl -s -N -m 60 "${URL%/}/api/msg/stream?uid=501" > "$WORK/sse.inline" &
  SSE_PID=$!
  check "inline: the stream says hello" wait_until 10 grep -q '^event: hello' "$WORK/sse.inline"
  burst inline 500
  check_phase inline 500
  # mem:// cannot be shared with another instance: events go straight to
  # this process's streams, without the events topic and its listener
  check "inline: the stream gets uid 501's notices" wait_until 10 grep -q '"data":"inline-' "$WORK/sse.inline"
  kill "$SSE_PID" 2>/dev/null; wait "$SSE_PID" 2>/dev/null
  call GET /metrics
  check "inline: every publish counted" \
    grep -q "^sluice_queue_published_total{topic=\"notify\"} $((CLIENTS * PER_CLIENT))\$" <<<"$BODY"
  stop_server
  start_server SLUICE_QUEUE_URL=mem://notify SLUICE_NOTIFY_FAULT_PUBLISH=1
  before=$(cat "$WORK"/logs*/notice_retry.log 2>/dev/null | wc -l)
  for i in 1 2 3; do
    call POST /api/msg/product -d "uid=600&type=1&data=refused-$i"
    CASE="inline refused $i"; expect 503 10001 "logged for retry"
  done
  after=$(cat "$WORK"/logs*/notice_retry.log | wc -l)
  check "inline refused: three retry-log lines" [ $((after - before)) = 3 ]
  check "inline refused: the request is in the log" grep -q '"data":"refused-2"' "$WORK"/logs*/notice_retry.log
  stop_server
  # A full queue: a POST waits queue.publish_wait_ms for room, then 503. Two
  # notices of the fault uid sit out a long backoff and fill buffer=2.
  start_server SLUICE_QUEUE_URL="mem://notify?buffer=2" SLUICE_NOTIFY_FAULT_UID=77 \
    SLUICE_CONSUMERS_BACKOFF_MS=60000 SLUICE_CONSUMERS_BACKOFF_MAX_MS=60000 SLUICE_QUEUE_PUBLISH_WAIT_MS=2500
  for i in 1 2; do call POST /api/msg/product -d "uid=77&type=1&data=held-$i"; CASE="held $i"; expect 200 10000; done
  t0=$(date +%s%N)
  call POST /api/msg/product -d "uid=77&type=1&data=waited"
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  CASE="full queue"; expect 503 10001 "logged for retry"
  check "the POST waited publish_wait_ms for room ($ms ms)" [ "$ms" -ge 2300 ]
  check "the waited request is in the retry log" grep -q '"data":"waited"' "$WORK"/logs*/notice_retry.log
  stop_server
else
  skip_check "inline" "mem:// runs on the embedded stack only"
fi
finish
