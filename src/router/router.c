/*
 * router.c - the router's configuration and lifecycle (see sluice/router.h);
 * the per-message work lives in worker.c.
 *
 * States: NEW -> STARTING (run: check middleware order, start plugins,
 * subscribe, spawn workers) -> RUNNING -> CLOSING (close: set `stop`, wait
 * for the workers until the deadline, cancel the context) -> CLOSED. run
 * blocks until CLOSED. A close during STARTING waits for the start to end.
 *
 * Graceful close never closes a subscription while a worker could still
 * call sl_next on it: when every worker has exited by the deadline, close
 * joins them and closes the subscriptions (handing anything unacked back to
 * the backend); when some were cut off, that is left to sl_router_free,
 * which joins them (it waits for the handlers to return).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/router_int.h"

void sl_router_opts_init(sl_router_opts *o)
{
    memset(o, 0, sizeof *o);
    o->close_timeout_ms = 30000;
}

void sl_handler_opts_init(sl_handler_opts *o)
{
    memset(o, 0, sizeof *o);
    sl_subscribe_opts_init(&o->subscribe);
    o->batch_max = 64;
    o->batch_wait_ms = 10;
    o->workers = 1;
    o->nack_delay_ms = 50;
    o->nack_delay_multiplier = 2.0;
    o->nack_delay_max_ms = 5000;
}

int sl_router_new(sl_router **out, const sl_router_opts *opts)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_router_new: out is NULL");
    sl_router *r = calloc(1, sizeof *r);
    if (!r)
        return sli_err(SL_ENOMEM, "out of memory");
    if (opts)
        r->o = *opts;
    else
        sl_router_opts_init(&r->o);
    if (sl_ctx_new(&r->ctx, NULL)) {
        free(r);
        return SL_ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->admin, NULL);
    sli_cond_init(&r->cond);
    r->htail = &r->handlers;
    *out = r;
    return 0;
}

/* ---------- middleware vectors and order ---------- */

static void mw_release(sl_middleware *mw)
{
    if (mw->free)
        mw->free(mw->state);
}

static int mw_push(sli_mw_vec *v, sl_middleware mw)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 4;
        sl_middleware *nv = realloc(v->v, nc * sizeof *nv);
        if (!nv) {
            mw_release(&mw);
            return sli_err(SL_ENOMEM, "out of memory");
        }
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n++] = mw;
    return 0;
}

/* Refuse a poison middleware anywhere inside (after) a retrying one: it
 * would turn the first failure into success, silently disabling retries. */
static int check_order(const sl_handler *h, const sli_mw_vec *a, const sli_mw_vec *b)
{
    const char *retry = NULL;
    for (int pass = 0; pass < 2; pass++) {
        const sli_mw_vec *v = pass ? b : a;
        for (size_t i = 0; i < v->n; i++) {
            if (retry && (v->v[i].flags & SL_MW_POISON))
                return sli_err(SL_EINVAL,
                               "handler '%s': poison middleware '%s' inside retry middleware '%s' "
                               "would disable retries; add poison first (outermost) or use "
                               "sl_mw_retry_poison",
                               h ? h->name : "*", v->v[i].name ? v->v[i].name : "?", retry);
            if (v->v[i].flags & SL_MW_RETRIES)
                retry = v->v[i].name ? v->v[i].name : "?";
        }
    }
    return 0;
}

int sl_router_add_middleware(sl_router *r, sl_middleware mw)
{
    if (!r || !mw.call) {
        mw_release(&mw);
        return sli_err(SL_EINVAL, "sl_router_add_middleware: NULL router or call");
    }
    pthread_mutex_lock(&r->mu);
    bool fresh = r->state == SLI_R_NEW;
    pthread_mutex_unlock(&r->mu);
    if (!fresh) {
        mw_release(&mw);
        return sli_err(SL_ESTATE, "router already started");
    }
    int rc = mw_push(&r->mws, mw);
    if (rc)
        return rc;
    for (sl_handler *h = r->handlers; h; h = h->next)
        if ((rc = check_order(h, &r->mws, &h->mws))) {
            r->mws.n--;
            mw_release(&mw);
            return rc;
        }
    if (!r->handlers && (rc = check_order(NULL, &r->mws, &(sli_mw_vec){0}))) {
        r->mws.n--;
        mw_release(&mw);
    }
    return rc;
}

