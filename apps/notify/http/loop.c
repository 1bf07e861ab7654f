/*
 * loop.c - the HTTP loops: one thread per loop (web.threads), each driving
 * its own libmicrohttpd daemon (epoll, no thread of its own) and its own
 * listening socket on the one port (SO_REUSEPORT: the kernel spreads the
 * connections over the loops), and one committer thread that queues the
 * batches the loops' requests made, one commit for all of them.
 *
 * A turn: wait until the daemon has something to do (a socket, a timer, a
 * resumed event stream), the loop's commit returned or the loop is told to
 * stop; MHD_run, which reads every ready request and runs its route - a
 * producing route adds its message to the loop's batch (publish.c) and
 * leaves the request waiting; then the answers of the batches in commit
 * that returned are filled; if fewer than FLIGHTS batches are in commit
 * and this one is not empty, it goes to the committer (one publish per
 * topic: one commit, the fsync shared by every request of the batch); and
 * when answers were filled, MHD_run again sends them. libmicrohttpd calls the
 * access handler of a request that got no answer yet again on each run,
 * which is how the waiting requests get theirs (so while a batch is in
 * commit, libmicrohttpd's "run again at once" is not taken literally: the
 * loop sleeps until a socket or the commit's return wakes it).
 *
 * One committer thread serves every loop: it takes every batch handed over
 * since its last round, publishes them together (one publish per topic, one
 * commit and fsync for all of them) and hands each back. A loop fills its
 * next batch while one is in commit and hands it over at once (up to
 * FLIGHTS in commit), so the committer starts its next round as soon as
 * one ends, without waiting for a loop to wake up and answer first. It
 * waited so before (a loop had one batch in commit; the committer lingered
 * for the loops it had answered): a quarter of its time. On sqlite:// the
 * fsync of a round runs after the connection is free again (sq_db.c,
 * "flush after commit"); together ~29k -> ~34k req/s durable. Measured
 * before it: a loop that committed on its own thread read nothing during
 * the fsync and spent half of each turn waiting on it; with a committer per
 * loop, four loops' small batches met in the queue's group commit only in
 * part (33k req/s on the durable queue with no consumer in the process,
 * against 45-61k for one shared round). A batch is handed over with one
 * wakeup and handed back with one; nothing moves between threads per
 * request. The
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
#define DRAIN_MS 500     /* at stop, answers still being sent get this long */
#define DRAIN_IDLE_MS 20 /* ... and the stop goes on once nothing moved for this long */

typedef struct ip_count {
    uint32_t addr;
    unsigned n;
    struct ip_count *next;
} ip_count;

/* Batches of a loop in commit at once. With 2, a loop whose two batches
   were in commit kept what it read meanwhile until one came back, so those
   requests missed the next round and waited for the one after: sampled
   under durable load, ~4.7 of the 32 requests sat so, and rounds held ~9.
   With 8 a loop hands over what each turn read (~0.6 left waiting, rounds
   of ~12): 36.7k -> 41.2k req/s durable (means of three alternating runs),
   mem:// unchanged. */
#define FLIGHTS 8

typedef struct nf_loop {
    struct nf_loops *all;
    struct MHD_Daemon *d;
    pthread_t thread;
    bool started;
    int wake;        /* eventfd: stop */
    int quiesced_fd; /* the listening socket once quiesced (closed after the daemon stops) */
    nf_pending fill; /* the batch the turns add to (this loop's thread only) */
    /* The batches handed over, oldest at flight[head]: out of them, in
       order, `finished` came back, then some are in the committer's round,
       then the newest `queued` wait for the next round. A batch's messages
       are the committer's until it came back. head and out change on the
       loop's thread only, the counts under all->cmu (and head, out too). */
    nf_pending flight[FLIGHTS];
    unsigned head, out, queued, finished;
    int done; /* eventfd: the committer handed batches back */
} nf_loop;

typedef struct nf_taken { /* a batch in the committer's round, and its loop */
    nf_loop *l;
    nf_pending *b;
} nf_taken;

