/*
 * test_mw_retry.c - retry, poison queue and their interplay on mem://:
 * an always-failing message reaches the poison topic after exactly
 * max_retries retries (1 + max_retries runs), with the metadata that names
 * why and where; outputs of failed attempts are dropped; backoff intervals
 * and max_elapsed; the poison filter; and the wrong order is refused.
 */
#include "test_router_fixture.h"

typedef struct rec {
    _Atomic int calls;
    int fail_until; /* fail calls 1..fail_until (0: always fail) */
    int code;
    _Atomic int retries;
    unsigned delays[16];
    unsigned retry_no[16];
} rec;

static int h_flaky(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    rec *r = user;
    int k = atomic_fetch_add(&r->calls, 1) + 1;
    sl_msg *m;
    char buf[16];
    snprintf(buf, sizeof buf, "out%d", k);
    if (sl_msg_new(&m, buf, strlen(buf)) == 0 && sl_msg_list_push(out, m) != 0)
        sl_msg_unref(m);
    if (r->fail_until == 0 || k <= r->fail_until)
        return sl_handler_fail(r->code ? r->code : SL_EIO, "boom %d", k);
    return 0;
}

static void on_retry(unsigned retry, unsigned delay_ms, int err, sl_msg *in, void *user)
{
    (void)in;
    rec *r = user;
    assert_int_equal(err, r->code ? r->code : SL_EIO);
    int i = atomic_fetch_add(&r->retries, 1);
    if (i < 16) {
        r->delays[i] = delay_ms;
        r->retry_no[i] = retry;
    }
}

static void fast_retry(sl_retry_opts *ro, rec *r, unsigned max)
{
    sl_retry_opts_init(ro);
    ro->max_retries = max;
    ro->initial_ms = 1;
    ro->randomization = 0;
    ro->on_retry = on_retry;
    ro->user = r;
}

static void always_failing_message_reaches_poison_after_exactly_max_retries(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    rec r = {0};
    sl_handler_opts o;
    fx_opts(&f, &o, "orders-handler", "orders", h_flaky, &r);
    o.pub = f.pub;
    o.pub_topic = "out";
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_retry_opts ro;
    fast_retry(&ro, &r, 3);
    sl_poison_opts po = {.pub = f.pub, .topic = "poison"};
    sl_middleware mw;
    assert_int_equal(sl_mw_retry_poison(&mw, &ro, &po), 0);
    assert_int_equal(sl_handler_add_middleware(h, mw), 0);
    sl_subscription *ps, *outs;
    assert_int_equal(sl_subscribe(f.sub, "poison", NULL, &ps), 0);
    assert_int_equal(sl_subscribe(f.sub, "out", NULL, &outs), 0);
    fx_start(&f);
    sl_msg *in;
    assert_int_equal(sl_msg_new(&in, "bad", 3), 0);
    assert_int_equal(sl_msg_meta_set(in, "k", "v"), 0);
    assert_int_equal(sl_publish(f.pub, "orders", &in, 1), 0);
    sl_msg *p;
    assert_int_equal(sl_next(ps, &p, 5000), 0);
    assert_int_equal(atomic_load(&r.calls), 4); /* 1 attempt + 3 retries */
    assert_int_equal(atomic_load(&r.retries), 3);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(r.retry_no[i], i + 1);
    assert_string_equal(sl_msg_uuid(p), sl_msg_uuid(in));
    assert_string_equal(sl_msg_meta_get(p, "k"), "v");
    assert_non_null(strstr(sl_msg_meta_get(p, SL_POISON_REASON_KEY), "boom 4"));
    assert_string_equal(sl_msg_meta_get(p, SL_POISON_TOPIC_KEY), "orders");
    assert_string_equal(sl_msg_meta_get(p, SL_POISON_HANDLER_KEY), "orders-handler");
    sl_msg_ack(p);
    sl_msg_unref(p);
    sl_msg_unref(in);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&r.calls), 4);                   /* never again */
    assert_int_equal(sl_next(outs, &p, 0), SL_ETIMEDOUT);         /* no outputs of failures */
    assert_int_equal(sl_next(ps, &p, 0), SL_ETIMEDOUT);           /* poisoned once */
    assert_int_equal(fx_drain(&f, "orders", "g", NULL, NULL), 0); /* original acked */
    sl_subscription_close(ps);
    sl_subscription_close(outs);
    fx_close(&f);
}

static void retry_publishes_only_the_successful_attempts_outputs(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    rec r = {.fail_until = 2};
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_flaky, &r);
    o.pub = f.pub;
    o.pub_topic = "out";
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_retry_opts ro;
    fast_retry(&ro, &r, 5);
    sl_middleware mw;
    assert_int_equal(sl_mw_retry(&mw, &ro), 0);
    assert_int_equal(sl_handler_add_middleware(h, mw), 0);
    sl_subscription *outs;
    assert_int_equal(sl_subscribe(f.sub, "out", NULL, &outs), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    sl_msg *m;
    assert_int_equal(sl_next(outs, &m, 5000), 0);
    size_t len;
    assert_memory_equal(sl_msg_payload(m, &len), "out3", 4);
    sl_msg_ack(m);
    sl_msg_unref(m);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&r.calls), 3);
    assert_int_equal(sl_next(outs, &m, 0), SL_ETIMEDOUT);
    sl_subscription_close(outs);
    fx_close(&f);
}

