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
 * saves most wake-ups while a publisher is busy.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/mem/mem.h"

#define SPIN_YIELDS 20 /* yields before a consumer sleeps on an empty queue */

static pthread_mutex_t buses_mu = PTHREAD_MUTEX_INITIALIZER;
static bus *buses;

/* ---------- lifetime ---------- */

static void tracker_done(tracker *k)
{
    if (!k)
        return;
    if (atomic_fetch_sub(&k->left, 1) == 1)
        sli_futex_wake_all(&k->left);
}

static void tracker_unref(tracker *k)
{
    if (k && atomic_fetch_sub(&k->refs, 1) == 1)
        free(k);
}

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

static void entry_unref(entry *e, uint32_t n)
{
    if (atomic_fetch_sub_explicit(&e->refs, n, memory_order_acq_rel) != n)
        return;
    sli_msg_body_unref(e->body);
    tracker_unref(e->trk);
    sli_block_put(SLI_BLOCK_NODE, e);
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

static int bus_acquire(sli_url *u, bus **out)
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
            return sli_err(SL_EBADOPT, "mem://%s is already open with persistent=%s buffer=%zu", name,
                           b->persistent ? "true" : "false", b->capacity);
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

static void bus_release(bus *b)
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

static topic *topic_get(bus *b, const char *name)
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

/* ---------- publisher ---------- */

static int mem_pub_open(void **impl, sli_url *u, unsigned *features)
{
    mpub *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc;
    if ((rc = sli_url_opt_bool(u, "block", true, &p->block)) ||
        (rc = sli_url_opt_bool(u, "wait_ack", false, &p->wait_ack)) || (rc = bus_acquire(u, &p->b))) {
        free(p);
        return rc;
    }
    if (p->b->persistent)
        *features |= SL_FEAT_LATE_SUBSCRIBERS;
    *impl = p;
    return 0;
}

static entry *entry_new(topic *t, group *g, void *body, tracker *trk)
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
    e->trk = trk;
    if (trk) {
        atomic_fetch_add(&trk->refs, 1);
        atomic_fetch_add(&trk->left, 1);
    }
    return e;
}

static bool groups_have_room(topic *t, size_t need, size_t cap)
{
    for (group *g = t->groups; g; g = g->next)
        if (g->qlen + need > cap)
            return false;
    return true;
}

/* Entries made before the topic lock is taken, for the groups the topic
 * had a moment ago: e[i * cols + j] for message i and group j (NULL where
 * one could not be made; the locked path makes it then). Allocating an
 * entry touches memory the subscriber's thread freed (cache misses), which
 * is better done while the subscriber can still take the lock. */
#define PREP_MAX 256
typedef struct prep {
    entry *e[PREP_MAX];
    size_t rows, cols;
} prep;

static void prep_make(prep *pr, topic *t, sl_msg *const *msgs, size_t n, tracker *trk)
{
    pr->cols = atomic_load_explicit(&t->ngroups, memory_order_relaxed);
    pr->rows = pr->cols && pr->cols <= PREP_MAX ? PREP_MAX / pr->cols : 0;
    if (pr->rows > n)
        pr->rows = n;
    for (size_t i = 0; i < pr->rows; i++)
        for (size_t j = 0; j < pr->cols; j++) {
            void *body = sli_msg_body_ref(msgs[i]);
            entry *e = entry_new(t, NULL, body, trk);
            if (!e)
                sli_msg_body_unref(body);
            pr->e[i * pr->cols + j] = e;
        }
}

/* The entry of message i for the j-th group (not yet queued), or NULL. */
static entry *prep_take(prep *pr, size_t i, size_t j)
{
    if (i >= pr->rows || j >= pr->cols)
        return NULL;
    entry *e = pr->e[i * pr->cols + j];
    pr->e[i * pr->cols + j] = NULL;
    return e;
}

/* Release the entries nobody took (a group went, the publish stopped). */
static void prep_release(prep *pr)
{
    for (size_t i = 0; i < pr->rows * pr->cols; i++)
        if (pr->e[i]) {
            tracker_done(pr->e[i]->trk);
            entry_unref(pr->e[i], 2);
        }
}

/* Wait under t->mu until every group has room for one more entry. */
static int wait_room(mpub *p, topic *t, const char *tname, int64_t deadline, int timeout_ms,
                     size_t done, size_t n)
{
    size_t cap = p->b->capacity;
    while (!groups_have_room(t, 1, cap)) {
        if (atomic_load(&p->closing))
            return sli_err(SL_ECLOSED, "mem publisher closed while waiting for room");
        /* Wake the subscribers for what this batch queued so far:
         * they are the ones who make room. */
        for (group *g = t->groups; g; g = g->next)
            if (g->waiters)
                pthread_cond_broadcast(&g->cond);
        int64_t until = sli_mono_ms() + ROOM_POLL_MS;
        if (deadline >= 0 && deadline < until)
            until = deadline;
        t->room_waiters++;
        int w = sli_cond_wait_until(&t->room, &t->mu, until);
        t->room_waiters--;
        if (w == ETIMEDOUT && until == deadline && !groups_have_room(t, 1, cap))
            return sli_err(SL_ETIMEDOUT, "mem://%s topic '%s': no room within %d ms (%zu of %zu published)",
                           p->b->name, tname, timeout_ms, done, n);
    }
    return 0;
}

