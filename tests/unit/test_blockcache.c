/*
 * test_blockcache.c - the block recycler (src/core/blockcache.c): blocks go
 * from one thread to another and back without ever being handed out twice,
 * and whatever a thread keeps is released when it exits (LeakSanitizer and
 * TSan check the rest under CI's sanitizer builds).
 */
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "testlib.h"

/* A block in use carries its owner's stamp over its whole size; a block
 * handed out twice at once would be overwritten under its first owner. */
static void stamp(void *p, size_t size, unsigned char v) { memset(p, v, size); }

/* Any thread: a mismatch is recorded (TL_CHECK), checked by the test. */
static bool check_stamp(const void *p, size_t size, unsigned char v)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < size; i++)
        if (c[i] != v) {
            tl_check_fail(__FILE__, __LINE__, "block %p byte %zu is %u, expected %u", p, i, c[i], v);
            return false;
        }
    return true;
}

static void same_thread_reuses_blocks(void **state)
{
    (void)state;
    for (int cls = SLI_BLOCK_HDR; cls <= SLI_BLOCK_BODY; cls++) {
        size_t size = cls == SLI_BLOCK_HDR ? SLI_BLOCK_HDR_SIZE : SLI_BLOCK_BODY_SIZE;
        void *a = sli_block_get(cls), *b = sli_block_get(cls);
        assert_non_null(a);
        assert_non_null(b);
        assert_ptr_not_equal(a, b);
        stamp(a, size, 1);
        stamp(b, size, 2);
        assert_true(check_stamp(a, size, 1));
        sli_block_put(cls, a);
        void *c = sli_block_get(cls);
        assert_ptr_equal(c, a); /* the thread's own list, last in first out */
        sli_block_put(cls, b);
        sli_block_put(cls, c);
        sli_block_put(cls, NULL);
    }
}

/* Producer -> consumer through a small ring: the producer gets and stamps,
 * the consumer checks and puts; blocks flow back to the producer through
 * the shared stack. */
enum { RING = 1024 };
typedef struct pipe {
    void *slot[RING];
    _Atomic size_t head, tail; /* head: next to write; tail: next to read */
    size_t n;
} pipe_t;

static void *consumer(void *arg)
{
    pipe_t *p = arg;
    for (size_t i = 0; i < p->n; i++) {
        size_t t = atomic_load_explicit(&p->tail, memory_order_relaxed);
        while (atomic_load_explicit(&p->head, memory_order_acquire) == t)
            sched_yield();
        void *b = p->slot[t % RING];
        check_stamp(b, SLI_BLOCK_BODY_SIZE, (unsigned char)(i & 0xff));
        stamp(b, SLI_BLOCK_BODY_SIZE, 0xee); /* scribble before giving it back */
        sli_block_put(SLI_BLOCK_BODY, b);
        atomic_store_explicit(&p->tail, t + 1, memory_order_release);
    }
    return NULL;
}

static void blocks_cross_threads_without_double_handout(void **state)
{
    (void)state;
    pipe_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->n = tl_scaled(200000, 20000);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, consumer, p), 0);
    for (size_t i = 0; i < p->n; i++) {
        void *b = sli_block_get(SLI_BLOCK_BODY);
        assert_non_null(b);
        stamp(b, SLI_BLOCK_BODY_SIZE, (unsigned char)(i & 0xff));
        size_t h = atomic_load_explicit(&p->head, memory_order_relaxed);
        while (h - atomic_load_explicit(&p->tail, memory_order_acquire) == RING)
            sched_yield();
        p->slot[h % RING] = b;
        atomic_store_explicit(&p->head, h + 1, memory_order_release);
    }
    pthread_join(th, NULL);
    free(p);
    tl_assert_threads_ok();
}

/* Threads that exit with blocks on their lists release them (LeakSanitizer
 * reports otherwise); many threads put and get at once. */
static void *churn(void *arg)
{
    (void)arg;
    void *held[300];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 300; i++) {
            held[i] = sli_block_get(i % 2 ? SLI_BLOCK_HDR : SLI_BLOCK_BODY);
            if (!held[i])
                return (void *)1;
            stamp(held[i], SLI_BLOCK_HDR_SIZE, (unsigned char)i);
        }
        for (int i = 0; i < 300; i++) {
            check_stamp(held[i], SLI_BLOCK_HDR_SIZE, (unsigned char)i);
            sli_block_put(i % 2 ? SLI_BLOCK_HDR : SLI_BLOCK_BODY, held[i]);
        }
    }
    return NULL;
}

static void exiting_threads_release_their_blocks(void **state)
{
    (void)state;
    enum { T = 4 };
    pthread_t th[T];
    for (int i = 0; i < T; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn, NULL), 0);
    for (int i = 0; i < T; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        assert_null(rc);
    }
    tl_assert_threads_ok();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_thread_reuses_blocks),
        cmocka_unit_test(blocks_cross_threads_without_double_handout),
        cmocka_unit_test(exiting_threads_release_their_blocks),
    };
    return cmocka_run_group_tests_name("blockcache", tests, NULL, NULL);
}
