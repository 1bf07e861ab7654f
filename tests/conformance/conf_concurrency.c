/*
 * conf_concurrency.c - conformance behaviours with many threads: 50
 * concurrent publishers, competing subscribers in one group, two groups,
 * concurrent close of subscriptions and subscribers, and close waking a
 * thread blocked in sl_next.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

/* ---- a shared "seen" set for consumers running in threads ---- */

typedef struct seen_set {
    atomic_uchar *seen;
    size_t n;
    atomic_size_t distinct;
    uint64_t seed;
    int64_t deadline;
    _Atomic int64_t progress; /* when distinct last grew (ms) */
} seen_set;

static void seen_init(seen_set *ss, size_t n, uint64_t seed)
{
    ss->seen = calloc(n, sizeof *ss->seen);
    assert_non_null(ss->seen);
    ss->n = n;
    atomic_init(&ss->distinct, 0);
    ss->seed = seed;
    ss->deadline = tl_now_ms() + 120000;
    atomic_init(&ss->progress, tl_now_ms());
}

/* True (after a check failure) when no new message arrived for a while. */
static bool seen_stalled(seen_set *ss)
{
    if (tl_now_ms() - atomic_load(&ss->progress) <= CONF_RECV_MS)
        return false;
    tl_check_fail(__FILE__, __LINE__, "stalled at %zu of %zu messages", atomic_load(&ss->distinct),
                  ss->n);
    return true;
}

static bool seen_done(seen_set *ss)
{
    return atomic_load(&ss->distinct) >= ss->n;
}

/* Record m (thread-safe); a duplicate must be a redelivery. */
static void seen_take(seen_set *ss, sl_msg *m)
{
    long i = conf_msg_verify(m, ss->seed);
    if (i < 0 || (size_t)i >= ss->n) {
        TL_CHECK(i >= 0 && (size_t)i < ss->n);
        return;
    }
    if (atomic_exchange(&ss->seen[i], 1)) {
        if (sl_msg_deliveries(m) <= 1)
            tl_check_fail(__FILE__, __LINE__, "message %ld delivered twice without redelivery", i);
    } else {
        atomic_fetch_add(&ss->distinct, 1);
        atomic_store(&ss->progress, tl_now_ms());
    }
}

typedef struct consumer {
    sl_subscription *s;
    seen_set *ss;
    size_t got;
} consumer;

static void *consume_until_done(void *arg)
{
    consumer *c = arg;
    while (!seen_done(c->ss) && tl_now_ms() < c->ss->deadline) {
        sl_msg *m = NULL;
        int rc = sl_next(c->s, &m, 100);
        if (rc == SL_ETIMEDOUT) {
            if (seen_stalled(c->ss))
                break;
            continue;
        }
        if (rc) {
            tl_check_fail(__FILE__, __LINE__, "sl_next: %s: %s", sl_strerror(rc), sl_errmsg());
            break;
        }
        seen_take(c->ss, m);
        TL_CHECK_INT(sl_msg_ack(m), 0);
        sl_msg_unref(m);
        c->got++;
    }
    return NULL;
}

static void start_consumers(pthread_t *t, consumer *c, int n)
{
    /* a stall counts from here: opening the members (a group's rebalances
     * as each joins) is not the consumers' time */
    for (int i = 0; i < n; i++)
        atomic_store(&c[i].ss->progress, tl_now_ms());
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&t[i], NULL, consume_until_done, &c[i]), 0);
}

