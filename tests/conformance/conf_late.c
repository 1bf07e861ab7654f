/*
 * conf_late.c - what SL_FEAT_LATE_SUBSCRIBERS promises, checked on every
 * backend that declares it: a subscription opened later receives every
 * message published earlier, including the ones another group (or another
 * subscription) already received and acked. A backend that deletes what
 * was acked (sqlite:// with retention=acked, a trimmed stream) must not
 * declare the flag.
 */
#include <unistd.h>

#include "conf.h"

static sl_subscription *subscribe_earliest(sl_subscriber *sub, const char *topic, const char *group)
{
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = group;
    o.start = SL_START_EARLIEST;
    o.prefetch = 32;
    sl_subscription *s = NULL;
    int rc = sl_subscribe(sub, topic, &o, &s);
    if (rc)
        fail_msg("sl_subscribe(%s, earliest): %s: %s", topic, sl_strerror(rc), sl_errmsg());
    return s;
}

CONF_TEST(late_subscriber_gets_acked)
{
    conf_require(SL_FEAT_LATE_SUBSCRIBERS, "the backend does not keep acked messages");
    bool groups = (conf_features() & SL_FEAT_CONSUMER_GROUPS) != 0;
    bool ordered = (conf_features() & SL_FEAT_ORDERED) != 0;
    size_t n = tl_scaled(300, 20);
    uint64_t seed = conf_seed();
    const char *topic = conf_name("lateacked");

    /* A first group is there from the start, receives and acks everything. */
    sl_subscriber *first = conf_sub();
    sl_subscription *a = subscribe_earliest(first, topic, groups ? conf_name("first") : NULL);
    sl_publisher *pub = conf_pub();
    conf_bg bg;
    conf_bg_publish(&bg, pub, topic, seed, 0, n, 25);
    conf_receive_all(a, seed, 0, n, ordered);
    conf_bg_join(&bg);

    /* Give retention a chance to delete what was acked: backends sweep in
     * housekeeping (about once a second) or with a later write batch. */
    usleep(1500 * 1000);
    assert_int_equal(conf_publish_range(pub, topic, seed, n, 1, 1), 0);
    conf_receive_all(a, seed, n, 1, true);
    usleep(1200 * 1000);
    sl_subscriber_close(first);

    /* Opened now: a new group and a subscription of its own get all n + 1. */
    sl_subscriber *late = conf_sub();
    if (groups) {
        sl_subscription *b = subscribe_earliest(late, topic, conf_name("late"));
        conf_receive_all(b, seed, 0, n + 1, ordered);
        conf_expect_nothing(b, CONF_QUIET_MS);
    }
    sl_subscription *own = subscribe_earliest(late, topic, NULL);
    conf_receive_all(own, seed, 0, n + 1, ordered);
    conf_expect_nothing(own, CONF_QUIET_MS);
    sl_subscriber_close(late);
    sl_publisher_close(pub);
}
