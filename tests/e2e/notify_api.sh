#!/usr/bin/env bash
# notify_api.sh - black-box HTTP tests of `sluice notify serve` on the embedded
# default (sqlite:// queue and store): every route with form and JSON bodies,
# the seed's compatibility fields, idempotency, counts, pagination, every
# bad-input case of issue 6, CORS, SSE (live updates reach the streams of
# every server instance, a second server without consumers included), the
# web page, metrics, and that the service stays up and loses nothing after
# bad input.
# NOTIFY_E2E_STACK=seed runs the same checks on RabbitMQ + MariaDB with
# separate consumer processes (ctest e2e_notify_api_seed_stack; see
# lib/notify.bash), NOTIFY_E2E_STACK=pg on PostgreSQL (e2e_notify_api_pg_stack).
source "$(dirname "$0")/lib/notify.bash"

start_server

# ---- produce: form (the seed's fields) and JSON ----
CASE="product form"; call POST /api/msg/product -d 'uid=5&type=1&data=hello&time=2024-01-02 03:04:05'
expect 200 10000 success && ID1=$(jget data.id)
check "product id is a UUID" matches "$ID1" '^[0-9a-f-]{36}$'
CASE="product json"; call POST /api/msg/product -H 'Content-Type: application/json' -d '{"uid":5,"type":2,"data":"json body"}'
expect 200 10000
CASE="product json string uid"; call POST /api/msg/product -H 'Content-Type: application/json' -d '{"uid":"5","type":"2","data":"string numbers"}'
expect 200 10000
CASE="product multipart"; call POST /api/msg/product -F uid=5 -F type=3 -F 'data=multipart body'
expect 200 10000
CASE="product query args"; call POST '/api/msg/product?uid=5&type=1&data=query'
expect 200 10000
check "5 notices stored" wait_until 10 count_is 5 5

# ---- form decoding: '+' and %XX, the first field of a name wins, the body
# over the query, names without '=' or empty; refused bytes in names/values ----
CASE="form decoding"; call POST '/api/msg/product?data=query' -d 'uid=9107&type=1&data=a+b%2Bc%26d%3De&flag&&data=second'
expect 200 10000
check "form '+' is a space, %XX its byte, the first data wins" [ "$(jget data.data)" = 'a b+c&d=e' ]
CASE="form value not UTF-8"; call POST /api/msg/product -d 'uid=9107&type=1&data=%ff'
expect 400 10001 "data is not valid UTF-8"
CASE="form name with NUL"; call POST /api/msg/product -d 'uid=9107&type=1&da%00ta=x'
expect 400 10001 "NUL character"
printf 'uid=9107&type=1&data=a\0b' > "$WORK/rawnul"
CASE="form raw NUL byte"; call POST /api/msg/product -H 'Content-Type: application/x-www-form-urlencoded' --data-binary @"$WORK/rawnul"
expect 400 10001 "data must not contain a NUL character"
CASE="form name starting with NUL"; call POST /api/msg/product -d 'uid=9107&type=1&data=x&%00a=1'
expect 400 10001 "a parameter name must not contain a NUL character"
CASE="form field without a name"; call POST /api/msg/product -d 'uid=9107&type=1&data=x&=y'
expect 400 10001 "empty name"
printf -- '--b\r\nContent-Disposition: form-data; name="uid"\r\n\r\n9107\r\n--b\r\nContent-Disposition: form-data; name="type"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name="data"\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name=""\r\n\r\n\xff\r\n--b--\r\n' > "$WORK/noname"
CASE="multipart field without a name"; call POST /api/msg/product -H 'Content-Type: multipart/form-data; boundary=b' --data-binary @"$WORK/noname"
expect 400 10001
check "only the decoded notice of 9107 stored" wait_until 10 count_is 9107 1
junk=$(for i in $(seq 1 40); do printf 'j%d=%d&' "$i" "$i"; done)
CASE="a parameter after 40 others"; call GET "/api/user/info?${junk}uid=9107"
expect 200 10000
check "the 41st parameter is found" [ "$(jget data.notification_count)" = 1 ]
CASE="a form field after 40 others"; call POST /api/msg/product -d "${junk}uid=9107&type=2&data=late"
expect 200 10000
check "the fields after 40 others are read" [ "$(jget data.data)" = late ]

