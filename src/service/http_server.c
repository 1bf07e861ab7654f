/*
 * http_server.c - the HTTP transport of sl_service, on libmicrohttpd,
 * wire-compatible with go-micro's HTTP server (see sluice/service.h).
 *
 * One daemon with a pool of worker threads (opts.threads) on epoll. A call
 * is read whole (bounded by max_body: 413 as soon as the Content-Length or
 * the body passes it), decoded by its content type, run through the
 * wrappers and handler on the worker thread, and answered from the reply
 * buffer without a copy. A streaming endpoint's handler runs on a thread of
 * its own, feeding a bounded queue (stream.c) that the chunked response
 * reads; when the client goes away the queue closes, the handler's next
 * send fails, and the response's free callback joins the thread. The 200
 * of a stream waits for the handler's first message: a call refused before
 * (by a wrapper or the handler) is answered with its error status.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "service/svc_int.h"

typedef struct req {
    char *body;
    size_t len, cap;
    bool too_big, answered;
} req;

typedef struct stream_job {
    sl_call call;
    svc_stream *st;
    pthread_t t;
    bool running; /* t was started: stream_free joins it */
} stream_job;

static enum MHD_Result queue_buf(struct MHD_Connection *conn, int status, char *buf, size_t len,
                                 const char *ctype, const sl_call *c)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    for (size_t i = 0; c && i < c->nresp_h; i++)
        MHD_add_response_header(r, c->resp_h[i].key, c->resp_h[i].value);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer_error(sl_service *s, struct MHD_Connection *conn, int status,
                                    const char *detail)
{
    size_t len;
    char *e = sli_svc_error_json(s->name, status, detail, &len);
    if (!e)
        return MHD_NO;
    atomic_fetch_add(&s->errors, 1);
    return queue_buf(conn, status, e, len, "application/json", NULL);
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    sli_call_add_req_header(cls, key, value ? value : "");
    return MHD_YES;
}

/* "/" + Micro-Endpoint, "/Service/Method" or "/Service.Method". */
static int endpoint_of(struct MHD_Connection *conn, const char *url, char *out, size_t cap)
{
    if (strcmp(url, "/") == 0) {
        const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Micro-Endpoint");
        if (!h || !*h || strlen(h) >= cap)
            return -1;
        snprintf(out, cap, "%s", h);
        return 0;
    }
    if (strlen(url) >= cap)
        return -1;
    snprintf(out, cap, "%s", url + 1);
    char *slash = strchr(out, '/');
    if (slash) {
        *slash = '.';
        if (strchr(slash + 1, '/'))
            return -1;
    }
    return strchr(out, '.') ? 0 : -1;
}

static void *stream_main(void *arg)
{
    stream_job *j = arg;
    sli_thread_name("sl-svc-stream");
    sli_svc_dispatch(&j->call);
    /* after a first message the 200 went out: the error is the stream's last message;
       before one, start_stream answers with the error itself */
    if (j->call.status != 200 && j->call.reply && sli_stream_sent(j->st, false))
        sli_stream_send(j->st, j->call.reply, j->call.reply_len);
    sli_stream_done(j->st);
    atomic_fetch_sub(&j->call.svc->inflight, 1);
    return NULL;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_job *j = cls;
    bool end;
    size_t n = sli_stream_read(j->st, buf, max, &end);
    return end ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream_job *j = cls;
    sli_stream_close(j->st);
    if (j->running)
        pthread_join(j->t, NULL);
    sli_call_clear(&j->call);
    sli_stream_free(j->st);
    free(j);
}

