/*
 * worker.c - what a router worker thread does with each message, plus the
 * small public helpers handlers use (output lists, sl_mw_next,
 * sl_handler_fail).
 *
 * A worker owns one output list (reused, so a steady flow allocates only
 * the messages themselves) and loops: sl_next with a 100 ms timeout (so a
 * close is noticed without closing the subscription under it), run the
 * chain under the router's context, publish the outputs, then ack - or nack
 * with the handler's backoff. A message taken after the close began is
 * nacked at once (it goes back to the backend, never lost). The `busy` flag
 * brackets the handler call so close can tell cut-off calls from idle
 * workers.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "router/router_int.h"

#define POLL_MS 100

/* ---------- output lists ---------- */

int sl_msg_list_push(sl_msg_list *l, sl_msg *m)
{
    if (!l || !m)
        return sli_err(SL_EINVAL, "sl_msg_list_push: NULL list or message");
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        sl_msg **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv)
            return sli_err(SL_ENOMEM, "out of memory");
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = m;
    return 0;
}

void sl_msg_list_truncate(sl_msg_list *l, size_t keep)
{
    if (!l)
        return;
    while (l->n > keep)
        sl_msg_unref(l->v[--l->n]);
}

void sl_msg_list_free(sl_msg_list *l)
{
    if (!l)
        return;
    sl_msg_list_truncate(l, 0);
    free(l->v);
    l->v = NULL;
    l->cap = 0;
}

/* ---------- chain ---------- */

int sl_mw_next(const sl_mw_call *c, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    if (c->i < c->n) {
        sl_mw_call nx = *c;
        nx.i++;
        const sl_middleware *m = c->chain[c->i];
        return m->call(m->state, &nx, ctx, in, out);
    }
    return c->h->fn(ctx, in, out, c->h->user);
}

sl_handler *sl_mw_handler(const sl_mw_call *c)
{
    return c ? c->h : NULL;
}

int sl_handler_fail(int code, const char *fmt, ...)
{
    char buf[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return sli_err(code, "%s", buf);
}

/* ---------- settle ---------- */

/* delay_ms >= 0: a middleware's override (delay_on_error) for this message. */
static void nack_backoff(sl_handler *h, sl_msg *m, int64_t delay_ms)
{
    if (delay_ms >= 0) {
        sl_msg_nack_delay(m, delay_ms > UINT_MAX ? UINT_MAX : (unsigned)delay_ms);
        return;
    }
    if (!h->nack_delay_ms) {
        sl_msg_nack(m);
        return;
    }
    unsigned d = sl_msg_deliveries(m);
    double delay =
        sli_backoff(h->nack_delay_ms, h->nack_delay_mult, h->nack_delay_max_ms, d > 1 ? d - 1 : 0);
    sl_msg_nack_delay(m, (unsigned)delay);
}

/* Publish the outputs of a successful call; returns the publish error.
 * Outputs of a single-message call carry the input's context. */
static int publish_out(sl_handler *h, const sl_msg *in, sl_msg_list *out)
{
    if (!out->n)
        return 0;
    int rc = 0;
    for (size_t i = 0; in && i < out->n && rc == 0; i++)
        rc = sl_msg_carry_context(in, out->v[i]);
    if (rc)
        ;
    else if (!h->pub)
        rc = sli_err(SL_EINVAL, "handler '%s' produced %zu message(s) but has no publisher",
                     h->name, out->n);
    else
        rc = sl_publish(h->pub, h->pub_topic, out->v, out->n);
    if (rc)
        sli_log(SL_LOG_WARN, "router", "handler '%s': publish: %s", h->name, sl_errmsg());
    sl_msg_list_truncate(out, 0);
    return rc;
}

/* The context of a call: the router's, or a child done at the message's
 * SL_META_DEADLINE (*own, to free). A bad deadline is logged and ignored. */
static sl_ctx *call_ctx(sl_handler *h, const sl_msg *m, sl_ctx **own)
{
    *own = NULL;
    int64_t at;
    int rc = sl_msg_deadline(m, &at);
    if (rc == SL_ENOENT)
        return h->ctx;
    if (rc != 0) {
        sli_log(SL_LOG_WARN, "router", "handler '%s': %s (ignored)", h->name, sl_errmsg());
        return h->ctx;
    }
    int64_t mono = sl_ctx_now_ms() + (at - sli_wall_ms());
    if (sl_ctx_new_deadline(own, h->ctx, mono < 0 ? 0 : mono) != 0) /* < 0 means none */
        return h->ctx;
    return *own;
}

static void process_one(sli_worker *w, sl_msg *m, sl_msg_list *out)
{
    sl_handler *h = w->h;
    int64_t delay = -1; /* fresh per message: an override never outlives its message */
    sl_mw_call c = {h->chain, 0, h->nchain, h, &delay};
    sl_ctx *own;
    sl_ctx *ctx = call_ctx(h, m, &own);
    atomic_store_explicit(&w->busy, true, memory_order_relaxed);
    int rc = sl_mw_next(&c, ctx, m, out);
    sl_ctx_free(own);
    if (rc == 0)
        rc = publish_out(h, m, out);
    else
        sl_msg_list_truncate(out, 0);
    atomic_store_explicit(&w->busy, false, memory_order_relaxed);
    if (rc == 0)
        sl_msg_ack(m);
    else
        nack_backoff(h, m, delay);
    sl_msg_unref(m);
}

static void process_batch(sli_worker *w, sl_msg **v, int *res, size_t n, sl_msg_list *out)
{
    sl_handler *h = w->h;
    for (size_t i = 0; i < n; i++)
        res[i] = 0;
    atomic_store_explicit(&w->busy, true, memory_order_relaxed);
    int rc = h->batch_fn(h->ctx, v, n, res, out, h->user);
    if (rc == 0)
        rc = publish_out(h, n == 1 ? v[0] : NULL, out);
    else
        sl_msg_list_truncate(out, 0);
    atomic_store_explicit(&w->busy, false, memory_order_relaxed);
    /* the handled ones are acked together (one backend call per run where
     * the backend batches acks), the failed ones nacked one by one */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && res[i] == 0)
            v[k++] = v[i];
        else {
            nack_backoff(h, v[i], -1);
            sl_msg_unref(v[i]);
        }
    }
    sl_msg_ack_batch(v, k);
    for (size_t i = 0; i < k; i++)
        sl_msg_unref(v[i]);
}

