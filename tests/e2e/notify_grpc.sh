#!/usr/bin/env bash
# notify_grpc.sh - the notification service's gRPC API (notice.Producer on
# grpc.server_addr) called by a foreign client: Python grpcio with stubs
# generated from apps/notify/grpc/notice.proto at test time
# (notify_grpc_client.py checks every RPC, bad input included, and what got
# stored through the HTTP API); auth.mode tokens applies to it as to HTTP
# (notify_grpc_auth.py); grpc.enabled=false serves HTTP only.
source "$(dirname "$0")/lib/notify.bash"

start_server
GRPC=$(sed -n 's/^sluice notify: gRPC notice.Producer on //p' "$WORK/server.out")
check "gRPC listener announced" test -n "$GRPC"
mkdir -p "$WORK/py"
check "python client" /usr/bin/python3 "$SRC_DIR/tests/e2e/notify_grpc_client.py" \
  "$SRC_DIR/apps/notify/grpc" "$WORK/py" "$GRPC" "$URL"
# sluice call with raw protobuf bytes to the gRPC node
PY="import sys; sys.path.insert(0, '$WORK/py'); import notice_pb2 as pb"
/usr/bin/python3 -c "$PY; sys.stdout.buffer.write(pb.NoticeRequest(uid=9, type=1, data='from sluice call').SerializeToString())" >"$WORK/req.bin"
check "sluice call --protobuf" bash -c '"$1" call notice Producer.Notify --protobuf --address "grpc://$2" <"$3/req.bin" >"$3/resp.bin"' _ "$SLUICE" "$GRPC" "$WORK"
ans=$(/usr/bin/python3 -c "$PY; r = pb.ProducerResponse(); r.ParseFromString(open('$WORK/resp.bin', 'rb').read()); print(r.code, r.msg)")
check "sluice call --protobuf answered: $ans" test "$ans" = "10000 success"
stop_server

# auth.mode tokens: the same rules as the HTTP routes, tokens in the metadata
SECRET=grpc-test-secret-of-at-least-32-bytes-long
tok() { SLUICE_AUTH_SECRET=$SECRET "$SLUICE" notify token --config "$SRC_DIR/config/config.yaml" "$@"; }
start_server SLUICE_AUTH_MODE=tokens SLUICE_AUTH_SECRET="$SECRET"
GRPC=$(sed -n 's/^sluice notify: gRPC notice.Producer on //p' "$WORK/server.out")
check "auth rules on gRPC" /usr/bin/python3 "$SRC_DIR/tests/e2e/notify_grpc_auth.py" \
  "$SRC_DIR/apps/notify/grpc" "$WORK/py" "$GRPC" "$(tok --uid 42)" "$(tok --producer)" "$(tok --admin)"
stop_server

start_server SLUICE_GRPC_ENABLED=false
check "no gRPC listener when disabled" bash -c "! grep -q gRPC '$WORK/server.out'"
CASE="http still serves"; call GET "/api/user/info?uid=1"
expect 200 10000
stop_server
finish
