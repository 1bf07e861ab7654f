#!/usr/bin/env bash
# notify_auth.sh - per-user access tokens (issue 20 part 2): with
# auth.mode tokens (SLUICE_AUTH_MODE like any key) every API route answers
# 401 without a valid token (missing, garbage, another secret, tampered,
# alg=none, expired, a refresh-less crafted one is accepted only when
# well signed) and 403 for the wrong kind or the wrong user, both in the
# JSON envelope with code 10001; user tokens reach only their own uid,
# producer tokens post (and mark read) for anyone, admin tokens reach the
# admin routes (X-Admin-Token still works when web.admin_token is set);
# the SSE stream takes ?token=. `sluice notify token` issues the tokens.
# With auth off (the shipped config) the service logs one warning at start.
source "$(dirname "$0")/lib/notify.bash"

SECRET="e2e-secret-$RANDOM-$RANDOM-$RANDOM-0123456789abcdef"
CFG="$SRC_DIR/config/config.yaml"
tok() { SLUICE_AUTH_SECRET=$SECRET "$SLUICE" notify token --config "$CFG" "$@"; }
has() { [[ $1 == *"$2"* ]]; }                  # has TEXT SUBSTRING
st_is() { [ "$1" = "$2" ]; }
count_is_as() { # count_is_as UID N TOKEN: notification_count of UID is N (asked with TOKEN)
  call GET "/api/user/info?uid=$1" -H "Authorization: Bearer $3"; [ "$(jget data.notification_count)" = "$2" ]
}

# ---- sluice notify token ----
T42=$(tok --uid 42); check "user token issued" matches "$T42" '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$'
T43=$(tok --uid 43)
TPROD=$(tok --producer)
TADMIN=$(tok --admin --expiry 1h)
TOTHER=$(SLUICE_AUTH_SECRET=another-secret-of-at-least-32-bytes-xyz "$SLUICE" notify token --config "$CFG" --uid 42)
for bad in "" "--uid -1" "--producer --expiry soon"; do
  # shellcheck disable=SC2086
  out=$(tok $bad 2>&1); st=$?
  check "notify token $bad is a usage error (status $st)" [ "$st" = 2 ]
done
out=$(env -u SLUICE_AUTH_SECRET "$SLUICE" notify token --config "$CFG" --uid 1 2>&1); st=$?
check "notify token without a secret fails (status $st)" st_is "$st" 1
check "notify token without a secret says why: $out" has "$out" auth.secret

