/*
 * test_router.c - the router core on mem://: outputs before ack, nack and
 * redelivery (immediate and with backoff), handlers without publisher,
 * concurrent workers, graceful close under load (nothing lost, counted
 * exactly), cut-off at the close deadline, several topics, wildcard
 * refusal, batch handlers, lifecycle errors and the signals plugin.
 */
#include <signal.h>

#include "test_router_fixture.h"

typedef struct counter {
    _Atomic int calls;
    _Atomic int reserve;    /* index of the next t[] slot */
    _Atomic int fail_first; /* fail deliveries == 1 */
    int64_t t[8];           /* call times (first 8) */
} counter;

static int h_upper(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    counter *c = user;
    atomic_fetch_add(&c->calls, 1);
    size_t len;
    const char *p = sl_msg_payload(in, &len);
    char buf[64];
    for (size_t i = 0; i < len && i < sizeof buf; i++)
        buf[i] = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 32 : p[i]);
    sl_msg *m;
    int rc = sl_msg_new(&m, buf, len < sizeof buf ? len : sizeof buf);
    if (rc)
        return rc;
    if ((rc = sl_msg_list_push(out, m)))
        sl_msg_unref(m);
    return rc;
}

/* Opens f with one handler `name` on "in" (fn, user; workers when non-zero,
 * nack_delay_ms), starts the router and publishes n messages to "in". */
static void fx_start_in(fx *f, const char *name, sl_handler_fn fn, void *user, unsigned workers,
                        int nack_delay_ms, int n)
{
    fx_open(f, NULL);
    sl_handler_opts o;
    fx_opts(f, &o, name, "in", fn, user);
    if (workers)
        o.workers = workers;
    o.nack_delay_ms = nack_delay_ms;
    assert_int_equal(sl_router_add_handler(f->r, &o, NULL), 0);
    fx_start(f);
    fx_publish(f, "in", 0, n);
}

static void handler_publishes_outputs_before_acking_input(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    counter c = {0};
    sl_handler_opts o;
    fx_opts(&f, &o, "upper", "in", h_upper, &c);
    o.pub = f.pub;
    o.pub_topic = "out";
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), 0);
    sl_subscription *outs;
    assert_int_equal(sl_subscribe(f.sub, "out", NULL, &outs), 0);
    fx_start(&f);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "hello", 5), 0);
    sl_publish_opts po;
    sl_publish_opts_init(&po);
    po.flags = SL_PUBLISH_WAIT_ACK;
    po.timeout_ms = 5000;
    assert_int_equal(sl_publish_ex(f.pub, "in", &m, 1, &po), 0); /* returns once acked */
    sl_msg_unref(m);
    /* acked means the output was already published: it is there now */
    assert_int_equal(sl_next(outs, &m, 0), 0);
    size_t len;
    assert_memory_equal(sl_msg_payload(m, &len), "HELLO", 5);
    sl_msg_ack(m);
    sl_msg_unref(m);
    sl_subscription_close(outs);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    fx_close(&f);
}

static int h_fail_first(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)out;
    counter *c = user;
    int k = atomic_fetch_add(&c->reserve, 1);
    if (k < 8)
        c->t[k] = tl_now_ms();
    atomic_fetch_add(&c->calls, 1); /* publishes t[k] to the waiting test */
    return sl_msg_deliveries(in) == 1 ? sl_handler_fail(SL_EIO, "first delivery fails") : 0;
}

static void failing_handler_nacks_and_message_is_redelivered(void **state)
{
    (void)state;
    fx f;
    counter c = {0};
    fx_start_in(&f, "h", h_fail_first, &c, 0, 0, 1);
    assert_int_equal(fx_wait_count(&c.calls, 2, 5000), 2);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&c.calls), 2);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0); /* acked on 2nd delivery */
    fx_close(&f);
}

static void nack_redelivers_after_backoff(void **state)
{
    (void)state;
    fx f;
    counter c = {0};
    fx_start_in(&f, "h", h_fail_first, &c, 0, 200, 1);
    assert_int_equal(fx_wait_count(&c.calls, 2, 5000), 2);
    assert_true(c.t[1] - c.t[0] >= 195); /* not instantly */
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    fx_close(&f);
}

static void handler_without_publisher_consumes(void **state)
{
    (void)state;
    fx f;
    counter c = {0};
    fx_start_in(&f, "sink", h_fail_first, &c, 0, 0, 5);
    assert_int_equal(fx_wait_count(&c.calls, 10, 5000), 10);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    fx_close(&f);
}

