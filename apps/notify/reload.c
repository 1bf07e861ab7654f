/*
 * reload.c - hot reload of the service's config file on sl_config.
 *
 * The service's sl_config (nf_config_open: defaults, the file, SLUICE_*)
 * watches the file (inotify on its directory, so editors that replace the
 * file are seen), re-reads it when it changes and calls us when its values
 * changed. We then read it exactly as at start (nf_config_read: same
 * checks, same messages) and compare it with the values running now:
 *   - log.level, web.max_body and consumers.max_failures take effect at
 *     once (the service reads them through atomics: nf_log_set_level,
 *     app->max_body, app->max_failures), with one log line naming each
 *     change ("config reloaded from F: web.max_body 65536 -> 2048");
 *   - any other changed key is logged as waiting for a restart (listening
 *     address, pools, URLs, backoff: fixed when their part starts);
 *   - a file that does not load is refused with every error on one ERROR
 *     line and nothing changes; a file sl_config itself cannot parse (a
 *     YAML syntax error) is refused by sl_config, which logs "reload
 *     failed, keeping the previous values" with the reason.
 * The callback runs on sl_config's watch thread, one reload at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "sluice/config.h"

struct nf_reload {
    nf_app *app;
    sl_config *cf;
    char path[1024];
    nf_config cur;  /* the values in force (for the hot keys) or last seen */
    char *sections; /* the sections the file had at the last good load, "a\nb\n" */
};

typedef struct changes {
    nf_reload *r;
    const nf_config *next;
    char applied[2048];
    size_t used;
} changes;

static bool hot(const char *path)
{
    return !strcmp(path, "log.level") || !strcmp(path, "web.max_body") ||
           !strcmp(path, "consumers.max_failures");
}

static void on_key(const char *path, const char *from, const char *to, void *arg)
{
    changes *ch = arg;
    if (!hot(path)) {
        nf_log(SL_LOG_WARN, "config %s: %s changed (%s -> %s): takes effect at the next restart",
               ch->r->path, path, from, to);
        return;
    }
    if (!strcmp(path, "web.max_body"))
        atomic_store(&ch->r->app->max_body, ch->next->max_body);
    else if (!strcmp(path, "consumers.max_failures"))
        atomic_store(&ch->r->app->max_failures, ch->next->max_failures);
    /* log.level: applied by the caller, around its log line */
    int n = snprintf(ch->applied + ch->used, sizeof ch->applied - ch->used, "%s%s %s -> %s",
                     ch->used ? ", " : "", path, from, to);
    if (n > 0 && (size_t)n < sizeof ch->applied - ch->used)
        ch->used += (size_t)n;
}

/* Join the lines of a multi-line error buffer with "; ". */
static void one_line(char *s)
{
    size_t n = strlen(s);
    while (n && s[n - 1] == '\n')
        s[--n] = '\0';
    for (char *p = strchr(s, '\n'); p; p = strchr(p, '\n'))
        *p = ';';
}

/* The sections (top-level keys) that file itself gives, one per line;
 * NULL when out of memory. The defaults hold every section: only the
 * origin tells the file's own. */
static char *file_sections(sl_config *cf, const char *file)
{
    char **keys;
    size_t fl = strlen(file), len = 0;
    if (sl_config_keys(cf, "", &keys, NULL))
        return calloc(1, 1); /* nothing at the top level */
    for (size_t i = 0; keys[i]; i++)
        len += strlen(keys[i]) + 1;
    char *out = malloc(len + 1), *w = out;
    for (size_t i = 0; out && keys[i]; i++) {
        char *o = NULL;
        if (!sl_config_origin(cf, keys[i], &o) && !strncmp(o, file, fl) && o[fl] == ':')
            w += sprintf(w, "%s\n", keys[i]);
        free(o);
    }
    if (out)
        *w = '\0';
    free(keys);
    return out;
}

