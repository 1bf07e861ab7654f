/*
 * metrics.c - per-handler call counts and latency histograms, read with
 * sl_metrics_get / sl_metrics_foreach (the service renders them as
 * Prometheus text). Latency is the time the rest of the chain took.
 *
 * Handlers are found on an append-only list: readers walk it without a lock
 * (entries are published with a release store and never removed until the
 * middleware is freed); the mutex only serialises appends. Counters are
 * relaxed atomics, so a snapshot is per-counter exact but not one instant.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/middleware/mw_int.h"

const uint64_t sl_metrics_bucket_us[SL_METRICS_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 1000000, 10000000, UINT64_MAX,
};

typedef struct hm {
    const sl_handler *h;
    char name[128];
    _Atomic uint64_t calls, ok, failed, sum_us, max_us;
    _Atomic uint64_t buckets[SL_METRICS_BUCKETS];
    struct hm *_Atomic next;
} hm;

struct sl_metrics {
    pthread_mutex_t mu;
    hm *_Atomic head;
    hm *_Atomic *tail;
};

static hm *lookup(sl_metrics *m, const sl_handler *h)
{
    for (hm *e = atomic_load_explicit(&m->head, memory_order_acquire); e;
         e = atomic_load_explicit(&e->next, memory_order_acquire))
        if (e->h == h)
            return e;
    pthread_mutex_lock(&m->mu);
    hm *e;
    for (e = atomic_load(&m->head); e; e = atomic_load(&e->next))
        if (e->h == h)
            break;
    if (!e && (e = calloc(1, sizeof *e))) {
        e->h = h;
        snprintf(e->name, sizeof e->name, "%s", sl_handler_name(h));
        atomic_store_explicit(m->tail, e, memory_order_release);
        m->tail = &e->next;
    }
    pthread_mutex_unlock(&m->mu);
    return e;
}

/* One call of e's handler that began at t0 (sli_mono_ns) ended, failed or not. */
static void record(hm *e, int64_t t0, bool failed)
{
    uint64_t us = (uint64_t)(sli_mono_ns() - t0) / 1000;
    atomic_fetch_add_explicit(&e->calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(failed ? &e->failed : &e->ok, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->sum_us, us, memory_order_relaxed);
    uint64_t mx = atomic_load_explicit(&e->max_us, memory_order_relaxed);
    while (us > mx && !atomic_compare_exchange_weak_explicit(
                          &e->max_us, &mx, us, memory_order_relaxed, memory_order_relaxed)) {
    }
    size_t b = 0;
    while (us > sl_metrics_bucket_us[b])
        b++;
    atomic_fetch_add_explicit(&e->buckets[b], 1, memory_order_relaxed);
}

/* A panic caught by a recoverer outside this middleware jumped over the
 * call: it is counted as a failed one (it went uncounted). */
static void record_panic(void *arg, int64_t t0)
{
    record(arg, t0, true);
}

static int metrics_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    hm *e = lookup(st, sl_mw_handler(next));
    int64_t t0 = sli_mono_ns();
    if (!e)
        return sl_mw_next(next, ctx, in, out);
    sli_unwind_push(record_panic, e, t0);
    int rc = sl_mw_next(next, ctx, in, out);
    sli_unwind_pop();
    record(e, t0, rc != 0);
    return rc;
}

static void snapshot(const hm *e, sl_handler_stats *s)
{
    hm *x = (hm *)e;
    memcpy(s->handler, e->name, sizeof s->handler);
    s->calls = atomic_load(&x->calls);
    s->ok = atomic_load(&x->ok);
    s->failed = atomic_load(&x->failed);
    s->sum_us = atomic_load(&x->sum_us);
    s->max_us = atomic_load(&x->max_us);
    for (size_t i = 0; i < SL_METRICS_BUCKETS; i++)
        s->buckets[i] = atomic_load(&x->buckets[i]);
}

int sl_metrics_get(sl_metrics *m, const char *handler, sl_handler_stats *out)
{
    if (!m || !handler || !out)
        return sli_err(SL_EINVAL, "sl_metrics_get: NULL argument");
    for (hm *e = atomic_load(&m->head); e; e = atomic_load(&e->next))
        if (strcmp(e->name, handler) == 0) {
            snapshot(e, out);
            return 0;
        }
    return sli_err(SL_ENOENT, "no metrics for handler '%s'", handler);
}

void sl_metrics_foreach(sl_metrics *m, void (*fn)(const sl_handler_stats *s, void *user),
                        void *user)
{
    if (!m || !fn)
        return;
    for (hm *e = atomic_load(&m->head); e; e = atomic_load(&e->next)) {
        sl_handler_stats s;
        snapshot(e, &s);
        fn(&s, user);
    }
}

static void metrics_free(void *st)
{
    sl_metrics *m = st;
    for (hm *e = atomic_load(&m->head), *n; e; e = n) {
        n = atomic_load(&e->next);
        free(e);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int sl_mw_metrics(sl_middleware *out, sl_metrics **mp)
{
    if (!out || !mp)
        return sli_err(SL_EINVAL, "sl_mw_metrics: NULL argument");
    sl_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return sli_err(SL_ENOMEM, "out of memory");
    pthread_mutex_init(&m->mu, NULL);
    m->tail = &m->head;
    *mp = m;
    *out = (sl_middleware){"metrics", 0, metrics_call, metrics_free, m};
    return 0;
}