struct nf_loops {
    nf_app *app;
    nf_deadline *dl;
    unsigned n;
    _Atomic bool stop;
    unsigned per_ip;    /* 0: no limit */
    pthread_mutex_t mu; /* guards ips */
    ip_count *ips[IP_BUCKETS];
    /* the committer */
    pthread_t committer;
    bool committer_started;
    pthread_mutex_t cmu;
    pthread_cond_t ccv;
    unsigned queued;  /* batches waiting for a round, over all loops (cmu) */
    bool quit;        /* (cmu) */
    nf_pending round; /* the messages of a round's batches, in loop order (committer only) */
    nf_taken *took;   /* the batches of a round (committer only) */
    nf_loop loop[];
};

static _Thread_local nf_loop *tl_loop;

nf_pending *nf_loop_pending(void)
{
    return tl_loop ? &tl_loop->fill : NULL;
}

void nf_loop_forget(const nf_conn *cc)
{
    if (tl_loop) {
        nf_pending_forget(&tl_loop->fill, cc);
        /* the batches in commit too: their answers are the loop's, never the committer's */
        for (unsigned i = 0; i < FLIGHTS; i++)
            nf_pending_forget(&tl_loop->flight[i], cc);
    }
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
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
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

/* Reset an eventfd that was written to (nothing to do if it was not). */
static void take_event(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0)
        return;
}

/* ---- the committer ---- */

/* Append the messages of batch b to the round (committer's thread). */
static int round_add(nf_pending *r, const nf_pending *b)
{
    for (int t = 0; t < 2; t++) {
        if (r->n[t] + b->n[t] > r->cap[t]) {
            size_t cap = r->cap[t] ? r->cap[t] : 256;
            while (cap < r->n[t] + b->n[t])
                cap *= 2;
            sl_msg **m = realloc(r->m[t], cap * sizeof *m);
            if (!m)
                return SL_ENOMEM;
            r->m[t] = m;
            r->cap[t] = cap;
        }
        if (b->n[t])
            memcpy(r->m[t] + r->n[t], b->m[t], b->n[t] * sizeof *b->m[t]);
        r->n[t] += b->n[t];
    }
    return 0;
}

/* Publish the k batches in ls->took as one round and note each one's
 * outcome in it. */
static void run_round(nf_loops *ls, unsigned k)
{
    nf_pending *r = &ls->round;
    r->n[0] = r->n[1] = 0;
    for (unsigned j = 0; j < k; j++)
        if (round_add(r, ls->took[j].b)) {
            for (unsigned i = 0; i < k; i++) /* no memory for the round: each batch alone */
                nf_publish_run(ls->app, ls->took[i].b);
            return;
        }
    nf_publish_run(ls->app, r);
    for (int t = 0; t < 2; t++) {
        size_t off = 0;
        for (unsigned j = 0; j < k; j++) {
            nf_pending *b = ls->took[j].b;
            size_t took = r->took[t] > off ? r->took[t] - off : 0;
            b->took[t] = took < b->n[t] ? took : b->n[t];
            b->rc[t] = b->took[t] < b->n[t] ? r->rc[t] : 0;
            off += b->n[t];
        }
    }
}

/* The committer: a round takes every batch handed over since the last one
 * (each loop's in order), publishes them together and hands them back.
 * Loops hand over their next batch while one is in commit, so the next
 * round starts as soon as this one ends, without waiting for any loop to
 * wake up and answer. */
