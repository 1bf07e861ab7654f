/*
 * mem.h - the data structures of mem:// (see mem.c for the design) and the
 * queue operations on them: a group's ready queue (doubly linked), its
 * delayed list (sorted by ready time) and a subscription's in-flight list.
 * Private to src/backends/mem/.
 */
#ifndef SLI_MEM_H
#define SLI_MEM_H

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
    _Atomic uint32_t refs; /* 1 while in a queue/in flight, +1 while a delivery lives */
    void *body;
    unsigned deliveries;
    int64_t ready_at;
    topic *t;
    group *g;          /* NULL once acked or dropped */
    msub *owner;       /* holder while in flight */
    sl_msg *delivered; /* the live delivery, NULL if none */
    tracker *trk;
    entry *prev, *next;
};

struct group {
    topic *t;
    char *name; /* NULL: private to one subscription */
    entry *qhead, *qtail;
    size_t qlen; /* ready + delayed */
    _Atomic uint32_t arrivals; /* bumped when entries are queued (spinning consumers) */
    entry *delayed; /* sorted by ready_at, singly linked via next */
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
    void **log; /* persistent bodies */
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

/* ---------- queues (all under t->mu) ---------- */

static inline void q_push_tail(group *g, entry *e)
{
    e->next = NULL;
    e->prev = g->qtail;
    if (g->qtail)
        g->qtail->next = e;
    else
        g->qhead = e;
    g->qtail = e;
}

static inline void q_push_head(group *g, entry *e)
{
    e->prev = NULL;
    e->next = g->qhead;
    if (g->qhead)
        g->qhead->prev = e;
    else
        g->qtail = e;
    g->qhead = e;
}

static inline entry *q_pop_head(group *g)
{
    entry *e = g->qhead;
    if (!e)
        return NULL;
    g->qhead = e->next;
    if (g->qhead)
        g->qhead->prev = NULL;
    else
        g->qtail = NULL;
    e->next = e->prev = NULL;
    return e;
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
}

/* Entries left g (taken, dropped; g NULL: a whole group went): wake the
 * publishers waiting for room once g has drained to half its buffer, not
 * for every batch taken (ZeroMQ's high/low water marks). Each wake costs
 * the taker a futex call and the publisher a context switch, only to find
 * room for one more batch. A publisher also looks for room on its own every
 * ROOM_POLL_MS, in case the takers stop above the mark. */
#define ROOM_POLL_MS 5
static inline void room_freed(topic *t, const group *g)
{
    if (t->room_waiters && (!g || g->qlen <= t->b->capacity / 2))
        pthread_cond_broadcast(&t->room);
}

#endif
