/*
 * test_mem.c - mem:// specifics (src/backends/mem/mem.c): fan-out,
 * competing group members, nack and delayed nack, prefetch windows, handing
 * unacked messages back on close, persistence for late subscribers,
 * backpressure (blocking, non-blocking, timeouts), publish waiting for
 * acks, option conflicts between openers of one bus, and closing handles
 * while other threads are blocked in them.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem_fixture.h"

static void every_subscription_gets_every_message(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *a = subscribe(e.sub, e.topic, NULL, 1);
    sl_subscription *b = subscribe(e.sub, e.topic, NULL, 4);
    pub1(e.p, e.topic, "one");
    pub1(e.p, e.topic, "two");
    take_expect_ack(a, "one");
    take_expect_ack(a, "two");
    take_expect_ack(b, "one");
    take_expect_ack(b, "two");
    expect_none(a, 50);
    expect_none(b, 0);
    env_close(&e);
}

static void group_members_compete(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *a = subscribe(e.sub, e.topic, "g", 1);
    sl_subscription *b = subscribe(e.sub, e.topic, "g", 1);
    sl_subscription *solo = subscribe(e.sub, e.topic, NULL, 8);
    pub1(e.p, e.topic, "m1");
    pub1(e.p, e.topic, "m2");
    sl_msg *ma = take(a); /* a's window is now full: m2 must go to b */
    sl_msg *mb = take(b);
    expect_text(ma, "m1");
    expect_text(mb, "m2");
    expect_none(a, 50);
    expect_none(b, 0);
    sl_msg_ack(ma);
    sl_msg_ack(mb);
    sl_msg_unref(ma);
    sl_msg_unref(mb);
    take_expect_ack(solo, "m1"); /* the group does not take from others */
    take_expect_ack(solo, "m2");
    env_close(&e);
}

static void nack_redelivers_before_later_messages(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 1);
    pub1(e.p, e.topic, "first");
    pub1(e.p, e.topic, "second");
    sl_msg *m = take(s);
    assert_int_equal(sl_msg_deliveries(m), 1);
    assert_string_equal(sl_msg_topic(m), "t");
    assert_int_equal(sl_msg_nack(m), 0);
    sl_msg *again = take(s);
    expect_text(again, "first");
    assert_string_equal(sl_msg_uuid(again), sl_msg_uuid(m));
    assert_int_equal(sl_msg_deliveries(again), 2);
    assert_int_equal(sl_msg_ack(m), SL_ESTATE); /* the old delivery stays nacked */
    assert_int_equal(sl_msg_ack(again), 0);
    sl_msg_unref(m);
    sl_msg_unref(again);
    take_expect_ack(s, "second");
    expect_none(s, 50);
    env_close(&e);
}

static void delayed_nack_comes_back_no_sooner_than_the_delay(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 1);
    pub1(e.p, e.topic, "late");
    pub1(e.p, e.topic, "next");
    sl_msg *m = take(s);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_msg_nack_delay(m, 300), 0);
    sl_msg_unref(m);
    take_expect_ack(s, "next"); /* the delayed one does not block the queue */
    m = take(s);
    int64_t waited = tl_now_ms() - t0;
    expect_text(m, "late");
    assert_int_equal(sl_msg_deliveries(m), 2);
    if (waited < 299)
        fail_msg("redelivered after %lld ms, delay was 300", (long long)waited);
    sl_msg_ack(m);
    sl_msg_unref(m);
    env_close(&e);
}

