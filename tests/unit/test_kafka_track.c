/*
 * test_kafka_track.c - the kafka:// per-partition offset tracker
 * (src/backends/kafka/kafka_track.c): the commit position never passes an
 * unacked offset whatever the ack order, gaps in offsets, ring growth; and
 * the kafka:// URL errors that need no cluster (bad options, unreachable
 * cluster within the timeout).
 */
#include <stdlib.h>
#include <string.h>

#include "backends/kafka/kafka_int.h"
#include "testlib.h"

static void position_waits_for_the_oldest_unacked(void **state)
{
    (void)state;
    sli_ktrack t;
    sli_ktrack_init(&t, 10);
    assert_int_equal(sli_ktrack_position(&t), 10);
    for (int64_t o = 10; o < 15; o++)
        assert_int_equal(sli_ktrack_add(&t, o), 0);
    assert_int_equal(sli_ktrack_position(&t), 10);
    assert_int_equal(sli_ktrack_ack(&t, 12), 0); /* out of order: no move */
    assert_int_equal(sli_ktrack_ack(&t, 14), 0);
    assert_int_equal(sli_ktrack_position(&t), 10);
    assert_int_equal(sli_ktrack_ack(&t, 10), 1);
    assert_int_equal(sli_ktrack_position(&t), 11);
    assert_int_equal(sli_ktrack_ack(&t, 11), 1); /* 11, 12 done: 13 is next unacked */
    assert_int_equal(sli_ktrack_position(&t), 13);
    assert_int_equal(sli_ktrack_ack(&t, 12), SL_ENOENT); /* acked twice */
    assert_int_equal(sli_ktrack_ack(&t, 99), SL_ENOENT);
    assert_int_equal(sli_ktrack_ack(&t, 13), 1);
    assert_int_equal(sli_ktrack_position(&t), 15); /* nothing outstanding: after the last */
    assert_int_equal(sli_ktrack_outstanding(&t), 0);
    assert_int_equal(sli_ktrack_add(&t, 14), SL_EINVAL); /* going back is refused */
    sli_ktrack_free(&t);
}

static void acked_list_names_the_acked_offsets_past_the_position(void **state)
{
    (void)state;
    sli_ktrack t;
    sli_ktrack_init(&t, 0);
    for (int64_t o = 0; o < 10; o++)
        assert_int_equal(sli_ktrack_add(&t, o), 0);
    assert_int_equal(sli_ktrack_add(&t, 20), 0);
    int64_t acks[] = {2, 3, 4, 6, 9, 20};
    for (size_t i = 0; i < sizeof acks / sizeof acks[0]; i++)
        assert_int_equal(sli_ktrack_ack(&t, acks[i]), 0);
    char buf[64];
    assert_int_equal(sli_ktrack_acked(&t, buf, sizeof buf), strlen("2-4,6,9,20"));
    assert_string_equal(buf, "2-4,6,9,20");
    assert_int_equal(sli_ktrack_acked(&t, buf, 6), 5); /* what fits, whole items only */
    assert_string_equal(buf, "2-4,6");
    sli_ktrack_free(&t);
}

/* The set a subscription keeps of what it acked across rebalances: ranges
 * merge when they overlap or touch, membership is exact at the edges, and
 * acked offsets past a tracker's position join the set. */
static void ranges_merge_and_answer_membership(void **state)
{
    (void)state;
    sli_kranges r = {0};
    assert_int_equal(sli_kranges_add(&r, 10, 12), 0);
    assert_int_equal(sli_kranges_add(&r, 20, 20), 0);
    assert_int_equal(sli_kranges_add(&r, 5, 5), 0);
    assert_int_equal(r.n, 3);
    assert_false(sli_kranges_has(&r, 4));
    assert_true(sli_kranges_has(&r, 5));
    assert_false(sli_kranges_has(&r, 9));
    assert_true(sli_kranges_has(&r, 10) && sli_kranges_has(&r, 12));
    assert_false(sli_kranges_has(&r, 13) || sli_kranges_has(&r, 19) || sli_kranges_has(&r, 21));
    assert_int_equal(sli_kranges_add(&r, 13, 14), 0); /* touches 10-12 */
    assert_int_equal(r.n, 3);
    assert_true(sli_kranges_has(&r, 14));
    assert_int_equal(sli_kranges_add(&r, 6, 19), 0); /* bridges 5, 10-14 and 20 */
    assert_int_equal(r.n, 1);
    assert_int_equal(r.r[0], 5);
    assert_int_equal(r.r[1], 20);
    assert_int_equal(sli_kranges_add(&r, 0, -1), 0); /* empty: nothing */
    assert_int_equal(r.n, 1);
    sli_ktrack t;
    sli_ktrack_init(&t, 30);
    for (int64_t o = 30; o < 40; o++)
        assert_int_equal(sli_ktrack_add(&t, o), 0);
    assert_int_equal(sli_ktrack_ack(&t, 33), 0);
    assert_int_equal(sli_ktrack_ack(&t, 34), 0);
    assert_int_equal(sli_ktrack_ack(&t, 38), 0);
    assert_int_equal(sli_ktrack_acked_into(&t, &r), 0);
    assert_int_equal(r.n, 3); /* 5-20, 33-34, 38 */
    assert_true(sli_kranges_has(&r, 33) && sli_kranges_has(&r, 34) && sli_kranges_has(&r, 38));
    assert_false(sli_kranges_has(&r, 30) || sli_kranges_has(&r, 35) || sli_kranges_has(&r, 39));
    sli_ktrack_free(&t);
    sli_kranges_free(&r);
    for (int64_t o = 0; o < 2 * SLI_KRANGES_MAX; o += 2) /* bounded: the rest is forgotten */
        assert_int_equal(sli_kranges_add(&r, o, o), 0);
    assert_int_equal(r.n, SLI_KRANGES_MAX);
    assert_true(sli_kranges_has(&r, 0));
    sli_kranges_free(&r);
}

