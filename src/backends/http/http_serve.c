/*
 * http_serve.c - the HTTP side of an http:// subscriber: a libmicrohttpd
 * daemon (one thread per connection, so a request that waits for room or
 * for an ack blocks only its own sender) that reads each request (headers,
 * a body up to max_body) and hands it whole to hl_handle()
 * (http_request.c: the decoding into a message, the delivery and the
 * answer chosen), then sends that answer (a one-line text/plain body
 * saying why) or starts the Server-Sent Events stream (http_sse.c).
 */
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "backends/http/http_listen.h"

typedef struct hl_req {
    char *buf;
    size_t len, cap;
    bool too_big, not_post;
} hl_req;

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *text)
{
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    if (!buf)
        return MHD_NO;
    memcpy(buf, text, n);
    buf[n] = '\n';
    struct MHD_Response *r = MHD_create_response_from_buffer(n + 1, buf, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (status == 503)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The request's headers, for hl_handle (borrowed from the connection). */
typedef struct hdrs {
    hl_header *h;
    size_t n, cap;
    bool oom;
} hdrs;

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    (void)kind;
    hdrs *v = cls;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        hl_header *h = realloc(v->h, cap * sizeof *h);
        if (!h) {
            v->oom = true;
            return MHD_NO;
        }
        v->h = h;
        v->cap = cap;
    }
    v->h[v->n++] = (hl_header){key, value ? value : ""};
    return MHD_YES;
}

/* Hand the whole request to hl_handle and answer as it says. */
static enum MHD_Result finish(hl_listener *L, struct MHD_Connection *conn, const char *url,
                              const char *method, hl_req *r)
{
    hdrs v = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect, &v);
    if (v.oom) {
        free(v.h);
        return answer(conn, 503, "out of memory");
    }
    hl_request q = {.method = method,
                    .url = url,
                    .headers = v.h,
                    .n_headers = v.n,
                    .body = r ? r->buf : NULL,
                    .len = r && r->buf ? r->len : 0,
                    .too_big = r && r->too_big};
    hl_answer a;
    hl_handle(L, &q, &a);
    free(v.h);
    if (a.sse)
        return hl_sse_start(L, conn, a.topic) == MHD_YES ? MHD_YES : MHD_NO;
    return answer(conn, a.status, a.why);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)version;
    hl_listener *L = cls;
    hl_req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        *con_cls = r;
        r->not_post = strcmp(method, MHD_HTTP_METHOD_POST) != 0;
        if (!strcmp(method, MHD_HTTP_METHOD_GET))
            return finish(L, conn, url, method, NULL); /* the events stream, or why not */
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > L->max_body)
            r->too_big = true;
        return MHD_YES;
    }
    if (*data_size) {
        size_t n = *data_size;
        *data_size = 0;
        if (r->too_big || r->not_post)
            return MHD_YES; /* read and dropped: the answer says why */
        if (r->len + n > L->max_body) {
            r->too_big = true;
            free(r->buf);
            r->buf = NULL;
            return MHD_YES;
        }
        if (r->len + n > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n)
                cap *= 2;
            char *b = realloc(r->buf, cap);
            if (!b)
                return MHD_NO;
            r->buf = b;
            r->cap = cap;
        }
        memcpy(r->buf + r->len, data, n);
        r->len += n;
        return MHD_YES;
    }
    return finish(L, conn, url, method, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    hl_req *r = *con_cls;
    if (r) {
        free(r->buf);
        free(r);
        *con_cls = NULL;
    }
}

/* libmicrohttpd's own %-decoding, but a %00 becomes DEL, which no topic
 * holds: decoded as NUL, it cut "/p/orders%00x" to the topic "orders". */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls, (void)conn;
    size_t n = MHD_http_unescape(s);
    for (size_t i = 0; i < n; i++)
        if (!s[i])
            s[i] = 0x7f;
    return n;
}

int hl_serve_start(hl_listener *L, const httpb_opts *o)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->listen_port);
    int g = getaddrinfo(o->listen_host, port, &hints, &ai);
    if (g != 0)
        return sli_err(SL_EINVAL, "http://: cannot resolve listen address %s: %s", o->listen_host,
                       gai_strerror(g));
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    L->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, L, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, L, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)256 * 1024,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 256u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!L->d)
        return sli_err(SL_EBUSY,
                       "http://: cannot listen on %s:%d (in use, or not a local "
                       "address)",
                       o->listen_host, o->listen_port);
    return 0;
}

void hl_serve_stop(hl_listener *L)
{
    if (L->d)
        MHD_stop_daemon(L->d);
    L->d = NULL;
}
