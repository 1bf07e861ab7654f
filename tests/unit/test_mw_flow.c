/*
 * test_mw_flow.c - middlewares that shape time: throttle (rate within
 * +-10 % over 2 s), timeout (cuts a slow handler through its context),
 * delay on error (redelivery after a growing delay, none when an outer
 * middleware turns the failure into success) and the circuit breaker (opens
 * after N failures, lets one trial through after open_ms, survives a trial
 * that panics into a recoverer). Lower bounds on time are exact; upper
 * bounds are generous. Timeout, breaker and delay on error also settle
 * their state when a recoverer outside them catches a panic, and the
 * breaker replaces a trial that never came back.
 */
#include <setjmp.h>

#include "test_router_fixture.h"

typedef struct times {
    _Atomic int calls;
    _Atomic int reserve; /* index of the next t[] slot */
    int64_t t[4096];
    int fail_calls; /* calls 1..fail_calls fail */
    int64_t took[8];
    int rc[8];
} times;

/* Open f and a zeroed times record for the handler (the test frees it). */
static times *fx_open_times(fx *f)
{
    fx_open(f, NULL);
    times *t = calloc(1, sizeof *t);
    assert_non_null(t);
    return t;
}

static int h_stamp(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    times *t = user;
    int k = atomic_fetch_add(&t->reserve, 1);
    if (k < 4096)
        t->t[k] = tl_now_ms();
    atomic_fetch_add(&t->calls, 1); /* publishes t[k] to the waiting test */
    return k < t->fail_calls ? SL_EIO : 0;
}

static void throttle_rate_is_within_ten_percent_over_two_seconds(void **state)
{
    (void)state;
    if (getenv("SL_SANITIZED")) {
        skip(); /* CI may opt out of timing checks in sanitizer runs */
        return;
    }
    fx f;
    times *t = fx_open_times(&f);
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_stamp, t);
    o.workers = 2;
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_middleware mw;
    assert_int_equal(sl_mw_throttle(&mw, 10, 100), 0); /* 100 msg/s */
    assert_int_equal(sl_handler_add_middleware(h, mw), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 400);
    /* count calls in a 2 s window starting 200 ms after the first one */
    fx_wait_count(&t->calls, 1, 5000);
    int64_t from = t->t[0] + 200, to = from + 2000;
    while (tl_now_ms() < to + 100)
        sl_ctx_wait(NULL, 20);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    int n = atomic_load(&t->calls), in_window = 0;
    for (int i = 0; i < n && i < 4096; i++)
        in_window += t->t[i] >= from && t->t[i] < to;
    print_message("throttle: %d calls in 2 s (want 200 +- 20)\n", in_window);
    assert_true(in_window >= 180 && in_window <= 220);
    free(t);
    fx_close(&f);
}

static int h_slow(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)out;
    times *t = user;
    int k = atomic_fetch_add(&t->calls, 1);
    if (sl_msg_deliveries(in) > 1)
        return 0;
    int64_t t0 = tl_now_ms();
    int rc = sl_ctx_wait(ctx, 10000); /* "long work" that watches its context */
    if (k < 8) {
        t->took[k] = tl_now_ms() - t0;
        t->rc[k] = rc;
    }
    return rc ? rc : 0;
}

static void timeout_cuts_a_slow_handler(void **state)
{
    (void)state;
    fx f;
    times *t = fx_open_times(&f);
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_slow, t);
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_middleware mw;
    assert_int_equal(sl_mw_timeout(&mw, 100), 0);
    assert_int_equal(sl_handler_add_middleware(h, mw), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(fx_wait_count(&t->calls, 2, 8000), 2); /* nacked, redelivered */
    assert_int_equal(t->rc[0], SL_ETIMEDOUT);
    assert_true(t->took[0] >= 95);
    assert_true(t->took[0] < 5000);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    free(t);
    fx_close(&f);
}