int sl_handler_add_middleware(sl_handler *h, sl_middleware mw)
{
    if (!h || !mw.call) {
        mw_release(&mw);
        return sli_err(SL_EINVAL, "sl_handler_add_middleware: NULL handler or call");
    }
    if (h->batch_fn) {
        mw_release(&mw);
        return sli_err(SL_ENOTSUP, "handler '%s' is a batch handler: middlewares do not apply",
                       h->name);
    }
    pthread_mutex_lock(&h->r->mu);
    bool fresh = h->r->state == SLI_R_NEW;
    pthread_mutex_unlock(&h->r->mu);
    if (!fresh) {
        mw_release(&mw);
        return sli_err(SL_ESTATE, "router already started");
    }
    int rc = mw_push(&h->mws, mw);
    if (rc)
        return rc;
    if ((rc = check_order(h, &h->r->mws, &h->mws))) {
        h->mws.n--;
        mw_release(&mw);
    }
    return rc;
}

int sl_router_add_plugin(sl_router *r, sl_plugin p)
{
    if (!r || (!p.on_start && !p.on_close)) {
        if (p.free)
            p.free(p.state);
        return sli_err(SL_EINVAL, "sl_router_add_plugin: NULL router or plugin without hooks");
    }
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    sl_plugin *np = NULL;
    if (r->state != SLI_R_NEW)
        rc = sli_err(SL_ESTATE, "router already started");
    else if (!(np = realloc(r->plugins, (r->nplugins + 1) * sizeof *np)))
        rc = sli_err(SL_ENOMEM, "out of memory");
    else {
        r->plugins = np;
        r->plugins[r->nplugins++] = p;
    }
    pthread_mutex_unlock(&r->mu);
    if (rc && p.free)
        p.free(p.state);
    return rc;
}

/* ---------- handlers ---------- */

static void handler_free(sl_handler *h)
{
    for (size_t i = 0; i < h->ntopics; i++)
        free(h->topics[i]);
    free(h->topics);
    free(h->subs);
    for (size_t i = 0; i < h->mws.n; i++)
        mw_release(&h->mws.v[i]);
    free(h->mws.v);
    free(h->chain);
    free(h->w);
    free(h->group);
    free(h->pub_topic);
    free(h->name);
    sl_ctx_free(h->ctx);
    free(h);
}

static int check_handler_opts(sl_router *r, const sl_handler_opts *o)
{
    if (!o || !o->name || !o->name[0] || !o->sub)
        return sli_err(SL_EINVAL, "handler needs a name and a subscriber");
    if (!!o->fn == !!o->batch_fn)
        return sli_err(SL_EINVAL, "handler '%s': set exactly one of fn and batch_fn", o->name);
    if (!o->topic && (!o->topics || !o->ntopics))
        return sli_err(SL_EINVAL, "handler '%s': no topic", o->name);
    if (o->pub && (!o->pub_topic || sli_check_topic(o->pub_topic)))
        return sli_err(SL_EINVAL, "handler '%s': a publisher needs a valid pub_topic", o->name);
    if (o->batch_fn && (!o->batch_max || o->batch_wait_ms < 0))
        return sli_err(SL_EINVAL, "handler '%s': batch_max must be > 0, batch_wait_ms >= 0",
                       o->name);
    if (o->nack_delay_multiplier < 1.0 && o->nack_delay_ms)
        return sli_err(SL_EINVAL, "handler '%s': nack_delay_multiplier must be >= 1", o->name);
    size_t n = o->topic ? 1 : o->ntopics;
    for (size_t i = 0; i < n; i++) {
        const char *t = o->topic ? o->topic : o->topics[i];
        if (!t || sli_check_topic(t))
            return sli_err(SL_EINVAL, "handler '%s': invalid topic", o->name);
        if (strpbrk(t, "*>#"))
            return sli_err(SL_ENOTSUP,
                           "handler '%s': wildcard topic '%s': no backend can expand patterns yet; "
                           "list the topics",
                           o->name, t);
    }
    for (sl_handler *h = r->handlers; h; h = h->next)
        if (!h->stopped && strcmp(h->name, o->name) == 0)
            return sli_err(SL_EINVAL, "handler '%s' already exists", o->name);
    if (o->nmws && (!o->mws || o->batch_fn))
        return sli_err(o->batch_fn ? SL_ENOTSUP : SL_EINVAL,
                       "handler '%s': middlewares need a (non-batch) handler and an array",
                       o->name);
    return 0;
}

