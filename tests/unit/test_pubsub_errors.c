/*
 * test_pubsub_errors.c - bad input through the public pub/sub API gets a
 * clear error code and a message naming the problem, never a crash:
 * unknown schemes and options, malformed URLs, bad topics, NULL arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static void expect_msg(const char *needle)
{
    if (!strstr(sl_errmsg(), needle))
        fail_msg("sl_errmsg() '%s' does not mention '%s'", sl_errmsg(), needle);
}

static void unknown_scheme_is_named_in_the_error(void **state)
{
    (void)state;
    sl_publisher *p = (sl_publisher *)1;
    assert_int_equal(sl_publisher_open(&p, "nosuchbackend://x"), SL_ENOTSUP);
    assert_null(p);
    expect_msg("'nosuchbackend'");
    expect_msg("mem"); /* lists the known ones */
    sl_subscriber *s = (sl_subscriber *)1;
    assert_int_equal(sl_subscriber_open(&s, "zzz://"), SL_ENOTSUP);
    assert_null(s);
    expect_msg("'zzz'");
    unsigned f = 0;
    assert_int_equal(sl_scheme_features("zzz", &f), SL_ENOTSUP);
    assert_int_equal(sl_scheme_features("mem", &f), 0);
    assert_true(f & SL_FEAT_CONSUMER_GROUPS);
}

static void malformed_url_is_rejected(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "mem",
                         "MEM://x",
                         "mem://a b",
                         "mem://x#f",
                         "mem://x?a",
                         "mem://x?a=1&a=2",
                         "mem://x:0",
                         "mem://x/%zz",
                         "mem://x?a=%00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_publisher *p = (sl_publisher *)1;
        sl_subscriber *s = (sl_subscriber *)1;
        assert_int_equal(sl_publisher_open(&p, bad[i]), SL_EINVAL);
        assert_null(p);
        expect_msg("sl_publisher_open");
        assert_int_equal(sl_subscriber_open(&s, bad[i]), SL_EINVAL);
        assert_null(s);
        expect_msg("URL");
    }
}

static void unknown_option_is_named_in_the_error(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *s;
    assert_int_equal(sl_publisher_open(&p, "mem://e1?bogus=1"), SL_EBADOPT);
    expect_msg("'bogus'");
    assert_int_equal(sl_subscriber_open(&s, "mem://e1?persistent=false&frobnicate=yes"),
                     SL_EBADOPT);
    expect_msg("'frobnicate'");
    /* a publisher option is unknown to a subscriber */
    assert_int_equal(sl_subscriber_open(&s, "mem://e1?block=false"), SL_EBADOPT);
    expect_msg("'block'");
    assert_int_equal(sl_publisher_open(&p, "mem://e1?persistent=maybe"), SL_EBADOPT);
    expect_msg("persistent=maybe");
    assert_int_equal(sl_publisher_open(&p, "mem://e1?buffer=0"), SL_EBADOPT);
    expect_msg("buffer");
    assert_int_equal(sl_publisher_open(&p, "mem://u:pw@e1"), SL_EINVAL);
    assert_int_equal(sl_publisher_open(&p, "mem://e1/path"), SL_EINVAL);
    expect_msg("path");
    /* the failed opens left nothing behind: the bus can still be opened
     * with other options */
    assert_int_equal(sl_publisher_open(&p, "mem://e1?persistent=true"), 0);
    assert_int_equal(sl_publisher_close(p), 0);
}

static void bad_topics_are_rejected(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    assert_int_equal(sl_publisher_open(&p, "mem://e2"), 0);
    assert_int_equal(sl_subscriber_open(&sub, "mem://e2"), 0);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    char longt[300];
    memset(longt, 't', sizeof longt);
    longt[256] = '\0';
    const char *bad[] = {"", "a\nb", "tab\there", "del\x7f", "\x01", longt};
    const char *why[] = {"empty", "control", "control", "control", "control", "longer"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sl_publish(p, bad[i], &m, 1), SL_EINVAL);
        expect_msg(why[i]);
        sl_subscription *s = (sl_subscription *)1;
        assert_int_equal(sl_subscribe(sub, bad[i], NULL, &s), SL_EINVAL);
        assert_null(s);
        expect_msg(why[i]);
    }
    assert_int_equal(sl_publish(p, NULL, &m, 1), SL_EINVAL);
    expect_msg("NULL");
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, NULL, NULL, &s), SL_EINVAL);
    longt[255] = '\0'; /* 255 bytes is the maximum, and fine; so is UTF-8 */
    assert_int_equal(sl_subscribe(sub, longt, NULL, &s), 0);
    assert_int_equal(sl_publish(p, longt, &m, 1), 0);
    assert_int_equal(sl_publish(p, "caf\xc3\xa9/orders.v1 x", &m, 1), 0);
    sl_msg *got;
    assert_int_equal(sl_next(s, &got, 5000), 0);
    assert_string_equal(sl_msg_topic(got), longt);
    sl_msg_ack(got);
    sl_msg_unref(got);
    sl_msg_unref(m);
    sl_publisher_close(p);
    sl_subscriber_close(sub);
}

