/*
 * sqlite.c - sqlite:///abs/path.db and sqlite://./rel/path.db: the embedded,
 * durable backend (the ops table; see sq.h for the whole picture).
 *
 * Options (any handle; the first opener of a file in a process fixes the
 * database-wide ones, a later handle asking for different ones fails):
 *   sync=full|normal|off   durability of a commit (default full)
 *   retention=acked|DUR    delete what every group acked (default), or keep
 *                          every message DUR (e.g. 7d is not a unit: 168h);
 *                          only DUR declares SL_FEAT_LATE_SUBSCRIBERS
 *   busy_timeout=DUR       how long to wait for another process' lock (60s)
 *   poll=DUR               slowest cross-process change poll (5ms)
 *   ack_deadline=DUR       a delivery not acked within it is redelivered (30s)
 *   ack=sync|batch         sync (default): sl_msg_ack returns once the ack is
 *                          committed. batch: acks are queued and committed
 *                          with the next batch (at the latest with the
 *                          subscription's next claim); a crash may redeliver
 *                          messages acked just before it.
 * Both publishers and subscribers accept every option, so one URL serves both.
 *
 * A subscription claims up to `prefetch` messages at once (one transaction)
 * and hands them out one by one from a local buffer; the deliveries it holds
 * (buffered + handed out and not settled) never exceed prefetch. One thread
 * at a time runs next() on a subscription (a mutex); a waiting next() sleeps
 * on the database's change counter (sq_db.c). Deliveries keep their
 * subscription (and so the database) alive until the message is freed.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/sqlite/sq.h"

#define SQ_CLAIM_MAX SQ_LEASE_MAX

typedef struct sq_handle_opts {
    int64_t ack_deadline;
    bool ack_batch;
} sq_handle_opts;

typedef struct sq_pub {
    sq_db *db;
    _Atomic bool closing;
    _Atomic uint32_t inside;
} sq_pub;

typedef struct sq_subr {
    sq_db *db;
    sq_handle_opts o;
} sq_subr;

typedef struct sq_sub {
    sq_db *db;
    _Atomic uint32_t refs; /* 1 while subscribed + 1 per live delivery */
    sli_rcstr *topic;
    int64_t gid, tid, owner;
    bool priv;
    sq_handle_opts o;
    unsigned prefetch;
    _Atomic uint32_t out; /* handed out, not yet acked/nacked */
    _Atomic bool closed;
    _Atomic uint32_t inside;
    pthread_mutex_t nmu;
    sq_claimed buf[SQ_CLAIM_MAX]; /* claimed, not yet handed out (under nmu) */
    unsigned nbuf, ibuf;
} sq_sub;

typedef struct sq_dlv {
    sq_sub *s;
    int64_t msg_id, lease;
    unsigned deliveries;
} sq_dlv;

static int handle_opts(sli_url *u, sq_handle_opts *o)
{
    int rc, ack;
    if ((rc = sli_url_opt_ms(u, "ack_deadline", 30000, &o->ack_deadline)) ||
        (rc = sli_url_opt_enum(u, "ack", "sync|batch", 0, &ack)))
        return rc;
    if (o->ack_deadline < 1)
        return sli_err(SL_EBADOPT, "option ack_deadline must be at least 1ms");
    o->ack_batch = ack == 1;
    return 0;
}

/* SL_FEAT_LATE_SUBSCRIBERS is a promise that a subscription opened later
 * gets every earlier message, even those other groups acked. With the
 * default retention=acked they are deleted, so only a database opened with
 * retention=DURATION (database-wide, fixed by its first opener) declares it;
 * the default stays retention=acked so that a queue does not grow without
 * bound for users who never asked to keep history. */
static void late_feature(const sq_db *db, unsigned *features)
{
    if (db->o.retention_ms <= 0)
        *features &= ~(unsigned)SL_FEAT_LATE_SUBSCRIBERS;
}

/* ---------- publisher ---------- */

static int sq_pub_open(void **impl, sli_url *u, unsigned *features)
{
    sq_handle_opts ho;
    int rc = handle_opts(u, &ho);
    if (rc)
        return rc;
    sq_pub *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    if ((rc = sq_db_acquire(u, &p->db)) != 0) {
        free(p);
        return rc;
    }
    late_feature(p->db, features);
    *impl = p;
    return 0;
}