/* Run one always-failing message through a retry with opts ro; return calls. */
static int run_retry(sl_retry_opts *ro, rec *r)
{
    fx f;
    fx_open(&f, NULL);
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_flaky, r);
    o.nack_delay_ms = 60000; /* one delivery during the test */
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_middleware mw;
    assert_int_equal(sl_mw_retry(&mw, ro), 0);
    assert_int_equal(sl_handler_add_middleware(h, mw), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    int64_t until = tl_now_ms() + 5000;
    int prev = -1;
    while (tl_now_ms() < until) { /* until the call count is stable */
        sl_ctx_wait(NULL, 200);
        int c = atomic_load(&r->calls);
        if (c == prev)
            break;
        prev = c;
    }
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    fx_close(&f);
    return atomic_load(&r->calls);
}

static void retry_backoff_grows_by_multiplier_up_to_max_interval(void **state)
{
    (void)state;
    rec r = {0};
    sl_retry_opts ro;
    fast_retry(&ro, &r, 4);
    ro.initial_ms = 10;
    ro.multiplier = 2;
    ro.max_interval_ms = 25;
    assert_int_equal(run_retry(&ro, &r), 5);
    assert_int_equal(r.delays[0], 10);
    assert_int_equal(r.delays[1], 20);
    assert_int_equal(r.delays[2], 25);
    assert_int_equal(r.delays[3], 25);
}

static void retry_randomization_stays_within_its_factor(void **state)
{
    (void)state;
    rec r = {0};
    sl_retry_opts ro;
    fast_retry(&ro, &r, 8);
    ro.initial_ms = 20;
    ro.multiplier = 1;
    ro.randomization = 0.5;
    assert_int_equal(run_retry(&ro, &r), 9);
    for (int i = 0; i < 8; i++)
        assert_true(r.delays[i] >= 10 && r.delays[i] <= 30);
}

static void retry_gives_up_at_max_elapsed(void **state)
{
    (void)state;
    rec r = {0};
    sl_retry_opts ro;
    fast_retry(&ro, &r, 10);
    ro.initial_ms = 100;
    ro.multiplier = 1;
    ro.max_elapsed_ms = 250;
    /* retry 1 ends at ~100 ms, retry 2 at ~200, retry 3 would end at ~300 > 250 */
    assert_int_equal(run_retry(&ro, &r), 3);
}

static bool only_eio(int err, sl_msg *in, void *user)
{
    (void)in;
    (void)user;
    return err == SL_EIO;
}

typedef struct two_codes {
    _Atomic int calls;
} two_codes;

static int h_inval_then_eio(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    two_codes *t = user;
    return atomic_fetch_add(&t->calls, 1) == 0 ? SL_EINVAL : SL_EIO;
}

static void poison_filter_poisons_only_the_errors_it_accepts(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    two_codes t = {0};
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_inval_then_eio, &t);
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_poison_opts po = {.pub = f.pub, .topic = "poison", .filter = only_eio};
    sl_middleware mw;
    assert_int_equal(sl_mw_poison(&mw, &po), 0);
    assert_int_equal(sl_handler_add_middleware(h, mw), 0);
    sl_subscription *ps;
    assert_int_equal(sl_subscribe(f.sub, "poison", NULL, &ps), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 1);
    sl_msg *p;
    assert_int_equal(sl_next(ps, &p, 5000), 0);
    assert_int_equal(atomic_load(&t.calls), 2); /* EINVAL: nacked; EIO: poisoned */
    assert_non_null(strstr(sl_msg_meta_get(p, SL_POISON_REASON_KEY), sl_strerror(SL_EIO)));
    sl_msg_ack(p);
    sl_msg_unref(p);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    sl_subscription_close(ps);
    fx_close(&f);
}

static void poison_inside_retry_is_refused(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    rec r = {0};
    sl_retry_opts ro;
    fast_retry(&ro, &r, 3);
    sl_poison_opts po = {.pub = f.pub, .topic = "poison"};
    sl_middleware retry, poison, rp;
    /* router level: retry then poison (poison inside) */
    assert_int_equal(sl_mw_retry(&retry, &ro), 0);
    assert_int_equal(sl_router_add_middleware(f.r, retry), 0);
    assert_int_equal(sl_mw_poison(&poison, &po), 0);
    assert_int_equal(sl_router_add_middleware(f.r, poison), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "would disable retries"));
    /* handler level under a router-level retry: refused too */
    sl_handler_opts o;
    fx_opts(&f, &o, "h", "in", h_flaky, &r);
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    assert_int_equal(sl_mw_poison(&poison, &po), 0);
    assert_int_equal(sl_handler_add_middleware(h, poison), SL_EINVAL);
    assert_int_equal(sl_mw_retry_poison(&rp, &ro, &po), 0);
    assert_int_equal(sl_handler_add_middleware(h, rp), SL_EINVAL);
    fx_close(&f);
    /* the safe order is accepted: poison outside retry */
    fx_open(&f, NULL);
    assert_int_equal(sl_mw_poison(&poison, &po), 0);
    assert_int_equal(sl_router_add_middleware(f.r, poison), 0);
    assert_int_equal(sl_mw_retry(&retry, &ro), 0);
    assert_int_equal(sl_router_add_middleware(f.r, retry), 0);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(always_failing_message_reaches_poison_after_exactly_max_retries),
        cmocka_unit_test(retry_publishes_only_the_successful_attempts_outputs),
        cmocka_unit_test(retry_backoff_grows_by_multiplier_up_to_max_interval),
        cmocka_unit_test(retry_randomization_stays_within_its_factor),
        cmocka_unit_test(retry_gives_up_at_max_elapsed),
        cmocka_unit_test(poison_filter_poisons_only_the_errors_it_accepts),
        cmocka_unit_test(poison_inside_retry_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
