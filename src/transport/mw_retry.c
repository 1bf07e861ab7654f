/*
 * mw_retry.c - the transport's retry middleware: a failed publish is tried
 * again after an exponential backoff (initial_ms * multiplier^k, capped at
 * max_interval_ms), at most max_retries times and within max_elapsed_ms.
 * Errors that cannot get better (SL_EINVAL, SL_ECLOSED, SL_ENOTSUP) are not
 * retried. Backoff sleeps go through sl_transport_call_sleep, so a shutdown
 * deadline ends them; the envelope then fails with its last publish error.
 */
#include <limits.h>
#include <stdlib.h>

#include "transport/transport_int.h"

void sl_transport_retry_opts_init(sl_transport_retry_opts *o)
{
    if (!o)
        return;
    o->max_retries = 3;
    o->initial_ms = 100;
    o->multiplier = 2.0;
    o->max_interval_ms = 5000;
    o->max_elapsed_ms = 0;
    o->on_retry = NULL;
    o->on_retry_ctx = NULL;
}

static bool retryable(int rc)
{
    return rc != SL_EINVAL && rc != SL_ECLOSED && rc != SL_ENOTSUP;
}

static int retry_mw(void *ctx, sl_transport_call *call, sl_msg *msg)
{
    const sl_transport_retry_opts *o = ctx;
    int64_t start = sli_mono_ms();
    double wait = o->initial_ms;
    int rc = sl_transport_call_next(call, msg);
    for (unsigned attempt = 1; rc && retryable(rc) && attempt <= o->max_retries; attempt++) {
        /* no max_interval: the wait still fits an unsigned (a double past
           UINT_MAX has no unsigned value: the cast would be undefined) */
        double cap = o->max_interval_ms ? (double)o->max_interval_ms : (double)UINT_MAX;
        double capped = wait > cap ? cap : wait;
        unsigned ms = (unsigned)capped;
        if (o->max_elapsed_ms && sli_mono_ms() - start + ms > o->max_elapsed_ms)
            break;
        if (o->on_retry)
            o->on_retry(o->on_retry_ctx, msg, attempt, rc);
        if (sl_transport_call_sleep(call, ms) != 0)
            break;
        rc = sl_transport_call_next(call, msg);
        wait = capped * o->multiplier;
    }
    return rc;
}

int sl_transport_mw_retry(sl_transport_mw *out, const sl_transport_retry_opts *opts)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_transport_mw_retry: out is NULL");
    sl_transport_retry_opts *o = malloc(sizeof *o);
    if (!o)
        return sli_err(SL_ENOMEM, "out of memory");
    if (opts)
        *o = *opts;
    else
        sl_transport_retry_opts_init(o);
    if (!(o->multiplier >= 1.0) || o->multiplier > 1000.0) {
        double m = o->multiplier;
        free(o);
        return sli_err(SL_EINVAL, "sl_transport_mw_retry: multiplier %g out of range 1..1000", m);
    }
    out->fn = retry_mw;
    out->ctx = o;
    out->free_ctx = free;
    return 0;
}