static int sq_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                      const sl_publish_opts *opts)
{
    sq_pub *p = impl;
    atomic_fetch_add(&p->inside, 1);
    int rc;
    if (atomic_load(&p->closing)) {
        rc = sli_err(SL_ECLOSED, "sqlite publisher is closed");
    } else {
        bool nosync = opts && (opts->flags & SL_PUBLISH_NO_SYNC);
        sq_req r = {.kind = SQ_PUBLISH, .topic = topic, .msgs = msgs, .n = n, .nosync = nosync};
        rc = sq_submit(p->db, &r);
    }
    atomic_fetch_sub(&p->inside, 1);
    return rc;
}

static int sq_pub_close(void *impl)
{
    sq_pub *p = impl;
    atomic_store(&p->closing, true);
    while (atomic_load(&p->inside))
        usleep(200); /* publishes in the writer's queue finish on their own */
    sq_db_unref(p->db);
    free(p);
    return 0;
}

/* ---------- subscriber ---------- */

static int sq_sub_open(void **impl, sli_url *u, unsigned *features)
{
    sq_subr *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = handle_opts(u, &s->o);
    if (!rc)
        rc = sq_db_acquire(u, &s->db);
    if (rc) {
        free(s);
        return rc;
    }
    late_feature(s->db, features);
    *impl = s;
    return 0;
}

static void sub_unref(sq_sub *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    sq_db *db = s->db;
    sli_rcstr_unref(s->topic);
    pthread_mutex_destroy(&s->nmu);
    free(s);
    sq_db_unref(db);
}

static int sq_subscribe(void *impl, const char *topic, const sl_subscribe_opts *o, void **out)
{
    sq_subr *sr = impl;
    sq_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->topic = sli_rcstr_new(topic))) {
        free(s);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    s->db = sr->db;
    s->o = sr->o;
    s->prefetch = o->prefetch;
    s->priv = o->group == NULL;
    s->owner = (int64_t)(sli_rand64() >> 2) + 1;
    sq_req r = {.kind = SQ_SUBSCRIBE,
                .topic = topic,
                .group = o->group,
                .priv = s->priv,
                .start = o->start == SL_START_LATEST ? SL_START_LATEST : SL_START_EARLIEST};
    int rc = sq_submit(s->db, &r);
    if (rc) {
        sli_rcstr_unref(s->topic);
        free(s);
        return rc;
    }
    s->gid = r.gid;
    s->tid = r.tid;
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->nmu, NULL);
    sq_db_ref(s->db);
    *out = s;
    return 0;
}

static void sq_hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    sq_dlv *dv = ctx;
    sq_sub *s = dv->s;
    if (ev == SLI_MSG_EV_FREE) { /* settled by then: a dropped delivery is nacked first */
        free(dv);
        sub_unref(s);
        return;
    }
    sq_req *r, local;
    bool async = ev == SLI_MSG_EV_NACK || s->o.ack_batch;
    if (async) {
        if (!(r = calloc(1, sizeof *r))) {
            sli_log(SL_LOG_WARN, "sqlite", "out of memory: %s left to its ack deadline",
                    ev == SLI_MSG_EV_ACK ? "ack" : "nack");
            atomic_fetch_sub(&s->out, 1);
            sq_wake(s->db, s->tid);
            return;
        }
    } else {
        memset(&local, 0, sizeof local);
        r = &local;
    }
    r->kind = ev == SLI_MSG_EV_ACK ? SQ_ACK : SQ_NACK;
    r->async = async;
    r->gid = s->gid;
    r->tid = s->tid;
    r->msg_id = dv->msg_id;
    r->lease = dv->lease;
    r->owner = s->owner;
    r->deliveries = dv->deliveries;
    r->delay_ms = delay_ms;
    int rc = sq_submit(s->db, r);
    if (rc && !async)
        sli_log(SL_LOG_WARN, "sqlite", "ack of message %s failed (it will be redelivered): %s",
                sl_msg_uuid(m), sl_errmsg());
    atomic_fetch_sub(&s->out, 1);
    sq_wake(s->db, s->tid); /* a next() waiting for room in its prefetch */
}

