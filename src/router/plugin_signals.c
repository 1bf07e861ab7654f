/*
 * plugin_signals.c - the plugin that closes the router on SIGINT/SIGTERM
 * (watermill's plugin.SignalsHandler).
 *
 * A signal handler may do almost nothing, so it writes the signal number
 * into a self-pipe; a watcher thread started by on_start reads the pipe and
 * calls sl_router_close with the router's close_timeout_ms. on_close
 * (which runs on whichever thread closes the router - possibly the watcher
 * itself) restores the previous handlers and writes a 0 byte that tells the
 * watcher to leave; the thread is joined and the pipe closed in free.
 * A second signal after that meets the previous disposition (usually: the
 * process dies), as a second Ctrl-C should.
 *
 * The pipe is process-wide state (a signal handler has nowhere else to
 * look), so one such plugin may run at a time: on_start fails with SL_EBUSY
 * otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router/router_int.h"

static int sig_wfd = -1;        /* write end, read by the handler */
static _Atomic bool sig_in_use; /* one running plugin per process */

typedef struct sigplug {
    int fds[2];
    pthread_t t;
    bool started, restored;
    struct sigaction old_int, old_term;
    sl_router *r;
} sigplug;

static void on_signal(int sig)
{
    int e = errno;
    char c = (char)sig;
    ssize_t n = write(sig_wfd, &c, 1);
    (void)n;
    errno = e;
}

static void *watch(void *arg)
{
    sigplug *p = arg;
    for (;;) {
        char c;
        ssize_t n = read(p->fds[0], &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || c == 0)
            break;
        sli_log(SL_LOG_INFO, "router", "signal %d: closing the router", c);
        sl_router_close(p->r, p->r->o.close_timeout_ms, NULL);
    }
    return NULL;
}

static int sig_start(sl_router *r, void *st)
{
    sigplug *p = st;
    if (atomic_exchange(&sig_in_use, true))
        return sli_err(SL_EBUSY, "signals plugin: another router already handles signals");
    if (pipe2(p->fds, O_CLOEXEC) != 0) {
        atomic_store(&sig_in_use, false);
        return sli_err(SL_EIO, "signals plugin: pipe: %s", strerror(errno));
    }
    p->r = r;
    sig_wfd = p->fds[1];
    if (pthread_create(&p->t, NULL, watch, p) != 0) {
        close(p->fds[0]);
        close(p->fds[1]);
        p->fds[0] = p->fds[1] = -1;
        atomic_store(&sig_in_use, false);
        return sli_err(SL_ENOMEM, "signals plugin: cannot start its thread");
    }
    p->started = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &p->old_int);
    sigaction(SIGTERM, &sa, &p->old_term);
    return 0;
}

static void sig_close(sl_router *r, void *st)
{
    (void)r;
    sigplug *p = st;
    if (!p->started || p->restored)
        return;
    sigaction(SIGINT, &p->old_int, NULL);
    sigaction(SIGTERM, &p->old_term, NULL);
    p->restored = true;
    char c = 0;
    ssize_t n = write(p->fds[1], &c, 1);
    (void)n;
}

static void sig_free(void *st)
{
    sigplug *p = st;
    if (p->started) {
        sig_close(NULL, p);
        pthread_join(p->t, NULL);
        close(p->fds[0]);
        close(p->fds[1]);
        sig_wfd = -1;
        atomic_store(&sig_in_use, false);
    }
    free(p);
}

int sl_plugin_signals(sl_plugin *out)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_plugin_signals: out is NULL");
    sigplug *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    p->fds[0] = p->fds[1] = -1;
    *out = (sl_plugin){"signals", sig_start, sig_close, sig_free, p};
    return 0;
}
