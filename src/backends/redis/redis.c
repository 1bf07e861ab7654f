/*
 * redis.c - the redis:// ops table: publishers and subscriber handles (the
 * subscriptions live in rd_sub.c; the whole design is in rd.h, the options
 * in rd_conn.c).
 *
 * A publisher owns one connection, used by one publish at a time (a mutex).
 * A publish pipelines one XADD per message and returns once every reply is
 * in: 0 when all n entries exist on the server. When the connection breaks,
 * the entries without a reply are sent again on a new connection (backoff,
 * for up to `reconnect`); if that fails the error says how many were
 * confirmed (a prefix of the batch).
 *
 * Opening a publisher or subscriber connects once, so a server that is not
 * there is reported at open (SL_ECONN), not at first use.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/redis/rd.h"

#define RD_PIPE_MAX 256 /* XADDs in flight per round trip */

typedef struct rd_pub {
    rd_opts o;
    rd_conn k;
    pthread_mutex_t mu;
    _Atomic bool closing;
} rd_pub;

typedef struct rd_subr {
    rd_opts o;
} rd_subr;

static int probe(const rd_opts *o)
{
    rd_conn k = {.o = o};
    int rc = rd_conn_ensure(&k, -1, NULL);
    if (!rc)
        rc = rd_cmdv(&k, 1, (const char *[]){"PING"});
    rd_conn_drop(&k);
    return rc;
}

static int rd_pub_open(void **impl, sli_url *u, unsigned *features)
{
    (void)features;
    rd_pub *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = rd_opts_parse(u, &p->o);
    if (rc) {
        free(p);
        return rc;
    }
    p->k.o = &p->o;
    if ((rc = rd_conn_ensure(&p->k, -1, NULL)) != 0) {
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->mu, NULL);
    *impl = p;
    return 0;
}

/* Send msgs[*done..n) in pipelined rounds; advances *done per reply. */
static int publish_some(rd_pub *p, const char *key, size_t keylen, sl_msg *const *msgs, size_t n,
                        size_t *done)
{
    while (*done < n) {
        size_t round = n - *done < RD_PIPE_MAX ? n - *done : RD_PIPE_MAX;
        int rc = 0;
        for (size_t i = 0; i < round && !rc; i++)
            rc = rd_append_xadd(&p->k, key, keylen, msgs[*done + i]);
        if (rc) {
            rd_conn_drop(&p->k); /* half-queued output: start clean */
            return rc;
        }
        for (size_t i = 0; i < round; i++) {
            redisReply *r;
            if ((rc = rd_read(&p->k, &r)) != 0)
                return rc;
            if ((rc = rd_transient(&p->k, r)) != 0) {
                freeReplyObject(r);
                return rc;
            }
            if (r->type == REDIS_REPLY_ERROR) {
                rc = sli_err(SL_EIO, "redis: XADD %s: %.*s (%zu of %zu published)", key,
                             (int)r->len, r->str, *done, n);
                freeReplyObject(r);
                rd_conn_drop(&p->k); /* the rest of the round is still unread */
                return rc;
            }
            freeReplyObject(r);
            (*done)++;
        }
    }
    return 0;
}

static int rd_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                      const sl_publish_opts *opts)
{
    (void)opts;
    rd_pub *p = impl;
    size_t keylen;
    char *key = rd_key(&p->o, topic, &keylen);
    if (!key)
        return sli_err(SL_ENOMEM, "out of memory");
    pthread_mutex_lock(&p->mu);
    int64_t deadline = sli_mono_ms() + p->o.reconnect;
    size_t done = 0;
    int rc = 0;
    for (;;) {
        if (atomic_load(&p->closing)) {
            rc = sli_err(SL_ECLOSED, "redis publisher is closed");
            break;
        }
        if ((rc = rd_conn_ensure(&p->k, deadline, &p->closing)) != 0)
            break;
        rc = publish_some(p, key, keylen, msgs, n, &done);
        if (rc != SL_ECONN)
            break;
        sli_log(SL_LOG_WARN, "redis", "publish to %s: %s; retrying", key, sl_errmsg());
    }
    pthread_mutex_unlock(&p->mu);
    if (rc && rc != SL_EIO)
        rc = sli_err(rc, "redis: publish to %s: %zu of %zu confirmed: %s", key, done, n,
                     sl_errmsg());
    free(key);
    return rc;
}

static int rd_pub_close(void *impl)
{
    rd_pub *p = impl;
    atomic_store(&p->closing, true);
    pthread_mutex_lock(&p->mu); /* a publish in flight ends (or gives up) first */
    rd_conn_drop(&p->k);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return 0;
}

static int rd_sub_open(void **impl, sli_url *u, unsigned *features)
{
    (void)features;
    rd_subr *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = rd_opts_parse(u, &s->o);
    if (!rc)
        rc = probe(&s->o);
    if (rc) {
        free(s);
        return rc;
    }
    *impl = s;
    return 0;
}

static int rd_sub_subscribe(void *impl, const char *topic, const sl_subscribe_opts *o, void **sub)
{
    rd_subr *s = impl;
    return rd_subscribe(&s->o, topic, o, sub);
}

static int rd_sub_close(void *impl)
{
    free(impl);
    return 0;
}

const sli_backend sli_redis_backend = {
    .scheme = "redis",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_ORDERED |
                SL_FEAT_LATE_SUBSCRIBERS | SL_FEAT_DELAYED_NACK,
    .pub_open = rd_pub_open,
    .publish = rd_publish,
    .pub_close = rd_pub_close,
    .sub_open = rd_sub_open,
    .subscribe = rd_sub_subscribe,
    .next = rd_next,
    .unsubscribe = rd_unsubscribe,
    .sub_close = rd_sub_close,
};
