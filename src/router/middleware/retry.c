/*
 * retry.c - the retry middleware (watermill's middleware.Retry): run the
 * rest of the chain again when it fails, with exponential backoff.
 *
 * Attempt 1 runs at once; before retry k (1..max_retries) it sleeps
 * initial * multiplier^(k-1), capped at max_interval, then randomised to
 * [d*(1-r), d*(1+r)]. It gives up early when the next sleep would pass
 * max_elapsed_ms since the first attempt, or when the context is done (the
 * sleep is sl_ctx_wait, so a router cut-off or a timeout ends it). Outputs
 * of failed attempts are dropped so only the successful attempt's
 * messages are published. The retrying happens in the worker: the message
 * stays in flight (not redelivered) while it retries.
 */
#include <stdlib.h>

#include "router/middleware/mw_int.h"

void sl_retry_opts_init(sl_retry_opts *o)
{
    *o = (sl_retry_opts){
        .max_retries = 3,
        .initial_ms = 100,
        .multiplier = 2.0,
        .max_interval_ms = 10000,
        .max_elapsed_ms = 0,
        .randomization = 0.5,
    };
}

static unsigned retry_delay(const sl_retry_opts *o, unsigned k)
{
    double d = sli_backoff(o->initial_ms, o->multiplier, o->max_interval_ms, k - 1);
    if (o->randomization > 0) {
        double u = (double)(sli_rand64() >> 11) * (1.0 / 9007199254740992.0);
        d *= 1.0 + o->randomization * (2.0 * u - 1.0);
    }
    return d < 0 ? 0 : (unsigned)d;
}

int sli_retry_run(const sl_retry_opts *o, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                  sl_msg_list *out)
{
    size_t keep = out->n;
    int64_t start = sli_mono_ms();
    int rc = sl_mw_next(next, ctx, in, out);
    for (unsigned k = 1; rc != 0 && k <= o->max_retries; k++) {
        sl_msg_list_truncate(out, keep);
        unsigned d = retry_delay(o, k);
        if (o->max_elapsed_ms && sli_mono_ms() - start + d > o->max_elapsed_ms)
            break;
        if (o->on_retry)
            o->on_retry(k, d, rc, in, o->user);
        if (d && sl_ctx_wait(ctx, d))
            break; /* context done: stop retrying, keep the error */
        if (sl_ctx_done(ctx))
            break;
        rc = sl_mw_next(next, ctx, in, out);
    }
    if (rc)
        sl_msg_list_truncate(out, keep);
    return rc;
}

static int check_retry(const sl_retry_opts *o)
{
    if (!o || o->multiplier < 1.0 || o->randomization < 0 || o->randomization > 1)
        return sli_err(SL_EINVAL, "retry: multiplier must be >= 1 and randomization in [0,1]");
    return 0;
}

static int retry_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    return sli_retry_run(st, next, ctx, in, out);
}

int sl_mw_retry(sl_middleware *out, const sl_retry_opts *o)
{
    int rc = check_retry(o);
    if (rc || !out)
        return rc ? rc : sli_err(SL_EINVAL, "sl_mw_retry: out is NULL");
    sl_retry_opts *st = malloc(sizeof *st);
    if (!st)
        return sli_err(SL_ENOMEM, "out of memory");
    *st = *o;
    *out = (sl_middleware){"retry", SL_MW_RETRIES, retry_call, free, st};
    return 0;
}

/* ---- retry + poison, one policy in the only safe order ---- */

typedef struct retry_poison {
    sl_retry_opts r;
    sli_poison p;
} retry_poison;

static int rp_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    retry_poison *rp = st;
    size_t keep = out->n;
    sli_err_clear();
    int rc = sli_retry_run(&rp->r, next, ctx, in, out);
    return rc ? sli_poison_handle(&rp->p, next, in, rc, out, keep) : 0;
}

static void rp_free(void *st)
{
    retry_poison *rp = st;
    sli_poison_fini(&rp->p);
    free(rp);
}

int sl_mw_retry_poison(sl_middleware *out, const sl_retry_opts *retry, const sl_poison_opts *poison)
{
    int rc = check_retry(retry);
    if (rc || !out)
        return rc ? rc : sli_err(SL_EINVAL, "sl_mw_retry_poison: out is NULL");
    retry_poison *rp = calloc(1, sizeof *rp);
    if (!rp)
        return sli_err(SL_ENOMEM, "out of memory");
    rp->r = *retry;
    if ((rc = sli_poison_init(&rp->p, poison))) {
        free(rp);
        return rc;
    }
    /* Both flags: nothing may retry outside it (its poison would disable
     * that retry); retries inside it are fine. */
    *out = (sl_middleware){"retry_poison", SL_MW_RETRIES | SL_MW_POISON, rp_call, rp_free, rp};
    return 0;
}