static void deliver_at_holds_a_message_until_its_time(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 4);
    assert_true(sl_publisher_features(e.p) & SL_FEAT_DELAYED_PUBLISH);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char at[32];
    snprintf(at, sizeof at, "%lld", (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 + 300);
    sl_msg *m = mk("later");
    assert_int_equal(sl_msg_meta_set(m, SL_META_DELIVER_AT, at), 0);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_publish(e.p, e.topic, &m, 1), 0);
    sl_msg_unref(m);
    pub1(e.p, e.topic, "now");
    take_expect_ack(s, "now"); /* the delayed one does not hold the queue */
    m = take(s);
    int64_t waited = tl_now_ms() - t0;
    expect_text(m, "later");
    assert_string_equal(sl_msg_meta_get(m, SL_META_DELIVER_AT), at);
    if (waited < 290)
        fail_msg("delivered after %lld ms, deliver_at was 300 ms ahead", (long long)waited);
    sl_msg_ack(m);
    sl_msg_unref(m);
    /* a past deliver_at is delivered at once */
    m = mk("past");
    assert_int_equal(sl_msg_meta_set(m, SL_META_DELIVER_AT, "1000"), 0);
    assert_int_equal(sl_publish(e.p, e.topic, &m, 1), 0);
    sl_msg_unref(m);
    take_expect_ack(s, "past");
    env_close(&e);
}

static void malformed_deliver_at_publishes_nothing(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 4);
    sl_msg *v[2] = {mk("good"), mk("bad")};
    assert_int_equal(sl_msg_meta_set(v[1], SL_META_DELIVER_AT, "tomorrow"), 0);
    assert_int_equal(sl_publish(e.p, e.topic, v, 2), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), SL_META_DELIVER_AT));
    expect_none(s, 50);
    sl_msg_unref(v[0]);
    sl_msg_unref(v[1]);
    env_close(&e);
}

static void prefetch_window_holds_next_until_ack(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *one = subscribe(e.sub, e.topic, NULL, 1);
    sl_subscription *five = subscribe(e.sub, e.topic, NULL, 5);
    char txt[16];
    for (int i = 0; i < 8; i++) {
        snprintf(txt, sizeof txt, "m%d", i);
        pub1(e.p, e.topic, txt);
    }
    sl_msg *m = take(one);
    expect_none(one, 100);
    sl_msg_ack(m);
    sl_msg_unref(m);
    m = take(one);
    expect_text(m, "m1");
    sl_msg_ack(m);
    sl_msg_unref(m);

    sl_msg *held[5];
    for (int i = 0; i < 5; i++) {
        held[i] = take(five);
        snprintf(txt, sizeof txt, "m%d", i);
        expect_text(held[i], txt);
    }
    expect_none(five, 100);
    sl_msg_ack(held[2]); /* any ack opens one slot */
    m = take(five);
    expect_text(m, "m5");
    expect_none(five, 0);
    sl_msg_nack(held[0]); /* a nack opens a slot too, and m0 comes first */
    sl_msg *r = take(five);
    expect_text(r, "m0");
    sl_msg_ack(r);
    sl_msg_unref(r);
    for (int i = 0; i < 5; i++) {
        sl_msg_ack(held[i]);
        sl_msg_unref(held[i]);
    }
    sl_msg_ack(m);
    sl_msg_unref(m);
    take_expect_ack(five, "m6");
    take_expect_ack(five, "m7");
    env_close(&e);
}

/* A delivery dropped without ack or nack goes back to its group at once:
 * with a prefetch of 1 the subscription goes on (it held its room until
 * the subscription closed). */
static void dropped_delivery_is_given_back_at_once(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, "g", 1);
    pub1(e.p, e.topic, "first");
    pub1(e.p, e.topic, "second");
    sl_msg_unref(take(s));
    sl_msg *m = take(s);
    expect_text(m, "first");
    assert_int_equal(sl_msg_deliveries(m), 2);
    sl_msg_ack(m);
    sl_msg_unref(m);
    take_expect_ack(s, "second");
    expect_none(s, 50);
    env_close(&e);
}