/* ---------- the loop ---------- */

/* Take up to max messages (sl_next_batch: one backend call for what is
 * ready) into v[*n..); returns 0, or 1 to stop the worker (what this call
 * took then goes back to the backend). */
static int take_some(sli_worker *w, sl_msg **v, size_t *n, size_t max, int timeout_ms)
{
    size_t got = 0;
    int rc = sl_next_batch(w->s, v + *n, max - *n, &got, timeout_ms);
    if (rc == SL_ETIMEDOUT)
        return 0;
    if (rc == SL_ECLOSED)
        return 1;
    if (rc) {
        sli_log(SL_LOG_WARN, "router", "handler '%s': next: %s", w->h->name, sl_errmsg());
        sl_ctx_wait(w->h->ctx, 10);
        return 0;
    }
    if (atomic_load(&w->h->r->stop) || atomic_load(&w->h->stop)) {
        for (size_t i = 0; i < got; i++) { /* taken after close/stop began: back to the backend */
            sl_msg_nack(v[*n + i]);
            sl_msg_unref(v[*n + i]);
        }
        return 1;
    }
    *n += got;
    return 0;
}

/* Take what is ready now, until the batch is full or nothing came. */
static int drain(sli_worker *w, sl_msg **v, size_t *n, size_t max)
{
    while (*n < max) {
        size_t before = *n;
        if (take_some(w, v, n, max, 0))
            return 1;
        if (*n == before)
            break;
    }
    return 0;
}

static void loop_single(sli_worker *w, sl_msg_list *out)
{
    sl_router *r = w->h->r;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed) &&
           !atomic_load_explicit(&w->h->stop, memory_order_relaxed)) {
        sl_msg *m;
        size_t n = 0;
        if (take_some(w, &m, &n, 1, POLL_MS))
            break;
        if (n)
            process_one(w, m, out);
    }
}

static void loop_batch(sli_worker *w, sl_msg_list *out)
{
    sl_handler *h = w->h;
    sl_msg **v = calloc(h->batch_max, sizeof *v);
    int *res = calloc(h->batch_max, sizeof *res);
    if (!v || !res) {
        sli_log(SL_LOG_ERROR, "router", "handler '%s': out of memory", h->name);
        free(v);
        free(res);
        return;
    }
    bool quit = false;
    while (!quit && !atomic_load_explicit(&h->r->stop, memory_order_relaxed) &&
           !atomic_load_explicit(&h->stop, memory_order_relaxed)) {
        size_t n = 0;
        quit = take_some(w, v, &n, h->batch_max, POLL_MS);
        if (!n)
            continue;
        /* Fill: take what is ready; if the batch still has room, sleep out
           the rest of the window once and take what came meanwhile. Waiting
           in the backend instead would take each trickle as it arrives: on
           sqlite:// one claim transaction per publisher's commit, each
           holding the database the publishers wait for. */
        int64_t until = sli_mono_ms() + h->batch_wait_ms;
        quit = quit || drain(w, v, &n, h->batch_max);
        int64_t left = until - sli_mono_ms();
        if (!quit && n < h->batch_max && left > 0 && !sl_ctx_wait(h->ctx, left))
            quit = drain(w, v, &n, h->batch_max);
        process_batch(w, v, res, n, out);
    }
    free(v);
    free(res);
}

void *sli_router_worker(void *arg)
{
    sli_worker *w = arg;
    sl_router *r = w->h->r;
    sl_msg_list out = {0};
    char name[16];
    snprintf(name, sizeof name, "sl-h:%s", w->h->name);
    sli_thread_name(name);
    if (w->h->batch_fn)
        loop_batch(w, &out);
    else
        loop_single(w, &out);
    sl_msg_list_free(&out);
    pthread_mutex_lock(&r->mu);
    r->active--;
    w->h->active--;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}
