/*
 * future.c - sl_future: a one-shot publish outcome another thread can wait
 * for. Reference counted (the caller and the transport each hold one) so
 * either side may let go first. The outcome is written once; `done` is a
 * futex word so waiting costs no mutex.
 */
#include <stdlib.h>

#include "transport/transport_int.h"

int sl_future_new(sl_future **out)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_future_new: out is NULL");
    sl_future *f = malloc(sizeof *f);
    if (!f) {
        *out = NULL;
        return sli_err(SL_ENOMEM, "out of memory");
    }
    atomic_init(&f->refs, 1);
    atomic_init(&f->done, 0);
    atomic_init(&f->claimed, 0);
    atomic_init(&f->status, 0);
    *out = f;
    return 0;
}

sl_future *sli_future_ref(sl_future *f)
{
    if (f)
        atomic_fetch_add(&f->refs, 1);
    return f;
}

void sli_future_complete(sl_future *f, int status)
{
    uint32_t unclaimed = 0;
    if (!atomic_compare_exchange_strong(&f->claimed, &unclaimed, 1))
        return; /* the first outcome wins (one future used by two envelopes) */
    atomic_store(&f->status, status);
    atomic_store(&f->done, 1); /* seq_cst: status is visible before done */
    sli_futex_wake_all(&f->done);
}

int sl_future_wait(sl_future *f, int timeout_ms, int *status)
{
    if (!f)
        return sli_err(SL_EINVAL, "sl_future_wait: future is NULL");
    int64_t deadline = sli_deadline_ms(timeout_ms);
    while (atomic_load(&f->done) == 0) {
        if (timeout_ms == 0 || sli_futex_wait(&f->done, 0, deadline) == SL_ETIMEDOUT) {
            if (atomic_load(&f->done))
                break;
            return sli_err(SL_ETIMEDOUT, "sl_future_wait: no outcome within %d ms", timeout_ms);
        }
    }
    if (status)
        *status = atomic_load(&f->status);
    return 0;
}

bool sl_future_done(const sl_future *f)
{
    return f && atomic_load(&f->done) != 0;
}

void sl_future_free(sl_future *f)
{
    if (f && atomic_fetch_sub(&f->refs, 1) == 1)
        free(f);
}
