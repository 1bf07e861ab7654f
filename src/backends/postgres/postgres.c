/*
 * postgres.c - postgres://user:pass@host:port/db: PostgreSQL as a durable,
 * multi-process queue (the ops table; tables and claims: see pg.h, options:
 * pg_link.c).
 *
 * A publisher owns one connection; concurrent publishes on it take turns.
 * A subscriber owns one connection for claims and acks, shared by its
 * subscriptions, and a listener (pg_listen.c) that wakes them on NOTIFY.
 * A subscription claims up to `prefetch` messages at once (one transaction)
 * and hands them out one by one from a local buffer, like sqlite://.
 *
 * ack=sync (default): sl_msg_ack returns once the claim is deleted.
 * ack=batch: acks are queued and committed with the subscription's next
 * claim (or its close): fewer commits, and a crash may redeliver messages
 * acked just before it.
 *
 * Connection loss: calls fail with SL_ECONN while the server is away and
 * reconnect with backoff (50ms doubling to 2s) on later calls; next()
 * keeps trying until its timeout. Nothing acked is lost; what was in
 * flight comes back after its ack deadline.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/postgres/pg.h"

/* ---------- publisher ---------- */

typedef struct pg_pub {
    pg_link pc;
    pthread_mutex_t mu;
    _Atomic bool closing;
} pg_pub;

/* SL_FEAT_LATE_SUBSCRIBERS promises that a subscription opened later gets
 * every earlier message, even those other groups acked: with the default
 * retention=acked they are deleted, so only retention=DURATION declares it
 * (as sqlite:// does). */
static void late_feature(const pg_opts *o, unsigned *features)
{
    if (o->retention_ms <= 0)
        *features &= ~(unsigned)SL_FEAT_LATE_SUBSCRIBERS;
}

static int pg_pub_open(void **impl, sli_url *u, unsigned *features)
{
    pg_opts o;
    char err[PG_ERRLEN];
    int rc = sli_pg_opts_read(u, &o);
    pg_pub *p = rc ? NULL : calloc(1, sizeof *p);
    if (rc)
        return rc;
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    if ((rc = sli_pg_conn_init(&p->pc, u, &o)) != 0) {
        free(p);
        return rc;
    }
    if ((rc = sli_pg_conn_ready(&p->pc, err, sizeof err)) != 0) {
        sli_pg_conn_fini(&p->pc);
        free(p);
        return sli_err(rc, "%s", err);
    }
    pthread_mutex_init(&p->mu, NULL);
    late_feature(&o, features);
    *impl = p;
    return 0;
}

static int pg_do_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                         const sl_publish_opts *opts)
{
    (void)opts;
    pg_pub *p = impl;
    char err[PG_ERRLEN];
    if (atomic_load(&p->closing))
        return sli_err(SL_ECLOSED, "postgres publisher is closed");
    pthread_mutex_lock(&p->mu);
    int rc = sli_pg_conn_ready(&p->pc, err, sizeof err);
    if (!rc)
        rc = sli_pg_publish(&p->pc, topic, msgs, n, err, sizeof err);
    if (rc == SL_ECONN) { /* a connection found dead on use: once more, on a new one */
        p->pc.retry_at = 0;
        rc = sli_pg_conn_ready(&p->pc, err, sizeof err);
        if (!rc)
            rc = sli_pg_publish(&p->pc, topic, msgs, n, err, sizeof err);
    }
    pthread_mutex_unlock(&p->mu);
    if (rc && opts && opts->published)
        *opts->published = 0;
    return rc ? sli_err(rc, "%s", err) : 0;
}

static int pg_pub_close(void *impl)
{
    pg_pub *p = impl;
    atomic_store(&p->closing, true);
    pthread_mutex_lock(&p->mu); /* a publish in progress finishes first */
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    sli_pg_conn_fini(&p->pc);
    free(p);
    return 0;
}

/* ---------- subscriber ---------- */

typedef struct pg_subr {
    pg_opts o;
    pg_link pc; /* claims and acks of every subscription (under mu) */
    pthread_mutex_t mu;
    pg_listener *listener;
    int64_t holder; /* this subscriber's token for its private groups */
    _Atomic uint32_t refs; /* the handle + one per live subscription */
    _Atomic bool closed;
} pg_subr;

