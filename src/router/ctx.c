/*
 * ctx.c - cancellation/deadline contexts (see sluice/ctx.h).
 *
 * A context is a 32-bit futex word (0 live, 1 cancelled), an effective
 * deadline fixed at creation (min of its own and its parent's), a parent
 * pointer and a list of live children. Cancel sets the word under the
 * context's mutex and walks the children (lock order: parent -> child), so a
 * child created concurrently either sees the parent cancelled or is on the
 * list when the parent's cancel walks it. Waiters sleep on the futex word
 * with the effective deadline as timeout, so a deadline needs no timer
 * thread.
 *
 * Lifetime: refs = the creator's reference + one per child (a child reads
 * its parent's mutex when it is freed). sl_ctx_free() cancels, unlinks the
 * context from its parent's list and drops the creator's reference.
 */
#include <stdlib.h>
#include <time.h>

#include "core/internal.h"
#include "sluice/ctx.h"

struct sl_ctx {
    _Atomic uint32_t refs;
    _Atomic uint32_t cancelled; /* futex word */
    int64_t deadline;           /* effective, mono ms, -1 none */
    sl_ctx *parent;
    pthread_mutex_t mu; /* guards children and the cancel walk */
    sl_ctx *children;
    sl_ctx *prev, *next; /* siblings, guarded by parent->mu */
};

int64_t sl_ctx_now_ms(void)
{
    return sli_mono_ms();
}

static void ctx_unref(sl_ctx *c)
{
    while (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        sl_ctx *p = c->parent;
        pthread_mutex_destroy(&c->mu);
        free(c);
        c = p;
    }
}

int sl_ctx_new_deadline(sl_ctx **out, sl_ctx *parent, int64_t deadline_ms)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_ctx_new: out is NULL");
    sl_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sli_err(SL_ENOMEM, "out of memory");
    atomic_init(&c->refs, 1);
    atomic_init(&c->cancelled, 0);
    pthread_mutex_init(&c->mu, NULL);
    c->deadline = deadline_ms < 0 ? -1 : deadline_ms;
    if (parent) {
        if (parent->deadline >= 0 && (c->deadline < 0 || parent->deadline < c->deadline))
            c->deadline = parent->deadline;
        atomic_fetch_add_explicit(&parent->refs, 1, memory_order_relaxed);
        c->parent = parent;
        pthread_mutex_lock(&parent->mu);
        if (atomic_load(&parent->cancelled))
            atomic_store(&c->cancelled, 1);
        c->next = parent->children;
        if (parent->children)
            parent->children->prev = c;
        parent->children = c;
        pthread_mutex_unlock(&parent->mu);
    }
    *out = c;
    return 0;
}

int sl_ctx_new(sl_ctx **out, sl_ctx *parent)
{
    return sl_ctx_new_deadline(out, parent, -1);
}

int sl_ctx_new_timeout(sl_ctx **out, sl_ctx *parent, int64_t timeout_ms)
{
    return sl_ctx_new_deadline(out, parent, timeout_ms < 0 ? -1 : sli_mono_ms() + timeout_ms);
}

void sl_ctx_cancel(sl_ctx *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    if (atomic_exchange(&c->cancelled, 1) == 0)
        sli_futex_wake_all(&c->cancelled);
    for (sl_ctx *k = c->children; k; k = k->next)
        sl_ctx_cancel(k);
    pthread_mutex_unlock(&c->mu);
}

bool sl_ctx_done(const sl_ctx *c)
{
    if (!c)
        return false;
    if (atomic_load_explicit(&((sl_ctx *)c)->cancelled, memory_order_acquire))
        return true;
    return c->deadline >= 0 && sli_mono_ms() >= c->deadline;
}

int sl_ctx_err(const sl_ctx *c)
{
    if (!c)
        return 0;
    if (atomic_load_explicit(&((sl_ctx *)c)->cancelled, memory_order_acquire))
        return SL_ECANCELED;
    if (c->deadline >= 0 && sli_mono_ms() >= c->deadline)
        return SL_ETIMEDOUT;
    return 0;
}

int64_t sl_ctx_deadline(const sl_ctx *c)
{
    return c ? c->deadline : -1;
}

int64_t sl_ctx_remaining_ms(const sl_ctx *c)
{
    if (!c || c->deadline < 0)
        return -1;
    int64_t left = c->deadline - sli_mono_ms();
    return left > 0 ? left : 0;
}

int sl_ctx_wait(sl_ctx *c, int64_t timeout_ms)
{
    int64_t until = timeout_ms < 0 ? -1 : sli_mono_ms() + timeout_ms;
    if (!c) {
        if (until < 0)
            return sli_err(SL_EINVAL, "sl_ctx_wait: no context and no timeout");
        struct timespec ts = {(time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
        return 0;
    }
    if (c->deadline >= 0 && (until < 0 || c->deadline < until))
        until = c->deadline;
    for (;;) {
        int err = sl_ctx_err(c);
        if (err)
            return err;
        if (until >= 0 && sli_mono_ms() >= until)
            return 0;
        sli_futex_wait(&c->cancelled, 0, until);
    }
}

void sl_ctx_free(sl_ctx *c)
{
    if (!c)
        return;
    sl_ctx_cancel(c);
    sl_ctx *p = c->parent;
    if (p) {
        pthread_mutex_lock(&p->mu);
        if (c->prev)
            c->prev->next = c->next;
        else
            p->children = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->prev = c->next = NULL;
        pthread_mutex_unlock(&p->mu);
    }
    ctx_unref(c);
}
