/*
 * test_mw_misc.c - the per-message middlewares on mem://: correlation id,
 * ignore errors, instant ack, random fail, duplicator, deduplicator,
 * recoverer (explicit panics everywhere; hardware faults in plain builds
 * only - the sanitizers own SIGSEGV) and metrics.
 */
#include <signal.h>

#include "test_router_fixture.h"

typedef struct st {
    _Atomic int calls;
    int code;        /* returned by h_echo */
    int panic_until; /* h_crash: crash on calls 1..panic_until */
    bool segv;
} st;

static int h_echo(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    st *s = user;
    atomic_fetch_add(&s->calls, 1);
    size_t len;
    const void *p = sl_msg_payload(in, &len);
    sl_msg *m;
    int rc = sl_msg_new(&m, p, len);
    if (rc)
        return rc;
    if ((rc = sl_msg_list_push(out, m))) {
        sl_msg_unref(m);
        return rc;
    }
    return s->code;
}

/* handler with publisher "out", the given middlewares (outermost first) */
static sl_handler *setup(fx *f, st *s, sl_handler_fn fn, sl_middleware *mws, int n,
                         sl_subscription **outs)
{
    fx_open(f, NULL);
    sl_handler_opts o;
    fx_opts(f, &o, "h", "in", fn, s);
    o.pub = f->pub;
    o.pub_topic = "out";
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f->r, &o, &h), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(sl_handler_add_middleware(h, mws[i]), 0);
    if (outs)
        assert_int_equal(sl_subscribe(f->sub, "out", NULL, outs), 0);
    fx_start(f);
    return h;
}

/* Take `want` messages (each within 5 s), then whatever else arrives
 * within 50 ms; returns the total. */
static int take_all(sl_subscription *s, int want)
{
    int n = 0;
    sl_msg *m;
    while (sl_next(s, &m, n < want ? 5000 : 50) == 0) {
        sl_msg_ack(m);
        sl_msg_unref(m);
        n++;
    }
    return n;
}

static void correlation_id_is_copied_to_every_output(void **state)
{
    (void)state;
    fx f;
    st s = {0};
    sl_middleware mw[2];
    assert_int_equal(sl_mw_correlation(&mw[0]), 0);
    assert_int_equal(sl_mw_duplicator(&mw[1]), 0); /* two outputs */
    sl_subscription *outs;
    setup(&f, &s, h_echo, mw, 2, &outs);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    assert_int_equal(sl_msg_meta_set(m, SL_CORRELATION_ID_KEY, "corr-42"), 0);
    assert_int_equal(sl_publish(f.pub, "in", &m, 1), 0);
    sl_msg_unref(m);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sl_next(outs, &m, 5000), 0);
        assert_string_equal(sl_msg_meta_get(m, SL_CORRELATION_ID_KEY), "corr-42");
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    sl_subscription_close(outs);
    fx_close(&f);
}

static void ignored_errors_ack_and_publish(void **state)
{
    (void)state;
    fx f;
    st s = {.code = SL_EIO};
    sl_middleware mw;
    int codes[] = {SL_EINVAL, SL_EIO};
    assert_int_equal(sl_mw_ignore_errors(&mw, codes, 2), 0);
    sl_subscription *outs;
    setup(&f, &s, h_echo, &mw, 1, &outs);
    fx_publish(&f, "in", 0, 3);
    assert_int_equal(fx_wait_count(&s.calls, 3, 5000), 3);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&s.calls), 3); /* no redelivery */
    assert_int_equal(take_all(outs, 3), 3);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    sl_subscription_close(outs);
    fx_close(&f);
}

static void errors_not_in_the_set_still_nack(void **state)
{
    (void)state;
    fx f;
    st s = {.code = SL_EIO};
    sl_middleware mw;
    int codes[] = {SL_EINVAL};
    assert_int_equal(sl_mw_ignore_errors(&mw, codes, 1), 0);
    setup(&f, &s, h_echo, &mw, 1, NULL);
    fx_publish(&f, "in", 0, 1);
    assert_true(fx_wait_count(&s.calls, 3, 5000) >= 3);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 1);
    fx_close(&f);
}