static void outputs_without_publisher_are_an_error(void **state)
{
    (void)state;
    fx f;
    counter c = {0};
    fx_start_in(&f, "bad", h_upper, &c, 0, 0, 1);
    assert_true(fx_wait_count(&c.calls, 3, 5000) >= 3); /* nacked, redelivered */
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 1);
    fx_close(&f);
}

typedef struct conc {
    _Atomic int inside, max_inside, calls;
} conc;

static int h_concurrent(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)in;
    (void)out;
    conc *c = user;
    int now = atomic_fetch_add(&c->inside, 1) + 1;
    int mx = atomic_load(&c->max_inside);
    while (now > mx && !atomic_compare_exchange_weak(&c->max_inside, &mx, now)) {
    }
    /* hold until 4 are inside at once (bounded) */
    int64_t until = tl_now_ms() + 3000;
    while (atomic_load(&c->max_inside) < 4 && tl_now_ms() < until)
        sl_ctx_wait(ctx, 1);
    atomic_fetch_sub(&c->inside, 1);
    atomic_fetch_add(&c->calls, 1);
    return 0;
}

static void workers_handle_messages_concurrently(void **state)
{
    (void)state;
    fx f;
    conc c = {0};
    fx_start_in(&f, "slow", h_concurrent, &c, 4, 0, 8);
    assert_int_equal(fx_wait_count(&c.calls, 8, 10000), 8);
    assert_int_equal(atomic_load(&c.max_inside), 4);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    fx_close(&f);
}

/* ---- graceful close under load ---- */

typedef struct load {
    _Atomic int handled;
    _Atomic unsigned char *seen; /* per payload index: times handled/left */
    fx *f;
    int n;
} load;

static int h_count(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)out;
    load *l = user;
    int i = fx_payload_int(in);
    if (i >= 0 && i < l->n)
        atomic_fetch_add(&l->seen[i], 1);
    atomic_fetch_add(&l->handled, 1);
    return 0;
}

static void *producer(void *arg)
{
    load *l = arg;
    for (int i = 0; i < l->n; i += 100) {
        sl_msg *ms[100];
        int k = 0;
        for (; k < 100 && i + k < l->n; k++) {
            char buf[16];
            int len = snprintf(buf, sizeof buf, "%d", i + k);
            if (sl_msg_new(&ms[k], buf, (size_t)len))
                abort();
        }
        if (sl_publish(l->f->pub, "in", ms, (size_t)k))
            abort();
        for (int j = 0; j < k; j++)
            sl_msg_unref(ms[j]);
    }
    return NULL;
}

static void count_left(sl_msg *m, void *user)
{
    load *l = user;
    int i = fx_payload_int(m);
    if (i >= 0 && i < l->n)
        atomic_fetch_add(&l->seen[i], 1);
}

static void graceful_close_under_load_loses_nothing(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, "?buffer=1000000");
    load l = {.f = &f, .n = fx_scale(50000)};
    l.seen = calloc((size_t)l.n, 1);
    assert_non_null(l.seen);
    sl_handler_opts o;
    fx_opts(&f, &o, "count", "in", h_count, &l);
    o.workers = 4;
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), 0);
    fx_start(&f);
    pthread_t p;
    assert_int_equal(pthread_create(&p, NULL, producer, &l), 0);
    fx_wait_count(&l.handled, l.n / 4, 20000);
    unsigned cut = 99;
    assert_int_equal(fx_stop(&f, 10000, &cut), 0); /* while the producer still runs */
    assert_int_equal(cut, 0);
    pthread_join(p, NULL);
    int handled = atomic_load(&l.handled);
    int left = fx_drain(&f, "in", "g", count_left, &l);
    assert_int_equal(handled + left, l.n);
    for (int i = 0; i < l.n; i++)
        assert_int_equal(l.seen[i], 1); /* each exactly once: handled+acked or still there */
    free((void *)l.seen);
    fx_close(&f);
}

static int h_stuck(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)in;
    (void)out;
    counter *c = user;
    atomic_fetch_add(&c->calls, 1);
    int rc = sl_ctx_wait(ctx, 20000); /* returns when the router cuts us off */
    return rc ? rc : SL_EIO;
}

