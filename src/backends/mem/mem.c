/*
 * mem.c - mem://NAME, the in-process pub/sub (watermill's GoChannel, and more).
 *
 * Publishers and subscribers that open the same NAME share one bus. A bus is
 * a set of topics; a topic is a set of groups; a group is a queue of entries
 * and the subscriptions that compete for them:
 *   - a subscription without a group gets a private group (fan-out: every
 *     subscription of a topic sees every message), dropped when it closes;
 *   - subscriptions with the same group name share one group (competing
 *     consumers); a named group outlives its members until the bus dies.
 * A publish appends one entry per group. A subscription takes entries from
 * its group's queue head while it holds fewer than `prefetch` unacked ones.
 * Ack frees the entry; nack puts it back at the head (or, with a delay, on
 * the group's delayed list until it is due); closing a subscription puts
 * its unacked entries back at the head, in delivery order.
 *
 * Options (per bus, fixed by its first opener): persistent=bool (keep every
 * message; new groups start from the oldest), buffer=N (queued entries per
 * group before publishers block; default 8192). Per publisher: block=bool
 * (false: full buffer -> SL_EAGAIN), wait_ack=bool (every publish waits for
 * the acks). A message with SL_META_DELIVER_AT in the future waits on each
 * group's delayed list until then (delayed publishing).
 *
 * Locking: one mutex per topic guards its groups, queues, subscriptions and
 * entries; the bus mutex guards the topic list; a global mutex guards the
 * bus table. Order: global -> bus -> topic. Messages handed out carry a
 * pointer to their entry; the entry records which message object is the
 * current delivery, so acks of a stale delivery (after its subscription
 * closed) are ignored and the message is redelivered instead.
 *
 * Hot path (bench_mem): a publish takes the topic lock once per batch and
 * wakes a group's consumers only when one sleeps; sl_next_batch takes the
 * lock once for up to max entries and sl_msg_ack_batch once per run of
 * messages from one topic. A consumer that finds its queue empty yields a
 * few times (watching the group's arrival counter) before it sleeps, which
 * saves most wake-ups while a publisher is busy; a publisher blocked on a
 * full buffer is woken once an eighth of it is free (room_freed in mem.h).
 * A publisher makes its entries before it takes the lock (prep_make), a
 * consumer takes a batch from the group's ring of pointers and fills the
 * message headers after unlocking, lending them the entry's body and the
 * topic's name (sli_msg_lend) instead of taking references; entries are
 * recycled through the block cache, which returns them to the publisher's
 * thread in batches.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "backends/mem/mem.h"

#define SPIN_YIELDS 20 /* yields before a consumer sleeps on an empty queue */

static pthread_mutex_t buses_mu = PTHREAD_MUTEX_INITIALIZER;
static bus *buses;

/* ---------- lifetime ---------- */

static void bus_free(bus *b)
{
    for (topic *t = b->topics, *tn; t; t = tn) {
        tn = t->next;
        for (size_t i = 0; i < t->nlog; i++)
            sli_msg_body_unref(t->log[i]);
        free(t->log);
        sli_rcstr_unref(t->name);
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->room);
        free(t);
    }
    pthread_mutex_destroy(&b->mu);
    free(b->name);
    free(b);
}

static void bus_unref(bus *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        bus_free(b);
}

/* Entry leaves the bus for good (acked, or its group was dropped). Under t->mu. */
static void entry_retire(entry *e)
{
    e->g = NULL;
    e->owner = NULL;
    e->delivered = NULL;
    tracker_done(e->trk);
}

/* Drop every entry of g (its last member left, or the bus died). Under t->mu.
 * Entries to unref are chained on *out and released after unlocking. */
static void group_drop_entries(group *g, entry **out)
{
    entry *e;
    while ((e = q_pop_head(g))) {
        entry_retire(e);
        e->next = *out;
        *out = e;
    }
    while ((e = g->delayed)) {
        g->delayed = e->next;
        entry_retire(e);
        e->next = *out;
        *out = e;
    }
    g->qlen = 0;
}

