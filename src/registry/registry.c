/*
 * registry.c - sl_registry: service discovery opened by URL.
 *
 * The one place that knows every registry backend. It validates arguments,
 * stores one JSON record per node through the backend (reg_int.h), groups
 * records into services on the way out, and implements watches for every
 * backend the same way: a watch keeps the records it saw last, and
 * sl_registry_watch_next looks again every `watch_interval_ms` (when the
 * backend's `changed` says something may have changed) and turns the
 * differences into create/update/delete events. Expiries are differences
 * too, so a dead node shows as a delete.
 *
 * Lifetime: the registry is reference counted by its watches, so a watch may
 * be closed after its registry; sl_registry_close wakes blocked watchers
 * (SL_ECLOSED), waits until none is inside, then closes the backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry/reg_int.h"

static const sli_reg_backend *const backends[] = {
    &sli_reg_sqlite_backend,
#ifdef SL_HAVE_REGISTRY_ETCD
    &sli_reg_etcd_backend,
#endif
};

struct sl_registry {
    const sli_reg_backend *be;
    void *impl;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;    /* the user's + one per open watch */
    int inside;  /* watchers inside watch_next */
    bool closed; /* sl_registry_close began */
};

typedef struct reg_event {
    sl_reg_action action;
    char *json;
} reg_event;

struct sl_registry_watch {
    sl_registry *r;
    char *name; /* NULL = all services */
    sli_reg_rec *seen;
    size_t nseen;
    reg_event *q;
    size_t qhead, qlen;
    int64_t next_poll_ms;
    uint64_t changes; /* the backend's change state at this watch's last look */
};

static void reg_unref(sl_registry *r)
{
    pthread_mutex_lock(&r->mu);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

int sl_registry_open(sl_registry **out, const char *url)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_registry_open: NULL out");
    *out = NULL;
    char def[512];
    if (!url || !*url) {
        url = getenv("SLUICE_REGISTRY");
        if (!url || !*url) {
            const char *tmp = getenv("TMPDIR");
            if (!tmp || tmp[0] != '/')
                tmp = "/tmp";
            snprintf(def, sizeof def, "sqlite://%s/sluice-registry-%u.db", tmp, (unsigned)getuid());
            url = def;
        }
    }
    sli_url *u;
    int rc = sli_url_parse(url, &u);
    if (rc != 0)
        return rc;
    const sli_reg_backend *be = NULL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(backends[i]->scheme, u->scheme) == 0)
            be = backends[i];
    if (!be) {
        rc = sli_err(SL_ENOTSUP, "registry: unknown scheme '%s' (known: sqlite%s)", u->scheme,
#ifdef SL_HAVE_REGISTRY_ETCD
                     ", etcd"
#else
                     ""
#endif
        );
        sli_url_free(u);
        return rc;
    }
    sl_registry *r = calloc(1, sizeof *r);
    if (!r) {
        sli_url_free(u);
        return sli_err(SL_ENOMEM, "registry: out of memory");
    }
    r->be = be;
    r->refs = 1;
    pthread_mutex_init(&r->mu, NULL);
    sli_cond_init(&r->cv);
    rc = be->open(&r->impl, u);
    if (rc == 0 && (rc = sli_url_check_unused(u)) != 0)
        be->close(r->impl);
    sli_url_free(u);
    if (rc != 0) {
        reg_unref(r);
        return rc;
    }
    *out = r;
    return 0;
}

int sl_registry_close(sl_registry *r)
{
    if (!r)
        return 0;
    pthread_mutex_lock(&r->mu);
    r->closed = true;
    pthread_cond_broadcast(&r->cv);
    while (r->inside > 0)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    r->be->close(r->impl);
    r->impl = NULL;
    reg_unref(r);
    return 0;
}