static void join_all(pthread_t *t, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

/* ---- behaviours ---- */

typedef struct pub_job {
    const char *topic;
    uint64_t seed;
    size_t first, count;
} pub_job;

static void *publish_job(void *arg)
{
    pub_job *j = arg;
    sl_publisher *p = NULL;
    int rc = sl_publisher_open(&p, conf_url());
    TL_CHECK_INT(rc, 0);
    if (rc)
        return NULL;
    conf_publish_range(p, j->topic, j->seed, j->first, j->count, 1 + j->first % 4);
    TL_CHECK_INT(sl_publisher_close(p), 0);
    return NULL;
}

/* watermill TestConcurrentPublish... : 50 publishers at once, every message
 * arrives exactly once. */
CONF_TEST(concurrent_publishers)
{
    enum { NP = 50 };
    size_t per = tl_scaled(10000, 500) / NP;
    uint64_t seed = conf_seed();
    const char *topic = conf_name("concpub");
    sl_subscriber *sub = conf_sub();
    sl_subscription *s = conf_subscribe(sub, topic, NULL, 128);
    pub_job jobs[NP];
    pthread_t t[NP];
    for (int i = 0; i < NP; i++) {
        jobs[i] = (pub_job){topic, seed, (size_t)i * per, per};
        assert_int_equal(pthread_create(&t[i], NULL, publish_job, &jobs[i]), 0);
    }
    conf_receive_all(s, seed, 0, per * NP, false);
    join_all(t, NP);
    tl_assert_threads_ok();
    conf_expect_nothing(s, CONF_QUIET_MS);
    sl_subscriber_close(sub);
}

/* watermill TestConcurrentSubscribe: several subscriptions in one group,
 * each message handled once (modulo redelivery). */
CONF_TEST(concurrent_subscribers)
{
    conf_require(SL_FEAT_CONSUMER_GROUPS, "competing consumers need a group");
    enum { NS = 5 };
    size_t n = tl_scaled(10000, 200);
    uint64_t seed = conf_seed();
    const char *topic = conf_name("concsub"), *group = conf_name("g");
    sl_subscriber *sub = conf_sub();
    seen_set ss;
    seen_init(&ss, n, seed);
    consumer c[NS];
    pthread_t t[NS];
    for (int i = 0; i < NS; i++)
        c[i] = (consumer){conf_subscribe(sub, topic, group, 1 + (unsigned)i * 4), &ss, 0};
    start_consumers(t, c, NS);
    sl_publisher *pub = conf_pub();
    conf_publish_range(pub, topic, seed, 0, n, 10);
    join_all(t, NS);
    tl_assert_threads_ok();
    size_t total = 0;
    for (int i = 0; i < NS; i++)
        total += c[i].got;
    assert_int_equal(atomic_load(&ss.distinct), n);
    assert_true(total >= n);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
    free(ss.seen);
}

/* watermill TestConsumerGroups: two groups each get every message; the
 * members of one group share them. */
CONF_TEST(consumer_groups)
{
    conf_require(SL_FEAT_CONSUMER_GROUPS, "needs consumer groups");
    enum { NG = 2, NM = 2 };
    size_t n = tl_scaled(5000, 100);
    uint64_t seed = conf_seed();
    const char *topic = conf_name("groups");
    sl_subscriber *sub = conf_sub();
    seen_set ss[NG];
    consumer c[NG * NM];
    pthread_t t[NG * NM];
    for (int g = 0; g < NG; g++) {
        const char *group = conf_name("grp");
        seen_init(&ss[g], n, seed);
        for (int m = 0; m < NM; m++)
            c[g * NM + m] = (consumer){conf_subscribe(sub, topic, group, 4), &ss[g], 0};
    }
    start_consumers(t, c, NG * NM);
    sl_publisher *pub = conf_pub();
    conf_publish_range(pub, topic, seed, 0, n, 25);
    join_all(t, NG * NM);
    tl_assert_threads_ok();
    for (int g = 0; g < NG; g++) {
        assert_int_equal(atomic_load(&ss[g].distinct), n);
        size_t total = 0;
        for (int m = 0; m < NM; m++)
            total += c[g * NM + m].got;
        assert_true(total >= n);
        free(ss[g].seen);
    }
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

typedef struct closer {
    const char *topic, *group;
    seen_set *ss;
    int idx;
} closer;

/* Subscribe, take a few messages (ack some, keep some unacked), close. */
static void *subscribe_take_close(void *arg)
{
    closer *c = arg;
    sl_subscriber *sub = NULL;
    int rc = sl_subscriber_open(&sub, conf_url());
    TL_CHECK_INT(rc, 0);
    if (rc)
        return NULL;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = c->group;
    o.prefetch = 4;
    sl_subscription *s = NULL;
    rc = sl_subscribe(sub, c->topic, &o, &s);
    TL_CHECK_INT(rc, 0);
    for (int k = 0; rc == 0 && k < 6; k++) {
        sl_msg *m = NULL;
        if (sl_next(s, &m, 50) != 0)
            break;
        if (k % 2 == 0) { /* acked: counts as handled */
            seen_take(c->ss, m);
            TL_CHECK_INT(sl_msg_ack(m), 0);
        }
        sl_msg_unref(m); /* the others stay unacked until close */
    }
    if (rc == 0 && c->idx % 2 == 0)
        TL_CHECK_INT(sl_subscription_close(s), 0);
    TL_CHECK_INT(sl_subscriber_close(sub), 0);
    return NULL;
}

/* watermill TestConcurrentClose: subscriptions of one group opened and
 * closed concurrently (some with unacked messages) lose nothing; a
 * remaining member gets every message nobody acked. */
CONF_TEST(concurrent_close)
{
    conf_require(SL_FEAT_CONSUMER_GROUPS, "handing messages back needs a group");
    enum { NC = 10 };
    size_t n = tl_scaled(1000, 100);
    uint64_t seed = conf_seed();
    const char *topic = conf_name("cclose"), *group = conf_name("g");
    sl_subscriber *sub = conf_sub();
    sl_subscription *keep = conf_subscribe(sub, topic, group, 16);
    sl_publisher *pub = conf_pub();
    assert_int_equal(conf_publish_range(pub, topic, seed, 0, n, 50), 0);
    seen_set ss;
    seen_init(&ss, n, seed);
    closer c[NC];
    for (int i = 0; i < NC; i++)
        c[i] = (closer){topic, group, &ss, i};
    tl_run_threads(NC, subscribe_take_close, c, sizeof c[0]);
    tl_assert_threads_ok();
    assert_true(atomic_load(&ss.distinct) < n);
    consumer last = {keep, &ss, 0};
    atomic_store(&ss.progress, tl_now_ms()); /* the closers' group churn is behind us */
    consume_until_done(&last);
    tl_assert_threads_ok();
    assert_int_equal(atomic_load(&ss.distinct), n);
    conf_expect_nothing(keep, CONF_QUIET_MS);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
    free(ss.seen);
}

typedef struct blocked {
    sl_subscription *s;
    atomic_int ready;
    int rc;
} blocked;

static void *block_in_next(void *arg)
{
    blocked *b = arg;
    sl_msg *m = NULL;
    atomic_store(&b->ready, 1);
    b->rc = sl_next(b->s, &m, -1);
    if (m) {
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    return NULL;
}

/* Closing a subscription or a whole subscriber wakes threads blocked in
 * sl_next on it with SL_ECLOSED. */
CONF_TEST(close_wakes_blocked_next)
{
    const char *topic = conf_name("wake");
    sl_subscriber *sub1 = conf_sub(), *sub2 = conf_sub();
    blocked b[2] = {{.s = conf_subscribe(sub1, topic, NULL, 1)},
                    {.s = conf_subscribe(sub2, topic, NULL, 1)}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, block_in_next, &b[i]), 0);
    while (!atomic_load(&b[0].ready) || !atomic_load(&b[1].ready))
        tl_sleep_ms(1);
    /* A close may only overlap calls already inside sl_next; give the
     * threads time to get there (no API can tell us they are blocked). */
    tl_sleep_ms(300);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_subscription_close(b[0].s), 0);
    assert_int_equal(sl_subscriber_close(sub2), 0);
    join_all(t, 2);
    assert_true(tl_now_ms() - t0 < 10000);
    assert_int_equal(b[0].rc, SL_ECLOSED);
    assert_int_equal(b[1].rc, SL_ECLOSED);
    sl_subscriber_close(sub1);
}
