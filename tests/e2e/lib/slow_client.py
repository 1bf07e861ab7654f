#!/usr/bin/python3
"""slow_client.py - clients that hold an HTTP connection open the slow way
(for notify_slow_clients.sh). Each mode prints one line "closed_after=<s>
answers=<n>" (closed_after=-1: the server kept the connection for the whole
bound); every wait is bounded.

  slow-headers HOST PORT BOUND   a header line every 0.5 s, never the blank line
  slow-body HOST PORT BOUND      a POST whose body comes one byte per 0.5 s
  no-read HOST PORT N BOUND      N pipelined GET / with a tiny receive buffer,
                                 nothing read until /metrics counts a write
                                 timeout (at most BOUND s), then read all
  chunked HOST PORT CHUNKS       a chunked POST of CHUNKS x 4000 bytes, never ended
  sse-stall HOST PORT UID N BOUND  an event stream of UID with a tiny receive
                                 buffer, never read, then N notices of ~3 KB
                                 events to UID; closed_after counts from the
                                 last post until /metrics shows no stream
"""
import json
import socket
import sys
import threading
import time
import urllib.request


def connect(host, port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((host, port))
    return s


def closed(s):
    """True when the server closed (EOF or reset); False when open (no data)."""
    s.setblocking(False)
    try:
        d = s.recv(65536)
        return d == b"" or d.startswith(b"HTTP/1.1 408")
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def write_timeouts(host, port):
    try:
        with urllib.request.urlopen("http://%s:%d/metrics" % (host, port), timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith('sluice_http_timeouts_total{kind="write"}'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def metric(host, port, name):
    try:
        with urllib.request.urlopen("http://%s:%d/metrics" % (host, port), timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(float(line.split()[1]))
    except OSError:
        pass
    return -1


def post_notices(host, port, uid, n, threads=8):
    body = json.dumps({"uid": uid, "type": 1, "data": "\u0001" * 500}).encode()  # 3 KB escaped

    def run(k):
        for _ in range(k):
            req = urllib.request.Request("http://%s:%d/api/msg/product" % (host, port), data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()

    ts = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def trickle(s, pieces, bound):
    t0 = time.time()
    for p in pieces:
        if time.time() - t0 > bound:
            break
        try:
            s.sendall(p)
        except OSError:
            return time.time() - t0
        time.sleep(0.5)
        if closed(s):
            return time.time() - t0
    return -1


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "slow-headers":
        bound = float(sys.argv[4])
        s = connect(host, port)
        head = [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"] + [b"X-Slow-%d: y\r\n" % i for i in range(1000)]
        print("closed_after=%.1f answers=0" % trickle(s, head, bound))
    elif mode == "slow-body":
        bound = float(sys.argv[4])
        s = connect(host, port)
        s.sendall(b"POST /api/msg/product HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
        print("closed_after=%.1f answers=0" % trickle(s, [b"u"] * 1000, bound))
    elif mode == "no-read":
        n, bound = int(sys.argv[4]), float(sys.argv[5])
        s = connect(host, port, rcvbuf=2048)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * n)
        t0 = time.time()
        while time.time() - t0 < bound and write_timeouts(host, port) < 1:
            time.sleep(0.25)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # now read fast
        data = b""
        t0 = time.time()
        s.settimeout(5)
        try:
            while time.time() - t0 < 20:
                d = s.recv(65536)
                if not d:
                    break
                data += d
                if data.count(b"HTTP/1.1 200") >= n and data.rstrip().endswith(b"</html>"):
                    break
        except OSError:
            pass
        print("closed_after=%s answers=%d" % ("cut" if data.count(b"HTTP/1.1 200") < n else "-1",
                                               data.count(b"HTTP/1.1 200")))
    elif mode == "chunked":
        chunks = int(sys.argv[4])
        s = connect(host, port)
        s.sendall(b"POST /api/msg/product HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                  b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        body = b"uid=41&type=1&data=" + b"z" * 3981
        pieces = [b"%x\r\n" % len(body) + body + b"\r\n"] * chunks
        print("closed_after=%.1f answers=0" % trickle(s, pieces, chunks * 0.5 + 5))
    elif mode == "sse-stall":
        uid, n, bound = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
        s = connect(host, port, rcvbuf=4096)
        s.sendall(b"GET /api/msg/stream?uid=%d HTTP/1.1\r\nHost: x\r\n\r\n" % uid)
        t0 = time.time()
        while metric(host, port, "sluice_sse_clients") < 1 and time.time() - t0 < 10:
            time.sleep(0.1)
        post_notices(host, port, uid, n)
        t0, after = time.time(), -1
        while time.time() - t0 < bound:
            if metric(host, port, "sluice_sse_clients") == 0:
                after = time.time() - t0
                break
            time.sleep(0.25)
        print("closed_after=%.1f answers=0" % after)
        s.close()
    else:
        sys.exit("unknown mode " + mode)


main()
