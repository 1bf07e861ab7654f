/*
 * random_fail.c - fail with SL_EHANDLER with probability p before the rest
 * of the chain runs (watermill's RandomFail), to exercise error paths in
 * tests. Uses the per-thread random generator, so it is lock-free.
 */
#include <stdlib.h>

#include "router/middleware/mw_int.h"

static int random_fail_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                            sl_msg_list *out)
{
    uint64_t threshold = *(uint64_t *)st;
    if ((sli_rand64() >> 11) < threshold)
        return sl_handler_fail(SL_EHANDLER, "random fail");
    return sl_mw_next(next, ctx, in, out);
}

int sl_mw_random_fail(sl_middleware *out, double p)
{
    if (!out || !(p >= 0.0 && p <= 1.0))
        return sli_err(SL_EINVAL, "random_fail: probability must be in [0,1]");
    uint64_t *t = malloc(sizeof *t);
    if (!t)
        return sli_err(SL_ENOMEM, "out of memory");
    /* compare 53 random bits with p * 2^53 (p == 1 always fails) */
    *t = (uint64_t)(p * 9007199254740992.0);
    *out = (sl_middleware){"random_fail", 0, random_fail_call, free, t};
    return 0;
}