static void instant_ack_acks_before_the_handler_even_if_it_fails(void **state)
{
    (void)state;
    fx f;
    st s = {.code = SL_EIO};
    sl_middleware mw;
    assert_int_equal(sl_mw_instant_ack(&mw), 0);
    setup(&f, &s, h_echo, &mw, 1, NULL);
    fx_publish(&f, "in", 0, 5);
    assert_int_equal(fx_wait_count(&s.calls, 5, 5000), 5);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&s.calls), 5); /* failures were not redelivered */
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    fx_close(&f);
}

typedef struct attempts {
    _Atomic int n;
} attempts;

static int count_attempts(void *state, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                          sl_msg_list *out)
{
    atomic_fetch_add(&((attempts *)state)->n, 1);
    return sl_mw_next(next, ctx, in, out);
}

static void random_fail_fails_at_its_probability(void **state)
{
    (void)state;
    fx f;
    st s = {0};
    attempts a = {0};
    sl_middleware mw[2] = {{"count", 0, count_attempts, NULL, &a}};
    assert_int_equal(sl_mw_random_fail(&mw[1], 0.5), 0);
    setup(&f, &s, h_echo, mw, 2, NULL);
    int n = fx_scale(2000);
    fx_publish(&f, "in", 0, n);
    assert_int_equal(fx_wait_count(&s.calls, n, 20000), n); /* each gets through eventually */
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    int fails = atomic_load(&a.n) - n;
    /* expected n failures (geometric, mean 1 per message); wide bounds */
    assert_true(fails > n / 2 && fails < n * 2);
    fx_close(&f);
    /* p = 1 never reaches the handler, p = 0 always does */
    st s1 = {0};
    attempts a1 = {0};
    sl_middleware m1[2] = {{"count", 0, count_attempts, NULL, &a1}};
    assert_int_equal(sl_mw_random_fail(&m1[1], 1.0), 0);
    setup(&f, &s1, h_echo, m1, 2, NULL);
    fx_publish(&f, "in", 0, 1);
    assert_true(fx_wait_count(&a1.n, 20, 5000) >= 20);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&s1.calls), 0);
    fx_close(&f);
    assert_int_equal(sl_mw_random_fail(&mw[1], 1.5), SL_EINVAL);
}

static void duplicator_runs_the_handler_twice(void **state)
{
    (void)state;
    fx f;
    st s = {0};
    sl_middleware mw;
    assert_int_equal(sl_mw_duplicator(&mw), 0);
    sl_subscription *outs;
    setup(&f, &s, h_echo, &mw, 1, &outs);
    fx_publish(&f, "in", 0, 3);
    assert_int_equal(fx_wait_count(&s.calls, 6, 5000), 6);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(take_all(outs, 6), 6);
    sl_subscription_close(outs);
    fx_close(&f);
}

static void deduplicator_skips_a_uuid_seen_within_the_window(void **state)
{
    (void)state;
    fx f;
    st s = {0};
    sl_middleware mw;
    assert_int_equal(sl_mw_deduplicator(&mw, 60000), 0);
    setup(&f, &s, h_echo, &mw, 1, NULL);
    sl_msg *a, *b, *c;
    assert_int_equal(sl_msg_new_with_uuid(&a, "same-id", "1", 1), 0);
    assert_int_equal(sl_msg_new_with_uuid(&b, "same-id", "2", 1), 0);
    assert_int_equal(sl_msg_new_with_uuid(&c, "other-id", "3", 1), 0);
    sl_msg *all[3] = {a, b, c};
    assert_int_equal(sl_publish(f.pub, "in", all, 3), 0);
    assert_int_equal(fx_wait_count(&s.calls, 2, 5000), 2);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&s.calls), 2);               /* same-id once */
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0); /* duplicate acked */
    for (int i = 0; i < 3; i++)
        sl_msg_unref(all[i]);
    fx_close(&f);
}

