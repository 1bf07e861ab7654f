/*
 * conf_basic.c - conformance behaviours of plain publish/subscribe:
 * many messages byte-for-byte, binary payloads, batches, fan-out, topic
 * isolation, many topics, order, publisher close, timeouts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

static bool ordered(void)
{
    return (conf_features() & SL_FEAT_ORDERED) != 0;
}

/* watermill TestPublishSubscribe: every message arrives, payload and
 * metadata byte-for-byte (binary payloads with NUL bytes). */
CONF_TEST(publish_subscribe)
{
    size_t n = tl_scaled(10000, 100);
    conf_run r;
    conf_run_open(&r, "pubsub", 64);
    conf_bg bg;
    conf_bg_publish(&bg, r.pub, r.topic, r.seed, 0, n, 1);
    conf_receive_all(r.s, r.seed, 0, n, false);
    conf_bg_join(&bg);
    conf_expect_nothing(r.s, CONF_QUIET_MS);
    assert_int_equal(sl_publisher_close(r.pub), 0);
    assert_int_equal(sl_subscription_close(r.s), 0);
    assert_int_equal(sl_subscriber_close(r.sub), 0);
}

/* Edge payloads: empty, every byte value, only NULs, 1 MiB; metadata with
 * many keys, UTF-8 and an empty value. */
