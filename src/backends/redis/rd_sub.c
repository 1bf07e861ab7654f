/*
 * rd_sub.c - redis:// subscriptions: consumer-group reads, acks, nacks,
 * reclaiming, hand-back (the design is in rd.h).
 *
 * One thread at a time runs next() on a subscription (nmu), and only that
 * thread uses the reading connection. next() loops:
 *   1. send the queued acks (XACK) and nacks (XCLAIM to ourselves with an
 *      IDLE that makes the entry claimable now, or after the nack delay),
 *      pipelined with the read that follows;
 *   2. hand out a buffered message if there is one;
 *   3. while fewer than `prefetch` deliveries are unsettled: XAUTOCLAIM
 *      (when due: after a nack, every claim interval, at the start) entries
 *      idle for ack_deadline - nacked, handed back, or held by dead
 *      consumers - then XREADGROUP ">" blocking for at most `block`;
 *   4. with a full window, wait on the settle counter (a futex) instead.
 * Deliveries keep the subscription alive (refs) until the message is freed;
 * settles after the subscription closed are dropped (the entries were handed
 * back to the group and will be redelivered).
 *
 * The delivery count of a message read with ">" is 1; for a reclaimed one
 * it is the server's count, read with XPENDING.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/redis/rd.h"

#define RD_ID_MAX 48
#define RD_READ_MAX 1024           /* entries per read */
#define RD_IDLE_ANY "315360000000" /* ten years: claimable by any member at once */
#define RD_HANDBACK "sl.handback"  /* consumer holding entries handed back */

typedef struct rd_buf {
    sl_msg *m;
    char id[RD_ID_MAX];
    unsigned deliveries;
} rd_buf;

typedef struct rd_settle {
    char id[RD_ID_MAX];
    bool ack;
    unsigned delay_ms;
} rd_settle;

typedef struct rd_sub {
    rd_opts o;
    _Atomic uint32_t refs; /* 1 while subscribed + 1 per live delivery */
    sli_rcstr *topic;
    char *key;
    size_t keylen;
    char group[300], consumer[64];
    bool priv;
    unsigned prefetch;
    _Atomic uint32_t out;     /* handed out, not settled */
    _Atomic uint32_t seq;     /* bumped on every settle */
    _Atomic uint32_t waiters; /* next() waiting on seq for room */
    _Atomic bool closed;
    _Atomic uint32_t inside;
    pthread_mutex_t nmu; /* next(), the reading connection and what follows */
    rd_conn k;
    rd_buf *buf;
    unsigned capbuf, nbuf, ibuf;
    int64_t claim_at, claim_every; /* mono ms */
    char cursor[RD_ID_MAX];
    pthread_mutex_t qmu; /* the settle queue and the ack=sync connection */
    rd_settle *q;
    size_t nq, capq;
    bool final;      /* settles are no longer taken */
    rd_settle *sent; /* queued on k, replies not read yet (next thread only) */
    size_t nsent;
    unsigned unread; /* replies of sent to read */
    rd_conn ak;
} rd_sub;

typedef struct rd_dlv {
    rd_sub *s;
    char id[RD_ID_MAX];
} rd_dlv;

static void sub_unref(rd_sub *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (unsigned i = s->ibuf; i < s->nbuf; i++)
        sl_msg_unref(s->buf[i].m);
    rd_conn_drop(&s->k);
    rd_conn_drop(&s->ak);
    sli_rcstr_unref(s->topic);
    pthread_mutex_destroy(&s->nmu);
    pthread_mutex_destroy(&s->qmu);
    free(s->buf);
    free(s->q);
    free(s->key);
    free(s);
}

static int create_group(rd_sub *s, const char *start)
{
    const char *a[] = {"XGROUP", "CREATE", s->key, s->group, start, "MKSTREAM"};
    size_t l[] = {6, 6, s->keylen, strlen(s->group), strlen(start), 8};
    redisReply *r;
    int rc = rd_cmd(&s->k, &r, 6, a, l);
    if (rc == SL_EIO && r && strstr(r->str, "BUSYGROUP"))
        rc = 0; /* the group exists: keep its position */
    if (r)
        freeReplyObject(r);
    return rc;
}

