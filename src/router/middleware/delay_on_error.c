/*
 * delay_on_error.c - on failure, have the input redelivered after a delay
 * (watermill's DelayOnError, without its separate requeuer: our backends
 * honour sl_msg_nack_delay). The delay grows with the message's delivery
 * count: initial * multiplier^(deliveries-1), at most max. It replaces the
 * handler's own nack backoff for this message.
 *
 * The middleware does not settle the input: it only records the delay for
 * the worker, which nacks with it if the chain's final outcome is a
 * failure. An outer middleware that turns the failure into success (poison,
 * ignore_errors, requeue, a later retry) thus still gets its message acked
 * instead of redelivered forever. A panic caught by a recoverer outside
 * gets the delay as well (through an unwind hook).
 */
#include <stdint.h>
#include <stdlib.h>

#include "router/middleware/mw_int.h"

typedef struct delay_st {
    unsigned initial, max;
    double mult;
} delay_st;

static void set_delay(void *slot, int64_t ms)
{
    *(int64_t *)slot = ms;
}

static int delay_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    delay_st *d = st;
    if (!next->nack_delay_ms)
        return sl_mw_next(next, ctx, in, out);
    unsigned n = sl_msg_deliveries(in);
    double ms = sli_backoff(d->initial, d->mult, d->max, n > 1 ? n - 1 : 0);
    int64_t delay = ms < (double)INT64_MAX ? (int64_t)ms : INT64_MAX;
    /* a panic caught by a recoverer outside is a failure too (the slot is
     * the worker's, still there after the jump) */
    sli_unwind_push(set_delay, next->nack_delay_ms, delay);
    int rc = sl_mw_next(next, ctx, in, out);
    sli_unwind_pop();
    if (rc)
        *next->nack_delay_ms = delay;
    return rc;
}

int sl_mw_delay_on_error(sl_middleware *out, unsigned initial_ms, double multiplier,
                         unsigned max_ms)
{
    if (!out || !initial_ms || multiplier < 1.0 || max_ms < initial_ms)
        return sli_err(SL_EINVAL,
                       "delay_on_error: need initial > 0, multiplier >= 1, max >= initial");
    delay_st *d = malloc(sizeof *d);
    if (!d)
        return sli_err(SL_ENOMEM, "out of memory");
    *d = (delay_st){initial_ms, max_ms, multiplier};
    *out = (sl_middleware){"delay_on_error", 0, delay_call, free, d};
    return 0;
}