static enum MHD_Result start_stream(sl_service *s, struct MHD_Connection *conn, sl_call *c)
{
    const char *accept = sl_call_meta(c, "Accept");
    bool sse = accept && strstr(accept, "text/event-stream");
    stream_job *j = calloc(1, sizeof *j);
    if (!j)
        return MHD_NO;
    j->call = *c;
    j->st = sli_stream_new(&j->call, sse);
    if (!j->st) {
        free(j);
        return MHD_NO;
    }
    j->call.stream = j->st;
    memset(c, 0, sizeof *c); /* owned by the job now */
    atomic_fetch_add(&s->inflight, 1);
    if (pthread_create(&j->t, NULL, stream_main, j) != 0) {
        atomic_fetch_sub(&s->inflight, 1);
        stream_free(j);
        return answer_error(s, conn, 503, "cannot start the stream");
    }
    j->running = true;
    /* The status goes with the first message: until the handler sends one or returns, a
       wrapper or the handler may still refuse the call. This worker waits here as the
       content reader waits for every later message. */
    if (!sli_stream_sent(j->st, true) && j->call.status != 200) {
        pthread_join(j->t, NULL); /* it has ended: the call is ours to read */
        j->running = false;
        char *e = j->call.reply;
        j->call.reply = NULL;
        enum MHD_Result ret =
            e ? queue_buf(conn, j->call.status, e, j->call.reply_len, "application/json", &j->call)
              : MHD_NO;
        stream_free(j);
        return ret;
    }
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, j, stream_free);
    if (!r) {
        stream_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            sse ? "text/event-stream" : "application/x-ndjson");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static bool ctype_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    return strncasecmp(ct, want, n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

static enum MHD_Result handle(sl_service *s, struct MHD_Connection *conn, const char *url,
                              const char *method, req *r)
{
    if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0) {
        size_t len;
        char *text = sli_svc_metrics_text(s, &len);
        return text ? queue_buf(conn, 200, text, len, "text/plain; version=0.0.4", NULL) : MHD_NO;
    }
    if (strcmp(method, "POST") != 0)
        return answer_error(s, conn, 405, "use POST (GET only for /metrics)");
    char endpoint[256];
    if (endpoint_of(conn, url, endpoint, sizeof endpoint) != 0)
        return answer_error(s, conn, 400,
                            "no endpoint: POST / with a Micro-Endpoint header, or "
                            "POST /Service/Method");
    svc_endpoint *ep = sli_svc_find(s, endpoint);
    if (!ep) {
        atomic_fetch_add(&s->unknown, 1);
        char d[400];
        snprintf(d, sizeof d, "service %s has no endpoint %s", s->name, endpoint);
        return answer_error(s, conn, 404, d);
    }
    const char *ct =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || !*ct)
        ct = "application/json";
    bool is_json = ctype_is(ct, "application/json");
    if (!is_json && !ctype_is(ct, "application/protobuf") &&
        !ctype_is(ct, "application/x-protobuf") && !ctype_is(ct, "application/octet-stream")) {
        char d[300];
        snprintf(d, sizeof d,
                 "unsupported content type '%.128s' (application/json or "
                 "application/protobuf)",
                 ct);
        return answer_error(s, conn, 415, d);
    }
    sl_call c;
    sli_call_init(&c, s, ep->name, ct);
    char *semi = strchr(c.ctype, ';');
    if (semi)
        *semi = 0;
    c.ep = ep;
    c.is_json = is_json;
    c.body = r->body;
    c.len = r->len;
    r->body = NULL;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header, &c);
    const char *to = sl_call_meta(&c, "Micro-Timeout");
    if (!to)
        to = sl_call_meta(&c, "Timeout");
    int64_t ms;
    if (to && sli_svc_parse_timeout(to, &ms) != 0) {
        sli_call_clear(&c);
        return answer_error(s, conn, 400,
                            "bad Timeout header (a Go duration like 1.5s or 250ms, "
                            "or nanoseconds)");
    }
    if (to)
        c.deadline_ms = sli_mono_ms() + ms;
    if (is_json) {
        json_error_t jerr;
        c.json = c.len ? json_loadb(c.body, c.len, JSON_DECODE_ANY, &jerr) : json_object();
        if (!c.json) {
            char d[400];
            snprintf(d, sizeof d, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                     jerr.text);
            sli_call_clear(&c);
            return answer_error(s, conn, 400, d);
        }
    }
    if (ep->stream)
        return start_stream(s, conn, &c);
    atomic_fetch_add(&s->inflight, 1);
    sli_svc_dispatch(&c);
    char *out = c.reply;
    size_t len = c.reply_len;
    c.reply = NULL;
    if (!out && c.status == 200) { /* returned 0 without a reply: an empty message */
        out = strdup(c.is_json ? "{}" : "");
        len = c.is_json ? 2 : 0;
    }
    enum MHD_Result ret = out ? queue_buf(conn, c.status, out, len,
                                          c.status == 200 ? c.ctype : "application/json", &c)
                              : MHD_NO;
    sli_call_clear(&c);
    atomic_fetch_sub(&s->inflight, 1);
    return ret;
}

