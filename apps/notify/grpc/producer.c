/*
 * producer.c - the notification service's gRPC API: the original's
 * notice.Producer (Notify, Read: same contract, port 3334) plus List,
 * UserInfo, MarkRead and Stream (live events, the SSE stream's twin), served by an sl_service on
 * its gRPC transport (grpc_only, not registered anywhere). Messages are notice.proto's (protobuf-c,
 * generated at build time).
 *
 * Every request passes the HTTP API's rules with the same messages
 * (notice_check.c). A refused request answers code=10001 with the reason;
 * a good one is published durably before the answer (code=10000, msg
 * "success", data = JSON bytes {"uid","type","data","id"}). When the queue
 * refuses, the request goes to the retry log and the call fails with gRPC
 * status UNAVAILABLE. Metadata "idempotency-key" works as the HTTP header.
 * A message protobuf itself calls malformed (bad bytes, a string field that
 * is not UTF-8) fails INVALID_ARGUMENT; one over web.max_body (read per
 * call, so a reload lowers it at once) RESOURCE_EXHAUSTED.
 *
 * protobuf-c hands string fields over NUL-terminated, which hides a NUL
 * byte inside one (the notice would be stored cut short): Notify reads its
 * string fields' bytes from the wire as well (wire_field) and refuses a
 * NUL as the HTTP form parser does.
 *
 * auth.mode tokens applies here as on HTTP (access.c): metadata
 * "authorization: Bearer <token>"; Notify needs a producer or admin token;
 * List, UserInfo, Read and MarkRead the uid's own user token (Read and
 * MarkRead also a producer's) or an admin token. A missing or refused
 * token fails the call UNAUTHENTICATED, the wrong kind PERMISSION_DENIED.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sluice/auth.h>
#include <sluice/service.h>

#include "../app.h"
#include "../notice_check.h"
#include "../queries.h"
#include "grpc.h"
#include "notice.pb-c.h"

#define MAX_STREAMS 64 /* each open Stream holds a worker thread */

struct nf_grpc {
    sl_service *svc;
    _Atomic int streams;
};

static nf_grpc *g_grpc; /* for the stream count (one gRPC API per process) */

typedef enum { NEED_POST, NEED_USER, NEED_MARK } need;

static bool has_scope(const sl_account *a, const char *scope)
{
    for (size_t i = 0; a && i < a->nscopes; i++)
        if (!strcmp(a->scopes[i], scope))
            return true;
    return false;
}

/* 0 when the caller may do `what` for uid (always with auth off); else the
 * call's error is set and the (negative) code returned. */
static int allowed(sl_call *c, nf_app *app, need what, int64_t uid)
{
    if (!app->auth)
        return 0;
    const char *h = sl_call_meta(c, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) || !h[7])
        return sl_call_error(c, 401,
                             "a token is required (metadata authorization: Bearer <token>)");
    sl_account *a;
    int rc = sl_auth_inspect(app->auth, h + 7, &a);
    if (rc)
        return sl_call_error(c, 401, "token refused: %s",
                             rc == SL_EUNAUTH ? sl_errmsg() : sl_strerror(rc));
    char want[32];
    snprintf(want, sizeof want, "%lld", (long long)uid);
    bool ok = has_scope(a, NF_SCOPE_ADMIN) || (what != NEED_USER && has_scope(a, NF_SCOPE_WRITE)) ||
              (what != NEED_POST && has_scope(a, NF_SCOPE_READ) && a->id && !strcmp(a->id, want));
    sl_account_free(a);
    if (ok)
        return 0;
    return what == NEED_POST
               ? sl_call_error(c, 403,
                               "posting notices needs a producer token (scope "
                               "notice:write)")
               : sl_call_error(c, 403, "this token may not access uid %lld", (long long)uid);
}

/* Pack ProducerResponse{code, msg, data} and hand it to send (sl_call_reply
 * for an answer, sl_call_send for a stream message). */
static int send_response(sl_call *c, int (*send)(sl_call *, const void *, size_t), int64_t code,
                         const char *msg, const char *data)
{
    Notice__ProducerResponse r = NOTICE__PRODUCER_RESPONSE__INIT;
    r.code = code;
    r.msg = (char *)msg;
    if (data) {
        r.data.data = (uint8_t *)data;
        r.data.len = strlen(data);
    }
    size_t len = notice__producer_response__get_packed_size(&r);
    uint8_t *buf = malloc(len ? len : 1);
    int rc = buf ? send(c, buf, notice__producer_response__pack(&r, buf)) : SL_ENOMEM;
    free(buf);
    return rc;
}

