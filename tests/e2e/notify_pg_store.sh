#!/usr/bin/env bash
# notify_pg_store.sh - the postgres:// store's edges, against the ctest
# postgres fixture (SL_POSTGRES_URL), queue on sqlite:// with consumers in
# the server:
#  - bad URLs and options (unknown option, bad sslmode, schema, duration,
#    no database) and a wrong password: `serve` exits 1 at once and says why;
#  - a server that accepts the connection and never answers: `serve` gives up
#    after connect_timeout (1 s here), not after libpq's or TCP's defaults;
#  - the tables in PostgreSQL (schema=, 4 shards, sharded by uid % 4 + 1);
#  - a notice table dropped under the running service: lists answer 503 at
#    once, a notice accepted meanwhile is parked after 5 failures (not
#    lost), and once the table is back (the next start creates it) the admin
#    retry stores it.
source "$(dirname "$0")/lib/notify.bash"

pg_fresh_schema
export SLUICE_QUEUE_URL=sqlite://./data/queue.db SLUICE_STORE_SHARDS=4
GOOD=$SLUICE_STORE_URL

# refused URL WHY: serve must exit 1 saying "cannot open store", with WHY in
# its main.log
refused() {
  local url=$1 why=$2 out st
  rm -rf "$WORK/logs-bad"
  out=$(cd "$WORK" && SLUICE_STORE_URL=$url SLUICE_LOG_DIR=logs-bad timeout 30 "$SLUICE" notify serve \
        --config "$SRC_DIR/config/config.yaml" 2>&1); st=$?
  check "refused ($why): exit 1, got $st" [ "$st" = 1 ]
  check "refused ($why): says so" grep -q 'cannot open store' <<<"$out"
  check "refused ($why): names the reason" grep -qi -- "$why" "$WORK/logs-bad/main.log"
}
refused "$GOOD&bogus=1" 'unknown URL option'
refused "$GOOD&sslmode=sometimes" 'sslmode must be'
refused "$PG_URL?schema=Bad-Name" 'schema must match'
refused "$PG_URL?connect_timeout=soon" 'connect_timeout must be'
refused "postgres://$PG_USER:$PG_PASS@$PG_HOST:$PG_PORT/" 'must be postgres://'
refused "postgres://$PG_USER:wrong@$PG_HOST:$PG_PORT/$PG_DBNAME" 'password authentication failed'

# A listener that never answers: serve gives up after connect_timeout.
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True); time.sleep(60)' > "$WORK/mute.port" &
EXTRA_PIDS+=($!)
wait_until 10 test -s "$WORK/mute.port"
T0=$(date +%s%N)
refused "postgres://$PG_USER:$PG_PASS@127.0.0.1:$(cat "$WORK/mute.port")/$PG_DBNAME?connect_timeout=1s" 'within 1000ms'
MS=$(( ($(date +%s%N) - T0) / 1000000 ))
check "a mute server costs connect_timeout, not more (${MS} ms)" [ "$MS" -lt 15000 ]

# ---- the tables ----
start_server
for i in 1 2 3; do call POST /api/msg/product -d "uid=6&type=1&data=kept$i"; done
call POST /api/msg/product -d 'uid=7&type=1&data=other'
check "stored" wait_until 20 count_is 6 3
check "tables in the schema" [ "$(pg_sql -At -c "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema='$RUN'")" = \
  "failed_queues,nf_listeners,nf_meta,th_notice_1,th_notice_2,th_notice_3,th_notice_4,user" ]
check "uid 6 in th_notice_3 (6 % 4 + 1)" [ "$(pg_sql -At -c "SELECT count(*) FROM $RUN.th_notice_3 WHERE uid=6")" = 3 ]
check "user row counts" [ "$(pg_sql -At -c "SELECT notification_count FROM $RUN.\"user\" WHERE uid=6")" = 3 ]
# a server lists itself as listening while a stream is open, and not after
listeners() { pg_sql -At -c "SELECT count(*) FROM $RUN.nf_listeners"; }
check "nobody listed while no stream is open" [ "$(listeners)" = 0 ]
curl -s -N -m 20 "${URL%/}/api/msg/stream?uid=8" > "$WORK/sse.txt" &
PG_SSE=$!
check "the stream says hello" wait_until 10 grep -q '^event: hello' "$WORK/sse.txt"
check "the server is listed while its stream is open" [ "$(listeners)" = 1 ]
call POST /api/msg/product -d 'uid=8&type=1&data=watched'
check "the stream gets the notice" wait_until 10 grep -q 'watched' "$WORK/sse.txt"
kill "$PG_SSE"
unlisted() { [ "$(listeners)" = 0 ]; }
check "the server's row goes once its stream closed" wait_until 15 unlisted

# ---- a table dropped under the service ----
pg_sql -c "DROP TABLE $RUN.th_notice_3"
CASE="list without its table"; call GET '/api/msg/list?uid=6'
expect 503 10001 'store unavailable'
CASE="other shards still work"; call GET '/api/msg/list?uid=7'
expect 200 10000
CASE="accepted while the table is gone"; call POST /api/msg/product -d 'uid=6&type=1&data=while gone'
expect 200 10000
parked_is() { call GET /api/admin/failed; [ "$(jlen data.list)" = "$1" ]; }
check "parked, not lost" wait_until 30 parked_is 1
check "the parked row keeps the notice" grep -q 'while gone' <<<"$BODY"
P=$(jget data.list.0.id)
check "the error is logged" grep -q 'postgres store: [a-z]*: 42P01' "$WORK/logs/main.log"
stop_server

start_server # creates the missing table again
CASE="admin retry"; call POST /api/admin/failed/retry -d "id=$P"; expect 200 10000
check "stored once the table is back" wait_until 20 count_is 6 4
call GET '/api/msg/list?uid=6'
check "only the retried notice in the new table" [ "$(jlen data.list)" = 1 ]
check "it is the one accepted while the table was gone" [ "$(jget data.list.0.data)" = 'while gone' ]
stop_server
finish
