/*
 * health.c - write health for /healthz: can this process still write?
 *
 * A full or read-only disk leaves reads working, so a read probe (the
 * store's SELECT 1) says "ok" while every notice is refused. Instead each
 * writer reports the outcome of its real writes here: the queue publisher,
 * the store (the consumers of this process), the retry logs and main.log.
 * A writer is failing when its last write failed (a later success clears
 * it) less than a minute ago: a writer that only writes on trouble (the
 * retry logs) or got no traffic since must not keep the answer 503 for
 * ever. On top, the directories of sqlite:// files and of the logs are
 * checked at each report (statvfs): a read-only mount, or less than 1 MiB
 * free, is failing even when nothing was written yet. /healthz answers 503
 * with the failing writers and their reasons.
 *
 * Recording is two relaxed atomic stores, from any thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "app.h"

#define NF_HEALTH_RECENT_MS 60000 /* a failure counts this long unless a success follows */
#define NF_HEALTH_MIN_FREE (1024ull * 1024) /* bytes a data directory needs free */

static const char *const writer_names[NF_W_COUNT] = {"queue", "store", "retry log", "main.log"};

void nf_health_note(nf_app *app, nf_writer w, int err)
{
    if (!app || w < 0 || w >= NF_W_COUNT)
        return;
    nf_write_state *st = &app->health[w];
    if (err) {
        atomic_store(&st->err, err);
        atomic_store(&st->fail_ms, nf_wall_ms());
    } else if (atomic_load_explicit(&st->fail_ms, memory_order_relaxed)) {
        atomic_store(&st->ok_ms, nf_wall_ms());
    }
}

/* err: a negative SL_E* code, or a positive errno (files). */
static const char *reason(int err)
{
    return err > 0 ? strerror(err) : sl_strerror(err);
}

static void add(char *out, size_t len, size_t *o, const char *fmt, const char *a, const char *b)
{
    if (*o >= len)
        return;
    int n = snprintf(out + *o, len - *o, fmt, *o ? "; " : "", a, b);
    if (n > 0)
        *o += (size_t)n;
}

/* The directory of a sqlite:// URL's file, or "" for other schemes. */
static void sqlite_dir(const char *url, char *dir, size_t len)
{
    dir[0] = '\0';
    if (strncmp(url, "sqlite://", 9))
        return;
    snprintf(dir, len, "%s", url + 9);
    dir[strcspn(dir, "?#")] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, len, ".");
}

static void check_dir(const char *what, const char *dir, char *out, size_t len, size_t *o)
{
    struct statvfs sv;
    if (!dir[0] || statvfs(dir, &sv))
        return;
    if (sv.f_flag & ST_RDONLY)
        add(out, len, o, "%s%s: %s is on a read-only file system", what, dir);
    else if ((unsigned long long)sv.f_bavail * sv.f_frsize < NF_HEALTH_MIN_FREE)
        add(out, len, o, "%s%s: the disk of %s is full", what, dir);
}

int nf_health_report(nf_app *app, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (int w = 0; w < NF_W_COUNT; w++) {
        nf_write_state *st = &app->health[w];
        int64_t f = atomic_load(&st->fail_ms), k = atomic_load(&st->ok_ms);
        int err = atomic_load(&st->err);
        if (w == NF_W_MAIN_LOG) /* the process-wide logger keeps its own (log.c) */
            nf_log_main_health(&f, &k, &err);
        if (f && f >= k && nf_wall_ms() - f < NF_HEALTH_RECENT_MS)
            add(out, len, &o, "%s%s writes fail: %s", writer_names[w], reason(err));
    }
    char dir[1024];
    sqlite_dir(app->cfg.queue_url, dir, sizeof dir);
    check_dir("queue", dir, out, len, &o);
    sqlite_dir(app->cfg.store_url, dir, sizeof dir);
    check_dir("store", dir, out, len, &o);
    check_dir("logs", app->cfg.log_dir, out, len, &o);
    return o ? -1 : 0;
}