# ---- list: compatibility fields, newest first, unread ----
CASE="list"; call GET '/api/msg/list?uid=5&type=1&page=1'
expect 200 10000
check "list has the type-1 notices" [ "$(jlen data.list)" = 2 ]
check "list newest first" [ "$(jget data.list.0.data)" = query ]
check "list keeps time as create_time" [ "$(jget data.list.1.create_time)" = "2024-01-02 03:04:05" ]
for f in id type data status updated_at; do
  check "list item has $f" [ "$(jget data.list.0.$f)" != null ]
done
check "list unread counts unread of type" [ "$(jget data.unread)" = 2 ]
call GET '/api/msg/list?uid=5'
check "list without type lists all" [ "$(jget data.unread)" = 5 ]
CASE="user info"; call GET '/api/user/info?uid=5'
expect 200 10000
check "user row created on first notice" [ "$(jget data.notification_count)" = 5 ]
check "user nick" [ "$(jget data.nick)" = user5 ]
call GET '/api/user/info?uid=424242'
check "unknown user has count 0" [ "$(jget data.notification_count)" = 0 ]

# ---- no false dedup, idempotency key ----
for i in 1 2; do call POST /api/msg/product -d 'uid=6&type=1&data=same body'; done
check "identical notices both stored" wait_until 10 count_is 6 2
call POST /api/msg/product -H 'Idempotency-Key: order-77' -d 'uid=6&type=1&data=once'; K1=$(jget data.id)
call POST /api/msg/product -H 'Idempotency-Key: order-77' -d 'uid=6&type=1&data=once'; K2=$(jget data.id)
check "idempotency key gives the same id" [ "$K1" = "$K2" ]
call POST /api/msg/product -d 'uid=6&type=1&data=marker'
check "marker stored" wait_until 10 count_is 6 4
call GET '/api/msg/list?uid=6&size=100'
check "idempotent retry stored once" [ "$(grep -o '"once"' <<<"$BODY" | wc -l)" = 1 ]
CASE="bad idempotency key"; call POST /api/msg/product -H "Idempotency-Key: $(printf 'k%.0s' $(seq 1 200))" -d 'uid=6&type=1&data=x'
expect 400 10001 Idempotency-Key

# ---- read: by type (form), by id (JSON), all; counts never negative ----
CASE="read type"; call POST /api/msg/read -d 'uid=5&type=1'
expect 200 10000
check "read type 1 lowers count by 2" wait_until 10 count_is 5 3
call GET '/api/msg/list?uid=5&type=2'; RID=$(jget data.list.0.id)
CASE="read id json"; call POST /api/msg/read -H 'Content-Type: application/json' -d "{\"uid\":5,\"id\":$RID}"
expect 200 10000
check "read by id lowers count by 1" wait_until 10 count_is 5 2
CASE="read all"; call POST /api/msg/read -H 'Content-Type: application/json' -d '{"uid":5,"all":true}'
expect 200 10000
check "read all" wait_until 10 count_is 5 0
call POST /api/msg/read -d 'uid=5&type=1'; call POST /api/msg/read -d 'uid=5&all=1'
call POST /api/msg/product -d 'uid=5&type=9&data=after'
check "count never negative, next notice counts 1" wait_until 10 count_is 5 1
call GET '/api/msg/list?uid=5'
check "unread counts unread only" [ "$(jget data.unread)" = 1 ]
CASE="read default type"; call POST /api/msg/read -d 'uid=777'
expect 200 10000

# ---- pagination: page+size and cursor ----
for i in $(seq 1 12); do call POST /api/msg/product -d "uid=8&type=1&data=p$i"; done
check "12 stored" wait_until 15 count_is 8 12
call GET '/api/msg/list?uid=8&page=1'
check "10 per page" [ "$(jlen data.list)" = 10 ]
CUR=$(jget data.next_cursor)
call GET '/api/msg/list?uid=8&page=2'
check "page 2 has 2" [ "$(jlen data.list)" = 2 ]
check "page 2 oldest last" [ "$(jget data.list.1.data)" = p1 ]
call GET "/api/msg/list?uid=8&cursor=$CUR"
check "cursor continues" [ "$(jget data.list.0.data)" = p2 ]
call GET '/api/msg/list?uid=8&size=5'
check "size 5" [ "$(jlen data.list)" = 5 ]

