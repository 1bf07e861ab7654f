/*
 * blockcache.c - recycling of small fixed-size blocks (message bodies) that
 * are allocated on one thread and freed on another.
 *
 * Why: in a producer -> consumer pipeline (mem:// pub/sub, the router) the
 * publisher allocates every message body and the subscriber frees it. With
 * glibc each such free lands in the publisher's arena under its lock, so both
 * threads contend on the arena lock for every message, which cost a third of
 * the in-process throughput (bench_mem, perf). Here a freed block goes onto a
 * shared return stack with one CAS, and an allocating thread that runs out of
 * blocks takes the whole stack with one exchange into a private list.
 *
 * Correctness of the lock-free parts: blocks are pushed one at a time (CAS)
 * and only ever taken all at once (exchange), so no pop ever depends on a
 * stale next pointer (no ABA). The private list is thread-local; a pthread key
 * destructor hands it back when its thread exits.
 *
 * Bounds: at most SLI_BLOCK_MAX_CACHED blocks wait on the shared stack or in
 * private lists (counted until handed out); more are freed.
 * Under AddressSanitizer a cached block is poisoned (but its link word), so a
 * use after free of a recycled body is still reported.
 */
#include <pthread.h>
#include <stdlib.h>

#include "core/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLI_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLI_ASAN 1
#endif
#endif
#ifdef SLI_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SLI_BLOCK_MAX_CACHED 16384

typedef struct block {
    struct block *next;
} block;

static block *_Atomic shared;          /* freed blocks, pushed by anyone */
static _Atomic size_t nshared;         /* approximate length of shared */
static _Thread_local block *mine;      /* taken from shared, private */
static _Thread_local bool registered;  /* the exit destructor is armed */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void give_back(block *b)
{
    while (b) {
        block *n = b->next;
        UNPOISON(b, SLI_BLOCK_SIZE);
        free(b);
        atomic_fetch_sub_explicit(&nshared, 1, memory_order_relaxed);
        b = n;
    }
}

static void on_thread_exit(void *arg)
{
    (void)arg;
    block *b = mine;
    mine = NULL;
    give_back(b);
}

static void make_key(void) { (void)pthread_key_create(&exit_key, on_thread_exit); }

void *sli_block_get(void)
{
    block *b = mine;
    if (!b) {
        b = atomic_exchange_explicit(&shared, NULL, memory_order_acquire);
        if (!b)
            return malloc(SLI_BLOCK_SIZE);
        if (!registered) {
            pthread_once(&exit_once, make_key);
            registered = pthread_setspecific(exit_key, (void *)1) == 0;
        }
    }
    mine = b->next;
    UNPOISON(b, SLI_BLOCK_SIZE);
    atomic_fetch_sub_explicit(&nshared, 1, memory_order_relaxed);
    return b;
}

void sli_block_put(void *p)
{
    if (!p)
        return;
    if (atomic_fetch_add_explicit(&nshared, 1, memory_order_relaxed) >= SLI_BLOCK_MAX_CACHED) {
        atomic_fetch_sub_explicit(&nshared, 1, memory_order_relaxed);
        free(p);
        return;
    }
    block *b = p;
    POISON((char *)b + sizeof *b, SLI_BLOCK_SIZE - sizeof *b);
    block *head = atomic_load_explicit(&shared, memory_order_relaxed);
    do
        b->next = head;
    while (!atomic_compare_exchange_weak_explicit(&shared, &head, b, memory_order_release,
                                                  memory_order_relaxed));
}
