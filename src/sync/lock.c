/*
 * lock.c - sl_sync and sl_lock: the generic layer over the sync backends
 * (the one list of them is here). It validates names and options, and turns
 * the backends' single try into a wait: retries with a jittered backoff
 * (1 ms doubling to 25 ms) until the lock is free or wait_ms has passed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/sync_int.h"

static const sli_sync_ops *const sync_backends[] = {
    &sli_sync_sqlite,
#ifdef SL_HAVE_REDIS
    &sli_sync_redis,
#endif
#ifdef SL_HAVE_ETCD
    &sli_sync_etcd,
#endif
};
#define NBACKENDS (sizeof sync_backends / sizeof sync_backends[0])

#define NAME_MAX_LEN 200

struct sl_lock {
    sl_sync *s;
    char name[NAME_MAX_LEN + 72];
    uint64_t token;
    int64_t ttl_ms;
};

static int check_name(const char *what, const char *n, size_t max)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > max)
        return sli_err(SL_EINVAL, "sync: %s must be 1..%zu characters", what, max);
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_-.:/", c)))
            return sli_err(SL_EINVAL, "sync: %s '%s' may hold only letters, digits and _-.:/", what,
                           n);
    }
    return 0;
}

int sli_sync_name(const sl_sync *s, const char *name, char *buf, size_t cap)
{
    int rc = check_name("lock name", name, NAME_MAX_LEN);
    if (rc < 0)
        return rc;
    snprintf(buf, cap, "%s/%s", s->prefix, name);
    return 0;
}

int sl_sync_open(sl_sync **out, const char *url)
{
    if (!out || !url)
        return sli_err(SL_EINVAL, "sync: NULL argument to sl_sync_open");
    *out = NULL;
    sli_url *u;
    int rc = sli_url_parse(url, &u);
    if (rc < 0)
        return rc;
    const sli_sync_ops *ops = NULL;
    for (size_t i = 0; i < NBACKENDS; i++)
        if (strcmp(sync_backends[i]->scheme, u->scheme) == 0)
            ops = sync_backends[i];
    sl_sync *s = ops ? calloc(1, sizeof *s) : NULL;
    if (!ops)
        rc = sli_err(SL_ENOTSUP, "sync: unknown scheme '%s' (known: sqlite%s)", u->scheme,
#ifdef SL_HAVE_REDIS
                     ", redis"
#else
                     ""
#endif
#ifdef SL_HAVE_ETCD
                     ", etcd"
#else
                     ""
#endif
        );
    else if (!s)
        rc = sli_err(SL_ENOMEM, "sync: out of memory");
    if (rc == 0) {
        const char *p = sli_url_opt(u, "prefix");
        if ((rc = check_name("option prefix", p ? p : "sluice", 60)) < 0)
            rc = sli_err(SL_EBADOPT, "%s", sl_errmsg());
        else
            snprintf(s->prefix, sizeof s->prefix, "%s", p ? p : "sluice");
    }
    if (rc == 0 && (rc = ops->open(&s->impl, u)) == 0 && (rc = sli_url_check_unused(u)) < 0)
        ops->close(s->impl);
    sli_url_free(u);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->ops = ops;
    *out = s;
    return 0;
}

void sl_sync_close(sl_sync *s)
{
    if (!s)
        return;
    s->ops->close(s->impl);
    free(s);
}

void sl_lock_opts_init(sl_lock_opts *o)
{
    o->ttl_ms = 10000;
    o->wait_ms = -1;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int sl_lock_acquire(sl_sync *s, const char *name, const sl_lock_opts *o, sl_lock **out)
{
    if (!s || !out)
        return sli_err(SL_EINVAL, "sync: NULL argument to sl_lock_acquire");
    *out = NULL;
    sl_lock_opts def;
    sl_lock_opts_init(&def);
    if (!o)
        o = &def;
    if (o->ttl_ms < 10)
        return sli_err(SL_EINVAL, "sync: lock ttl must be at least 10 ms (got %lld)",
                       (long long)o->ttl_ms);
    sl_lock *l = calloc(1, sizeof *l);
    if (!l)
        return sli_err(SL_ENOMEM, "sync: out of memory");
    int rc = sli_sync_name(s, name, l->name, sizeof l->name);
    int64_t deadline = o->wait_ms < 0 ? -1 : sli_mono_ms() + o->wait_ms, backoff = 1;
    while (rc == 0) {
        rc = s->ops->try_lock(s->impl, l->name, o->ttl_ms, &l->token);
        if (rc != SL_EBUSY)
            break;
        int64_t now = sli_mono_ms();
        if (deadline >= 0 && now >= deadline) {
            rc = sli_err(SL_ETIMEDOUT, "sync: lock '%s' still held after %lld ms", name,
                         (long long)o->wait_ms);
            break;
        }
        int64_t nap = 1 + (int64_t)(sli_rand64() % (uint64_t)backoff);
        if (deadline >= 0 && now + nap > deadline)
            nap = deadline - now;
        sleep_ms(nap);
        rc = 0;
        if (backoff < 25)
            backoff *= 2;
    }
    if (rc < 0) {
        free(l);
        return rc;
    }
    l->s = s;
    l->ttl_ms = o->ttl_ms;
    *out = l;
    return 0;
}

uint64_t sl_lock_token(const sl_lock *l)
{
    return l ? l->token : 0;
}

int sl_lock_refresh(sl_lock *l)
{
    if (!l)
        return sli_err(SL_EINVAL, "sync: NULL lock");
    return l->s->ops->refresh(l->s->impl, l->name, l->token, l->ttl_ms);
}

int sl_lock_release(sl_lock *l)
{
    if (!l)
        return sli_err(SL_EINVAL, "sync: NULL lock");
    int rc = l->s->ops->unlock(l->s->impl, l->name, l->token);
    free(l);
    return rc;
}