# ---- bad input: 400 + 10001 + the field's name ----
CASE="missing uid"; call POST /api/msg/product -d 'type=1&data=x'; expect 400 10001 uid
CASE="non-numeric uid"; call POST /api/msg/product -d 'uid=abc&type=1&data=x'; expect 400 10001 uid
CASE="negative uid"; call POST /api/msg/product -d 'uid=-3&type=1&data=x'; expect 400 10001 uid
CASE="json float uid"; call POST /api/msg/product -H 'Content-Type: application/json' -d '{"uid":1.5,"type":1,"data":"x"}'; expect 400 10001 uid
CASE="bad type"; call POST /api/msg/product -d 'uid=1&type=x&data=x'; expect 400 10001 type
CASE="missing type"; call POST /api/msg/product -d 'uid=1&data=x'; expect 400 10001 type
CASE="missing data"; call POST /api/msg/product -d 'uid=1&type=1'; expect 400 10001 data
CASE="json data not string"; call POST /api/msg/product -H 'Content-Type: application/json' -d '{"uid":1,"type":1,"data":5}'; expect 400 10001 data
LONG=$(printf 'a%.0s' $(seq 1 501))
CASE="data over 500"; call POST /api/msg/product -d "uid=1&type=1&data=$LONG"; expect 400 10001 data
OK500=$(printf '\xc3\xa9%.0s' $(seq 1 500))
CASE="500 two-byte chars"; call POST /api/msg/product --data-urlencode uid=1 --data-urlencode type=1 --data-urlencode "data=$OK500"; expect 200 10000
for t in '2024-13-01 00:00:00' '2024-02-30 10:00:00' 'yesterday' '2024-01-01T00:00:00' '2024-01-01 24:00:00'; do
  CASE="bad time $t"; call POST /api/msg/product --data-urlencode uid=1 --data-urlencode type=1 --data-urlencode data=x --data-urlencode "time=$t"; expect 400 10001 time
done
CASE="malformed json"; call POST /api/msg/product -H 'Content-Type: application/json' -d '{"uid":1,'; expect 400 10001 JSON
CASE="json not object"; call POST /api/msg/product -H 'Content-Type: application/json' -d '[1]'; expect 400 10001 JSON
CASE="wrong content type"; call POST /api/msg/product -H 'Content-Type: text/plain' -d 'uid=1&type=1&data=x'; expect 400 10001 Content-Type
CASE="read bad uid"; call POST /api/msg/read -d 'uid=x'; expect 400 10001 uid
CASE="read bad id"; call POST /api/msg/read -d 'uid=1&id=-2'; expect 400 10001 id
CASE="list missing uid"; call GET '/api/msg/list'; expect 400 10001 uid
CASE="list size over 100"; call GET '/api/msg/list?uid=1&size=101'; expect 400 10001 size
CASE="list bad page"; call GET '/api/msg/list?uid=1&page=0'; expect 400 10001 page
CASE="info bad uid"; call GET '/api/user/info?uid=1x'; expect 400 10001 uid
CASE="query value not UTF-8"; call POST '/api/msg/product?time=2020-01-01%2000:00:0%ff' -d 'uid=1&type=1&data=x'
expect 400 10001 "time is not valid UTF-8"
CASE="list page not UTF-8"; call GET '/api/msg/list?uid=1&page=%ff'; expect 400 10001 "page is not valid UTF-8"
CASE="a Content-Type without a body"; call GET '/api/msg/list?uid=1' -H 'Content-Type: application/json'
expect 200 10000
CASE="a text Content-Type without a body"; call POST '/api/msg/read?uid=1&all=true' -H 'Content-Type: text/plain'
expect 200 10000
head -c 70000 /dev/zero | tr '\0' a > "$WORK/big"
CASE="body over 64 KiB"; call POST /api/msg/product -H 'Content-Type: application/x-www-form-urlencoded' --data-binary @"$WORK/big"; expect 413 10001
CASE="chunked body over 64 KiB"; call POST /api/msg/product -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/x-www-form-urlencoded' --data-binary @"$WORK/big"; expect 413 10001
CASE="unknown route"; call GET /api/nope; expect 404 10001
CASE="wrong method"; call GET /api/msg/product; expect 405 10001 POST
CASE="wrong method 2"; call POST /api/msg/list; expect 405 10001
H=$(curl -s -i -X POST "${URL%/}/api/msg/list")
check "405 on a GET route allows HEAD too" grep -qi '^Allow: GET, HEAD, OPTIONS' <<<"$H"
H=$(curl -s -i -X DELETE "${URL%/}/api/msg/product")
check "405 on a POST route allows POST" grep -qi '^Allow: POST, OPTIONS' <<<"$H"
H=$(curl -s -I "${URL%/}/api/user/info?uid=5")
check "HEAD on a GET route answers 200" grep -q '^HTTP/1.1 200' <<<"$H"

