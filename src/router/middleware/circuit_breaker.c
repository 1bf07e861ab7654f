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
 *
 * A panic caught by a recoverer outside the breaker counts as a failure
 * (an unwind hook settles the call). Should a trial still never come back,
 * a trial older than open_ms is taken as lost: the next call becomes a new
 * trial (numbered, so a late outcome of the lost one changes nothing),
 * rather than the breaker staying half-open forever.
 */
#include <stdlib.h>

#include "router/middleware/mw_int.h"

enum { CB_CLOSED, CB_OPEN, CB_HALF };

typedef struct breaker {
    pthread_mutex_t mu;
    int state;
    unsigned fails, threshold, open_ms;
    int64_t opened_at; /* OPEN: when it opened; HALF: when the trial began */
    uintptr_t trial;   /* number of the latest trial (never 0) */
} breaker;

/* The outcome of a call: trial is its number, 0 for a call while CLOSED. */
static void cb_settle(breaker *b, uintptr_t trial, int rc)
{
    pthread_mutex_lock(&b->mu);
    if (trial) {
        if (trial == b->trial && b->state == CB_HALF) {
            b->state = rc ? CB_OPEN : CB_CLOSED;
            b->fails = 0;
            if (rc)
                b->opened_at = sli_mono_ms();
        }
    } else if (b->state == CB_CLOSED) {
        b->fails = rc ? b->fails + 1 : 0;
        if (b->fails >= b->threshold) {
            b->state = CB_OPEN;
            b->opened_at = sli_mono_ms();
            b->fails = 0;
        }
    }
    pthread_mutex_unlock(&b->mu);
}

static void cb_unwind(void *st, int64_t trial)
{
    cb_settle(st, (uintptr_t)trial, SL_EHANDLER);
}

static int cb_call(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    breaker *b = st;
    uintptr_t trial = 0;
    pthread_mutex_lock(&b->mu);
    int64_t age = sli_mono_ms() - b->opened_at;
    /* '>' for a lost trial: with open_ms 0, '>=' would make every call a trial */
    if ((b->state == CB_OPEN && age >= b->open_ms) || (b->state == CB_HALF && age > b->open_ms)) {
        b->state = CB_HALF;
        b->opened_at = sli_mono_ms();
        if (++b->trial == 0) /* 0 means 'not a trial' */
            b->trial = 1;
        trial = b->trial;
    } else if (b->state != CB_CLOSED) {
        pthread_mutex_unlock(&b->mu);
        return sl_handler_fail(SL_EBUSY, "circuit breaker open");
    }
    pthread_mutex_unlock(&b->mu);
    sli_unwind_push(cb_unwind, b, (int64_t)trial);
    int rc = sl_mw_next(next, ctx, in, out);
    sli_unwind_pop();
    cb_settle(b, trial, rc);
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
