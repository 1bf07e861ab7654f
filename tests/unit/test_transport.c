/*
 * test_transport.c - sl_transport on mem:// (src/transport/): shutdown
 * flushes a large buffer with nothing lost, every envelope's result is
 * reported exactly once (callbacks and futures), fire-and-forget, received
 * messages settled with an error come back, concurrent senders, a full
 * buffer (try_put / put_timeout / blocked put woken by shutdown), and
 * argument and state errors. Failure reporting and middlewares are in
 * test_transport_mw.c.
 *
 * Message counts follow the issue (100,000 for the flush); SL_TEST_SCALE
 * shrinks them for sanitizer builds.
 */
#include "test_transport.h"

/* ---- shutdown flushes every buffered envelope ---- */

/* A middleware that holds every publish until released, so a test can
 * fill the buffer before the publishers drain it. */
typedef struct hold {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned entered;
    bool released;
} hold;

static int hold_mw(void *ctx, sl_transport_call *call, sl_msg *msg)
{
    hold *h = ctx;
    pthread_mutex_lock(&h->mu);
    h->entered++;
    pthread_cond_broadcast(&h->cond);
    while (!h->released)
        pthread_cond_wait(&h->cond, &h->mu);
    pthread_mutex_unlock(&h->mu);
    return sl_transport_call_next(call, msg);
}

static void shutdown_flushes_100k_buffered_envelopes(void **state)
{
    (void)state;
    size_t n = tr_scaled(100000, 1000);
    tr_sink k;
    tr_sink_open(&k, n + 16, "flush");

    hold h = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};
    sl_transport_mw mw = {hold_mw, &h, NULL};
    sl_transport_opts o;
    sl_transport_opts_init(&o);
    o.buffer_size = n; /* every envelope can sit in the buffer at once */
    o.middlewares = &mw;
    o.n_middlewares = 1;
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, k.url, NULL, &o), 0);
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "flush", &tx), 0);
    for (uint32_t i = 0; i < n; i++) {
        sl_msg *m = tr_msg(i);
        sl_envelope e = {.msg = m};
        assert_int_equal(sl_sender_try_put(tx, &e), 0); /* never full */
        sl_msg_unref(m);
    }
    pthread_mutex_lock(&h.mu); /* all 16 publishers hold one envelope each */
    while (h.entered < o.publishers)
        pthread_cond_wait(&h.cond, &h.mu);
    h.released = true;
    pthread_cond_broadcast(&h.cond);
    pthread_mutex_unlock(&h.mu);
    sl_transport_stats st;
    assert_int_equal(sl_transport_stats_get(t, &st), 0);
    assert_true(st.buffered + st.in_flight + st.sent == n);
    print_message("buffered when shutdown starts: %llu of %zu\n", (unsigned long long)st.buffered,
                  n);

    size_t unsent = 99;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_transport_shutdown(t, -1, &unsent), 0);
    print_message("shutdown flushed them in %lld ms\n", (long long)(tl_now_ms() - t0));
    assert_int_equal(unsent, 0);
    assert_int_equal(sl_transport_stats_get(t, &st), 0);
    assert_int_equal(st.enqueued, n);
    assert_int_equal(st.sent, n);
    assert_int_equal(st.unsent, 0);
    assert_int_equal(st.buffered, 0);
    assert_int_equal(st.in_flight, 0);

    tr_sink_expect(&k, n, true);
    sl_transport_free(t);
    tr_sink_close(&k);
}

/* ---- results ---- */

typedef struct results {
    _Atomic int *calls;  /* per index: times the callback ran */
    _Atomic int *status; /* per index: last status */
} results;

static void on_result(void *ctx, sl_msg *msg, int status)
{
    results *r = ctx;
    uint32_t i = tr_index(msg);
    atomic_fetch_add(&r->calls[i], 1);
    atomic_store(&r->status[i], status);
}

