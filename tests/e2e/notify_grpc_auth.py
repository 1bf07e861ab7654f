#!/usr/bin/python3
"""notify_grpc_auth.py PROTO_DIR OUT_DIR GRPC_ADDR USER42 PRODUCER ADMIN - auth.mode
tokens on the gRPC API: tokens in the metadata "authorization: Bearer <token>",
the same rules as the HTTP routes."""
import sys

from grpc_tools import protoc

proto_dir, out_dir, addr, user42, producer, admin = sys.argv[1:7]
if protoc.main(['protoc', f'-I{proto_dir}', f'--python_out={out_dir}', f'--grpc_python_out={out_dir}',
                f'{proto_dir}/notice.proto']) != 0:
    sys.exit('protoc failed')
sys.path.insert(0, out_dir)
import grpc  # noqa: E402
import notice_pb2 as pb  # noqa: E402
import notice_pb2_grpc as pbg  # noqa: E402

stub = pbg.ProducerStub(grpc.insecure_channel(addr))
fails = 0


def bearer(t):
    return (('authorization', 'Bearer ' + t),)


def expect(what, fn, code):
    global fails
    try:
        r = fn()
        if code is not None:
            fails += 1
            print(f'FAIL: {what}: answered {r}, want {code}', file=sys.stderr)
        return r
    except grpc.RpcError as e:
        if e.code() != code:
            fails += 1
            print(f'FAIL: {what}: {e.code()} {e.details()!r}, want {code}', file=sys.stderr)


note = pb.NoticeRequest(uid=42, type=1, data='auth')
U, D = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
expect('Notify without a token', lambda: stub.Notify(note, timeout=10), U)
expect('Notify with a garbage token', lambda: stub.Notify(note, metadata=bearer('x.y.z'), timeout=10), U)
expect('Notify with another scheme', lambda: stub.Notify(note, metadata=(('authorization', 'Basic eA=='),),
                                                         timeout=10), U)
expect('Notify with a user token', lambda: stub.Notify(note, metadata=bearer(user42), timeout=10), D)
r = expect('Notify with a producer token', lambda: stub.Notify(note, metadata=bearer(producer), timeout=10),
           None)
if r is None or r.code != 10000:
    fails += 1
    print(f'FAIL: producer Notify answered {r}', file=sys.stderr)
expect('List own uid', lambda: stub.List(pb.ListRequest(uid=42), metadata=bearer(user42), timeout=10), None)
expect('List another uid', lambda: stub.List(pb.ListRequest(uid=43), metadata=bearer(user42), timeout=10), D)
expect('UserInfo another uid', lambda: stub.UserInfo(pb.NoticeRequest(uid=43), metadata=bearer(user42),
                                                     timeout=10), D)
expect('List with a producer token', lambda: stub.List(pb.ListRequest(uid=42), metadata=bearer(producer),
                                                       timeout=10), D)
expect('MarkRead by a producer', lambda: stub.MarkRead(pb.MarkReadRequest(uid=43, all=True),
                                                       metadata=bearer(producer), timeout=10), None)
expect('Read another uid', lambda: stub.Read(pb.NoticeRequest(uid=43, type=1), metadata=bearer(user42),
                                             timeout=10), D)
expect('admin lists anyone', lambda: stub.List(pb.ListRequest(uid=43), metadata=bearer(admin), timeout=10),
       None)
if fails:
    sys.exit(f'{fails} checks failed')
print('notify_grpc_auth: ok')