static void null_arguments_are_errors(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_msg *m;
    assert_int_equal(sl_publisher_open(NULL, "mem://e3"), SL_EINVAL);
    assert_int_equal(sl_publisher_open(&p, NULL), SL_EINVAL);
    assert_null(p);
    assert_int_equal(sl_subscriber_open(NULL, "mem://e3"), SL_EINVAL);
    assert_int_equal(sl_subscriber_open(&sub, NULL), SL_EINVAL);
    assert_int_equal(sl_publish(NULL, "t", NULL, 0), SL_EINVAL);
    assert_int_equal(sl_publish_ex(NULL, "t", NULL, 0, NULL), SL_EINVAL);
    assert_int_equal(sl_publisher_close(NULL), SL_EINVAL);
    assert_int_equal(sl_subscriber_close(NULL), SL_EINVAL);
    assert_int_equal(sl_subscription_close(NULL), SL_EINVAL);
    assert_int_equal(sl_subscribe(NULL, "t", NULL, &s), SL_EINVAL);
    assert_null(s);
    assert_int_equal(sl_next(NULL, &m, 0), SL_EINVAL);
    assert_null(m);
    assert_int_equal(sl_publisher_features(NULL), 0);
    assert_int_equal(sl_subscriber_features(NULL), 0);
    unsigned f;
    assert_int_equal(sl_scheme_features(NULL, &f), SL_EINVAL);
    assert_int_equal(sl_scheme_features("mem", NULL), SL_EINVAL);
    sl_publish_opts_init(NULL);
    sl_subscribe_opts_init(NULL);

    assert_int_equal(sl_publisher_open(&p, "mem://e3"), 0);
    assert_int_equal(sl_subscriber_open(&sub, "mem://e3"), 0);
    assert_int_equal(sl_subscribe(sub, "t", NULL, NULL), SL_EINVAL);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &s), 0);
    assert_int_equal(sl_next(s, NULL, 0), SL_EINVAL);
    assert_int_equal(sl_publish(p, "t", NULL, 1), SL_EINVAL);
    expect_msg("msgs");
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    sl_msg *two[2] = {m, NULL};
    assert_int_equal(sl_publish(p, "t", two, 2), SL_EINVAL);
    expect_msg("msgs[1]");
    assert_int_equal(sl_publish(p, "t", NULL, 0), 0); /* nothing to do */
    sl_msg *got = (sl_msg *)1;
    assert_int_equal(sl_next(s, &got, 0), SL_ETIMEDOUT); /* nothing was published */
    assert_null(got);
    sl_msg_unref(m);
    assert_int_equal(sl_publisher_close(p), 0);
    assert_int_equal(sl_subscriber_close(sub), 0);
}

static void subscribe_options_are_checked_and_prefetch_0_means_1(void **state)
{
    (void)state;
    sl_publisher *p;
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_publisher_open(&p, "mem://e4"), 0);
    assert_int_equal(sl_subscriber_open(&sub, "mem://e4"), 0);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    assert_null(o.group);
    assert_int_equal(o.prefetch, 1);
    assert_int_equal(o.start, SL_START_DEFAULT);
    o.group = "bad\ngroup";
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), SL_EINVAL);
    expect_msg("group");
    o.group = NULL;
    o.start = (sl_start)42;
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), SL_EINVAL);
    expect_msg("start");
    o.start = SL_START_DEFAULT;
    o.group = ""; /* empty group: no group */
    o.prefetch = 0;
    assert_int_equal(sl_subscribe(sub, "t", &o, &s), 0);
    sl_msg *ms[2];
    assert_int_equal(sl_msg_new(&ms[0], "a", 1), 0);
    assert_int_equal(sl_msg_new(&ms[1], "b", 1), 0);
    assert_int_equal(sl_publish(p, "t", ms, 2), 0);
    sl_msg *got, *none = NULL;
    assert_int_equal(sl_next(s, &got, 5000), 0);
    assert_int_equal(sl_next(s, &none, 100), SL_ETIMEDOUT); /* window of 1 */
    sl_msg_ack(got);
    sl_msg_unref(got);
    assert_int_equal(sl_next(s, &got, 5000), 0);
    assert_true(sl_msg_equal(got, ms[1]));
    sl_msg_ack(got);
    sl_msg_unref(got);
    sl_msg_unref(ms[0]);
    sl_msg_unref(ms[1]);
    sl_publisher_close(p);
    sl_subscriber_close(sub);
}

static void every_error_code_has_text(void **state)
{
    (void)state;
    for (int c = 0; c >= -30; c--) {
        const char *t = sl_strerror(c);
        assert_non_null(t);
        assert_true(t[0] != '\0');
    }
    assert_non_null(sl_strerror(12345));
    assert_string_not_equal(sl_strerror(SL_EINVAL), sl_strerror(SL_ENOTSUP));
    assert_non_null(sl_errmsg());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unknown_scheme_is_named_in_the_error),
        cmocka_unit_test(malformed_url_is_rejected),
        cmocka_unit_test(unknown_option_is_named_in_the_error),
        cmocka_unit_test(bad_topics_are_rejected),
        cmocka_unit_test(null_arguments_are_errors),
        cmocka_unit_test(subscribe_options_are_checked_and_prefetch_0_means_1),
        cmocka_unit_test(every_error_code_has_text),
    };
    return cmocka_run_group_tests_name("pubsub_errors", tests, NULL, NULL);
}