static void result_reported_for_every_envelope(void **state)
{
    (void)state;
    size_t n = tr_scaled(20000, 200);
    tr_sink k;
    tr_sink_open(&k, n + 16, "results");

    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, k.url, NULL, NULL), 0); /* defaults: 1024 / 16 */
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "results", &tx), 0);
    assert_string_equal(sl_sender_topic(tx), "results");

    results r = {calloc(n, sizeof(_Atomic int)), calloc(n, sizeof(_Atomic int))};
    sl_future **fut = calloc(n, sizeof *fut);
    assert_true(r.calls && r.status && fut);
    for (uint32_t i = 0; i < n; i++) {
        atomic_store(&r.status[i], 1); /* not a status the transport reports */
        sl_msg *m = tr_msg(i);
        sl_envelope e = {.msg = m};
        if (i % 3 != 1) { /* callbacks on 0 and 2, futures on 1 and 2 */
            e.on_result = on_result;
            e.ctx = &r;
        }
        if (i % 3 != 0) {
            assert_int_equal(sl_future_new(&fut[i]), 0);
            e.future = fut[i];
        }
        assert_int_equal(sl_sender_put(tx, &e), 0); /* blocks while 1024 are buffered */
        sl_msg_unref(m);
    }
    /* A future can be waited on before shutdown. */
    int st = 1;
    assert_int_equal(sl_future_wait(fut[1], 30000, &st), 0);
    assert_int_equal(st, 0);

    size_t unsent = 99;
    assert_int_equal(sl_transport_shutdown(t, 60000, &unsent), 0);
    assert_int_equal(unsent, 0);
    for (size_t i = 0; i < n; i++) {
        if (i % 3 != 1) {
            assert_int_equal(atomic_load(&r.calls[i]), 1);
            assert_int_equal(atomic_load(&r.status[i]), 0);
        } else {
            assert_int_equal(atomic_load(&r.calls[i]), 0);
        }
        if (fut[i]) {
            assert_true(sl_future_done(fut[i]));
            st = 1;
            assert_int_equal(sl_future_wait(fut[i], 0, &st), 0);
            assert_int_equal(st, 0);
            sl_future_free(fut[i]);
        }
    }
    tr_sink_expect(&k, n, false);
    free(fut);
    free(r.calls);
    free(r.status);
    sl_transport_free(t);
    tr_sink_close(&k);
}

static void future_wait_times_out_while_pending(void **state)
{
    (void)state;
    sl_future *f;
    assert_int_equal(sl_future_new(&f), 0);
    assert_false(sl_future_done(f));
    assert_int_equal(sl_future_wait(f, 0, NULL), SL_ETIMEDOUT);
    assert_int_equal(sl_future_wait(f, 20, NULL), SL_ETIMEDOUT);
    sl_future_free(f);
    assert_int_equal(sl_future_wait(NULL, 0, NULL), SL_EINVAL);
}

static void fire_and_forget_envelopes_are_delivered(void **state)
{
    (void)state;
    size_t n = tr_scaled(5000, 100);
    tr_sink k;
    tr_sink_open(&k, 100000, "faf");
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, k.url, NULL, NULL), 0);
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "faf", &tx), 0);
    for (uint32_t i = 0; i < n; i++) {
        sl_msg *m = tr_msg(i);
        assert_int_equal(sl_sender_put(tx, &(sl_envelope){.msg = m}), 0);
        sl_msg_unref(m); /* the transport keeps its own reference */
    }
    assert_int_equal(sl_transport_shutdown(t, -1, NULL), 0);
    tr_sink_expect(&k, n, true);
    sl_transport_stats st;
    sl_transport_stats_get(t, &st);
    assert_int_equal(st.sent, n);
    sl_transport_free(t);
    tr_sink_close(&k);
}

/* ---- receiving ---- */

