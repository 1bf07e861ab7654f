#!/usr/bin/python3
"""grpc_helloworld.py SERVER - the gRPC transport of sl_service, called by a
foreign client (Debian's python3-grpcio): helloworld-server --grpc serves
unary and server-streaming calls, errors come back as gRPC statuses, a client
that cancels a stream mid-way leaves the server healthy, oversized messages
are refused, and a stopped server answers UNAVAILABLE."""
import os, signal, subprocess, sys, tempfile, time

import grpc

server = sys.argv[1]
JSON = (('sluice-content-type', 'application/json'),)


def fail(msg):
    print('FAIL:', msg, file=sys.stderr)
    try:
        err.seek(0)
        print(err.read()[-6000:], file=sys.stderr)  # the server's log (sanitizer reports)
    except NameError:
        pass
    sys.exit(1)


def expect_code(fn, code, what):
    try:
        fn()
    except grpc.RpcError as e:
        if e.code() != code:
            fail(f'{what}: got {e.code()} {e.details()!r}, want {code}')
        return e
    fail(f'{what}: succeeded, want {code}')


tmp = tempfile.mkdtemp()
out = open(os.path.join(tmp, 'out'), 'w+')
err = open(os.path.join(tmp, 'err'), 'w+')
p = subprocess.Popen([server, '--address', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--registry', 'none'],
                     stdout=out, stderr=err)
port = None
for _ in range(100):
    out.seek(0)
    for line in out.read().splitlines():
        if line.startswith('helloworld gRPC on '):
            port = line.rsplit(':', 1)[1]
    if port or p.poll() is not None:
        break
    time.sleep(0.1)
if not port:
    p.kill()
    err.seek(0)
    fail('server did not start: ' + err.read())

try:
    ch = grpc.insecure_channel('127.0.0.1:' + port)
    greet = ch.unary_unary('/helloworld.Helloworld/Greeting')
    r = greet.with_call(b'{"name": "alice"}', metadata=JSON + (('micro-trace-id', 't-42'),),
                        timeout=10)
    if r[0] != b'{"message":"Hello alice"}':
        fail(f'unary answered {r[0]!r}')
    trailing = dict(r[1].trailing_metadata())
    if trailing.get('micro-trace-id') != 't-42':
        fail(f'trace id not echoed in the trailing metadata: {trailing}')
    # The service name without its package, and with it, reach the same endpoint.
    if ch.unary_unary('/Helloworld/Greeting')(b'{"name":"x"}', metadata=JSON, timeout=10) != \
            b'{"message":"Hello x"}':
        fail('/Helloworld/Greeting')
    e = expect_code(lambda: greet(b'{"nam": 1}', metadata=JSON, timeout=10),
                    grpc.StatusCode.INVALID_ARGUMENT, 'bad request')
    if 'name' not in e.details():
        fail(f'handler error detail lost: {e.details()!r}')
    expect_code(lambda: greet(b'{"name":', metadata=JSON, timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                'malformed JSON')
    expect_code(lambda: ch.unary_unary('/helloworld.Helloworld/Nope')(b'', timeout=10),
                grpc.StatusCode.UNIMPLEMENTED, 'unknown method')
    expect_code(lambda: ch.unary_unary('/x/y/z')(b'', timeout=10), grpc.StatusCode.UNIMPLEMENTED,
                'malformed method')
    # protobuf (the default content type): the JSON handler refuses it cleanly
    expect_code(lambda: greet(b'\x0a\x05alice', timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                'protobuf body to a JSON handler')
    # over the message limit (4 MiB by default)
    expect_code(lambda: greet(b'{"name":"' + b'a' * (5 << 20) + b'"}', metadata=JSON, timeout=20),
                grpc.StatusCode.RESOURCE_EXHAUSTED, 'oversized message')
    # server streaming
    stream = ch.unary_stream('/helloworld.Helloworld/Stream')
    got = list(stream(b'{"name":"bob","count":3}', metadata=JSON, timeout=10))
    if got != [b'{"message":"Hello bob","n":%d}' % i for i in range(3)]:
        fail(f'stream answered {got}')
    # a client that goes away mid-stream: the server notices and stays healthy
    for _ in range(5):
        it = stream(b'{"name":"carol","count":100000}', metadata=JSON, timeout=30)
        for i, _m in enumerate(it):
            if i == 10:
                it.cancel()
                break
    if ch.unary_unary('/Debug/Health')(b'', timeout=10) != b'{"status":"ok"}':
        fail('Debug.Health after cancelled streams')
    # a deadline that passes mid-stream ends the stream with DEADLINE_EXCEEDED
    expect_code(lambda: list(stream(b'{"name":"late","count":100000}', metadata=JSON, timeout=0.3)),
                grpc.StatusCode.DEADLINE_EXCEEDED, 'deadline mid-stream')
    if ch.unary_unary('/Debug/Health')(b'', timeout=10) != b'{"status":"ok"}':
        fail('Debug.Health after a deadline')
    ch.close()
    # stop: the server exits cleanly; a new call gets UNAVAILABLE
    p.send_signal(signal.SIGTERM)
    if p.wait(timeout=30) != 0:
        fail(f'server exit status {p.returncode}')
    ch = grpc.insecure_channel('127.0.0.1:' + port)
    expect_code(lambda: ch.unary_unary('/helloworld.Helloworld/Greeting')(b'{}', metadata=JSON, timeout=5),
                grpc.StatusCode.UNAVAILABLE, 'stopped server')
    # a server killed (-9) in the middle of a stream: the client gets UNAVAILABLE
    p = subprocess.Popen([server, '--address', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--registry', 'none'],
                         stdout=open(os.path.join(tmp, 'out2'), 'w'), stderr=err)
    port = None
    for _ in range(100):
        with open(os.path.join(tmp, 'out2')) as f:
            for line in f.read().splitlines():
                if line.startswith('helloworld gRPC on '):
                    port = line.rsplit(':', 1)[1]
        if port:
            break
        time.sleep(0.1)
    if not port:
        fail('second server did not start')
    ch = grpc.insecure_channel('127.0.0.1:' + port)
    it = ch.unary_stream('/helloworld.Helloworld/Stream')(b'{"name":"dan","count":100000}', metadata=JSON,
                                                          timeout=30)

    def read_until_killed():
        for i, _m in enumerate(it):
            if i == 50:
                p.kill()
                p.wait()

    expect_code(read_until_killed, grpc.StatusCode.UNAVAILABLE, 'server killed mid-stream')
    print('grpc_helloworld: ok')
finally:
    if p.poll() is None:
        p.kill()
        p.wait()
