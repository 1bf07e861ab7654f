/* testlib.c - see testlib.h. */
#include "testlib.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *tl_unique(const char *prefix)
{
    static _Thread_local char ring[16][128];
    static _Thread_local unsigned idx;
    char *buf = ring[idx++ % 16];
    char id[SL_UUID_LEN + 1];
    sl_uuid_v7(id);
    snprintf(buf, 128, "%s-%s", prefix, id);
    return buf;
}

void tl_run_threads(int n, void *(*fn)(void *), void *args, size_t arg_size)
{
    pthread_t *t = calloc((size_t)n, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fn, (char *)args + (size_t)i * arg_size), 0);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    free(t);
}

int64_t tl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tl_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

double tl_scale(void)
{
    const char *s = getenv("SL_TEST_SCALE");
    double v = s && *s ? strtod(s, NULL) : 1.0;
    if (!(v >= 0.001))
        v = 0.001;
    if (v > 100)
        v = 100;
    return v;
}

size_t tl_scaled(size_t n, size_t min)
{
    double v = (double)n * tl_scale();
    size_t r = (size_t)v;
    return r < min ? min : r;
}

static atomic_int check_failures;
static pthread_mutex_t check_mu = PTHREAD_MUTEX_INITIALIZER;
static char check_first[512];

void tl_check_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    pthread_mutex_lock(&check_mu);
    if (atomic_fetch_add(&check_failures, 1) == 0)
        snprintf(check_first, sizeof check_first, "%s:%d: %s", file, line, msg);
    pthread_mutex_unlock(&check_mu);
}

int tl_check_failures(void)
{
    return atomic_load(&check_failures);
}

void tl_assert_threads_ok(void)
{
    pthread_mutex_lock(&check_mu);
    int n = atomic_exchange(&check_failures, 0);
    char first[512];
    memcpy(first, check_first, sizeof first);
    pthread_mutex_unlock(&check_mu);
    if (n)
        fail_msg("%d check(s) failed in helper threads; first: %s", n, first);
}

size_t tl_payload_len(uint64_t i)
{
    if (i % 997 == 5)
        return 3000 + (size_t)(i % 1000); /* now and then a longer one */
    return 1 + (size_t)((i * 7919) % 300);
}

size_t tl_payload(uint64_t seed, uint64_t i, unsigned char *buf)
{
    size_t len = tl_payload_len(i);
    uint64_t x = seed ^ (i * 0x9e3779b97f4a7c15ull) ^ 0x5851f42d4c957f2dull;
    for (size_t j = 0; j < len; j++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[j] = (unsigned char)x;
    }
    buf[0] = 0; /* every payload holds NUL bytes */
    if (len > 2)
        buf[len / 2] = 0;
    return len;
}
