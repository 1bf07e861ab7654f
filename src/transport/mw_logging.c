/*
 * mw_logging.c - the transport's logging middleware: one sl_log line per
 * publish through the application's log callback (component "transport"),
 * with topic, message UUID, outcome and duration. Failures log at WARN with
 * the error detail; successes at the level the application chose.
 */
#include <stdlib.h>

#include "transport/transport_int.h"

typedef struct logcfg {
    sl_log_level level;
} logcfg;

static int logging_mw(void *ctx, sl_transport_call *call, sl_msg *msg)
{
    const logcfg *c = ctx;
    int64_t t0 = sli_mono_ns();
    int rc = sl_transport_call_next(call, msg);
    double ms = (double)(sli_mono_ns() - t0) / 1e6;
    if (rc)
        sli_log(SL_LOG_WARN, "transport", "publish %s to '%s' failed after %.3f ms: %s (%s)",
                sl_msg_uuid(msg), sl_transport_call_topic(call), ms, sl_strerror(rc), sl_errmsg());
    else
        sli_log(c->level, "transport", "published %s to '%s' in %.3f ms", sl_msg_uuid(msg),
                sl_transport_call_topic(call), ms);
    return rc;
}

int sl_transport_mw_logging(sl_transport_mw *out, sl_log_level level)
{
    if (!out || level < SL_LOG_DEBUG || level > SL_LOG_ERROR)
        return sli_err(SL_EINVAL, "sl_transport_mw_logging: bad argument");
    logcfg *c = malloc(sizeof *c);
    if (!c)
        return sli_err(SL_ENOMEM, "out of memory");
    c->level = level;
    out->fn = logging_mw;
    out->ctx = c;
    out->free_ctx = free;
    return 0;
}
