#!/usr/bin/env bash
# run_example.sh SERVER CLIENT SLUICE_CLI - go-micro's getting-started path, end to end:
# the helloworld server registers in an sqlite:// registry, the seed's own
# curl command gets {"message":"Hello alice"}, the client finds the service
# through the registry, bad requests get go-micro errors, a streaming
# endpoint streams, and SIGTERM stops it cleanly and deregisters the node.
set -euo pipefail
server=$1 client=$2 cli=$3
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
reg="sqlite://$tmp/registry.db"
fail() { echo "FAIL: $*" >&2; [ -f "$tmp/server.log" ] && tail -20 "$tmp/server.log" >&2; exit 1; }

start() { # start PORT: 0 when listening
  "$server" --address ":$1" --registry "$reg" >"$tmp/server.out" 2>"$tmp/server.log" &
  pid=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$tmp/server.out" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { pid=""; return 1; }
    sleep 0.1
  done
  return 1
}
port=8080
if ! start $port; then # 8080 is taken on this machine: any free port, same command
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  start "$port" || fail "server did not start"
fi

# The seed's command, verbatim but for the port when 8080 was taken.
out=$(curl -sS -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Greeting' \
     -d '{"name": "alice"}' http://localhost:$port)
[ "$out" = '{"message":"Hello alice"}' ] || fail "seed curl answered '$out'"

# The path form of the endpoint.
out=$(curl -sS -XPOST -H 'Content-Type: application/json' -d '{"name":"bob"}' \
     http://localhost:$port/Helloworld/Greeting)
[ "$out" = '{"message":"Hello bob"}' ] || fail "path form answered '$out'"

# The client resolves helloworld through the registry.
out=$("$client" --registry "$reg" carol) || fail "client failed"
[ "$out" = "Hello carol" ] || fail "client printed '$out'"

# go-micro errors: status and JSON body.
check() { # check STATUS CODE-IN-BODY CURL-ARGS...
  local want=$1; shift
  local body status
  body=$(curl -sS -o - -w '\n%{http_code}' "$@")
  status=${body##*$'\n'}
  body=${body%$'\n'*}
  [ "$status" = "$want" ] || fail "$* -> status $status (want $want): $body"
  python3 - "$body" "$want" <<'PY' || fail "error body '$body' is not go-micro's"
import json, sys
e = json.loads(sys.argv[1])
assert e["code"] == int(sys.argv[2]) and e["id"] == "helloworld" and e["detail"] and e["status"], e
PY
}
u=http://localhost:$port
check 404 -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Nope' -d '{}' $u
check 400 -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Greeting' -d '{"name":' $u
check 415 -XPOST -H 'Content-Type: text/plain' -H 'Micro-Endpoint: Helloworld.Greeting' -d 'hi' $u
check 400 -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Greeting' -d '{"nom":"x"}' $u
check 400 -XPOST -H 'Content-Type: application/json' -d '{}' $u
check 405 -XGET $u/Helloworld/Greeting
head -c 5000000 /dev/zero | tr '\0' 'a' >"$tmp/big"
check 413 -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Greeting' --data-binary @"$tmp/big" $u

# Built-ins.
out=$(curl -sS -XPOST -H 'Micro-Endpoint: Debug.Health' $u)
[ "$out" = '{"status":"ok"}' ] || fail "Debug.Health answered '$out'"
out=$(curl -sS -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Debug.Stats' -d '{}' $u)
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["service"]=="helloworld" and s["endpoints"]["Helloworld.Greeting"]["calls"]>=3, s' "$out" ||
  fail "Debug.Stats answered '$out'"
metrics=$(curl -sS $u/metrics) # (not piped into grep -q: with pipefail, curl's EPIPE would fail it)
grep -q 'sluice_service_calls_total{service="helloworld",endpoint="Helloworld.Greeting"}' <<<"$metrics" ||
  fail "/metrics lacks the calls counter"

# Server streaming: three messages, one per line.
out=$(curl -sS -N -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Stream' \
     -d '{"name":"dan","count":3}' $u)
[ "$(printf '%s\n' "$out" | wc -l)" = 3 ] || fail "stream gave '$out'"
[ "$(printf '%s\n' "$out" | tail -1)" = '{"message":"Hello dan","n":2}' ] || fail "stream ended with '$out'"
out=$(curl -sS -N -XPOST -H 'Accept: text/event-stream' -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Stream' \
     -d '{"name":"eve","count":2}' $u)
[ "$(printf '%s\n' "$out" | grep -c '^data: {"message":"Hello eve"')" = 2 ] || fail "SSE stream gave '$out'"

# The CLI: services, describe, call (and its errors and exit codes).
"$cli" services --registry "$reg" | grep -q '^helloworld	latest	1 node$' || fail "sluice services"
"$cli" describe helloworld --registry "$reg" | python3 -c '
import json, sys
d = json.load(sys.stdin)[0]
assert {e["name"] for e in d["endpoints"]} >= {"Helloworld.Greeting", "Helloworld.Stream", "Debug.Health"}, d
assert d["nodes"][0]["metadata"]["transport"] == "http", d' || fail "sluice describe"
out=$("$cli" call helloworld Helloworld.Greeting '{"name":"alice"}' --registry "$reg" --timeout 5000 --metadata k=v)
[ "$out" = '{"message":"Hello alice"}' ] || fail "sluice call printed '$out'"
set +e
"$cli" call helloworld Helloworld.Nope '{}' --registry "$reg" 2>"$tmp/err"; st=$?
grep -q '"code":404' "$tmp/err" && [ $st = 1 ] || fail "sluice call to an unknown endpoint: exit $st"
"$cli" call nosuchservice X.Y '{}' --registry "$reg" 2>"$tmp/err"; st=$?
grep -q 'no node' "$tmp/err" && [ $st = 1 ] || fail "sluice call to an unknown service: exit $st"
"$cli" call helloworld Helloworld.Greeting '{"name":' --registry "$reg" 2>"$tmp/err"; st=$?
grep -q 'not valid JSON' "$tmp/err" && [ $st = 2 ] || fail "sluice call with bad JSON: exit $st"
"$cli" call helloworld 2>/dev/null; [ $? = 2 ] || fail "sluice call without an endpoint"
"$cli" describe nosuchservice --registry "$reg" 2>/dev/null; [ $? = 1 ] || fail "describe unknown"
set -e

# SIGTERM: a clean stop that deregisters the node.
kill -TERM "$pid"
wait "$pid" || fail "server exited with $?"
pid=""
n=$(sqlite3 "$tmp/registry.db" "SELECT count(*) FROM sl_registry_nodes WHERE service='helloworld'")
[ "$n" = 0 ] || fail "node still registered after a clean stop"
"$client" --registry "$reg" x >/dev/null 2>&1 && fail "client succeeded with no server"
echo "helloworld example: ok (port $port)"