static int handler_fill(sl_handler *h, const sl_handler_opts *o)
{
    size_t n = o->topic ? 1 : o->ntopics;
    h->name = strdup(o->name);
    h->topics = calloc(n, sizeof *h->topics);
    h->subs = calloc(n, sizeof *h->subs);
    if (!h->name || !h->topics || !h->subs)
        return SL_ENOMEM;
    for (; h->ntopics < n; h->ntopics++)
        if (!(h->topics[h->ntopics] = strdup(o->topic ? o->topic : o->topics[h->ntopics])))
            return SL_ENOMEM;
    if (o->pub && !(h->pub_topic = strdup(o->pub_topic)))
        return SL_ENOMEM;
    h->subopts = o->subscribe;
    if (o->subscribe.group && !(h->group = strdup(o->subscribe.group)))
        return SL_ENOMEM;
    h->subopts.group = h->group;
    h->sub = o->sub;
    h->pub = o->pub;
    h->fn = o->fn;
    h->batch_fn = o->batch_fn;
    h->batch_max = o->batch_fn ? o->batch_max : 1;
    h->batch_wait_ms = o->batch_wait_ms;
    h->user = o->user;
    h->workers = o->workers ? o->workers : 1;
    h->nack_delay_ms = o->nack_delay_ms;
    h->nack_delay_mult = o->nack_delay_multiplier;
    h->nack_delay_max_ms = o->nack_delay_max_ms;
    unsigned want = h->workers * h->batch_max;
    if (h->subopts.prefetch < want)
        h->subopts.prefetch = want;
    atomic_init(&h->healthy, true);
    return 0;
}

static void release_opts_mws(const sl_handler_opts *o)
{
    for (size_t i = 0; o && o->mws && i < o->nmws; i++)
        if (o->mws[i].free)
            o->mws[i].free(o->mws[i].state);
}

