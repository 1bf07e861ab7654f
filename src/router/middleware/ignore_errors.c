/*
 * ignore_errors.c - failures whose code is in a given set become success
 * (watermill's IgnoreErrors): the input is acked and the outputs of that
 * run are published.
 */
#include <stdlib.h>
#include <string.h>

#include "router/middleware/mw_int.h"

typedef struct ignore {
    size_t n;
    int codes[];
} ignore;

static int ignore_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    ignore *ig = st;
    int rc = sl_mw_next(next, ctx, in, out);
    for (size_t i = 0; rc && i < ig->n; i++)
        if (ig->codes[i] == rc)
            return 0;
    return rc;
}

int sl_mw_ignore_errors(sl_middleware *out, const int *codes, size_t n)
{
    if (!out || (n && !codes))
        return sli_err(SL_EINVAL, "ignore_errors: NULL codes");
    ignore *ig = malloc(sizeof *ig + n * sizeof(int));
    if (!ig)
        return sli_err(SL_ENOMEM, "out of memory");
    ig->n = n;
    if (n)
        memcpy(ig->codes, codes, n * sizeof(int));
    *out = (sl_middleware){"ignore_errors", 0, ignore_call, free, ig};
    return 0;
}
