/*
 * instant_ack.c - ack the input before the rest of the chain runs
 * (watermill's InstantAck): throughput over delivery guarantees. A later
 * failure cannot nack it any more (the router's nack is then refused by the
 * message's one-way ack state, and ignored), so the message is not
 * redelivered.
 */
#include "router/middleware/mw_int.h"

static int instant_ack_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                            sl_msg_list *out)
{
    (void)st;
    int rc = sl_msg_ack(in);
    if (rc)
        return rc;
    return sl_mw_next(next, ctx, in, out);
}

int sl_mw_instant_ack(sl_middleware *out)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_mw_instant_ack: out is NULL");
    *out = (sl_middleware){"instant_ack", 0, instant_ack_call, NULL, NULL};
    return 0;
}