/* The first section of was (file_sections) that now lacks, any case, into
 * name; false when none is gone. */
static bool section_gone(const char *was, const char *now, char *name, size_t len)
{
    for (const char *p = was; p && *p;) {
        size_t n = strcspn(p, "\n");
        bool found = false;
        for (const char *q = now; q && *q && !found;) {
            size_t m = strcspn(q, "\n");
            found = m == n && !strncasecmp(p, q, n);
            q += m + (q[m] == '\n');
        }
        if (!found) {
            snprintf(name, len, "%.*s", (int)n, p);
            return true;
        }
        p += n + (p[n] == '\n');
    }
    return false;
}

static void on_change(sl_config *cf, const char *path, void *arg)
{
    (void)path;
    nf_reload *r = arg;
    nf_config *next = malloc(sizeof *next);
    if (!next) {
        nf_log(SL_LOG_ERROR, "config %s: reload skipped: out of memory", r->path);
        return;
    }
    nf_config_defaults(next);
    char err[4096];
    /* A section that went away is a file caught while being rewritten (or
       emptied) far more often than an edit: its keys would fall back to
       their defaults at once. Refused; dropping a section takes a restart. */
    char *now = file_sections(cf, r->path), gone[128];
    if (section_gone(r->sections, now, gone, sizeof gone)) {
        nf_log(SL_LOG_ERROR,
               "config %s: reload refused, the running values stay: section '%s' is gone (a "
               "file being rewritten? dropping a section takes a restart)",
               r->path, gone);
        free(now);
        free(next);
        return;
    }
    if (nf_config_read(next, cf, r->path, err, sizeof err)) {
        free(now);
        one_line(err);
        nf_log(SL_LOG_ERROR, "config %s: reload refused, the running values stay: %s", r->path,
               err);
        free(next);
        return;
    }
    changes ch = {.r = r, .next = next};
    nf_config_each_change(&r->cur, next, on_key, &ch);
    /* The reload line is written at info: lower the level before it, raise it after. */
    bool verbose = !strcasecmp(next->log_level, "debug") || !strcasecmp(next->log_level, "info");
    if (verbose)
        nf_log_set_level(next->log_level);
    if (ch.used)
        nf_log(SL_LOG_INFO, "config reloaded from %s: %s", r->path, ch.applied);
    else
        nf_log(SL_LOG_INFO, "config %s changed: nothing that applies at run time differs", r->path);
    if (!verbose)
        nf_log_set_level(next->log_level);
    r->cur = *next;
    free(next);
    free(r->sections);
    r->sections = now;
}

int nf_reload_start(nf_app *app, const char *path, nf_reload **out)
{
    *out = NULL;
    if (!path)
        return 0;
    nf_reload *r = calloc(1, sizeof *r);
    if (!r)
        return SL_ENOMEM;
    r->app = app;
    r->cur = app->cfg;
    snprintf(r->path, sizeof r->path, "%s", path);
    char err[1024];
    int rc = nf_config_open(path, &r->cf, err, sizeof err) ? SL_EINVAL : 0;
    if (rc)
        one_line(err);
    else
        r->sections = file_sections(r->cf, r->path);
    if (!rc)
        rc = sl_config_on_change(r->cf, "", on_change, r);
    if (!rc)
        rc = sl_config_watch_start(r->cf);
    if (rc) {
        nf_log(SL_LOG_WARN, "config %s: hot reload is off: %s", path, r->cf ? sl_errmsg() : err);
        sl_config_free(r->cf);
        free(r);
        return 0;
    }
    nf_log(SL_LOG_INFO,
           "config %s: watching for changes (log.level, web.max_body and "
           "consumers.max_failures apply at once)",
           path);
    *out = r;
    return 0;
}

void nf_reload_stop(nf_reload *r)
{
    if (!r)
        return;
    sl_config_free(r->cf); /* stops the watch thread first */
    free(r->sections);
    free(r);
}
