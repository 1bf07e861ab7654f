/*
 * correlation.c - copy the input's correlation_id metadata to every message
 * the rest of the chain produced (watermill's CorrelationID), so a flow of
 * handlers can be traced end to end. Outputs that already carry one keep
 * theirs. Applied whatever the chain returned (outputs of failures are
 * dropped by the router anyway).
 */
#include "router/middleware/mw_int.h"

static int correlation_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                            sl_msg_list *out)
{
    (void)st;
    size_t keep = out->n;
    int rc = sl_mw_next(next, ctx, in, out);
    const char *id = sl_msg_meta_get(in, SL_CORRELATION_ID_KEY);
    for (size_t i = keep; id && i < out->n; i++)
        if (!sl_msg_meta_get(out->v[i], SL_CORRELATION_ID_KEY)) {
            int e = sl_msg_meta_set(out->v[i], SL_CORRELATION_ID_KEY, id);
            if (e && !rc)
                rc = e;
        }
    return rc;
}

int sl_mw_correlation(sl_middleware *out)
{
    if (!out)
        return sli_err(SL_EINVAL, "sl_mw_correlation: out is NULL");
    *out = (sl_middleware){"correlation", 0, correlation_call, NULL, NULL};
    return 0;
}
