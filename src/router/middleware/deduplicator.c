/*
 * deduplicator.c - ack without running the chain a message whose uuid was
 * already handled successfully within the last window_ms (watermill's
 * Deduplicator, keyed by uuid instead of a payload hash).
 *
 * Unlike watermill's, a uuid is recorded only after the chain succeeded, so
 * a failed message that is redelivered is handled again rather than
 * dropped. Two copies in flight at the same moment may both run (use a
 * single worker, or make the handler idempotent - at-least-once anyway).
 *
 * Storage: a chained hash table of uuid -> time plus a FIFO in insertion
 * (= time) order, so expired entries are dropped from the FIFO head on each
 * call; the table doubles when it holds more entries than buckets.
 */
#include <stdlib.h>
#include <string.h>

#include "router/middleware/mw_int.h"

typedef struct dent {
    int64_t at;
    struct dent *hnext, *qnext;
    char key[];
} dent;

typedef struct dedup {
    pthread_mutex_t mu;
    unsigned window;
    dent **b;
    size_t nb, n;
    dent *qhead, *qtail;
} dedup;

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static dent **find(dedup *d, const char *key)
{
    dent **pp = &d->b[hash(key) & (d->nb - 1)];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

static void expire(dedup *d, int64_t now)
{
    while (d->qhead && now - d->qhead->at >= d->window) {
        dent *e = d->qhead;
        d->qhead = e->qnext;
        if (!d->qhead)
            d->qtail = NULL;
        dent **pp = find(d, e->key);
        if (*pp == e)
            *pp = e->hnext;
        d->n--;
        free(e);
    }
}

static void grow(dedup *d)
{
    size_t nb = d->nb * 2;
    dent **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* keep the longer chains */
    for (size_t i = 0; i < d->nb; i++)
        for (dent *e = d->b[i], *n; e; e = n) {
            n = e->hnext;
            size_t k = hash(e->key) & (nb - 1);
            e->hnext = b[k];
            b[k] = e;
        }
    free(d->b);
    d->b = b;
    d->nb = nb;
}

static void remember(dedup *d, const char *key, int64_t now)
{
    dent **pp = find(d, key);
    if (*pp)
        return;
    size_t len = strlen(key);
    dent *e = malloc(sizeof *e + len + 1);
    if (!e)
        return; /* forgetting is safe: at worst a duplicate runs */
    memcpy(e->key, key, len + 1);
    e->at = now;
    e->hnext = NULL;
    e->qnext = NULL;
    *pp = e;
    if (d->qtail)
        d->qtail->qnext = e;
    else
        d->qhead = e;
    d->qtail = e;
    if (++d->n > d->nb)
        grow(d);
}

static int dedup_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    dedup *d = st;
    const char *key = sl_msg_uuid(in);
    pthread_mutex_lock(&d->mu);
    int64_t now = sli_mono_ms();
    expire(d, now);
    bool seen = *find(d, key) != NULL;
    pthread_mutex_unlock(&d->mu);
    if (seen)
        return 0;
    int rc = sl_mw_next(next, ctx, in, out);
    if (rc == 0) {
        pthread_mutex_lock(&d->mu);
        remember(d, key, sli_mono_ms());
        pthread_mutex_unlock(&d->mu);
    }
    return rc;
}

static void dedup_free(void *st)
{
    dedup *d = st;
    for (dent *e = d->qhead, *n; e; e = n) {
        n = e->qnext;
        free(e);
    }
    free(d->b);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

int sl_mw_deduplicator(sl_middleware *out, unsigned window_ms)
{
    if (!out || !window_ms)
        return sli_err(SL_EINVAL, "deduplicator: window must be > 0");
    dedup *d = calloc(1, sizeof *d);
    if (!d || !(d->b = calloc(64, sizeof *d->b))) {
        free(d);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    d->nb = 64;
    d->window = window_ms;
    pthread_mutex_init(&d->mu, NULL);
    *out = (sl_middleware){"deduplicator", 0, dedup_call, dedup_free, d};
    return 0;
}
