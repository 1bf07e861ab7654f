/*
 * duplicator.c - run the rest of the chain twice (watermill's Duplicator)
 * to show a handler is idempotent. Both runs' outputs are published; the
 * second run only happens when the first succeeded.
 */
#include "router/middleware/mw_int.h"

static int duplicator_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                           sl_msg_list *out)
{
    (void)st;
    int rc = sl_mw_next(next, ctx, in, out);
    if (rc)
        return rc;
    return sl_mw_next(next, ctx, in, out);
}

int sl_mw_duplicator(sl_middleware *out)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_mw_duplicator: out is NULL");
    *out = (sl_middleware){"duplicator", 0, duplicator_call, NULL, NULL};
    return 0;
}