# ---- still up, nothing earlier lost ----
check "count of uid 8 intact after bad input" count_is 8 12
CASE="healthz"; call GET /healthz; expect 200 10000

# ---- CORS ----
H=$(curl -s -i -X OPTIONS -H 'Origin: http://example.test' -H 'Access-Control-Request-Method: POST' "${URL%/}/api/msg/product")
check "preflight 204" grep -q '^HTTP/1.1 204' <<<"$H"
check "preflight allow origin" grep -qi '^Access-Control-Allow-Origin: \*' <<<"$H"
H=$(curl -s -i "${URL%/}/api/user/info?uid=5")
check "CORS on responses" grep -qi '^Access-Control-Allow-Origin' <<<"$H"

# ---- metrics ----
call GET /metrics
check "metrics 200" [ "$STATUS" = 200 ]
check "metrics by route and status" grep -q 'sluice_http_requests_total{route="/api/msg/product",code="400"} [1-9]' <<<"$BODY"
check "metrics latency histogram" grep -q 'sluice_http_request_duration_seconds_bucket{route="/api/msg/list",le="+Inf"}' <<<"$BODY"
check "metrics queue depth" grep -q '^sluice_queue_depth{topic="notify"}' <<<"$BODY"
check "metrics consumer lag" grep -q '^sluice_consumer_lag_seconds{topic="notify"}' <<<"$BODY"

# ---- web inbox ----
call GET /
check "inbox page served" [ "$STATUS" = 200 ]
check "inbox page is the app" grep -q 'sluice inbox' <<<"$BODY"
check "inbox uses no CDN" bash -c '! grep -Eq "src=\"https?://|href=\"https?://" <<<"$1"' _ "$BODY"

# ---- SSE: a new notice and a read reach the stream ----
curl -s -N -m 20 "${URL%/}/api/msg/stream?uid=31" > "$WORK/sse.txt" &
SSE0=$!
EXTRA_PIDS+=($SSE0)
check "stream says hello" wait_until 5 grep -q '^event: hello' "$WORK/sse.txt"
call POST /api/msg/product -d 'uid=31&type=1&data=live one'
check "stream gets the notice" wait_until 10 grep -q 'live one' "$WORK/sse.txt"
check "the notice's event carries the user's count (1)" \
  bash -c 'grep "live one" "$1" | grep -q "\"notification_count\":1[,}]"' _ "$WORK/sse.txt"
call POST /api/msg/read -d 'uid=31&type=1'
check "stream gets the read" wait_until 10 grep -q '^event: read' "$WORK/sse.txt"
check "the read's event carries the user's count (0)" \
  wait_until 5 bash -c 'grep "\"kind\":\"read\"" "$1" | grep -q "\"notification_count\":0[,}]"' _ "$WORK/sse.txt"
CASE="stream bad uid"; call GET '/api/msg/stream?uid=x'; expect 400 10001 uid

# ---- a second server instance (no consumers of its own) gets every event too ----
(cd "$WORK" && exec env SLUICE_CONSUMERS_IN_PROCESS=false SLUICE_LOG_DIR=logs-2 "$SLUICE" notify serve \
    --config "$SRC_DIR/config/config.yaml" >"$WORK/server2.out" 2>>"$WORK/server2.err") &