/* Queue message m (the i-th of the call) on every group. Under t->mu. */
static int place_locked(mpub *p, topic *t, prep *pr, sl_msg *m, size_t i, bool delayed, tracker *trk)
{
    if (p->b->persistent) {
        if (t->nlog == t->caplog) {
            size_t nc = t->caplog ? t->caplog * 2 : 64;
            void **nl = realloc(t->log, nc * sizeof *nl);
            if (!nl)
                return sli_err(SL_ENOMEM, "out of memory");
            t->log = nl;
            t->caplog = nc;
        }
        t->log[t->nlog++] = sli_msg_body_ref(m);
    }
    int64_t ready_at = 0; /* monotonic ms; 0: now */
    if (delayed) {
        int64_t at, wall = sli_wall_ms();
        sli_msg_deliver_at(m, &at);
        if (at > wall)
            ready_at = sli_mono_ms() + (at - wall);
    }
    size_t j = 0;
    for (group *g = t->groups; g; g = g->next, j++) {
        if (q_reserve(g, 1))
            return sli_err(SL_ENOMEM, "out of memory");
        entry *e = prep_take(pr, i, j);
        if (!e) {
            void *body = sli_msg_body_ref(m);
            if (!(e = entry_new(t, g, body, trk))) {
                sli_msg_body_unref(body);
                return sli_err(SL_ENOMEM, "out of memory");
            }
        }
        e->g = g;
        if (ready_at) {
            e->ready_at = ready_at;
            delayed_insert(g, e);
        } else {
            q_push_tail(g, e);
        }
        g->qlen++;
    }
    return 0;
}

/* Wait (in short slices, so that a close of this publisher, which cannot
 * reach our tracker, is noticed: SL_ECLOSED) until every entry of trk is
 * acked or dropped. */
static int wait_acks(mpub *p, tracker *trk, int64_t deadline, int timeout_ms)
{
    uint32_t left;
    while ((left = atomic_load(&trk->left)) != 0) {
        if (atomic_load(&p->closing))
            return sli_err(SL_ECLOSED, "mem publisher closed while waiting for acks");
        int64_t slice = sli_mono_ms() + 20;
        if (deadline >= 0 && deadline < slice)
            slice = deadline;
        if (sli_futex_wait(&trk->left, left, slice) == SL_ETIMEDOUT && slice == deadline &&
            atomic_load(&trk->left) != 0)
            return sli_err(SL_ETIMEDOUT, "mem: acks not all received within %d ms", timeout_ms);
    }
    return 0;
}

static int mem_publish(void *impl, const char *tname, sl_msg *const *msgs, size_t n,
                       const sl_publish_opts *opts)
{
    mpub *p = impl;
    if (atomic_load(&p->closing))
        return sli_err(SL_ECLOSED, "mem publisher is closed");
    topic *t = topic_get(p->b, tname);
    if (!t)
        return sli_err(SL_ENOMEM, "out of memory");
    bool block = p->block && !(opts->flags & SL_PUBLISH_NONBLOCK);
    bool wait_ack = p->wait_ack || (opts->flags & SL_PUBLISH_WAIT_ACK);
    int64_t deadline = sli_deadline_ms(opts->timeout_ms);
    tracker *trk = NULL;
    if (wait_ack) {
        if (!(trk = malloc(sizeof *trk)))
            return sli_err(SL_ENOMEM, "out of memory");
        atomic_init(&trk->left, 1); /* our own hold until all entries exist */
        atomic_init(&trk->refs, 1);
    }
    /* Validate every deliver_at first: bad input publishes nothing. */
    bool delayed = false;
    for (size_t i = 0; i < n; i++) {
        int64_t at;
        if (sli_msg_deliver_at(msgs[i], &at) != 0) {
            free(trk);
            return SL_EINVAL;
        }
        delayed |= at > 0;
    }
    atomic_fetch_add(&p->inside, 1);
    prep pr;
    prep_make(&pr, t, msgs, n, trk);
    size_t cap = p->b->capacity;
    int rc = 0;
    size_t done = 0;
    pthread_mutex_lock(&t->mu);
    if (!block && !groups_have_room(t, n, cap)) {
        rc = sli_err(SL_EAGAIN, "mem://%s topic '%s': buffer full (%zu)", p->b->name, tname, cap);
        goto out;
    }
    for (; done < n; done++)
        if ((rc = wait_room(p, t, tname, deadline, opts->timeout_ms, done, n)) ||
            (rc = place_locked(p, t, &pr, msgs[done], done, delayed, trk)))
            break;
out:
    for (group *g = t->groups; g; g = g->next) {
        atomic_fetch_add_explicit(&g->arrivals, 1, memory_order_relaxed);
        if (g->waiters)
            pthread_cond_broadcast(&g->cond);
    }
    pthread_mutex_unlock(&t->mu);
    prep_release(&pr);
    if (opts->published)
        *opts->published = done;
    if (trk) {
        tracker_done(trk); /* drop our own hold */
        if (rc == 0)
            rc = wait_acks(p, trk, deadline, opts->timeout_ms);
        tracker_unref(trk);
    }
    atomic_fetch_sub(&p->inside, 1);
    return rc;
}