static void gaps_and_growth(void **state)
{
    (void)state;
    sli_ktrack t;
    sli_ktrack_init(&t, 0);
    enum { N = 5000 };
    for (int64_t i = 0; i < N; i++)
        assert_int_equal(sli_ktrack_add(&t, i * 3), 0); /* gaps: compaction, markers */
    /* ack in a scrambled order; the position is always the smallest unacked */
    unsigned char *acked = calloc(N, 1);
    assert_non_null(acked);
    size_t lowest = 0;
    for (size_t k = 0; k < N; k++) {
        size_t i = (k * 7919) % N;
        int rc = sli_ktrack_ack(&t, (int64_t)i * 3);
        assert_true(rc == 0 || rc == 1);
        acked[i] = 1;
        while (lowest < N && acked[lowest])
            lowest++;
        int64_t want = lowest < N ? (int64_t)lowest * 3 : (int64_t)(N - 1) * 3 + 1;
        assert_int_equal(sli_ktrack_position(&t), want);
        assert_int_equal(sli_ktrack_outstanding(&t) == 0, lowest == N);
    }
    free(acked);
    sli_ktrack_free(&t);
}

static void bad_urls_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "kafka://",                                     /* no host */
        "kafka://u:p@127.0.0.1:9092/",                  /* credentials */
        "kafka://127.0.0.1:9092/topic",                 /* path */
        "kafka://127.0.0.1:9092/?bootstrap=nohost",     /* not host:port */
        "kafka://127.0.0.1:9092/?bootstrap=h:1,,h:2",   /* empty entry */
        "kafka://127.0.0.1:9092/?bootstrap=h:99999",    /* port */
        "kafka://127.0.0.1:9092/?start=middle",         /* enum */
        "kafka://127.0.0.1:9092/?start=offset",         /* offset missing */
        "kafka://127.0.0.1:9092/?start_time=5",         /* without start=time */
        "kafka://127.0.0.1:9092/?timeout=1ms",          /* too short */
        "kafka://127.0.0.1:9092/?session_timeout=10ms", /* too short */
        "kafka://127.0.0.1:9092/?key=",                 /* empty key */
        "kafka://127.0.0.1:9092/?nope=1",               /* unknown */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_publisher *p = NULL;
        int rc = sl_publisher_open(&p, bad[i]);
        if (rc != SL_EINVAL && rc != SL_EBADOPT)
            fail_msg("%s: %d (%s)", bad[i], rc, sl_errmsg());
        assert_true(strlen(sl_errmsg()) > 0);
        assert_null(p);
    }
}

static void unreachable_cluster_fails_within_the_timeout(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__)
    skip(); /* librdkafka's threads (C11 thrd_create) crash under ThreadSanitizer */
#endif
    /* port 1 on loopback: nothing listens there */
    const char *url = "kafka://127.0.0.1:1/?timeout=800ms";
    int64_t t0 = tl_now_ms();
    sl_publisher *p = NULL;
    assert_int_equal(sl_publisher_open(&p, url), SL_ECONN);
    sl_subscriber *s = NULL;
    assert_int_equal(sl_subscriber_open(&s, url), SL_ECONN);
    assert_non_null(strstr(sl_errmsg(), "127.0.0.1:1"));
    assert_true(tl_now_ms() - t0 < 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(position_waits_for_the_oldest_unacked),
        cmocka_unit_test(acked_list_names_the_acked_offsets_past_the_position),
        cmocka_unit_test(ranges_merge_and_answer_membership),
        cmocka_unit_test(gaps_and_growth),
        cmocka_unit_test(bad_urls_are_refused),
        cmocka_unit_test(unreachable_cluster_fails_within_the_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