int sl_registry_register(sl_registry *r, const sl_reg_service *svc, int64_t ttl_ms)
{
    if (!r)
        return sli_err(SL_EINVAL, "sl_registry_register: NULL registry");
    int rc = sli_reg_check(svc, true);
    if (rc != 0)
        return rc;
    if (ttl_ms <= 0)
        return sli_err(SL_EINVAL, "sl_registry_register: ttl must be > 0 ms");
    for (size_t i = 0; i < svc->n_nodes && rc == 0; i++) {
        char *json = sli_reg_record_encode(svc, i);
        if (!json)
            return sli_err(SL_EINVAL,
                           "registry: cannot encode node '%s' of '%s' (NULL metadata key "
                           "or value?)",
                           svc->nodes[i].id, svc->name);
        rc = r->be->put(r->impl, svc->name, svc->nodes[i].id, json, ttl_ms);
        free(json);
    }
    return rc;
}

int sl_registry_deregister(sl_registry *r, const sl_reg_service *svc)
{
    if (!r)
        return sli_err(SL_EINVAL, "sl_registry_deregister: NULL registry");
    int rc = sli_reg_check(svc, false);
    for (size_t i = 0; rc == 0 && svc && i < svc->n_nodes; i++)
        rc = r->be->del(r->impl, svc->name, svc->nodes[i].id);
    return rc;
}

static int lookup(sl_registry *r, const char *name, sl_reg_service **out, size_t *n)
{
    sli_reg_rec *recs;
    size_t nrec;
    int rc = r->be->get(r->impl, name, &recs, &nrec);
    if (rc != 0)
        return rc;
    rc = sli_reg_group(recs, nrec, out, n);
    sli_reg_recs_free(recs, nrec);
    return rc;
}

int sl_registry_lookup(sl_registry *r, const char *name, sl_reg_service **out, size_t *n)
{
    if (!r || !name || !*name || !out || !n)
        return sli_err(SL_EINVAL, "sl_registry_lookup: NULL or empty argument");
    *out = NULL;
    *n = 0;
    int rc = lookup(r, name, out, n);
    if (rc == 0 && *n == 0)
        return sli_err(SL_ENOENT, "registry: no live node of service '%s'", name);
    return rc;
}

int sl_registry_list(sl_registry *r, sl_reg_service **out, size_t *n)
{
    if (!r || !out || !n)
        return sli_err(SL_EINVAL, "sl_registry_list: NULL argument");
    return lookup(r, NULL, out, n);
}

/* ---- watch ---- */

static int rec_cmp(const void *a, const void *b)
{
    const sli_reg_rec *x = a, *y = b;
    int c = strcmp(x->service, y->service);
    return c ? c : strcmp(x->node_id, y->node_id);
}

static int snapshot(sl_registry_watch *w, sli_reg_rec **out, size_t *n)
{
    int rc = w->r->be->get(w->r->impl, w->name, out, n);
    if (rc == 0 && *n > 1)
        qsort(*out, *n, sizeof **out, rec_cmp);
    return rc;
}

int sl_registry_watch_open(sl_registry *r, const char *name, sl_registry_watch **out)
{
    if (!r || !out)
        return sli_err(SL_EINVAL, "sl_registry_watch_open: NULL argument");
    *out = NULL;
    sl_registry_watch *w = calloc(1, sizeof *w);
    if (!w || (name && !(w->name = strdup(name)))) {
        free(w);
        return sli_err(SL_ENOMEM, "registry: out of memory");
    }
    w->r = r;
    int rc = snapshot(w, &w->seen, &w->nseen);
    if (rc != 0) {
        free(w->name);
        free(w);
        return rc;
    }
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
    w->next_poll_ms = sli_mono_ms() + r->be->watch_interval_ms;
    *out = w;
    return 0;
}

static int push(sl_registry_watch *w, sl_reg_action a, const char *json)
{
    reg_event *q = realloc(w->q, (w->qlen + 1) * sizeof *q);
    if (!q)
        return SL_ENOMEM;
    w->q = q;
    q[w->qlen].action = a;
    q[w->qlen].json = strdup(json);
    if (!q[w->qlen].json)
        return SL_ENOMEM;
    w->qlen++;
    return 0;
}