static int h_crash(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    st *s = user;
    int k = atomic_fetch_add(&s->calls, 1) + 1;
    if (k <= s->panic_until) {
        if (s->segv) {
            volatile int *p = NULL;
            *p = 1; /* a real fault */
        }
        sl_handler_panic("bad record %d", k);
    }
    return h_echo(ctx, in, out, &(st){0});
}

static void recoverer_turns_a_panic_into_a_nack_and_marks_unhealthy(void **state)
{
    (void)state;
    fx f;
    st s = {.panic_until = 1};
    sl_middleware mw;
    assert_int_equal(sl_mw_recoverer(&mw, false), 0);
    sl_subscription *outs;
    sl_handler *h = setup(&f, &s, h_crash, &mw, 1, &outs);
    assert_true(sl_handler_healthy(h));
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(take_all(outs, 1), 1); /* 2nd delivery succeeds */
    assert_int_equal(atomic_load(&s.calls), 2);
    assert_false(sl_handler_healthy(h));
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    sl_subscription_close(outs);
    fx_close(&f);
}

static void recoverer_catches_a_segfault_on_the_worker(void **state)
{
    (void)state;
    if (fx_sanitized()) {
        skip(); /* ASan/TSan own SIGSEGV; fault catching is for plain builds */
        return;
    }
    fx f;
    st s = {.panic_until = 2, .segv = true};
    sl_middleware mw;
    assert_int_equal(sl_mw_recoverer(&mw, true), 0);
    sl_subscription *outs;
    sl_handler *h = setup(&f, &s, h_crash, &mw, 1, &outs);
    fx_publish(&f, "in", 0, 1);
    assert_int_equal(take_all(outs, 1), 1); /* survived two faults */
    assert_int_equal(atomic_load(&s.calls), 3);
    assert_false(sl_handler_healthy(h));
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    sl_subscription_close(outs);
    fx_close(&f);
}

static int h_odd_fails_once(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)out;
    st *s = user;
    atomic_fetch_add(&s->calls, 1);
    return fx_payload_int(in) % 2 && sl_msg_deliveries(in) == 1 ? SL_EIO : 0;
}

static void sum_buckets(const sl_handler_stats *st_, void *user)
{
    uint64_t n = 0;
    for (int i = 0; i < SL_METRICS_BUCKETS; i++)
        n += st_->buckets[i];
    assert_int_equal(n, st_->calls);
    (*(int *)user)++;
}

static void metrics_count_calls_failures_and_latency_per_handler(void **state)
{
    (void)state;
    fx f;
    st s = {0};
    sl_middleware mw;
    sl_metrics *m;
    assert_int_equal(sl_mw_metrics(&mw, &m), 0);
    setup(&f, &s, h_odd_fails_once, &mw, 1, NULL);
    fx_publish(&f, "in", 0, 10);
    assert_int_equal(fx_wait_count(&s.calls, 15, 5000), 15);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    sl_handler_stats hs;
    assert_int_equal(sl_metrics_get(m, "h", &hs), 0);
    assert_string_equal(hs.handler, "h");
    assert_int_equal(hs.calls, 15);
    assert_int_equal(hs.ok, 10);
    assert_int_equal(hs.failed, 5);
    assert_true(hs.max_us * hs.calls >= hs.sum_us);
    assert_int_equal(sl_metrics_get(m, "nope", &hs), SL_ENOENT);
    int seen = 0;
    sl_metrics_foreach(m, sum_buckets, &seen);
    assert_int_equal(seen, 1);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(correlation_id_is_copied_to_every_output),
        cmocka_unit_test(ignored_errors_ack_and_publish),
        cmocka_unit_test(errors_not_in_the_set_still_nack),
        cmocka_unit_test(instant_ack_acks_before_the_handler_even_if_it_fails),
        cmocka_unit_test(random_fail_fails_at_its_probability),
        cmocka_unit_test(duplicator_runs_the_handler_twice),
        cmocka_unit_test(deduplicator_skips_a_uuid_seen_within_the_window),
        cmocka_unit_test(recoverer_turns_a_panic_into_a_nack_and_marks_unhealthy),
        cmocka_unit_test(recoverer_catches_a_segfault_on_the_worker),
        cmocka_unit_test(metrics_count_calls_failures_and_latency_per_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
