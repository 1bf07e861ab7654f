#!/usr/bin/env bash
# notify_mysql_restart.sh - the mysql:// store survives a MariaDB restart:
# notices stored before the restart stay, and after it the service (whose
# pooled connections all died) reconnects and stores, counts, lists and
# marks read again without being restarted itself. Runs against the ctest
# mariadb fixture (SL_MARIADB_URL, SL_CONF_RESTART_CMD) with the store
# configured through the seed's mysql section (store.url "mysql://") and a
# small pool (xorm max_open_conns 2, max_idle_conns 1).
source "$(dirname "$0")/lib/notify.bash"

[ -n "${SL_CONF_RESTART_CMD:-}" ] || { echo "SL_CONF_RESTART_CMD is not set (run through ctest)" >&2; exit 1; }
mysql_fresh_db
export SLUICE_STORE_URL=mysql:// SLUICE_MYSQL_HOST=$MY_HOST SLUICE_MYSQL_PORT=$MY_PORT \
  SLUICE_MYSQL_USER_NAME=$MY_USER SLUICE_MYSQL_PASSWORD=$MY_PASS SLUICE_MYSQL_DB_NAME=$RUN \
  SLUICE_XORM_MAX_OPEN_CONNS=2 SLUICE_XORM_MAX_IDLE_CONNS=1 SLUICE_QUEUE_URL=sqlite://./data/queue.db

start_server
for i in 1 2 3; do call POST /api/msg/product -d "uid=12&type=1&data=before$i"; done
check "3 stored before the restart" wait_until 10 count_is 12 3
check "tables created in the seed's database" \
  [ "$(my_sql -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$RUN' AND table_name IN ('user','failed_queues','th_notice_1','th_notice_16')")" = 4 ]

$SL_CONF_RESTART_CMD >/dev/null || { bad "mariadb restart failed"; finish; exit 1; }

CASE="product after restart"; call POST /api/msg/product -d 'uid=12&type=2&data=after'
expect 200 10000
check "stored after the restart" wait_until 20 count_is 12 4
call GET '/api/msg/list?uid=12'
check "list after the restart" [ "$(jlen data.list)" = 4 ]
check "newest first" [ "$(jget data.list.0.data)" = after ]
CASE="read after restart"; call POST /api/msg/read -d 'uid=12&type=1'
expect 200 10000
check "read after the restart" wait_until 10 count_is 12 1
check "reconnect logged" grep -q 'connection lost, reconnecting' "$WORK/logs/main.log"
check "rows in MariaDB" [ "$(my_sql -N -e "SELECT notification_count FROM $RUN.\`user\` WHERE uid=12")" = 1 ]
stop_server
finish
