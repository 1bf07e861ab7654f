/*
 * circuit_breaker.c - stop calling a failing dependency for a while
 * (watermill's CircuitBreaker, which wraps gobreaker; this is the same
 * three-state machine, kept small):
 *   CLOSED    calls pass; `failures` consecutive failures -> OPEN.
 *   OPEN      calls fail at once with SL_EBUSY (the message is nacked and
 *             comes back after the handler's backoff) until open_ms passed,
 *             then the next call becomes the single trial -> HALF_OPEN.
 *   HALF_OPEN the trial runs; others fail with SL_EBUSY. Trial success ->
 *             CLOSED, failure -> OPEN again.
 * One state is shared by everything the middleware wraps (one breaker per
 * dependency: add it at router level to guard them all, or per handler).
 */
#include <stdlib.h>

#include "router/middleware/mw_int.h"

enum { CB_CLOSED, CB_OPEN, CB_HALF };

typedef struct breaker {
    pthread_mutex_t mu;
    int state;
    unsigned fails, threshold, open_ms;
    int64_t opened_at;
} breaker;

static int cb_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    breaker *b = st;
    bool trial = false;
    pthread_mutex_lock(&b->mu);
    if (b->state == CB_OPEN && sli_mono_ms() - b->opened_at >= b->open_ms) {
        b->state = CB_HALF;
        trial = true;
    } else if (b->state != CB_CLOSED) {
        pthread_mutex_unlock(&b->mu);
        return sl_handler_fail(SL_EBUSY, "circuit breaker open");
    }
    pthread_mutex_unlock(&b->mu);
    int rc = sl_mw_next(next, ctx, in, out);
    pthread_mutex_lock(&b->mu);
    if (trial) {
        b->state = rc ? CB_OPEN : CB_CLOSED;
        b->fails = 0;
        if (rc)
            b->opened_at = sli_mono_ms();
    } else if (b->state == CB_CLOSED) {
        b->fails = rc ? b->fails + 1 : 0;
        if (b->fails >= b->threshold) {
            b->state = CB_OPEN;
            b->opened_at = sli_mono_ms();
            b->fails = 0;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static void cb_free(void *st)
{
    breaker *b = st;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

int sl_mw_circuit_breaker(sl_middleware *out, unsigned failures, unsigned open_ms)
{
    if (!out || !failures)
        return sli_err(SL_EINVAL, "circuit_breaker: failures must be > 0");
    breaker *b = calloc(1, sizeof *b);
    if (!b)
        return sli_err(SL_ENOMEM, "out of memory");
    pthread_mutex_init(&b->mu, NULL);
    b->threshold = failures;
    b->open_ms = open_ms;
    *out = (sl_middleware){"circuit_breaker", 0, cb_call, cb_free, b};
    return 0;
}
