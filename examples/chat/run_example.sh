#!/usr/bin/env bash
# run_example.sh SERVER CLIENT - the chat example end to end: a server and
# three members that join, wait for each other, send 5 messages each, and
# must each see all 15 (their own included); a member that leaves is
# announced; a nameless join is refused; the server stops cleanly.
set -uo pipefail
server=$1 client=$2
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -20 "$tmp"/*.err "$tmp/server.log" 2>/dev/null >&2; exit 1; }

"$server" --grpc 127.0.0.1:0 >"$tmp/server.out" 2>"$tmp/server.log" &
pid=$!
for _ in $(seq 100); do grep -q "^chat on" "$tmp/server.out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/^chat on //p' "$tmp/server.out")
[ -n "$addr" ] || fail "server did not start"

pids=()
for n in alice bob carol; do
  "$client" --address "$addr" --name "$n" --members 3 --send 5 >"$tmp/$n.out" 2>"$tmp/$n.err" &
  pids+=($!)
done
for i in 0 1 2; do wait "${pids[$i]}" || fail "member $i did not see every message"; done
for n in alice bob carol; do
  for m in alice bob carol; do
    c=$(grep -c "^$m: message [0-4]$" "$tmp/$n.out")
    [ "$c" = 5 ] || fail "$n saw $c messages of $m, want 5"
  done
  grep -q "members)$" "$tmp/$n.out" || fail "$n saw no join announcement"
done
# order per sender is kept
for n in alice bob carol; do
  [ "$(grep '^bob: ' "$tmp/$n.out" | sed 's/.* //' | tr -d '\n')" = "01234" ] || fail "$n: bob's messages out of order"
done
"$client" --address "$addr" --name "" --members 1 --send 1 >/dev/null 2>"$tmp/bad.err" && fail "an empty name was accepted"
grep -q "name" "$tmp/bad.err" || fail "the refusal does not say why: $(cat "$tmp/bad.err")"
kill -TERM "$pid"
wait "$pid" || fail "server exit status $?"
pid=""
echo "example_chat: ok"
