/*
 * grpc_server.c - the gRPC transport of sl_service, on the gRPC C core
 * (HTTP/2 framing, flow control and deadlines are the core's; see
 * sluice/service.h for the mapping of methods, metadata and statuses).
 *
 * Threads: the server's completion queue only announces new calls. Each
 * announced call was requested with a completion queue of its own (a
 * "pluck" queue), so the worker that takes it runs the whole call
 * synchronously: read the request message, run wrappers and handler (the
 * handler's sl_call_send writes one message and waits for it), send the
 * status. opts.threads workers take calls, each keeping one request for
 * the next call outstanding, so at most `threads` handlers run at once and
 * further calls wait in the core (bounded by their deadlines).
 *
 * Stop: quiesce = grpc_server_shutdown_and_notify (no new calls, running
 * ones go on); stop = cancel what still runs, wait for the shutdown tag,
 * shut the queue down, join the workers.
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "service/grpc/grpc_int.h"
#include "service/svc_int.h"

typedef struct gsrv gsrv;

/* One outstanding request for a call, then that call. */
typedef struct gcall {
    gsrv *g;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_completion_queue *cq; /* the call's own (pluck) queue */
    bool sent_initial;
    pthread_mutex_t send_mu; /* one send at a time (handlers may send from several threads) */
    bool recv_ended;         /* the client finished sending */
    int recv_tag, send_tag;  /* distinct tags: a receive and a send may be in flight together */
    /* Set (release) before the request goes to the core, read (acquire) by
     * the worker the call is announced to: the hand-off through the core's
     * queue made visible to ThreadSanitizer, which does not see inside it. */
    _Atomic int ready;
} gcall;

struct gsrv {
    grpc_server *server;
    grpc_completion_queue *cq; /* new calls, and the shutdown tag */
    pthread_t *workers;
    unsigned nworkers;
    bool shutdown_asked;
    int shutdown_tag;
    pthread_mutex_t mu; /* stopping vs. new requests on the queue */
    bool stopping;      /* the queue is shut down: no request may be added */
};

/* ---- helpers ---- */

static char *slice_dup(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, GRPC_SLICE_START_PTR(s), n);
        p[n] = 0;
    }
    return p;
}

/* Run one batch on the call's own queue and wait for it (tag: which of the
 * call's batches, so a receive and a send can wait side by side). */