typedef struct pg_sub {
    pg_subr *r;
    _Atomic uint32_t refs; /* 1 while subscribed + 1 per live delivery */
    sli_rcstr *topic;
    int64_t gid, owner;
    bool priv;
    unsigned prefetch;
    _Atomic uint32_t out; /* handed out, not yet acked/nacked */
    _Atomic bool closed;
    _Atomic uint32_t inside;
    pthread_mutex_t nmu;
    pg_claimed buf[PG_CLAIM_MAX]; /* claimed, not yet handed out (under nmu) */
    unsigned nbuf, ibuf;
    pthread_mutex_t amu; /* batched acks (ack=batch) */
    pg_settle *acks;
    unsigned nacks, cap;
} pg_sub;

typedef struct pg_dlv {
    pg_sub *s;
    int64_t msg_id;
    unsigned deliveries;
} pg_dlv;

static void subr_unref(pg_subr *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    sli_pg_listener_stop(r->listener); /* late acks of deliveries still bump it */
    pthread_mutex_destroy(&r->mu);
    sli_pg_conn_fini(&r->pc);
    free(r);
}

static int pg_sub_open(void **impl, sli_url *u, unsigned *features)
{
    char err[PG_ERRLEN];
    pg_subr *r = calloc(1, sizeof *r);
    if (!r)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sli_pg_opts_read(u, &r->o);
    if (!rc)
        rc = sli_pg_conn_init(&r->pc, u, &r->o);
    if (rc) {
        free(r);
        return rc;
    }
    if ((rc = sli_pg_conn_ready(&r->pc, err, sizeof err)) != 0) {
        sli_pg_conn_fini(&r->pc);
        free(r);
        return sli_err(rc, "%s", err);
    }
    r->holder = (int64_t)(sli_rand64() >> 2) + 1;
    if ((rc = sli_pg_listener_start(&r->listener, u, &r->o, r->holder)) != 0) {
        sli_pg_conn_fini(&r->pc);
        free(r);
        return rc;
    }
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->refs, 1);
    late_feature(&r->o, features);
    *impl = r;
    return 0;
}

static int pg_sub_close(void *impl)
{
    pg_subr *r = impl;
    atomic_store(&r->closed, true);
    subr_unref(r);
    return 0;
}

static void sub_unref(pg_sub *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    pg_subr *r = s->r;
    sli_rcstr_unref(s->topic);
    pthread_mutex_destroy(&s->nmu);
    pthread_mutex_destroy(&s->amu);
    free(s->acks);
    free(s);
    subr_unref(r);
}

static int pg_do_subscribe(void *impl, const char *topic, const sl_subscribe_opts *o, void **out)
{
    pg_subr *r = impl;
    char err[PG_ERRLEN];
    pg_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->topic = sli_rcstr_new(topic))) {
        free(s);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    s->r = r;
    s->prefetch = o->prefetch ? o->prefetch : 1;
    s->priv = o->group == NULL || !*o->group;
    s->owner = (int64_t)(sli_rand64() >> 2) + 1;
    sl_start start = o->start == SL_START_LATEST ? SL_START_LATEST : SL_START_EARLIEST;
    pthread_mutex_lock(&r->mu);
    int rc = sli_pg_conn_ready(&r->pc, err, sizeof err);
    if (!rc)
        rc = sli_pg_subscribe(&r->pc, topic, o->group, s->priv, start, r->holder, &s->gid, err,
                          sizeof err);
    pthread_mutex_unlock(&r->mu);
    if (rc) {
        sli_rcstr_unref(s->topic);
        free(s);
        return sli_err(rc, "%s", err);
    }
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->nmu, NULL);
    pthread_mutex_init(&s->amu, NULL);
    atomic_fetch_add(&r->refs, 1);
    *out = s;
    return 0;
}

