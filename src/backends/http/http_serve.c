/*
 * http_serve.c - the HTTP side of an http:// subscriber: a libmicrohttpd
 * daemon (one thread per connection, so a request that waits for room or
 * for an ack blocks only its own sender) that turns each
 *   POST /PREFIX/<topic>   (headers as in http_wire.c, body = payload)
 * into a message queued on every group of the topic. Answers:
 *   200  taken (queued in every group; with Sluice-Wait-Ack: 1, acked by all)
 *   400  malformed Sluice- header (bad %-escape, bad number)
 *   404  path outside PREFIX or not a valid topic name
 *   405  not a POST
 *   413  body over max_body
 *   500  a handler nacked (Sluice-Wait-Ack only): send it again
 *   503  no live subscription on the topic, queue full for the sender's
 *        whole Sluice-Timeout, subscription closed with the message unacked
 *        (Sluice-Wait-Ack), or the subscriber is shutting down
 *   504  Sluice-Wait-Ack and no ack within Sluice-Timeout
 * and GET /PREFIX/<topic>/events streams the topic to a browser (http_sse.c).
 * Each answer has a one-line text/plain body saying why.
 */
#include <ctype.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "backends/http/http_listen.h"

#define HL_WAIT_DEFAULT_MS 30000 /* without Sluice-Timeout */
#define HL_WAIT_MAX_MS 300000

typedef struct hl_req {
    char *buf;
    size_t len, cap;
    bool too_big, not_post;
} hl_req;

typedef struct hl_parse {
    sl_msg *m;
    int status;
    char why[200];
} hl_parse;

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

static enum MHD_Result meta_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    hl_parse *p = cls;
    size_t pl = sizeof HTTPB_H_META - 1;
    if (p->status || strncasecmp(key, HTTPB_H_META, pl) != 0)
        return MHD_YES;
    char *k = strdup(key + pl), *v = strdup(value ? value : "");
    if (!k || !v) {
        p->status = 503;
        snprintf(p->why, sizeof p->why, "out of memory");
    } else {
        for (char *c = k; *c; c++) /* names are case-insensitive: raw letters are lower */
            if (*c == '%' && c[1] && c[2])
                c += 2;
            else
                *c = (char)tolower((unsigned char)*c);
        if (!k[0] || httpb_decode(k) || httpb_decode(v)) {
            p->status = 400;
            snprintf(p->why, sizeof p->why, "bad %%-encoding in header %.100s", key);
        } else if (sl_msg_meta_set(p->m, k, v) != 0) {
            p->status = 400;
            snprintf(p->why, sizeof p->why, "bad metadata in header %.100s", key);
        }
    }
    free(k);
    free(v);
    return p->status ? MHD_NO : MHD_YES;
}

static bool header_num(struct MHD_Connection *conn, const char *name, long long min, long long max,
                       long long def, long long *out)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    *out = def;
    if (!v)
        return true;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end || x < min || x > max)
        return false;
    *out = x;
    return true;
}

/* Build the message from the request; p->status set on failure. */
static void parse_msg(struct MHD_Connection *conn, hl_req *r, hl_parse *p)
{
    const char *u = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, HTTPB_H_UUID);
    int rc;
    if (u) {
        char *id = strdup(u);
        if (!id || httpb_decode(id)) {
            free(id);
            p->status = 400;
            snprintf(p->why, sizeof p->why, "bad %%-encoding in " HTTPB_H_UUID);
            return;
        }
        rc = sl_msg_new_with_uuid(&p->m, id, r->buf, r->len);
        free(id);
    } else {
        rc = sl_msg_new(&p->m, r->buf, r->len);
    }
    if (rc) {
        p->status = rc == SL_ENOMEM ? 503 : 400;
        snprintf(p->why, sizeof p->why, "bad message: %s", sl_errmsg());
        return;
    }
    MHD_get_connection_values(conn, MHD_HEADER_KIND, meta_header, p);
}