static void close_deadline_cuts_off_handlers_and_keeps_their_message(void **state)
{
    (void)state;
    fx f;
    counter c = {0};
    fx_start_in(&f, "stuck", h_stuck, &c, 0, 0, 1);
    assert_int_equal(fx_wait_count(&c.calls, 1, 5000), 1);
    unsigned cut = 0;
    int64_t t0 = tl_now_ms();
    assert_int_equal(fx_stop(&f, 100, &cut), SL_ETIMEDOUT);
    assert_true(tl_now_ms() - t0 < 5000);
    assert_int_equal(cut, 1);
    sl_router_free(f.r); /* joins the worker, hands the message back */
    assert_int_equal(sl_router_new(&f.r, NULL), 0);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 1);
    fx_close(&f);
}

/* ---- several topics, wildcards ---- */

typedef struct topics_seen {
    _Atomic int a, b;
} topics_seen;

static int h_topics(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)out;
    topics_seen *t = user;
    atomic_fetch_add(strcmp(sl_msg_topic(in), "orders.a") == 0 ? &t->a : &t->b, 1);
    return 0;
}

static void handler_subscribes_to_several_topics(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    topics_seen t = {0};
    sl_handler_opts o;
    fx_opts(&f, &o, "multi", NULL, h_topics, &t);
    const char *const topics[] = {"orders.a", "orders.b"};
    o.topics = topics;
    o.ntopics = 2;
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), 0);
    fx_start(&f);
    fx_publish(&f, "orders.a", 0, 3);
    fx_publish(&f, "orders.b", 0, 5);
    assert_int_equal(fx_wait_count(&t.b, 5, 5000), 5);
    assert_int_equal(fx_wait_count(&t.a, 3, 5000), 3);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    fx_close(&f);
}

static void wildcard_topic_is_refused_clearly(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    sl_handler_opts o;
    fx_opts(&f, &o, "wild", "orders.*", h_topics, NULL);
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), SL_ENOTSUP);
    assert_non_null(strstr(sl_errmsg(), "orders.*"));
    fx_close(&f);
}

/* ---- batches ---- */

typedef struct batch {
    _Atomic int calls, first_size;
    _Atomic int acked_even, redelivered_odd;
} batch;

static int h_batch(sl_ctx *ctx, sl_msg *const *in, size_t n, int *results, sl_msg_list *out,
                   void *user)
{
    (void)ctx;
    (void)out;
    batch *b = user;
    if (atomic_fetch_add(&b->calls, 1) == 0)
        atomic_store(&b->first_size, (int)n);
    for (size_t i = 0; i < n; i++) {
        int v = fx_payload_int(in[i]);
        if (v % 2 && sl_msg_deliveries(in[i]) == 1)
            results[i] = SL_EIO; /* nack this one alone */
        else if (v % 2)
            atomic_fetch_add(&b->redelivered_odd, 1);
        else
            atomic_fetch_add(&b->acked_even, 1);
    }
    return 0;
}

static void batch_handler_acks_and_nacks_one_by_one(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    batch b = {0};
    sl_handler_opts o;
    fx_opts(&f, &o, "batch", "in", NULL, &b);
    o.batch_fn = h_batch;
    o.batch_max = 10;
    o.batch_wait_ms = 300;
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), 0);
    fx_start(&f);
    sl_msg *ms[10];
    for (int i = 0; i < 10; i++) {
        char buf[4];
        snprintf(buf, sizeof buf, "%d", i);
        assert_int_equal(sl_msg_new(&ms[i], buf, strlen(buf)), 0);
    }
    assert_int_equal(sl_publish(f.pub, "in", ms, 10), 0);
    for (int i = 0; i < 10; i++)
        sl_msg_unref(ms[i]);
    assert_int_equal(fx_wait_count(&b.redelivered_odd, 5, 5000), 5);
    assert_int_equal(atomic_load(&b.first_size), 10);
    assert_int_equal(atomic_load(&b.acked_even), 5);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(fx_drain(&f, "in", "g", NULL, NULL), 0);
    fx_close(&f);
}

static int h_batch_fail(sl_ctx *ctx, sl_msg *const *in, size_t n, int *results, sl_msg_list *out,
                        void *user)
{
    (void)ctx;
    (void)in;
    (void)results;
    (void)out;
    batch *b = user;
    atomic_fetch_add(&b->calls, 1);
    atomic_fetch_add(&b->acked_even, (int)n);
    return SL_EIO;
}