/* ---------- settling ---------- */

static int sync_ack(rd_sub *s, const char *id)
{
    int rc = rd_conn_ensure(&s->ak, sli_mono_ms() + s->o.timeout, NULL);
    if (!rc) {
        const char *a[] = {"XACK", s->key, s->group, id};
        size_t l[] = {4, s->keylen, strlen(s->group), strlen(id)};
        redisReply *r;
        rc = rd_cmd(&s->ak, &r, 4, a, l);
        if (r)
            freeReplyObject(r);
    }
    return rc;
}

/* Room for more queued settles (under qmu); false, with the queue as it
 * was, when out of memory. */
static bool grow_settles(rd_sub *s)
{
    size_t cap = s->capq ? s->capq * 2 : 64;
    rd_settle *q = realloc(s->q, cap * sizeof *q);
    if (!q)
        return false;
    s->q = q;
    s->capq = cap;
    return true;
}

static void rd_hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    rd_dlv *dv = ctx;
    rd_sub *s = dv->s;
    if (ev == SLI_MSG_EV_FREE) {
        free(dv);
        sub_unref(s);
        return;
    }
    pthread_mutex_lock(&s->qmu);
    if (s->final) {
        /* handed back at close: the group redelivers it */
    } else if (ev == SLI_MSG_EV_ACK && s->o.ack_sync) {
        if (sync_ack(s, dv->id) != 0)
            sli_log(SL_LOG_WARN, "redis", "ack of %s failed (it will be redelivered): %s",
                    sl_msg_uuid(m), sl_errmsg());
    } else if (s->nq == s->capq && !grow_settles(s)) {
        /* the queued ones stay queued; this one is left to the ack deadline */
        sli_log(SL_LOG_WARN, "redis", "out of memory: a settle left to the ack deadline");
    } else {
        rd_settle *e = &s->q[s->nq++];
        memcpy(e->id, dv->id, sizeof e->id);
        e->ack = ev == SLI_MSG_EV_ACK;
        e->delay_ms = delay_ms;
    }
    pthread_mutex_unlock(&s->qmu);
    atomic_fetch_sub(&s->out, 1);
    atomic_fetch_add(&s->seq, 1);
    if (atomic_load(&s->waiters))
        sli_futex_wake_all(&s->seq);
}

/* Queue q[0..n) on the connection: one XACK for the acks, one XCLAIM per
 * nack. Their replies are read by settles_drain (after the next command is
 * queued too, so a batch of acks costs no extra round trip). */
