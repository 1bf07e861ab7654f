/*
 * test_blockcache.c - the block recycler (src/core/blockcache.c): blocks go
 * from one thread to another and back without ever being handed out twice,
 * and whatever a thread keeps is released when it exits, also a block put
 * back by a destructor that runs after the cache's own in the thread's exit,
 * and blocks waiting to go back in a batch are not lost when their thread
 * exits (LeakSanitizer and TSan check the rest under CI's sanitizer builds).
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
static void stamp(void *p, size_t size, unsigned char v)
{
    memset(p, v, size);
}

/* Any thread: a mismatch is recorded (TL_CHECK), checked by the test. */
static bool check_stamp(const void *p, size_t size, unsigned char v)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < size; i++)
        if (c[i] != v) {
            tl_check_fail(__FILE__, __LINE__, "block %p byte %zu is %u, expected %u", p, i, c[i],
                          v);
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

/* A block put back during a thread's exit, after the cache's own
 * thread-exit destructor ran (here: by a pthread key created later, whose
 * destructor runs after it; a message released by a thread_local's
 * destructor is the same), must not land on the dying thread's private
 * list, which nothing frees any more: it goes to the shared stack, where
 * the next thread that needs a block finds it. */
static pthread_key_t late_key;
static void *_Atomic late_block;

static void late_put(void *b)
{
    atomic_store(&late_block, b);
    sli_block_put(SLI_BLOCK_HDR, b);
}

static void *exits_holding_a_block(void *arg)
{
    (void)arg;
    sli_block_put(SLI_BLOCK_HDR, sli_block_get(SLI_BLOCK_HDR)); /* its cache is armed */
    void *b = sli_block_get(SLI_BLOCK_HDR);
    if (!b || pthread_setspecific(late_key, b) != 0)
        return (void *)1;
    return NULL;
}

enum { FIND_MAX = 20000 }; /* above the shared stack's bound (16384) */

/* In a fresh thread (no blocks of its own): take blocks of class cls until
 * want comes out of the shared stack; give them all back. */
static void *find_block(int cls, void *want)
{
    void **got = calloc(FIND_MAX, sizeof *got);
    if (!got)
        return (void *)2;
    void *found = NULL;
    size_t n = 0;
    while (n < FIND_MAX && !found) {
        void *b = sli_block_get(cls);
        if (!b)
            break;
        got[n++] = b;
        if (b == want)
            found = b;
    }
    for (size_t i = 0; i < n; i++)
        sli_block_put(cls, got[i]);
    free(got);
    return found ? NULL : (void *)1;
}

static void *finds_the_late_block(void *arg)
{
    (void)arg;
    return find_block(SLI_BLOCK_HDR, atomic_load(&late_block));
}

static void block_put_during_thread_exit_is_not_lost(void **state)
{
    (void)state;
    /* the cache's key exists first, so the test's key's destructor runs after it */
    sli_block_put(SLI_BLOCK_HDR, sli_block_get(SLI_BLOCK_HDR));
    assert_int_equal(pthread_key_create(&late_key, late_put), 0);
    pthread_t th;
    void *rc;
    assert_int_equal(pthread_create(&th, NULL, exits_holding_a_block, NULL), 0);
    pthread_join(th, &rc);
    assert_null(rc);
    assert_non_null(atomic_load(&late_block));
    assert_int_equal(pthread_create(&th, NULL, finds_the_late_block, NULL), 0);
    pthread_join(th, &rc);
    assert_null(rc); /* else it stayed on the exited thread's list: leaked */
    pthread_key_delete(late_key);
}

/* A thread that frees more blocks than it keeps for itself holds the rest
 * on its outgoing list until a batch is full; when it exits first, they go
 * to the shared stack, where another thread finds them (else they leaked). */
enum { FREED = 300 }; /* above the 256 a thread keeps, below 256 + one batch */
static void *_Atomic outgoing_last;

static void *exits_with_an_outgoing_list(void *arg)
{
    (void)arg;
    void **b = calloc(FREED, sizeof *b);
    if (!b)
        return (void *)2;
    for (int i = 0; i < FREED; i++)
        if (!(b[i] = sli_block_get(SLI_BLOCK_NODE)))
            return (void *)1;
    for (int i = 0; i < FREED; i++)
        sli_block_put(SLI_BLOCK_NODE, b[i]);
    atomic_store(&outgoing_last, b[FREED - 1]);
    free(b);
    return NULL;
}

static void *finds_the_outgoing_block(void *arg)
{
    (void)arg;
    return find_block(SLI_BLOCK_NODE, atomic_load(&outgoing_last));
}

static void outgoing_blocks_of_an_exiting_thread_are_shared(void **state)
{
    (void)state;
    pthread_t th;
    void *rc;
    assert_int_equal(pthread_create(&th, NULL, exits_with_an_outgoing_list, NULL), 0);
    pthread_join(th, &rc);
    assert_null(rc);
    assert_int_equal(pthread_create(&th, NULL, finds_the_outgoing_block, NULL), 0);
    pthread_join(th, &rc);
    assert_null(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* first, while the shared stack is nearly empty */
        cmocka_unit_test(block_put_during_thread_exit_is_not_lost),
        cmocka_unit_test(same_thread_reuses_blocks),
        cmocka_unit_test(blocks_cross_threads_without_double_handout),
        cmocka_unit_test(exiting_threads_release_their_blocks),
        cmocka_unit_test(outgoing_blocks_of_an_exiting_thread_are_shared),
    };
    return cmocka_run_group_tests_name("blockcache", tests, NULL, NULL);
}