static void delay_on_error_redelivers_after_a_growing_delay(void **state)
{
    (void)state;
    fx f;
    times *t = fx_open_times(&f);
    t->fail_calls = 2;
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_stamp, t);
    o.nack_delay_ms = 30000; /* the middleware's delay replaces the handler's */
    o.nack_delay_max_ms = 30000;
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_middleware mw;
    assert_int_equal(sl_mw_delay_on_error(&mw, 100, 2.0, 1000), 0);
    assert_int_equal(sl_handler_add_middleware(h, mw), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(fx_wait_count(&t->calls, 3, 8000), 3);
    assert_true(t->t[1] - t->t[0] >= 95);  /* 100 ms after delivery 1 */
    assert_true(t->t[2] - t->t[1] >= 195); /* 200 ms after delivery 2 */
    assert_true(t->t[2] - t->t[0] < 8000); /* not the handler's 30 s */
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    free(t);
    fx_close(&f);
}

/* delay_on_error inside an outer middleware that turns the failure into
 * success: the outer outcome settles the message (acked), nothing comes back. */
static void delay_on_error_leaves_settling_to_the_outer_outcome(const char *outer)
{
    fx f;
    times *t = fx_open_times(&f);
    bool retry = strcmp(outer, "retry") == 0;
    t->fail_calls = retry ? 1 : 1 << 30; /* retry: the second attempt succeeds */
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_stamp, t);
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_middleware om, dm;
    if (strcmp(outer, "poison") == 0) {
        sl_poison_opts po = {.pub = f.pub, .topic = "poisoned"};
        assert_int_equal(sl_mw_poison(&om, &po), 0);
    } else if (strcmp(outer, "ignore_errors") == 0) {
        int codes[] = {SL_EIO};
        assert_int_equal(sl_mw_ignore_errors(&om, codes, 1), 0);
    } else {
        sl_retry_opts ro;
        sl_retry_opts_init(&ro);
        ro.initial_ms = 10;
        ro.randomization = 0;
        assert_int_equal(sl_mw_retry(&om, &ro), 0);
    }
    assert_int_equal(sl_handler_add_middleware(h, om), 0);
    assert_int_equal(sl_mw_delay_on_error(&dm, 100, 1.0, 100), 0);
    assert_int_equal(sl_handler_add_middleware(h, dm), 0);
    sl_subscription *ps;
    assert_int_equal(sl_subscribe(f.sub, "poisoned", NULL, &ps), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(fx_wait_count(&t->calls, retry ? 2 : 1, 5000), retry ? 2 : 1);
    sl_ctx_wait(NULL, 500); /* five times the delay: a redelivery would be here */
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    print_message("%s outside delay_on_error: %d call(s)\n", outer, atomic_load(&t->calls));
    assert_int_equal(atomic_load(&t->calls), retry ? 2 : 1);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0); /* acked, not parked */
    int poisoned = 0;
    sl_msg *m;
    while (sl_next(ps, &m, 0) == 0) {
        poisoned++;
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    assert_int_equal(poisoned, strcmp(outer, "poison") == 0);
    sl_subscription_close(ps);
    free(t);
    fx_close(&f);
}

static void delay_on_error_inside_poison_acks_once_with_one_poison_copy(void **state)
{
    (void)state;
    delay_on_error_leaves_settling_to_the_outer_outcome("poison");
}

static void delay_on_error_inside_ignore_errors_acks_once(void **state)
{
    (void)state;
    delay_on_error_leaves_settling_to_the_outer_outcome("ignore_errors");
}

static void delay_on_error_inside_retry_acks_a_retried_success(void **state)
{
    (void)state;
    delay_on_error_leaves_settling_to_the_outer_outcome("retry");
}

typedef struct cb_rec {
    _Atomic int calls, attempts;
    int64_t t[8];
    bool first_panics; /* h_trial_panics */
} cb_rec;

static int h_fail_3(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    cb_rec *c = user;
    int k = atomic_fetch_add(&c->calls, 1);
    if (k < 8)
        c->t[k] = tl_now_ms();
    return k < 3 ? SL_EIO : 0;
}

/* outer middleware counting every attempt, breaker-rejected ones included */
static int count_attempts(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                          sl_msg_list *out)
{
    atomic_fetch_add(&((cb_rec *)st)->attempts, 1);
    return sl_mw_next(next, ctx, in, out);
}