static int settles_append(rd_sub *s, rd_settle *q, size_t n)
{
    const char **a = malloc((n + 3) * sizeof *a);
    size_t *l = malloc((n + 3) * sizeof *l);
    if (!a || !l) {
        free(a);
        free(l);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    size_t na = 3;
    a[0] = "XACK", a[1] = s->key, a[2] = s->group;
    int rc = 0;
    int64_t now = sli_mono_ms();
    for (size_t i = 0; i < n && !rc; i++) {
        if (q[i].ack) {
            a[na++] = q[i].id;
            continue;
        }
        char idle[32];
        int64_t left = s->o.ack_deadline - (int64_t)q[i].delay_ms;
        if (q[i].delay_ms == 0)
            snprintf(idle, sizeof idle, "%s", RD_IDLE_ANY);
        else
            snprintf(idle, sizeof idle, "%lld", (long long)(left > 0 ? left : 0));
        const char *c[] = {"XCLAIM", s->key, s->group, s->consumer, "0",
                           q[i].id,  "IDLE", idle,     "JUSTID"};
        size_t cl[9];
        for (int j = 0; j < 9; j++)
            cl[j] = j == 1 ? s->keylen : strlen(c[j]);
        if ((rc = rd_append(&s->k, 9, c, cl)) == 0)
            s->unread++;
        int64_t due = now + (q[i].delay_ms ? (int64_t)q[i].delay_ms + 2 : 0);
        if (due < s->claim_at)
            s->claim_at = due;
    }
    if (!rc && na > 3) {
        for (size_t i = 0; i < na; i++)
            l[i] = i == 1 ? s->keylen : strlen(a[i]);
        if ((rc = rd_append(&s->k, (int)na, a, l)) == 0)
            s->unread++;
    }
    free(a);
    free(l);
    return rc;
}

/* Put settles back at the head of the queue (their send failed). */
static void settles_requeue(rd_sub *s, rd_settle *q, size_t n)
{
    pthread_mutex_lock(&s->qmu);
    rd_settle *m = s->final ? NULL : realloc(q, (n + s->nq) * sizeof *q);
    if (m) {
        if (s->nq) /* s->q may be NULL then: memcpy must not get it */
            memcpy(m + n, s->q, s->nq * sizeof *q);
        free(s->q);
        s->q = m;
        s->nq = s->capq = n + s->nq;
        q = NULL;
    }
    pthread_mutex_unlock(&s->qmu);
    free(q);
}

/* Read the replies of the settles sent; on failure they are queued again. */
static int settles_drain(rd_sub *s)
{
    int rc = 0;
    for (; s->unread && !rc; s->unread--) {
        redisReply *r;
        if ((rc = rd_read(&s->k, &r)) != 0)
            break;
        if ((rc = rd_transient(&s->k, r)) == 0 && r->type == REDIS_REPLY_ERROR)
            sli_log(SL_LOG_WARN, "redis", "settle on %s: %.*s", s->key, (int)r->len, r->str);
        freeReplyObject(r);
    }
    s->unread = 0;
    if (rc) {
        rd_conn_drop(&s->k);
        settles_requeue(s, s->sent, s->nsent);
    } else {
        free(s->sent);
    }
    s->sent = NULL;
    s->nsent = 0;
    return rc;
}

/* Queue every settle taken so far (final: and take no more). */
static int settles_send(rd_sub *s, bool final)
{
    pthread_mutex_lock(&s->qmu);
    rd_settle *q = s->q;
    size_t n = s->nq;
    s->q = NULL;
    s->nq = s->capq = 0;
    if (final)
        s->final = true;
    pthread_mutex_unlock(&s->qmu);
    if (!n) {
        free(q);
        return 0;
    }
    s->sent = q;
    s->nsent = n;
    int rc = settles_append(s, q, n);
    if (rc) { /* nothing half-queued may stay on the connection */
        s->unread = 0;
        rd_conn_drop(&s->k);
        settles_requeue(s, s->sent, s->nsent);
        s->sent = NULL;
        s->nsent = 0;
    }
    return rc;
}

/* ---------- reading ---------- */

/* Parse an array of entries into the buffer (deliveries d). */
static int take_entries(rd_sub *s, const redisReply *arr, unsigned d)
{
    s->nbuf = s->ibuf = 0;
    for (size_t i = 0; arr && arr->type == REDIS_REPLY_ARRAY && i < arr->elements; i++) {
        if (s->nbuf == s->capbuf)
            break;
        rd_buf *b = &s->buf[s->nbuf];
        int rc = rd_entry_msg(arr->element[i], &b->m, b->id, sizeof b->id);
        if (rc == SL_ENOMEM)
            return rc;
        if (rc) { /* not ours or deleted: drop it from the pending list */
            sli_log(SL_LOG_WARN, "redis", "%s: skipping entry: %s", s->key, sl_errmsg());
            if (b->id[0]) {
                const char *a[] = {"XACK", s->key, s->group, b->id};
                rd_cmdv(&s->k, 4, a);
            }
            continue;
        }
        b->deliveries = d;
        s->nbuf++;
    }
    return 0;
}

/* Delivery counts of the reclaimed entries in the buffer (XPENDING). */
static void fetch_counts(rd_sub *s)
{
    if (!s->nbuf)
        return;
    char cnt[16];
    snprintf(cnt, sizeof cnt, "%u", s->capbuf * 4 + 64);
    const char *a[] = {"XPENDING", s->key,     s->group, s->buf[0].id, s->buf[s->nbuf - 1].id,
                       cnt,        s->consumer};
    size_t l[7];
    for (int j = 0; j < 7; j++)
        l[j] = j == 1 ? s->keylen : strlen(a[j]);
    redisReply *r;
    if (rd_cmd(&s->k, &r, 7, a, l) == 0 && r->type == REDIS_REPLY_ARRAY) {
        size_t j = 0;
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 4)
                continue;
            for (; j < s->nbuf && strcmp(s->buf[j].id, e->element[0]->str) != 0; j++)
                ;
            if (j == s->nbuf)
                break;
            s->buf[j].deliveries = (unsigned)e->element[3]->integer;
        }
    }
    if (r)
        freeReplyObject(r);
}

