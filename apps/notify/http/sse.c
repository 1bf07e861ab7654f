/*
 * sse.c - server-sent events for the web inbox (GET /api/msg/stream?uid=).
 *
 * A stream is a client record with an output buffer. libmicrohttpd pulls
 * bytes through a content-reader callback; when the buffer is empty the
 * callback suspends the connection (so no pool thread blocks or spins) and
 * nf_hub_push resumes it after appending an event. A pinger thread writes a
 * comment line every 15 s so proxies keep the stream open and peers that
 * vanished without a word are noticed. A peer that closes its end is
 * noticed at once: libmicrohttpd does not watch a suspended connection,
 * so the pinger also waits (epoll, EPOLLRDHUP) on a duplicate of every
 * stream's socket and ends the stream whose peer hung up. The duplicate
 * belongs to the stream (closed in reader_free), so a socket number reused
 * by a new connection is never watched by mistake; events carry the
 * stream's serial number, looked up under the hub mutex, never a pointer.
 * The hub mutex guards the client list and every buffer;
 * suspend happens under it, and resume only for a client marked suspended,
 * so a wake-up is never lost. A client whose buffer passes 256 KiB (a
 * reader that stopped reading) is ended: its socket is shut down, which
 * fails libmicrohttpd's next write so that it lets the connection go (the
 * end-of-stream that an empty buffer gives never comes for a reader whose
 * buffer never empties, and streams have no idle or write timeout).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "sluice/ctx.h"

#define SSE_MAX_BUF (256 * 1024)
#define SSE_PING_MS 15000

typedef struct client {
    nf_hub *hub;
    struct MHD_Connection *conn;
    int64_t uid;
    char *buf;
    size_t len, cap;
    bool suspended, closed;
    int wfd;     /* duplicate of the socket, watched for the peer's hang-up (-1: none) */
    uint64_t id; /* serial number: the epoll event's key */
    struct client *prev, *next;
} client;

/* A tap: a listener in this process (the gRPC Stream RPC) called with each
 * event of its uid under the hub mutex (it must only queue), and with
 * event NULL when the hub shuts down. */
struct nf_tap {
    int64_t uid;
    nf_tap_fn fn;
    void *ctx;
    struct nf_tap *next;
};

struct nf_hub {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    client *head;
    nf_tap *taps;
    bool stopping;
    pthread_t pinger;
    nf_metrics *m;
    int ep;   /* epoll: hang-ups of the streams' peers, and evfd */
    int evfd; /* eventfd that wakes the pinger (stop) */
    uint64_t next_id;
};

/* Under h->mu. */
static void append(client *c, const char *s, size_t n)
{
    if (c->closed)
        return;
    if (c->len + n > SSE_MAX_BUF) {
        c->closed = true;
        if (c->wfd >= 0)
            shutdown(c->wfd, SHUT_RDWR);
        return;
    }
    if (c->len + n > c->cap) {
        size_t ncap = (c->len + n) * 2;
        char *nb = realloc(c->buf, ncap);
        if (!nb) {
            c->closed = true;
            return;
        }
        c->buf = nb;
        c->cap = ncap;
    }
    memcpy(c->buf + c->len, s, n);
    c->len += n;
}

/* Under h->mu. */
static void wake(client *c)
{
    if (c->suspended) {
        c->suspended = false;
        MHD_resume_connection(c->conn);
    }
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    client *c = cls;
    nf_hub *h = c->hub;
    pthread_mutex_lock(&h->mu);
    ssize_t ret;
    if (c->len > 0) {
        size_t n = c->len < max ? c->len : max;
        memcpy(out, c->buf, n);
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
        ret = (ssize_t)n;
    } else if (c->closed || h->stopping) {
        ret = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        c->suspended = true;
        MHD_suspend_connection(c->conn);
        ret = 0;
    }
    pthread_mutex_unlock(&h->mu);
    return ret;
}

static void reader_free(void *cls)
{
    client *c = cls;
    nf_hub *h = c->hub;
    pthread_mutex_lock(&h->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->wfd >= 0) {
        epoll_ctl(h->ep, EPOLL_CTL_DEL, c->wfd, NULL);
        close(c->wfd);
    }
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->mu);
    atomic_fetch_sub(&h->m->sse_clients, 1);
    free(c->buf);
    free(c);
}

/* Under h->mu: end the streams whose peers hung up (events from epoll). */
static void hung_up(nf_hub *h, const struct epoll_event *ev, int n)
{
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 == 0) /* evfd: woken to stop */
            continue;
        for (client *c = h->head; c; c = c->next)
            if (c->id == ev[i].data.u64) {
                epoll_ctl(h->ep, EPOLL_CTL_DEL, c->wfd, NULL); /* level-triggered: once is enough */
                c->closed = true;
                wake(c);
                break;
            }
    }
}

