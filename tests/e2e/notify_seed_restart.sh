#!/usr/bin/env bash
# notify_seed_restart.sh - fault test of the service on the seed's stack
# (RabbitMQ queue, MariaDB store, notify and read consumers as separate
# processes): 8 concurrent clients post 20,000 notices (x SL_TEST_SCALE)
# through POST /api/msg/product while one server, NOTIFY_RESTART_SERVICE
# (mariadb, the default, or rabbitmq), is restarted with `services.sh
# restart` in the middle of the run. In the end every notice answered with
# code 10000 is stored exactly once (checked in MariaDB itself, by its unique
# data and by its id), no id is stored twice, and the users' notification
# counts add up to the rows.
# While MariaDB restarts only the consumers wait (publishing needs the queue
# alone), so a request may be refused only when the broker, on a busy host,
# missed queue.publish_wait_ms: at most 0.5%, each a time-out in
# notice_retry.log. While RabbitMQ
# restarts, a request whose publish is not confirmed in time may be refused
# with HTTP 503 / code 10001; each of those must be in notice_retry.log, and
# every request must get one of the two answers (none hangs or fails
# otherwise). Either way, once the server is back and the load is done, a
# tail of 800 more requests must all be answered with 10000.
#
# Clients: each `curl -K chunk` process sends CHUNK requests one after the
# other on one keep-alive connection and writes one line per request (body,
# tab, HTTP status) in request order, so line i answers request i of the
# chunk; xargs -P runs 8 of them at a time.
#
# NOTIFY_E2E_STACK=pg runs the same with the postgres:// store while
# PostgreSQL restarts (NOTIFY_RESTART_SERVICE=postgres), reading the rows in
# PostgreSQL itself. With NOTIFY_PG_QUEUE=sqlite (ctest e2e_notify_pg_restart)
# the queue stays up on sqlite://, so as with MariaDB requests are answered
# 10000 while the consumers' store reconnects on its own; with the
# queue on postgres:// too, queue and store go away together and a request
# may be refused with 503 as in the RabbitMQ case. NOTIFY_RESTART_LOAD sets
# the number of notices (default 20,000, x SL_TEST_SCALE).
export NOTIFY_E2E_STACK=${NOTIFY_E2E_STACK:-seed}
source "$(dirname "$0")/lib/notify.bash"
export LC_ALL=C

[ -n "${SL_SERVICES_SH:-}" ] || { echo "SL_SERVICES_SH is not set (run through ctest)" >&2; exit 1; }
if [ "$STACK" = pg ]; then
  SERVICE=${NOTIFY_RESTART_SERVICE:-postgres}
  db_rows() { pg_sql -At -F $'\t' -c "$1"; } # rows of a query, tab-separated
  USER_TABLE="$RUN.\"user\""
else
  SERVICE=${NOTIFY_RESTART_SERVICE:-mariadb}
  db_rows() { my_sql -N -e "$1"; }
  USER_TABLE="$RUN.\`user\`"
fi
case $STACK/$SERVICE in
  seed/mariadb) NAME=MariaDB ;;
  seed/rabbitmq) NAME=RabbitMQ ;;
  pg/postgres) NAME=PostgreSQL ;;
  *) echo "NOTIFY_RESTART_SERVICE must be mariadb or rabbitmq (seed stack) or postgres (pg stack), not '$SERVICE'" >&2; exit 1 ;;
esac
SCALE=${SL_TEST_SCALE:-1}
LOAD=${NOTIFY_RESTART_LOAD:-20000}
TOTAL=$(awk -v s="$SCALE" -v l="$LOAD" 'BEGIN { n = int(l * s); print (n < 400 ? 400 : n) }')
CHUNK=100
CLIENTS=8
USERS=64
T0=$(date +%s)

# After the restart, once the load is done, a tail of TAIL more requests
# (one chunk per client) runs with the server back: each must succeed.
TAIL=$((CLIENTS * CHUNK))
ALL=$((TOTAL + TAIL))

