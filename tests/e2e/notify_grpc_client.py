#!/usr/bin/python3
"""notify_grpc_client.py PROTO_DIR OUT_DIR GRPC_ADDR HTTP_URL - a foreign client
of the notification service's gRPC API (Debian's python3-grpcio, stubs
generated from the committed notice.proto by python3-grpc-tools at test time).
Calls every RPC, with good and bad input, and checks what got stored through
the HTTP API."""
import json, sys, time, urllib.request

from grpc_tools import protoc

proto_dir, out_dir, addr, http = sys.argv[1:5]
if protoc.main(['protoc', f'-I{proto_dir}', f'--python_out={out_dir}', f'--grpc_python_out={out_dir}',
                f'{proto_dir}/notice.proto']) != 0:
    sys.exit('protoc failed')
sys.path.insert(0, out_dir)
import grpc  # noqa: E402
import notice_pb2 as pb  # noqa: E402
import notice_pb2_grpc as pbg  # noqa: E402

fails = 0


def check(what, cond, detail=''):
    global fails
    if not cond:
        fails += 1
        print(f'FAIL: {what} {detail}', file=sys.stderr)


def http_get(path):
    with urllib.request.urlopen(http.rstrip('/') + path, timeout=10) as r:
        return json.load(r)


ch = grpc.insecure_channel(addr)
stub = pbg.ProducerStub(ch)
uid = 4242

# Notify: the original's contract
r = stub.Notify(pb.NoticeRequest(uid=uid, type=1, data='hello grpc', createTime='2024-01-02 03:04:05'),
                timeout=10)
check('Notify code', r.code == 10000, r)
check('Notify msg', r.msg == 'success', r)
d = json.loads(r.data)
check('Notify data fields', d.get('uid') == uid and d.get('type') == 1 and d.get('data') == 'hello grpc'
      and len(d.get('id', '')) == 36, d)
first_id = d.get('id')
# no createTime: now
r = stub.Notify(pb.NoticeRequest(uid=uid, type=2, data='second'), timeout=10)
check('Notify without time', r.code == 10000, r)
# idempotency-key: the retry is stored once, with the same id
k = (('idempotency-key', 'order-77'),)
r1 = stub.Notify(pb.NoticeRequest(uid=uid, type=1, data='once'), metadata=k, timeout=10)
r2 = stub.Notify(pb.NoticeRequest(uid=uid, type=1, data='once'), metadata=k, timeout=10)
check('idempotent ids', json.loads(r1.data)['id'] == json.loads(r2.data)['id'], (r1, r2))

# bad input: the HTTP API's rules and messages, code 10001, nothing stored
bad = [
    (pb.NoticeRequest(uid=-1, type=1, data='x'), 'uid must be in'),
    (pb.NoticeRequest(uid=1, type=-5, data='x'), 'type must be in'),
    (pb.NoticeRequest(uid=1, type=2147483648, data='x'), 'type must be in'),
    (pb.NoticeRequest(uid=1, type=1, data='x' * 501), 'data is longer than 500 characters'),
    (pb.NoticeRequest(uid=1, type=1, data='x', createTime='2024-02-30 00:00:00'), 'time must be'),
    (pb.NoticeRequest(uid=1, type=1, data='x', createTime='yesterday'), 'time must be'),
    # the message echoes 40 bytes of it, which cut the last character: sent as '?',
    # a msg that is not UTF-8 would fail the client's parse of the answer
    (pb.NoticeRequest(uid=1, type=1, data='x', createTime='x' + '\u00e9' * 30), 'time must be'),
]
for req, want in bad:
    try:
        r = stub.Notify(req, timeout=10)
        check(f'refused {want!r}', r.code == 10001 and want in r.msg, r)
    except grpc.RpcError as e:
        check(f'refused {want!r} ({req.createTime!r})', False, (e.code(), e.details()))
r = stub.Notify(pb.NoticeRequest(uid=1, type=1, data='x'), metadata=(('idempotency-key', 'k' * 101),),
                timeout=10)
check('long idempotency key refused', r.code == 10001 and 'Idempotency-Key' in r.msg, r)
# bytes protobuf-c hands over as C strings: a NUL (anywhere, even before
# data that is too long) is refused as the HTTP form parser refuses it,
# never stored cut short at the NUL; nothing stored for uid 1 (checked below)
bad = [
    (pb.NoticeRequest(uid=1, type=1, data='before\x00after'), 'data must not contain a NUL character'),
    (pb.NoticeRequest(uid=1, type=1, data='x\x00' + 'y' * 600), 'data must not contain a NUL character'),
    (pb.NoticeRequest(uid=1, type=1, data='x', createTime='2024-01-02 03:04:05\x00junk'),
     'time must not contain a NUL character'),
]
for req, want in bad:
    try:
        r = stub.Notify(req, timeout=10)
        check(f'refused {want!r} ({req.data[:8]!r})', r.code == 10001 and r.msg == want, r)
    except grpc.RpcError as e:
        check(f'refused {want!r} ({req.data[:8]!r})', False, (e.code(), e.details()))
# length in characters, not bytes: 500 two-byte characters pass, 501 do not
r = stub.Notify(pb.NoticeRequest(uid=uid, type=1, data='\u00e9' * 500), timeout=10)
check('500 characters (1000 bytes) accepted', r.code == 10000, r)
r = stub.Notify(pb.NoticeRequest(uid=1, type=1, data='\u00e9' * 501), timeout=10)
check('501 characters refused', r.code == 10001 and r.msg == 'data is longer than 500 characters', r)