/* Queue the message, then wait for room or acks as asked. */
static unsigned deliver(hl_listener *L, const char *topic, sl_msg *m, unsigned attempt,
                        bool wait_ack, int64_t wait_ms, const char **why)
{
    int64_t deadline = sli_mono_ms() + wait_ms;
    unsigned status = 0;
    hl_receipt *rcpt = NULL;
    pthread_mutex_lock(&L->mu);
    hl_topic *t = hl_topic_find(L, topic, false);
    for (;;) {
        if (L->stopping) {
            *why = "subscriber shutting down";
            status = 503;
        } else if (!t || t->live == 0) {
            *why = "no subscription on this topic";
            status = 503;
        } else if (hl_has_room(L, t)) {
            break;
        } else if (sli_cond_wait_until(&L->cond, &L->mu, deadline) != 0) {
            *why = "queue full";
            status = 503;
        }
        if (status)
            goto out;
    }
    if (wait_ack && !(rcpt = calloc(1, sizeof *rcpt))) {
        *why = "out of memory";
        status = 503;
        goto out;
    }
    if (rcpt)
        rcpt->refs = 1;
    void *body = sli_msg_body_ref(m);
    int rc = hl_enqueue(L, t, body, attempt > 0 ? attempt - 1 : 0, rcpt);
    sli_msg_body_unref(body);
    if (rc) {
        *why = "out of memory";
        status = 503;
        goto out;
    }
    *why = "taken";
    status = 200;
    while (rcpt && rcpt->result == HL_WAITING && !L->stopping)
        if (sli_cond_wait_until(&L->cond, &L->mu, deadline) != 0)
            break;
    if (rcpt) {
        switch (rcpt->result) {
        case HL_ACKED:
            *why = "acked";
            break;
        case HL_NACKED:
            *why = "nacked by the handler";
            status = 500;
            break;
        case HL_DROPPED:
            *why = "subscription closed before the ack";
            status = 503;
            break;
        default:
            *why = L->stopping ? "subscriber shutting down" : "no ack within Sluice-Timeout";
            status = L->stopping ? 503 : 504;
        }
    }
out:
    if (rcpt) {
        rcpt->result = rcpt->result == HL_WAITING ? HL_DROPPED : rcpt->result;
        hl_receipt_unref(rcpt);
    }
    pthread_mutex_unlock(&L->mu);
    return status;
}

static enum MHD_Result finish(hl_listener *L, struct MHD_Connection *conn, const char *url,
                              hl_req *r)
{
    if (r->not_post)
        return answer(conn, 405, "only POST is served here");
    if (r->too_big)
        return answer(conn, 413, "body over max_body");
    size_t pl = strlen(L->prefix);
    const char *topic = url + pl;
    if (strncmp(url, L->prefix, pl) != 0 || topic[0] != '/' || sli_check_topic(topic + 1) != 0)
        return answer(conn, 404, "no such topic path (expected PREFIX/<topic>)");
    topic++;
    long long attempt, wait_ack, wait_ms;
    if (!header_num(conn, HTTPB_H_ATTEMPT, 1, 1000000000, 1, &attempt) ||
        !header_num(conn, HTTPB_H_WAIT_ACK, 0, 1, 0, &wait_ack) ||
        !header_num(conn, HTTPB_H_TIMEOUT, 0, HL_WAIT_MAX_MS, HL_WAIT_DEFAULT_MS, &wait_ms))
        return answer(conn, 400,
                      "bad " HTTPB_H_ATTEMPT ", " HTTPB_H_WAIT_ACK " or " HTTPB_H_TIMEOUT
                      " header");
    hl_parse p = {0};
    parse_msg(conn, r, &p);
    if (p.status) {
        sl_msg_unref(p.m);
        return answer(conn, (unsigned)p.status, p.why);
    }
    const char *why = "";
    unsigned status = deliver(L, topic, p.m, (unsigned)attempt, wait_ack == 1, wait_ms, &why);
    sl_msg_unref(p.m);
    return answer(conn, status, why);
}

/* GET /PREFIX/<topic>/events: a Server-Sent Events stream (http_sse.c). */
static enum MHD_Result sse_route(hl_listener *L, struct MHD_Connection *conn, const char *url)
{
    static const char sfx[] = "/events";
    size_t pl = strlen(L->prefix), ul = strlen(url), sl = sizeof sfx - 1;
    if (strncmp(url, L->prefix, pl) != 0 || url[pl] != '/' || ul < pl + 1 + sl + 1 ||
        strcmp(url + ul - sl, sfx) != 0)
        return answer(conn, 404, "GET is served only on PREFIX/<topic>/events");
    char topic[300];
    size_t tl = ul - sl - pl - 1;
    if (tl >= sizeof topic)
        return answer(conn, 404, "topic name too long");
    memcpy(topic, url + pl + 1, tl);
    topic[tl] = '\0';
    if (sli_check_topic(topic) != 0)
        return answer(conn, 404, "not a valid topic name");
    pthread_mutex_lock(&L->mu);
    bool stop = L->stopping;
    pthread_mutex_unlock(&L->mu);
    if (stop)
        return answer(conn, 503, "subscriber shutting down");
    return hl_sse_start(L, conn, topic) == MHD_YES ? MHD_YES : MHD_NO;
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
            return sse_route(L, conn, url);
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
    return finish(L, conn, url, r);
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
    L->d =
        MHD_start_daemon(flags, 0, NULL, NULL, on_request, L, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, L,
                         MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                         (size_t)256 * 1024, MHD_OPTION_LISTEN_BACKLOG_SIZE, 256u, MHD_OPTION_END);
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
