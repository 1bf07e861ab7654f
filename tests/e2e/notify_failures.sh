#!/usr/bin/env bash
# notify_failures.sh - the failure paths of the notification service:
#  - a notice whose store write keeps failing is retried with backoff, then
#    parked in failed_queues at failed_count 5 (GET /api/admin/failed,
#    `sluice notify failed list`), and requeued by the admin route and by
#    `sluice notify failed retry --all` once the fault is gone;
#  - when the queue refuses a publish the client gets 503/10001 and the
#    request lands in notice_retry.log / read_retry.log;
#  - log files rotate by size into gzipped backups, at most max_backups kept.
# Faults are injected with the test hooks SLUICE_NOTIFY_FAULT_UID (the notify
# consumer fails for that uid) and SLUICE_NOTIFY_FAULT_PUBLISH=1.
# NOTIFY_E2E_STACK=seed runs it on RabbitMQ + MariaDB (ctest
# e2e_notify_failures_seed_stack), where start_server hands the hooks to the
# separate consumer processes as well and stop_server stops them;
# NOTIFY_E2E_STACK=pg the same on PostgreSQL (e2e_notify_failures_pg_stack).
source "$(dirname "$0")/lib/notify.bash"
CFG="$SRC_DIR/config/config.yaml"

parked_is() { call GET /api/admin/failed; [ "$(jlen data.list)" = "$1" ]; }

# ---- park after 5 failures ----
start_server SLUICE_NOTIFY_FAULT_UID=99
call POST /api/msg/product -d 'uid=99&type=1&data=doomed one'
call POST /api/msg/product -d 'uid=99&type=1&data=doomed two'
check "both parked" wait_until 20 parked_is 2
check "failed_count is 5" [ "$(jget data.list.0.failed_count)" = 5 ]
check "parked row keeps the payload" grep -q 'doomed one' <<<"$BODY"
P1=$(jget data.list.0.id)
check "nothing stored for the failing uid" count_is 99 0
OUT=$(cd "$WORK" && "$SLUICE" notify failed list --config "$CFG")
check "cli lists parked" grep -q '2 parked' <<<"$OUT"
# The consumer's main.log: logs/ in the server, logs-notify/ for a separate one.
check "failure logged in main.log" grep -q 'parked after 5 failures' "$WORK"/logs*/main.log
CASE="admin retry needs id"; call POST /api/admin/failed/retry -d ''; expect 400 10001 id
CASE="admin retry unknown id"; call POST /api/admin/failed/retry -d 'id=999999'; expect 404 10001
stop_server

# ---- fault gone: admin route requeues one, the CLI the rest ----
start_server
CASE="admin retry"; call POST /api/admin/failed/retry -d "id=$P1"; expect 200 10000
check "admin retry requeued 1" [ "$(jget data.requeued)" = 1 ]
check "requeued notice stored" wait_until 15 count_is 99 1
OUT=$(cd "$WORK" && "$SLUICE" notify failed retry --all --config "$CFG")
check "cli retry requeued 1" grep -q 'requeued 1' <<<"$OUT"
check "cli-requeued notice stored" wait_until 15 count_is 99 2
check "failed_queues emptied" wait_until 10 parked_is 0
call GET /api/admin/failed?min_count=0
check "no row left at any count" [ "$(jlen data.list)" = 0 ]
stop_server

# ---- queue down: 503 + retry logs, rotation ----
start_server SLUICE_NOTIFY_FAULT_PUBLISH=1 SLUICE_LOG_MAX_BYTES=1500 SLUICE_LOG_MAX_BACKUPS=2
CASE="publish fails"; call POST /api/msg/product -d 'uid=12&type=1&data=refused notice'
expect 503 10001 queue
check "refused notice in notice_retry.log" grep -q 'refused notice' "$WORK/logs/notice_retry.log"
CASE="read publish fails"; call POST /api/msg/read -d 'uid=12&type=1'
expect 503 10001
check "refused read in read_retry.log" grep -q '"uid":12' "$WORK/logs/read_retry.log"
for i in $(seq 1 40); do call POST /api/msg/product -d "uid=12&type=1&data=filler-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; done
gz_count() { [ "$(ls "$WORK/logs" | grep -c '^notice_retry-.*\.log\.gz$')" = "$1" ]; }
no_plain() { ! ls "$WORK/logs" | grep -q '^notice_retry-.*\.log$'; }
# A rotation's backup is gzipped, then the oldest pruned, in the background:
# wait until the last one is done before looking at both.
settled() { gz_count 2 && no_plain; }
check "rotated backups gzipped, max_backups kept" wait_until 10 settled
check "no uncompressed backup left" no_plain
check "current log under the limit" [ "$(stat -c %s "$WORK/logs/notice_retry.log")" -le 1500 ]
GZ=$(ls "$WORK/logs"/notice_retry-*.log.gz | tail -1)
check "backup is valid gzip with JSON lines" bash -c 'gzip -dc "$1" | head -1 | jq -e .request >/dev/null' _ "$GZ"
check "service still up" count_is 99 2
stop_server
finish
