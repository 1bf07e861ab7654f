/*
 * test_fanin.c - fan-in (sluice/fanin.h) on mem:// and sqlite://: every
 * message of every source topic reaches the target once (same UUID,
 * payload, metadata, plus its source), in order per source, including
 * messages published before the fan-in started; bad configurations are
 * refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/fanin.h"
#include "testlib.h"

#define NSRC 3

static void *run(void *r)
{
    sl_router_run(r);
    return NULL;
}

static void publish_idx(sl_publisher *pub, const char *topic, int i)
{
    char idx[16];
    snprintf(idx, sizeof idx, "%d", i);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, idx, strlen(idx)), 0);
    assert_int_equal(sl_msg_meta_set(m, "idx", idx), 0);
    assert_int_equal(sl_msg_meta_set(m, "src", topic), 0);
    assert_int_equal(sl_publish(pub, topic, &m, 1), 0);
    sl_msg_unref(m);
}

static void merge_on(const char *url)
{
    int per = (int)tl_scaled(200, 20);
    sl_publisher *pub;
    sl_subscriber *sub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    const char *src[NSRC];
    char names[NSRC][80];
    for (int k = 0; k < NSRC; k++) {
        snprintf(names[k], sizeof names[k], "%s", tl_unique("fanin-src"));
        src[k] = names[k];
    }
    const char *target = tl_unique("fanin-target");
    sl_subscription *s;
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    so.group = "check";
    so.prefetch = 32;
    assert_int_equal(sl_subscribe(sub, target, &so, &s), 0);

    /* half before the fan-in exists: a new group starts at the earliest */
    sl_router *r;
    assert_int_equal(sl_router_new(&r, NULL), 0);
    sl_fanin_opts o;
    sl_fanin_opts_init(&o);
    o.sub = sub;
    o.topics = src;
    o.ntopics = NSRC;
    o.pub = pub;
    o.target = target;
    unsigned feats = sl_subscriber_features(sub);
    bool late = feats & SL_FEAT_LATE_SUBSCRIBERS;
    int first = late ? per / 2 : 0;
    for (int i = 0; i < first; i++)
        for (int k = 0; k < NSRC; k++)
            publish_idx(pub, src[k], i);
    assert_int_equal(sl_fanin_add(r, "merge", &o), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run, r), 0);
    assert_int_equal(sl_router_running(r, 10000), 0);
    sl_fanin_opts loop = o;
    loop.target = src[0];
    assert_int_equal(sl_fanin_add(r, "loop", &loop), SL_EINVAL); /* checked while running too */
    for (int i = first; i < per; i++)
        for (int k = 0; k < NSRC; k++)
            publish_idx(pub, src[k], i);

    int next[NSRC] = {0}, got = 0;
    sl_msg *m;
    while (got < per * NSRC && sl_next(s, &m, 10000) == 0) {
        const char *from = sl_msg_meta_get(m, SL_FANIN_META_SOURCE);
        assert_non_null(from);
        assert_string_equal(from, sl_msg_meta_get(m, "src"));
        int k = 0;
        while (k < NSRC && strcmp(src[k], from) != 0)
            k++;
        assert_true(k < NSRC);
        size_t len;
        const char *p = sl_msg_payload(m, &len);
        assert_int_equal(len, strlen(sl_msg_meta_get(m, "idx")));
        assert_memory_equal(p, sl_msg_meta_get(m, "idx"), len);
        assert_int_equal(atoi(sl_msg_meta_get(m, "idx")), next[k]); /* in order, no gap */
        next[k]++;
        got++;
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    assert_int_equal(got, per * NSRC);
    assert_int_equal(sl_next(s, &m, 200), SL_ETIMEDOUT); /* nothing twice */
    assert_int_equal(sl_router_close(r, 5000, NULL), 0);
    pthread_join(t, NULL);
    sl_router_free(r);
    assert_int_equal(sl_subscriber_close(sub), 0);
    assert_int_equal(sl_publisher_close(pub), 0);
}

static void merges_every_source_in_order_on_mem(void **state)
{
    (void)state;
    merge_on("mem://fanin?persistent=true");
}

static void merges_every_source_in_order_on_sqlite(void **state)
{
    (void)state;
    char dir[] = "/tmp/sl-fanin-XXXXXX", url[200], cmd[200];
    assert_non_null(mkdtemp(dir));
    snprintf(url, sizeof url, "sqlite://%s/q.db?sync=normal", dir);
    merge_on(url);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void bad_configurations_are_refused(void **state)
{
    (void)state;
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_router *r;
    assert_int_equal(sl_publisher_open(&pub, "mem://fanin-bad"), 0);
    assert_int_equal(sl_subscriber_open(&sub, "mem://fanin-bad"), 0);
    assert_int_equal(sl_router_new(&r, NULL), 0);
    const char *src[] = {"a", "b"}, *bad[] = {"a", NULL}, *loop[] = {"a", "t"};
    sl_fanin_opts o;
    sl_fanin_opts_init(&o);
    assert_int_equal(sl_fanin_add(r, "x", &o), SL_EINVAL); /* nothing set */
    o.sub = sub;
    o.pub = pub;
    o.topics = src;
    o.ntopics = 2;
    o.target = "bad topic\n";
    assert_int_equal(sl_fanin_add(r, "x", &o), SL_EINVAL);
    o.target = "t";
    o.topics = bad;
    assert_int_equal(sl_fanin_add(r, "x", &o), SL_EINVAL);
    o.topics = loop;
    assert_int_equal(sl_fanin_add(r, "x", &o), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "loop"));
    o.topics = src;
    assert_int_equal(sl_fanin_add(NULL, "x", &o), SL_EINVAL);
    assert_int_equal(sl_fanin_add(r, "x", &o), 0);
    assert_int_equal(sl_fanin_add(r, "x", &o), SL_EINVAL); /* name taken */
    sl_router_free(r);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merges_every_source_in_order_on_mem),
        cmocka_unit_test(merges_every_source_in_order_on_sqlite),
        cmocka_unit_test(bad_configurations_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