static void failing_batch_nacks_every_message(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    batch b = {0};
    sl_handler_opts o;
    fx_opts(&f, &o, "batch", "in", NULL, &b);
    o.batch_fn = h_batch_fail;
    o.batch_max = 4;
    o.nack_delay_ms = 10000; /* nacked messages stay away during the test */
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), 0);
    fx_start(&f);
    fx_publish(&f, "in", 0, 4);
    assert_int_equal(fx_wait_count(&b.acked_even, 4, 5000), 4);
    assert_int_equal(fx_stop(&f, 5000, NULL), 0);
    assert_int_equal(atomic_load(&b.acked_even), 4); /* no instant redelivery */
    fx_close(&f);
}

static void batch_handlers_refuse_middlewares(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    sl_handler_opts o;
    fx_opts(&f, &o, "batch", "in", NULL, NULL);
    o.batch_fn = h_batch;
    sl_handler *h;
    assert_int_equal(sl_router_add_handler(f.r, &o, &h), 0);
    sl_middleware mw;
    assert_int_equal(sl_mw_duplicator(&mw), 0);
    assert_int_equal(sl_handler_add_middleware(h, mw), SL_ENOTSUP);
    fx_close(&f);
}

/* ---- lifecycle ---- */

static void add_handler_validates_options(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    sl_handler_opts o;
    fx_opts(&f, &o, "a", "in", h_upper, NULL);
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), 0);
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), SL_EINVAL); /* duplicate name */
    fx_opts(&f, &o, "b", "in", h_upper, NULL);
    o.pub = f.pub; /* without pub_topic */
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), SL_EINVAL);
    fx_opts(&f, &o, "c", "in", NULL, NULL); /* no function */
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), SL_EINVAL);
    assert_non_null(sl_router_handler(f.r, "a"));
    assert_null(sl_router_handler(f.r, "b"));
    fx_close(&f);
}

static void run_after_close_returns_closed_and_run_twice_is_refused(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    assert_int_equal(sl_router_close(f.r, 0, NULL), 0);
    assert_int_equal(sl_router_run(f.r), SL_ECLOSED);
    assert_int_equal(sl_router_running(f.r, 0), SL_ECLOSED);
    fx_close(&f);
    fx_open(&f, NULL);
    sl_handler_opts o;
    fx_opts(&f, &o, "a", "in", h_upper, NULL);
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), 0);
    fx_start(&f);
    assert_int_equal(sl_router_run(f.r), SL_ESTATE);
    /* handlers may join a running router, but not under a taken name */
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), SL_EINVAL);
    assert_int_equal(sl_router_close(f.r, 5000, NULL), 0);
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), SL_ESTATE);
    fx_close(&f);
}

static void signals_plugin_closes_router_on_sigterm(void **state)
{
    (void)state;
    fx f;
    fx_open(&f, NULL);
    sl_handler_opts o;
    fx_opts(&f, &o, "a", "in", h_upper, NULL);
    assert_int_equal(sl_router_add_handler(f.r, &o, NULL), 0);
    sl_plugin p;
    assert_int_equal(sl_plugin_signals(&p), 0);
    assert_int_equal(sl_router_add_plugin(f.r, p), 0);
    fx_start(&f);
    assert_int_equal(raise(SIGTERM), 0);
    pthread_join(f.run_thread, NULL); /* run returns: the plugin closed the router */
    f.running = false;
    assert_int_equal(atomic_load(&f.run_rc), 0);
    assert_int_equal(sl_router_running(f.r, 0), SL_ECLOSED);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handler_publishes_outputs_before_acking_input),
        cmocka_unit_test(failing_handler_nacks_and_message_is_redelivered),
        cmocka_unit_test(nack_redelivers_after_backoff),
        cmocka_unit_test(handler_without_publisher_consumes),
        cmocka_unit_test(outputs_without_publisher_are_an_error),
        cmocka_unit_test(workers_handle_messages_concurrently),
        cmocka_unit_test(graceful_close_under_load_loses_nothing),
        cmocka_unit_test(close_deadline_cuts_off_handlers_and_keeps_their_message),
        cmocka_unit_test(handler_subscribes_to_several_topics),
        cmocka_unit_test(wildcard_topic_is_refused_clearly),
        cmocka_unit_test(batch_handler_acks_and_nacks_one_by_one),
        cmocka_unit_test(failing_batch_nacks_every_message),
        cmocka_unit_test(batch_handlers_refuse_middlewares),
        cmocka_unit_test(add_handler_validates_options),
        cmocka_unit_test(run_after_close_returns_closed_and_run_twice_is_refused),
        cmocka_unit_test(signals_plugin_closes_router_on_sigterm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