static void *commit_main(void *arg)
{
    nf_loops *ls = arg;
    pthread_setname_np(pthread_self(), "nf-commit");
    pthread_mutex_lock(&ls->cmu);
    for (;;) {
        while (!ls->queued && !ls->quit)
            pthread_cond_wait(&ls->ccv, &ls->cmu);
        if (!ls->queued)
            break;
        unsigned k = 0;
        for (unsigned i = 0; i < ls->n; i++) {
            nf_loop *l = &ls->loop[i];
            for (unsigned j = l->out - l->queued; j < l->out; j++)
                ls->took[k++] = (nf_taken){l, &l->flight[(l->head + j) % FLIGHTS]};
            l->queued = 0;
        }
        ls->queued = 0;
        pthread_mutex_unlock(&ls->cmu);
        int64_t t0 = nf_mono_us();
        size_t msgs = 0;
        for (unsigned j = 0; j < k; j++)
            msgs += ls->took[j].b->n[0] + ls->took[j].b->n[1];
        run_round(ls, k);
        nf_metrics_round(&ls->app->metrics, msgs, nf_mono_us() - t0);
        pthread_mutex_lock(&ls->cmu);
        for (unsigned j = 0; j < k; j++) {
            nf_loop *l = ls->took[j].l;
            l->finished++;
            if (j + 1 < k && ls->took[j + 1].l == l)
                continue; /* one wakeup per loop */
            uint64_t one = 1;
            if (write(l->done, &one, sizeof one) < 0)
                nf_log(SL_LOG_ERROR, "http loop: cannot wake after a commit: %s", strerror(errno));
        }
    }
    pthread_mutex_unlock(&ls->cmu);
    return NULL;
}

/* Hand the filled batch to the committer (a flight slot is free). */
static void hand(nf_loop *l)
{
    nf_loops *ls = l->all;
    nf_pending *slot = &l->flight[(l->head + l->out) % FLIGHTS];
    nf_pending t = *slot; /* empty: its arrays are reused */
    *slot = l->fill;
    l->fill = t;
    pthread_mutex_lock(&ls->cmu);
    l->out++;
    l->queued++;
    ls->queued++;
    pthread_cond_signal(&ls->ccv);
    pthread_mutex_unlock(&ls->cmu);
}

/* Fill the answers of the batches that came back; returns how many. */
static unsigned settle(nf_loop *l)
{
    if (!l->out)
        return 0;
    nf_loops *ls = l->all;
    pthread_mutex_lock(&ls->cmu);
    unsigned f = l->finished;
    pthread_mutex_unlock(&ls->cmu);
    for (unsigned i = 0; i < f; i++) /* back: the committer does not touch them any more */
        nf_publish_answer(ls->app, &l->flight[(l->head + i) % FLIGHTS]);
    if (f) {
        pthread_mutex_lock(&ls->cmu);
        l->finished -= f;
        l->head = (l->head + f) % FLIGHTS;
        l->out -= f;
        pthread_mutex_unlock(&ls->cmu);
    }
    return f;
}

/* ---- the loops ---- */

/* One turn of loop l (p: its poll set): wait for work (at most max_ms when
 * >= 0), run the daemon, settle the batches in commit that came back,
 * hand over the next and send the answers. Returns whether anything
 * happened or is still under way (0: nothing came and no batch is in
 * commit). */
static int turn(nf_loop *l, struct pollfd *p, int max_ms)
{
    MHD_UNSIGNED_LONG_LONG to;
    int ms = MHD_get_timeout(l->d, &to) == MHD_YES ? (to > 1000 ? 1000 : (int)to) : 1000;
    if (l->out && ms == 0)
        ms = 1000;
    if (max_ms >= 0 && ms > max_ms)
        ms = max_ms;
    int ready = poll(p, 3, ms);
    if (ready < 0 && errno != EINTR) {
        nf_log(SL_LOG_ERROR, "http loop: poll: %s", strerror(errno));
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); /* no spinning on it */
    }
    if (ready > 0 && (p[2].revents & POLLIN))
        take_event(l->done);
    MHD_run(l->d);
    bool answered = settle(l) > 0;
    if (l->out < FLIGHTS && (l->fill.n[0] || l->fill.n[1]))
        hand(l);
    if (answered) {
        MHD_run(l->d);
        ready = 1;
    }
    return ready > 0 || l->out;
}