static bool run_batch_tag(gcall *gc, const grpc_op *ops, size_t n, void *tag)
{
    if (grpc_call_start_batch(gc->call, ops, n, tag, NULL) != GRPC_CALL_OK)
        return false;
    grpc_event ev =
        grpc_completion_queue_pluck(gc->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static bool run_batch(gcall *gc, const grpc_op *ops, size_t n)
{
    return run_batch_tag(gc, ops, n, &gc->send_tag);
}

static grpc_status_code status_of(int http)
{
    switch (http) {
    case 200: return GRPC_STATUS_OK;
    case 400:
    case 415: return GRPC_STATUS_INVALID_ARGUMENT;
    case 401: return GRPC_STATUS_UNAUTHENTICATED;
    case 403: return GRPC_STATUS_PERMISSION_DENIED;
    case 404: return GRPC_STATUS_NOT_FOUND;
    case 408:
    case 504: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case 409: return GRPC_STATUS_ALREADY_EXISTS;
    case 413:
    case 429: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case 501: return GRPC_STATUS_UNIMPLEMENTED;
    case 503: return GRPC_STATUS_UNAVAILABLE;
    default: return GRPC_STATUS_INTERNAL;
    }
}

/* The detail of a go-micro error JSON (the reply of a failed call). */
static char *error_detail(const sl_call *c)
{
    json_t *e = c->reply ? json_loadb(c->reply, c->reply_len, 0, NULL) : NULL;
    const char *d = json_string_value(json_object_get(e, "detail"));
    char *out = strdup(d ? d : sli_http_status_text(c->status));
    json_decref(e);
    return out;
}

/* Send the status (with the call's metadata as trailing metadata), and for
 * a unary call its reply message in the same batch: one trip. */
static void send_final(gcall *gc, grpc_status_code code, const char *detail, const sl_call *c,
                       const void *msg, size_t msglen, bool with_msg)
{
    grpc_metadata trail[32];
    size_t nt = 0;
    for (size_t i = 0; c && i < c->nresp_h && nt < 32; i++) { /* gRPC keys are lower case */
        char key[128];
        size_t k = 0;
        for (const char *p = c->resp_h[i].key; *p && k + 1 < sizeof key; p++)
            key[k++] = (char)tolower((unsigned char)*p);
        key[k] = 0;
        grpc_slice ks = grpc_slice_from_copied_string(key);
        grpc_slice vs = grpc_slice_from_copied_string(c->resp_h[i].value);
        if (grpc_header_key_is_legal(ks) && grpc_header_nonbin_value_is_legal(vs)) {
            trail[nt++] = (grpc_metadata){.key = ks, .value = vs};
        } else {
            grpc_slice_unref(ks);
            grpc_slice_unref(vs);
        }
    }
    grpc_slice details = grpc_slice_from_copied_string(detail ? detail : "");
    int cancelled = 0;
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!gc->sent_initial) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        gc->sent_initial = true;
    }
    grpc_byte_buffer *bb = NULL;
    if (with_msg) {
        grpc_slice sl = grpc_slice_from_copied_buffer(msg ? msg : "", msglen);
        bb = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = &details;
    ops[n].data.send_status_from_server.trailing_metadata_count = nt;
    ops[n].data.send_status_from_server.trailing_metadata = nt ? trail : NULL;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &cancelled;
    n++;
    pthread_mutex_lock(&gc->send_mu);
    run_batch(gc, ops, n);
    pthread_mutex_unlock(&gc->send_mu);
    if (bb)
        grpc_byte_buffer_destroy(bb);
    grpc_slice_unref(details);
    for (size_t i = 0; i < nt; i++) {
        grpc_slice_unref(trail[i].key);
        grpc_slice_unref(trail[i].value);
    }
}

static void send_status(gcall *gc, grpc_status_code code, const char *detail, const sl_call *c)
{
    send_final(gc, code, detail, c, NULL, 0, false);
}

/* sl_call_send on a gRPC call: one message, written before returning. */
static int grpc_send(sl_call *c, const void *data, size_t len)
{
    gcall *gc = c->send_ctx;
    pthread_mutex_lock(&gc->send_mu);
    grpc_slice sl = grpc_slice_from_copied_buffer(data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!gc->sent_initial) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        gc->sent_initial = true;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
    bool ok = run_batch(gc, ops, n);
    pthread_mutex_unlock(&gc->send_mu);
    grpc_byte_buffer_destroy(bb);
    return ok ? 0 : sli_err(SL_ECLOSED, "gRPC stream of %s: the client went away", c->endpoint);
}

/* sl_call_recv on a gRPC call: the client's next message. */
static int grpc_recv(sl_call *c, char **msg, size_t *len)
{
    gcall *gc = c->send_ctx;
    if (gc->recv_ended)
        return sli_err(SL_ECLOSED, "%s: the client sent its last message", c->endpoint);
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!run_batch_tag(gc, &op, 1, &gc->recv_tag))
        return sli_err(SL_ECANCELED, "%s: the call was cancelled (client gone or deadline)",
                       c->endpoint);
    if (!bb) {
        gc->recv_ended = true;
        return sli_err(SL_ECLOSED, "%s: the client sent its last message", c->endpoint);
    }
    int rc = sli_grpc_bytes(bb, msg, len);
    grpc_byte_buffer_destroy(bb);
    return rc ? sli_err(rc, "%s: cannot read the client's message", c->endpoint) : 0;
}

/* "/pkg.Service/Method" -> the endpoint (Service.Method, or pkg.Service.Method). */
svc_endpoint *sli_grpc_find_endpoint(sl_service *s, const char *method, char *name, size_t cap)
{
    const char *p = method[0] == '/' ? method + 1 : method;
    const char *slash = strchr(p, '/');
    if (!slash || !slash[1] || strchr(slash + 1, '/'))
        return NULL;
    int svc_len = (int)(slash - p);
    const char *dot = memrchr(p, '.', (size_t)svc_len);
    const char *short_svc = dot ? dot + 1 : p;
    snprintf(name, cap, "%.*s.%s", (int)(slash - short_svc), short_svc, slash + 1);
    svc_endpoint *ep = sli_svc_find(s, name);
    if (!ep && dot) {
        snprintf(name, cap, "%.*s.%s", svc_len, p, slash + 1);
        ep = sli_svc_find(s, name);
    }
    return ep;
}

/* ---- one call ---- */

/* The client's request message (NULL: cancelled, or none sent); the caller destroys it. */
static grpc_byte_buffer *read_request(gcall *gc)
{
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!run_batch(gc, &op, 1))
        return NULL;
    return bb;
}