start_server
mkdir -p "$WORK/req" "$WORK/tail" "$WORK/out"
# Request n: uid n % USERS, data "n<n>" (unique, so MariaDB rows map back);
# chunks of the tail go to tail/, the others to req/.
awk -v total="$TOTAL" -v all="$ALL" -v chunk="$CHUNK" -v users="$USERS" -v url="${URL%/}/api/msg/product" \
    -v dir="$WORK" 'BEGIN {
  for (n = 0; n < all; n++) {
    f = sprintf("%s/%s/%05d", dir, n < total ? "req" : "tail", int(n / chunk));
    if (n % chunk) print "next" > f;
    printf "url = \"%s\"\ndata = \"uid=%d&type=1&data=n%d\"\nmax-time = 20\nsilent\n", url, n % users, n > f;
    printf "write-out = \"\\t%%{http_code}\\n\"\n" > f;
  }
}'
# A chunk's output (out/<chunk>): line i is request (chunk * CHUNK + i).
run_chunks() { # run_chunks DIR: every chunk of $WORK/DIR, CLIENTS at a time
  ls "$WORK/$1" | xargs -P "$CLIENTS" -I{} sh -c 'curl -K "$1/$2/$3" > "$1/out/$3" 2>/dev/null' _ "$WORK" "$1" {}
}
run_chunks req &
LOAD=$!
EXTRA_PIDS+=("$LOAD")

