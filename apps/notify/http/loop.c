/*
 * loop.c - the HTTP server's event loops: one thread per web.threads, each
 * running its own libmicrohttpd daemon in external-polling epoll mode on
 * one shared listening socket, and committing what its requests produced in
 * ONE queue publish per loop iteration (the group commit of publish.c).
 *
 * Why not libmicrohttpd's thread pool: its workers give no hook at the end
 * of an iteration, so a POST had to be suspended, handed to a publisher
 * thread and resumed from there (two thread hops, an epoll_ctl pair and an
 * eventfd write per request). Here a loop is the model of Redis'
 * appendfsync-always loop: wait for readiness, MHD_run() reads every ready
 * request (the producing routes append their message to the loop's batch
 * and leave the request unanswered), publish the batch with one
 * sl_publish() per topic (one commit, one fsync on sqlite://; concurrent
 * loops share it through the backend's group commit), fill every answer,
 * and MHD_run() again, which sends them. A request whose answer is not
 * queued yet is simply called again by libmicrohttpd on the next run, so
 * the producing path never suspends. Event streams (sse.c) still suspend
 * and are resumed from other threads: the daemon's inter-thread channel is
 * in its epoll set, on which the loop waits (MHD_run_wait).
 *
 * The listening socket is ours and shared by the daemons (each accepts from
 * it), so a second server on the same port still fails to bind. Limits that
 * libmicrohttpd keeps per daemon are kept here for the whole server: open
 * connections per client address (web.max_conns_per_ip) and in total, in
 * the accept-policy callback; a connection counted there is released when
 * libmicrohttpd reports it closed, or after the run when it never started.
 *
 * Stop: the loops see the flag within a tick (LOOP_TICK_MS), finish their
 * batch (every request taken is answered), and exit; then the daemons are quiesced (the
 * shared socket is closed once, by us) and stopped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"

#define LOOP_MAX_CONNS 4096u /* open connections of the whole server */
#define LOOP_TICK_MS 100 /* longest wait: how soon a loop sees a stop */
#define IP_BUCKETS 256

typedef struct ip_key {
    int family;
    unsigned char addr[16];
} ip_key;

typedef struct ip_count {
    ip_key key;
    unsigned n;
    struct ip_count *next;
} ip_count;

typedef struct conn_limits {
    pthread_mutex_t mu;
    unsigned per_ip; /* 0: no per-address limit */
    unsigned total;
    ip_count *bucket[IP_BUCKETS];
} conn_limits;

struct nf_loop {
    nf_loops *all;
    nf_server *srv;
    nf_batch batch;
    struct MHD_Daemon *d;
    pthread_t thread;
    bool started;
    /* an address counted by accept_policy whose connection has not started
     * yet (the accept and the start notification run back to back on this
     * thread) */
    bool reserved;
    ip_key reserved_key;
};

struct nf_loops {
    nf_app *app;
    int listen_fd;
    unsigned port;
    _Atomic bool stop;
    conn_limits lim;
    size_t n;
    nf_loop *loop; /* n of them */
};

static const char counted_mark; /* socket context of a connection counted in the limits */

nf_server *nf_loop_server(nf_loop *l)
{
    return l->srv;
}

nf_batch *nf_loop_batch(nf_loop *l)
{
    return &l->batch;
}

/* ---- connection limits ---- */

