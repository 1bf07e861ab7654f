/*
 * conf_batch.c - conformance behaviours of the batch calls: sl_next_batch
 * hands out what sl_next would (each message once, in order on ordered
 * backends, within the prefetch window) and sl_msg_ack_batch settles them
 * like sl_msg_ack on each. Every backend offers both (natively or by the
 * generic loop over sl_next).
 */
#include <stdlib.h>

#include "conf.h"

enum { BATCH_N = 50, BATCH_MAX = 16 };

/* Take up to max from s (waiting CONF_RECV_MS for the first), asserting 0. */
static size_t take(sl_subscription *s, sl_msg **out, size_t max)
{
    size_t got = 99;
    int rc = sl_next_batch(s, out, max, &got, CONF_RECV_MS);
    if (rc)
        fail_msg("sl_next_batch: %s: %s", sl_strerror(rc), sl_errmsg());
    assert_true(got >= 1 && got <= max);
    return got;
}

/* Every message arrives exactly once through batches; acked batches are
 * never redelivered. */
CONF_TEST(next_batch_receives_each_once)
{
    conf_run r;
    conf_run_open(&r, "nbatch", 64);
    bool ordered = conf_features() & SL_FEAT_ORDERED;
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, BATCH_N, BATCH_N), 0);
    unsigned char seen[BATCH_N] = {0};
    size_t total = 0;
    long expect = 0;
    while (total < BATCH_N) {
        sl_msg *b[BATCH_MAX];
        size_t got = take(r.s, b, BATCH_MAX);
        for (size_t j = 0; j < got; j++) {
            long i = conf_msg_verify(b[j], r.seed);
            tl_assert_threads_ok();
            assert_true(i >= 0 && i < BATCH_N);
            assert_int_equal(sl_msg_deliveries(b[j]), 1);
            assert_false(seen[i]);
            if (ordered)
                assert_int_equal(i, expect);
            seen[i] = 1;
            expect = i + 1;
            total++;
        }
        assert_int_equal(sl_msg_ack_batch(b, got), 0);
        for (size_t j = 0; j < got; j++) {
            assert_int_equal(sl_msg_state(b[j]), SL_MSG_ACKED);
            sl_msg_unref(b[j]);
        }
    }
    conf_expect_nothing(r.s, CONF_QUIET_MS);
    conf_run_close(&r);
}

/* A batch stays within the prefetch window, a poll with the window full
 * times out, and a batch that is nacked comes back whole. */
CONF_TEST(next_batch_respects_prefetch_and_nack)
{
    conf_require(SL_FEAT_ORDERED, "only ordered backends hold messages past the window");
    conf_run r;
    conf_run_open(&r, "nbwin", 4);
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, 10, 10), 0);
    sl_msg *b[BATCH_MAX], *c[BATCH_MAX];
    size_t got = 0, n = 0;
    while (n < 4) { /* some backends hand over fewer at once; fill the window */
        got = take(r.s, b + n, 4 - n);
        n += got;
    }
    for (size_t j = 0; j < n; j++)
        assert_int_equal(conf_msg_verify(b[j], r.seed), (long)j);
    assert_int_equal(sl_next_batch(r.s, c, BATCH_MAX, &got, 100), SL_ETIMEDOUT);
    assert_int_equal(got, 0);
    for (size_t j = n; j-- > 0;) /* last first: where nacks go back to the head */
        assert_int_equal(sl_msg_nack(b[j]), 0);
    /* nacked (not acked): the batch call reports the state error and
     * leaves them nacked */
    assert_int_equal(sl_msg_ack_batch(b, n), SL_ESTATE);
    /* Every nacked message comes back (as a redelivery), and so do the six
     * never delivered. A broker may hand out one of those before a nacked one
     * is back at the head (RabbitMQ requeues "in place if possible"), so only
     * "each once, the nacked ones redelivered" is checked, not their order. */
    size_t seen = 0;
    unsigned char back[10] = {0};
    while (seen < 10) {
        got = take(r.s, c, 4);
        for (size_t j = 0; j < got; j++) {
            long i = conf_msg_verify(c[j], r.seed);
            assert_true(i >= 0 && i < 10 && !back[i]);
            back[i] = 1;
            if (i < 4)
                assert_true(sl_msg_deliveries(c[j]) >= 2);
        }
        assert_int_equal(sl_msg_ack_batch(c, got), 0);
        for (size_t j = 0; j < got; j++)
            sl_msg_unref(c[j]);
        seen += got;
    }
    for (size_t j = 0; j < n; j++) {
        assert_int_equal(sl_msg_state(b[j]), SL_MSG_NACKED);
        sl_msg_unref(b[j]);
    }
    conf_expect_nothing(r.s, CONF_QUIET_MS);
    conf_run_close(&r);
}

/* Argument errors change nothing. */
CONF_TEST(next_batch_rejects_bad_arguments)
{
    conf_run r;
    conf_run_open(&r, "nbargs", 8);
    sl_msg *b[2] = {NULL, NULL};
    size_t got = 7;
    assert_int_equal(sl_next_batch(r.s, b, 0, &got, 0), SL_EINVAL);
    assert_int_equal(got, 0);
    assert_int_equal(sl_next_batch(r.s, NULL, 2, &got, 0), SL_EINVAL);
    assert_int_equal(sl_next_batch(r.s, b, 2, NULL, 0), SL_EINVAL);
    assert_int_equal(sl_next_batch(NULL, b, 2, &got, 0), SL_EINVAL);
    assert_int_equal(sl_next_batch(r.s, b, 2, &got, 0), SL_ETIMEDOUT);
    assert_int_equal(got, 0);
    assert_int_equal(conf_publish_range(r.pub, r.topic, r.seed, 0, 1, 1), 0);
    conf_receive_all(r.s, r.seed, 0, 1, true);
    conf_run_close(&r);
}