/* Hand out the next buffered claim (under nmu). */
static int deliver(sq_sub *s, sl_msg **out)
{
    sq_claimed *c = &s->buf[s->ibuf];
    sq_dlv *dv = malloc(sizeof *dv);
    if (!dv)
        return sli_err(SL_ENOMEM, "out of memory");
    dv->s = s;
    dv->msg_id = c->msg_id;
    dv->lease = c->lease;
    dv->deliveries = c->deliveries;
    atomic_fetch_add(&s->refs, 1);
    atomic_fetch_add(&s->out, 1);
    sli_msg_set_delivery(c->m, s->topic, c->deliveries, sq_hook, dv);
    *out = c->m;
    c->m = NULL;
    s->ibuf++;
    return 0;
}

/* One claim attempt; on nothing, *due = wall ms of the next redelivery or -1. */
static int claim(sq_sub *s, unsigned room, int64_t *due)
{
    sq_req r = {.kind = SQ_CLAIM,
                .gid = s->gid,
                .tid = s->tid,
                .owner = s->owner,
                .max = room < SQ_CLAIM_MAX ? room : SQ_CLAIM_MAX,
                .out = s->buf,
                .ack_deadline = s->o.ack_deadline};
    int rc = sq_submit(s->db, &r);
    s->nbuf = r.nout;
    s->ibuf = 0;
    *due = r.next_due;
    return rc;
}

static int next_locked(sq_sub *s, sl_msg **out, int timeout_ms, int64_t deadline)
{
    sq_db *d = s->db;
    for (;;) {
        if (atomic_load(&s->closed))
            return sli_err(SL_ECLOSED, "subscription closed");
        if (s->ibuf < s->nbuf)
            return deliver(s, out);
        /* read before the claim: a change after it ends the wait below at once */
        uint32_t seen = sq_wake_seq(d, s->tid);
        unsigned held = atomic_load(&s->out);
        int64_t due = -1;
        if (held < s->prefetch) {
            int rc = claim(s, s->prefetch - held, &due);
            if (rc)
                return rc;
            if (s->nbuf)
                continue;
        }
        int64_t now = sli_mono_ms(), until = deadline;
        if (timeout_ms == 0 || (deadline >= 0 && now >= deadline))
            return SL_ETIMEDOUT;
        if (due >= 0) {
            int64_t due_mono = now + (due - sli_wall_ms()) + 1;
            if (until < 0 || due_mono < until)
                until = due_mono;
        }
        sq_wake_wait(d, s->tid, seen, until);
    }
}

static int sq_next(void *impl, sl_msg **out, int timeout_ms)
{
    sq_sub *s = impl;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    atomic_fetch_add(&s->inside, 1);
    pthread_mutex_lock(&s->nmu);
    int rc = next_locked(s, out, timeout_ms, deadline);
    pthread_mutex_unlock(&s->nmu);
    atomic_fetch_sub(&s->inside, 1);
    return rc;
}

static int sq_unsubscribe(void *impl)
{
    sq_sub *s = impl;
    atomic_store(&s->closed, true);
    while (atomic_load(&s->inside)) {
        sq_wake(s->db, s->tid);
        usleep(200);
    }
    for (unsigned i = s->ibuf; i < s->nbuf; i++)
        sl_msg_unref(s->buf[i].m); /* never handed out: the hand-back covers them */
    s->nbuf = s->ibuf = 0;
    sq_req r = {
        .kind = SQ_UNSUBSCRIBE, .gid = s->gid, .tid = s->tid, .owner = s->owner, .priv = s->priv};
    int rc = sq_submit(s->db, &r);
    sub_unref(s);
    return rc;
}

static int sq_sub_close(void *impl)
{
    sq_subr *s = impl;
    sq_db_unref(s->db);
    free(s);
    return 0;
}

const sli_backend sli_sqlite_backend = {
    .scheme = "sqlite",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_ORDERED |
                SL_FEAT_LATE_SUBSCRIBERS | SL_FEAT_DELAYED_NACK,
    .pub_open = sq_pub_open,
    .publish = sq_publish,
    .pub_close = sq_pub_close,
    .sub_open = sq_sub_open,
    .subscribe = sq_subscribe,
    .next = sq_next,
    .unsubscribe = sq_unsubscribe,
    .sub_close = sq_sub_close,
};
