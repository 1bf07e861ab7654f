/*
 * deadline.c - web.read_timeout and web.write_timeout for the HTTP server.
 *
 * libmicrohttpd's connection timeout is an idle timeout: a client that
 * sends one byte of its request per period (slowloris), or reads one
 * byte of the answer per period, holds a connection and its memory
 * forever. Here each connection has a deadline:
 *   - read: its whole request - headers and body - must be in within
 *     read_timeout of the connection's accept; on a kept-alive
 *     connection, within idle_timeout + read_timeout of the previous
 *     answer's end (the idle part is the time a client may wait before
 *     its next request);
 *   - write: once an answer is queued it must be sent within
 *     write_timeout. Event streams (SSE) have no write deadline: they end
 *     when the peer goes (sse.c).
 * The time a request waits for its loop's commit (publish.c) counts
 * for neither, nor does a server that is behind: a connection past its
 * deadline is cut only when the client is the slow side (nothing of the
 * request waits unread in the socket; the answer is stuck in the send
 * queue). A thread checks the deadlines four times a second and shuts
 * down the socket of a connection past its deadline; libmicrohttpd
 * then sees the socket fail and closes the connection as for any dead
 * peer. The request path moves a connection's deadline three times per
 * request with atomic stores, no lock (the mutex guards the list only,
 * changed at accept and close); the checker claims an expired deadline
 * with a compare-and-swap, so a deadline the connection just moved is
 * never acted on. Each connection's record holds a duplicate of its socket (closed
 * with the record), so a socket number reused after close is never shut
 * down by mistake. Timeouts are counted in /metrics
 * (sluice_http_timeouts_total).
 */
#include <fcntl.h>
#include <pthread.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "sluice/ctx.h"

#define TICK_MS 250

typedef struct wconn {
    int fd;                      /* duplicate of the connection's socket, -1 when none */
    _Atomic int64_t deadline_ms; /* monotonic; 0: none */
    _Atomic int kind;            /* 0 read, 1 write: what the deadline is for */
    _Atomic bool stream;
    struct wconn *prev, *next; /* guarded by nf_deadline.mu */
} wconn;

struct nf_deadline {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    pthread_t thread;
    wconn *head;
    int64_t read_ms, write_ms, idle_ms;
    nf_metrics *m;
};

/* Past its deadline, is the client the slow side? A request's bytes still
 * waiting in the socket (FIONREAD) mean the server is behind (its threads
 * busy on a loaded machine): not the client's fault, the deadline waits.
 * Likewise an answer with nothing left in the send queue (SIOCOUTQ) is
 * not stuck at the client. */
static bool client_is_late(const wconn *w, int kind)
{
    int n = 0;
    if (kind == 0)
        return ioctl(w->fd, FIONREAD, &n) != 0 || n == 0;
    return ioctl(w->fd, SIOCOUTQ, &n) != 0 || n > 0;
}

static void *watch_main(void *arg)
{
    nf_deadline *d = arg;
    pthread_setname_np(pthread_self(), "nf-http-deadline");
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        struct timespec ts = nf_mono_deadline(TICK_MS * 1000L);
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
        int64_t now = sl_ctx_now_ms();
        int cut[2] = {0, 0};
        for (wconn *w = d->head; w; w = w->next) {
            int64_t dl = atomic_load(&w->deadline_ms);
            if (!dl || now < dl || w->fd < 0)
                continue;
            int kind = atomic_load(&w->kind);
            if (client_is_late(w, kind) &&
                atomic_compare_exchange_strong(&w->deadline_ms, &dl, 0)) {
                shutdown(w->fd, SHUT_RDWR);
                atomic_fetch_add(&d->m->http_timeouts[kind], 1);
                cut[kind]++;
            }
        }
        if (cut[0] || cut[1]) {
            pthread_mutex_unlock(&d->mu);
            nf_log(SL_LOG_WARN,
                   "closed %d connection(s) whose request did not arrive within web.read_timeout "
                   "and %d whose answer was not taken within web.write_timeout",
                   cut[0], cut[1]);
            pthread_mutex_lock(&d->mu);
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

int nf_deadline_start(nf_deadline **out, const nf_config *c, nf_metrics *m)
{
    nf_deadline *d = calloc(1, sizeof *d);
    if (!d)
        return SL_ENOMEM;
    d->read_ms = (int64_t)c->read_timeout * 1000;
    d->write_ms = (int64_t)c->write_timeout * 1000;
    d->idle_ms = (int64_t)c->idle_timeout * 1000;
    d->m = m;
    nf_cond_init_mono(&d->cv);
    pthread_mutex_init(&d->mu, NULL);
    if (pthread_create(&d->thread, NULL, watch_main, d)) {
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        free(d);
        return SL_ENOMEM;
    }
    *out = d;
    return 0;
}

void nf_deadline_stop(nf_deadline *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    while (d->head) { /* none once the daemon stopped; kept safe anyway */
        wconn *w = d->head;
        d->head = w->next;
        if (w->fd >= 0)
            close(w->fd);
        free(w);
    }
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void nf_deadline_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    nf_deadline *d = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        wconn *w = calloc(1, sizeof *w);
        *socket_context = w;
        if (!w)
            return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        w->fd = ci ? fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
        atomic_init(&w->deadline_ms, d->read_ms ? sl_ctx_now_ms() + d->read_ms : 0);
        pthread_mutex_lock(&d->mu);
        w->next = d->head;
        if (d->head)
            d->head->prev = w;
        d->head = w;
        pthread_mutex_unlock(&d->mu);
        return;
    }
    wconn *w = *socket_context; /* MHD_CONNECTION_NOTIFY_CLOSED */
    *socket_context = NULL;
    if (!w)
        return;
    pthread_mutex_lock(&d->mu);
    if (w->prev)
        w->prev->next = w->next;
    else
        d->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&d->mu);
    if (w->fd >= 0)
        close(w->fd);
    free(w);
}

static wconn *record(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void nf_deadline_set(nf_deadline *d, struct MHD_Connection *conn, nf_deadline_phase phase)
{
    wconn *w = d ? record(conn) : NULL;
    if (!w)
        return;
    /* kind before the deadline it qualifies: the checker reads them in the
     * other order (both sequentially consistent) */
    switch (phase) {
    case NF_DL_REQUEST_IN: /* the request is read: no read deadline */
        atomic_store(&w->deadline_ms, 0);
        break;
    case NF_DL_STREAM:
        atomic_store(&w->stream, true);
        atomic_store(&w->deadline_ms, 0);
        break;
    case NF_DL_RESPONDING:
        atomic_store(&w->kind, 1);
        atomic_store(&w->deadline_ms,
                     !atomic_load(&w->stream) && d->write_ms ? sl_ctx_now_ms() + d->write_ms : 0);
        break;
    case NF_DL_DONE: /* the next request of a kept-alive connection */
        atomic_store(&w->kind, 0);
        atomic_store(&w->stream, false);
        atomic_store(&w->deadline_ms, d->read_ms ? sl_ctx_now_ms() + d->idle_ms + d->read_ms : 0);
        break;
    }
}
