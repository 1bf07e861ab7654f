/*
 * requeue.c - delayed publishing through a delay topic, and the requeuer
 * that brings parked messages back when due (sluice/requeue.h).
 *
 * The requeuer is one thread on one subscription (its group, prefetch =
 * max_held). It keeps the parked messages it took, unacked, in an array
 * ordered by due time (then arrival, so equal times keep their order),
 * publishes each one that is due as a copy to its topic and only then acks
 * it. While nothing is due it waits in sl_next for at most the time to the
 * next due message (100 ms at most, so a stop is quick). A message due
 * more than HAND_BACK_MS away on a backend with delayed nacks is nacked
 * with that delay instead of being held, so long delays cost no memory and
 * outlive ack deadlines; elsewhere it is held (a redelivery of a held UUID
 * - ack deadline expired - replaces the older delivery).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "sluice/requeue.h"

#define HAND_BACK_MS 2000
#define POLL_MS 100

void sl_delay_opts_init(sl_delay_opts *o)
{
    memset(o, 0, sizeof *o);
    o->delay_topic = SL_REQUEUE_DEFAULT_TOPIC;
}

/* ---- publishing ---- */

static int park_one(sl_publisher *pub, const char *topic, const char *delay_topic, sl_msg *m)
{
    sl_msg *c;
    int rc = sl_msg_copy(m, &c);
    if (rc != 0)
        return rc;
    if ((rc = sl_msg_meta_set(c, SL_REQUEUE_META_TOPIC, topic)) == 0)
        rc = sl_publish(pub, delay_topic, &c, 1);
    sl_msg_unref(c);
    return rc;
}

int sl_publish_delayed(sl_publisher *pub, const char *topic, sl_msg *const *msgs, size_t n,
                       const sl_delay_opts *o)
{
    sl_delay_opts def;
    if (!o) {
        sl_delay_opts_init(&def);
        o = &def;
    }
    const char *dt = o->delay_topic ? o->delay_topic : SL_REQUEUE_DEFAULT_TOPIC;
    if (!pub || (n && !msgs))
        return sli_err(SL_EINVAL, "sl_publish_delayed: NULL publisher or messages");
    int rc = sli_check_topic(topic);
    if (rc == 0 && (rc = sli_check_topic(dt)) == 0 && strcmp(dt, topic) == 0)
        rc = sli_err(SL_EINVAL, "sl_publish_delayed: topic '%s' is the delay topic", topic);
    int64_t at;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = msgs[i] ? sli_msg_deliver_at(msgs[i], &at)
                     : sli_err(SL_EINVAL, "sl_publish_delayed: msgs[%zu] is NULL", i);
    if (rc != 0)
        return rc;
    bool native = (sl_publisher_features(pub) & SL_FEAT_DELAYED_PUBLISH) && !o->via_topic;
    int64_t now = sli_wall_ms();
    size_t run = 0; /* start of a run of messages published as they are */
    for (size_t i = 0; i <= n && rc == 0; i++) {
        bool park = false;
        if (i < n && !native) {
            sli_msg_deliver_at(msgs[i], &at);
            park = at > now;
        }
        if (i == n || park) {
            if (i > run)
                rc = sl_publish(pub, topic, msgs + run, i - run);
            if (rc == 0 && park)
                rc = park_one(pub, topic, dt, msgs[i]);
            run = i + 1;
        }
    }
    return rc;
}

/* ---- the requeuer ---- */

typedef struct held {
    sl_msg *m;
    int64_t due; /* wall ms */
    uint64_t seq;
} held;

struct sl_requeuer {
    sl_subscriber *sub;
    sl_publisher *pub;
    sl_subscription *s;
    char topic[256], poison[300], group[256];
    unsigned max_held;
    int retry_ms;
    held *h;
    size_t n;
    uint64_t seq;
    bool delayed_nack;
    pthread_t tid;
    bool started;
    _Atomic bool stop;
    _Atomic unsigned long long count;
};

void sl_requeuer_opts_init(sl_requeuer_opts *o)
{
    memset(o, 0, sizeof *o);
    o->delay_topic = SL_REQUEUE_DEFAULT_TOPIC;
    o->group = "requeuer";
    o->max_held = 256;
    o->retry_ms = 500;
}