CONF_TEST(binary_payloads)
{
    const char *topic = conf_name("binary");
    sl_subscriber *sub = conf_sub();
    sl_subscription *s = conf_subscribe(sub, topic, NULL, 8);
    sl_publisher *pub = conf_pub();
    enum { NP = 4 };
    size_t lens[NP] = {0, 256, 1000, 1 << 20};
    unsigned char *bufs[NP];
    sl_msg *ms[NP];
    for (int i = 0; i < NP; i++) {
        bufs[i] = malloc(lens[i] + 1);
        assert_non_null(bufs[i]);
        for (size_t j = 0; j < lens[i]; j++)
            bufs[i][j] = i == 2 ? 0 : (unsigned char)(j * 131 + (size_t)i);
        assert_int_equal(sl_msg_new(&ms[i], bufs[i], lens[i]), 0);
        for (int k = 0; k < 40; k++) {
            char key[32], val[64];
            snprintf(key, sizeof key, "key-%d", k);
            snprintf(val, sizeof val, "v\xc3\xa9%d-%d", i, k);
            assert_int_equal(sl_msg_meta_set(ms[i], key, val), 0);
        }
        assert_int_equal(sl_msg_meta_set(ms[i], "empty", ""), 0);
    }
    assert_int_equal(sl_publish(pub, topic, ms, NP), 0);
    for (int i = 0; i < NP; i++) {
        sl_msg *m = NULL;
        assert_int_equal(sl_next(s, &m, CONF_RECV_MS), 0);
        int k;
        for (k = 0; k < NP; k++)
            if (strcmp(sl_msg_uuid(m), sl_msg_uuid(ms[k])) == 0)
                break;
        assert_true(k < NP);
        assert_true(sl_msg_equal(m, ms[k]));
        size_t len;
        const void *p = sl_msg_payload(m, &len);
        assert_int_equal(len, lens[k]);
        if (len)
            assert_memory_equal(p, bufs[k], len);
        assert_string_equal(sl_msg_meta_get(m, "empty"), "");
        assert_int_equal(sl_msg_meta_count(m), 41);
        assert_string_equal(sl_msg_topic(m), topic);
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    for (int i = 0; i < NP; i++) {
        sl_msg_unref(ms[i]);
        free(bufs[i]);
    }
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

/* One sl_publish of many messages delivers all of them (in order where
 * the backend is ordered). */
CONF_TEST(batch_publish)
{
    size_t n = tl_scaled(2000, 50);
    conf_run r;
    conf_run_open(&r, "batch", 16);
    conf_bg bg;
    conf_bg_publish(&bg, r.pub, r.topic, r.seed, 0, n, 100);
    conf_receive_all(r.s, r.seed, 0, n, ordered());
    conf_bg_join(&bg);
    conf_run_close(&r);
}

/* Several subscriptions without a group each receive every message. */
CONF_TEST(fan_out)
{
    enum { NS = 3 };
    size_t n = tl_scaled(500, 20);
    uint64_t seed = conf_seed();
    const char *topic = conf_name("fanout");
    sl_subscriber *sub = conf_sub();
    sl_subscription *s[NS];
    for (int i = 0; i < NS; i++)
        s[i] = conf_subscribe(sub, topic, NULL, 8);
    sl_publisher *pub = conf_pub();
    assert_int_equal(conf_publish_range(pub, topic, seed, 0, n, 10), 0);
    tl_assert_threads_ok();
    for (int i = 0; i < NS; i++) {
        conf_receive_all(s[i], seed, 0, n, ordered());
        conf_expect_nothing(s[i], i == 0 ? CONF_QUIET_MS : 10);
    }
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

/* watermill TestTopic: a subscription never sees another topic's messages. */
CONF_TEST(topic_isolation)
{
    size_t n = tl_scaled(200, 10);
    uint64_t seed_a = conf_seed(), seed_b = conf_seed() + 1;
    const char *ta = conf_name("iso-a"), *tb = conf_name("iso-b");
    sl_subscriber *sub = conf_sub();
    sl_subscription *sa = conf_subscribe(sub, ta, NULL, 8);
    sl_subscription *sb = conf_subscribe(sub, tb, NULL, 8);
    sl_publisher *pub = conf_pub();
    assert_int_equal(conf_publish_range(pub, ta, seed_a, 0, n, 7), 0);
    assert_int_equal(conf_publish_range(pub, tb, seed_b, 0, n / 2, 7), 0);
    tl_assert_threads_ok();
    conf_receive_all(sa, seed_a, 0, n, ordered());
    conf_receive_all(sb, seed_b, 0, n / 2, ordered());
    conf_expect_nothing(sa, CONF_QUIET_MS);
    conf_expect_nothing(sb, 10);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

/* watermill TestSubscribeMultipleTopics (many topics at once). */
CONF_TEST(many_topics)
{
    size_t nt = tl_scaled(40, 5), per = tl_scaled(100, 5);
    uint64_t seed = conf_seed();
    char **names = calloc(nt, sizeof *names);
    sl_subscription **subs = calloc(nt, sizeof *subs);
    assert_true(names && subs);
    sl_subscriber *sub = conf_sub();
    for (size_t i = 0; i < nt; i++) {
        names[i] = strdup(conf_name("many"));
        subs[i] = conf_subscribe(sub, names[i], NULL, 16);
    }
    sl_publisher *pub = conf_pub();
    for (size_t k = 0; k < per; k += 10)
        for (size_t i = 0; i < nt; i++) {
            size_t cnt = per - k < 10 ? per - k : 10;
            assert_int_equal(conf_publish_range(pub, names[i], seed + i, k, cnt, 5), 0);
        }
    tl_assert_threads_ok();
    for (size_t i = 0; i < nt; i++)
        conf_receive_all(subs[i], seed + i, 0, per, ordered());
    for (size_t i = 0; i < nt; i++)
        conf_expect_nothing(subs[i], i == 0 ? CONF_QUIET_MS : 5);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
    for (size_t i = 0; i < nt; i++)
        free(names[i]);
    free(names);
    free(subs);
}

/* watermill TestPublishSubscribeInOrder: one publisher, one subscriber
 * with prefetch 1 sees the exact publish order. */
CONF_TEST(order_preserved)
{
    conf_require(SL_FEAT_ORDERED, "order is guaranteed only on ordered backends");
    size_t n = tl_scaled(10000, 100);
    conf_run r;
    conf_run_open(&r, "order", 1);
    conf_bg bg;
    conf_bg_publish(&bg, r.pub, r.topic, r.seed, 0, n, 3);
    conf_receive_all(r.s, r.seed, 0, n, true);
    conf_bg_join(&bg);
    conf_run_close(&r);
}

/* watermill TestPublisherClose: messages published right before the
 * publisher closes are all delivered; a new publisher can go on. */
CONF_TEST(publisher_close)
{
    size_t n = tl_scaled(2000, 50);
    conf_run r;
    conf_run_open(&r, "pubclose", 32);
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, n, 20), 0);
    assert_int_equal(sl_publisher_close(r.pub), 0);
    r.pub = conf_pub();
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, n, 10, 1), 0);
    assert_int_equal(sl_publisher_close(r.pub), 0);
    tl_assert_threads_ok();
    conf_receive_all(r.s, r.seed, 0, n + 10, ordered());
    sl_subscriber_close(r.sub);
}

/* sl_next on an idle subscription times out (polls with 0) and reports
 * SL_ETIMEDOUT, then still works. */
CONF_TEST(next_times_out)
{
    const char *topic = conf_name("timeout");
    sl_subscriber *sub = conf_sub();
    sl_subscription *s = conf_subscribe(sub, topic, NULL, 1);
    sl_msg *m = (sl_msg *)1;
    assert_int_equal(sl_next(s, &m, 0), SL_ETIMEDOUT);
    assert_null(m);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_next(s, &m, 200), SL_ETIMEDOUT);
    assert_true(tl_now_ms() - t0 >= 190);
    uint64_t seed = conf_seed();
    sl_publisher *pub = conf_pub();
    assert_int_equal(conf_publish_range(pub, topic, seed, 0, 1, 1), 0);
    conf_receive_all(s, seed, 0, 1, true);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}
