/*
 * test_redis.c - behaviour of the redis:// backend that the conformance suite
 * does not cover: option checking, a clear error for a server that is not
 * there, the entry layout other tools see, entries written by other tools,
 * retention (MAXLEN), reclaiming what a dead consumer held after
 * ack_deadline, and ack=sync.
 *
 * Needs the real server: SL_REDIS_URL (set by the ctest fixture of
 * tests/services.cmake, which starts it with scripts/services.sh). Without it
 * the server tests fail; they are not skipped.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static const char *base; /* redis://host:port/db */
static char host[128];
static int port;

static const char *url_with(const char *query)
{
    static char u[512];
    snprintf(u, sizeof u, "%s%s%s", base, *query ? "?" : "", query);
    return u;
}

static redisContext *raw(void)
{
    redisContext *c = redisConnect(host, port);
    assert_non_null(c);
    if (c->err)
        fail_msg("cannot connect to %s:%d: %s", host, port, c->errstr);
    return c;
}

static int setup(void **state)
{
    (void)state;
    base = getenv("SL_REDIS_URL");
    if (!base || !*base)
        fail_msg("SL_REDIS_URL is not set: run through ctest (fixture service_redis) or start "
                 "scripts/services.sh start redis and export its URL");
    if (sscanf(base, "redis://%127[^:/]:%d", host, &port) != 2)
        fail_msg("cannot read host:port from SL_REDIS_URL=%s", base);
    return 0;
}

static void bad_options_are_rejected_by_name(void **state)
{
    (void)state;
    sl_publisher *p = NULL;
    assert_int_equal(sl_publisher_open(&p, url_with("nope=1")), SL_EBADOPT);
    assert_non_null(strstr(sl_errmsg(), "nope"));
    assert_int_equal(sl_publisher_open(&p, url_with("maxlen=10&max_age=1h")), SL_EBADOPT);
    assert_int_equal(sl_publisher_open(&p, url_with("ack=later")), SL_EBADOPT);
    assert_int_equal(sl_publisher_open(&p, url_with("block=20s")), SL_EBADOPT);
    assert_int_equal(sl_publisher_open(&p, "redis://127.0.0.1:1/notanumber"), SL_EINVAL);
    assert_null(p);
}

static void unreachable_server_fails_at_open(void **state)
{
    (void)state;
    sl_subscriber *s = NULL;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_subscriber_open(&s, "redis://127.0.0.1:1/0?timeout=500ms"), SL_ECONN);
    assert_non_null(strstr(sl_errmsg(), "127.0.0.1:1"));
    assert_true(tl_now_ms() - t0 < 5000);
    sl_publisher *p = NULL;
    assert_int_equal(sl_publisher_open(&p, "redis://127.0.0.1:1/0?timeout=500ms"), SL_ECONN);
}

/* An entry is uuid, m:<key> per metadata pair in order, payload. */
static void entry_layout_is_plain_fields(void **state)
{
    (void)state;
    const char *topic = tl_unique("layout");
    sl_publisher *p;
    assert_int_equal(sl_publisher_open(&p, url_with("prefix=test:")), 0);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "a\0b", 3), 0);
    sl_msg_meta_set(m, "k1", "v1");
    sl_msg_meta_set(m, "k2", "");
    assert_int_equal(sl_publish(p, topic, &m, 1), 0);
    redisContext *c = raw();
    redisReply *r = redisCommand(c, "XRANGE test:%s - +", topic);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    redisReply *f = r->element[0]->element[1];
    assert_int_equal(f->elements, 8);
    assert_string_equal(f->element[0]->str, "uuid");
    assert_string_equal(f->element[1]->str, sl_msg_uuid(m));
    assert_string_equal(f->element[2]->str, "m:k1");
    assert_string_equal(f->element[3]->str, "v1");
    assert_string_equal(f->element[4]->str, "m:k2");
    assert_int_equal(f->element[5]->len, 0);
    assert_string_equal(f->element[6]->str, "payload");
    assert_int_equal(f->element[7]->len, 3);
    assert_memory_equal(f->element[7]->str, "a\0b", 3);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "DEL test:%s", topic));
    redisFree(c);
    sl_msg_unref(m);
    sl_publisher_close(p);
}

/* Entries added by other tools: no uuid -> the entry id; no payload -> empty;
 * other fields are not metadata. */
static void foreign_entries_are_delivered(void **state)
{
    (void)state;
    const char *topic = tl_unique("foreign");
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, base), 0);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.start = SL_START_EARLIEST;
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, topic, &o, &s), 0);
    redisContext *c = raw();
    redisReply *r = redisCommand(c, "XADD %s 5-1 other x m:k v", topic);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    sl_msg *m;
    assert_int_equal(sl_next(s, &m, 5000), 0);
    assert_string_equal(sl_msg_uuid(m), "5-1");
    size_t len = 1;
    sl_msg_payload(m, &len);
    assert_int_equal(len, 0);
    assert_int_equal(sl_msg_meta_count(m), 1);
    assert_string_equal(sl_msg_meta_get(m, "k"), "v");
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    sl_subscriber_close(sub);
    freeReplyObject(redisCommand(c, "DEL %s", topic));
    redisFree(c);
}

