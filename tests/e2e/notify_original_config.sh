#!/usr/bin/env bash
# notify_original_config.sh - the original service's config.yaml runs
# unchanged (issue 20 part 1): a file with exactly its sections, keys and
# value types (web, xorm, mysql, rabbitMq, redis; no queue or store URL)
# starts `sluice notify serve` on the seed's stack - RabbitMQ and MariaDB
# from the ctest fixtures - and a notice round-trips through them. Checks
# the original's answer fields of /api/msg/product and /api/msg/read (uid,
# type, data, plus our id), the list item and /api/user/info shapes, that
# the rows land in the mysql section's database, that xorm.timezone is the
# zone of the times written, that the redis section is reported as unused,
# and that what cannot be honoured in those sections is refused by name.
source "$(dirname "$0")/lib/notify.bash"

[ -n "${SL_RABBITMQ_URL:-}" ] || { echo "SL_RABBITMQ_URL is not set (run through ctest)" >&2; exit 1; }
re='^amqp://([^:@/]+):([^@]*)@([^:/]+):([0-9]+)/?$'
[[ $SL_RABBITMQ_URL =~ $re ]] || { echo "SL_RABBITMQ_URL '$SL_RABBITMQ_URL' is not amqp://user:pass@host:port/" >&2; exit 1; }
MQ_USER=${BASH_REMATCH[1]} MQ_PASS=${BASH_REMATCH[2]} MQ_HOST=${BASH_REMATCH[3]} MQ_PORT=${BASH_REMATCH[4]}
mysql_fresh_db          # database $RUN on the fixture's server, dropped at exit
unset SLUICE_STORE_URL SLUICE_QUEUE_URL   # nothing but the file picks queue and store

# write_config FILE [sed expressions...]: the original's layout, values for the fixtures.
write_config() {
  local f=$1; shift
  cat >"$f" <<EOF
web:
  debug: true
  server_addr: 127.0.0.1:0
  read_timeout: 3
  write_timeout: 5
  idle_timeout: 8
xorm:
  debug: true
  db_type: mysql
  max_lifetime: 7200
  max_open_conns: 2000
  max_idle_conns: 1000
  timezone: Asia/Shanghai
mysql:
  host: $MY_HOST
  port: $MY_PORT
  user_name: $MY_USER
  password: $MY_PASS
  db_name: $RUN
  parameters: timeout=3s&collation=utf8mb4_unicode_ci&readTimeout=5s&writeTimeout=5s
rabbitMq:
  host: $MQ_HOST
  port: $MQ_PORT
  user_name: $MQ_USER
  password: $MQ_PASS
  connection_num: 1
  channel_num: 5
redis:
  host: localhost
  port: 6379
  password:
  database: 0
EOF
  local e
  for e in "$@"; do sed -i -e "$e" "$f"; done
}
export NOTIFY_CONFIG=$WORK/config.yaml
write_config "$NOTIFY_CONFIG"

# ---- the effective configuration: amqp:// from rabbitMq, the mysql store ----
out=$("$SLUICE" notify config --config "$NOTIFY_CONFIG" 2>&1); st=$?
check "the original's file loads (status $st): $out" [ "$st" = 0 ]
check "rabbitMq selects amqp://" matches "$out" "url: \"amqp://$MQ_USER:\*\*\*@$MQ_HOST:$MQ_PORT/\?connection_num=1&channel_num=5\""
check "mysql selects the mysql store" matches "$out" 'url: "mysql://"'

# ---- what cannot be honoured is refused, naming the key ----
refused() { # refused WHAT PATTERN SED...: the config check fails naming PATTERN
  local what=$1 pat=$2; shift 2
  write_config "$WORK/bad.yaml" "$@"
  local o s; o=$("$SLUICE" notify config --config "$WORK/bad.yaml" 2>&1); s=$?
  check "$what is refused (status $s): $o" [ "$s" = 2 ]
  check "$what: the error names it: $o" matches "$o" "$pat"
}
refused "an unknown DSN parameter" "mysql.parameters: 'charset' is not supported" 's/^  parameters: .*/  parameters: charset=latin1/'
refused "an unknown time zone" "xorm.timezone: unknown time zone 'Mars/Olympus'" 's#Asia/Shanghai#Mars/Olympus#'
refused "a db_type without a store" "xorm.db_type must be mysql or sqlite, got 'oracle'" 's/db_type: mysql/db_type: oracle/'
refused "connection_num 0" "rabbitMq.connection_num must be 1..1024" 's/connection_num: 1/connection_num: 0/'
refused "a bad port type" "rabbitMq.port: expected an integer" "s/port: $MQ_PORT/port: amqp/"

