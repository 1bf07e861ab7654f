/*
 * conf_acks.c - conformance behaviours around acknowledgement: nack
 * redelivery (immediate and delayed), no ack -> no next, handler errors,
 * closing or cancelling subscriptions with messages in hand, publish
 * waiting for acks, late subscribers, and reconnecting after a restart.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

static sl_msg *recv1(sl_subscription *s)
{
    sl_msg *m = NULL;
    int rc = sl_next(s, &m, CONF_RECV_MS);
    if (rc)
        fail_msg("sl_next: %s: %s", sl_strerror(rc), sl_errmsg());
    return m;
}

/* watermill TestNoAck / nack: a nacked message comes back, unchanged. */
CONF_TEST(nack_redelivers)
{
    conf_run r;
    conf_run_open(&r, "nack", 1);
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, 1, 1), 0);
    sl_msg *m1 = recv1(r.s);
    assert_int_equal(sl_msg_deliveries(m1), 1);
    assert_int_equal(sl_msg_nack(m1), 0);
    assert_int_equal(sl_msg_state(m1), SL_MSG_NACKED);
    sl_msg *m2 = recv1(r.s);
    assert_string_equal(sl_msg_uuid(m1), sl_msg_uuid(m2));
    assert_true(sl_msg_equal(m1, m2));
    assert_int_equal(conf_msg_verify(m2, r.seed), 0);
    tl_assert_threads_ok();
    assert_true(sl_msg_deliveries(m2) >= 2);
    assert_int_equal(sl_msg_state(m2), SL_MSG_PENDING);
    assert_int_equal(sl_msg_ack(m2), 0);
    /* the first delivery stays nacked; acking it now is a state error */
    assert_int_equal(sl_msg_ack(m1), SL_ESTATE);
    sl_msg_unref(m1);
    sl_msg_unref(m2);
    conf_expect_nothing(r.s, CONF_QUIET_MS);
    conf_run_close(&r);
}

/* A delivery dropped without ack or nack is nacked (pubsub.h): it comes
 * back, and with a prefetch of 1 the subscription goes on. */
CONF_TEST(dropped_delivery_comes_back)
{
    conf_run r;
    conf_run_open(&r, "dropped", 1);
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, 2, 2), 0);
    sl_msg *m = recv1(r.s);
    assert_true(conf_msg_verify(m, r.seed) >= 0);
    sl_msg_unref(m);                            /* neither acked nor nacked */
    conf_receive_all(r.s, r.seed, 0, 2, false); /* both, the dropped one again */
    conf_run_close(&r);
}

/* watermill TestNoAck: on an ordered backend with prefetch 1 the next
 * message waits until the current one is acked. */
CONF_TEST(no_ack_no_next)
{
    conf_require(SL_FEAT_ORDERED, "only ordered backends hold the next message");
    conf_run r;
    conf_run_open(&r, "noack", 1);
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, 3, 3), 0);
    sl_msg *m = recv1(r.s);
    assert_int_equal(conf_msg_verify(m, r.seed), 0);
    sl_msg *none = NULL;
    assert_int_equal(sl_next(r.s, &none, CONF_QUIET_MS), SL_ETIMEDOUT);
    assert_null(none);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    m = recv1(r.s);
    assert_int_equal(conf_msg_verify(m, r.seed), 1);
    assert_int_equal(sl_next(r.s, &none, 100), SL_ETIMEDOUT);
    assert_int_equal(sl_msg_nack(m), 0);
    sl_msg_unref(m);
    m = recv1(r.s); /* a nack also frees the window: the same one again */
    assert_int_equal(conf_msg_verify(m, r.seed), 1);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    tl_assert_threads_ok();
    conf_receive_all(r.s, r.seed, 2, 1, true);
    conf_run_close(&r);
}

/* watermill TestContinueAfterErrors: a handler that fails (nacks) every
 * third message the first time still sees every message acked in the end. */
