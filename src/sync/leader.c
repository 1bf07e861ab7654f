/*
 * leader.c - sl_leader: leader election on top of the sync backends. One
 * thread per candidate: while not leading it tries the lock every
 * min(ttl/4, 250 ms); once it leads it refreshes every ttl/3 and gives up
 * leadership (on_revoked) at the first refresh that fails, whether the lock
 * was taken or the backend did not answer: a leader that cannot prove it
 * still holds the lock stops acting before its TTL can pass. Tokens come
 * from the lock, so each new leader's token is larger than the last's.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sync/sync_int.h"

struct sl_leader {
    sl_sync *s;
    char name[280];
    sl_leader_opts o;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool leading;
    uint64_t token;
};

void sl_leader_opts_init(sl_leader_opts *o)
{
    memset(o, 0, sizeof *o);
    o->ttl_ms = 10000;
}

/* Sleep ms unless stopped; returns true when stopping. */
static bool nap(sl_leader *l, int64_t ms)
{
    int64_t deadline = sli_mono_ms() + ms;
    pthread_mutex_lock(&l->mu);
    while (!l->stop && sli_cond_wait_until(&l->cv, &l->mu, deadline) == 0)
        ;
    bool stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    return stop;
}

static void set_leading(sl_leader *l, bool on, uint64_t token)
{
    pthread_mutex_lock(&l->mu);
    l->leading = on;
    l->token = on ? token : 0;
    pthread_mutex_unlock(&l->mu);
}

static void *campaign(void *arg)
{
    sl_leader *l = arg;
    sli_thread_name("sl-leader");
    const sli_sync_ops *ops = l->s->ops;
    int64_t ttl = l->o.ttl_ms, poll = ttl / 4 < 250 ? ttl / 4 : 250;
    uint64_t token = 0;
    bool leading = false;
    for (;;) {
        if (!leading) {
            if (ops->try_lock(l->s->impl, l->name, ttl, &token) == 0) {
                leading = true;
                set_leading(l, true, token);
                if (l->o.on_elected)
                    l->o.on_elected(l, token, l->o.arg);
                continue;
            }
            if (nap(l, poll))
                break;
            continue;
        }
        if (nap(l, ttl / 3))
            break;
        int rc = ops->refresh(l->s->impl, l->name, token, ttl);
        if (rc < 0) {
            sli_log(SL_LOG_WARN, "sync", "leader %s: refresh failed (%s): revoked", l->name,
                    sl_strerror(rc));
            leading = false;
            set_leading(l, false, 0);
            if (l->o.on_revoked)
                l->o.on_revoked(l, token, l->o.arg);
        }
    }
    if (leading) {
        ops->unlock(l->s->impl, l->name, token);
        set_leading(l, false, 0);
        if (l->o.on_revoked)
            l->o.on_revoked(l, token, l->o.arg);
    }
    return NULL;
}

int sl_leader_start(sl_sync *s, const char *name, const sl_leader_opts *o, sl_leader **out)
{
    if (!s || !o || !out)
        return sli_err(SL_EINVAL, "sync: NULL argument to sl_leader_start");
    *out = NULL;
    if (o->ttl_ms < 30)
        return sli_err(SL_EINVAL, "sync: leader ttl must be at least 30 ms (got %lld)",
                       (long long)o->ttl_ms);
    sl_leader *l = calloc(1, sizeof *l);
    if (!l)
        return sli_err(SL_ENOMEM, "sync: out of memory");
    int rc = sli_sync_name(s, name, l->name, sizeof l->name);
    if (rc < 0) {
        free(l);
        return rc;
    }
    l->s = s;
    l->o = *o;
    pthread_mutex_init(&l->mu, NULL);
    sli_cond_init(&l->cv);
    if (pthread_create(&l->th, NULL, campaign, l) != 0) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        free(l);
        return sli_err(SL_ENOMEM, "sync: cannot start the election thread");
    }
    *out = l;
    return 0;
}

bool sl_leader_is_leader(sl_leader *l, uint64_t *token)
{
    if (!l)
        return false;
    pthread_mutex_lock(&l->mu);
    bool on = l->leading;
    if (token)
        *token = l->token;
    pthread_mutex_unlock(&l->mu);
    return on;
}

void sl_leader_stop(sl_leader *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}