static void circuit_breaker_opens_after_failures_and_lets_one_trial_through(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    cb_rec c = {0};
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_fail_3, &c);
    o.nack_delay_ms = 5; /* redeliver quickly, many times while open */
    o.nack_delay_multiplier = 1;
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_middleware counter = {"count", 0, count_attempts, NULL, &c}, cb;
    assert_int_equal(sl_handler_add_middleware(h, counter), 0);
    assert_int_equal(sl_mw_circuit_breaker(&cb, 3, 300), 0);
    assert_int_equal(sl_handler_add_middleware(h, cb), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(fx_wait_count(&c.calls, 4, 8000), 4);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&c.calls), 4); /* 3 failures + the trial */
    assert_true(atomic_load(&c.attempts) > 5);  /* rejected while open */
    assert_true(c.t[3] - c.t[2] >= 295);        /* trial only after open_ms */
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    fx_close(&f);
}

/* call 1 fails (or panics), opening the breaker; the half-open trial
 * panics; later calls work */
static int h_trial_panics(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    cb_rec *c = user;
    int k = atomic_fetch_add(&c->calls, 1);
    if (k < 8)
        c->t[k] = tl_now_ms();
    if (k == 0 && !c->first_panics)
        return SL_EIO;
    if (k < 2)
        sl_handler_panic("call %d panics", k + 1);
    return 0;
}

/* recoverer outside the breaker (threshold 1, open 100 ms) */

/* Add o's handler with a recoverer outermost and inner inside it. */
static void add_under_recoverer(fx *f, const sl_handler_opts *o, sl_middleware inner)
{
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f->r, o, &h), 0);
    sl_middleware rec;
    assert_int_equal(sl_mw_recoverer(&rec, false), 0);
    assert_int_equal(sl_handler_add_middleware(h, rec), 0);
    assert_int_equal(sl_handler_add_middleware(h, inner), 0);
}
static void breaker_with_panics(bool first_panics)
{
    fx f;
    fx_open(&f, NULL);
    cb_rec c = {.first_panics = first_panics};
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_trial_panics, &c);
    o.nack_delay_ms = 20;
    o.nack_delay_multiplier = 1;
    o.nack_delay_max_ms = 20;
    sl_middleware cb;
    assert_int_equal(sl_mw_circuit_breaker(&cb, 1, 100), 0);
    add_under_recoverer(&f, &o, cb);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    /* call 1 opened the breaker, the panicked trial opened it again (not
     * half-open forever), the next trial succeeds */
    assert_int_equal(fx_wait_count(&c.calls, 3, 5000), 3);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&c.calls), 3);
    assert_true(c.t[1] - c.t[0] >= 95);
    assert_true(c.t[2] - c.t[1] >= 95);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    fx_close(&f);
}

static void circuit_breaker_recovers_after_a_trial_that_panicked_into_a_recoverer(void **state)
{
    (void)state;
    breaker_with_panics(false);
}

static void circuit_breaker_counts_a_panic_caught_by_a_recoverer_as_a_failure(void **state)
{
    (void)state;
    breaker_with_panics(true);
}

/* panics on delivery 1 (stamped like h_stamp), works on delivery 2 */
static int h_stamp_panic_once(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    times *t = user;
    int k = atomic_load(&t->reserve);
    h_stamp(ctx, in, out, user);
    if (k == 0)
        sl_handler_panic("first delivery panics");
    return 0;
}

static void delay_on_error_delays_a_panic_caught_outside_it(void **state)
{
    (void)state;
    fx f;
    times *t = fx_open_times(&f);
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_stamp_panic_once, t);
    o.nack_delay_ms = 30000; /* the middleware's delay replaces the handler's */
    o.nack_delay_max_ms = 30000;
    sl_middleware dm;
    assert_int_equal(sl_mw_delay_on_error(&dm, 100, 1.0, 100), 0);
    add_under_recoverer(&f, &o, dm);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(fx_wait_count(&t->calls, 2, 8000), 2);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_true(t->t[1] - t->t[0] >= 95);
    assert_true(t->t[1] - t->t[0] < 8000);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    free(t);
    fx_close(&f);
}