static void maxlen_keeps_the_newest(void **state)
{
    (void)state;
    const char *topic = tl_unique("maxlen");
    sl_publisher *p;
    assert_int_equal(sl_publisher_open(&p, url_with("maxlen=10&exact_trim=true")), 0);
    sl_msg *ms[50];
    for (int i = 0; i < 50; i++) {
        char b[8];
        snprintf(b, sizeof b, "%d", i);
        assert_int_equal(sl_msg_new(&ms[i], b, strlen(b)), 0);
    }
    assert_int_equal(sl_publish(p, topic, ms, 50), 0);
    redisContext *c = raw();
    redisReply *r = redisCommand(c, "XLEN %s", topic);
    assert_int_equal(r->integer, 10);
    freeReplyObject(r);
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, base), 0);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.start = SL_START_EARLIEST;
    o.prefetch = 16;
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, topic, &o, &s), 0);
    for (int i = 40; i < 50; i++) {
        sl_msg *m;
        assert_int_equal(sl_next(s, &m, 5000), 0);
        assert_string_equal(sl_msg_uuid(m), sl_msg_uuid(ms[i]));
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    sl_msg *none = NULL;
    assert_int_equal(sl_next(s, &none, 200), SL_ETIMEDOUT);
    for (int i = 0; i < 50; i++)
        sl_msg_unref(ms[i]);
    sl_subscriber_close(sub);
    sl_publisher_close(p);
    freeReplyObject(redisCommand(c, "DEL %s", topic));
    redisFree(c);
}

/* A consumer that read a message and died never acks it: after ack_deadline
 * another member of the group reclaims it (XAUTOCLAIM), delivery count 2. */
static void dead_consumer_is_reclaimed_after_ack_deadline(void **state)
{
    (void)state;
    const char *topic = tl_unique("dead"), *group = tl_unique("g");
    sl_publisher *p;
    assert_int_equal(sl_publisher_open(&p, base), 0);
    redisContext *c = raw();
    freeReplyObject(redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", topic, group));
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    assert_int_equal(sl_publish(p, topic, &m, 1), 0);
    redisReply *r = redisCommand(c, "XREADGROUP GROUP %s dead COUNT 1 STREAMS %s >", group, topic);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, url_with("ack_deadline=400ms")), 0);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = group;
    sl_subscription *s;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_subscribe(sub, topic, &o, &s), 0);
    sl_msg *got;
    assert_int_equal(sl_next(s, &got, 10000), 0);
    assert_true(tl_now_ms() - t0 >= 350); /* the server's idle clock, ms granularity */
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(m));
    assert_int_equal(sl_msg_deliveries(got), 2);
    assert_int_equal(sl_msg_ack(got), 0);
    sl_msg_unref(got);
    sl_subscriber_close(sub);
    r = redisCommand(c, "XPENDING %s %s", topic, group);
    assert_int_equal(r->element[0]->integer, 0);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "DEL %s", topic));
    redisFree(c);
    sl_msg_unref(m);
    sl_publisher_close(p);
}

/* ack=sync: once sl_msg_ack returns, the entry is no longer pending. */
static void sync_ack_is_on_the_server_when_ack_returns(void **state)
{
    (void)state;
    const char *topic = tl_unique("syncack"), *group = tl_unique("g");
    sl_publisher *p;
    assert_int_equal(sl_publisher_open(&p, base), 0);
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, url_with("ack=sync")), 0);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = group;
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, topic, &o, &s), 0);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    assert_int_equal(sl_publish(p, topic, &m, 1), 0);
    sl_msg *got;
    assert_int_equal(sl_next(s, &got, 5000), 0);
    redisContext *c = raw();
    redisReply *r = redisCommand(c, "XPENDING %s %s", topic, group);
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);
    assert_int_equal(sl_msg_ack(got), 0);
    r = redisCommand(c, "XPENDING %s %s", topic, group);
    assert_int_equal(r->element[0]->integer, 0);
    freeReplyObject(r);
    sl_msg_unref(got);
    sl_msg_unref(m);
    sl_subscriber_close(sub);
    sl_publisher_close(p);
    freeReplyObject(redisCommand(c, "DEL %s", topic));
    redisFree(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_options_are_rejected_by_name),
        cmocka_unit_test(unreachable_server_fails_at_open),
        cmocka_unit_test(entry_layout_is_plain_fields),
        cmocka_unit_test(foreign_entries_are_delivered),
        cmocka_unit_test(maxlen_keeps_the_newest),
        cmocka_unit_test(dead_consumer_is_reclaimed_after_ack_deadline),
        cmocka_unit_test(sync_ack_is_on_the_server_when_ack_returns),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
