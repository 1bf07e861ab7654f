/*
 * config_watch.c - hot reload: one thread per watched sl_config, blocked in
 * poll() on an inotify descriptor that watches the directory of every file
 * source (editors and config-management tools replace files by rename, so
 * watching the file itself would lose it) and on an eventfd that stops it.
 * An event naming one of the files waits 50 ms for the writer to finish
 * (more events in that window are folded in) and reloads. A reload that
 * fails keeps the previous values and is logged with the reason.
 * When there are etcd:// sources, poll() also times out every poll
 * interval (the smallest of theirs) and the thread asks each whether its
 * prefix changed (config_etcd.c); an etcd that does not answer is logged
 * once, and watched again until it is back.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "config/config_int.h"

/* Does the event name one of the file sources? */
static bool names_source(sl_config *c, const struct inotify_event *ev)
{
    if (!ev->len)
        return false;
    bool hit = false;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nsrc && !hit; i++) {
        if (c->src[i].kind != SRC_FILE)
            continue;
        const char *slash = strrchr(c->src[i].text, '/');
        hit = strcmp(slash ? slash + 1 : c->src[i].text, ev->name) == 0;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

/* Drain the inotify fd; true when a source file changed. */
static bool drain(sl_config *c)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool hit = false;
    for (;;) {
        ssize_t n = read(c->ifd, buf, sizeof buf);
        if (n <= 0)
            return hit;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            hit = hit || names_source(c, ev);
            p += sizeof *ev + ev->len;
        }
    }
}

/* The smallest poll interval of the etcd sources, -1 when none. */
static int poll_ms(sl_config *c)
{
    int64_t ms = -1;
#ifdef SL_HAVE_ETCD
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nsrc; i++)
        if (c->src[i].kind == SRC_ETCD) {
            int64_t p = sli_config_etcd_poll_ms(c->src[i].etcd);
            ms = ms < 0 || p < ms ? p : ms;
        }
    pthread_mutex_unlock(&c->mu);
#else
    (void)c;
#endif
    return ms > 3600000 ? 3600000 : (int)ms;
}

/* Did an etcd source change? (Sources are only ever added, so the
 * pointers stay valid without the lock.) */
static bool etcd_changed(sl_config *c, bool *away)
{
    bool any = false;
#ifdef SL_HAVE_ETCD
    pthread_mutex_lock(&c->mu);
    size_t n = c->nsrc;
    pthread_mutex_unlock(&c->mu);
    bool down = false;
    for (size_t i = 0; i < n && !any; i++) {
        pthread_mutex_lock(&c->mu);
        sli_src s = c->src[i];
        pthread_mutex_unlock(&c->mu);
        bool ch = false;
        if (s.kind != SRC_ETCD)
            continue;
        if (sli_config_etcd_changed(s.etcd, &ch) < 0) {
            if (!*away)
                sli_log(SL_LOG_WARN, "config", "cannot watch %s, retrying: %s", s.text,
                        sl_errmsg());
            down = true;
            continue;
        }
        any = ch;
    }
    if (*away && !down)
        sli_log(SL_LOG_INFO, "config", "etcd answers again: watching");
    *away = down;
#else
    (void)c;
    (void)away;
#endif
    return any;
}

static void *watch_thread(void *arg)
{
    sl_config *c = arg;
    sli_thread_name("sl-config");
    struct pollfd p[2] = {{.fd = c->ifd, .events = POLLIN}, {.fd = c->stopfd, .events = POLLIN}};
    bool away = false;
    for (;;) {
        int n = poll(p, 2, poll_ms(c));
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && p[1].revents)
            break;
        if (n == 0) {
            if (etcd_changed(c, &away) && sl_config_reload(c) < 0)
                sli_log(SL_LOG_ERROR, "config", "reload failed, keeping the previous values: %s",
                        sl_errmsg());
            continue;
        }
        if (n < 0 || !(p[0].revents & POLLIN) || !drain(c))
            continue;
        /* let the writer finish; fold in what follows */
        if (poll(&p[1], 1, 50) > 0)
            break;
        drain(c);
        if (sl_config_reload(c) < 0)
            sli_log(SL_LOG_ERROR, "config", "reload failed, keeping the previous values: %s",
                    sl_errmsg());
    }
    return NULL;
}

static int add_dirs(sl_config *c)
{
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    for (size_t i = 0; i < c->nsrc && rc == 0; i++) {
        if (c->src[i].kind != SRC_FILE)
            continue;
        char dir[PATH_MAX];
        const char *path = c->src[i].text, *slash = strrchr(path, '/');
        if (!slash)
            strcpy(dir, ".");
        else
            snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
        if (inotify_add_watch(c->ifd, dir,
                              IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MODIFY) < 0)
            rc = sli_err(SL_EIO, "config: cannot watch %s: %s", dir, strerror(errno));
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int sl_config_watch_start(sl_config *c)
{
    if (!c)
        return sli_err(SL_EINVAL, "config: NULL config");
    if (c->watching)
        return sli_err(SL_ESTATE, "config: already watching");
    c->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    c->stopfd = eventfd(0, EFD_CLOEXEC);
    int rc = c->ifd < 0 || c->stopfd < 0 ? sli_err(SL_EIO, "config: inotify: %s", strerror(errno))
                                         : add_dirs(c);
    if (rc == 0 && pthread_create(&c->th, NULL, watch_thread, c) != 0)
        rc = sli_err(SL_ENOMEM, "config: cannot start the watch thread");
    if (rc < 0) {
        if (c->ifd >= 0)
            close(c->ifd);
        if (c->stopfd >= 0)
            close(c->stopfd);
        c->ifd = c->stopfd = -1;
        return rc;
    }
    c->watching = true;
    return 0;
}

void sli_config_watch_stop(sl_config *c)
{
    if (!c->watching)
        return;
    uint64_t one = 1;
    if (write(c->stopfd, &one, sizeof one) != sizeof one)
        sli_log(SL_LOG_ERROR, "config", "cannot wake the watch thread");
    pthread_join(c->th, NULL);
    close(c->ifd);
    close(c->stopfd);
    c->ifd = c->stopfd = -1;
    c->watching = false;
}
