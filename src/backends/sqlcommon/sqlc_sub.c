/*
 * sqlc_sub.c - the subscriber side of a claim-based SQL queue, the same for
 * every server SQL backend; the database part comes through sqlc_db_ops
 * (sqlc.h), run on the subscriber's one connection under its lock.
 *
 * A subscription claims up to `prefetch` messages at once (one transaction
 * on the database) and hands them out one by one from a local buffer.
 * ack=sync (default): sl_msg_ack returns once the claim is deleted (retried
 * until connect_timeout while the server is away). ack=batch: acks are
 * queued and settled with the subscription's next claim (or its close):
 * fewer commits; a crash may redeliver messages acked just before it.
 * Nacks always go at once.
 *
 * Linger (linger=DUR, sqlc_cfg.linger_ms): a claim that came back with
 * fewer messages than there was room for means the subscription caught up
 * with its publishers; its next claim waits until linger has passed since
 * then, so a steady stream is taken in fuller claims (fewer round trips
 * and commits on the server, which the publishers share) at the cost of up
 * to linger of latency. sl_next(0) never waits for it.
 *
 * Waiting: next() reads the wake counter, claims, and when nothing came
 * sleeps until the counter moves (a local ack or nack, a notification the
 * backend turns into a bump), the group's next ready claim is due, or the
 * poll interval passed. The interval starts at poll_min and doubles up to
 * poll_max while polls find nothing (a backend with notifications sets both
 * to its fallback interval; one without polls with backoff).
 *
 * Connection loss: claims fail with SL_ECONN while the server is away;
 * next() keeps trying (100ms apart) until its timeout. Nothing acked is
 * lost; what was in flight comes back after its ack deadline.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/sqlcommon/sqlc.h"

#define SQLC_ERRLEN 400

/* ---------- wake-ups ---------- */

void sli_sqlc_wake_init(sqlc_wake *w)
{
    pthread_mutex_init(&w->mu, NULL);
    sli_cond_init(&w->cond);
    w->seq = 0;
    w->stop = false;
}

void sli_sqlc_wake_fini(sqlc_wake *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
}