static void received_error_is_redelivered_and_success_acks(void **state)
{
    (void)state;
    char url[256];
    tr_bus(url, sizeof url, NULL);
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, url, url, NULL), 0);
    sl_receiver *rx;
    assert_int_equal(sl_transport_receive(t, "jobs", NULL, &rx), 0);
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "jobs", &tx), 0);

    sl_msg *m = tr_msg(7);
    sl_future *f;
    assert_int_equal(sl_future_new(&f), 0);
    assert_int_equal(sl_sender_put(tx, &(sl_envelope){.msg = m, .future = f}), 0);
    int st = 1;
    assert_int_equal(sl_future_wait(f, 10000, &st), 0);
    assert_int_equal(st, 0);
    sl_future_free(f);

    sl_msg *got;
    assert_int_equal(sl_receiver_next(rx, &got, 10000), 0);
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(m));
    assert_int_equal(sl_msg_deliveries(got), 1);
    assert_int_equal(sl_receiver_settle(rx, got, SL_EHANDLER), 0); /* error: nack */

    assert_int_equal(sl_receiver_next(rx, &got, 10000), 0);
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(m));
    assert_int_equal(sl_msg_deliveries(got), 2);
    assert_int_equal(tr_index(got), 7);
    assert_int_equal(sl_receiver_settle(rx, got, 0), 0); /* success: ack */

    assert_int_equal(sl_receiver_next(rx, &got, 100), SL_ETIMEDOUT);
    assert_null(got);
    sl_msg_unref(m);

    assert_int_equal(sl_transport_shutdown(t, 5000, NULL), 0);
    assert_int_equal(sl_receiver_next(rx, &got, 0), SL_ECLOSED);
    sl_transport_free(t);
}

typedef struct blocked_rx {
    sl_receiver *rx;
    int rc;
} blocked_rx;

static void *receive_forever(void *arg)
{
    blocked_rx *b = arg;
    sl_msg *m;
    b->rc = sl_receiver_next(b->rx, &m, -1);
    if (b->rc == 0)
        sl_receiver_settle(b->rx, m, 0);
    return NULL;
}

static void receiver_close_wakes_blocked_next(void **state)
{
    (void)state;
    char url[256];
    tr_bus(url, sizeof url, NULL);
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, NULL, url, NULL), 0);
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "x", &tx), SL_ENOTSUP); /* receive-only */
    blocked_rx b = {0};
    assert_int_equal(sl_transport_receive(t, "idle", NULL, &b.rx), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, receive_forever, &b), 0);
    assert_int_equal(sl_receiver_close(b.rx), 0); /* whether or not th blocked yet */
    pthread_join(th, NULL);
    assert_int_equal(b.rc, SL_ECLOSED);
    assert_int_equal(sl_receiver_close(b.rx), 0); /* idempotent */
    sl_transport_free(t);                         /* closes it once more: harmless */
}

/* ---- a receive racing the shutdown ---- */

static void *receive_once(void *arg)
{
    sl_transport *t = arg;
    sl_receiver *r;
    int rc = sl_transport_receive(t, "race", NULL, &r);
    assert_true(rc == 0 || rc == SL_ECLOSED);
    return NULL;
}

/* A receive under way when the shutdown closes the transport's own
 * subscriber: the shutdown waits for it (the subscriber was freed under
 * sl_subscribe, or the new subscription closed twice; ASan saw the use
 * after free, sqlite:// hung on the second close). */
static void receive_racing_shutdown_is_safe(void **state)
{
    (void)state;
    char url[256];
    tr_bus(url, sizeof url, NULL);
    for (int i = 0; i < 200; i++) {
        sl_transport *t;
        assert_int_equal(sl_transport_open(&t, NULL, url, NULL), 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, receive_once, t), 0);
        nanosleep(&(struct timespec){0, (long)(i % 40) * 25000L}, NULL);
        assert_int_equal(sl_transport_shutdown(t, 1000, NULL), 0);
        pthread_join(th, NULL);
        sl_transport_free(t);
    }
}

/* ---- concurrent senders ---- */