static void closing_subscription_hands_unacked_back_to_group(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *a = subscribe(e.sub, e.topic, "g", 10);
    char txt[16];
    for (int i = 0; i < 20; i++) {
        snprintf(txt, sizeof txt, "m%02d", i);
        pub1(e.p, e.topic, txt);
    }
    sl_msg *held[10];
    for (int i = 0; i < 10; i++)
        held[i] = take(a);
    for (int i = 0; i < 10; i += 3) /* ack m00 m03 m06 m09 */
        sl_msg_ack(held[i]);
    sl_msg_unref(held[1]); /* dropped without ack or nack: given back at once, as a nack */
    held[1] = take(a);
    expect_text(held[1], "m01");
    assert_int_equal(sl_msg_deliveries(held[1]), 2);
    assert_int_equal(sl_subscription_close(a), 0);
    /* acks after the close are harmless and do not count */
    assert_int_equal(sl_msg_ack(held[2]), 0);
    sl_subscription *b = subscribe(e.sub, e.topic, "g", 1);
    /* handed back at the head, in the order they were taken: m01 last, as
       it was taken again after its drop */
    const char *back[] = {"m02", "m04", "m05", "m07", "m08", "m01"};
    for (int i = 0; i < 6; i++) {
        sl_msg *m = take(b);
        expect_text(m, back[i]);
        assert_int_equal(sl_msg_deliveries(m), i == 5 ? 3 : 2);
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    for (int i = 10; i < 20; i++) {
        snprintf(txt, sizeof txt, "m%02d", i);
        take_expect_ack(b, txt);
    }
    expect_none(b, 100);
    for (int i = 0; i < 10; i++)
        sl_msg_unref(held[i]);
    env_close(&e);
}

static void persistent_bus_gives_late_subscribers_old_messages(void **state)
{
    (void)state;
    env e;
    env_open(&e, "?persistent=true", NULL);
    assert_true(sl_subscriber_features(e.sub) & SL_FEAT_LATE_SUBSCRIBERS);
    assert_true(sl_publisher_features(e.p) & SL_FEAT_LATE_SUBSCRIBERS);
    pub1(e.p, e.topic, "old1");
    pub1(e.p, e.topic, "old2");
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 4);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.start = SL_START_LATEST;
    sl_subscription *latest;
    assert_int_equal(sl_subscribe(e.sub, e.topic, &o, &latest), 0);
    take_expect_ack(s, "old1");
    take_expect_ack(s, "old2");
    expect_none(latest, 50);
    pub1(e.p, e.topic, "new");
    take_expect_ack(latest, "new");
    take_expect_ack(s, "new");
    /* a second group also starts from the oldest kept message */
    sl_subscription *g = subscribe(e.sub, e.topic, "g", 8);
    take_expect_ack(g, "old1");
    take_expect_ack(g, "old2");
    take_expect_ack(g, "new");
    env_close(&e);

    /* a plain bus keeps nothing */
    env_open(&e, NULL, NULL);
    assert_false(sl_subscriber_features(e.sub) & SL_FEAT_LATE_SUBSCRIBERS);
    pub1(e.p, e.topic, "gone");
    s = subscribe(e.sub, e.topic, NULL, 1);
    expect_none(s, 50);
    env_close(&e);
}

static void nonblocking_publish_fails_with_eagain_and_publishes_nothing(void **state)
{
    (void)state;
    env e;
    env_open(&e, "?buffer=4", "&block=false");
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 1);
    sl_msg *ms[3] = {mk("a"), mk("b"), mk("c")};
    assert_int_equal(sl_publish(e.p, e.topic, ms, 3), 0);
    assert_int_equal(sl_publish(e.p, e.topic, ms, 2), SL_EAGAIN); /* 3 + 2 > 4 */
    assert_non_null(strstr(sl_errmsg(), "full"));
    assert_int_equal(sl_publish(e.p, e.topic, ms + 2, 1), 0); /* exactly full */
    assert_int_equal(sl_publish(e.p, e.topic, ms, 1), SL_EAGAIN);
    take_expect_ack(s, "a");
    take_expect_ack(s, "b");
    take_expect_ack(s, "c");
    take_expect_ack(s, "c");
    expect_none(s, 50); /* nothing of the failed batches got in */
    for (int i = 0; i < 3; i++)
        sl_msg_unref(ms[i]);
    env_close(&e);
}

