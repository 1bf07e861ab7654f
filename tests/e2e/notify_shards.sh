#!/usr/bin/env bash
# notify_shards.sh - the store records its shard count (issue 22): a restart
# with another store.shards would file every uid under another th_notice_N
# table and hide the notices stored before, so it is refused with a clear
# error; the recorded count starts again, and a store from before the record
# is judged by its highest th_notice_N table. Runs on the embedded default
# (sqlite://) and, as e2e_notify_shards_mysql (NOTIFY_STORE=mysql), with the
# mysql:// store on the MariaDB fixture, and as e2e_notify_shards_pg
# (NOTIFY_STORE=postgres) with the postgres:// store on the PostgreSQL fixture.
source "$(dirname "$0")/lib/notify.bash"
[ "${NOTIFY_STORE:-sqlite}" = mysql ] && [ -z "$MY_DB" ] && mysql_fresh_db
[ "${NOTIFY_STORE:-sqlite}" = postgres ] && [ -z "$PG_SCHEMA" ] && pg_fresh_schema

listed() { # listed UID N: GET /api/msg/list shows N notices of UID
  call GET "/api/msg/list?uid=$1&size=100"; [ "$(jlen data.list)" = "$2" ]
}

# serve_fails SHARDS: `notify serve` with store.shards SHARDS must refuse to start.
serve_fails() {
  (cd "$WORK" && SLUICE_STORE_SHARDS=$1 timeout 60 "$SLUICE" notify serve \
     --config "${NOTIFY_CONFIG:-$SRC_DIR/config/config.yaml}" >"$WORK/refused.out" 2>"$WORK/refused.err")
}

start_server SLUICE_STORE_SHARDS=4
for u in 1 2 3 4 5 6 7; do call POST /api/msg/product -d "uid=$u&type=1&data=kept-$u"; done
check "7 notices listed with 4 shards" wait_until 20 listed 7 1
check "uid 6 listed with 4 shards" listed 6 1
stop_server

serve_fails 8
check "8 shards on a 4-shard store: refused" [ $? -ne 0 ]
check "the error names both counts" grep -q 'created with 4 shards.*store.shards is 8' "$WORK/refused.err"
check "no server line printed" [ -z "$(grep -o 'http://' "$WORK/refused.out")" ]

start_server SLUICE_STORE_SHARDS=4
for u in 1 6 7; do check "uid $u still listed with 4 shards" listed $u 1; done
stop_server

# A store from before the record: no nf_meta row, th_notice_1..4 tables.
if [ -n "$MY_DB" ]; then
  my_sql -D "$MY_DB" -e "DELETE FROM nf_meta"
elif [ -n "$PG_SCHEMA" ]; then
  pg_sql -c "DELETE FROM $PG_SCHEMA.nf_meta"
else
  /usr/bin/python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM nf_meta"); c.commit()' \
    "$WORK/data/notice.db"
fi
serve_fails 16
check "16 shards on an unrecorded 4-shard store: refused" [ $? -ne 0 ]
check "the error says what the store has" grep -q 'store has 4 shards.*store.shards is 16' "$WORK/refused.err"
start_server SLUICE_STORE_SHARDS=4
check "uid 7 listed again with 4 shards" listed 7 1
stop_server
serve_fails 2
check "the count is recorded again: 2 refused" grep -q 'created with 4 shards.*store.shards is 2' "$WORK/refused.err"

finish