typedef struct sender_arg {
    sl_transport *t;
    uint32_t base, count;
    _Atomic size_t *ok;
    sl_sender *got;
} sender_arg;

static void count_ok(void *ctx, sl_msg *msg, int status)
{
    (void)msg;
    if (status == 0)
        atomic_fetch_add((_Atomic size_t *)ctx, 1);
}

static void *send_many(void *arg)
{
    sender_arg *a = arg;
    TR_CHECK_INT(sl_transport_send(a->t, "conc", &a->got), 0);
    for (uint32_t i = 0; i < a->count && a->got; i++) {
        sl_msg *m = tr_msg(a->base + i);
        sl_envelope e = {.msg = m, .on_result = count_ok, .ctx = a->ok};
        TR_CHECK_INT(sl_sender_put(a->got, &e), 0);
        sl_msg_unref(m);
    }
    return NULL;
}

static void concurrent_senders_lose_nothing(void **state)
{
    (void)state;
    enum { THREADS = 8 };
    uint32_t per = (uint32_t)tr_scaled(5000, 100);
    size_t n = (size_t)per * THREADS;
    tr_sink k;
    tr_sink_open(&k, n + 16, "conc");
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, k.url, NULL, NULL), 0);

    _Atomic size_t ok = 0;
    sender_arg args[THREADS];
    for (int i = 0; i < THREADS; i++)
        args[i] = (sender_arg){t, (uint32_t)i * per, per, &ok, NULL};
    tl_run_threads(THREADS, send_many, args, sizeof args[0]);
    assert_int_equal(tr_failures(), 0);
    for (int i = 1; i < THREADS; i++)
        assert_ptr_equal(args[i].got, args[0].got); /* one sender per topic */

    size_t unsent = 99;
    assert_int_equal(sl_transport_shutdown(t, 60000, &unsent), 0);
    assert_int_equal(unsent, 0);
    assert_int_equal(atomic_load(&ok), n);
    tr_sink_expect(&k, n, true);
    sl_transport_free(t);
    tr_sink_close(&k);
}

/* ---- a full buffer ---- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int entered;
} gate;

/* Holds every publish until the shutdown deadline cuts it off. */
static int gate_mw(void *ctx, sl_transport_call *call, sl_msg *msg)
{
    (void)msg;
    gate *g = ctx;
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
    while (sl_transport_call_sleep(call, 5) == 0)
        ;
    return SL_ETIMEDOUT;
}

typedef struct putter {
    sl_sender *tx;
    int rc;
} putter;

static void *put_blocking(void *arg)
{
    putter *p = arg;
    sl_msg *m = tr_msg(99);
    p->rc = sl_sender_put(p->tx, &(sl_envelope){.msg = m});
    sl_msg_unref(m);
    return NULL;
}