/* Compare a new snapshot with the last one; queue the differences. */
static int diff(sl_registry_watch *w, sli_reg_rec *now, size_t n)
{
    size_t i = 0, j = 0;
    int rc = 0;
    while (rc == 0 && (i < w->nseen || j < n)) {
        int c = i == w->nseen ? 1 : j == n ? -1 : rec_cmp(&w->seen[i], &now[j]);
        if (c < 0)
            rc = push(w, SL_REG_DELETE, w->seen[i++].json);
        else if (c > 0)
            rc = push(w, SL_REG_CREATE, now[j++].json);
        else {
            if (strcmp(w->seen[i].json, now[j].json) != 0)
                rc = push(w, SL_REG_UPDATE, now[j].json);
            i++, j++;
        }
    }
    sli_reg_recs_free(w->seen, w->nseen);
    w->seen = now;
    w->nseen = n;
    return rc;
}

static int pop(sl_registry_watch *w, sl_reg_action *action, sl_reg_service **svc)
{
    reg_event *e = &w->q[w->qhead];
    sli_reg_rec rec = {.service = "", .node_id = "", .json = e->json};
    size_t n;
    int rc = sli_reg_group(&rec, 1, svc, &n);
    if (rc == 0 && n != 1) {
        sl_reg_services_free(*svc, n);
        *svc = NULL;
        rc = sli_err(SL_ECORRUPT, "registry: a watched record does not decode");
    }
    *action = e->action;
    free(e->json);
    if (++w->qhead == w->qlen)
        w->qhead = w->qlen = 0;
    return rc;
}

int sl_registry_watch_next(sl_registry_watch *w, sl_reg_action *action, sl_reg_service **svc,
                           int timeout_ms)
{
    if (!w || !action || !svc)
        return sli_err(SL_EINVAL, "sl_registry_watch_next: NULL argument");
    *svc = NULL;
    sl_registry *r = w->r;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    pthread_mutex_lock(&r->mu);
    r->inside++;
    int rc = SL_ETIMEDOUT;
    for (;;) {
        if (r->closed) {
            rc = sli_err(SL_ECLOSED, "registry: closed");
            break;
        }
        if (w->qlen > w->qhead) {
            pthread_mutex_unlock(&r->mu);
            rc = pop(w, action, svc);
            pthread_mutex_lock(&r->mu);
            break;
        }
        int64_t now = sli_mono_ms();
        if (now >= w->next_poll_ms) {
            w->next_poll_ms = now + r->be->watch_interval_ms;
            pthread_mutex_unlock(&r->mu);
            sli_reg_rec *recs;
            size_t n;
            int grc = (!r->be->changed || r->be->changed(r->impl, &w->changes))
                          ? snapshot(w, &recs, &n)
                          : 1;
            if (grc == 0)
                grc = diff(w, recs, n);
            else if (grc < 0)
                sli_log(SL_LOG_WARN, "registry", "watch: %s (retrying)", sl_errmsg());
            pthread_mutex_lock(&r->mu);
            continue;
        }
        if (deadline >= 0 && now >= deadline)
            break;
        int64_t until = w->next_poll_ms;
        if (deadline >= 0 && deadline < until)
            until = deadline;
        sli_cond_wait_until(&r->cv, &r->mu, until);
    }
    if (--r->inside == 0 && r->closed)
        pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (rc == SL_ETIMEDOUT)
        return sli_err(SL_ETIMEDOUT, "registry: no change within %d ms", timeout_ms);
    return rc;
}

int sl_registry_watch_close(sl_registry_watch *w)
{
    if (!w)
        return 0;
    for (size_t i = w->qhead; i < w->qlen; i++)
        free(w->q[i].json);
    free(w->q);
    sli_reg_recs_free(w->seen, w->nseen);
    free(w->name);
    sl_registry *r = w->r;
    free(w);
    reg_unref(r);
    return 0;
}