static void metrics_count_a_panic_caught_outside_them(void **state)
{
    (void)state;
    fx f;
    times *t = fx_open_times(&f);
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_stamp_panic_once, t);
    o.nack_delay_ms = 10;
    o.nack_delay_max_ms = 10;
    sl_middleware mm;
    sl_metrics *m;
    assert_int_equal(sl_mw_metrics(&mm, &m), 0);
    add_under_recoverer(&f, &o, mm);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(fx_wait_count(&t->calls, 2, 8000), 2);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    sl_handler_stats hs;
    assert_int_equal(sl_metrics_get(m, "h", &hs), 0);
    assert_int_equal(hs.calls, 2); /* the panicked call was not counted before */
    assert_int_equal(hs.failed, 1);
    assert_int_equal(hs.ok, 1);
    uint64_t n = 0;
    for (int i = 0; i < SL_METRICS_BUCKETS; i++)
        n += hs.buckets[i];
    assert_int_equal(n, 2);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    free(t);
    fx_close(&f);
}

/* A jump that no recoverer sees (so no unwind hook runs): the breaker's
 * trial never returns. Stands for any way a call can be lost. */
static _Thread_local sigjmp_buf escape_jb;

static int escape_mw(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in, sl_msg_list *out)
{
    (void)st;
    if (sigsetjmp(escape_jb, 0))
        return SL_EHANDLER;
    return sl_mw_next(next, ctx, in, out);
}

static int h_fail_escape_ok(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    cb_rec *c = user;
    int k = atomic_fetch_add(&c->calls, 1);
    if (k < 8)
        c->t[k] = tl_now_ms();
    if (k == 0)
        return SL_EIO;
    if (k == 1)
        siglongjmp(escape_jb, 1);
    return 0;
}

static void circuit_breaker_replaces_a_trial_that_never_returned(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    cb_rec c = {0};
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_fail_escape_ok, &c);
    o.nack_delay_ms = 20;
    o.nack_delay_multiplier = 1;
    o.nack_delay_max_ms = 20;
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_middleware esc = {"escape", 0, escape_mw, NULL, NULL}, cb;
    assert_int_equal(sl_handler_add_middleware(h, esc), 0);
    assert_int_equal(sl_mw_circuit_breaker(&cb, 1, 100), 0);
    assert_int_equal(sl_handler_add_middleware(h, cb), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    /* half-open since the lost trial; open_ms later a new trial succeeds */
    assert_int_equal(fx_wait_count(&c.calls, 3, 5000), 3);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&c.calls), 3);
    assert_true(c.t[2] - c.t[1] >= 95);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    fx_close(&f);
}

/* panics on its first call, after the timeout middleware made its context */
static int h_panic_once(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    if (atomic_fetch_add((_Atomic int *)user, 1) == 0)
        sl_handler_panic("first call panics");
    return 0;
}

/* The timeout's child context is freed when a recoverer outside catches a
 * panic (else it leaks, holding the handler's context: LeakSanitizer fails
 * this program in sanitized builds). */
static void timeout_frees_its_context_when_the_handler_panics(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    _Atomic int calls = 0;
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_panic_once, &calls);
    sl_middleware to;
    assert_int_equal(sl_mw_timeout(&to, 5000), 0);
    add_under_recoverer(&f, &o, to);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(fx_wait_count(&calls, 2, 5000), 2);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(throttle_rate_is_within_ten_percent_over_two_seconds),
        cmocka_unit_test(timeout_cuts_a_slow_handler),
        cmocka_unit_test(delay_on_error_redelivers_after_a_growing_delay),
        cmocka_unit_test(delay_on_error_inside_poison_acks_once_with_one_poison_copy),
        cmocka_unit_test(delay_on_error_inside_ignore_errors_acks_once),
        cmocka_unit_test(delay_on_error_inside_retry_acks_a_retried_success),
        cmocka_unit_test(circuit_breaker_opens_after_failures_and_lets_one_trial_through),
        cmocka_unit_test(circuit_breaker_recovers_after_a_trial_that_panicked_into_a_recoverer),
        cmocka_unit_test(circuit_breaker_counts_a_panic_caught_by_a_recoverer_as_a_failure),
        cmocka_unit_test(circuit_breaker_replaces_a_trial_that_never_returned),
        cmocka_unit_test(delay_on_error_delays_a_panic_caught_outside_it),
        cmocka_unit_test(metrics_count_a_panic_caught_outside_them),
        cmocka_unit_test(timeout_frees_its_context_when_the_handler_panics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