/* A new handler from o (taking over o's middlewares), not yet linked. */
static int handler_new(sl_router *r, const sl_handler_opts *o, sl_handler **out)
{
    int rc = check_handler_opts(r, o);
    if (rc) {
        release_opts_mws(o);
        return rc;
    }
    sl_handler *h = calloc(1, sizeof *h);
    if (!h) {
        release_opts_mws(o);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    h->r = r;
    if (handler_fill(h, o) || sl_ctx_new(&h->ctx, r->ctx)) {
        handler_free(h);
        release_opts_mws(o);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < o->nmws; i++) {
        if ((rc = mw_push(&h->mws, o->mws[i])) == 0)
            rc = check_order(h, &r->mws, &h->mws);
        if (rc) {
            for (size_t k = i + 1; k < o->nmws; k++)
                mw_release((sl_middleware *)&o->mws[k]);
            handler_free(h);
            return rc;
        }
    }
    *out = h;
    return 0;
}

static int build_chain(sl_handler *h);
static int subscribe_handler(sl_handler *h);
static int spawn_handler(sl_router *r, sl_handler *h);
void sli_handler_join(sl_handler *h);

/* Under r->admin and r->mu: start h on a running router, then link it. */
static int add_running(sl_router *r, sl_handler *h)
{
    int rc = build_chain(h);
    if (rc == 0)
        rc = subscribe_handler(h);
    if (rc == 0)
        rc = spawn_handler(r, h);
    if (rc != 0) {
        char keep[512];
        snprintf(keep, sizeof keep, "%s", sl_errmsg());
        atomic_store(&h->stop, true);
        sl_ctx_cancel(h->ctx);
        while (h->active > 0)
            pthread_cond_wait(&r->cond, &r->mu);
        sli_handler_join(h);
        handler_free(h);
        return sli_err(rc, "%s", keep);
    }
    *r->htail = h;
    r->htail = &h->next;
    return 0;
}

int sl_router_add_handler(sl_router *r, const sl_handler_opts *o, sl_handler **out)
{
    if (!r) {
        release_opts_mws(o);
        return sli_err(SL_EINVAL, "sl_router_add_handler: NULL router");
    }
    pthread_mutex_lock(&r->admin);
    pthread_mutex_lock(&r->mu);
    sli_router_state st = r->state;
    int rc = 0;
    sl_handler *h = NULL;
    if (st != SLI_R_NEW && st != SLI_R_RUNNING) {
        release_opts_mws(o);
        rc = sli_err(SL_ESTATE, "router is starting or closed");
    } else if ((rc = handler_new(r, o, &h)) == 0) {
        if (st == SLI_R_RUNNING)
            rc = add_running(r, h);
        else {
            *r->htail = h;
            r->htail = &h->next;
        }
    }
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_unlock(&r->admin);
    if (rc == 0 && out)
        *out = h;
    return rc;
}

sl_handler *sl_router_handler(sl_router *r, const char *name)
{
    if (!r || !name)
        return NULL;
    sl_handler *found = NULL;
    pthread_mutex_lock(&r->mu);
    for (sl_handler *h = r->handlers; h && !found; h = h->next)
        if (!h->stopped && strcmp(h->name, name) == 0)
            found = h;
    pthread_mutex_unlock(&r->mu);
    return found;
}

bool sl_handler_healthy(const sl_handler *h)
{
    return h && atomic_load(&((sl_handler *)h)->healthy);
}
const char *sl_handler_name(const sl_handler *h)
{
    return h ? h->name : NULL;
}
void sli_handler_mark_unhealthy(sl_handler *h)
{
    atomic_store(&h->healthy, false);
}

/* ---------- run ---------- */

static int build_chain(sl_handler *h)
{
    int rc = check_order(h, &h->r->mws, &h->mws);
    if (rc)
        return rc;
    if (h->batch_fn)
        return 0; /* middlewares do not wrap batch handlers */
    size_t n = h->r->mws.n + h->mws.n;
    if (n && !(h->chain = calloc(n, sizeof *h->chain)))
        return sli_err(SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < h->r->mws.n; i++)
        h->chain[h->nchain++] = &h->r->mws.v[i];
    for (size_t i = 0; i < h->mws.n; i++)
        h->chain[h->nchain++] = &h->mws.v[i];
    return 0;
}

static int subscribe_handler(sl_handler *h)
{
    for (size_t i = 0; i < h->ntopics; i++) {
        int rc = sl_subscribe(h->sub, h->topics[i], &h->subopts, &h->subs[i]);
        if (rc)
            return sli_err(rc, "handler '%s': subscribe to '%s': %s", h->name, h->topics[i],
                           sl_errmsg());
    }
    if (!(h->w = calloc(h->ntopics * h->workers, sizeof *h->w)))
        return sli_err(SL_ENOMEM, "out of memory");
    return 0;
}

static int subscribe_all(sl_router *r)
{
    for (sl_handler *h = r->handlers; h; h = h->next) {
        int rc = subscribe_handler(h);
        if (rc)
            return rc;
    }
    return 0;
}

/* Under r->mu: start h's workers. */
static int spawn_handler(sl_router *r, sl_handler *h)
{
    for (size_t t = 0; t < h->ntopics; t++)
        for (unsigned k = 0; k < h->workers; k++) {
            sli_worker *w = &h->w[h->nw];
            w->h = h;
            w->s = h->subs[t];
            atomic_init(&w->busy, false);
            r->active++;
            h->active++;
            if (pthread_create(&w->tid, NULL, sli_router_worker, w) != 0) {
                r->active--;
                h->active--;
                return sli_err(SL_ENOMEM, "handler '%s': cannot start a worker", h->name);
            }
            w->started = true;
            h->nw++;
        }
    return 0;
}

static int spawn_workers(sl_router *r)
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    for (sl_handler *h = r->handlers; h && !rc; h = h->next)
        rc = spawn_handler(r, h);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* Join h's workers and close its subscriptions (unacked messages go back). */
void sli_handler_join(sl_handler *h)
{
    for (size_t i = 0; i < h->nw; i++)
        if (h->w[i].started) {
            pthread_join(h->w[i].tid, NULL);
            h->w[i].started = false;
        }
    for (size_t i = 0; i < h->ntopics; i++)
        if (h->subs[i]) {
            sl_subscription_close(h->subs[i]);
            h->subs[i] = NULL;
        }
}

static void join_workers(sl_router *r)
{
    if (r->workers_joined)
        return;
    for (sl_handler *h = r->handlers; h; h = h->next)
        for (size_t i = 0; i < h->nw; i++)
            if (h->w[i].started) {
                pthread_join(h->w[i].tid, NULL);
                h->w[i].started = false;
            }
    for (sl_handler *h = r->handlers; h; h = h->next)
        sli_handler_join(h);
    r->workers_joined = true;
}

static void plugins_close(sl_router *r)
{
    for (size_t i = r->plugins_started; i-- > 0;)
        if (r->plugins[i].on_close)
            r->plugins[i].on_close(r, r->plugins[i].state);
    r->plugins_started = 0;
}

static int start(sl_router *r)
{
    int rc = 0;
    for (sl_handler *h = r->handlers; h && !rc; h = h->next)
        rc = build_chain(h);
    for (size_t i = 0; !rc && i < r->nplugins; i++) {
        if (r->plugins[i].on_start && (rc = r->plugins[i].on_start(r, r->plugins[i].state)))
            break;
        r->plugins_started = i + 1;
    }
    if (!rc)
        rc = subscribe_all(r);
    if (!rc)
        rc = spawn_workers(r);
    return rc;
}

int sl_router_run(sl_router *r)
{
    if (!r)
        return sli_err(SL_EINVAL, "sl_router_run: NULL router");
    pthread_mutex_lock(&r->mu);
    if (r->state != SLI_R_NEW) {
        int st = r->state;
        pthread_mutex_unlock(&r->mu);
        return st == SLI_R_CLOSED ? sli_err(SL_ECLOSED, "router closed before it ran")
                                  : sli_err(SL_ESTATE, "router already running");
    }
    r->state = SLI_R_STARTING;
    pthread_mutex_unlock(&r->mu);
    int rc = start(r);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sl_errmsg());
        sli_log(SL_LOG_ERROR, "router", "start failed: %s", msg);
        atomic_store(&r->stop, true);
        sl_ctx_cancel(r->ctx);
        join_workers(r);
        plugins_close(r);
        pthread_mutex_lock(&r->mu);
        r->state = SLI_R_CLOSED;
        r->close_rc = rc;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->mu);
        return sli_err(rc, "%s", msg);
    }
    pthread_mutex_lock(&r->mu);
    r->state = SLI_R_RUNNING;
    pthread_cond_broadcast(&r->cond);
    while (r->state != SLI_R_CLOSED)
        pthread_cond_wait(&r->cond, &r->mu);
    rc = r->close_rc;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int sl_router_running(sl_router *r, int timeout_ms)
{
    if (!r)
        return sli_err(SL_EINVAL, "sl_router_running: NULL router");
    int64_t deadline = sli_deadline_ms(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    while (r->state < SLI_R_RUNNING) {
        if (sli_cond_wait_until(&r->cond, &r->mu, deadline) && r->state < SLI_R_RUNNING) {
            rc = sli_err(SL_ETIMEDOUT, "router not running within %d ms", timeout_ms);
            break;
        }
    }
    if (!rc && r->state > SLI_R_RUNNING)
        rc = sli_err(SL_ECLOSED, "router closed");
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---------- close ---------- */

static unsigned busy_workers(sl_router *r)
{
    unsigned n = 0;
    for (sl_handler *h = r->handlers; h; h = h->next)
        for (size_t i = 0; i < h->nw; i++)
            n += atomic_load(&h->w[i].busy);
    return n;
}

/* Under r->mu: wait for the workers until deadline, then cut off the busy
 * ones (cancel the context) and wait for the idle ones to leave. */
static unsigned drain(sl_router *r, int64_t deadline)
{
    while (r->active > 0)
        if (sli_cond_wait_until(&r->cond, &r->mu, deadline) && deadline >= 0 &&
            sli_mono_ms() >= deadline)
            break;
    if (r->active == 0)
        return 0;
    /* The cut-off count is what was still running at the deadline: a handler
     * that reacts to the cancel at once has been cut off all the same. */
    unsigned cut = busy_workers(r);
    sl_ctx_cancel(r->ctx);
    while (busy_workers(r) < (unsigned)r->active)
        sli_cond_wait_until(&r->cond, &r->mu, sli_mono_ms() + 20);
    return cut;
}

static int close_locked(sl_router *r, int64_t deadline, unsigned *cut_off);

int sl_router_close(sl_router *r, int timeout_ms, unsigned *cut_off)
{
    if (!r)
        return sli_err(SL_EINVAL, "sl_router_close: NULL router");
    int64_t deadline = sli_deadline_ms(timeout_ms);
    pthread_mutex_lock(&r->admin);
    int rc = close_locked(r, deadline, cut_off);
    pthread_mutex_unlock(&r->admin);
    return rc;
}

/* Under r->admin: sl_router_close. */
static int close_locked(sl_router *r, int64_t deadline, unsigned *cut_off)
{
    pthread_mutex_lock(&r->mu);
    while (r->state == SLI_R_STARTING)
        pthread_cond_wait(&r->cond, &r->mu);
    if (r->state == SLI_R_NEW) {
        r->state = SLI_R_CLOSED;
        pthread_cond_broadcast(&r->cond);
    }
    if (r->state != SLI_R_RUNNING) {
        while (r->state != SLI_R_CLOSED)
            pthread_cond_wait(&r->cond, &r->mu);
        int rc = r->close_rc;
        if (cut_off)
            *cut_off = r->cut_off;
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    r->state = SLI_R_CLOSING;
    atomic_store(&r->stop, true);
    unsigned cut = drain(r, deadline);
    pthread_mutex_unlock(&r->mu);
    if (!cut)
        join_workers(r);
    plugins_close(r);
    pthread_mutex_lock(&r->mu);
    r->cut_off = cut;
    r->close_rc = cut ? sli_err(SL_ETIMEDOUT, "router close: %u handler call(s) cut off", cut) : 0;
    r->state = SLI_R_CLOSED;
    pthread_cond_broadcast(&r->cond);
    int rc = r->close_rc;
    pthread_mutex_unlock(&r->mu);
    if (cut_off)
        *cut_off = cut;
    return rc;
}

void sl_router_free(sl_router *r)
{
    if (!r)
        return;
    sl_router_close(r, -1, NULL);
    pthread_mutex_lock(&r->admin);
    join_workers(r);
    pthread_mutex_unlock(&r->admin);
    for (sl_handler *h = r->handlers, *n; h; h = n) {
        n = h->next;
        handler_free(h);
    }
    for (size_t i = 0; i < r->mws.n; i++)
        mw_release(&r->mws.v[i]);
    free(r->mws.v);
    for (size_t i = 0; i < r->nplugins; i++)
        if (r->plugins[i].free)
            r->plugins[i].free(r->plugins[i].state);
    free(r->plugins);
    sl_ctx_free(r->ctx);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->admin);
    free(r);
}
