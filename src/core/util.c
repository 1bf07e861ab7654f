/*
 * util.c - clocks, monotonic condition variables, futex waits, thread names,
 * refcounted strings, per-thread random numbers and topic validation.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

int64_t sli_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void sli_thread_name(const char *name)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%s", name);
    prctl(PR_SET_NAME, buf, 0, 0, 0);
}

int64_t sli_mono_ms(void)
{
    return sli_mono_ns() / 1000000;
}

int64_t sli_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sli_deadline_ms(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : sli_mono_ms() + timeout_ms;
}

void sli_deadline(struct timespec *ts, int64_t timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (timeout_ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int sli_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

int sli_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ms)
{
    if (deadline_ms < 0)
        return pthread_cond_wait(c, m);
    struct timespec ts = {.tv_sec = deadline_ms / 1000, .tv_nsec = (deadline_ms % 1000) * 1000000};
    return pthread_cond_timedwait(c, m, &ts);
}

int sli_futex_wait_ns(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns)
{
    for (;;) {
        if (atomic_load(addr) != expected)
            return 0;
        struct timespec rel, *tp = NULL;
        if (deadline_ns >= 0) {
            int64_t left = deadline_ns - sli_mono_ns();
            if (left <= 0)
                return SL_ETIMEDOUT;
            rel.tv_sec = left / 1000000000;
            rel.tv_nsec = left % 1000000000;
            tp = &rel;
        }
        long rc = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expected, tp, NULL, 0);
        if (rc == 0 || errno == EAGAIN)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == ETIMEDOUT)
            return atomic_load(addr) != expected ? 0 : SL_ETIMEDOUT;
        return 0;
    }
}

int sli_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ms)
{
    return sli_futex_wait_ns(addr, expected, deadline_ms < 0 ? -1 : deadline_ms * 1000000);
}

void sli_futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void sli_futex_wake_all(_Atomic uint32_t *addr)
{
    sli_futex_wake(addr, INT_MAX);
}

sli_rcstr *sli_rcstr_new(const char *s)
{
    size_t len = strlen(s);
    sli_rcstr *r = malloc(sizeof *r + len + 1);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    r->len = len;
    memcpy(r->s, s, len + 1);
    return r;
}

sli_rcstr *sli_rcstr_ref(sli_rcstr *r)
{
    if (r)
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void sli_rcstr_unref(sli_rcstr *r)
{
    if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        free(r);
}

/* xoshiro256** per thread, seeded from the kernel on first use. */
static _Thread_local uint64_t rs[4];
static _Thread_local int rs_seeded;

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void rs_reseed_child(void)
{
    rs_seeded = 0;
}
static pthread_once_t rs_once = PTHREAD_ONCE_INIT;
static void rs_install_atfork(void)
{
    pthread_atfork(NULL, NULL, rs_reseed_child);
}

uint64_t sli_rand64(void)
{
    if (!rs_seeded) {
        /* A forked child must not repeat its parent's sequence (UUIDs). */
        pthread_once(&rs_once, rs_install_atfork);
        if (getrandom(rs, sizeof rs, 0) != (ssize_t)sizeof rs) {
            uint64_t t = (uint64_t)sli_mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&rs;
            for (int i = 0; i < 4; i++) {
                t += 0x9e3779b97f4a7c15ULL;
                uint64_t z = t;
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                rs[i] = z ^ (z >> 31);
            }
        }
        rs_seeded = 1;
    }
    uint64_t result = rotl(rs[1] * 5, 7) * 9;
    uint64_t t = rs[1] << 17;
    rs[2] ^= rs[0];
    rs[3] ^= rs[1];
    rs[1] ^= rs[2];
    rs[0] ^= rs[3];
    rs[2] ^= t;
    rs[3] = rotl(rs[3], 45);
    return result;
}

int sli_check_topic(const char *topic)
{
    if (!topic)
        return sli_err(SL_EINVAL, "topic is NULL");
    size_t n = strlen(topic);
    if (n == 0)
        return sli_err(SL_EINVAL, "topic is empty");
    if (n > 255)
        return sli_err(SL_EINVAL, "topic is longer than 255 bytes");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)topic[i] < 0x20 || topic[i] == 0x7f)
            return sli_err(SL_EINVAL, "topic contains a control character at byte %zu", i);
    return 0;
}