CONF_TEST(continue_after_handler_errors)
{
    size_t n = tl_scaled(1000, 30);
    conf_run r;
    conf_run_open(&r, "errors", 8);
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, n, 20), 0);
    unsigned char *acked = calloc(n, 1);
    assert_non_null(acked);
    size_t done = 0, failures = 0;
    while (done < n) {
        sl_msg *m = recv1(r.s);
        long i = conf_msg_verify(m, r.seed);
        tl_assert_threads_ok();
        assert_true(i >= 0 && (size_t)i < n);
        assert_false(acked[i]);
        if (i % 3 == 0 && sl_msg_deliveries(m) == 1) {
            assert_int_equal(sl_msg_nack(m), 0);
            failures++;
        } else {
            assert_int_equal(sl_msg_ack(m), 0);
            acked[i] = 1;
            done++;
        }
        sl_msg_unref(m);
    }
    assert_int_equal(failures, (n + 2) / 3);
    conf_expect_nothing(r.s, CONF_QUIET_MS);
    free(acked);
    conf_run_close(&r);
}

/* watermill TestContinueAfterSubscribeClose: a group consumed by a series
 * of short-lived subscriptions (each closed after a few messages, the last
 * one left unacked) receives every message. */
CONF_TEST(continue_after_subscription_close)
{
    conf_require(SL_FEAT_CONSUMER_GROUPS, "resuming needs a group");
    size_t n = tl_scaled(1000, 50), chunk = n / 10;
    uint64_t seed = conf_seed();
    const char *topic = conf_name("resume"), *group = conf_name("g");
    sl_subscriber *first = conf_sub();
    sl_subscription *s = conf_subscribe(first, topic, group, 1);
    sl_publisher *pub = conf_pub();
    assert_int_equal(conf_publish_range(pub, topic, seed, 0, n, 25), 0);
    unsigned char *acked = calloc(n, 1);
    assert_non_null(acked);
    size_t done = 0;
    int rounds = 0;
    sl_subscriber *sub = first;
    while (done < n) {
        assert_true(++rounds < 1000);
        for (size_t k = 0; k <= chunk && done < n; k++) {
            sl_msg *m = recv1(s);
            long i = conf_msg_verify(m, seed);
            tl_assert_threads_ok();
            assert_true(i >= 0 && (size_t)i < n);
            if (k == chunk) { /* keep the last one unacked across the close */
                sl_msg_unref(m);
                break;
            }
            if (acked[i])
                assert_true(sl_msg_deliveries(m) > 1);
            else
                done++;
            acked[i] = 1;
            assert_int_equal(sl_msg_ack(m), 0);
            sl_msg_unref(m);
        }
        assert_int_equal(sl_subscription_close(s), 0);
        if (sub != first)
            assert_int_equal(sl_subscriber_close(sub), 0);
        if (done < n) {
            sub = conf_sub();
            s = conf_subscribe(sub, topic, group, 1 + (unsigned)rounds % 3);
        }
    }
    free(acked);
    sl_publisher_close(pub);
    sl_subscriber_close(first);
}

/* Cancelling a subscription holding unacked messages hands them back: the
 * next member of the group receives exactly the ones not acked. */
CONF_TEST(cancel_subscription_loses_nothing)
{
    conf_require(SL_FEAT_CONSUMER_GROUPS, "handing back needs a group");
    size_t n = tl_scaled(200, 40);
    uint64_t seed = conf_seed();
    const char *topic = conf_name("cancel"), *group = conf_name("g");
    sl_subscriber *sub = conf_sub();
    sl_subscription *a = conf_subscribe(sub, topic, group, 10);
    sl_publisher *pub = conf_pub();
    assert_int_equal(conf_publish_range(pub, topic, seed, 0, n, 10), 0);
    unsigned char *acked = calloc(n, 1);
    assert_non_null(acked);
    sl_msg *held[10];
    int nheld = 0;
    for (int k = 0; k < 10; k++) {
        sl_msg *m = recv1(a);
        long i = conf_msg_verify(m, seed);
        tl_assert_threads_ok();
        assert_true(i >= 0 && (size_t)i < n);
        if (k % 2) {
            assert_int_equal(sl_msg_ack(m), 0);
            acked[i] = 1;
            sl_msg_unref(m);
        } else {
            held[nheld++] = m; /* still in hand, unacked, while we cancel */
        }
    }
    assert_int_equal(sl_subscription_close(a), 0);
    for (int k = 0; k < nheld; k++)
        sl_msg_unref(held[k]);
    sl_subscription *b = conf_subscribe(sub, topic, group, 16);
    size_t want = n - 5, got = 0;
    while (got < want) {
        sl_msg *m = recv1(b);
        long i = conf_msg_verify(m, seed);
        tl_assert_threads_ok();
        assert_true(i >= 0 && (size_t)i < n);
        if (acked[i] == 1)
            fail_msg("message %ld was acked before the cancel but came back", i);
        if (acked[i] == 0)
            got++;
        else
            assert_true(sl_msg_deliveries(m) > 1);
        acked[i] = 2;
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    conf_expect_nothing(b, CONF_QUIET_MS);
    free(acked);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

/* sl_msg_nack_delay: the message comes back no sooner than the delay. */
CONF_TEST(delayed_nack)
{
    conf_require(SL_FEAT_DELAYED_NACK, "needs delayed nack");
    conf_run r;
    conf_run_open(&r, "delay", 1);
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, 1, 1), 0);
    sl_msg *m = recv1(r.s);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_msg_nack_delay(m, 400), 0);
    sl_msg_unref(m);
    m = recv1(r.s);
    int64_t waited = tl_now_ms() - t0;
    assert_int_equal(conf_msg_verify(m, r.seed), 0);
    tl_assert_threads_ok();
    if (waited < 399)
        fail_msg("redelivered after %lld ms, before the 400 ms delay", (long long)waited);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    conf_run_close(&r);
}

