/*
 * throttle.c - at most `count` messages per `interval_ms` (watermill's
 * Throttle), paced evenly: each call reserves the next slot of a schedule
 * with one slot every interval/count, then sleeps until its slot with
 * sl_ctx_wait (so a close or timeout interrupts the wait: the message is
 * then nacked with the context's error). The schedule is absolute, so
 * sleep rounding does not accumulate; a caller arriving late takes the
 * slot at most one step in the past (no bursts after idle periods).
 * One state is shared by everything the middleware wraps.
 */
#include <stdlib.h>

#include "router/middleware/mw_int.h"

typedef struct throttle {
    pthread_mutex_t mu;
    int64_t next_ns, step_ns;
} throttle;

static int throttle_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                         sl_msg_list *out)
{
    throttle *t = st;
    pthread_mutex_lock(&t->mu);
    int64_t now = sli_mono_ns();
    int64_t slot = t->next_ns;
    if (slot < now - t->step_ns)
        slot = now - t->step_ns;
    t->next_ns = slot + t->step_ns;
    pthread_mutex_unlock(&t->mu);
    while (slot > (now = sli_mono_ns())) {
        int64_t ms = (slot - now + 999999) / 1000000;
        int rc = sl_ctx_wait(ctx, ms);
        if (rc)
            return sl_handler_fail(rc, "throttle: context done while waiting for a slot");
    }
    return sl_mw_next(next, ctx, in, out);
}

static void throttle_free(void *st)
{
    throttle *t = st;
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int sl_mw_throttle(sl_middleware *out, unsigned count, unsigned interval_ms)
{
    if (!out || !count || !interval_ms)
        return sli_err(SL_EINVAL, "throttle: count and interval must be > 0");
    throttle *t = calloc(1, sizeof *t);
    if (!t)
        return sli_err(SL_ENOMEM, "out of memory");
    pthread_mutex_init(&t->mu, NULL);
    t->step_ns = (int64_t)interval_ms * 1000000 / count;
    t->next_ns = 0;
    *out = (sl_middleware){"throttle", 0, throttle_call, throttle_free, t};
    return 0;
}