int sl_requeuer_new(sl_requeuer **out, sl_subscriber *sub, sl_publisher *pub,
                    const sl_requeuer_opts *opts)
{
    sl_requeuer_opts def;
    if (!opts) {
        sl_requeuer_opts_init(&def);
        opts = &def;
    }
    if (!out || !sub || !pub)
        return sli_err(SL_EINVAL, "sl_requeuer_new: NULL argument");
    const char *dt = opts->delay_topic ? opts->delay_topic : SL_REQUEUE_DEFAULT_TOPIC;
    const char *g = opts->group && *opts->group ? opts->group : "requeuer";
    int rc = sli_check_topic(dt);
    if (rc != 0)
        return rc;
    if (strlen(dt) >= 256 || strlen(g) >= 256)
        return sli_err(SL_EINVAL, "sl_requeuer_new: delay topic or group too long");
    sl_requeuer *rq = calloc(1, sizeof *rq);
    unsigned max = opts->max_held ? opts->max_held : 256;
    if (!rq || !(rq->h = calloc(max, sizeof *rq->h))) {
        free(rq);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    rq->sub = sub;
    rq->pub = pub;
    rq->max_held = max;
    rq->retry_ms = opts->retry_ms > 0 ? opts->retry_ms : 500;
    snprintf(rq->topic, sizeof rq->topic, "%s", dt);
    snprintf(rq->poison, sizeof rq->poison, "%s.poison", dt);
    snprintf(rq->group, sizeof rq->group, "%s", g);
    rq->delayed_nack = sl_subscriber_features(sub) & SL_FEAT_DELAYED_NACK;
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    so.group = rq->group;
    so.start = SL_START_EARLIEST;
    so.prefetch = max;
    if ((rc = sl_subscribe(sub, rq->topic, &so, &rq->s)) != 0) {
        free(rq->h);
        free(rq);
        return rc;
    }
    *out = rq;
    return 0;
}

/* Insert keeping (due, seq) order; replaces an older delivery of the UUID. */
static void hold(sl_requeuer *rq, sl_msg *m, int64_t due)
{
    for (size_t i = 0; i < rq->n; i++)
        if (strcmp(sl_msg_uuid(rq->h[i].m), sl_msg_uuid(m)) == 0) {
            sl_msg_unref(rq->h[i].m); /* its delivery expired: the new one counts */
            memmove(&rq->h[i], &rq->h[i + 1], (rq->n - i - 1) * sizeof *rq->h);
            rq->n--;
            break;
        }
    size_t i = rq->n;
    while (i > 0 && rq->h[i - 1].due > due) {
        rq->h[i] = rq->h[i - 1];
        i--;
    }
    rq->h[i] = (held){m, due, rq->seq++};
    rq->n++;
}

static void to_poison(sl_requeuer *rq, sl_msg *m, const char *why)
{
    sli_log(SL_LOG_ERROR, "requeuer", "message %s: %s: moved to %s", sl_msg_uuid(m), why,
            rq->poison);
    sl_msg *c = NULL;
    int rc = sl_msg_copy(m, &c);
    if (rc == 0 && (rc = sl_msg_meta_set(c, "reason_poisoned", why)) == 0)
        rc = sl_publish(rq->pub, rq->poison, &c, 1);
    sl_msg_unref(c);
    if (rc == 0)
        sl_msg_ack(m);
    else
        sl_msg_nack_delay(m, (unsigned)rq->retry_ms);
    sl_msg_unref(m);
}

static void take(sl_requeuer *rq, sl_msg *m)
{
    const char *t = sl_msg_meta_get(m, SL_REQUEUE_META_TOPIC);
    int64_t due = 0;
    if (!t || sli_check_topic(t) != 0 || strcmp(t, rq->topic) == 0) {
        to_poison(rq, m, "no valid " SL_REQUEUE_META_TOPIC);
        return;
    }
    if (sli_msg_deliver_at(m, &due) != 0) {
        to_poison(rq, m, "bad " SL_META_DELIVER_AT);
        return;
    }
    int64_t wait = due - sli_wall_ms();
    if (rq->delayed_nack && wait > HAND_BACK_MS) {
        sl_msg_nack_delay(m, (unsigned)(wait - HAND_BACK_MS / 2 > UINT32_MAX / 2
                                            ? UINT32_MAX / 2
                                            : wait - HAND_BACK_MS / 2));
        sl_msg_unref(m);
        return;
    }
    hold(rq, m, due);
}

/* Publish the first held message to its topic; 0 when done. */
static int release(sl_requeuer *rq, sl_msg *m)
{
    sl_msg *c;
    int rc = sl_msg_copy(m, &c);
    if (rc != 0)
        return rc;
    char topic[256];
    snprintf(topic, sizeof topic, "%s", sl_msg_meta_get(m, SL_REQUEUE_META_TOPIC));
    sl_msg_meta_del(c, SL_REQUEUE_META_TOPIC);
    sl_msg_meta_del(c, SL_META_DELIVER_AT);
    rc = sl_publish(rq->pub, topic, &c, 1);
    sl_msg_unref(c);
    return rc;
}

static void release_due(sl_requeuer *rq)
{
    while (rq->n && rq->h[0].due <= sli_wall_ms() && !atomic_load(&rq->stop)) {
        sl_msg *m = rq->h[0].m;
        int rc = release(rq, m);
        if (rc != 0) {
            sli_log(SL_LOG_WARN, "requeuer", "message %s: %s (kept, retrying)", sl_msg_uuid(m),
                    sl_errmsg());
            rq->h[0].due = sli_wall_ms() + rq->retry_ms;
            held x = rq->h[0];
            memmove(&rq->h[0], &rq->h[1], (rq->n - 1) * sizeof *rq->h);
            rq->n--;
            hold(rq, x.m, x.due);
            return;
        }
        sl_msg_ack(m);
        sl_msg_unref(m);
        memmove(&rq->h[0], &rq->h[1], (rq->n - 1) * sizeof *rq->h);
        rq->n--;
        atomic_fetch_add(&rq->count, 1);
    }
}

static void *requeuer_main(void *arg)
{
    sl_requeuer *rq = arg;
    sli_thread_name("sl-requeuer");
    while (!atomic_load(&rq->stop)) {
        release_due(rq);
        int wait = POLL_MS;
        if (rq->n) {
            int64_t w = rq->h[0].due - sli_wall_ms();
            wait = w < 0 ? 0 : w < POLL_MS ? (int)w : POLL_MS;
        }
        if (rq->n >= rq->max_held) { /* full: only time can make room */
            struct timespec ts = {0, (long)(wait ? wait : 1) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        sl_msg *m;
        int rc = sl_next(rq->s, &m, wait);
        if (rc == 0)
            take(rq, m);
        else if (rc == SL_ECLOSED)
            break;
        else if (rc != SL_ETIMEDOUT) {
            sli_log(SL_LOG_WARN, "requeuer", "reading %s: %s", rq->topic, sl_errmsg());
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int sl_requeuer_start(sl_requeuer *rq)
{
    if (!rq)
        return sli_err(SL_EINVAL, "sl_requeuer_start: NULL requeuer");
    if (rq->started)
        return sli_err(SL_ESTATE, "sl_requeuer_start: already started");
    if (pthread_create(&rq->tid, NULL, requeuer_main, rq) != 0)
        return sli_err(SL_ENOMEM, "sl_requeuer_start: cannot start a thread");
    rq->started = true;
    return 0;
}

unsigned long long sl_requeuer_count(const sl_requeuer *rq)
{
    return rq ? atomic_load(&((sl_requeuer *)rq)->count) : 0;
}

void sl_requeuer_close(sl_requeuer *rq)
{
    if (!rq)
        return;
    atomic_store(&rq->stop, true);
    if (rq->started)
        pthread_join(rq->tid, NULL);
    for (size_t i = 0; i < rq->n; i++) {
        sl_msg_nack(rq->h[i].m);
        sl_msg_unref(rq->h[i].m);
    }
    sl_subscription_close(rq->s);
    free(rq->h);
    free(rq);
}