typedef struct wait_pub {
    sl_publisher *pub;
    const char *topic;
    sl_msg *m;
    int timeout_ms;
    atomic_int returned;
    int rc;
} wait_pub;

static void *publish_wait(void *arg)
{
    wait_pub *w = arg;
    sl_publish_opts o;
    sl_publish_opts_init(&o);
    o.flags = SL_PUBLISH_WAIT_ACK;
    o.timeout_ms = w->timeout_ms;
    w->rc = sl_publish_ex(w->pub, w->topic, &w->m, 1, &o);
    atomic_store(&w->returned, 1);
    return NULL;
}

/* SL_PUBLISH_WAIT_ACK returns only after the subscriber acked (a nack
 * does not count), and times out when nobody acks. */
CONF_TEST(publish_wait_ack)
{
    conf_require(SL_FEAT_WAIT_ACK, "needs SL_PUBLISH_WAIT_ACK");
    conf_run r;
    conf_run_open(&r, "waitack", 1);
    wait_pub w = {.pub = r.pub, .topic = r.topic, .m = conf_msg(r.seed, 0), .timeout_ms = -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, publish_wait, &w), 0);
    sl_msg *m = recv1(r.s);
    assert_int_equal(sl_msg_nack(m), 0);
    sl_msg_unref(m);
    m = recv1(r.s);
    tl_sleep_ms(100);
    assert_int_equal(atomic_load(&w.returned), 0); /* not acked yet */
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    sl_msg_unref(w.m);

    /* nobody acks: the publisher gives up after its timeout */
    wait_pub w2 = {.pub = r.pub, .topic = r.topic, .m = conf_msg(r.seed, 1), .timeout_ms = 300};
    int64_t t0 = tl_now_ms();
    publish_wait(&w2);
    int64_t took = tl_now_ms() - t0;
    assert_int_equal(w2.rc, SL_ETIMEDOUT);
    assert_true(took >= 295 && took < 10000);
    sl_msg_unref(w2.m);
    conf_run_close(&r);
}

/* watermill TestSubscribeNewTopic... persistent: messages published before
 * anyone subscribed reach a subscription that starts at the earliest; one
 * that starts at the latest gets only new ones. */
CONF_TEST(late_subscriber_receives_old)
{
    conf_require(SL_FEAT_LATE_SUBSCRIBERS, "needs a backend that keeps messages");
    size_t n = tl_scaled(1000, 20);
    uint64_t seed = conf_seed();
    const char *topic = conf_name("late");
    sl_publisher *pub = conf_pub();
    assert_int_equal(conf_publish_range(pub, topic, seed, 0, n, 50), 0);
    sl_subscriber *sub = conf_sub();
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.start = SL_START_EARLIEST;
    o.prefetch = 32;
    sl_subscription *early = NULL, *late = NULL;
    assert_int_equal(sl_subscribe(sub, topic, &o, &early), 0);
    o.start = SL_START_LATEST;
    assert_int_equal(sl_subscribe(sub, topic, &o, &late), 0);
    conf_receive_all(early, seed, 0, n, (conf_features() & SL_FEAT_ORDERED) != 0);
    assert_int_equal(conf_publish_range(pub, topic, seed, n, 1, 1), 0);
    conf_receive_all(late, seed, n, 1, true);
    conf_receive_all(early, seed, n, 1, true);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}