/* Queue an ack for the next claim (ack=batch); false when out of memory. */
static bool queue_ack(pg_sub *s, const pg_settle *a)
{
    pthread_mutex_lock(&s->amu);
    bool ok = true;
    if (s->nacks == s->cap) {
        unsigned cap = s->cap ? s->cap * 2 : 64;
        pg_settle *n = realloc(s->acks, cap * sizeof *n);
        if (n) {
            s->acks = n;
            s->cap = cap;
        }
        ok = n != NULL;
    }
    if (ok)
        s->acks[s->nacks++] = *a;
    pthread_mutex_unlock(&s->amu);
    return ok;
}

static void pg_hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    pg_dlv *dv = ctx;
    pg_sub *s = dv->s;
    if (ev == SLI_MSG_EV_FREE) {
        free(dv);
        sub_unref(s);
        return;
    }
    pg_settle a = {.msg_id = dv->msg_id,
                   .owner = s->owner,
                   .deliveries = dv->deliveries,
                   .nack = ev == SLI_MSG_EV_NACK,
                   .delay_ms = delay_ms};
    pg_subr *r = s->r;
    if (!a.nack && r->o.ack_batch && queue_ack(s, &a)) {
        /* committed with the next claim */
    } else if (!atomic_load(&r->closed)) {
        char err[PG_ERRLEN];
        /* the server away (a restart): try again until connect_timeout, so
         * an ack returns once it is committed whenever that can be */
        int64_t give_up = sli_mono_ms() + r->o.connect_timeout_ms;
        int rc;
        pthread_mutex_lock(&r->mu);
        for (;;) {
            rc = sli_pg_conn_ready(&r->pc, err, sizeof err);
            if (!rc)
                rc = sli_pg_settle_run(&r->pc, s->gid, &a, 1, err, sizeof err);
            if (rc != SL_ECONN || sli_mono_ms() >= give_up)
                break;
            pthread_mutex_unlock(&r->mu);
            usleep(50000);
            pthread_mutex_lock(&r->mu);
        }
        pthread_mutex_unlock(&r->mu);
        if (rc)
            sli_log(SL_LOG_WARN, "postgres", "%s of message %s failed (it will be redelivered): %s",
                    a.nack ? "nack" : "ack", sl_msg_uuid(m), err);
    }
    atomic_fetch_sub(&s->out, 1);
    sli_pg_listener_bump(r->listener); /* a next() waiting for room in its prefetch */
}

/* Hand out the next buffered claim (under nmu). */
static int deliver(pg_sub *s, sl_msg **out)
{
    pg_claimed *c = &s->buf[s->ibuf];
    pg_dlv *dv = malloc(sizeof *dv);
    if (!dv)
        return sli_err(SL_ENOMEM, "out of memory");
    dv->s = s;
    dv->msg_id = c->msg_id;
    dv->deliveries = c->deliveries;
    atomic_fetch_add(&s->refs, 1);
    atomic_fetch_add(&s->out, 1);
    sli_msg_set_delivery(c->m, s->topic, c->deliveries, pg_hook, dv);
    *out = c->m;
    c->m = NULL;
    s->ibuf++;
    return 0;
}

/* Take the queued acks (ack=batch); the caller frees *acks. */
static void take_acks(pg_sub *s, pg_settle **acks, unsigned *n)
{
    pthread_mutex_lock(&s->amu);
    *acks = s->acks;
    *n = s->nacks;
    s->acks = NULL;
    s->nacks = s->cap = 0;
    pthread_mutex_unlock(&s->amu);
}

/* Put acks back in front of any queued since (their claim failed). */
static void return_acks(pg_sub *s, pg_settle *acks, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!queue_ack(s, &acks[i]))
            break; /* out of memory: left to the ack deadline */
    free(acks);
}

static int claim(pg_sub *s, unsigned room, int64_t *due, char *err, size_t errlen)
{
    pg_subr *r = s->r;
    pg_settle *acks;
    unsigned nacks;
    take_acks(s, &acks, &nacks);
    s->nbuf = s->ibuf = 0; /* all handed out: nothing stays when the claim fails */
    pthread_mutex_lock(&r->mu);
    int rc = sli_pg_conn_ready(&r->pc, err, errlen);
    if (!rc)
        rc = sli_pg_claim(&r->pc, s->gid, s->topic->s, s->owner, room, r->o.ack_deadline, acks, nacks,
                      s->buf, &s->nbuf, due, err, errlen);
    pthread_mutex_unlock(&r->mu);
    if (rc && nacks)
        return_acks(s, acks, nacks);
    else
        free(acks);
    return rc;
}

