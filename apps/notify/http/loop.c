/*
 * loop.c - the HTTP loops: one thread per loop (web.threads), each driving
 * its own libmicrohttpd daemon (epoll, no thread of its own) and its own
 * listening socket on the one port (SO_REUSEPORT: the kernel spreads the
 * connections over the loops), with one group commit per turn.
 *
 * A turn: wait until the daemon has something to do (a socket, a timer, a
 * resumed event stream) or the loop is told to stop; MHD_run, which reads
 * every ready request and runs its route - a producing route adds its
 * message to the loop's batch (publish.c) and leaves the request waiting;
 * then, when the batch is not empty, one publish per topic (one commit:
 * the fsync is shared by every request of the turn) fills their answers,
 * and MHD_run again sends them. libmicrohttpd calls the access handler of
 * a request that got no answer yet again on each run, which is how the
 * waiting requests get theirs.
 *
 * While a loop commits, its other connections wait; the other loops go on
 * (their commits join the queue backend's own group commit). The
 * per-address connection limit (web.max_conns_per_ip) is counted here
 * across the loops (libmicrohttpd's own limit would be per daemon): a
 * connection is counted once it started and refused at accept while its
 * address has the limit. Two connections of one address accepted at the
 * same moment by two loops may both pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

#define IP_BUCKETS 1024
#define CONN_LIMIT 4096u /* connections at most, over all loops */
#define DRAIN_MS 500      /* at stop, answers still being sent get this long */
#define DRAIN_IDLE_MS 20  /* ... and the stop goes on once nothing moved for this long */

typedef struct ip_count {
    uint32_t addr;
    unsigned n;
    struct ip_count *next;
} ip_count;

typedef struct nf_loop {
    struct nf_loops *all;
    struct MHD_Daemon *d;
    pthread_t thread;
    bool started;
    int wake; /* eventfd: stop */
    int quiesced_fd; /* the listening socket once quiesced (closed after the daemon stops) */
    nf_pending pend;
} nf_loop;

struct nf_loops {
    nf_app *app;
    nf_deadline *dl;
    unsigned n;
    _Atomic bool stop;
    unsigned per_ip; /* 0: no limit */
    pthread_mutex_t mu; /* guards ips */
    ip_count *ips[IP_BUCKETS];
    nf_loop loop[];
};

static _Thread_local nf_loop *tl_loop;

nf_pending *nf_loop_pending(void)
{
    return tl_loop ? &tl_loop->pend : NULL;
}

/* ---- the per-address connection limit ---- */

static ip_count **ip_slot(nf_loops *ls, uint32_t addr)
{
    ip_count **p = &ls->ips[(addr * 2654435761u) >> 22];
    while (*p && (*p)->addr != addr)
        p = &(*p)->next;
    return p;
}

static bool ipv4_of(const struct sockaddr *sa, uint32_t *out)
{
    if (!sa || sa->sa_family != AF_INET)
        return false;
    *out = ((const struct sockaddr_in *)sa)->sin_addr.s_addr;
    return true;
}

static enum MHD_Result accept_cb(void *cls, const struct sockaddr *addr, socklen_t len)
{
    (void)len;
    nf_loops *ls = cls;
    uint32_t a;
    if (!ls->per_ip || !ipv4_of(addr, &a))
        return MHD_YES;
    pthread_mutex_lock(&ls->mu);
    ip_count *c = *ip_slot(ls, a);
    bool full = c && c->n >= ls->per_ip;
    pthread_mutex_unlock(&ls->mu);
    return full ? MHD_NO : MHD_YES;
}

static void count_conn(nf_loops *ls, struct MHD_Connection *conn, int delta)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    uint32_t a;
    if (!ls->per_ip || !ci || !ipv4_of(ci->client_addr, &a))
        return;
    pthread_mutex_lock(&ls->mu);
    ip_count **p = ip_slot(ls, a), *c = *p;
    if (delta > 0) {
        if (!c && (c = calloc(1, sizeof *c)) != NULL) {
            c->addr = a;
            *p = c;
        }
        if (c)
            c->n++;
    } else if (c && --c->n == 0) {
        *p = c->next;
        free(c);
    }
    pthread_mutex_unlock(&ls->mu);
}

static void notify_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode code)
{
    nf_loops *ls = cls;
    count_conn(ls, conn, code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
    nf_deadline_notify(ls->dl, conn, socket_context, code);
}

/* ---- the loops ---- */

/* One turn of loop l (p: its poll set): wait for work (at most max_ms when
 * >= 0), run the daemon, commit the batch its requests made and answer
 * them. Returns what poll returned (0: nothing came). */
static int turn(nf_loop *l, struct pollfd *p, int max_ms)
{
    MHD_UNSIGNED_LONG_LONG to;
    int ms = MHD_get_timeout(l->d, &to) == MHD_YES ? (to > 1000 ? 1000 : (int)to) : 1000;
    if (max_ms >= 0 && ms > max_ms)
        ms = max_ms;
    int ready = poll(p, 2, ms);
    if (ready < 0 && errno != EINTR) {
        nf_log(SL_LOG_ERROR, "http loop: poll: %s", strerror(errno));
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); /* no spinning on it */
    }
    MHD_run(l->d);
    if (l->pend.n[0] || l->pend.n[1]) {
        nf_publish_commit(l->all->app, &l->pend);
        MHD_run(l->d);
        ready = 1;
    }
    return ready;
}