raw = ch.unary_unary('/notice.Producer/Notify')


def notice_bytes(uid, data, when=b''):
    """A NoticeRequest written by hand: the stubs refuse to send invalid UTF-8."""
    def varint(n):
        out = b''
        while True:
            b, n = n & 0x7f, n >> 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out
    return (b'\x08' + varint(uid) + b'\x10\x01' + b'\x1a' + varint(len(data)) + data
            + (b'\x22' + varint(len(when)) + when if when else b''))


# a string field that is not UTF-8: a malformed message, INVALID_ARGUMENT with
# HTTP's message - a client error, never UNAVAILABLE (an outage to retry)
for data, when, want in ((b'bad \xff\xfe utf8', b'', 'data is not valid UTF-8'),
                         (b'\x80' * 600, b'', 'data is not valid UTF-8'),
                         (b'ok', b'2024-01-02 03:04:0\xc0', 'time is not valid UTF-8')):
    try:
        r = raw(notice_bytes(1, data, when), timeout=10)
        check(f'invalid UTF-8 refused ({data[:8]!r}, {when!r})', False, r)
    except grpc.RpcError as e:
        check(f'invalid UTF-8 status ({data[:8]!r}, {when!r})',
              e.code() == grpc.StatusCode.INVALID_ARGUMENT and want in e.details(), (e.code(), e.details()))
# malformed protobuf bytes: INVALID_ARGUMENT
try:
    raw(b'\xff\xff\xff\xff', timeout=10)
    check('malformed protobuf refused', False)
except grpc.RpcError as e:
    check('malformed protobuf status', e.code() == grpc.StatusCode.INVALID_ARGUMENT, e)
try:
    ch.unary_unary('/notice.Producer/Nope')(b'', timeout=10)
    check('unknown method refused', False)
except grpc.RpcError as e:
    check('unknown method status', e.code() == grpc.StatusCode.UNIMPLEMENTED, e)

# stored: 4 notices (the idempotent pair once), seen through HTTP and gRPC List
deadline = time.time() + 15
while time.time() < deadline:
    lst = http_get(f'/api/msg/list?uid={uid}&size=100')['data']['list']
    if len(lst) >= 4:
        break
    time.sleep(0.1)
check('4 notices stored (HTTP list)', len(lst) == 4, lst)
check('first notice stored with its id', any(n['order_sn'] == first_id for n in lst), lst)
check('500 characters stored whole', any(n['data'] == '\u00e9' * 500 for n in lst), lst)
check('nothing refused got stored (uid 1)', http_get('/api/msg/list?uid=1&size=100')['data']['list'] == [],
      http_get('/api/msg/list?uid=1&size=100'))
r = stub.List(pb.ListRequest(uid=uid, size=100), timeout=10)
check('List code', r.code == 10000, r)
gl = json.loads(r.data)
check('List answers what HTTP answers', gl['list'] == lst and gl['unread'] == 4, gl)
r = stub.List(pb.ListRequest(uid=uid, size=101), timeout=10)
check('List size over 100 refused', r.code == 10001 and 'size must be in 1..100' in r.msg, r)
r = stub.UserInfo(pb.NoticeRequest(uid=uid), timeout=10)
check('UserInfo', r.code == 10000 and json.loads(r.data)['notification_count'] == 4, r)

# Read (the original's: every notice of uid+type read), MarkRead one by id
r = stub.Read(pb.NoticeRequest(uid=uid, type=1), timeout=10)
check('Read', r.code == 10000, r)
other = [n for n in lst if n['type'] == 2][0]
r = stub.MarkRead(pb.MarkReadRequest(uid=uid, id=other['id']), timeout=10)
check('MarkRead', r.code == 10000, r)
deadline = time.time() + 15
while time.time() < deadline:
    info = http_get(f'/api/user/info?uid={uid}')['data']
    if info['notification_count'] == 0:
        break
    time.sleep(0.1)
check('every notice read (count 0)', info['notification_count'] == 0, info)
r = stub.MarkRead(pb.MarkReadRequest(uid=uid, id=-3), timeout=10)
check('MarkRead bad id', r.code == 10001 and 'id must be in' in r.msg, r)

# Stream: hello first, then a notice posted for the uid arrives live
suid = 9090
it = stub.Stream(pb.NoticeRequest(uid=suid), timeout=30)
first = next(it)
check('Stream hello', first.msg == 'hello' and json.loads(first.data)['uid'] == suid, first)
r = stub.Notify(pb.NoticeRequest(uid=suid, type=3, data='live over grpc'), timeout=10)
check('Notify for the stream', r.code == 10000, r)
seen = None
for ev in it:
    if ev.msg == 'notice':
        seen = json.loads(ev.data)
        break
check('the notice arrived on the stream', seen is not None and seen.get('data') == 'live over grpc', seen)
it.cancel()
r = stub.List(pb.ListRequest(uid=suid), timeout=10)  # the server stays healthy after a cancel
check('List after a cancelled stream', r.code == 10000, r)

if fails:
    sys.exit(f'{fails} checks failed')
print('notify_grpc_client: ok')
