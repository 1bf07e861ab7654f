/*
 * pubsub.c - the generic publisher/subscriber layer: argument checks, URL
 * parsing, scheme lookup, unknown-option rejection, and the list of open
 * subscriptions a subscriber closes with itself. Backends do the real work
 * through their ops table (backend.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

struct sl_publisher {
    const sli_backend *ops;
    void *impl;
    unsigned features;
};

struct sl_subscription {
    sl_subscriber *owner;
    void *impl;
    sl_subscription *prev, *next;
};

struct sl_subscriber {
    const sli_backend *ops;
    void *impl;
    unsigned features;
    pthread_mutex_t mu;
    sl_subscription *subs;
};

void sl_publish_opts_init(sl_publish_opts *o)
{
    if (o) {
        o->flags = 0;
        o->timeout_ms = -1;
        o->published = NULL;
    }
}

void sl_subscribe_opts_init(sl_subscribe_opts *o)
{
    if (o) {
        o->group = NULL;
        o->start = SL_START_DEFAULT;
        o->prefetch = 1;
    }
}

/* Parse url, find its backend. On success the caller owns *u. */
static int resolve(const char *what, const char *url, sli_url **u, const sli_backend **ops)
{
    int rc = sli_url_parse(url, u);
    if (rc) {
        char detail[400];
        snprintf(detail, sizeof detail, "%s", sl_errmsg());
        return sli_err(rc, "%s: %s", what, detail);
    }
    *ops = sli_backend_find((*u)->scheme);
    if (!*ops) {
        rc = sli_err(SL_ENOTSUP, "%s: unknown scheme '%s' (known: %s)", what, (*u)->scheme,
                     sli_backend_schemes());
        sli_url_free(*u);
        *u = NULL;
    }
    return rc;
}

int sl_publisher_open(sl_publisher **out, const char *url)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_publisher_open: out is NULL");
    *out = NULL;
    sli_url *u;
    const sli_backend *ops;
    int rc = resolve("sl_publisher_open", url, &u, &ops);
    if (rc)
        return rc;
    sl_publisher *p = calloc(1, sizeof *p);
    if (!p) {
        sli_url_free(u);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    p->ops = ops;
    p->features = ops->features;
    rc = ops->pub_open(&p->impl, u, &p->features);
    if (rc == 0 && (rc = sli_url_check_unused(u)) != 0)
        ops->pub_close(p->impl);
    sli_url_free(u);
    if (rc) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int sl_publish_ex(sl_publisher *p, const char *topic, sl_msg *const *msgs, size_t n,
                  const sl_publish_opts *opts)
{
    if (!p)
        return sli_err(SL_EINVAL, "sl_publish: publisher is NULL");
    int rc = sli_check_topic(topic);
    if (rc)
        return rc;
    if (n && !msgs)
        return sli_err(SL_EINVAL, "sl_publish: msgs is NULL");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i])
            return sli_err(SL_EINVAL, "sl_publish: msgs[%zu] is NULL", i);
    if (n == 0)
        return 0;
    sl_publish_opts def;
    if (!opts) {
        sl_publish_opts_init(&def);
        opts = &def;
    }
    if ((opts->flags & SL_PUBLISH_WAIT_ACK) && !(p->features & SL_FEAT_WAIT_ACK))
        return sli_err(SL_ENOTSUP, "sl_publish: %s:// cannot wait for acks", p->ops->scheme);
    if (opts->published)
        *opts->published = 0; /* backends that can tell a partial count set it */
    rc = p->ops->publish(p->impl, topic, msgs, n, opts);
    if (rc == 0 && opts->published)
        *opts->published = n;
    return rc;
}

int sl_publish(sl_publisher *p, const char *topic, sl_msg *const *msgs, size_t n)
{
    return sl_publish_ex(p, topic, msgs, n, NULL);
}

unsigned sl_publisher_features(const sl_publisher *p)
{
    return p ? p->features : 0;
}

int sl_publisher_close(sl_publisher *p)
{
    if (!p)
        return sli_err(SL_EINVAL, "sl_publisher_close: NULL");
    int rc = p->ops->pub_close(p->impl);
    free(p);
    return rc;
}

