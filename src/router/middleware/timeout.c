/*
 * timeout.c - give the rest of the chain a context that is done `ms` after
 * the call starts (watermill's Timeout). C cannot stop a thread, so the
 * handler must look at the context (sl_ctx_done / sl_ctx_wait); what it
 * returns is passed on unchanged (typically sl_ctx_err(ctx) ==
 * SL_ETIMEDOUT, so the message is nacked).
 */
#include "router/middleware/mw_int.h"

static void free_ctx(void *c, intptr_t unused)
{
    (void)unused;
    sl_ctx_free(c);
}

static int timeout_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    unsigned ms = (unsigned)(uintptr_t)st;
    sl_ctx *c;
    int rc = sl_ctx_new_timeout(&c, ctx, ms);
    if (rc)
        return rc;
    sli_unwind_push(free_ctx, c, 0); /* a caught panic skips the free below */
    rc = sl_mw_next(next, c, in, out);
    sli_unwind_pop();
    sl_ctx_free(c);
    return rc;
}

int sl_mw_timeout(sl_middleware *out, unsigned ms)
{
    if (!out || !ms)
        return sli_err(SL_EINVAL, "timeout: ms must be > 0");
    *out = (sl_middleware){"timeout", 0, timeout_call, NULL, (void *)(uintptr_t)ms};
    return 0;
}
