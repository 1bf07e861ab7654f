/*
 * testlib.h - helpers shared by sluice tests: cmocka includes, unique
 * names, thread helpers, thread-safe checks, scaling of message counts and
 * deterministic binary payloads.
 *
 * cmocka's assert_*() must only run on the thread that runs the test (they
 * longjmp). Helper threads use TL_CHECK*(), which record the first failure;
 * the test thread calls tl_assert_threads_ok() after joining them.
 */
#ifndef SL_TESTLIB_H
#define SL_TESTLIB_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "sluice/sluice.h"

/* Unique name with the given prefix ("topic-<uuid>"), in a static ring of
 * buffers (valid for the next 15 calls on this thread). */
const char *tl_unique(const char *prefix);

/* Run fn(arg_i) in n threads and join them all. */
void tl_run_threads(int n, void *(*fn)(void *), void *args, size_t arg_size);

/* Milliseconds from a monotonic clock. */
int64_t tl_now_ms(void);

/* Sleep for ms milliseconds. */
void tl_sleep_ms(int ms);

/* SL_TEST_SCALE from the environment (default 1.0, clamped to 0.001..100). */
double tl_scale(void);
/* n scaled by tl_scale(), at least min. */
size_t tl_scaled(size_t n, size_t min);

/* Thread-safe checks: record the first failure (and print every one). */
void tl_check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define TL_CHECK(cond)                                                                             \
    ((cond) ? (void)0 : tl_check_fail(__FILE__, __LINE__, "check failed: %s", #cond))
#define TL_CHECK_INT(a, b)                                                                         \
    do {                                                                                           \
        long long tl_a_ = (long long)(a), tl_b_ = (long long)(b);                                  \
        if (tl_a_ != tl_b_)                                                                        \
            tl_check_fail(__FILE__, __LINE__, "%s == %s failed: %lld != %lld (%s)", #a, #b, tl_a_, \
                          tl_b_, sl_errmsg());                                                     \
    } while (0)
/* Number of TL_CHECK failures so far. */
int tl_check_failures(void);
/* On the test thread: fail the test if any helper thread check failed
 * (and reset the record). */
void tl_assert_threads_ok(void);

/* Deterministic payload for message number i of a run tagged seed:
 * length tl_payload_len(i) (1..300, some long), always containing NUL
 * bytes. buf must hold TL_PAYLOAD_MAX bytes. */
#define TL_PAYLOAD_MAX 4096
size_t tl_payload_len(uint64_t i);
size_t tl_payload(uint64_t seed, uint64_t i, unsigned char *buf);

#endif
