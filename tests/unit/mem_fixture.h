/*
 * mem_fixture.h - helpers of the mem:// unit tests (test_mem.c,
 * test_mem_queue.c): a bus of its own per test, one-line publish and take,
 * payload checks, and a publish running in a thread of its own (to block).
 * Header-only: each test_*.c is its own program.
 */
#ifndef TEST_MEM_FIXTURE_H
#define TEST_MEM_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "testlib.h"

/* A unique bus URL: "mem://<name><suffix>". */
static inline const char *bus_url(const char *suffix)
{
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "mem://%s%s", tl_unique("b"), suffix ? suffix : "");
    return buf;
}

static inline sl_msg *mk(const char *text)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, text, strlen(text)), 0);
    return m;
}

static inline void pub1(sl_publisher *p, const char *topic, const char *text)
{
    sl_msg *m = mk(text);
    int rc = sl_publish(p, topic, &m, 1);
    if (rc)
        fail_msg("publish: %s", sl_errmsg());
    sl_msg_unref(m);
}

static inline sl_subscription *subscribe(sl_subscriber *sub, const char *topic, const char *group,
                                         unsigned prefetch)
{
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = group;
    o.prefetch = prefetch;
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, topic, &o, &s), 0);
    return s;
}

static inline sl_msg *take(sl_subscription *s)
{
    sl_msg *m = NULL;
    int rc = sl_next(s, &m, 10000);
    if (rc)
        fail_msg("sl_next: %s (%s)", sl_strerror(rc), sl_errmsg());
    return m;
}

static inline void expect_text(sl_msg *m, const char *text)
{
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    if (len != strlen(text) || memcmp(p, text, len) != 0)
        fail_msg("got '%.*s', expected '%s'", (int)len, p, text);
}

static inline void take_expect_ack(sl_subscription *s, const char *text)
{
    sl_msg *m = take(s);
    expect_text(m, text);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
}

static inline void expect_none(sl_subscription *s, int ms)
{
    sl_msg *m = NULL;
    int rc = sl_next(s, &m, ms);
    if (rc == 0) {
        size_t len;
        const char *p = sl_msg_payload(m, &len);
        fail_msg("unexpected message '%.*s'", (int)len, p);
    }
    assert_int_equal(rc, SL_ETIMEDOUT);
}

typedef struct env {
    sl_publisher *p;
    sl_subscriber *sub;
    const char *topic;
} env;

static inline void env_open(env *e, const char *suffix, const char *pub_suffix)
{
    char url[300];
    snprintf(url, sizeof url, "%s", bus_url(suffix));
    char purl[400];
    snprintf(purl, sizeof purl, "%s%s", url, pub_suffix ? pub_suffix : "");
    assert_int_equal(sl_subscriber_open(&e->sub, url), 0);
    int rc = sl_publisher_open(&e->p, purl);
    if (rc)
        fail_msg("open %s: %s", purl, sl_errmsg());
    e->topic = "t";
}

static inline void env_close(env *e)
{
    assert_int_equal(sl_publisher_close(e->p), 0);
    assert_int_equal(sl_subscriber_close(e->sub), 0);
}

typedef struct bg_pub {
    sl_publisher *p;
    const char *topic;
    sl_msg *m;
    sl_publish_opts o;
    atomic_int started, returned;
    int rc;
} bg_pub;

static inline void *bg_publish(void *arg)
{
    bg_pub *b = arg;
    atomic_store(&b->started, 1);
    b->rc = sl_publish_ex(b->p, b->topic, &b->m, 1, &b->o);
    atomic_store(&b->returned, 1);
    return NULL;
}

static inline void start_bg(bg_pub *b, pthread_t *t, sl_publisher *p, const char *topic,
                            const char *text, unsigned flags, int timeout_ms)
{
    *b = (bg_pub){.p = p, .topic = topic, .m = mk(text)};
    sl_publish_opts_init(&b->o);
    b->o.flags = flags;
    b->o.timeout_ms = timeout_ms;
    assert_int_equal(pthread_create(t, NULL, bg_publish, b), 0);
    while (!atomic_load(&b->started))
        tl_sleep_ms(1);
}

#endif