grpc_status_code sli_grpc_request(sl_call *c, sl_service *s, svc_endpoint *ep,
                                  const grpc_metadata_array *md, gpr_timespec deadline,
                                  grpc_byte_buffer *bb, char *detail, size_t dcap)
{
    char *body = NULL;
    size_t len = 0;
    if (!bb || sli_grpc_bytes(bb, &body, &len) != 0) {
        snprintf(detail, dcap, "no request message");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    sli_call_init(c, s, ep->name, "application/protobuf");
    c->ep = ep;
    c->body = body;
    c->len = len;
    for (size_t i = 0; i < md->count; i++) {
        char *k = slice_dup(md->metadata[i].key), *v = slice_dup(md->metadata[i].value);
        if (k && v && !(strlen(k) > 4 && !strcmp(k + strlen(k) - 4, "-bin")))
            sli_call_add_req_header(c, k, v);
        free(k);
        free(v);
    }
    gpr_timespec dl = gpr_convert_clock_type(deadline, GPR_CLOCK_REALTIME);
    if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_REALTIME)) != 0) {
        gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_REALTIME));
        int64_t ms = left.tv_sec * 1000 + left.tv_nsec / 1000000;
        c->deadline_ms = sli_mono_ms() + (ms > 0 ? ms : 0);
    }
    const char *ct = sl_call_meta(c, "sluice-content-type");
    if (ct && !strcasecmp(ct, "application/json")) {
        snprintf(c->ctype, sizeof c->ctype, "application/json");
        c->is_json = true;
        json_error_t jerr;
        c->json = c->len ? json_loadb(c->body, c->len, JSON_DECODE_ANY, &jerr) : json_object();
        if (!c->json) {
            snprintf(detail, dcap, "malformed JSON at line %d column %d: %s", jerr.line,
                     jerr.column, jerr.text);
            sli_call_clear(c);
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
    }
    return GRPC_STATUS_OK;
}

static void serve_call(sl_service *s, gcall *gc)
{
    char *method = slice_dup(gc->details.method);
    char name[300];
    svc_endpoint *ep = method ? sli_grpc_find_endpoint(s, method, name, sizeof name) : NULL;
    if (!ep) {
        atomic_fetch_add(&s->unknown, 1);
        char d[400];
        snprintf(d, sizeof d, "service %s has no method %s", s->name, method ? method : "?");
        send_status(gc, GRPC_STATUS_UNIMPLEMENTED, d, NULL);
        free(method);
        return;
    }
    free(method);
    grpc_byte_buffer *bb = read_request(gc);
    sl_call c;
    char d[300];
    grpc_status_code code =
        sli_grpc_request(&c, s, ep, &gc->md, gc->details.deadline, bb, d, sizeof d);
    grpc_byte_buffer_destroy(bb);
    if (code != GRPC_STATUS_OK) {
        send_status(gc, code, d, NULL);
        return;
    }
    if (c.deadline_ms >= 0 && sli_mono_ms() >= c.deadline_ms) { /* expired while waiting */
        send_status(gc, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline passed before the call ran", NULL);
        sli_call_clear(&c);
        return;
    }
    c.send_fn = grpc_send;
    c.recv_fn = grpc_recv;
    c.send_ctx = gc;
    atomic_fetch_add(&s->inflight, 1);
    sli_svc_dispatch(&c);
    bool unary_ok = c.status == 200 && !ep->stream;
    if (unary_ok && !c.reply && c.is_json) { /* returned 0 without a reply: an empty message */
        c.reply = strdup("{}");
        c.reply_len = 2;
    }
    char *detail = c.status == 200 ? NULL : error_detail(&c);
    send_final(gc, status_of(c.status), detail, &c, c.reply, c.reply ? c.reply_len : 0, unary_ok);
    free(detail);
    sli_call_clear(&c);
    atomic_fetch_sub(&s->inflight, 1);
}

/* ---- requests and workers ---- */

static void gcall_free(gcall *gc)
{
    if (!gc)
        return;
    if (gc->call)
        grpc_call_unref(gc->call);
    grpc_call_details_destroy(&gc->details);
    grpc_metadata_array_destroy(&gc->md);
    pthread_mutex_destroy(&gc->send_mu);
    if (gc->cq) {
        grpc_completion_queue_shutdown(gc->cq);
        grpc_completion_queue_destroy(gc->cq);
    }
    free(gc);
}

static bool request_call(gsrv *g)
{
    pthread_mutex_lock(&g->mu);
    bool stopping = g->stopping;
    pthread_mutex_unlock(&g->mu);
    if (stopping)
        return false;
    gcall *gc = calloc(1, sizeof *gc);
    if (!gc)
        return false;
    gc->g = g;
    pthread_mutex_init(&gc->send_mu, NULL);
    grpc_call_details_init(&gc->details);
    grpc_metadata_array_init(&gc->md);
    grpc_completion_queue *cq = gc->cq = grpc_completion_queue_create_for_pluck(NULL);
    pthread_mutex_lock(&g->mu);
    bool ok = cq && !g->stopping;
    if (ok) {
        /* gc belongs to the worker the call is announced to from here on */
        atomic_store_explicit(&gc->ready, 1, memory_order_release);
        ok = grpc_server_request_call(g->server, &gc->call, &gc->details, &gc->md, cq, g->cq, gc) ==
             GRPC_CALL_OK;
    }
    pthread_mutex_unlock(&g->mu);
    if (!ok) /* never handed over (a refused request is not announced) */
        gcall_free(gc);
    return ok;
}

static void *worker_main(void *arg)
{
    sl_service *s = arg;
    gsrv *g = s->grpc;
    sli_thread_name("sl-svc-grpc");
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE || ev.tag == &g->shutdown_tag)
            continue;
        gcall *gc = ev.tag;
        (void)atomic_load_explicit(&gc->ready, memory_order_acquire);
        if (ev.success) {
            request_call(g); /* keep one request per worker outstanding */
            serve_call(s, gc);
        }
        gcall_free(gc); /* a request that never got a call completes unsuccessfully at shutdown */
    }
    return NULL;
}

