/*
 * test_router_fixture.h - shared helpers for the router and middleware
 * tests: a private mem:// bus per test, a router running on its own thread,
 * publishing numbered messages, draining what is left in the backend, and
 * polling a counter until it reaches a value (bounded, so a bug fails the
 * test instead of hanging it). Header-only: each test_*.c is its own program.
 */
#ifndef TEST_ROUTER_FIXTURE_H
#define TEST_ROUTER_FIXTURE_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

typedef struct fx {
    char url[200];
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_router *r;
    pthread_t run_thread;
    _Atomic int run_rc;
    bool running;
} fx;

/* Scale for message counts: SL_TEST_SCALE (default 1) divides big loops. */
static inline int fx_scale(int n)
{
    const char *s = getenv("SL_TEST_SCALE");
    int d = s ? atoi(s) : 1;
    return d > 1 ? (n / d > 0 ? n / d : 1) : n;
}

static inline bool fx_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return true;
#else
    return getenv("SL_SANITIZED") != NULL;
#endif
}

static inline void fx_open(fx *f, const char *query)
{
    memset(f, 0, sizeof *f);
    snprintf(f->url, sizeof f->url, "mem://%s%s", tl_unique("rt"), query ? query : "");
    assert_int_equal(sl_publisher_open(&f->pub, f->url), 0);
    assert_int_equal(sl_subscriber_open(&f->sub, f->url), 0);
    assert_int_equal(sl_router_new(&f->r, NULL), 0);
}

static inline void fx_opts(fx *f, sl_handler_opts *o, const char *name, const char *topic,
                           sl_handler_fn fn, void *user)
{
    sl_handler_opts_init(o);
    o->name = name;
    o->sub = f->sub;
    o->topic = topic;
    o->fn = fn;
    o->user = user;
    o->nack_delay_ms = 0;
    o->subscribe.group = "g";
}

static inline void *fx_run_main(void *arg)
{
    fx *f = arg;
    atomic_store(&f->run_rc, sl_router_run(f->r));
    return NULL;
}

static inline void fx_start(fx *f)
{
    assert_int_equal(pthread_create(&f->run_thread, NULL, fx_run_main, f), 0);
    f->running = true;
    assert_int_equal(sl_router_running(f->r, 5000), 0);
}

/* Close (deadline timeout_ms), join the run thread; returns close's rc. */
static inline int fx_stop(fx *f, int timeout_ms, unsigned *cut)
{
    int rc = sl_router_close(f->r, timeout_ms, cut);
    if (f->running) {
        pthread_join(f->run_thread, NULL);
        f->running = false;
        assert_int_equal(atomic_load(&f->run_rc), rc);
    }
    return rc;
}

static inline void fx_close(fx *f)
{
    if (f->running)
        fx_stop(f, 5000, NULL);
    sl_router_free(f->r);
    assert_int_equal(sl_subscriber_close(f->sub), 0);
    assert_int_equal(sl_publisher_close(f->pub), 0);
}

/* Publish n messages with payloads "<base+i>". */
static inline void fx_publish(fx *f, const char *topic, int base, int n)
{
    for (int i = 0; i < n; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%d", base + i);
        sl_msg *m;
        assert_int_equal(sl_msg_new(&m, buf, (size_t)len), 0);
        assert_int_equal(sl_publish(f->pub, topic, &m, 1), 0);
        sl_msg_unref(m);
    }
}

static inline int fx_payload_int(const sl_msg *m)
{
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    char buf[32];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return atoi(buf);
}

/* Wait (bounded by timeout_ms) until *v >= want; returns the last value. */
static inline int fx_wait_count(_Atomic int *v, int want, int timeout_ms)
{
    int64_t until = tl_now_ms() + timeout_ms;
    int x;
    while ((x = atomic_load(v)) < want && tl_now_ms() < until)
        sl_ctx_wait(NULL, 2);
    return x;
}

/* Take everything left for `group` on topic; calls fn on each (may be NULL),
 * acks it and returns how many there were. */
static inline int fx_drain(fx *f, const char *topic, const char *group,
                           void (*fn)(sl_msg *, void *), void *user)
{
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    so.group = group;
    so.prefetch = 1024;
    sl_subscription *s;
    assert_int_equal(sl_subscribe(f->sub, topic, &so, &s), 0);
    int n = 0;
    sl_msg *m;
    while (sl_next(s, &m, 200) == 0) {
        if (fn)
            fn(m, user);
        sl_msg_ack(m);
        sl_msg_unref(m);
        n++;
    }
    sl_subscription_close(s);
    return n;
}

#endif
