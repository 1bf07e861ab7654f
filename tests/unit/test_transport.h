/*
 * test_transport.h - small helpers shared by the transport tests
 * (test_transport*.c): numbered messages, a mem:// bus per test, draining a
 * subscription into a "seen" table, a "sink" (bus plus a subscriber on the
 * topic a transport sends to), and SL_TEST_SCALE scaling. Header-only
 * (static functions) so each test stays one executable.
 */
#ifndef TEST_TRANSPORT_H
#define TEST_TRANSPORT_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* n scaled by env SL_TEST_SCALE (float, default 1), at least min. */
static inline size_t tr_scaled(size_t n, size_t min)
{
    const char *s = getenv("SL_TEST_SCALE");
    double v = s && *s ? strtod(s, NULL) : 1.0;
    if (!(v > 0))
        v = 1.0;
    size_t r = (size_t)((double)n * v);
    return r < min ? min : r;
}

/* Checks for helper threads (cmocka asserts must stay on the test thread):
 * record failures; the test thread asserts tr_failures() == 0 after joins. */
static inline _Atomic int *tr_fail_counter(void)
{
    static _Atomic int failures;
    return &failures;
}
#define TR_CHECK_INT(a, b)                                                                         \
    do {                                                                                           \
        long long tr_a_ = (long long)(a), tr_b_ = (long long)(b);                                  \
        if (tr_a_ != tr_b_) {                                                                      \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld (%s)\n", __FILE__, __LINE__, #a, \
                    #b, tr_a_, tr_b_, sl_errmsg());                                                \
            atomic_fetch_add(tr_fail_counter(), 1);                                                \
        }                                                                                          \
    } while (0)
static inline int tr_failures(void)
{
    return atomic_exchange(tr_fail_counter(), 0);
}

/* A message whose payload is the 4-byte index i. */
static inline sl_msg *tr_msg(uint32_t i)
{
    sl_msg *m = NULL;
    assert_int_equal(sl_msg_new(&m, &i, sizeof i), 0);
    return m;
}

static inline uint32_t tr_index(const sl_msg *m)
{
    size_t len;
    const void *p = sl_msg_payload(m, &len);
    assert_int_equal(len, sizeof(uint32_t));
    uint32_t i;
    memcpy(&i, p, sizeof i);
    return i;
}

/* "mem://<unique>?<query>" in buf. */
static inline const char *tr_bus(char *buf, size_t cap, const char *query)
{
    snprintf(buf, cap, "mem://%s%s%s", tl_unique("tr"), query && *query ? "?" : "",
             query ? query : "");
    return buf;
}

/* Take (and ack) everything queued on s without waiting; count each index
 * in seen[0..n) (asserting it is in range). Returns how many were taken. */
static inline size_t tr_drain(sl_subscription *s, _Atomic int *seen, size_t n)
{
    size_t got = 0;
    sl_msg *m;
    while (sl_next(s, &m, 0) == 0) {
        uint32_t i = tr_index(m);
        assert_true(i < n);
        atomic_fetch_add(&seen[i], 1);
        assert_int_equal(sl_msg_ack(m), 0);
        sl_msg_unref(m);
        got++;
    }
    return got;
}

/* A mem:// bus (buffer bound `buffer`) with a subscriber on one topic: what
 * a transport opened on url sends to that topic lands in s. */
typedef struct tr_sink {
    char url[256];
    sl_subscriber *sub;
    sl_subscription *s;
} tr_sink;

static inline void tr_sink_open(tr_sink *k, size_t buffer, const char *topic)
{
    char q[64];
    snprintf(q, sizeof q, "buffer=%zu", buffer);
    tr_bus(k->url, sizeof k->url, q);
    assert_int_equal(sl_subscriber_open(&k->sub, k->url), 0);
    assert_int_equal(sl_subscribe(k->sub, topic, NULL, &k->s), 0);
}

/* Drains the sink: exactly n messages are queued, and with each_once every
 * index 0..n-1 is among them once. */
static inline void tr_sink_expect(tr_sink *k, size_t n, bool each_once)
{
    _Atomic int *seen = calloc(n, sizeof *seen);
    assert_non_null(seen);
    assert_int_equal(tr_drain(k->s, seen, n), n);
    for (size_t i = 0; each_once && i < n; i++)
        assert_int_equal(atomic_load(&seen[i]), 1);
    free(seen);
}

static inline void tr_sink_close(tr_sink *k)
{
    sl_subscriber_close(k->sub);
}

#endif