/* ---- start / stop ---- */

static int bind_address(sl_service *s, char *addr, size_t cap, char *host, size_t hcap)
{
    const char *a = s->grpc_address_opt;
    const char *colon = strrchr(a, ':');
    if (!colon || colon - a >= (long)hcap)
        return sli_err(SL_EINVAL, "service: bad gRPC address '%s' (want host:port or :port)", a);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535)
        return sli_err(SL_EINVAL, "service: bad port in gRPC address '%s'", a);
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = 0;
    snprintf(addr, cap, "%s:%ld", *host ? host : "0.0.0.0", port);
    return 0;
}

int sli_grpc_start(sl_service *s)
{
    char addr[300], host[256];
    int rc = bind_address(s, addr, sizeof addr, host, sizeof host);
    if (rc != 0)
        return rc;
    grpc_init();
    gsrv *g = calloc(1, sizeof *g);
    if (!g) {
        grpc_shutdown();
        return sli_err(SL_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&g->mu, NULL);
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = s->max_body > INT32_MAX ? INT32_MAX : (int)s->max_body},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
    };
    grpc_channel_args cargs = {2, args};
    g->server = grpc_server_create(&cargs, NULL);
    g->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(g->server, g->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(g->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) {
        grpc_server_destroy(g->server);
        grpc_completion_queue_shutdown(g->cq);
        grpc_completion_queue_destroy(g->cq);
        pthread_mutex_destroy(&g->mu);
        free(g);
        grpc_shutdown();
        return sli_err(SL_EIO, "service %s: cannot listen for gRPC on %s (address in use?)",
                       s->name, s->grpc_address_opt);
    }
    grpc_server_start(g->server);
    s->grpc = g;
    snprintf(s->grpc_bound, sizeof s->grpc_bound, "%s:%d", *host ? host : "0.0.0.0", port);
    const char *adv = s->advertise_opt;
    size_t advlen = adv ? strcspn(adv, ":") : 0; /* advertise's host; its port is HTTP's */
    if (adv && advlen)
        snprintf(s->grpc_advertised, sizeof s->grpc_advertised, "%.*s:%d", (int)advlen, adv, port);
    else
        snprintf(s->grpc_advertised, sizeof s->grpc_advertised, "%s:%d",
                 (!*host || !strcmp(host, "0.0.0.0")) ? "127.0.0.1" : host, port);
    g->workers = calloc(s->threads, sizeof *g->workers);
    for (unsigned i = 0; g->workers && i < s->threads; i++) {
        if (!request_call(g) || pthread_create(&g->workers[i], NULL, worker_main, s) != 0)
            break;
        g->nworkers++;
    }
    if (g->nworkers == 0) {
        sli_grpc_stop(s);
        return sli_err(SL_ENOMEM, "service %s: cannot start the gRPC workers", s->name);
    }
    return 0;
}

void sli_grpc_quiesce(sl_service *s)
{
    gsrv *g = s->grpc;
    if (!g || g->shutdown_asked)
        return;
    g->shutdown_asked = true;
    grpc_server_shutdown_and_notify(g->server, g->cq, &g->shutdown_tag);
}

void sli_grpc_stop(sl_service *s)
{
    gsrv *g = s->grpc;
    if (!g)
        return;
    sli_grpc_quiesce(s);
    grpc_server_cancel_all_calls(g->server);
    /* The workers see the shutdown tag and the cancelled requests; the
     * queue's own shutdown then ends their loops. */
    pthread_mutex_lock(&g->mu);
    g->stopping = true;
    grpc_completion_queue_shutdown(g->cq);
    pthread_mutex_unlock(&g->mu);
    for (unsigned i = 0; i < g->nworkers; i++)
        pthread_join(g->workers[i], NULL);
    if (g->nworkers == 0) { /* nobody drained the queue */
        while (grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
    }
    grpc_server_destroy(g->server);
    grpc_completion_queue_destroy(g->cq);
    pthread_mutex_destroy(&g->mu);
    free(g->workers);
    free(g);
    s->grpc = NULL;
    grpc_shutdown();
}
