/*
 * blockcache.c - recycling of small fixed-size blocks (message headers and
 * bodies), including blocks allocated on one thread and freed on another.
 *
 * Why: in a producer -> consumer pipeline (mem:// pub/sub, the router) the
 * publisher allocates every message body and the subscriber frees it. With
 * glibc each such free lands in the publisher's arena under its lock, so both
 * threads contend on the arena lock for every message; and batches of 64
 * headers overflow glibc's per-thread cache (7 per size), so the arena trims
 * and grows its heap over and over (page faults). Together that cost about a
 * third of the in-process throughput (bench_mem, perf).
 *
 * Design, per size class: a freed block goes onto its thread's private list
 * (no atomics) while that holds fewer than LOCAL_MAX, else onto the thread's
 * outgoing list, which is pushed onto a shared return stack RETURN_BATCH
 * blocks at a time (one CAS and one counter update per batch, not per block:
 * in a pipeline the freeing thread frees every message it receives). An
 * allocating thread uses its private list, then its outgoing list, then
 * what it took from the shared stack, and when all are empty takes the whole
 * shared stack with one exchange; only then does it call malloc.
 *
 * Correctness of the lock-free part: chains are pushed whole (CAS) and the
 * stack is only ever taken all at once (exchange), so no pop depends on a
 * stale next pointer (no ABA). Private lists are thread-local; a pthread key
 * destructor returns or frees them when their thread exits. Blocks put after
 * that, by destructors that run later in the thread's exit (another key's, a
 * C++ thread_local's), go to the shared stack one by one: the private lists
 * are gone for good (the thread's storage is about to be freed with whatever
 * they held).
 *
 * Bounds: a thread keeps at most LOCAL_MAX blocks per class of its own and
 * fewer than RETURN_BATCH outgoing; at most SHARED_MAX blocks per class wait
 * on the shared stack or in the lists taken from it (the first block of each
 * pushed chain carries the chain's length, and the count drops by it when
 * that block is handed out); beyond that blocks are freed.
 * Under AddressSanitizer a cached block is poisoned (but its two link words), so a
 * use after free of a recycled block is still reported.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

#define LOCAL_MAX 256
#define RETURN_BATCH 64
#define SHARED_MAX 16384
#define NCLASS 3

typedef struct block {
    struct block *next;
    size_t chain; /* on the shared stack: length of the chain this block heads, else 0 */
} block;

_Static_assert(sizeof(block) <= SLI_BLOCK_HDR_SIZE, "a block holds its link words");

static const size_t class_size[NCLASS] = {SLI_BLOCK_HDR_SIZE, SLI_BLOCK_BODY_SIZE,
                                          SLI_BLOCK_NODE_SIZE};

static block *_Atomic shared[NCLASS];  /* freed blocks, pushed by anyone */
static _Atomic size_t nshared[NCLASS]; /* blocks in shared + taken lists */

typedef struct local {
    block *own; /* freed here, at most LOCAL_MAX */
    size_t nown;
    block *out, *out_tail; /* freed here beyond LOCAL_MAX, fewer than RETURN_BATCH */
    size_t nout;
    block *taken; /* taken from shared, counted in nshared */
} local;

static _Thread_local local mine[NCLASS];
static _Thread_local bool armed; /* the thread-exit destructor is set */
static _Thread_local bool gone;  /* it ran: this thread is exiting, keeps no list of its own */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void free_list(int cls, block *b, bool counted)
{
    while (b) {
        block *n = b->next;
        if (counted && b->chain)
            atomic_fetch_sub_explicit(&nshared[cls], b->chain, memory_order_relaxed);
        UNPOISON(b, class_size[cls]);
        free(b);
        b = n;
    }
}

/* Push the chain first..last of n blocks onto the shared stack, or free it
 * when the stack is full. */
static void push_chain(int cls, block *first, block *last, size_t n)
{
    if (atomic_fetch_add_explicit(&nshared[cls], n, memory_order_relaxed) + n > SHARED_MAX) {
        atomic_fetch_sub_explicit(&nshared[cls], n, memory_order_relaxed);
        last->next = NULL;
        free_list(cls, first, false);
        return;
    }
    first->chain = n;
    block *head = atomic_load_explicit(&shared[cls], memory_order_relaxed);
    do
        last->next = head;
    while (!atomic_compare_exchange_weak_explicit(&shared[cls], &head, first, memory_order_release,
                                                  memory_order_relaxed));
}

static void on_thread_exit(void *arg)
{
    (void)arg;
    for (int c = 0; c < NCLASS; c++) {
        local *l = &mine[c];
        free_list(c, l->own, false);
        free_list(c, l->taken, true);
        if (l->out)
            push_chain(c, l->out, l->out_tail, l->nout);
        memset(l, 0, sizeof *l);
    }
    armed = false;
    gone = true;
}

static void make_key(void)
{
    (void)pthread_key_create(&exit_key, on_thread_exit);
}

static void arm(void)
{
    if (armed)
        return;
    pthread_once(&exit_once, make_key);
    armed = pthread_setspecific(exit_key, (void *)1) == 0;
}

void *sli_block_get(int cls)
{
    local *l = &mine[cls];
    block *b = l->own;
    if (b) {
        l->own = b->next;
        l->nown--;
    } else if ((b = l->out)) {
        if (!(l->out = b->next))
            l->out_tail = NULL;
        l->nout--;
    } else {
        if (!l->taken) {
            if (gone) /* what it took would be stranded on the exiting thread */
                return malloc(class_size[cls]);
            l->taken = atomic_exchange_explicit(&shared[cls], NULL, memory_order_acquire);
            if (!l->taken)
                return malloc(class_size[cls]);
            arm();
        }
        b = l->taken;
        l->taken = b->next;
        if (b->chain)
            atomic_fetch_sub_explicit(&nshared[cls], b->chain, memory_order_relaxed);
        /* Blocks taken from the shared stack were last written on another
         * thread: start moving the next one here while this one is used. */
        if (l->taken)
            for (size_t off = 0; off < class_size[cls]; off += 64)
                __builtin_prefetch((char *)l->taken + off, 1);
    }
    UNPOISON(b, class_size[cls]);
    return b;
}

void sli_block_put(int cls, void *p)
{
    if (!p)
        return;
    block *b = p;
    local *l = &mine[cls];
    POISON((char *)b + sizeof *b, class_size[cls] - sizeof *b);
    b->chain = 0;
    if (gone || (!armed && (arm(), !armed))) {
        b->next = NULL;
        push_chain(cls, b, b, 1);
        return;
    }
    if (l->nown < LOCAL_MAX) {
        b->next = l->own;
        l->own = b;
        l->nown++;
        return;
    }
    b->next = l->out;
    l->out = b;
    if (!l->nout++)
        l->out_tail = b;
    if (l->nout == RETURN_BATCH) {
        push_chain(cls, l->out, l->out_tail, l->nout);
        l->out = l->out_tail = NULL;
        l->nout = 0;
    }
}