void sli_sqlc_wake_bump(sqlc_wake *w)
{
    pthread_mutex_lock(&w->mu);
    w->seq++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

uint32_t sli_sqlc_wake_seq(sqlc_wake *w)
{
    pthread_mutex_lock(&w->mu);
    uint32_t s = w->seq;
    pthread_mutex_unlock(&w->mu);
    return s;
}

void sli_sqlc_wake_wait(sqlc_wake *w, uint32_t seen, int64_t deadline_ms)
{
    pthread_mutex_lock(&w->mu);
    while (w->seq == seen && !w->stop && (deadline_ms < 0 || sli_mono_ms() < deadline_ms))
        sli_cond_wait_until(&w->cond, &w->mu, deadline_ms);
    pthread_mutex_unlock(&w->mu);
}

/* ---------- subscriber and subscriptions ---------- */

struct sqlc_subr {
    const sqlc_db_ops *ops;
    sqlc_db *db; /* claims and acks of every subscription (under mu) */
    sqlc_cfg cfg;
    pthread_mutex_t mu;
    sqlc_wake wake;
    _Atomic uint32_t refs; /* the handle + one per live subscription */
    _Atomic bool closed;
};

typedef struct sqlc_sub {
    sqlc_subr *r;
    _Atomic uint32_t refs; /* 1 while subscribed + 1 per live delivery */
    sli_rcstr *topic;
    int64_t gid, owner;
    bool priv;
    unsigned prefetch;
    _Atomic uint32_t out; /* handed out, not yet acked/nacked */
    _Atomic bool closed;
    _Atomic uint32_t inside;
    pthread_mutex_t nmu;
    int64_t idle_ms;                  /* current poll interval (under nmu) */
    int64_t linger_until;             /* after a short claim: the next one not before (mono) */
    sqlc_claimed buf[SQLC_CLAIM_MAX]; /* claimed, not yet handed out (under nmu) */
    unsigned nbuf, ibuf;
    pthread_mutex_t amu; /* batched acks (ack=batch) */
    sqlc_settle *acks;
    unsigned nacks, cap;
} sqlc_sub;

typedef struct sqlc_dlv {
    sqlc_sub *s;
    int64_t msg_id, msg_tx;
    unsigned deliveries;
} sqlc_dlv;

int sli_sqlc_subr_new(sqlc_subr **out, const sqlc_db_ops *ops, sqlc_db *db, const sqlc_cfg *cfg)
{
    sqlc_subr *r = calloc(1, sizeof *r);
    if (!r) {
        ops->close(db);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    r->ops = ops;
    r->db = db;
    r->cfg = *cfg;
    if (r->cfg.poll_min_ms < 1)
        r->cfg.poll_min_ms = 1;
    if (r->cfg.poll_max_ms < r->cfg.poll_min_ms)
        r->cfg.poll_max_ms = r->cfg.poll_min_ms;
    pthread_mutex_init(&r->mu, NULL);
    sli_sqlc_wake_init(&r->wake);
    atomic_init(&r->refs, 1);
    *out = r;
    return 0;
}

sqlc_wake *sli_sqlc_subr_wake(sqlc_subr *r)
{
    return &r->wake;
}

static void subr_unref(sqlc_subr *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    r->ops->close(r->db);
    pthread_mutex_destroy(&r->mu);
    sli_sqlc_wake_fini(&r->wake);
    free(r);
}

int sli_sqlc_sub_close(void *impl)
{
    sqlc_subr *r = impl;
    atomic_store(&r->closed, true);
    subr_unref(r);
    return 0;
}

static void sub_unref(sqlc_sub *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    sqlc_subr *r = s->r;
    sli_rcstr_unref(s->topic);
    pthread_mutex_destroy(&s->nmu);
    pthread_mutex_destroy(&s->amu);
    free(s->acks);
    free(s);
    subr_unref(r);
}

int sli_sqlc_subscribe(void *impl, const char *topic, const sl_subscribe_opts *o, void **out)
{
    sqlc_subr *r = impl;
    char err[SQLC_ERRLEN];
    sqlc_sub *s = calloc(1, sizeof *s);
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
    int rc = r->ops->ready(r->db, err, sizeof err);
    if (!rc)
        rc = r->ops->subscribe(r->db, topic, o->group, s->priv, start, r->cfg.holder, &s->gid, err,
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
static bool queue_ack(sqlc_sub *s, const sqlc_settle *a)
{
    pthread_mutex_lock(&s->amu);
    bool ok = true;
    if (s->nacks == s->cap) {
        unsigned cap = s->cap ? s->cap * 2 : 64;
        sqlc_settle *n = realloc(s->acks, cap * sizeof *n);
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

/* One ack or nack now; while the server is away, tried again until
 * connect_timeout, so an ack returns once it is committed whenever that
 * can be. */
static int settle_now(sqlc_subr *r, int64_t gid, const sqlc_settle *a, char *err, size_t errlen)
{
    int64_t give_up = sli_mono_ms() + r->cfg.connect_timeout_ms;
    int rc;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        rc = r->ops->ready(r->db, err, errlen);
        if (!rc)
            rc = r->ops->settle(r->db, gid, a, err, errlen);
        if ((rc != SL_ECONN && rc != SL_EBUSY) || sli_mono_ms() >= give_up)
            break;
        pthread_mutex_unlock(&r->mu);
        usleep(50000);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static void hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    sqlc_dlv *dv = ctx;
    sqlc_sub *s = dv->s;
    if (ev == SLI_MSG_EV_FREE) {
        free(dv);
        sub_unref(s);
        return;
    }
    sqlc_settle a = {.msg_id = dv->msg_id,
                     .msg_tx = dv->msg_tx,
                     .owner = s->owner,
                     .deliveries = dv->deliveries,
                     .nack = ev == SLI_MSG_EV_NACK,
                     .delay_ms = delay_ms};
    sqlc_subr *r = s->r;
    if (!a.nack && r->cfg.ack_batch && queue_ack(s, &a)) {
        /* settled with the next claim */
    } else if (!atomic_load(&r->closed)) {
        char err[SQLC_ERRLEN];
        if (settle_now(r, s->gid, &a, err, sizeof err) != 0)
            sli_log(SL_LOG_WARN, r->ops->name,
                    "%s of message %s failed (it will be "
                    "redelivered): %s",
                    a.nack ? "nack" : "ack", sl_msg_uuid(m), err);
    }
    atomic_fetch_sub(&s->out, 1);
    sli_sqlc_wake_bump(&r->wake); /* a next() waiting for room, or for the nacked message */
}

/* Hand out the next buffered claim (under nmu). */
static int deliver(sqlc_sub *s, sl_msg **out)
{
    sqlc_claimed *c = &s->buf[s->ibuf];
    sqlc_dlv *dv = malloc(sizeof *dv);
    if (!dv)
        return sli_err(SL_ENOMEM, "out of memory");
    dv->s = s;
    dv->msg_id = c->msg_id;
    dv->msg_tx = c->msg_tx;
    dv->deliveries = c->deliveries;
    atomic_fetch_add(&s->refs, 1);
    atomic_fetch_add(&s->out, 1);
    sli_msg_set_delivery(c->m, s->topic, c->deliveries, hook, dv);
    *out = c->m;
    c->m = NULL;
    s->ibuf++;
    return 0;
}

/* Take the queued acks (ack=batch); the caller frees *acks. */
static void take_acks(sqlc_sub *s, sqlc_settle **acks, unsigned *n)
{
    pthread_mutex_lock(&s->amu);
    *acks = s->acks;
    *n = s->nacks;
    s->acks = NULL;
    s->nacks = s->cap = 0;
    pthread_mutex_unlock(&s->amu);
}

/* Put acks back in front of any queued since (their claim failed). */
static void return_acks(sqlc_sub *s, sqlc_settle *acks, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!queue_ack(s, &acks[i]))
            break; /* out of memory: left to the ack deadline */
    free(acks);
}

static int claim(sqlc_sub *s, unsigned room, int64_t *due, char *err, size_t errlen)
{
    sqlc_subr *r = s->r;
    sqlc_settle *acks;
    unsigned nacks;
    take_acks(s, &acks, &nacks);
    s->nbuf = s->ibuf = 0; /* all handed out: nothing stays when the claim fails */
    pthread_mutex_lock(&r->mu);
    int rc = r->ops->ready(r->db, err, errlen);
    if (!rc)
        rc = r->ops->claim(r->db, s->gid, s->topic->s, s->owner, room, r->cfg.ack_deadline, acks,
                           nacks, s->buf, &s->nbuf, due, err, errlen);
    pthread_mutex_unlock(&r->mu);
    if (rc && nacks)
        return_acks(s, acks, nacks);
    else
        free(acks);
    return rc;
}

/* How long to sleep after a claim: the poll interval (backing off while
 * idle, 100ms after a failure), cut at the deadline and the next due claim. */
static int64_t sleep_until(sqlc_sub *s, int rc, int64_t now, int64_t deadline, int64_t due)
{
    const sqlc_cfg *c = &s->r->cfg;
    if (rc) {
        s->idle_ms = 0;
    } else {
        s->idle_ms = s->idle_ms ? s->idle_ms * 2 : c->poll_min_ms;
        if (s->idle_ms > c->poll_max_ms)
            s->idle_ms = c->poll_max_ms;
    }
    int64_t until = now + (rc ? 100 : s->idle_ms);
    if (deadline >= 0 && deadline < until)
        until = deadline;
    if (due >= 0 && now + (due - sli_wall_ms()) + 1 < until)
        until = now + (due - sli_wall_ms()) + 1;
    return until;
}

/* After a short claim: wait until linger_until (cut at the deadline or a
 * close) before the next claim; true when it waited. */
static bool linger(sqlc_sub *s, int64_t deadline)
{
    sqlc_wake *w = &s->r->wake;
    int64_t until = s->linger_until;
    if (deadline >= 0 && deadline < until)
        until = deadline;
    if (sli_mono_ms() >= until)
        return false;
    while (!atomic_load(&s->closed) && sli_mono_ms() < until)
        sli_sqlc_wake_wait(w, sli_sqlc_wake_seq(w), until);
    return true;
}

static int next_locked(sqlc_sub *s, sl_msg **out, int timeout_ms, int64_t deadline)
{
    sqlc_wake *w = &s->r->wake;
    char err[SQLC_ERRLEN];
    for (;;) {
        if (atomic_load(&s->closed))
            return sli_err(SL_ECLOSED, "subscription closed");
        if (s->ibuf < s->nbuf)
            return deliver(s, out);
        uint32_t seen = sli_sqlc_wake_seq(w); /* before the claim: no wake-up is missed */
        unsigned held = atomic_load(&s->out);
        int64_t due = -1, now;
        int rc = 0;
        if (held < s->prefetch && timeout_ms != 0 && linger(s, deadline)) {
            seen = sli_sqlc_wake_seq(w);
            held = atomic_load(&s->out);
        }
        if (held < s->prefetch) {
            unsigned room = s->prefetch - held;
            if (room > SQLC_CLAIM_MAX)
                room = SQLC_CLAIM_MAX;
            rc = claim(s, room, &due, err, sizeof err);
            if (rc && ((rc != SL_ECONN && rc != SL_EBUSY) || timeout_ms == 0))
                return sli_err(rc, "%s", err);
            if (!rc && s->nbuf) {
                s->idle_ms = 0;
                if (s->nbuf < room && room > 1) /* caught up: see linger() */
                    s->linger_until = sli_mono_ms() + s->r->cfg.linger_ms;
                continue;
            }
        }
        now = sli_mono_ms();
        if (timeout_ms == 0 || (deadline >= 0 && now >= deadline))
            return rc ? sli_err(rc, "%s", err) : SL_ETIMEDOUT;
        sli_sqlc_wake_wait(w, seen, sleep_until(s, rc, now, deadline, due));
        if (sli_sqlc_wake_seq(w) != seen)
            s->idle_ms = 0; /* something happened: look again soon */
    }
}

int sli_sqlc_next(void *impl, sl_msg **out, int timeout_ms)
{
    sqlc_sub *s = impl;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    atomic_fetch_add(&s->inside, 1);
    pthread_mutex_lock(&s->nmu);
    int rc = next_locked(s, out, timeout_ms, deadline);
    pthread_mutex_unlock(&s->nmu);
    atomic_fetch_sub(&s->inside, 1);
    return rc;
}

static bool transient(int rc)
{
    return rc == SL_EBUSY || rc == SL_ECONN;
}

/* Settle the batched acks, then hand back (or drop) what s holds. A
 * transient failure (a deadlock with another member's claim, the server
 * away) is tried again until connect_timeout; the hand-back is done even
 * when the acks could not be settled (those messages come back: at least
 * once), so nothing waits for its ack deadline when it need not. */
static int leave(sqlc_sub *s, const sqlc_settle *acks, unsigned nacks, char *err, size_t errlen)
{
    sqlc_subr *r = s->r;
    int64_t give_up = sli_mono_ms() + r->cfg.connect_timeout_ms;
    int rc, arc = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        rc = r->ops->ready(r->db, err, errlen);
        if (!rc && nacks) {
            int64_t due;
            unsigned got;
            arc = r->ops->claim(r->db, s->gid, s->topic->s, s->owner, 0, 0, acks, nacks, NULL, &got,
                                &due, err, errlen);
            if (!transient(arc))
                nacks = 0; /* settled, or never will be */
        }
        if (!rc)
            rc = r->ops->unsubscribe(r->db, s->gid, s->owner, s->priv, err, errlen);
        if ((rc && !transient(rc)) || (!rc && !nacks) || sli_mono_ms() >= give_up)
            break;
        pthread_mutex_unlock(&r->mu);
        usleep(rc == SL_ECONN ? 50000 : 5000);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return rc ? rc : arc;
}

int sli_sqlc_unsubscribe(void *impl)
{
    sqlc_sub *s = impl;
    sqlc_subr *r = s->r;
    char err[SQLC_ERRLEN];
    atomic_store(&s->closed, true);
    while (atomic_load(&s->inside)) {
        sli_sqlc_wake_bump(&r->wake);
        usleep(200);
    }
    for (unsigned i = s->ibuf; i < s->nbuf; i++)
        sl_msg_unref(s->buf[i].m); /* never handed out: the hand-back covers them */
    s->nbuf = s->ibuf = 0;
    sqlc_settle *acks;
    unsigned nacks;
    take_acks(s, &acks, &nacks);
    int rc = leave(s, acks, nacks, err, sizeof err);
    free(acks);
    if (rc) /* the claims come back after their ack deadline */
        sli_log(SL_LOG_WARN, r->ops->name, "unsubscribe from %s: %s", s->topic->s, err);
    sub_unref(s);
    return 0;
}