int sl_subscriber_open(sl_subscriber **out, const char *url)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_subscriber_open: out is NULL");
    *out = NULL;
    sli_url *u;
    const sli_backend *ops;
    int rc = resolve("sl_subscriber_open", url, &u, &ops);
    if (rc)
        return rc;
    sl_subscriber *s = calloc(1, sizeof *s);
    if (!s) {
        sli_url_free(u);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    s->ops = ops;
    s->features = ops->features;
    pthread_mutex_init(&s->mu, NULL);
    rc = ops->sub_open(&s->impl, u, &s->features);
    if (rc == 0 && (rc = sli_url_check_unused(u)) != 0)
        ops->sub_close(s->impl);
    sli_url_free(u);
    if (rc) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sl_subscribe(sl_subscriber *sub, const char *topic, const sl_subscribe_opts *opts,
                 sl_subscription **out)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_subscribe: out is NULL");
    *out = NULL;
    if (!sub)
        return sli_err(SL_EINVAL, "sl_subscribe: subscriber is NULL");
    int rc = sli_check_topic(topic);
    if (rc)
        return rc;
    sl_subscribe_opts o;
    if (opts)
        o = *opts;
    else
        sl_subscribe_opts_init(&o);
    if (o.prefetch == 0)
        o.prefetch = 1;
    if (o.group && !*o.group)
        o.group = NULL;
    if (o.group && (rc = sli_check_topic(o.group)) != 0)
        return sli_err(SL_EINVAL, "sl_subscribe: bad group name: %s", sl_errmsg());
    if (o.group && !(sub->features & SL_FEAT_CONSUMER_GROUPS))
        return sli_err(SL_ENOTSUP, "sl_subscribe: %s:// has no consumer groups", sub->ops->scheme);
    if (o.start < SL_START_DEFAULT || o.start > SL_START_LATEST)
        return sli_err(SL_EINVAL, "sl_subscribe: bad start position %d", (int)o.start);
    sl_subscription *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    s->owner = sub;
    rc = sub->ops->subscribe(sub->impl, topic, &o, &s->impl);
    if (rc) {
        free(s);
        return rc;
    }
    pthread_mutex_lock(&sub->mu);
    s->next = sub->subs;
    if (sub->subs)
        sub->subs->prev = s;
    sub->subs = s;
    pthread_mutex_unlock(&sub->mu);
    *out = s;
    return 0;
}

int sl_next(sl_subscription *s, sl_msg **out, int timeout_ms)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_next: out is NULL");
    *out = NULL;
    if (!s)
        return sli_err(SL_EINVAL, "sl_next: subscription is NULL");
    return s->owner->ops->next(s->impl, out, timeout_ms);
}

/* For backends without their own next_batch: one sl_next that may wait, then
 * polls (timeout 0) while messages are at hand. */
static int next_batch_generic(sl_subscription *s, sl_msg **out, size_t max, size_t *got,
                              int timeout_ms)
{
    int rc = s->owner->ops->next(s->impl, &out[0], timeout_ms);
    if (rc)
        return rc;
    size_t k = 1;
    while (k < max && s->owner->ops->next(s->impl, &out[k], 0) == 0)
        k++;
    sli_err_clear(); /* a later poll's failure comes back on the next call */
    *got = k;
    return 0;
}

int sl_next_batch(sl_subscription *s, sl_msg **out, size_t max, size_t *got, int timeout_ms)
{
    if (!got)
        return sli_err(SL_EINVAL, "sl_next_batch: got is NULL");
    *got = 0;
    if (!s || !out || !max)
        return sli_err(SL_EINVAL, "sl_next_batch: %s",
                       !s     ? "subscription is NULL"
                       : !out ? "out is NULL"
                              : "max is 0");
    for (size_t i = 0; i < max; i++)
        out[i] = NULL;
    const sli_backend *ops = s->owner->ops;
    if (ops->next_batch)
        return ops->next_batch(s->impl, out, max, got, timeout_ms);
    return next_batch_generic(s, out, max, got, timeout_ms);
}

int sl_subscription_close(sl_subscription *s)
{
    if (!s)
        return sli_err(SL_EINVAL, "sl_subscription_close: NULL");
    sl_subscriber *sub = s->owner;
    pthread_mutex_lock(&sub->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        sub->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&sub->mu);
    int rc = sub->ops->unsubscribe(s->impl);
    free(s);
    return rc;
}

unsigned sl_subscriber_features(const sl_subscriber *sub)
{
    return sub ? sub->features : 0;
}

int sl_subscriber_close(sl_subscriber *sub)
{
    if (!sub)
        return sli_err(SL_EINVAL, "sl_subscriber_close: NULL");
    pthread_mutex_lock(&sub->mu);
    sl_subscription *s = sub->subs;
    sub->subs = NULL;
    pthread_mutex_unlock(&sub->mu);
    int rc = 0;
    while (s) {
        sl_subscription *nx = s->next;
        int r = sub->ops->unsubscribe(s->impl);
        if (r && !rc)
            rc = r;
        free(s);
        s = nx;
    }
    int r = sub->ops->sub_close(sub->impl);
    if (r && !rc)
        rc = r;
    pthread_mutex_destroy(&sub->mu);
    free(sub);
    return rc;
}
