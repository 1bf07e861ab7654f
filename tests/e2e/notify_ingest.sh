#!/usr/bin/env bash
# notify_ingest.sh - the group commit of the HTTP event loops (issue 20,
# section 4; apps/notify/http/loop.c, publish.c): every POST that arrives
# while a loop commits joins that loop's next commit, and each is answered
# only after it.
#  - 32 connections post at once, twice, while each commit takes 300 ms
#    (test hook SLUICE_NOTIFY_FAULT_COMMIT_DELAY_MS): every POST is answered
#    10000 with its own id, every notice is stored, and the loops needed at
#    most half as many commits as notices (sluice_queue_publish_commits_total
#    against sluice_queue_published_total): requests were committed together.
#  - Clients that send a POST and reset the connection at once (while it may
#    wait in a batch) leave the server serving.
#  - /metrics passes `promtool check metrics` (Debian prometheus).
source "$(dirname "$0")/lib/notify.bash"
CONNS=32
USERS=8
BASE=700

start_server SLUICE_NOTIFY_FAULT_COMMIT_DELAY_MS=300
HP=${URL#http://}; HP=${HP%%/*}

# client HOST:PORT CONNS ROUNDS BASE USERS RESETS: prints each answer's body
# on a line; then sends RESETS posts that are reset right after sending.
cat > "$WORK/client.py" <<'PY'
import socket, struct, sys, time
hp, conns, rounds, base, users, resets = sys.argv[1], *map(int, sys.argv[2:7])
host, port = hp.rsplit(":", 1)
def post(tag, uid):
    body = "uid=%d&type=1&data=ingest-%s" % (uid, tag)
    return ("POST /api/msg/product HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode()
def answer(f):
    length = None
    status = f.readline()
    if not status:
        raise SystemExit("connection closed before an answer")
    while True:
        line = f.readline().strip()
        if not line:
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    return f.read(length).decode()
socks = [socket.create_connection((host, int(port)), timeout=60) for _ in range(conns)]
files = [s.makefile("rb") for s in socks]
for r in range(rounds):
    for i, s in enumerate(socks):   # every request is sent before any answer is read
        s.sendall(post("r%d-c%d" % (r, i), base + (i + r) % users))
    for f in files:
        print(answer(f), flush=True)
for i in range(resets):
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(post("reset-%d" % i, base + users))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
PY
/usr/bin/python3 "$WORK/client.py" "$HP" "$CONNS" 2 "$BASE" "$USERS" 4 > "$WORK/answers"
check "client ran" [ $? = 0 ]
TOTAL=$((2 * CONNS))
check "every POST answered 10000" [ "$(grep -c '"code":10000' "$WORK/answers")" = "$TOTAL" ]
check "every answer has its own id" [ "$(jq -r .data.id "$WORK/answers" | sort -u | grep -c .)" = "$TOTAL" ]

counts_add_up() {
  local u sum=0 n
  for u in $(seq "$BASE" $((BASE + USERS - 1))); do
    call GET "/api/user/info?uid=$u"; n=$(jget data.notification_count)
    [ "$n" = null ] && n=0; sum=$((sum + n))
  done
  [ "$sum" = "$TOTAL" ]
}
check "every answered notice stored" wait_until 60 counts_add_up

CASE="served after the resets"; call POST /api/msg/product -d "uid=$((BASE + USERS + 1))&type=1&data=after"
expect 200 10000

M=$(curl -s -m 10 "${URL%/}/metrics")
metric() { sed -nE "s/^$1\{topic=\"notify\"\} ([0-9]+)$/\1/p" <<<"$M"; }
PUB=$(metric sluice_queue_published_total); COMMITS=$(metric sluice_queue_publish_commits_total)
check "metrics name published and commits ($PUB, $COMMITS)" [ -n "$PUB" ] && [ -n "$COMMITS" ] && [ "$COMMITS" -gt 0 ]
check "requests shared commits: $PUB notices in $COMMITS commits" [ "$((2 * COMMITS))" -le "$PUB" ]
if command -v promtool >/dev/null; then
  check "promtool check metrics" promtool check metrics <<<"$M"
else
  bad "promtool not found (scripts/deps.sh installs prometheus)"
fi
stop_server
finish
