/*
 * mem.h - the data structures of mem:// (see mem.c for the design) and the
 * queue operations on them: a group's ready queue (a ring of entry
 * pointers), its delayed list (sorted by ready time) and a subscription's
 * in-flight list, and the entry's lifetime. Private to src/backends/mem/.
 *
 * The ready queue is a ring, not a linked list, so that a consumer taking a
 * batch reads a few lines of pointers and touches the entries (written by
 * the publisher's thread) independently, instead of chasing one cache miss
 * after another under the topic lock. Its capacity is kept at least
 * qlen + ninflight (every entry of the group that could come back), so that
 * putting entries back (nack, a closing subscription, delayed ones coming
 * due) never allocates; only publishing and backfilling grow it. Once acks
 * leave it an eighth full (and it holds more than RING_KEEP), it shrinks to
 * four times what it holds: a burst does not pin its memory for good.
 */
#ifndef SLI_MEM_H
#define SLI_MEM_H

#include <assert.h>
#include <stdlib.h>

#include "core/backend.h"

typedef struct bus bus;
typedef struct topic topic;
typedef struct group group;
typedef struct msub msub;
typedef struct entry entry;

typedef struct tracker {
    _Atomic uint32_t left;
    _Atomic uint32_t refs;
} tracker;

/* Entries are blockcache nodes: freed on the subscriber's thread, reused on
 * the publisher's, in batches. */
struct entry {
    /* 1 for the bus while queued or in flight (and after an ack, until the
     * acking delivery is freed: acked_by), +1 while a delivery lives; an
     * entry starts with 2, the second held in advance for its first
     * delivery (credit), which so takes no atomic operation under the lock */
    _Atomic uint32_t refs;
    bool credit;
    void *body;
    unsigned deliveries;
    int64_t ready_at;
    topic *t;
    group *g;          /* NULL once acked or dropped */
    msub *owner;       /* holder while in flight */
    sl_msg *delivered; /* the live delivery, NULL if none */
    /* the delivery whose ack retired the entry: its free releases the bus's
     * hold with its own (atomic: a stale delivery's free reads it) */
    sl_msg *_Atomic acked_by;
    tracker *trk;
    entry *prev, *next;
};

struct group {
    topic *t;
    char *name;                /* NULL: private to one subscription */
    entry **ring;              /* ready entries: ring[(rhead + i) & (rcap - 1)], i < rlen */
    size_t rcap, rhead, rlen;  /* rcap: 0 or a power of two >= qlen + ninflight */
    size_t qlen;               /* ready + delayed */
    size_t ninflight;          /* held by the members */
    _Atomic uint32_t arrivals; /* bumped when entries are queued (spinning consumers) */
    entry *delayed;            /* sorted by ready_at, singly linked via next */
    msub *members;
    pthread_cond_t cond; /* consumers of this group */
    int waiters;         /* consumers blocked on cond */
    group *next;
};

struct msub {
    group *g;
    unsigned prefetch, inflight;
    entry *ifl_head, *ifl_tail;
    bool closed;
    int inside;
    msub *next;
};

struct topic {
    bus *b;
    sli_rcstr *name;
    pthread_mutex_t mu;
    pthread_cond_t room;
    int room_waiters;
    group *groups;
    _Atomic size_t ngroups; /* written under mu; publishers read it before locking */
    void **log;             /* persistent bodies */
    size_t nlog, caplog;
    topic *next;
};

struct bus {
    char *name;
    _Atomic uint32_t refs; /* 1 for the handles + 1 per live delivery */
    int handles;
    bool persistent;
    size_t capacity;
    pthread_mutex_t mu;
    topic *topics;
    bool dead;
    bus *next;
};

typedef struct mpub {
    bus *b;
    bool block, wait_ack;
    _Atomic uint32_t inside;
    _Atomic bool closing;
} mpub;

typedef struct msubr {
    bus *b;
} msubr;

/* ---------- lifetime (any thread) ---------- */

static inline void tracker_done(tracker *k)
{
    if (!k)
        return;
    if (atomic_fetch_sub(&k->left, 1) == 1)
        sli_futex_wake_all(&k->left);
}

static inline void tracker_unref(tracker *k)
{
    if (k && atomic_fetch_sub(&k->refs, 1) == 1)
        free(k);
}

/* A new entry holding body (a reference the caller took) for group g (NULL:
 * set when queued), counted in trk (NULL: nobody waits for its ack). */
static inline entry *entry_new(topic *t, group *g, void *body, tracker *trk)
{
    _Static_assert(sizeof(entry) <= SLI_BLOCK_NODE_SIZE, "an entry fits a node block");
    entry *e = sli_block_get(SLI_BLOCK_NODE);
    if (!e)
        return NULL;
    atomic_init(&e->refs, 2);
    e->credit = true;
    e->body = body;
    e->deliveries = 0;
    e->ready_at = 0;
    e->t = t;
    e->g = g;
    e->owner = NULL;
    e->delivered = NULL;
    atomic_init(&e->acked_by, NULL);
    e->trk = trk;
    if (trk) {
        atomic_fetch_add(&trk->refs, 1);
        atomic_fetch_add(&trk->left, 1);
    }
    return e;
}

/* Drop n references of e; the last one frees it. Any thread. */
static inline void entry_unref(entry *e, uint32_t n)
{
    if (atomic_fetch_sub_explicit(&e->refs, n, memory_order_acq_rel) != n)
        return;
    sli_msg_body_unref(e->body);
    tracker_unref(e->trk);
    sli_block_put(SLI_BLOCK_NODE, e);
}