static int next_locked(pg_sub *s, sl_msg **out, int timeout_ms, int64_t deadline)
{
    pg_listener *l = s->r->listener;
    char err[PG_ERRLEN];
    for (;;) {
        if (atomic_load(&s->closed))
            return sli_err(SL_ECLOSED, "subscription closed");
        if (s->ibuf < s->nbuf)
            return deliver(s, out);
        uint32_t seen = sli_pg_listener_seq(l); /* before the claim: no wake-up is missed */
        unsigned held = atomic_load(&s->out);
        int64_t due = -1, now;
        int rc = 0;
        if (held < s->prefetch) {
            unsigned room = s->prefetch - held;
            rc = claim(s, room < PG_CLAIM_MAX ? room : PG_CLAIM_MAX, &due, err, sizeof err);
            if (rc && (rc != SL_ECONN || timeout_ms == 0))
                return sli_err(rc, "%s", err);
            if (!rc && s->nbuf)
                continue;
        }
        now = sli_mono_ms();
        if (timeout_ms == 0 || (deadline >= 0 && now >= deadline))
            return rc ? sli_err(rc, "%s", err) : SL_ETIMEDOUT;
        int64_t until = now + (rc ? 100 : s->r->o.poll_ms); /* lost notifications, reconnects */
        if (deadline >= 0 && deadline < until)
            until = deadline;
        if (due >= 0 && now + (due - sli_wall_ms()) + 1 < until)
            until = now + (due - sli_wall_ms()) + 1;
        sli_pg_listener_wait(l, seen, until);
    }
}

static int pg_next(void *impl, sl_msg **out, int timeout_ms)
{
    pg_sub *s = impl;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    atomic_fetch_add(&s->inside, 1);
    pthread_mutex_lock(&s->nmu);
    int rc = next_locked(s, out, timeout_ms, deadline);
    pthread_mutex_unlock(&s->nmu);
    atomic_fetch_sub(&s->inside, 1);
    return rc;
}

static int pg_do_unsubscribe(void *impl)
{
    pg_sub *s = impl;
    pg_subr *r = s->r;
    char err[PG_ERRLEN];
    atomic_store(&s->closed, true);
    while (atomic_load(&s->inside)) {
        sli_pg_listener_bump(r->listener);
        usleep(200);
    }
    for (unsigned i = s->ibuf; i < s->nbuf; i++)
        sl_msg_unref(s->buf[i].m); /* never handed out: the hand-back covers them */
    s->nbuf = s->ibuf = 0;
    pg_settle *acks;
    unsigned nacks;
    take_acks(s, &acks, &nacks);
    int64_t due;
    unsigned got;
    pthread_mutex_lock(&r->mu);
    int rc = sli_pg_conn_ready(&r->pc, err, sizeof err);
    if (!rc && nacks)
        rc = sli_pg_claim(&r->pc, s->gid, s->topic->s, s->owner, 0, 0, acks, nacks, NULL, &got, &due,
                      err, sizeof err);
    if (!rc)
        rc = sli_pg_unsubscribe(&r->pc, s->gid, s->owner, s->priv, err, sizeof err);
    pthread_mutex_unlock(&r->mu);
    free(acks);
    if (rc) /* the claims come back after their ack deadline */
        sli_log(SL_LOG_WARN, "postgres", "unsubscribe from %s: %s", s->topic->s, err);
    sub_unref(s);
    return 0;
}

const sli_backend sli_postgres_backend = {
    .scheme = "postgres",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_ORDERED |
                SL_FEAT_LATE_SUBSCRIBERS | SL_FEAT_DELAYED_NACK,
    .pub_open = pg_pub_open,
    .publish = pg_do_publish,
    .pub_close = pg_pub_close,
    .sub_open = pg_sub_open,
    .subscribe = pg_do_subscribe,
    .next = pg_next,
    .unsubscribe = pg_do_unsubscribe,
    .sub_close = pg_sub_close,
};