static void full_buffer_try_put_timeout_and_shutdown_wake(void **state)
{
    (void)state;
    char url[256];
    tr_bus(url, sizeof url, NULL);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    sl_transport_mw mw = {gate_mw, &g, NULL};
    sl_transport_opts o;
    sl_transport_opts_init(&o);
    o.buffer_size = 4;
    o.publishers = 1;
    o.middlewares = &mw;
    o.n_middlewares = 1;
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, url, NULL, &o), 0);
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "full", &tx), 0);

    sl_msg *m[6];
    for (uint32_t i = 0; i < 6; i++)
        m[i] = tr_msg(i);
    assert_int_equal(sl_sender_try_put(tx, &(sl_envelope){.msg = m[0]}), 0);
    pthread_mutex_lock(&g.mu); /* wait until the one publisher holds m[0] */
    while (g.entered == 0)
        pthread_cond_wait(&g.cond, &g.mu);
    pthread_mutex_unlock(&g.mu);
    for (int i = 1; i <= 4; i++)
        assert_int_equal(sl_sender_try_put(tx, &(sl_envelope){.msg = m[i]}), 0);
    assert_int_equal(sl_sender_try_put(tx, &(sl_envelope){.msg = m[5]}), SL_EAGAIN);
    assert_int_equal(sl_sender_put_timeout(tx, &(sl_envelope){.msg = m[5]}, 30), SL_ETIMEDOUT);

    putter p = {tx, 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, put_blocking, &p), 0);
    size_t unsent = 0;
    assert_int_equal(sl_transport_shutdown(t, 100, &unsent), SL_ETIMEDOUT);
    pthread_join(th, NULL);
    assert_int_equal(p.rc, SL_ECLOSED); /* woken (or refused) by the shutdown */
    assert_int_equal(unsent, 5);        /* m[0] cut in flight, m[1..4] in the buffer */
    assert_int_equal(sl_sender_try_put(tx, &(sl_envelope){.msg = m[5]}), SL_ECLOSED);
    assert_int_equal(sl_transport_send(t, "other", &tx), SL_ECLOSED);
    assert_int_equal(sl_transport_shutdown(t, 0, &unsent), SL_ETIMEDOUT); /* same answer */
    assert_int_equal(unsent, 5);
    for (int i = 0; i < 6; i++)
        sl_msg_unref(m[i]);
    sl_transport_free(t);
}

/* ---- arguments ---- */

static void bad_arguments_are_refused(void **state)
{
    (void)state;
    char url[256];
    tr_bus(url, sizeof url, NULL);
    sl_transport *t = (sl_transport *)1;
    sl_transport_opts o;
    sl_transport_opts_init(&o);
    assert_int_equal(o.buffer_size, 1024);
    assert_int_equal(o.publishers, 16);
    o.buffer_size = 0;
    assert_int_equal(sl_transport_open(&t, url, NULL, &o), SL_EBADOPT);
    assert_null(t);
    sl_transport_opts_init(&o);
    o.publishers = 0;
    assert_int_equal(sl_transport_open(&t, url, NULL, &o), SL_EBADOPT);
    assert_int_equal(sl_transport_open(&t, NULL, NULL, NULL), SL_EINVAL);
    assert_int_equal(sl_transport_open(&t, "nope://x", NULL, NULL), SL_ENOTSUP);
    assert_int_equal(sl_transport_new(&t, NULL, NULL, NULL), SL_EINVAL);

    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    assert_int_equal(sl_transport_new(&t, pub, NULL, NULL), 0); /* borrowed handle */
    sl_sender *tx;
    sl_receiver *rx;
    assert_int_equal(sl_transport_send(t, "", &tx), SL_EINVAL);
    assert_int_equal(sl_transport_receive(t, "x", NULL, &rx), SL_ENOTSUP);
    assert_int_equal(sl_transport_send(t, "a", &tx), 0);
    assert_int_equal(sl_sender_put(tx, NULL), SL_EINVAL);
    assert_int_equal(sl_sender_put(tx, &(sl_envelope){0}), SL_EINVAL);
    sl_transport_free(t);
    sl_msg *m = tr_msg(1);
    assert_int_equal(sl_publish(pub, "a", &m, 1), 0); /* still ours, still open */
    sl_msg_unref(m);
    assert_int_equal(sl_publisher_close(pub), 0);
    sl_transport_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shutdown_flushes_100k_buffered_envelopes),
        cmocka_unit_test(result_reported_for_every_envelope),
        cmocka_unit_test(future_wait_times_out_while_pending),
        cmocka_unit_test(fire_and_forget_envelopes_are_delivered),
        cmocka_unit_test(received_error_is_redelivered_and_success_acks),
        cmocka_unit_test(receiver_close_wakes_blocked_next),
        cmocka_unit_test(receive_racing_shutdown_is_safe),
        cmocka_unit_test(concurrent_senders_lose_nothing),
        cmocka_unit_test(full_buffer_try_put_timeout_and_shutdown_wake),
        cmocka_unit_test(bad_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