static void wake_all_topics(bus *b)
{
    pthread_mutex_lock(&b->mu);
    for (topic *t = b->topics; t; t = t->next) {
        pthread_mutex_lock(&t->mu);
        pthread_cond_broadcast(&t->room);
        pthread_mutex_unlock(&t->mu);
    }
    pthread_mutex_unlock(&b->mu);
}

static int mem_pub_close(void *impl)
{
    mpub *p = impl;
    atomic_store(&p->closing, true);
    while (atomic_load(&p->inside)) {
        wake_all_topics(p->b);
        usleep(500);
    }
    bus_release(p->b);
    free(p);
    return 0;
}

/* ---------- subscriber ---------- */

static int mem_sub_open(void **impl, sli_url *u, unsigned *features)
{
    msubr *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc = bus_acquire(u, &s->b);
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
    topic *t = topic_get(sr->b, tname);
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
        bool backfill = o->start == SL_START_EARLIEST ||
                        (o->start == SL_START_DEFAULT && sr->b->persistent);
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

/* Settle the delivery m of e. Under t->mu. Returns true when e was acked
 * (the caller unrefs it after unlocking); a stale delivery (handed back when
 * its subscription closed) changes nothing. */
static bool settle_locked(entry *e, sl_msg *m, sli_msg_event ev, unsigned delay_ms)
{
    if (e->delivered != m || !e->g)
        return false; /* stale delivery: the entry was handed back already */
    group *g = e->g;
    ifl_del(e->owner, e);
    e->owner = NULL;
    e->delivered = NULL;
    if (g->waiters) /* a consumer may wait for prefetch room or for this entry */
        pthread_cond_broadcast(&g->cond);
    if (ev == SLI_MSG_EV_ACK) {
        entry_retire(e);
        return true;
    }
    if (delay_ms) {
        e->ready_at = sli_mono_ms() + delay_ms;
        delayed_insert(g, e);
    } else {
        q_push_head(g, e);
        atomic_fetch_add_explicit(&g->arrivals, 1, memory_order_relaxed);
    }
    g->qlen++;
    return false;
}

static void mem_hook(sl_msg *m, sli_msg_event ev, unsigned delay_ms, void *ctx)
{
    entry *e = ctx;
    topic *t = e->t;
    if (ev == SLI_MSG_EV_FREE) {
        bus *b = t->b;
        entry_unref(e, 1);
        bus_unref(b);
        return;
    }
    pthread_mutex_lock(&t->mu);
    bool release = settle_locked(e, m, ev, delay_ms);
    pthread_mutex_unlock(&t->mu);
    if (release)
        entry_unref(e, 1); /* acked: its delivery used the credit */
}

/* sl_msg_ack_batch: one lock per run of messages from the same topic. */
static void mem_ack_batch(sl_msg *const *msgs, size_t n)
{
    entry *drop = NULL;
    topic *locked = NULL;
    for (size_t i = 0; i < n; i++) {
        entry *e = sli_msg_hook_ctx(msgs[i]);
        if (e->t != locked) {
            if (locked)
                pthread_mutex_unlock(&locked->mu);
            locked = e->t;
            pthread_mutex_lock(&locked->mu);
        }
        if (settle_locked(e, msgs[i], SLI_MSG_EV_ACK, 0)) {
            e->next = drop;
            drop = e;
        }
    }
    if (locked)
        pthread_mutex_unlock(&locked->mu);
    unref_chain(drop);
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
        sli_msg_lend(out[i], taken[i]->body, t->name, deliveries[i], mem_hook, mem_ack_batch, taken[i]);
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
    bus_release(s->b);
    free(s);
    return 0;
}

const sli_backend sli_mem_backend = {
    .scheme = "mem",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_ORDERED | SL_FEAT_DELAYED_NACK | SL_FEAT_WAIT_ACK |
                SL_FEAT_DELAYED_PUBLISH,
    .pub_open = mem_pub_open,
    .publish = mem_publish,
    .pub_close = mem_pub_close,
    .sub_open = mem_sub_open,
    .subscribe = mem_subscribe,
    .next = mem_next,
    .next_batch = mem_next_batch,
    .unsubscribe = mem_unsubscribe,
    .sub_close = mem_sub_close,
};