# Crafted tokens: HS256 by hand with openssl (to set exp), and alg=none.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
craft() { # craft ALG_JSON PAYLOAD_JSON: header.payload.signature (HS256 with $SECRET)
  local h p s
  h=$(printf '%s' "$1" | b64url); p=$(printf '%s' "$2" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}
NOW=$(date +%s)
claims() { printf '{"sub":"42","typ":"access","type":"user","iss":"sluice","scopes":["notice:read"],"metadata":{},"iat":%d,"exp":%d}' "$1" "$2"; }
TCRAFT=$(craft '{"alg":"HS256","typ":"JWT"}' "$(claims "$NOW" $((NOW + 600)))")
TEXPIRED=$(craft '{"alg":"HS256","typ":"JWT"}' "$(claims $((NOW - 7200)) $((NOW - 3600)))")
TNONE="$(printf '{"alg":"none","typ":"JWT"}' | b64url).$(claims "$NOW" $((NOW + 600)) | b64url)."
TTAMPER="${T42%%.*}.$(claims "$NOW" $((NOW + 600)) | sed 's/"42"/"43"/' | b64url).${T42##*.}"

printf '%s\n' "$SECRET" >"$WORK/jwt.secret"
TFILE=$(env SLUICE_AUTH_SECRET_FILE="$WORK/jwt.secret" "$SLUICE" notify token --config "$CFG" --uid 42)

# ---- serve with tokens ----
start_server SLUICE_AUTH_MODE=tokens SLUICE_AUTH_SECRET="$SECRET" SLUICE_WEB_ADMIN_TOKEN=legacy-admin
H() { echo "Authorization: Bearer $1"; }

# req METHOD PATH TOKEN|- WANT_STATUS [curl args]: one call, checks status and envelope code.
req() {
  local m=$1 p=$2 t=$3 want=$4; shift 4
  if [ "$t" = - ]; then call "$m" "$p" "$@"; else call "$m" "$p" -H "$(H "$t")" "$@"; fi
  local code=10001; [ "$want" = 200 ] && code=10000
  CASE="$m $p as ${TN:-?}"; expect "$want" "$code"
}

# product: producer or admin only
TN=none;     req POST /api/msg/product - 401 -d 'uid=42&type=1&data=x'
check "401 says a token is required" matches "$BODY" 'token is required'
TN=garbage;  req POST /api/msg/product not-a-token 401 -d 'uid=42&type=1&data=x'
TN=user;     req POST /api/msg/product "$T42" 403 -d 'uid=42&type=1&data=x'
TN=producer; req POST /api/msg/product "$TPROD" 200 -d 'uid=42&type=1&data=for 42'
check "product answers the original's fields" [ "$(jq -c '.data | [.uid, .type, .data]' <<<"$BODY")" = '[42,1,"for 42"]' ]
TN=producer; req POST /api/msg/product "$TPROD" 200 -d 'uid=43&type=1&data=for 43'
TN=admin;    req POST /api/msg/product "$TADMIN" 200 -d 'uid=42&type=2&data=from admin'
TN=basic;    call POST /api/msg/product -H 'Authorization: Basic dXNlcjpwdw==' -d 'uid=42&type=1&data=x'
CASE="Basic auth"; expect 401 10001 Bearer
TN=query;    req POST "/api/msg/product?token=$TPROD" - 401 -d 'uid=42&type=1&data=x'
check "?token= outside the stream is refused, saying why" matches "$BODY" 'stream only'

# refused tokens everywhere: another secret, tampered, alg=none, expired
for pair in "other:$TOTHER" "tampered:$TTAMPER" "none:$TNONE" "expired:$TEXPIRED"; do
  TN=${pair%%:*}; t=${pair#*:}
  req GET '/api/msg/list?uid=42' "$t" 401
  req POST /api/msg/read "$t" 401 -d 'uid=42&type=1'
done
TN=expired; req GET '/api/user/info?uid=42' "$TEXPIRED" 401
call GET '/api/msg/list?uid=42' -H "$(H "$TNONE")"
check "alg=none is named in the refusal: $BODY" has "$BODY" "'none'"
TN=crafted-valid; req GET '/api/msg/list?uid=42' "$TCRAFT" 200   # the crafting itself is right
TN=secret-file;   req GET '/api/msg/list?uid=42' "$TFILE" 200    # auth.secret_file signs alike

# user routes: own uid only (admin any), producer none
check "notices stored" wait_until 20 count_is_as 42 2 "$TADMIN"
for r in '/api/msg/list?uid=42' '/api/user/info?uid=42'; do
  TN=none;     req GET "$r" - 401
  TN=user42;   req GET "$r" "$T42" 200
  TN=user43;   req GET "$r" "$T43" 403
  TN=producer; req GET "$r" "$TPROD" 403
  TN=admin;    req GET "$r" "$TADMIN" 200
done
call GET '/api/msg/list?uid=42' -H "$(H "$T43")"
check "403 names the uid: $BODY" has "$BODY" 'may not access uid 42'
call GET '/api/msg/list?uid=42' -H "$(H "$T42")"
check "user 42 sees its 2 notices" [ "$(jlen data.list)" = 2 ]

# mark read: own user, producer or admin
TN=none;     req POST /api/msg/read - 401 -d 'uid=42&type=1'
TN=user43;   req POST /api/msg/read "$T43" 403 -d 'uid=42&type=1'
TN=user42;   req POST /api/msg/read "$T42" 200 -d 'uid=42&type=1'
check "user 42 read its type-1 notice" wait_until 20 count_is_as 42 1 "$T42"
TN=producer; req POST /api/msg/read "$TPROD" 200 -d 'uid=42&type=2'
check "the producer marked type 2 read" wait_until 20 count_is_as 42 0 "$T42"
TN=admin;    req POST /api/msg/read "$TADMIN" 200 -H 'Content-Type: application/json' -d '{"uid":43,"all":true}'

# the event stream: Bearer or ?token=
stream() { # stream QUERY [curl args]: STATUS and BODY of a 1-second look at the stream
  local out
  out=$(curl -s -N -m 1 -w '\n%{http_code}' "$@" "${URL%/}/api/msg/stream?$1" 2>/dev/null)
  STATUS=${out##*$'\n'}; BODY=${out%$'\n'*}
}
stream 'uid=42' -H "$(H "$T42")"
check "stream with a Bearer token: 200 ($STATUS)" st_is "$STATUS" 200
check "stream with a Bearer token: hello" has "$BODY" 'event: hello'
stream "uid=42&token=$T42"
check "stream with ?token=: 200 ($STATUS)" st_is "$STATUS" 200
check "stream with ?token=: hello" has "$BODY" 'event: hello'
stream 'uid=42'
CASE="stream without a token"; expect 401 10001
stream "uid=42&token=$T43"
CASE="stream of another user"; expect 403 10001
stream "uid=42&token=$TEXPIRED"
CASE="stream with an expired token"; expect 401 10001

# admin routes: scope admin, or the configured X-Admin-Token
for r in /api/admin/failed; do
  TN=none;     req GET "$r" - 401
  TN=user;     req GET "$r" "$T42" 403
  TN=producer; req GET "$r" "$TPROD" 403
  TN=admin;    req GET "$r" "$TADMIN" 200
  TN=x-admin-token; call GET "$r" -H 'X-Admin-Token: legacy-admin'; CASE="$r X-Admin-Token"; expect 200 10000
  TN=wrong-x-admin-token; call GET "$r" -H 'X-Admin-Token: nope'; CASE="$r wrong X-Admin-Token"; expect 401 10001
done
TN=user;  req POST /api/admin/failed/retry "$T42" 403 -d 'all=true'
TN=admin; req POST /api/admin/failed/retry "$TADMIN" 200 -d 'all=true'

# public routes stay public; health details for admins only
call GET /healthz; CASE="healthz public"; expect 200 10000
check "healthz hides URLs from the public" [ "$(jget data.queue)" = null ]
call GET /healthz -H "$(H "$TADMIN")"
check "healthz shows URLs to admins" [ "$(jget data.queue)" != null ]
call GET /metrics; check "metrics public" [ "$STATUS" = 200 ]
call GET /; check "the inbox page is public" st_is "$STATUS" 200
check "the inbox page has the token field" has "$BODY" 'id="token"'
check "the inbox page keeps the token in sessionStorage" has "$BODY" 'sessionStorage.setItem("sluice.token"'
hdrs=$(curl -s -i -X OPTIONS -H 'Origin: http://elsewhere.example' "${URL%/}/api/msg/list")
check "CORS allows the Authorization header" has "${hdrs,,}" 'access-control-allow-headers: authorization'

LOG=$WORK/logs/main.log
check "tokens mode logs no open-access warning" st_is "$(grep -c 'auth.mode is off' "$LOG")" 0
stop_checked() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; local st=$?; SERVER_PID=""; > "$WORK/server.out"
  check "server exits cleanly (status $st)" st_is "$st" 0; }
stop_checked

# ---- auth off (the shipped config): one warning at start, anyone may call ----
start_server
call GET '/api/msg/list?uid=42'; CASE="auth off: list without a token"; expect 200 10000
check "auth off: exactly one warning at start" [ "$(grep -c 'auth.mode is off: any client may read' "$LOG")" = 1 ]
check "the warning is a warning" grep -q '"level":"warn".*auth.mode is off' "$LOG"
stop_checked

# ---- bad auth config is refused at load ----
out=$(SLUICE_AUTH_MODE=maybe "$SLUICE" notify config --config "$CFG" 2>&1); st=$?
check "auth.mode maybe refused (status $st)" st_is "$st" 2
check "auth.mode maybe: the error says so: $out" has "$out" "auth.mode must be off or tokens, got 'maybe'"
out=$(SLUICE_AUTH_MODE=tokens "$SLUICE" notify config --config "$CFG" 2>&1); st=$?
check "tokens without a secret refused (status $st)" st_is "$st" 2
check "tokens without a secret: the error says so: $out" has "$out" 'neither auth.secret nor auth.secret_file'
out=$(SLUICE_AUTH_SECRET=$SECRET "$SLUICE" notify config --config "$CFG")
check "notify config hides the secret" has "$out" 'secret: "***"'
check "notify config does not print the secret" st_is "$(grep -cF -- "$SECRET" <<<"$out")" 0
finish