/* Answer a ProducerResponse; data (JSON) is stolen. */
static int answer(sl_call *c, int64_t code, const char *msg, json_t *data)
{
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    int rc = send_response(c, sl_call_reply, code, msg, text);
    free(text);
    return rc;
}

static int refuse(sl_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(sl_call *c, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nf_utf8_scrub(msg); /* msg is a proto3 string: clients refuse one that is not UTF-8 */
    return answer(c, 10001, msg, NULL);
}

/* An integer field within [lo, hi] (the HTTP API's message when not). */
static bool in_range(sl_call *c, const char *name, int64_t v, int64_t lo, int64_t hi)
{
    if (v >= lo && v <= hi)
        return true;
    refuse(c, "%s must be in %lld..%lld, got %lld", name, (long long)lo, (long long)hi,
           (long long)v);
    return false;
}

/* The request's bytes, or NULL with the call's error set when they pass
 * web.max_body: read per call, as the HTTP server does, so a hot reload
 * reaches gRPC too (gRPC core's own limit is the start value, fixed when
 * the server starts: raising it takes a restart). */
static const uint8_t *request_body(sl_call *c, nf_app *app, size_t *len)
{
    const uint8_t *body = sl_call_body(c, len);
    int max = atomic_load(&app->max_body);
    if (*len > (size_t)max) {
        sl_call_error(c, 413, "request body over %d bytes", max);
        return NULL;
    }
    return body;
}

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* The bytes of field num (length-delimited) in a protobuf message: its last
 * occurrence, the one protobuf-c keeps; *val NULL when absent. -1 when the
 * message does not parse. */
static int wire_field(const uint8_t *p, size_t len, uint32_t num, const uint8_t **val, size_t *n)
{
    const uint8_t *end = p + len;
    *val = NULL;
    *n = 0;
    while (p < end) {
        uint64_t key, v;
        if (!wire_varint(&p, end, &key))
            return -1;
        switch (key & 7) {
        case 0:
            if (!wire_varint(&p, end, &v))
                return -1;
            break;
        case 1:
        case 5:
            if ((size_t)(end - p) < ((key & 7) == 1 ? 8u : 4u))
                return -1;
            p += (key & 7) == 1 ? 8 : 4;
            break;
        case 2:
            if (!wire_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return -1;
            if (key >> 3 == num) {
                *val = p;
                *n = (size_t)v;
            }
            p += v;
            break;
        default: return -1; /* groups: protobuf-c refuses them too */
        }
    }
    return 0;
}

/* A string field of a request, as sent: "" when absent. */
typedef struct wire_str {
    const char *p;
    size_t n;
} wire_str;

/* Read NoticeRequest's string field `field` of body into *out; false (the
 * call's error set: INVALID_ARGUMENT, HTTP's wording with `name`) when the
 * message is malformed or the field is not UTF-8, which proto3 requires of
 * a string. */
static bool wire_string(sl_call *c, const uint8_t *body, size_t len, const char *field,
                        const char *name, wire_str *out)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(&notice__notice_request__descriptor, field);
    const uint8_t *v;
    if (!f || wire_field(body, len, f->id, &v, &out->n)) {
        sl_call_error(c, 400, "malformed NoticeRequest");
        return false;
    }
    out->p = v ? (const char *)v : "";
    if (nf_utf8_valid(out->p, out->n))
        return true;
    sl_call_error(c, 400, "%s is not valid UTF-8", name);
    return false;
}

/* Publish durably, then answer; a refused publish goes to the retry log. */
static int publish(sl_call *c, nf_app *app, const char *topic, json_t *payload, const char *id)
{
    char *text = json_dumps(payload, JSON_COMPACT);
    char uuid[64] = "";
    int rc = text ? nf_app_publish(app, topic, id[0] ? id : NULL, text, false, uuid, sizeof uuid)
                  : SL_ENOMEM;
    if (rc) {
        bool logged = text && nf_retry_log(app, topic, text, rc) == 0;
        free(text);
        json_decref(payload);
        return sl_call_error(c, 503, "queue unavailable (%s); request %s", sl_strerror(rc),
                             logged ? "logged for retry" : "NOT logged for retry: send it again");
    }
    free(text);
    json_object_set_new(payload, "id", json_string(uuid));
    return answer(c, 10000, "success", payload);
}

static int notify(sl_call *c, void *user)
{
    nf_app *app = user;
    size_t len;
    const uint8_t *body = request_body(c, app, &len);
    if (!body)
        return 0;
    Notice__NoticeRequest *q = notice__notice_request__unpack(NULL, len, body);
    if (!q)
        return sl_call_error(c, 400, "malformed NoticeRequest");
    char when[24], err[160], id[200];
    wire_str data, tm; /* createTime is "time" in the HTTP API and its messages */
    int rc = 0;
    if (!wire_string(c, body, len, "data", "data", &data) ||
        !wire_string(c, body, len, "createTime", "time", &tm))
        goto out;
    rc = allowed(c, app, NEED_POST, q->uid);
    if (rc)
        goto out;
    if (memchr(data.p, '\0', data.n) || memchr(tm.p, '\0', tm.n)) {
        rc = refuse(c, "%s must not contain a NUL character",
                    memchr(data.p, '\0', data.n) ? "data" : "time");
        goto out;
    }
    if (!in_range(c, "uid", q->uid, 0, NF_INT64_MAX) ||
        !in_range(c, "type", q->type, 0, NF_INT32_MAX))
        goto out;
    if (nf_check_notice(q->data, q->createtime, when, err, sizeof err) ||
        nf_check_idem(sl_call_meta(c, "idempotency-key"), q->uid, "k", id, sizeof id, err,
                      sizeof err)) {
        rc = refuse(c, "%s", err);
        goto out;
    }
    json_error_t je;
    json_t *payload = json_pack_ex(&je, 0, "{s:I, s:I, s:s, s:s}", "uid", (json_int_t)q->uid,
                                   "type", (json_int_t)q->type, "data", q->data, "time", when);
    /* The checks above leave only memory to fail it; should bad input get
     * through, it is the client's error, never an outage to retry. */
    if (!payload && json_error_code(&je) == json_error_invalid_utf8) {
        rc = sl_call_error(c, 400, "notice refused: %s", je.text);
        goto out;
    }
    rc = publish(c, app, NF_TOPIC_NOTIFY, payload, id);
out:
    notice__notice_request__free_unpacked(q, NULL);
    return rc;
}

/* Mark read: one notice (id), or every notice of a type (all, type 0 = all types). */
static int mark(sl_call *c, nf_app *app, int64_t uid, int64_t type, int64_t nid, bool all)
{
    char id[200], err[160];
    int rc = allowed(c, app, NEED_MARK, uid);
    if (rc)
        return rc;
    if (!in_range(c, "uid", uid, 0, NF_INT64_MAX) || !in_range(c, "type", type, 0, NF_INT32_MAX) ||
        !in_range(c, "id", nid, 0, NF_INT64_MAX))
        return 0;
    if (nf_check_idem(sl_call_meta(c, "idempotency-key"), uid, "r", id, sizeof id, err, sizeof err))
        return refuse(c, "%s", err);
    return publish(c, app, NF_TOPIC_READ,
                   json_pack("{s:I, s:I, s:I, s:b}", "uid", (json_int_t)uid, "type",
                             (json_int_t)type, "id", (json_int_t)nid, "all", all || type == 0),
                   id);
}

/* The original's Read: every notice of (uid, type) read, as POST /api/msg/read uid&type. */
static int read_notices(sl_call *c, void *user)
{
    size_t len;
    const uint8_t *body = request_body(c, user, &len);
    if (!body)
        return 0;
    Notice__NoticeRequest *q = notice__notice_request__unpack(NULL, len, body);
    if (!q)
        return sl_call_error(c, 400, "malformed NoticeRequest");
    int rc = mark(c, user, q->uid, q->type, 0, false);
    notice__notice_request__free_unpacked(q, NULL);
    return rc;
}

static int mark_read(sl_call *c, void *user)
{
    size_t len;
    const uint8_t *body = request_body(c, user, &len);
    if (!body)
        return 0;
    Notice__MarkReadRequest *q = notice__mark_read_request__unpack(NULL, len, body);
    if (!q)
        return sl_call_error(c, 400, "malformed MarkReadRequest");
    int rc = mark(c, user, q->uid, q->type, q->id, q->all);
    notice__mark_read_request__free_unpacked(q, NULL);
    return rc;
}

static int list(sl_call *c, void *user)
{
    size_t len;
    const uint8_t *body = request_body(c, user, &len);
    if (!body)
        return 0;
    Notice__ListRequest *q = notice__list_request__unpack(NULL, len, body);
    if (!q)
        return sl_call_error(c, 400, "malformed ListRequest");
    nf_list_query lq = {.uid = q->uid,
                        .type = (int)q->type,
                        .page = q->page ? (int)q->page : 1,
                        .size = q->size ? (int)q->size : 10,
                        .cursor = q->cursor};
    json_t *data = NULL;
    int rc = allowed(c, user, NEED_USER, q->uid);
    if (!rc && in_range(c, "uid", q->uid, 0, NF_INT64_MAX) &&
        in_range(c, "type", q->type, 0, NF_INT32_MAX) &&
        in_range(c, "page", q->page ? q->page : 1, 1, 1000000) &&
        in_range(c, "size", q->size ? q->size : 10, 1, 100) &&
        in_range(c, "cursor", q->cursor, 0, NF_INT64_MAX)) {
        rc = nf_query_list(user, &lq, &data);
        rc = rc ? sl_call_error(c, 503, "store unavailable (%s)", sl_strerror(rc))
                : answer(c, 10000, "success", data);
    }
    notice__list_request__free_unpacked(q, NULL);
    return rc;
}

static int user_info(sl_call *c, void *user)
{
    size_t len;
    const uint8_t *body = request_body(c, user, &len);
    if (!body)
        return 0;
    Notice__NoticeRequest *q = notice__notice_request__unpack(NULL, len, body);
    if (!q)
        return sl_call_error(c, 400, "malformed NoticeRequest");
    json_t *data = NULL;
    int rc = allowed(c, user, NEED_USER, q->uid);
    if (!rc && in_range(c, "uid", q->uid, 0, NF_INT64_MAX)) {
        rc = nf_query_user(user, q->uid, &data);
        rc = rc ? sl_call_error(c, 503, "store unavailable (%s)", sl_strerror(rc))
                : answer(c, 10000, "success", data);
    }
    notice__notice_request__free_unpacked(q, NULL);
    return rc;
}

/* ---- Stream: the gRPC twin of the SSE stream ---- */

#define STREAM_MAX_QUEUED 1000 /* a reader that stopped reading is ended */
#define STREAM_PING_MS 15000

typedef struct evq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **ev, **js;
    size_t n, cap;
    bool ended;
} evq;