/* Wait for the batches in commit to come back and answer them. */
static void settle_wait(nf_loop *l, struct pollfd *done)
{
    while (l->out) {
        if (settle(l))
            continue;
        if (poll(done, 1, 100) > 0)
            take_event(l->done);
    }
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
    struct pollfd p[3] = {{.fd = di ? di->epoll_fd : -1, .events = POLLIN},
                          {.fd = l->wake, .events = POLLIN},
                          {.fd = l->done, .events = POLLIN}};
    while (!atomic_load(&ls->stop))
        turn(l, p, -1);
    take_event(l->wake); /* taken: the drain's polls wait for the daemon only */
    /* Stopping: no new connection; the answers of the last turns are sent
       (a turn with nothing to do for DRAIN_IDLE_MS ends it, DRAIN_MS at most). */
    MHD_socket fd = MHD_quiesce_daemon(l->d); /* this loop's thread drives the daemon: safe here */
    if (fd != MHD_INVALID_SOCKET)
        l->quiesced_fd = fd;
    int64_t until = nf_mono_us() + DRAIN_MS * 1000;
    while (nf_mono_us() < until && turn(l, p, DRAIN_IDLE_MS) > 0)
        ;
    /* Whatever was read is queued before the loop ends, answered or not. */
    settle_wait(l, &p[2]);
    if (l->fill.n[0] || l->fill.n[1]) {
        hand(l);
        settle_wait(l, &p[2]);
        MHD_run(l->d);
    }
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
    pthread_mutex_init(&ls->cmu, NULL);
    pthread_cond_init(&ls->ccv, NULL);
    ls->app = app;
    ls->dl = dl;
    ls->per_ip = (unsigned)app->cfg.max_conns_per_ip;
    pthread_mutex_init(&ls->mu, NULL);
    for (unsigned i = 0; i < n; i++) {
        nf_loop *l = &ls->loop[i];
        l->wake = l->quiesced_fd = l->done = -1;
    }
    *port = 0;
    int rc = 0;
    ls->n = n; /* the committer looks at every loop's batches */
    if (!(ls->took = calloc(n ? n * FLIGHTS : 1, sizeof *ls->took)))
        rc = SL_ENOMEM;
    else if (pthread_create(&ls->committer, NULL, commit_main, ls))
        rc = SL_ENOMEM;
    else
        ls->committer_started = true;
    for (unsigned i = 0; i < n && !rc; i++) {
        nf_loop *l = &ls->loop[i];
        l->all = ls;
        l->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        l->done = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        int fd = listen_on(addr, port); /* the first binds the port, the others join it */
        if (fd < 0) {
            rc = SL_EIO;
            break;
        }
        l->d = MHD_start_daemon(
            MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, accept_cb, ls,
            on_request, s, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)app->cfg.conn_memory, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)app->cfg.idle_timeout, MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT / n,
            /* HTTP/1.1 without Host, conflicting Content-Length: 400 */
            MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
            MHD_OPTION_NOTIFY_CONNECTION, notify_cb, ls, MHD_OPTION_END);
        if (!l->d)
            close(fd);
        if (l->wake < 0 || l->done < 0 || !l->d)
            rc = SL_EIO;
        else if (pthread_create(&l->thread, NULL, loop_main, l))
            rc = SL_ENOMEM;
        else
            l->started = true;
    }
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
    if (ls->committer_started) {                    /* no batch is handed over any more */
        pthread_mutex_lock(&ls->cmu);
        ls->quit = true;
        pthread_cond_signal(&ls->ccv);
        pthread_mutex_unlock(&ls->cmu);
        pthread_join(ls->committer, NULL);
    }
    for (unsigned i = 0; i < ls->n; i++) {
        nf_loop *l = &ls->loop[i];
        if (l->d)
            MHD_stop_daemon(l->d); /* closes its listening socket unless quiesced */
        if (l->quiesced_fd >= 0)
            close(l->quiesced_fd);
        nf_pending_free(&l->fill);
        for (unsigned j = 0; j < FLIGHTS; j++)
            nf_pending_free(&l->flight[j]);
        if (l->wake >= 0)
            close(l->wake);
        if (l->done >= 0)
            close(l->done);
    }
    for (unsigned b = 0; b < IP_BUCKETS; b++)
        while (ls->ips[b]) {
            ip_count *c = ls->ips[b];
            ls->ips[b] = c->next;
            free(c);
        }
    pthread_mutex_destroy(&ls->mu);
    pthread_mutex_destroy(&ls->cmu);
    pthread_cond_destroy(&ls->ccv);
    free(ls->round.m[0]);
    free(ls->round.m[1]);
    free(ls->took);
    free(ls);
}