static void nonblock_flag_and_timeout_on_a_blocking_publisher(void **state)
{
    (void)state;
    env e;
    env_open(&e, "?buffer=2", NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 1);
    sl_msg *ms[2] = {mk("a"), mk("b")};
    assert_int_equal(sl_publish(e.p, e.topic, ms, 2), 0);
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    assert_int_equal(o.flags, 0);
    assert_true(o.timeout_ms < 0);
    o.flags = SL_PUBLISH_NONBLOCK;
    assert_int_equal(sl_publish_ex(e.p, e.topic, ms, 1, &o), SL_EAGAIN);
    o.flags = 0;
    o.timeout_ms = 100;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_publish_ex(e.p, e.topic, ms, 1, &o), SL_ETIMEDOUT);
    assert_true(tl_now_ms() - t0 >= 99);
    take_expect_ack(s, "a");
    take_expect_ack(s, "b");
    expect_none(s, 50);
    sl_msg_unref(ms[0]);
    sl_msg_unref(ms[1]);
    env_close(&e);
}

typedef struct batch_sub {
    sl_subscription *s;
    atomic_int got;
} batch_sub;

static void *take_six(void *arg)
{
    batch_sub *b = arg;
    sl_msg *m;
    while (atomic_load(&b->got) < 6 && sl_next(b->s, &m, 3000) == 0) {
        sl_msg_ack(m);
        sl_msg_unref(m);
        atomic_fetch_add(&b->got, 1);
    }
    return NULL;
}

static void batch_larger_than_the_buffer_reaches_a_waiting_subscriber(void **state)
{
    (void)state;
    env e;
    env_open(&e, "?buffer=2", NULL);
    batch_sub b = {subscribe(e.sub, e.topic, NULL, 1), 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, take_six, &b), 0);
    tl_sleep_ms(100); /* the subscriber is waiting in sl_next */
    sl_msg *ms[6];
    for (int i = 0; i < 6; i++)
        ms[i] = mk("x");
    /* The publish fills the buffer and waits for room: the subscriber must
     * be woken for what was queued, or neither moves until the timeout. */
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    o.timeout_ms = 2000;
    assert_int_equal(sl_publish_ex(e.p, e.topic, ms, 6, &o), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&b.got), 6);
    for (int i = 0; i < 6; i++)
        sl_msg_unref(ms[i]);
    env_close(&e);
}

static void timed_out_batch_says_how_many_were_taken(void **state)
{
    (void)state;
    env e;
    env_open(&e, "?buffer=2", NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 1);
    sl_msg *ms[3] = {mk("a"), mk("b"), mk("c")};
    size_t taken = 99;
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    assert_null(o.published);
    o.published = &taken;
    o.timeout_ms = 50;
    assert_int_equal(sl_publish_ex(e.p, e.topic, ms, 3, &o), SL_ETIMEDOUT);
    assert_int_equal(taken, 2); /* room for two: "c" was not taken */
    take_expect_ack(s, "a");
    take_expect_ack(s, "b");
    expect_none(s, 50);
    assert_int_equal(sl_publish_ex(e.p, e.topic, ms + 2, 1, &o), 0);
    assert_int_equal(taken, 1);
    take_expect_ack(s, "c");
    for (int i = 0; i < 3; i++)
        sl_msg_unref(ms[i]);
    env_close(&e);
}

static void blocking_publish_waits_until_consumer_drains(void **state)
{
    (void)state;
    env e;
    env_open(&e, "?buffer=2", NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, NULL, 1);
    pub1(e.p, e.topic, "a");
    pub1(e.p, e.topic, "b");
    bg_pub b;
    pthread_t t;
    start_bg(&b, &t, e.p, e.topic, "c", 0, -1);
    tl_sleep_ms(150);
    assert_int_equal(atomic_load(&b.returned), 0); /* still blocked: buffer full */
    take_expect_ack(s, "a");                       /* taking one makes room */
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    sl_msg_unref(b.m);
    take_expect_ack(s, "b");
    take_expect_ack(s, "c");
    env_close(&e);
}