/* A draining service takes no new connection. MHD_quiesce_daemon is not used: with epoll
   and a thread pool it can abort the process (its threads and the caller both remove the
   listen socket from the epoll sets, and the loser panics). */
static enum MHD_Result accept_cb(void *cls, const struct sockaddr *addr, socklen_t len)
{
    (void)addr;
    (void)len;
    sl_service *s = cls;
    return atomic_load(&s->http_draining) ? MHD_NO : MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    sl_service *s = cls;
    req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->max_body) {
            r->too_big = r->answered = true;
            char d[128];
            snprintf(d, sizeof d, "request body over the limit of %zu bytes", s->max_body);
            return answer_error(s, conn, 413, d);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->answered)
            return MHD_YES; /* discarded: the answer is queued */
        if (r->len + n > s->max_body) {
            r->too_big = r->answered = true;
            free(r->body);
            r->body = NULL;
            char d[128];
            snprintf(d, sizeof d, "request body over the limit of %zu bytes", s->max_body);
            return answer_error(s, conn, 413, d);
        }
        if (r->len + n > r->cap) {
            size_t cap = r->cap ? r->cap : 1024;
            while (cap < r->len + n)
                cap *= 2;
            char *nb = realloc(r->body, cap);
            if (!nb)
                return MHD_NO;
            r->body = nb;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;
    r->answered = true;
    return handle(s, conn, url, method, r);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    req *r = *con_cls;
    if (r) {
        free(r->body);
        free(r);
        *con_cls = NULL;
    }
}

static int parse_bind(const char *addr, struct sockaddr_in *sa, char *host, size_t hostcap)
{
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return sli_err(SL_EINVAL, "service: address '%s' is not host:port", addr);
    size_t hl = (size_t)(colon - addr);
    if (hl >= hostcap)
        return sli_err(SL_EINVAL, "service: address '%s' too long", addr);
    memcpy(host, addr, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535)
        return sli_err(SL_EINVAL, "service: bad port in address '%s'", addr);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (!*host || strcmp(host, "0.0.0.0") == 0) {
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
        return 0;
    }
    if (inet_pton(AF_INET, host, &sa->sin_addr) == 1)
        return 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return sli_err(SL_EINVAL, "service: cannot resolve host '%s'", host);
    sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

int sli_http_start(sl_service *s)
{
    struct sockaddr_in sa;
    char host[256];
    int rc = parse_bind(s->address_opt, &sa, host, sizeof host);
    if (rc != 0)
        return rc;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_TURBO;
    if (s->http_external)
        flags = MHD_USE_ITC;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, accept_cb, s, access_cb, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, s->http_external ? 1u : (unsigned)s->threads,
        MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s, MHD_OPTION_CONNECTION_TIMEOUT, 120u,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!d)
        return sli_err(SL_EIO, "service %s: cannot listen on %s (address in use?)", s->name,
                       s->address_opt);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : ntohs(sa.sin_port);
    snprintf(s->bound, sizeof s->bound, "%s:%u", *host ? host : "0.0.0.0", port);
    if (s->advertise_opt && strchr(s->advertise_opt, ':'))
        snprintf(s->advertised, sizeof s->advertised, "%s", s->advertise_opt);
    else
        snprintf(s->advertised, sizeof s->advertised, "%s:%u",
                 s->advertise_opt                           ? s->advertise_opt
                 : (!*host || strcmp(host, "0.0.0.0") == 0) ? "127.0.0.1"
                                                            : host,
                 port);
    s->http = d;
    return 0;
}

void sli_http_quiesce(sl_service *s)
{
    if (!s->http)
        return;
    atomic_store(&s->http_draining, true);
}

void *sli_http_daemon(sl_service *s)
{
    return s->http;
}

void sli_http_stop(sl_service *s)
{
    if (s->http)
        MHD_stop_daemon(s->http);
    s->http = NULL;
}