static void *loop_main(void *arg)
{
    nf_loop *l = arg;
    nf_loops *ls = l->all;
    char name[16];
    snprintf(name, sizeof name, "nf-http-%u", (unsigned)(l - ls->loop));
    pthread_setname_np(pthread_self(), name);
    tl_loop = l;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_EPOLL_FD);
    struct pollfd p[2] = {{.fd = di ? di->epoll_fd : -1, .events = POLLIN}, {.fd = l->wake, .events = POLLIN}};
    while (!atomic_load(&ls->stop))
        turn(l, p, -1);
    uint64_t v;
    if (read(l->wake, &v, sizeof v) < 0) /* taken: the drain's polls wait for the daemon only */
        v = 0;
    /* Stopping: no new connection; the answers of the last turns are sent
       (a turn with nothing to do for DRAIN_IDLE_MS ends it, DRAIN_MS at most). */
    MHD_socket fd = MHD_quiesce_daemon(l->d); /* this loop's thread drives the daemon: safe here */
    if (fd != MHD_INVALID_SOCKET)
        l->quiesced_fd = fd;
    int64_t until = nf_mono_us() + DRAIN_MS * 1000;
    while (nf_mono_us() < until && turn(l, p, DRAIN_IDLE_MS) > 0)
        ;
    tl_loop = NULL;
    return NULL;
}

/* A listening socket on addr (port *port when not 0; the port bound is
 * put in *port), with SO_REUSEPORT: each loop has its own and the kernel
 * spreads the connections over them. */
static int listen_on(const struct sockaddr_in *addr, unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on)) {
        close(fd);
        return -1;
    }
    struct sockaddr_in sa = *addr;
    if (*port)
        sa.sin_port = htons((uint16_t)*port);
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 1024) ||
        getsockname(fd, (struct sockaddr *)&sa, &len)) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

int nf_loops_start(nf_server *s, nf_app *app, const struct sockaddr_in *addr, unsigned n,
                   MHD_AccessHandlerCallback on_request, MHD_RequestCompletedCallback on_completed,
                   nf_deadline *dl, nf_loops **out, unsigned *port)
{
    nf_loops *ls = calloc(1, sizeof *ls + n * sizeof ls->loop[0]);
    if (!ls)
        return SL_ENOMEM;
    ls->app = app;
    ls->dl = dl;
    ls->per_ip = (unsigned)app->cfg.max_conns_per_ip;
    pthread_mutex_init(&ls->mu, NULL);
    for (unsigned i = 0; i < n; i++)
        ls->loop[i].wake = ls->loop[i].quiesced_fd = -1;
    *port = 0;
    int rc = 0;
    for (unsigned i = 0; i < n && !rc; i++) {
        nf_loop *l = &ls->loop[i];
        l->all = ls;
        l->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        int fd = listen_on(addr, port); /* the first binds the port, the others join it */
        if (fd < 0) {
            rc = SL_EIO;
            break;
        }
        l->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, accept_cb, ls,
                                on_request, s, MHD_OPTION_LISTEN_SOCKET, fd,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)app->cfg.idle_timeout,
                                MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT / n,
                                /* HTTP/1.1 without Host, conflicting Content-Length: 400 */
                                MHD_OPTION_STRICT_FOR_CLIENT, 1,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                MHD_OPTION_NOTIFY_CONNECTION, notify_cb, ls, MHD_OPTION_END);
        if (!l->d)
            close(fd);
        if (l->wake < 0 || !l->d)
            rc = SL_EIO;
        else if (pthread_create(&l->thread, NULL, loop_main, l))
            rc = SL_ENOMEM;
        else
            l->started = true;
    }
    ls->n = n;
    if (rc) {
        nf_loops_stop(ls);
        return rc;
    }
    *out = ls;
    return 0;
}

void nf_loops_stop(nf_loops *ls)
{
    if (!ls)
        return;
    atomic_store(&ls->stop, true);
    for (unsigned i = 0; i < ls->n; i++) {
        uint64_t one = 1;
        if (ls->loop[i].started && write(ls->loop[i].wake, &one, sizeof one) < 0)
            nf_log(SL_LOG_WARN, "http loop: cannot wake: %s", strerror(errno));
    }
    for (unsigned i = 0; i < ls->n; i++)
        if (ls->loop[i].started)
            pthread_join(ls->loop[i].thread, NULL); /* each commits, answers and drains first */
    for (unsigned i = 0; i < ls->n; i++) {
        nf_loop *l = &ls->loop[i];
        if (l->d)
            MHD_stop_daemon(l->d); /* closes its listening socket unless quiesced */
        if (l->quiesced_fd >= 0)
            close(l->quiesced_fd);
        nf_pending_free(&l->pend);
        if (l->wake >= 0)
            close(l->wake);
    }
    for (unsigned b = 0; b < IP_BUCKETS; b++)
        while (ls->ips[b]) {
            ip_count *c = ls->ips[b];
            ls->ips[b] = c->next;
            free(c);
        }
    pthread_mutex_destroy(&ls->mu);
    free(ls);
}