/* ---------- shared between mem.c and mem_pub.c ---------- */

int sli_mem_bus_acquire(sli_url *u, bus **out);
void sli_mem_bus_release(bus *b);
topic *sli_mem_topic_get(bus *b, const char *name);
int sli_mem_pub_open(void **impl, sli_url *u, unsigned *features);
int sli_mem_publish(void *impl, const char *tname, sl_msg *const *msgs, size_t n,
                    const sl_publish_opts *opts);
int sli_mem_pub_close(void *impl);

/* ---------- queues (all under t->mu) ---------- */

#define RING_KEEP 4096 /* a ring this small is never shrunk */

/* Move g's ring into a new one of cap entries (a power of two holding
 * rlen). Returns false, with nothing changed, when out of memory. */
static inline bool q_move(group *g, size_t cap)
{
    entry **r = malloc(cap * sizeof *r);
    if (!r)
        return false;
    for (size_t i = 0; i < g->rlen; i++)
        r[i] = g->ring[(g->rhead + i) & (g->rcap - 1)];
    free(g->ring);
    g->ring = r;
    g->rcap = cap;
    g->rhead = 0;
    return true;
}

/* Make room in g's ring for `extra` more entries of the group (published
 * or backfilled). SL_ENOMEM, with nothing changed, when out of memory. */
static inline int q_reserve(group *g, size_t extra)
{
    size_t need = g->qlen + g->ninflight + extra;
    if (need <= g->rcap)
        return 0;
    size_t cap = g->rcap ? g->rcap : 64;
    while (cap < need)
        cap *= 2;
    return q_move(g, cap) ? 0 : SL_ENOMEM;
}

/* After entries left g for good (acks): a ring past RING_KEEP that is an
 * eighth full shrinks to four times its need (growing again takes 4x as
 * many). Out of memory it stays as it is. */
static inline void q_shrink(group *g)
{
    size_t need = g->qlen + g->ninflight;
    if (g->rcap <= RING_KEEP || need > g->rcap / 8)
        return;
    size_t cap = 64;
    while (cap < 4 * need)
        cap *= 2;
    q_move(g, cap);
}

static inline void q_push_tail(group *g, entry *e)
{
    assert(g->rlen < g->rcap);
    g->ring[(g->rhead + g->rlen++) & (g->rcap - 1)] = e;
}

static inline void q_push_head(group *g, entry *e)
{
    assert(g->rlen < g->rcap);
    g->rhead = (g->rhead - 1) & (g->rcap - 1);
    g->ring[g->rhead] = e;
    g->rlen++;
}

static inline entry *q_pop_head(group *g)
{
    if (!g->rlen)
        return NULL;
    entry *e = g->ring[g->rhead];
    g->rhead = (g->rhead + 1) & (g->rcap - 1);
    g->rlen--;
    return e;
}

/* The i-th ready entry from the head (i < rlen). */
static inline entry *q_at(const group *g, size_t i)
{
    return g->ring[(g->rhead + i) & (g->rcap - 1)];
}

static inline void delayed_insert(group *g, entry *e)
{
    entry **pp = &g->delayed;
    while (*pp && (*pp)->ready_at <= e->ready_at)
        pp = &(*pp)->next;
    e->next = *pp;
    e->prev = NULL;
    *pp = e;
}

/* Move due delayed entries to the head of the queue, earliest first.
 * Returns the earliest ready_at still pending, or -1. */
static inline int64_t delayed_promote(group *g, int64_t now)
{
    entry *due = NULL, **tail = &due;
    while (g->delayed && g->delayed->ready_at <= now) {
        entry *e = g->delayed;
        g->delayed = e->next;
        e->next = NULL;
        *tail = e;
        tail = &e->next;
    }
    /* push in reverse so the earliest ends up first */
    entry *arr[64];
    while (due) {
        size_t n = 0;
        while (due && n < 64) {
            arr[n++] = due;
            due = due->next;
        }
        while (n)
            q_push_head(g, arr[--n]);
    }
    return g->delayed ? g->delayed->ready_at : -1;
}

static inline void ifl_add(msub *s, entry *e)
{
    e->next = NULL;
    e->prev = s->ifl_tail;
    if (s->ifl_tail)
        s->ifl_tail->next = e;
    else
        s->ifl_head = e;
    s->ifl_tail = e;
    s->inflight++;
    s->g->ninflight++;
}

static inline void ifl_del(msub *s, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->ifl_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->ifl_tail = e->prev;
    e->next = e->prev = NULL;
    s->inflight--;
    s->g->ninflight--;
}

/* Entries left g (taken, dropped; g NULL: a whole group went): wake the
 * publishers waiting for room once an eighth of g's buffer is free, not for
 * every batch taken (high/low water marks, as ZeroMQ's pipes). Each wake
 * costs the taker a futex call and the publisher a context switch, only to
 * find room for one more batch; while seven eighths are still queued, the
 * woken publisher has time to be scheduled before the takers run dry (a
 * mark at half the buffer made them run dry on a loaded machine). A
 * publisher also looks for room on its own every ROOM_POLL_MS, in case the
 * takers stop above the mark. */
#define ROOM_POLL_MS 5
static inline void room_freed(topic *t, const group *g)
{
    if (t->room_waiters && (!g || g->qlen <= t->b->capacity - t->b->capacity / 8))
        pthread_cond_broadcast(&t->room);
}

#endif