static void *pinger_main(void *arg)
{
    nf_hub *h = arg;
    pthread_setname_np(pthread_self(), "nf-sse-ping");
    int64_t next_ping = sl_ctx_now_ms() + SSE_PING_MS;
    pthread_mutex_lock(&h->mu);
    while (!h->stopping) {
        int64_t left = next_ping - sl_ctx_now_ms();
        pthread_mutex_unlock(&h->mu);
        struct epoll_event ev[32];
        int n = epoll_wait(h->ep, ev, 32, left > 0 ? (int)left : 0);
        pthread_mutex_lock(&h->mu);
        if (h->stopping)
            break;
        if (n > 0)
            hung_up(h, ev, n);
        if (sl_ctx_now_ms() < next_ping)
            continue;
        next_ping = sl_ctx_now_ms() + SSE_PING_MS;
        for (client *c = h->head; c; c = c->next) {
            append(c, ": ping\n\n", 8);
            wake(c);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* Wake the pinger so that it sees h->stopping. */
static void poke(nf_hub *h)
{
    uint64_t one = 1;
    if (write(h->evfd, &one, sizeof one) < 0) {
        /* the counter is full: the pinger is awake already */
    }
}

int nf_hub_new(nf_hub **out, nf_metrics *m)
{
    nf_hub *h = calloc(1, sizeof *h);
    if (!h)
        return SL_ENOMEM;
    h->m = m;
    h->ep = epoll_create1(EPOLL_CLOEXEC);
    h->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (h->ep < 0 || h->evfd < 0 || epoll_ctl(h->ep, EPOLL_CTL_ADD, h->evfd, &ev)) {
        if (h->ep >= 0)
            close(h->ep);
        if (h->evfd >= 0)
            close(h->evfd);
        free(h);
        return SL_EIO;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cond, NULL);
    if (pthread_create(&h->pinger, NULL, pinger_main, h) != 0) {
        close(h->ep);
        close(h->evfd);
        free(h);
        return SL_ENOMEM;
    }
    *out = h;
    return 0;
}

void nf_hub_shutdown(nf_hub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    for (client *c = h->head; c; c = c->next) {
        c->closed = true;
        wake(c);
    }
    for (nf_tap *t = h->taps; t; t = t->next)
        t->fn(t->ctx, NULL, NULL);
    pthread_cond_broadcast(&h->cond);
    poke(h);
    pthread_mutex_unlock(&h->mu);
    /* Give the resumed streams a moment to end before the daemon stops. */
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&h->mu);
        bool empty = h->head == NULL;
        pthread_mutex_unlock(&h->mu);
        if (empty)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void nf_hub_free(nf_hub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_cond_broadcast(&h->cond);
    poke(h);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->pinger, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cond);
    close(h->ep);
    close(h->evfd);
    free(h);
}

bool nf_hub_has_streams(const nf_hub *h)
{
    return h && atomic_load(&h->m->sse_clients) > 0;
}

void nf_hub_push(nf_hub *h, int64_t uid, const char *event, const char *json)
{
    if (!h)
        return;
    char head[64];
    int hn = snprintf(head, sizeof head, "event: %s\ndata: ", event);
    pthread_mutex_lock(&h->mu);
    for (client *c = h->head; c; c = c->next) {
        if (c->uid != uid)
            continue;
        append(c, head, (size_t)hn);
        append(c, json, strlen(json));
        append(c, "\n\n", 2);
        wake(c);
    }
    for (nf_tap *t = h->taps; t; t = t->next)
        if (t->uid == uid)
            t->fn(t->ctx, event, json);
    pthread_mutex_unlock(&h->mu);
}

nf_tap *nf_hub_tap(nf_hub *h, int64_t uid, nf_tap_fn fn, void *ctx)
{
    nf_tap *t = h ? calloc(1, sizeof *t) : NULL;
    if (!t)
        return NULL;
    *t = (nf_tap){uid, fn, ctx, NULL};
    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        free(t);
        return NULL;
    }
    t->next = h->taps;
    h->taps = t;
    atomic_fetch_add(&h->m->sse_clients, 1); /* events are made while anyone listens */
    pthread_mutex_unlock(&h->mu);
    return t;
}

void nf_hub_untap(nf_hub *h, nf_tap *t)
{
    if (!h || !t)
        return;
    pthread_mutex_lock(&h->mu);
    for (nf_tap **p = &h->taps; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            atomic_fetch_sub(&h->m->sse_clients, 1);
            break;
        }
    pthread_mutex_unlock(&h->mu);
    free(t);
}

struct MHD_Response *nf_hub_open_stream(nf_hub *h, struct MHD_Connection *conn, int64_t uid,
                                        const char *hello_json)
{
    client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->hub = h;
    c->conn = conn;
    c->uid = uid;
    c->wfd = -1;
    static const char retry[] = "retry: 2000\n\n";
    append(c, retry, sizeof retry - 1);
    append(c, "event: hello\ndata: ", 19);
    append(c, hello_json, strlen(hello_json));
    append(c, "\n\n", 2);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, c, reader_free);
    if (!r) {
        free(c->buf);
        free(c);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    atomic_fetch_add(&h->m->sse_clients, 1);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    pthread_mutex_lock(&h->mu);
    c->id = ++h->next_id;
    c->wfd = ci ? fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = c->id};
    if (c->wfd >= 0 && epoll_ctl(h->ep, EPOLL_CTL_ADD, c->wfd, &ev)) {
        close(c->wfd); /* not watched: noticed at the next ping, as before */
        c->wfd = -1;
    }
    c->next = h->head;
    if (h->head)
        h->head->prev = c;
    h->head = c;
    pthread_mutex_unlock(&h->mu);
    return r;
}