static int autoclaim(rd_sub *s, unsigned room)
{
    char idle[24], cnt[16];
    snprintf(idle, sizeof idle, "%lld", (long long)s->o.ack_deadline);
    snprintf(cnt, sizeof cnt, "%u", room);
    const char *a[] = {"XAUTOCLAIM", s->key, s->group, s->consumer, idle, s->cursor, "COUNT", cnt};
    size_t l[8];
    for (int j = 0; j < 8; j++)
        l[j] = j == 1 ? s->keylen : strlen(a[j]);
    redisReply *r;
    int rc = rd_cmd(&s->k, &r, 8, a, l);
    if (!rc && (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
                r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= RD_ID_MAX))
        rc = sli_err(SL_EPROTO, "redis: unexpected XAUTOCLAIM reply");
    if (!rc) {
        snprintf(s->cursor, sizeof s->cursor, "%s", r->element[0]->str);
        rc = take_entries(s, r->element[1], 2);
        bool wrapped = strcmp(s->cursor, "0-0") == 0;
        s->claim_at = sli_mono_ms() + (wrapped && !s->nbuf ? s->claim_every : 0);
    }
    if (r)
        freeReplyObject(r);
    if (!rc)
        fetch_counts(s);
    return rc;
}

static int read_group(rd_sub *s, unsigned room, int64_t block)
{
    char cnt[16], blk[24];
    snprintf(cnt, sizeof cnt, "%u", room);
    snprintf(blk, sizeof blk, "%lld", (long long)block);
    const char *a[11] = {"XREADGROUP", "GROUP", s->group, s->consumer, "COUNT", cnt};
    int n = 6;
    if (block > 0)
        a[n++] = "BLOCK", a[n++] = blk;
    a[n++] = "STREAMS", a[n++] = s->key, a[n++] = ">";
    size_t l[11];
    for (int j = 0; j < n; j++)
        l[j] = a[j] == s->key ? s->keylen : strlen(a[j]);
    redisReply *r = NULL;
    int rc = rd_append(&s->k, n, a, l);
    if (rc) {
        rd_conn_drop(&s->k);
        return rc;
    }
    if ((rc = settles_drain(s)) != 0) /* the settles went out just before */
        return rc;
    if ((rc = rd_read(&s->k, &r)) == 0 && r->type == REDIS_REPLY_ERROR &&
        (rc = rd_transient(&s->k, r)) == 0)
        rc = sli_err(SL_EIO, "redis: XREADGROUP %s: %.*s", s->key, (int)r->len, r->str);
    if (rc == SL_EIO && r && strstr(r->str, "NOGROUP")) {
        /* the stream or group vanished (deleted, or lost by the server):
         * recreate it and read what is there */
        sli_log(SL_LOG_WARN, "redis", "%s: group %s is gone; recreating it", s->key, s->group);
        rc = create_group(s, "0");
    } else if (!rc && r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        redisReply *st = r->element[0];
        if (st->type == REDIS_REPLY_ARRAY && st->elements == 2)
            rc = take_entries(s, st->element[1], 1);
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

static int deliver(rd_sub *s, sl_msg **out)
{
    rd_buf *b = &s->buf[s->ibuf];
    rd_dlv *dv = malloc(sizeof *dv);
    if (!dv)
        return sli_err(SL_ENOMEM, "out of memory");
    dv->s = s;
    memcpy(dv->id, b->id, sizeof dv->id);
    atomic_fetch_add(&s->refs, 1);
    atomic_fetch_add(&s->out, 1);
    sli_msg_set_delivery(b->m, s->topic, b->deliveries, rd_hook, dv);
    *out = b->m;
    b->m = NULL;
    s->ibuf++;
    return 0;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* One step of next(): 1 when a message is ready or the caller should look
 * again, 0 when it waited without result, < 0 on error. */
static int step(rd_sub *s, int64_t deadline)
{
    int64_t now = sli_mono_ms();
    if (!s->k.c) {
        int64_t until = now + s->o.block;
        int rc = rd_conn_ensure(&s->k, deadline >= 0 ? min64(deadline, until) : until, &s->closed);
        return rc == SL_ECONN ? 0 : rc ? rc : 1;
    }
    int rc = settles_send(s, false);
    /* a nack just sent makes a claim due at its own clock reading, which
     * may be a tick past `now`: read the clock again, or the read below
     * would pass over the nacked entry to the next one (order lost) */
    now = sli_mono_ms();
    unsigned held = atomic_load(&s->out);
    if (!rc && (held >= s->prefetch || now >= s->claim_at))
        rc = settles_drain(s); /* no read follows at once to carry them */
    if (rc || held >= s->prefetch) {
        if (rc && rc != SL_ECONN)
            return rc;
        atomic_fetch_add(&s->waiters, 1);
        uint32_t seen = atomic_load(&s->seq);
        if (!rc && atomic_load(&s->out) >= s->prefetch)
            sli_futex_wait(&s->seq, seen,
                           deadline >= 0 ? min64(deadline, now + s->o.block) : now + s->o.block);
        atomic_fetch_sub(&s->waiters, 1);
        return 0;
    }
    unsigned room = s->prefetch - held;
    room = room < s->capbuf ? room : s->capbuf;
    if (now >= s->claim_at) {
        if ((rc = autoclaim(s, room)) != 0)
            return rc == SL_ECONN ? 0 : rc;
        if (s->nbuf)
            return 1;
    }
    int64_t block = min64(s->o.block, s->claim_at - now);
    if (deadline >= 0)
        block = min64(block, deadline - now);
    if ((rc = read_group(s, room, block > 0 ? block : 0)) != 0)
        return rc == SL_ECONN ? 0 : rc;
    return s->nbuf ? 1 : 0;
}

int rd_next(void *impl, sl_msg **out, int timeout_ms)
{
    rd_sub *s = impl;
    int64_t deadline = sli_deadline_ms(timeout_ms);
    atomic_fetch_add(&s->inside, 1);
    pthread_mutex_lock(&s->nmu);
    int rc;
    for (;;) {
        if (atomic_load(&s->closed)) {
            rc = sli_err(SL_ECLOSED, "subscription closed");
            break;
        }
        if (s->ibuf < s->nbuf) {
            rc = deliver(s, out);
            break;
        }
        rc = step(s, deadline);
        if (rc < 0)
            break;
        if (rc == 0 && (timeout_ms == 0 || (deadline >= 0 && sli_mono_ms() >= deadline))) {
            bool away =
                !s->k.c && s->k.down_since && sli_mono_ms() - s->k.down_since >= s->o.reconnect;
            rc = !away ? SL_ETIMEDOUT
                       : sli_err(SL_ECONN, "redis %s:%d: unreachable for %lld ms: %s", s->o.host,
                                 s->o.port, (long long)(sli_mono_ms() - s->k.down_since), s->k.why);
            break;
        }
    }
    pthread_mutex_unlock(&s->nmu);
    atomic_fetch_sub(&s->inside, 1);
    return rc;
}

/* ---------- subscribe / unsubscribe ---------- */

int rd_subscribe(const rd_opts *o, const char *topic, const sl_subscribe_opts *so, void **out)
{
    rd_sub *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    s->o = *o;
    s->k.o = s->ak.o = &s->o;
    s->prefetch = so->prefetch;
    s->capbuf = so->prefetch < RD_READ_MAX ? so->prefetch : RD_READ_MAX;
    s->buf = calloc(s->capbuf, sizeof *s->buf);
    s->key = rd_key(o, topic, &s->keylen);
    s->topic = sli_rcstr_new(topic);
    if (!s->buf || !s->key || !s->topic) {
        sli_rcstr_unref(s->topic);
        free(s->buf);
        free(s->key);
        free(s);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    char id[SL_UUID_LEN + 1];
    sl_uuid_v7(id);
    snprintf(s->consumer, sizeof s->consumer, "c.%s", id);
    s->priv = so->group == NULL;
    if (s->priv)
        snprintf(s->group, sizeof s->group, "sl.priv.%s", id);
    else
        snprintf(s->group, sizeof s->group, "%s", so->group);
    snprintf(s->cursor, sizeof s->cursor, "0-0");
    s->claim_every = o->ack_deadline / 2 < 500 ? o->ack_deadline / 2 : 500;
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->nmu, NULL);
    pthread_mutex_init(&s->qmu, NULL);
    bool earliest = s->priv ? so->start == SL_START_EARLIEST : so->start != SL_START_LATEST;
    int rc = rd_conn_ensure(&s->k, sli_mono_ms() + o->timeout, NULL);
    if (!rc)
        rc = create_group(s, earliest ? "0" : "$");
    if (rc) {
        sub_unref(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* Give our pending entries to the group: claimable by any member at once. */
static void hand_back(rd_sub *s)
{
    for (int round = 0; round < 1000; round++) {
        const char *a[] = {"XPENDING", s->key, s->group, "-", "+", "512", s->consumer};
        redisReply *r;
        if (rd_cmd(&s->k, &r, 7, a, NULL) != 0 || r->type != REDIS_REPLY_ARRAY ||
            r->elements == 0) {
            if (r)
                freeReplyObject(r);
            break;
        }
        size_t n = r->elements;
        const char **c = malloc((n + 8) * sizeof *c);
        if (!c) {
            freeReplyObject(r);
            break;
        }
        size_t m = 0;
        c[m++] = "XCLAIM", c[m++] = s->key, c[m++] = s->group, c[m++] = RD_HANDBACK, c[m++] = "0";
        for (size_t i = 0; i < n; i++)
            if (r->element[i]->type == REDIS_REPLY_ARRAY && r->element[i]->elements >= 1)
                c[m++] = r->element[i]->element[0]->str;
        c[m++] = "IDLE", c[m++] = RD_IDLE_ANY, c[m++] = "JUSTID";
        int rc = rd_cmdv(&s->k, (int)m, c);
        free(c);
        freeReplyObject(r);
        if (rc)
            return;
    }
    const char *d[] = {"XGROUP", "DELCONSUMER", s->key, s->group, s->consumer};
    rd_cmdv(&s->k, 5, d);
}

int rd_unsubscribe(void *impl)
{
    rd_sub *s = impl;
    atomic_store(&s->closed, true);
    while (atomic_load(&s->inside)) {
        atomic_fetch_add(&s->seq, 1);
        sli_futex_wake_all(&s->seq);
        usleep(500);
    }
    for (unsigned i = s->ibuf; i < s->nbuf; i++)
        sl_msg_unref(s->buf[i].m); /* never handed out: pending, handed back below */
    s->nbuf = s->ibuf = 0;
    /* best effort, briefly: without the server, the pending entries wait
     * for the ack deadline instead */
    int rc =
        rd_conn_ensure(&s->k, sli_mono_ms() + (s->o.timeout < 1000 ? s->o.timeout : 1000), NULL);
    if (!rc)
        rc = settles_send(s, true);
    if (!rc)
        rc = settles_drain(s);
    if (!rc) {
        if (s->priv) {
            const char *d[] = {"XGROUP", "DESTROY", s->key, s->group};
            rc = rd_cmdv(&s->k, 4, d);
        } else {
            hand_back(s);
        }
    }
    if (rc) {
        pthread_mutex_lock(&s->qmu);
        s->final = true;
        pthread_mutex_unlock(&s->qmu);
        sli_log(SL_LOG_WARN, "redis",
                "%s: closing group %s: %s (its pending entries wait for the ack deadline)", s->key,
                s->group, sl_errmsg());
    }
    pthread_mutex_lock(&s->qmu);
    rd_conn_drop(&s->ak);
    pthread_mutex_unlock(&s->qmu);
    rd_conn_drop(&s->k);
    sub_unref(s);
    return 0;
}
