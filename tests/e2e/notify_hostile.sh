#!/usr/bin/env bash
# notify_hostile.sh - black-box tests of `sluice notify serve` against what a
# careless or hostile client sends (issue 22): nothing accepted may be lost
# or stored other than it was sent.
#  - Idempotency-Keys sharing a long prefix must not collapse into one id
#    (the id was cut to the store's 127-byte order_sn): too long -> 400.
#  - NUL in form, multipart or query values (before%00after) -> 400, never
#    stored as "before".
#  - application/jsonp is not JSON.
#  - admin routes: CORS and browser calls only for web.admin_origins.
#  - headers past web.conn_memory: 431, nothing stored; a larger setting
#    takes them.
source "$(dirname "$0")/lib/notify.bash"

start_server SLUICE_WEB_ADMIN_ORIGINS='https://ops.example, http://127.0.0.1:9000'

# ---- idempotency keys that would not fit the store's id ----
P=$(printf 'p%.0s' $(seq 1 99))
CASE="long key A"; call POST /api/msg/product -H "Idempotency-Key: ${P}A" -d 'uid=31&type=1&data=first'
expect 200 10000
CASE="long key B"; call POST /api/msg/product -H "Idempotency-Key: ${P}B" -d 'uid=31&type=1&data=second'
expect 200 10000
check "two 100-character keys store two notices" wait_until 10 count_is 31 2
CASE="key over the limit"; call POST /api/msg/product -H "Idempotency-Key: ${P}AB" -d 'uid=31&type=1&data=third'
expect 400 10001 Idempotency-Key
CASE="key over the limit on read"; call POST /api/msg/read -H "Idempotency-Key: ${P}AB" -d 'uid=31&all=1'
expect 400 10001 Idempotency-Key
call POST /api/msg/product -d 'uid=31&type=1&data=marker'
check "refused key stored nothing" wait_until 10 count_is 31 3
call GET '/api/msg/list?uid=31&size=100'
check "both long-key notices listed" [ "$(grep -oE '"(first|second)"' <<<"$BODY" | sort -u | wc -l)" = 2 ]

# ---- NUL bytes ----
CASE="NUL in form data"; call POST /api/msg/product -d 'uid=32&type=1&data=before%00after'
expect 400 10001 NUL
CASE="NUL in query"; call POST '/api/msg/product?uid=32&type=1&data=before%00after'
expect 400 10001 NUL
CASE="NUL in multipart"
printf 'before\0after' > "$WORK/nul.bin"
call POST /api/msg/product -F uid=32 -F type=1 -F "data=<$WORK/nul.bin"
expect 400 10001 NUL
CASE="NUL in uid"; call POST /api/msg/product -d 'uid=3%002&type=1&data=x'
expect 400 10001
call POST /api/msg/product -d 'uid=32&type=1&data=marker'
check "only the marker stored for uid 32" wait_until 10 count_is 32 1
call GET '/api/msg/list?uid=32&size=100'
check "no cut-short notice" [ "$(grep -c '"before"' <<<"$BODY")" = 0 ]

# ---- headers larger than web.conn_memory (16384: ~14 KiB of headers) ----
big_header() { head -c "$1" /dev/zero | tr '\0' a; }
CASE="12 KiB of headers"; call POST /api/msg/product -H "X-Pad: $(big_header 12000)" -d 'uid=36&type=1&data=padded'
expect 200 10000
huge_post() { curl -s -o /dev/null -w '%{http_code}' -H "X-Pad: $(big_header 20000)" -d 'uid=36&type=1&data=huge' "${URL%/}/api/msg/product"; }
check "20 KiB of headers: 431" [ "$(huge_post)" = 431 ]
call POST /api/msg/product -d 'uid=36&type=1&data=marker'
check "the refused request stored nothing" wait_until 10 count_is 36 2

# ---- content types ----
CASE="jsonp is not json"; call POST /api/msg/product -H 'Content-Type: application/jsonp' -d '{"uid":33,"type":1,"data":"x"}'
expect 400 10001 Content-Type
CASE="json with charset"; call POST /api/msg/product -H 'Content-Type: application/json; charset=utf-8' -d '{"uid":33,"type":1,"data":"x"}'
expect 200 10000

# ---- error messages that echo invalid UTF-8 stay JSON (were 500) ----
U=$(printf '1%.0s' $(seq 1 39))
CASE="uid cut inside a multibyte character"; call POST /api/msg/product -d "uid=${U}%e2%82%ac&type=1&data=x"
expect 400 10001 uid
CASE="overlong path"; call GET '/%c0%ae'
expect 404 10001
CASE="invalid UTF-8 path under api"; call GET '/api/msg/%ff%fe'
expect 404 10001
check "answers are valid JSON" jq -e . <<<"$BODY" >/dev/null