answered_now() { cat "$WORK"/out/* 2>/dev/null | grep -c '"code":10000'; }
# Restart the server once a third of the notices were answered, load still running.
check "a third answered before the restart" \
  wait_until 120 bash -c "[ \$(cat $WORK/out/* 2>/dev/null | grep -c '\"code\":10000') -ge $((TOTAL / 3)) ]"
echo "restarting $NAME after $(answered_now) answered ($(( $(date +%s) - T0 )) s)"
R0=$(date +%s)
"$SL_SERVICES_SH" restart "$SERVICE" >/dev/null || { bad "$SERVICE restart failed"; finish; exit 1; }
echo "$NAME back after $(( $(date +%s) - R0 )) s, $(answered_now) answered$(kill -0 "$LOAD" 2>/dev/null && echo ', load still running')"
wait "$LOAD"
EXTRA_PIDS=()
echo "load done: $(( $(date +%s) - T0 )) s"
run_chunks tail
TAIL_OK=$(cd "$WORK/tail" && for f in *; do cat "../out/$f"; done | grep -c '"code":10000')
check "every request once $NAME is back answered with 10000 ($TAIL_OK of $TAIL)" [ "$TAIL_OK" = "$TAIL" ]

# answered: "id data" of every request answered with code 10000.
for f in "$WORK"/out/*; do
  awk -v base=$(( 10#$(basename "$f") * CHUNK )) -F'\t' '
    $1 ~ /"code":10000/ && match($1, /"id":"[^"]+"/) {
      print substr($1, RSTART + 6, RLENGTH - 7), "n" (base + NR - 1) }' "$f"
done | sort > "$WORK/answered"
N=$(wc -l < "$WORK/answered")
# refused: data of every request answered with HTTP 503 and code 10001.
for f in "$WORK"/out/*; do
  awk -v base=$(( 10#$(basename "$f") * CHUNK )) -F'\t' '
    $2 == 503 && $1 ~ /"code":10001/ { print "n" (base + NR - 1) }' "$f"
done | sort > "$WORK/refused"
REFUSED=$(wc -l < "$WORK/refused")
OTHER=$((ALL - N - REFUSED))
echo "answered $N of $ALL with code 10000, $REFUSED with 503, $OTHER otherwise"
# Only the store restarts: MariaDB, or PostgreSQL with the queue elsewhere.
STORE_ONLY=false
[ "$SERVICE" = mariadb ] || { [ "$SERVICE" = postgres ] && [[ $SLUICE_QUEUE_URL != postgres://* ]]; } && STORE_ONLY=true
check "every request answered with 10000 or 503 ($OTHER not)" [ "$OTHER" = 0 ]
jq -r 'select(.topic == "notify") | .request.data' "$WORK/logs/notice_retry.log" 2>/dev/null |
  sort > "$WORK/retry_logged"
if $STORE_ONLY; then
  check "most requests answered with 10000" [ "$N" -ge $((ALL * 9 / 10)) ]
  # Publishing needs the queue alone: the store's restart refuses nothing
  # of itself. A broker on a host busy with that restart (in CI also with
  # builds and other servers) may still miss queue.publish_wait_ms for a
  # round (seen: 4 and 37 of 20,800 against RabbitMQ, each stored anyway);
  # such a refusal must be the queue's time-out, and rare.
  OTHER_ERR=$(jq -r 'select(.topic == "notify" and .error != "timed out") | .request.data' \
    "$WORK/logs/notice_retry.log" 2>/dev/null | wc -l)
  check "refused while only the store restarts: only the queue's time-outs ($OTHER_ERR other)" \
    [ "$OTHER_ERR" = 0 ]
  check "refused while only the store restarts: at most 0.5% ($REFUSED of $ALL)" \
    [ "$REFUSED" -le $((ALL / 200)) ]
fi
UNLOGGED=$(comm -23 "$WORK/refused" "$WORK/retry_logged" | wc -l)
check "every refused notice in notice_retry.log ($UNLOGGED not)" [ "$UNLOGGED" = 0 ]

union_all() { # SELECT cols FROM every th_notice_k, UNION ALL
  local k sql=""
  for k in $(seq 1 16); do sql+="${sql:+ UNION ALL }SELECT $1 FROM $RUN.th_notice_$k"; done
  echo "$sql"
}
stored_rows() { db_rows "SELECT COUNT(*) FROM ($(union_all order_sn)) t"; }
rows_reach_answered() { [ "$(stored_rows)" -ge "$N" ]; }
# Wait until the consumers caught up: as many rows as answered notices.
check "stored rows reach the answered count" wait_until 90 rows_reach_answered
echo "stored $(stored_rows) rows ($(( $(date +%s) - T0 )) s)"
db_rows "$(union_all "order_sn, data")" | tr '\t' ' ' | sort > "$WORK/stored"
MISSING=$(comm -23 "$WORK/answered" "$WORK/stored" | wc -l)
check "every answered notice stored with its id ($MISSING missing)" [ "$MISSING" = 0 ]
# A publish whose confirm was lost with the connection is refused (503) even
# though the broker may have kept it: such a notice is stored all the same
# (once; a client retry with an Idempotency-Key would not duplicate it).
echo "refused but stored: $(cut -d' ' -f2 "$WORK/stored" | sort | comm -12 "$WORK/refused" - | wc -l)"
check "no notice stored twice" [ -z "$(cut -d' ' -f2 "$WORK/stored" | sort | uniq -d | head -5)" ]
check "no id stored twice" [ -z "$(cut -d' ' -f1 "$WORK/stored" | sort | uniq -d | head -5)" ]
check "counts add up to the rows" [ "$(db_rows "SELECT COALESCE(SUM(notification_count),0) FROM $USER_TABLE")" = "$(stored_rows)" ]
check "nothing parked" [ "$(db_rows "SELECT COUNT(*) FROM $RUN.failed_queues WHERE failed_count >= 5")" = 0 ]
if [ "$SERVICE" = mariadb ]; then
  check "consumer saw the restart" grep -q 'connection lost, reconnecting' "$WORK"/logs-notify/main.log
elif [ "$SERVICE" = postgres ]; then
  # a connection in use or idle is lost; one being opened as the server stops is refused
  check "the consumer's store saw the restart" \
    grep -qE 'postgres store: (connection lost|cannot connect)' "$WORK"/logs-notify/main.log
else
  check "consumer saw the restart" grep -q "subscription to 'notify' reconnected" "$WORK"/logs-notify/main.log
fi
echo "total $(( $(date +%s) - T0 )) s"
finish