/* Release entries that left the bus (chained by next, collected under
 * t->mu): the bus's hold, and the first delivery's if it never came. */
static void unref_chain(entry *e)
{
    while (e) {
        entry *n = e->next;
        entry_unref(e, e->credit ? 2 : 1);
        e = n;
    }
}

/* ---------- bus table ---------- */

int sli_mem_bus_acquire(sli_url *u, bus **out)
{
    bool persistent;
    uint64_t cap;
    int rc;
    const char *p_opt = sli_url_opt(u, "persistent");
    const char *b_opt = sli_url_opt(u, "buffer");
    if ((rc = sli_url_opt_bool(u, "persistent", false, &persistent)) ||
        (rc = sli_url_opt_u64(u, "buffer", 1, 1u << 30, 8192, &cap)))
        return rc;
    if (u->user || u->password || u->port)
        return sli_err(SL_EINVAL, "mem:// takes no user, password or port: %s", u->raw);
    if (u->path[0] && strcmp(u->path, "/") != 0)
        return sli_err(SL_EINVAL, "mem:// takes no path (use mem://NAME): %s", u->raw);
    const char *name = u->host[0] ? u->host : "default";
    pthread_mutex_lock(&buses_mu);
    bus *b;
    for (b = buses; b; b = b->next)
        if (strcmp(b->name, name) == 0)
            break;
    if (b) {
        if ((p_opt && persistent != b->persistent) || (b_opt && cap != b->capacity)) {
            pthread_mutex_unlock(&buses_mu);
            return sli_err(SL_EBADOPT, "mem://%s is already open with persistent=%s buffer=%zu",
                           name, b->persistent ? "true" : "false", b->capacity);
        }
        b->handles++;
        pthread_mutex_unlock(&buses_mu);
        *out = b;
        return 0;
    }
    b = calloc(1, sizeof *b);
    if (!b || !(b->name = strdup(name))) {
        free(b);
        pthread_mutex_unlock(&buses_mu);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    atomic_init(&b->refs, 1);
    b->handles = 1;
    b->persistent = persistent;
    b->capacity = (size_t)cap;
    pthread_mutex_init(&b->mu, NULL);
    b->next = buses;
    buses = b;
    pthread_mutex_unlock(&buses_mu);
    *out = b;
    return 0;
}

void sli_mem_bus_release(bus *b)
{
    pthread_mutex_lock(&buses_mu);
    if (--b->handles > 0) {
        pthread_mutex_unlock(&buses_mu);
        return;
    }
    for (bus **pp = &buses; *pp; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    pthread_mutex_unlock(&buses_mu);
    /* No handle is left, so no subscription: only named groups hold entries. */
    entry *drop = NULL;
    pthread_mutex_lock(&b->mu);
    for (topic *t = b->topics; t; t = t->next) {
        pthread_mutex_lock(&t->mu);
        for (group *g = t->groups, *gn; g; g = gn) {
            gn = g->next;
            group_drop_entries(g, &drop);
            pthread_cond_destroy(&g->cond);
            free(g->ring);
            free(g->name);
            free(g);
        }
        t->groups = NULL;
        atomic_store_explicit(&t->ngroups, 0, memory_order_relaxed);
        pthread_mutex_unlock(&t->mu);
    }
    b->dead = true;
    pthread_mutex_unlock(&b->mu);
    unref_chain(drop);
    bus_unref(b);
}

topic *sli_mem_topic_get(bus *b, const char *name)
{
    pthread_mutex_lock(&b->mu);
    topic *t;
    for (t = b->topics; t; t = t->next)
        if (strcmp(t->name->s, name) == 0)
            break;
    if (!t && (t = calloc(1, sizeof *t))) {
        if (!(t->name = sli_rcstr_new(name))) {
            free(t);
            t = NULL;
        } else {
            t->b = b;
            /* Critical sections are short (a batch of list operations):
             * spinning briefly before sleeping saves a context switch for
             * most contended acquisitions between publisher and subscriber. */
            pthread_mutexattr_t ma;
            pthread_mutexattr_init(&ma);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
            pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
            pthread_mutex_init(&t->mu, &ma);
            pthread_mutexattr_destroy(&ma);
            sli_cond_init(&t->room);
            t->next = b->topics;
            b->topics = t;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return t;
}

/* ---------- subscriber ---------- */

static int mem_sub_open(void **impl, sli_url *u, unsigned *features)
{
    msubr *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = sli_mem_bus_acquire(u, &s->b);
    if (rc) {
        free(s);
        return rc;
    }
    if (s->b->persistent)
        *features |= SL_FEAT_LATE_SUBSCRIBERS;
    *impl = s;
    return 0;
}

static int mem_subscribe(void *impl, const char *tname, const sl_subscribe_opts *o, void **out)
{
    msubr *sr = impl;
    topic *t = sli_mem_topic_get(sr->b, tname);
    msub *s = calloc(1, sizeof *s);
    if (!t || !s) {
        free(s);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    s->prefetch = o->prefetch;
    pthread_mutex_lock(&t->mu);
    group *g = NULL;
    if (o->group)
        for (g = t->groups; g; g = g->next)
            if (g->name && strcmp(g->name, o->group) == 0)
                break;
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g || (o->group && !(g->name = strdup(o->group)))) {
            free(g);
            free(s);
            pthread_mutex_unlock(&t->mu);
            return sli_err(SL_ENOMEM, "out of memory");
        }
        g->t = t;
        sli_cond_init(&g->cond);
        bool backfill =
            o->start == SL_START_EARLIEST || (o->start == SL_START_DEFAULT && sr->b->persistent);
        for (size_t i = 0; backfill && i < t->nlog; i++) {
            if (q_reserve(g, 1))
                break;
            entry *e = entry_new(t, g, sli_body_ref(t->log[i]), NULL);
            if (!e) {
                sli_msg_body_unref(t->log[i]);
                break;
            }
            q_push_tail(g, e);
            g->qlen++;
        }
        g->next = t->groups;
        t->groups = g;
        atomic_fetch_add_explicit(&t->ngroups, 1, memory_order_relaxed);
    }
    s->g = g;
    s->next = g->members;
    g->members = s;
    pthread_mutex_unlock(&t->mu);
    *out = s;
    return 0;
}

/* Settle the delivery m of e. Under t->mu. An ack retires e and records m
 * as the delivery that did it: the bus's hold on e is released with m's own
 * when m is freed (one atomic operation for both, in mem_hook). A stale
 * delivery (handed back when its subscription closed) changes nothing. */
static void settle_locked(entry *e, sl_msg *m, sli_msg_event ev, unsigned delay_ms)
{
    if (e->delivered != m || !e->g)
        return; /* stale delivery: the entry was handed back already */
    group *g = e->g;
    ifl_del(e->owner, e);
    e->owner = NULL;
    e->delivered = NULL;
    if (g->waiters) /* a consumer may wait for prefetch room or for this entry */
        pthread_cond_broadcast(&g->cond);
    if (ev == SLI_MSG_EV_ACK) {
        entry_retire(e);
        atomic_store_explicit(&e->acked_by, m, memory_order_relaxed);
        q_shrink(g);
        return;
    }
    if (delay_ms) {
        e->ready_at = sli_mono_ms() + delay_ms;
        delayed_insert(g, e);
    } else {
        q_push_head(g, e);
        atomic_fetch_add_explicit(&g->arrivals, 1, memory_order_relaxed);
    }
    g->qlen++;
}

static void mem_hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    entry *e = ctx;
    topic *t = e->t;
    if (ev == SLI_MSG_EV_FREE) {
        bus *b = t->b;
        /* m's own hold, and the bus's when m's ack retired e */
        entry_unref(e, atomic_load_explicit(&e->acked_by, memory_order_relaxed) == m ? 2 : 1);
        bus_unref(b);
        return;
    }
    pthread_mutex_lock(&t->mu);
    settle_locked(e, m, ev, delay_ms);
    pthread_mutex_unlock(&t->mu);
}

/* sl_msg_ack_batch: one lock per run of messages from the same topic. */
static void mem_ack_batch(sl_msg *const *msgs, size_t n)
{
    topic *locked = NULL;
    for (size_t i = 0; i < n; i++) {
        entry *e = sli_msg_hook_ctx(msgs[i]);
        if (e->t != locked) {
            if (locked)
                pthread_mutex_unlock(&locked->mu);
            locked = e->t;
            pthread_mutex_lock(&locked->mu);
        }
        settle_locked(e, msgs[i], SLI_MSG_EV_ACK, 0);
    }
    if (locked)
        pthread_mutex_unlock(&locked->mu);
}

/* Hand e out to s as the delivery m (a blank header). Under t->mu; the
 * caller takes the delivery's bus reference and fills m after unlocking
 * (mem_next_batch). */
static void deliver_locked(msub *s, entry *e, sl_msg *m)
{
    e->deliveries++;
    e->owner = s;
    e->delivered = m;
    ifl_add(s, e);
    if (e->credit)
        e->credit = false; /* the first delivery's reference was taken in advance */
    else
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

/* Wait until s may take an entry from its group. Under t->mu. Returns 0
 * with an entry ready in g and room in s's prefetch, or an error. */
static int wait_ready(msub *s, int timeout_ms)
{
    group *g = s->g;
    int64_t deadline = -2; /* read the clock only when we have to wait */
    bool spun = false;
    for (;;) {
        if (s->closed)
            return sli_err(SL_ECLOSED, "subscription closed");
        int64_t now = -1, due = -1;
        if (g->delayed) {
            now = sli_mono_ms();
            due = delayed_promote(g, now);
        }
        if (s->inflight < s->prefetch && g->rlen)
            return 0;
        if (now < 0)
            now = sli_mono_ms();
        if (deadline == -2)
            deadline = timeout_ms < 0 ? -1 : now + timeout_ms;
        int64_t until = deadline;
        if (due >= 0 && (until < 0 || due < until))
            until = due;
        if (deadline >= 0 && now >= deadline)
            return SL_ETIMEDOUT;
        if (!spun && !g->rlen && !g->delayed && s->inflight < s->prefetch) {
            /* Nothing queued: yield a few times before sleeping. A busy
             * publisher usually queues the next batch meanwhile, which saves
             * its futex wake and our sleep (each a context switch). */
            spun = true;
            uint32_t seen = atomic_load_explicit(&g->arrivals, memory_order_relaxed);
            pthread_mutex_unlock(&g->t->mu);
            for (int i = 0; i < SPIN_YIELDS; i++) {
                if (atomic_load_explicit(&g->arrivals, memory_order_relaxed) != seen)
                    break;
                sched_yield();
            }
            pthread_mutex_lock(&g->t->mu);
            continue;
        }
        room_freed(g->t, NULL); /* publishers fill what room there is while we wait */
        g->waiters++;
        sli_cond_wait_until(&g->cond, &g->t->mu, until);
        g->waiters--;
    }
}

#define NEXT_MAX 64 /* entries one sl_next_batch call takes at most */

static int mem_next_batch(void *impl, sl_msg **out, size_t max, size_t *got, int timeout_ms)
{
    msub *s = impl;
    group *g = s->g;
    topic *t = g->t;
    /* Headers come from this thread's block cache under the lock (a few
     * pointer moves) and are filled after it (lines the publisher wrote),
     * which keeps the publisher's wait short. */
    entry *taken[NEXT_MAX];
    unsigned deliveries[NEXT_MAX];
    size_t n = max < NEXT_MAX ? max : NEXT_MAX, k = 0;
    pthread_mutex_lock(&t->mu);
    s->inside++;
    int rc = wait_ready(s, timeout_ms);
    if (rc == 0) {
        size_t want = s->prefetch - s->inflight;
        if (want > n)
            want = n;
        if (want > g->rlen)
            want = g->rlen;
        for (size_t i = 0; i < want; i++) /* independent misses, not one after another */
            __builtin_prefetch(q_at(g, i), 1);
        for (; k < want; k++) {
            if (!(out[k] = sli_msg_blank())) {
                if (!k)
                    rc = sli_err(SL_ENOMEM, "out of memory");
                break; /* after the first, the failure comes back next call */
            }
            entry *e = q_pop_head(g);
            deliver_locked(s, e, out[k]);
            taken[k] = e;
            deliveries[k] = e->deliveries;
        }
        g->qlen -= k;
    }
    if (k)
        room_freed(t, g);
    if (--s->inside == 0 && s->closed)
        pthread_cond_broadcast(&g->cond);
    /* Each delivery holds a bus reference (taken here at once): the bus
     * keeps the topic, which lends its name, and the entry its body. */
    if (k)
        atomic_fetch_add_explicit(&t->b->refs, (uint32_t)k, memory_order_relaxed);
    pthread_mutex_unlock(&t->mu);
    for (size_t i = 0; i < k; i++)
        sli_msg_lend(out[i], taken[i]->body, t->name, deliveries[i], mem_hook, mem_ack_batch,
                     taken[i]);
    *got = k;
    return rc;
}

static int mem_next(void *impl, sl_msg **out, int timeout_ms)
{
    size_t got;
    return mem_next_batch(impl, out, 1, &got, timeout_ms);
}

static int mem_unsubscribe(void *impl)
{
    msub *s = impl;
    group *g = s->g;
    topic *t = g->t;
    entry *drop = NULL;
    pthread_mutex_lock(&t->mu);
    s->closed = true;
    pthread_cond_broadcast(&g->cond);
    while (s->inside)
        pthread_cond_wait(&g->cond, &t->mu);
    /* hand unacked entries back, keeping their delivery order */
    entry *e;
    while ((e = s->ifl_tail)) {
        ifl_del(s, e);
        e->owner = NULL;
        e->delivered = NULL;
        q_push_head(g, e);
        g->qlen++;
    }
    for (msub **pp = &g->members; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    if (!g->name) {
        group_drop_entries(g, &drop);
        for (group **pp = &t->groups; *pp; pp = &(*pp)->next)
            if (*pp == g) {
                *pp = g->next;
                break;
            }
        atomic_fetch_sub_explicit(&t->ngroups, 1, memory_order_relaxed);
        pthread_cond_destroy(&g->cond);
        free(g->ring);
        free(g);
        room_freed(t, NULL);
    } else {
        pthread_cond_broadcast(&g->cond);
    }
    pthread_mutex_unlock(&t->mu);
    unref_chain(drop);
    free(s);
    return 0;
}

static int mem_sub_close(void *impl)
{
    msubr *s = impl;
    sli_mem_bus_release(s->b);
    free(s);
    return 0;
}

const sli_backend sli_mem_backend = {
    .scheme = "mem",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_ORDERED | SL_FEAT_DELAYED_NACK |
                SL_FEAT_WAIT_ACK | SL_FEAT_DELAYED_PUBLISH,
    .pub_open = sli_mem_pub_open,
    .publish = sli_mem_publish,
    .pub_close = sli_mem_pub_close,
    .sub_open = mem_sub_open,
    .subscribe = mem_subscribe,
    .next = mem_next,
    .next_batch = mem_next_batch,
    .unsubscribe = mem_unsubscribe,
    .sub_close = mem_sub_close,
};