SERVER2=$!
EXTRA_PIDS+=($SERVER2)
wait_until 10 grep -q 'http://' "$WORK/server2.out"
URL2=$(grep -o 'http://[^ ]*' "$WORK/server2.out" | head -1)
curl -s -N -m 20 "${URL2%/}/api/msg/stream?uid=32" > "$WORK/sse2.txt" &
SSE2=$!
EXTRA_PIDS+=($SSE2)
curl -s -N -m 20 "${URL%/}/api/msg/stream?uid=32" > "$WORK/sse1.txt" &
SSE1=$!
EXTRA_PIDS+=($SSE1)
check "second server's stream says hello" wait_until 10 grep -q '^event: hello' "$WORK/sse2.txt"
check "first server's stream says hello" wait_until 5 grep -q '^event: hello' "$WORK/sse1.txt"
call POST /api/msg/product -d 'uid=32&type=1&data=to both'
check "second server's stream gets the notice" wait_until 10 grep -q 'to both' "$WORK/sse2.txt"
check "first server's stream gets the notice" wait_until 10 grep -q 'to both' "$WORK/sse1.txt"
# events travel as JSON arrays, one queue message per batch; a lone event
# object (as servers before that published) is still taken
(cd "$WORK" && "$SLUICE" pub "${SLUICE_QUEUE_URL:-sqlite://./data/queue.db?ack=batch}" events \
    '{"kind":"notice","uid":32,"notification_count":9,"order_sn":"x","type":1,"data":"lone object","create_time":""}' >/dev/null)
check "a lone event object reaches the stream" wait_until 10 grep -q 'lone object' "$WORK/sse2.txt"

# ---- events are made only while a stream is open somewhere ----
# every stream closed: no server lists itself as listening any more (the
# store's nf_listeners), so the consumers (in the first server) make no events
kill "$SSE0" "$SSE1" "$SSE2" 2>/dev/null
published() { curl -s -m 5 "${URL%/}/metrics" | sed -nE 's/^sluice_events_published_total ([0-9]+)$/\1/p'; }
no_streams() { curl -s -m 5 "${1%/}/metrics" | grep -q '^sluice_sse_clients 0$'; }
check "no stream open on the first server" wait_until 10 no_streams "$URL"
check "no stream open on the second server" wait_until 10 no_streams "$URL2"
listeners() { # rows in the store's nf_listeners
  case "$STACK" in
    sqlite) sqlite3 "$WORK/data/notice.db" 'SELECT COUNT(*) FROM nf_listeners' ;;
    seed) my_sql -N -e "SELECT COUNT(*) FROM $RUN.nf_listeners" ;;
    pg) pg_sql -At -c "SELECT count(*) FROM $RUN.nf_listeners" ;;
  esac 2>/dev/null
}
if [ "$STACK" = sqlite ] || [ "$STACK" = seed ] || [ "$STACK" = pg ]; then
  unlisted() { [ "$(listeners)" = 0 ]; }
  check "the servers removed their listening rows" wait_until 15 unlisted
  before=$(published)
  call POST /api/msg/product -d 'uid=33&type=1&data=seen by nobody'
  check "the notice nobody watches is stored" wait_until 10 count_is 33 1
  sleep 0.5
  after=$(published)
  check "no event made for it (published $before -> $after)" [ -n "$before" -a "$before" = "$after" ]
else
  skip_check "no events without streams" "no query for the listening rows on this stack"
fi
# a stream on the second server alone: the first server's consumers see it
# listed and make events again, from before its hello on
curl -s -N -m 20 "${URL2%/}/api/msg/stream?uid=33" > "$WORK/sse3.txt" &
EXTRA_PIDS+=($!)
check "the second server's new stream says hello" wait_until 10 grep -q '^event: hello' "$WORK/sse3.txt"
call POST /api/msg/product -d 'uid=33&type=1&data=seen elsewhere'
check "a stream on the other server alone gets the notice" wait_until 10 grep -q 'seen elsewhere' "$WORK/sse3.txt"
kill -TERM "$SERVER2"; wait "$SERVER2"; st=$?
check "second server exits cleanly (status $st)" [ "$st" = 0 ]

# ---- graceful stop with an open stream, restart keeps data ----
stop_server
start_server
check "data survives restart" count_is 8 12
finish