# ---- serve: a notice round-trips through RabbitMQ and MariaDB ----
start_server
check "stdout hides the broker password" bash -c "! grep -q ':$MQ_PASS@' '$WORK/server.out'"
U=$(( (RANDOM << 15 | RANDOM) + 1000 ))
SHARD=$(( U % 16 + 1 ))
hour_before=$(TZ=Asia/Shanghai date '+%Y-%m-%d %H')
CASE="product answers the original's fields"
call POST /api/msg/product -d "uid=$U&type=3&data=from the original's config"
expect 200 10000 success
check "data.uid is the integer uid" [ "$(jq -c '.data.uid' <<<"$BODY")" = "$U" ]
check "data.type is the integer type" [ "$(jq -c '.data.type' <<<"$BODY")" = 3 ]
check "data.data is the string sent" [ "$(jq -c '.data.data' <<<"$BODY")" = '"from the original'"'"'s config"' ]
check "data.id is our message id" matches "$(jget data.id)" '^[0-9a-f-]{36}$'
check "data has exactly id, uid, type, data" [ "$(jq -c '.data | keys' <<<"$BODY")" = '["data","id","type","uid"]' ]
check "the notice is stored" wait_until 20 count_is "$U" 1
hour_after=$(TZ=Asia/Shanghai date '+%Y-%m-%d %H')

call GET "/api/msg/list?uid=$U"
check "list item keeps its fields" [ "$(jq -c '.data.list[0] | keys' <<<"$BODY")" = '["create_time","data","id","order_sn","status","type","updated_at"]' ]
ct=$(jget data.list.0.create_time)
check "create_time is in xorm.timezone (Asia/Shanghai): $ct" \
  bash -c "[[ '$ct' == '$hour_before:'* || '$ct' == '$hour_after:'* ]]"
call GET "/api/user/info?uid=$U"
check "user info keeps its shape" [ "$(jq -c '.data | keys' <<<"$BODY")" = '["nick","notification_count","uid"]' ]
check "the row is in the mysql section's database" \
  [ "$(my_sql -N -e "SELECT COUNT(*) FROM $RUN.th_notice_$SHARD WHERE uid = $U")" = 1 ]

CASE="read answers the original's fields"
call POST /api/msg/read -d "uid=$U&type=3"
expect 200 10000 success
check "read data is uid, type, data (empty) and id" \
  [ "$(jq -c '.data | [.uid, .type, .data, (.id | length)]' <<<"$BODY")" = "[$U,3,\"\",36]" ]
check "the read is applied" wait_until 20 count_is "$U" 0
call POST /api/msg/read -H 'Content-Type: application/json' -d "{\"uid\":$U,\"type\":3,\"data\":\"echo me\"}"
check "read echoes data like the original" [ "$(jq -c '.data.data' <<<"$BODY")" = '"echo me"' ]

# ---- the log says where queue and store came from, and that redis is unused ----
LOG=$WORK/logs/main.log
check "log: queue from the rabbitMq section" grep -q 'queue amqp://[^ ]* (from the rabbitMq section)' "$LOG"
check "log: store from the mysql and xorm sections" grep -q 'from the mysql and xorm sections' "$LOG"
check "log: pool and DSN parameters honoured" \
  grep -q 'max_open_conns 2000 max_idle_conns 1000 max_lifetime 7200s, collation utf8mb4_unicode_ci' "$LOG"
check "log: the redis section is reported as unused" grep -q 'the redis section (localhost:6379, database 0) is not used' "$LOG"
check "log: no password" bash -c "! grep -q ':$MY_PASS@\|:$MQ_PASS@' '$LOG'"

kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; st=$?; SERVER_PID=""
check "server exits cleanly (status $st)" [ "$st" = 0 ]
finish