static void wait_ack_publish_returns_only_after_ack(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *s1 = subscribe(e.sub, e.topic, NULL, 1);
    sl_subscription *s2 = subscribe(e.sub, e.topic, "g", 1);
    bg_pub b;
    pthread_t t;
    start_bg(&b, &t, e.p, e.topic, "w", SL_PUBLISH_WAIT_ACK, -1);
    sl_msg *m1 = take(s1);
    sl_msg *m2 = take(s2);
    assert_int_equal(sl_msg_ack(m1), 0);
    assert_int_equal(sl_msg_nack(m2), 0); /* a nack is not an ack */
    tl_sleep_ms(100);
    assert_int_equal(atomic_load(&b.returned), 0); /* group g has not acked */
    sl_msg *m3 = take(s2);
    assert_int_equal(sl_msg_ack(m3), 0);
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    sl_msg_unref(b.m);
    sl_msg_unref(m1);
    sl_msg_unref(m2);
    sl_msg_unref(m3);

    /* never acked: times out */
    sl_msg *m = mk("never");
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    o.flags = SL_PUBLISH_WAIT_ACK;
    o.timeout_ms = 200;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_publish_ex(e.p, e.topic, &m, 1, &o), SL_ETIMEDOUT);
    assert_true(tl_now_ms() - t0 >= 199);
    sl_msg_unref(m);
    env_close(&e);

    /* wait_ack=true on the URL makes every publish wait; no subscriber at
     * all means nothing to wait for */
    env_open(&e, NULL, "?wait_ack=true");
    pub1(e.p, e.topic, "nobody listens");
    s1 = subscribe(e.sub, e.topic, NULL, 1);
    start_bg(&b, &t, e.p, e.topic, "x", 0, -1);
    m1 = take(s1);
    tl_sleep_ms(50);
    assert_int_equal(atomic_load(&b.returned), 0);
    sl_msg_ack(m1);
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    sl_msg_unref(m1);
    sl_msg_unref(b.m);
    env_close(&e);
}

static void conflicting_bus_options_are_an_error(void **state)
{
    (void)state;
    char url[300];
    snprintf(url, sizeof url, "%s", bus_url(NULL));
    char u2[400];
    sl_publisher *p1, *p2;
    sl_subscriber *s;
    snprintf(u2, sizeof u2, "%s?persistent=true&buffer=16", url);
    assert_int_equal(sl_publisher_open(&p1, u2), 0);
    snprintf(u2, sizeof u2, "%s?persistent=false", url);
    assert_int_equal(sl_subscriber_open(&s, u2), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "persistent=true"));
    snprintf(u2, sizeof u2, "%s?buffer=32", url);
    assert_int_equal(sl_publisher_open(&p2, u2), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "buffer=16"));
    /* no options, or the same ones: fine */
    assert_int_equal(sl_subscriber_open(&s, url), 0);
    assert_true(sl_subscriber_features(s) & SL_FEAT_LATE_SUBSCRIBERS);
    snprintf(u2, sizeof u2, "%s?buffer=16&persistent=1", url);
    assert_int_equal(sl_publisher_open(&p2, u2), 0);
    sl_publisher_close(p2);
    sl_publisher_close(p1);
    sl_subscriber_close(s);
    /* once every handle is closed the bus is gone and may be reopened
     * with other options */
    snprintf(u2, sizeof u2, "%s?persistent=false", url);
    assert_int_equal(sl_publisher_open(&p1, u2), 0);
    sl_publisher_close(p1);
}

typedef struct bg_next {
    sl_subscription *s;
    atomic_int started;
    int rc;
} bg_next;