# ---- the inbox page cannot be framed and runs only its own code ----
HDRS=$(curl -s -m 10 -D - -o /dev/null "${URL%/}/")
check "inbox page has a CSP" grep -qi "^Content-Security-Policy:.*frame-ancestors 'none'" <<<"$HDRS"
check "inbox page has X-Frame-Options DENY" grep -qi '^X-Frame-Options: DENY' <<<"$HDRS"

# ---- protocol strictness on the raw socket ----
HP=${URL#http://}; HP=${HP%%/*}; HOST=${HP%:*}; PORT=${HP##*:}
raw() { # raw REQUEST: sends it on a new connection, prints the status line
  timeout 10 bash -c 'exec 3<>/dev/tcp/$0/$1 && printf "%b" "$2" >&3 && head -n 1 <&3' "$HOST" "$PORT" "$1" | tr -d '\r'
}
check "HTTP/1.1 with Host is served" matches "$(raw 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')" ' 200 '
check "HTTP/1.1 without Host is 400" matches "$(raw 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n')" ' 400 '
check "conflicting Content-Length is 400" matches "$(raw 'POST /api/msg/product HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\nContent-Length: 5\r\nConnection: close\r\n\r\nuid=34&type=1&data=smuggle')" ' 400 '
call POST /api/msg/product -d 'uid=34&type=1&data=marker'
check "nothing smuggled stored" wait_until 10 count_is 34 1

# ---- CORS on admin routes: configured origins only (a web page open on the
# operator's machine must not drive "loopback is admin") ----
hdrs() { curl -s -m 10 -D - -o /dev/null "$@"; }
H=$(hdrs -H 'Origin: http://evil.example' "${URL%/}/api/admin/failed")
check "admin route from a foreign page: 403" matches "$H" '^HTTP/1.1 403'
check "admin route from a foreign page: no CORS grant" [ -z "$(grep -i '^Access-Control-Allow-Origin' <<<"$H")" ]
CASE="foreign page posts a retry form"
call POST /api/admin/failed/retry -H 'Origin: http://evil.example' -d 'all=true'
expect 403 10001 "admin routes do not answer web pages"
H=$(hdrs -X OPTIONS -H 'Origin: http://evil.example' -H 'Access-Control-Request-Method: POST' "${URL%/}/api/admin/failed/retry")
check "admin preflight from a foreign page: no CORS grant" [ -z "$(grep -i '^Access-Control-Allow-Origin' <<<"$H")" ]
H=$(hdrs -H 'Origin: null' "${URL%/}/api/admin/failed")
check "admin route from Origin null: 403" matches "$H" '^HTTP/1.1 403'
CASE="admin route without Origin (curl, the CLI)"; call GET /api/admin/failed; expect 200 10000
# DNS rebinding: a page whose name now resolves to 127.0.0.1 is its own
# origin and comes from loopback, but names its own host
HP=${URL#http://}; HP=${HP%%/*}; PORT=${HP##*:}
CASE="rebound page retries"
call POST /api/admin/failed/retry -H "Host: evil.example:$PORT" -H "Origin: http://evil.example:$PORT" -d 'all=true'
expect 401 10001 "named as localhost"
H=$(hdrs -H "Host: evil.example:$PORT" "${URL%/}/api/admin/failed")
check "admin route for a foreign Host: 401" matches "$H" '^HTTP/1.1 401'
for h in "localhost:$PORT" "127.0.0.1:$PORT" "[::1]:$PORT" localhost; do
  H=$(hdrs -H "Host: $h" "${URL%/}/api/admin/failed")
  check "admin route for Host $h: 200" matches "$H" '^HTTP/1.1 200'
done
H=$(hdrs -H 'Origin: http://evil.example' "${URL%/}/api/msg/list?uid=1")
check "user routes keep CORS for any page" grep -qi '^Access-Control-Allow-Origin: \*' <<<"$H"
H=$(hdrs -H 'Origin: https://ops.example' "${URL%/}/api/admin/failed")
check "admin route from a configured origin: 200" matches "$H" '^HTTP/1.1 200'
check "the configured origin is granted, not *" grep -qi '^Access-Control-Allow-Origin: https://ops.example' <<<"$H"
check "answers vary by Origin" grep -qi '^Vary: Origin' <<<"$H"
H=$(hdrs -H 'Origin: https://ops.example.evil' "${URL%/}/api/admin/failed")
check "a longer origin is not the configured one" matches "$H" '^HTTP/1.1 403'
SLUICE_WEB_ADMIN_ORIGINS='*' "$SLUICE" notify config --config "$SRC_DIR/config/config.yaml" >"$WORK/star.out" 2>"$WORK/star.err"
check "admin_origins '*' is a configuration error" [ $? -ne 0 ]
check "and says why" grep -q "admin_origins: '\*' is not an origin" "$WORK/star.err"

# ---- per-address connection limit (web.max_conns_per_ip) ----
stop_server
start_server SLUICE_WEB_MAX_CONNS_PER_IP=2 SLUICE_WEB_CONN_MEMORY=32768
check "web.conn_memory 32768 takes 20 KiB of headers" [ "$(huge_post)" = 200 ]
HP=${URL#http://}; HP=${HP%%/*}; HOST=${HP%:*}; PORT=${HP##*:}
exec 5<>"/dev/tcp/$HOST/$PORT" 6<>"/dev/tcp/$HOST/$PORT"
sleep 0.3
check "a third connection from one address is refused" [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "${URL%/}/healthz")" = 000 ]
exec 5>&- 6>&-
# a function, so that every try asks again (a $(curl) in the arguments
# would be asked once, before wait_until starts)
healthz_ok() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "${URL%/}/healthz")" = 200 ]; }
check "served again once the two close" wait_until 10 healthz_ok

# ---- a retry log that cannot be written is not claimed written ----
stop_server
mkdir -p "$WORK/logs" && ln -sf /dev/full "$WORK/logs/notice_retry.log"
start_server SLUICE_NOTIFY_FAULT_PUBLISH=1
CASE="refused, retry log full"; call POST /api/msg/product -d 'uid=35&type=1&data=nowhere'
expect 503 10001 "NOT logged"
check "no claim of a logged request" [ "$(grep -c 'request logged for retry' <<<"$BODY")" = 0 ]
check "main.log says the request was not kept" wait_until 10 grep -q 'retry log could not be written' "$WORK/logs/main.log"
rm -f "$WORK/logs/notice_retry.log"

# ---- passwords in URLs never reach stderr or main.log ----
stop_server
R="$WORK/redact"; mkdir -p "$R"
(cd "$R" && SLUICE_QUEUE_URL='amqp://alice:hunter2@127.0.0.1:1/' timeout 60 "$SLUICE" notify serve \
   --config "$SRC_DIR/config/config.yaml" >"$R/out" 2>"$R/err")
check "unreachable queue refuses to start" [ $? -ne 0 ]
check "stderr names the queue" grep -q 'amqp://alice:\*\*\*@127.0.0.1:1/' "$R/err"
check "no password on stderr or in any log" [ -z "$(grep -rl hunter2 "$R")" ]

# ---- a truncated or foreign queue file stops the start ----
for kind in empty foreign; do
  Q="$WORK/q-$kind"; mkdir -p "$Q/data"
  if [ $kind = empty ]; then : > "$Q/data/queue.db"; else echo 'not a database' > "$Q/data/queue.db"; fi
  (cd "$Q" && timeout 60 "$SLUICE" notify serve --config "$SRC_DIR/config/config.yaml" >"$Q/out" 2>"$Q/err")
  check "$kind queue file: refuses to start" [ $? -ne 0 ]
  check "$kind queue file: says why" grep -q 'queue file.*refusing to start' "$Q/err"
  check "$kind queue file: left as it was" [ "$(wc -c <"$Q/data/queue.db")" = "$([ $kind = empty ] && echo 0 || echo 15)" ]
done

# ---- admin token: exact match only (compared in constant time) ----
stop_server
start_server SLUICE_WEB_ADMIN_TOKEN=s3cret-token
CASE="admin token right"; call GET /api/admin/failed -H 'X-Admin-Token: s3cret-token'
expect 200 10000
for t in s3cret-toke s3cret-token2 S3cret-token x; do
  CASE="admin token '$t'"; call GET /api/admin/failed -H "X-Admin-Token: $t"; expect 401 10001
done
CASE="healthz without the token"; call GET /healthz; expect 200 10000
check "healthz shows no queue URL without auth" [ "$(jget data.queue)" = null ]
check "healthz shows no store URL without auth" [ "$(jget data.store)" = null ]
CASE="healthz with the token"; call GET /healthz -H 'X-Admin-Token: s3cret-token'; expect 200 10000
check "healthz shows the queue URL to admins" matches "$(jget data.queue)" '://'

finish
