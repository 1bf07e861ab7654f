/*
 * pg_listen.c - a subscriber's wake-up source and caretaker: one thread with
 * its own connection that LISTENs on the sluice channel and bumps the
 * subscriber engine's change counter (sqlc_wake) on every notification, so
 * next() calls sleep instead of polling.
 * After a reconnect it bumps once (notifications sent while it was away are
 * lost; a claim finds what they announced). The same thread keeps the
 * subscriber's private groups alive (heartbeat) and does housekeeping
 * (expired groups, retention) every PG_HK_MS, and once more when it stops.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/postgres/pg.h"

#define PG_HK_MS 2000

struct pg_listener {
    pg_link pc;
    pg_opts o;
    int64_t holder;
    pthread_t thread;
    int pipe[2];     /* written to stop the thread */
    sqlc_wake *wake; /* the engine's (outlives the listener) */
    _Atomic bool stop;
};

/* Connect and LISTEN; 0 once listening. */
static int listen_up(pg_listener *l, char *err, size_t errlen)
{
    int rc = sli_pg_conn_ready(&l->pc, err, errlen);
    if (!rc)
        rc = sli_pg_exec(&l->pc, "LISTEN " PG_CHANNEL, err, errlen);
    return rc;
}

static bool drain(pg_listener *l)
{
    if (!PQconsumeInput(l->pc.c))
        return false;
    PGnotify *n;
    bool any = false;
    while ((n = PQnotifies(l->pc.c)) != NULL) {
        any = true;
        PQfreemem(n);
    }
    if (any)
        sli_sqlc_wake_bump(l->wake);
    return true;
}

static void *listen_main(void *arg)
{
    pg_listener *l = arg;
    char err[PG_ERRLEN];
    bool up = true, warned = false; /* started connected and listening */
    int64_t next_hk = sli_mono_ms() + PG_HK_MS;
    sli_thread_name("sl-pg-listen");
    for (;;) {
        if (atomic_load(&l->stop))
            break;
        if (!up) {
            if (listen_up(l, err, sizeof err) == 0) {
                up = true;
                warned = false;
                sli_log(SL_LOG_INFO, "postgres", "listener reconnected");
                sli_sqlc_wake_bump(l->wake); /* what was announced meanwhile is lost */
            } else if (!warned) {
                warned = true;
                sli_log(SL_LOG_WARN, "postgres", "listener: %s (retrying)", err);
            }
        }
        int64_t now = sli_mono_ms(), wait = next_hk - now;
        if (!up && wait > 100)
            wait = 100; /* pg_conn_ready backs off by itself */
        struct pollfd p[2] = {{.fd = l->pipe[0], .events = POLLIN},
                              {.fd = up ? PQsocket(l->pc.c) : -1, .events = POLLIN}};
        int n = poll(p, 2, wait < 0 ? 0 : (int)wait);
        if (n < 0 && errno != EINTR)
            break;
        if (up && p[1].revents && !drain(l)) {
            up = false;
            PQfinish(l->pc.c);
            l->pc.c = NULL;
            l->pc.prepared = false;
            sli_sqlc_wake_bump(l->wake);
        }
        if (up && sli_mono_ms() >= next_hk) {
            if (sli_pg_housekeep(&l->pc, l->holder, l->o.c.retention_ms, err, sizeof err) != 0) {
                sli_log(SL_LOG_WARN, "postgres", "housekeeping: %s", err);
                up = l->pc.c && PQstatus(l->pc.c) == CONNECTION_OK;
            }
            if (up)
                drain(l); /* notifications that came with the replies */
            next_hk = sli_mono_ms() + PG_HK_MS;
        }
    }
    return NULL;
}

int sli_pg_listener_start(pg_listener **out, sli_url *u, const pg_opts *o, int64_t holder,
                          sqlc_wake *w)
{
    pg_listener *l = calloc(1, sizeof *l);
    if (!l)
        return sli_err(SL_ENOMEM, "out of memory");
    l->o = *o;
    l->holder = holder;
    l->wake = w;
    char err[PG_ERRLEN];
    int rc = sli_pg_conn_init(&l->pc, u, o);
    if (rc) {
        free(l);
        return rc;
    }
    if ((rc = listen_up(l, err, sizeof err)) != 0) {
        sli_pg_conn_fini(&l->pc);
        free(l);
        return sli_err(rc, "%s", err);
    }
    if (pipe(l->pipe) != 0) {
        sli_pg_conn_fini(&l->pc);
        free(l);
        return sli_err(SL_EIO, "postgres: pipe: %s", strerror(errno));
    }
    atomic_init(&l->stop, false);
    if (pthread_create(&l->thread, NULL, listen_main, l) != 0) {
        close(l->pipe[0]);
        close(l->pipe[1]);
        sli_pg_conn_fini(&l->pc);
        free(l);
        return sli_err(SL_ENOMEM, "postgres: cannot start the listener thread");
    }
    *out = l;
    return 0;
}

void sli_pg_listener_stop(pg_listener *l)
{
    if (!l)
        return;
    atomic_store(&l->stop, true);
    ssize_t w = write(l->pipe[1], "x", 1);
    (void)w; /* the flag is set; the byte only cuts the poll short */
    pthread_join(l->thread, NULL);
    /* One last housekeeping pass: a subscriber that lived less than PG_HK_MS
     * (a short job, a test, a bench round) would otherwise leave what its
     * groups acked for the next long-lived one to delete. */
    char err[PG_ERRLEN];
    if (l->pc.c && PQstatus(l->pc.c) == CONNECTION_OK &&
        sli_pg_housekeep(&l->pc, l->holder, l->o.c.retention_ms, err, sizeof err) != 0)
        sli_log(SL_LOG_DEBUG, "postgres", "housekeeping at close: %s", err);
    close(l->pipe[0]);
    close(l->pipe[1]);
    sli_pg_conn_fini(&l->pc);
    free(l);
}