static void *bg_next_main(void *arg)
{
    bg_next *b = arg;
    sl_msg *m = NULL;
    atomic_store(&b->started, 1);
    b->rc = sl_next(b->s, &m, -1);
    if (m) {
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    return NULL;
}

static void close_while_publishers_and_subscribers_are_blocked(void **state)
{
    (void)state;
    env e;
    env_open(&e, "?buffer=1", NULL);
    sl_subscription *full = subscribe(e.sub, e.topic, NULL, 1);
    sl_subscription *never_acks = subscribe(e.sub, "w", NULL, 1);
    (void)full;
    (void)never_acks;
    pub1(e.p, e.topic, "fills the buffer");
    enum { NP = 3, NS = 3 };
    bg_pub bp[NP + 1];
    pthread_t tp[NP + 1], ts[NS];
    for (int i = 0; i < NP; i++) /* blocked on backpressure */
        start_bg(&bp[i], &tp[i], e.p, e.topic, "blocked", 0, -1);
    /* blocked waiting for an ack that never comes */
    start_bg(&bp[NP], &tp[NP], e.p, "w", "wait-ack", SL_PUBLISH_WAIT_ACK, -1);
    bg_next bn[NS] = {{.s = subscribe(e.sub, "idle", NULL, 1)},
                      {.s = subscribe(e.sub, "idle", "g", 1)},
                      {.s = subscribe(e.sub, "idle", "g", 3)}};
    for (int i = 0; i < NS; i++) {
        assert_int_equal(pthread_create(&ts[i], NULL, bg_next_main, &bn[i]), 0);
        while (!atomic_load(&bn[i].started))
            tl_sleep_ms(1);
    }
    /* A close may only overlap calls already inside; no API tells us the
     * threads are blocked, so give them time to get there. */
    tl_sleep_ms(300);
    for (int i = 0; i <= NP; i++)
        assert_int_equal(atomic_load(&bp[i].returned), 0);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_publisher_close(e.p), 0);
    for (int i = 0; i <= NP; i++) {
        pthread_join(tp[i], NULL);
        assert_int_equal(bp[i].rc, SL_ECLOSED);
        sl_msg_unref(bp[i].m);
    }
    assert_int_equal(sl_subscriber_close(e.sub), 0);
    for (int i = 0; i < NS; i++) {
        pthread_join(ts[i], NULL);
        assert_int_equal(bn[i].rc, SL_ECLOSED);
    }
    assert_true(tl_now_ms() - t0 < 10000);
}

static void messages_outlive_their_bus(void **state)
{
    (void)state;
    env e;
    env_open(&e, NULL, NULL);
    sl_subscription *s = subscribe(e.sub, e.topic, "g", 4);
    pub1(e.p, e.topic, "a");
    pub1(e.p, e.topic, "b");
    pub1(e.p, e.topic, "c");
    sl_msg *a = take(s), *b = take(s), *c = take(s);
    env_close(&e); /* the bus dies with three messages in hand */
    expect_text(a, "a");
    assert_int_equal(sl_msg_ack(a), 0);
    assert_int_equal(sl_msg_nack_delay(b, 10), 0);
    sl_msg_unref(a);
    sl_msg_unref(b);
    assert_string_equal(sl_msg_topic(c), "t");
    sl_msg_unref(c); /* never settled */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_subscription_gets_every_message),
        cmocka_unit_test(group_members_compete),
        cmocka_unit_test(nack_redelivers_before_later_messages),
        cmocka_unit_test(delayed_nack_comes_back_no_sooner_than_the_delay),
        cmocka_unit_test(deliver_at_holds_a_message_until_its_time),
        cmocka_unit_test(malformed_deliver_at_publishes_nothing),
        cmocka_unit_test(prefetch_window_holds_next_until_ack),
        cmocka_unit_test(dropped_delivery_is_given_back_at_once),
        cmocka_unit_test(closing_subscription_hands_unacked_back_to_group),
        cmocka_unit_test(persistent_bus_gives_late_subscribers_old_messages),
        cmocka_unit_test(nonblocking_publish_fails_with_eagain_and_publishes_nothing),
        cmocka_unit_test(nonblock_flag_and_timeout_on_a_blocking_publisher),
        cmocka_unit_test(timed_out_batch_says_how_many_were_taken),
        cmocka_unit_test(batch_larger_than_the_buffer_reaches_a_waiting_subscriber),
        cmocka_unit_test(blocking_publish_waits_until_consumer_drains),
        cmocka_unit_test(wait_ack_publish_returns_only_after_ack),
        cmocka_unit_test(conflicting_bus_options_are_an_error),
        cmocka_unit_test(close_while_publishers_and_subscribers_are_blocked),
        cmocka_unit_test(messages_outlive_their_bus),
    };
    return cmocka_run_group_tests_name("mem", tests, NULL, NULL);
}
