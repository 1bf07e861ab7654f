/*
 * mem_pub.c - the publishing side of mem:// (design in mem.c): publishers
 * open and close, and a publish queues one entry per group of the topic,
 * waiting for room (backpressure), for the acks (wait_ack), or neither.
 * Entries are made before the topic lock is taken (prep_make), so that the
 * lock is held for little more than the pointer writes into each group's
 * ready ring.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "backends/mem/mem.h"

int sli_mem_pub_open(void **impl, sli_url *u, unsigned *features)
{
    mpub *p = calloc(1, sizeof *p);
    if (!p)
        return sli_err(SL_ENOMEM, "out of memory");
    int rc;
    if ((rc = sli_url_opt_bool(u, "block", true, &p->block)) ||
        (rc = sli_url_opt_bool(u, "wait_ack", false, &p->wait_ack)) ||
        (rc = sli_mem_bus_acquire(u, &p->b))) {
        free(p);
        return rc;
    }
    if (p->b->persistent)
        *features |= SL_FEAT_LATE_SUBSCRIBERS;
    *impl = p;
    return 0;
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
            return sli_err(SL_ETIMEDOUT,
                           "mem://%s topic '%s': no room within %d ms (%zu of %zu published)",
                           p->b->name, tname, timeout_ms, done, n);
    }
    return 0;
}

/* Queue message m (the i-th of the call) on every group. Under t->mu. */
static int place_locked(mpub *p, topic *t, prep *pr, sl_msg *m, size_t i, bool delayed,
                        tracker *trk)
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

int sli_mem_publish(void *impl, const char *tname, sl_msg *const *msgs, size_t n,
                    const sl_publish_opts *opts)
{
    mpub *p = impl;
    if (atomic_load(&p->closing))
        return sli_err(SL_ECLOSED, "mem publisher is closed");
    topic *t = sli_mem_topic_get(p->b, tname);
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

int sli_mem_pub_close(void *impl)
{
    mpub *p = impl;
    atomic_store(&p->closing, true);
    while (atomic_load(&p->inside)) {
        wake_all_topics(p->b);
        usleep(500);
    }
    sli_mem_bus_release(p->b);
    free(p);
    return 0;
}