static void on_event(void *ctx, const char *event, const char *json)
{
    evq *q = ctx;
    pthread_mutex_lock(&q->mu);
    if (!event || q->n == STREAM_MAX_QUEUED) {
        q->ended = true;
    } else if (!q->ended) {
        if (q->n == q->cap) {
            size_t cap = q->cap ? q->cap * 2 : 16;
            char **ne = realloc(q->ev, cap * sizeof *ne),
                 **nj = ne ? realloc(q->js, cap * sizeof *nj) : NULL;
            if (ne)
                q->ev = ne;
            if (nj)
                q->js = nj, q->cap = cap;
        }
        if (q->n < q->cap && (q->ev[q->n] = strdup(event)) && (q->js[q->n] = strdup(json)))
            q->n++;
        else
            q->ended = true; /* out of memory: end rather than skip an event */
    }
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* One stream message: ProducerResponse{code 10000, msg = event, data = json}. */
static int send_event(sl_call *c, const char *event, const char *json)
{
    return send_response(c, sl_call_send, 10000, event, json);
}

static int stream_run(sl_call *c, nf_app *app, int64_t uid);

static int stream(sl_call *c, void *user)
{
    nf_app *app = user;
    size_t len;
    const uint8_t *body = request_body(c, user, &len);
    if (!body)
        return 0;
    Notice__NoticeRequest *q = notice__notice_request__unpack(NULL, len, body);
    if (!q)
        return sl_call_error(c, 400, "malformed NoticeRequest");
    int64_t uid = q->uid;
    notice__notice_request__free_unpacked(q, NULL);
    int rc = allowed(c, app, NEED_USER, uid);
    if (rc)
        return rc;
    if (atomic_fetch_add(&g_grpc->streams, 1) >= MAX_STREAMS) {
        atomic_fetch_sub(&g_grpc->streams, 1);
        return sl_call_error(c, 429, "too many open streams (%d)", MAX_STREAMS);
    }
    rc = stream_run(c, app, uid);
    atomic_fetch_sub(&g_grpc->streams, 1);
    return rc;
}

static int stream_run(sl_call *c, nf_app *app, int64_t uid)
{
    int rc;
    if (uid < 0)
        return sl_call_error(c, 400, "uid must be in 0..%lld, got %lld", (long long)NF_INT64_MAX,
                             (long long)uid);
    evq eq = {.ended = false};
    pthread_mutex_init(&eq.mu, NULL);
    pthread_cond_init(&eq.cv, NULL);
    nf_tap *tap = nf_hub_tap(app->hub, uid, on_event, &eq);
    nf_listener_announce(app); /* before the hello: events made from then on reach it */
    json_t *hello = NULL;
    if (!tap || nf_query_user(app, uid, &hello) != 0) {
        rc = sl_call_error(c, 503, "event stream unavailable");
    } else { /* first message: who and how many unread, as the SSE stream's hello */
        json_object_del(hello, "nick");
        char *h = json_dumps(hello, JSON_COMPACT);
        rc = h ? send_event(c, "hello", h) : SL_ENOMEM;
        free(h);
    }
    json_decref(hello);
    while (rc == 0) {
        pthread_mutex_lock(&eq.mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += STREAM_PING_MS / 1000;
        while (eq.n == 0 && !eq.ended && pthread_cond_timedwait(&eq.cv, &eq.mu, &until) == 0)
            ;
        char **ev = eq.ev, **js = eq.js;
        size_t n = eq.n;
        bool ended = eq.ended;
        eq.ev = eq.js = NULL;
        eq.n = eq.cap = 0;
        pthread_mutex_unlock(&eq.mu);
        for (size_t i = 0; i < n; i++) {
            if (rc == 0)
                rc = send_event(c, ev[i], js[i]);
            free(ev[i]);
            free(js[i]);
        }
        free(ev);
        free(js);
        if (ended)
            break;
        if (rc == 0 && n == 0) /* quiet: a ping, so a client that went away is noticed */
            rc = send_event(c, "ping", "{}");
    }
    nf_hub_untap(app->hub, tap);
    for (size_t i = 0; i < eq.n; i++) {
        free(eq.ev[i]);
        free(eq.js[i]);
    }
    free(eq.ev);
    free(eq.js);
    pthread_mutex_destroy(&eq.mu);
    pthread_cond_destroy(&eq.cv);
    return rc == SL_ECLOSED ? 0 : rc; /* the client went away: nothing to answer */
}

int nf_grpc_start(nf_app *app, nf_grpc **out)
{
    *out = NULL;
    if (!app->cfg.grpc_enabled)
        return 0;
    nf_grpc *g = calloc(1, sizeof *g);
    if (!g)
        return SL_ENOMEM;
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "notice";
    o.registry = "none";
    o.grpc_address = app->cfg.grpc_addr;
    o.grpc_only = true;
    o.max_body = (size_t)app->cfg.max_body; /* gRPC core's ceiling; request_body the live limit */
    o.threads = (unsigned)app->cfg.threads + MAX_STREAMS;
    o.drain_timeout_ms = 5000;
    g_grpc = g;
    int rc = sl_service_new(&g->svc, &o);
    if (!rc)
        rc = sl_service_handle(g->svc, "Producer.Notify", notify, app);
    if (!rc)
        rc = sl_service_handle(g->svc, "Producer.Read", read_notices, app);
    if (!rc)
        rc = sl_service_handle(g->svc, "Producer.List", list, app);
    if (!rc)
        rc = sl_service_handle(g->svc, "Producer.UserInfo", user_info, app);
    if (!rc)
        rc = sl_service_handle(g->svc, "Producer.MarkRead", mark_read, app);
    if (!rc && app->hub)
        rc = sl_service_handle_stream(g->svc, "Producer.Stream", stream, app);
    if (!rc)
        rc = sl_service_start(g->svc);
    if (rc) {
        nf_grpc_stop(g);
        return rc;
    }
    *out = g;
    return 0;
}

const char *nf_grpc_address(const nf_grpc *g)
{
    return g ? sl_service_grpc_address(g->svc) : NULL;
}

void nf_grpc_stop(nf_grpc *g)
{
    if (!g)
        return;
    sl_service_free(g->svc); /* graceful: running calls finish first */
    free(g);
}
