#!/usr/bin/env bash
# notify_reload.sh - hot reload of the config file (issue 18, the service on
# sl_config): while `sluice notify serve` runs, editing its config file
# changes web.max_body (a request limit, HTTP and gRPC), consumers.max_failures (when a
# failing message is parked) and log.level at once, each reload logged with
# what changed; a key that cannot change at run time is logged as waiting
# for a restart; a broken edit (a bad value, YAML that does not parse, a file
# emptied or cut short) is refused with a clear log line and the running
# values stay; the watch keeps working after a refused edit.
source "$(dirname "$0")/lib/notify.bash"

export NOTIFY_CONFIG=$WORK/config.yaml
cp "$SRC_DIR/config/config.yaml" "$NOTIFY_CONFIG"
LOG=$WORK/logs/main.log
BIG=$(head -c 3000 /dev/zero | tr '\0' 'x')

# edit SED...: change the config file the way editors do (write a new file, rename it over)
edit() { local e; for e in "$@"; do sed -i -e "$e" "$NOTIFY_CONFIG"; done; }
logged() { grep -qF -- "$1" "$LOG"; }
post_big() { call POST /api/msg/product -d "uid=7&type=1&data=${BIG:0:400}&pad=$BIG"; }
# grpc_big: the same over gRPC, padded with an unknown field; prints the
# answer's "code msg" or the failed call's "STATUS details"
grpc_big() {
  /usr/bin/python3 - "$GRPC" "$BIG" <<'PY'
import sys, grpc
addr, big = sys.argv[1], sys.argv[2].encode()
field = lambda n, b: bytes([n << 3 | 2, len(b) & 0x7f | 0x80, len(b) >> 7]) + b  # len < 16 KiB
def varint(b, i):
    v = s = 0
    while True:
        v, i, s = v | (b[i] & 0x7f) << s, i + 1, s + 7
        if not b[i - 1] & 0x80:
            return v, i
try:
    r = grpc.insecure_channel(addr).unary_unary('/notice.Producer/Notify')(
        b'\x08\x07\x10\x01' + field(3, big[:400]) + field(15, big), timeout=10)
    code, i = varint(r, 1)        # ProducerResponse: 1 code, 2 msg
    n, i = varint(r, i + 1)
    print(code, r[i:i + n].decode())
except grpc.RpcError as e:
    print(e.code().name, e.details())
PY
}

start_server SLUICE_NOTIFY_FAULT_UID=99
check "the watch is on" wait_until 10 logged "config $NOTIFY_CONFIG: watching for changes"
post_big; CASE="3 kB body under the shipped max_body"; expect 200 10000
GRPC=$(sed -n 's/^sluice notify: gRPC notice.Producer on //p' "$WORK/server.out")
ans=$(grpc_big); check "gRPC: 3 kB under the shipped max_body ($ans)" test "$ans" = "10000 success"

# ---- a limit: web.max_body 65536 -> 2048 applies at once ----
edit 's/^  max_body: 65536 /  max_body: 2048 /'
check "reload logged with the change" wait_until 10 logged "config reloaded from $NOTIFY_CONFIG: web.max_body 65536 -> 2048"
post_big; CASE="3 kB body over the reloaded max_body"; expect 413 10001 "over 2048 bytes"
ans=$(grpc_big); check "gRPC: 3 kB over the reloaded max_body ($ans)" \
  test "$ans" = "RESOURCE_EXHAUSTED request body over 2048 bytes"

# ---- a retry setting: consumers.max_failures 5 -> 2 parks sooner ----
edit 's/^  max_failures: 5 /  max_failures: 2 /'
check "max_failures reload logged" wait_until 10 logged "consumers.max_failures 5 -> 2"
call POST /api/msg/product -d 'uid=99&type=1&data=always fails'; FID=$(jget data.id)
check "the failing notice is parked after 2 failures, not 5" \
  wait_until 20 logged "notify message $FID parked after 2 failures"
call GET /api/admin/failed
check "the admin list uses the reloaded threshold" [ "$(jq '.data.list | length' <<<"$BODY")" = 1 ]

# ---- log.level info -> warn: info lines stop ----
edit 's/^  level: info /  level: warn /'
check "log.level reload logged" wait_until 10 logged "log.level info -> warn"
n_info=$(grep -c '"level":"info"' "$LOG")
call POST /api/admin/failed/retry -d 'all=true'      # logs "requeued failed ..." at info
check "the requeued notice is parked again" wait_until 20 bash -c "[ \$(grep -c 'notify message $FID parked after' '$LOG') -ge 2 ]"
check "no info line after log.level warn" [ "$(grep -c '"level":"info"' "$LOG")" = "$n_info" ]
edit 's/^  level: warn /  level: info /'
check "log.level back to info" wait_until 10 logged "log.level warn -> info"

# ---- a key fixed at start: logged as waiting for a restart ----
NP=$(nproc) # threads: 0 runs one loop per usable CPU
edit "s/^  threads: 0 /  threads: $((NP + 1)) /"
check "web.threads waits for a restart" wait_until 10 logged "web.threads changed ($NP -> $((NP + 1))): takes effect at the next restart"

# ---- broken edits are refused; the running values stay ----
edit 's/^  max_body: 2048 /  max_body: lots /'
check "a bad value is refused, naming it" \
  wait_until 10 logged "reload refused, the running values stay: $NOTIFY_CONFIG:"
check "the refusal names the key and the problem" grep -q "web.max_body: expected an integer in 1024..67108864, got 'lots'" "$LOG"
post_big; CASE="max_body 2048 still in force"; expect 413 10001 "over 2048 bytes"
printf 'web:\n  max_body: [65536\n' >>"$NOTIFY_CONFIG.new"; cat "$NOTIFY_CONFIG" "$NOTIFY_CONFIG.new" >"$NOTIFY_CONFIG.tmp"
mv "$NOTIFY_CONFIG.tmp" "$NOTIFY_CONFIG"; rm -f "$NOTIFY_CONFIG.new"
check "YAML that does not parse is refused by sl_config" wait_until 10 logged "reload failed, keeping the previous values"
post_big; CASE="max_body 2048 still in force after a syntax error"; expect 413 10001

# an emptied file (an editor's truncate before its write) would put every key
# back to its default: refused, as is a file cut before its last sections
: >"$NOTIFY_CONFIG"
check "an emptied file is refused" wait_until 10 logged "section 'web' is gone"
post_big; CASE="max_body 2048 still in force after the file was emptied"; expect 413 10001
sed -n '1,/^log:/p' "$SRC_DIR/config/config.yaml" | head -n -1 >"$NOTIFY_CONFIG.tmp"; mv "$NOTIFY_CONFIG.tmp" "$NOTIFY_CONFIG"
check "a file cut before its last sections is refused" wait_until 10 logged "section 'log' is gone"

# ---- a good file again: the watch still works ----
cp "$SRC_DIR/config/config.yaml" "$NOTIFY_CONFIG.tmp"; mv "$NOTIFY_CONFIG.tmp" "$NOTIFY_CONFIG"
check "the good file reloads" wait_until 10 logged "web.max_body 2048 -> 65536"
post_big; CASE="3 kB body fits again"; expect 200 10000
ans=$(grpc_big); check "gRPC: 3 kB fits again ($ans)" test "$ans" = "10000 success"

kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; st=$?; SERVER_PID=""
check "server exits cleanly (status $st)" [ "$st" = 0 ]
finish