static bool key_of(const struct sockaddr *sa, ip_key *k)
{
    memset(k, 0, sizeof *k);
    if (!sa)
        return false;
    k->family = sa->sa_family;
    if (sa->sa_family == AF_INET) {
        memcpy(k->addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(k->addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static ip_count **slot_of(conn_limits *lim, const ip_key *k)
{
    unsigned h = (unsigned)k->family;
    for (size_t i = 0; i < sizeof k->addr; i++)
        h = h * 31u + k->addr[i];
    ip_count **p = &lim->bucket[h % IP_BUCKETS];
    while (*p && memcmp(&(*p)->key, k, sizeof *k))
        p = &(*p)->next;
    return p;
}

/* Count one connection from k; false when a limit is reached. */
static bool limits_take(conn_limits *lim, const ip_key *k)
{
    bool ok = false;
    pthread_mutex_lock(&lim->mu);
    if (lim->total < LOOP_MAX_CONNS) {
        ip_count **p = slot_of(lim, k);
        if (!*p && (*p = calloc(1, sizeof **p)))
            (*p)->key = *k;
        if (*p && (!lim->per_ip || (*p)->n < lim->per_ip)) {
            (*p)->n++;
            lim->total++;
            ok = true;
        }
    }
    pthread_mutex_unlock(&lim->mu);
    return ok;
}

static void limits_release(conn_limits *lim, const ip_key *k)
{
    pthread_mutex_lock(&lim->mu);
    ip_count **p = slot_of(lim, k);
    if (*p && (*p)->n > 0) {
        lim->total--;
        if (--(*p)->n == 0) {
            ip_count *dead = *p;
            *p = dead->next;
            free(dead);
        }
    }
    pthread_mutex_unlock(&lim->mu);
}

static void limits_free(conn_limits *lim)
{
    for (size_t i = 0; i < IP_BUCKETS; i++)
        while (lim->bucket[i]) {
            ip_count *c = lim->bucket[i];
            lim->bucket[i] = c->next;
            free(c);
        }
    pthread_mutex_destroy(&lim->mu);
}

/* A reservation whose connection never started (libmicrohttpd refused it
 * after the policy said yes) is given back. */
static void release_unstarted(nf_loop *l)
{
    if (l->reserved) {
        l->reserved = false;
        limits_release(&l->all->lim, &l->reserved_key);
    }
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
    (void)len;
    nf_loop *l = cls;
    release_unstarted(l);
    ip_key k;
    if (!key_of(addr, &k))
        return MHD_YES; /* not an IP peer: nothing to count it under */
    if (!limits_take(&l->all->lim, &k))
        return MHD_NO;
    l->reserved = true;
    l->reserved_key = k;
    return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    nf_loop *l = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        if (l->reserved) {
            l->reserved = false;
            *socket_ctx = (void *)&counted_mark;
        }
        return;
    }
    if (*socket_ctx != &counted_mark)
        return;
    *socket_ctx = NULL;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    ip_key k;
    if (ci && key_of(ci->client_addr, &k))
        limits_release(&l->all->lim, &k);
}

/* ---- the loop ---- */

static void *loop_main(void *arg)
{
    nf_loop *l = arg;
    nf_app *app = l->all->app;
    char name[16];
    snprintf(name, sizeof name, "nf-http-%zu", (size_t)(l - l->all->loop));
    pthread_setname_np(pthread_self(), name);
    for (;;) {
        /* once stopping, POSTs are refused at once (503, retry log) instead
         * of joining a batch, so the loop ends after this iteration */
        bool stopping = atomic_load(&l->all->stop);
        l->batch.closing = stopping;
        /* waits for readiness (at most a tick, to notice a stop), then reads
         * every ready request; the producing ones join the batch */
        MHD_run_wait(l->d, stopping ? 0 : LOOP_TICK_MS);
        release_unstarted(l);
        while (nf_batch_pending(&l->batch)) {
            nf_batch_commit(app, &l->batch); /* one publish per topic, answers filled */
            MHD_run(l->d);                  /* sends them; may take the next batch */
            release_unstarted(l);
        }
        if (stopping)
            break;
    }
    return NULL;
}

/* ---- start and stop ---- */

static int listen_on(const struct sockaddr_in *sa, int *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(fd, (const void *)sa, sizeof *sa) ||
        listen(fd, 1024)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *out = fd;
    return 0;
}

static int loop_open(nf_loops *ls, nf_loop *l, const nf_loops_cfg *c)
{
    l->all = ls;
    l->srv = c->srv;
    l->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, accept_policy, l,
                            c->handler, l, MHD_OPTION_LISTEN_SOCKET, ls->listen_fd,
                            MHD_OPTION_CONNECTION_TIMEOUT, c->idle_timeout,
                            MHD_OPTION_CONNECTION_LIMIT, LOOP_MAX_CONNS,
                            /* HTTP/1.1 without Host, conflicting Content-Length: 400 */
                            MHD_OPTION_STRICT_FOR_CLIENT, 1,
                            MHD_OPTION_NOTIFY_COMPLETED, c->completed, c->srv,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, l, MHD_OPTION_END);
    if (!l->d)
        return -1;
    if (pthread_create(&l->thread, NULL, loop_main, l))
        return -1;
    l->started = true;
    return 0;
}

int nf_loops_start(nf_app *app, const nf_loops_cfg *c, nf_loops **out)
{
    nf_loops *ls = calloc(1, sizeof *ls);
    if (!ls)
        return SL_ENOMEM;
    ls->app = app;
    ls->listen_fd = -1;
    pthread_mutex_init(&ls->lim.mu, NULL);
    ls->lim.per_ip = c->max_per_ip;
    ls->n = c->threads ? c->threads : 1;
    ls->loop = calloc(ls->n, sizeof *ls->loop);
    if (!ls->loop) {
        nf_loops_stop(ls);
        return SL_ENOMEM;
    }
    if (listen_on(c->addr, &ls->listen_fd)) {
        nf_log(SL_LOG_ERROR, "cannot listen on %s: %s", app->cfg.server_addr, strerror(errno));
        nf_loops_stop(ls);
        return SL_EIO;
    }
    struct sockaddr_in bound;
    socklen_t bl = sizeof bound;
    if (getsockname(ls->listen_fd, (void *)&bound, &bl) == 0)
        ls->port = ntohs(bound.sin_port);
    for (size_t i = 0; i < ls->n; i++)
        if (loop_open(ls, &ls->loop[i], c)) {
            nf_log(SL_LOG_ERROR, "cannot start HTTP loop %zu on %s: %s", i, app->cfg.server_addr, strerror(errno));
            nf_loops_stop(ls);
            return SL_EIO;
        }
    *out = ls;
    return 0;
}

unsigned nf_loops_port(const nf_loops *ls)
{
    return ls->port;
}

void nf_loops_stop(nf_loops *ls)
{
    if (!ls)
        return;
    atomic_store(&ls->stop, true);
    for (size_t i = 0; ls->loop && i < ls->n; i++) {
        nf_loop *l = &ls->loop[i];
        if (l->started)
            pthread_join(l->thread, NULL);
    }
    /* The loops are gone: their daemons are driven from here now. Every
     * daemon stops taking connections from the shared socket first, so
     * none closes it under the others. */
    for (size_t i = 0; ls->loop && i < ls->n; i++)
        if (ls->loop[i].d)
            MHD_quiesce_daemon(ls->loop[i].d);
    if (ls->listen_fd >= 0)
        close(ls->listen_fd);
    for (size_t i = 0; ls->loop && i < ls->n; i++) {
        nf_loop *l = &ls->loop[i];
        if (l->d)
            MHD_stop_daemon(l->d);
        release_unstarted(l);
    }
    free(ls->loop);
    limits_free(&ls->lim);
    free(ls);
}
