/*
 * test_transport_mw.c - what sl_transport reports when publishes fail, and
 * its middlewares: a failing publish and a too-short shutdown deadline are
 * reported for exactly the envelopes concerned (results, on_unsent, count),
 * the retry middleware recovers from transient failures and gives up after
 * max_retries, middlewares run outermost first, and the logging middleware
 * writes one line per publish through sl_log.
 *
 * The failing publisher is mem:// itself: a bus with a tiny per-group buffer
 * and a publisher opened with block=false answers SL_EAGAIN while the
 * subscriber's queue is full.
 */
#include <time.h>

#include "test_transport.h"

typedef struct outcome {
    size_t n;
    _Atomic int *calls;
    _Atomic int *status;
    _Atomic int *unsent; /* per index: times on_unsent ran */
    pthread_mutex_t mu;
    uint32_t order[256]; /* indices in on_unsent order (first 256) */
    size_t norder;
} outcome;

static void outcome_init(outcome *o, size_t n)
{
    memset(o, 0, sizeof *o);
    o->n = n;
    o->calls = calloc(n, sizeof *o->calls);
    o->status = calloc(n, sizeof *o->status);
    o->unsent = calloc(n, sizeof *o->unsent);
    assert_true(o->calls && o->status && o->unsent);
    pthread_mutex_init(&o->mu, NULL);
}

static void outcome_free(outcome *o)
{
    free(o->calls);
    free(o->status);
    free(o->unsent);
    pthread_mutex_destroy(&o->mu);
}

static void on_result(void *ctx, sl_msg *msg, int status)
{
    outcome *o = ctx;
    uint32_t i = tr_index(msg);
    atomic_fetch_add(&o->calls[i], 1);
    atomic_store(&o->status[i], status);
}

static void on_unsent(void *ctx, const char *topic, sl_msg *msg, int err)
{
    outcome *o = ctx;
    TR_CHECK_INT(err < 0, 1);
    TR_CHECK_INT(strcmp(topic, "t"), 0);
    uint32_t i = tr_index(msg);
    atomic_fetch_add(&o->unsent[i], 1);
    pthread_mutex_lock(&o->mu);
    if (o->norder < 256)
        o->order[o->norder++] = i;
    pthread_mutex_unlock(&o->mu);
}

static void put_n(sl_transport *t, outcome *o)
{
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "t", &tx), 0);
    for (uint32_t i = 0; i < o->n; i++) {
        sl_msg *m = tr_msg(i);
        assert_int_equal(
            sl_sender_put(tx, &(sl_envelope){.msg = m, .on_result = on_result, .ctx = o}), 0);
        sl_msg_unref(m);
    }
}

/* Every envelope got exactly one result; the failed ones (and only they)
 * reached on_unsent; the successful ones (and only they) are on s. */
static size_t check_exact(outcome *o, sl_subscription *s)
{
    _Atomic int *seen = calloc(o->n, sizeof *seen);
    tr_drain(s, seen, o->n);
    size_t failed = 0;
    for (size_t i = 0; i < o->n; i++) {
        assert_int_equal(atomic_load(&o->calls[i]), 1);
        int st = atomic_load(&o->status[i]);
        assert_int_equal(atomic_load(&o->unsent[i]), st != 0);
        assert_int_equal(atomic_load(&seen[i]), st == 0);
        failed += st != 0;
    }
    free(seen);
    assert_int_equal(tr_failures(), 0);
    return failed;
}

static void failing_publish_reports_exactly_the_unsent(void **state)
{
    (void)state;
    enum { N = 20, CAP = 5 };
    char bus[256], pub[300];
    tr_bus(bus, sizeof bus, "buffer=5");
    snprintf(pub, sizeof pub, "%s&block=false", bus);
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, bus), 0);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &s), 0); /* never read until the end */

    outcome o;
    outcome_init(&o, N);
    sl_transport_opts opts;
    sl_transport_opts_init(&opts);
    opts.publishers = 1; /* publishes in put order */
    opts.on_unsent = on_unsent;
    opts.unsent_ctx = &o;
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, pub, NULL, &opts), 0);
    put_n(t, &o);
    size_t unsent = 0;
    assert_int_equal(sl_transport_shutdown(t, -1, &unsent), SL_EIO);
    assert_int_equal(unsent, N - CAP);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(atomic_load(&o.status[i]), i < CAP ? 0 : SL_EAGAIN);
    assert_int_equal(o.norder, N - CAP);
    for (size_t k = 0; k < o.norder; k++)
        assert_int_equal(o.order[k], CAP + k);
    assert_int_equal(check_exact(&o, s), N - CAP);
    sl_transport_free(t);
    outcome_free(&o);
    sl_subscriber_close(sub);
}

static void short_deadline_reports_exactly_the_unsent(void **state)
{
    (void)state;
    enum { N = 50, CAP = 10 };
    char bus[256];
    tr_bus(bus, sizeof bus, "buffer=10"); /* publishers block once 10 are queued */
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, bus), 0);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &s), 0);

    outcome o;
    outcome_init(&o, N);
    sl_transport_opts opts;
    sl_transport_opts_init(&opts);
    opts.publishers = 4;
    opts.buffer_size = 64;
    opts.on_unsent = on_unsent;
    opts.unsent_ctx = &o;
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, bus, NULL, &opts), 0);
    put_n(t, &o);
    /* Wait (bounded) until the backend holds CAP and 4 publishes block. */
    sl_transport_stats st = {0};
    for (int64_t end = tl_now_ms() + 20000; tl_now_ms() < end;) {
        assert_int_equal(sl_transport_stats_get(t, &st), 0);
        if (st.sent == CAP && st.in_flight == 4)
            break;
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* poll the counters */
    }
    assert_int_equal(st.sent, CAP);
    int64_t t0 = tl_now_ms();
    size_t unsent = 0;
    assert_int_equal(sl_transport_shutdown(t, 150, &unsent), SL_ETIMEDOUT);
    int64_t took = tl_now_ms() - t0;
    assert_true(took >= 140);
    assert_true(took < 10000); /* in-flight publishes gave up at the deadline */
    assert_int_equal(unsent, N - CAP);
    for (uint32_t i = 0; i < N; i++) {
        int sti = atomic_load(&o.status[i]);
        assert_true(sti == 0 || sti == SL_ETIMEDOUT);
    }
    assert_int_equal(check_exact(&o, s), N - CAP);
    sl_transport_free(t);
    outcome_free(&o);
    sl_subscriber_close(sub);
}

/* ---- retry ---- */

typedef struct retry_probe {
    sl_subscription *drain; /* drained on the first retry, or NULL */
    _Atomic int retries;
    _Atomic int last_err;
    _Atomic int attempts; /* counted by an inner middleware */
} retry_probe;

static void on_retry(void *ctx, sl_msg *msg, unsigned attempt, int err)
{
    (void)msg;
    retry_probe *p = ctx;
    TR_CHECK_INT(attempt, atomic_fetch_add(&p->retries, 1) + 1);
    atomic_store(&p->last_err, err);
    sl_msg *m;
    if (p->drain && sl_next(p->drain, &m, 0) == 0) { /* make room: the failure was transient */
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
}

static int count_attempts(void *ctx, sl_transport_call *call, sl_msg *msg)
{
    atomic_fetch_add(&((retry_probe *)ctx)->attempts, 1);
    return sl_transport_call_next(call, msg);
}

/* A bus whose only group is full (one blocker queued), a transport with
 * [retry, count_attempts] publishing with block=false, one envelope. */
static int publish_through_full_bus(retry_probe *p, bool drain_on_retry, char *uuid_out)
{
    char bus[256], pub[300];
    tr_bus(bus, sizeof bus, "buffer=1");
    snprintf(pub, sizeof pub, "%s&block=false", bus);
    sl_subscriber *sub;
    sl_subscription *s;
    sl_publisher *direct;
    assert_int_equal(sl_subscriber_open(&sub, bus), 0);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &s), 0);
    assert_int_equal(sl_publisher_open(&direct, bus), 0);
    sl_msg *blocker = tr_msg(1000);
    assert_int_equal(sl_publish(direct, "t", &blocker, 1), 0);
    sl_msg_unref(blocker);
    p->drain = drain_on_retry ? s : NULL;

    sl_transport_retry_opts ro;
    sl_transport_retry_opts_init(&ro);
    ro.initial_ms = 1;
    ro.max_interval_ms = 4;
    ro.max_retries = 3;
    ro.on_retry = on_retry;
    ro.on_retry_ctx = p;
    sl_transport_mw mws[2] = {{0}, {count_attempts, p, NULL}};
    assert_int_equal(sl_transport_mw_retry(&mws[0], &ro), 0);
    sl_transport_opts opts;
    sl_transport_opts_init(&opts);
    opts.middlewares = mws;
    opts.n_middlewares = 2;
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, pub, NULL, &opts), 0);
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "t", &tx), 0);
    sl_msg *m = tr_msg(1);
    strcpy(uuid_out, sl_msg_uuid(m));
    sl_future *f;
    assert_int_equal(sl_future_new(&f), 0);
    assert_int_equal(sl_sender_put(tx, &(sl_envelope){.msg = m, .future = f}), 0);
    sl_msg_unref(m);
    int status = 1;
    assert_int_equal(sl_future_wait(f, 30000, &status), 0);
    sl_future_free(f);
    sl_transport_free(t);

    sl_msg *got;
    if (status == 0) { /* the message is the one left on the bus */
        assert_int_equal(sl_next(s, &got, 0), 0);
        assert_string_equal(sl_msg_uuid(got), uuid_out);
        sl_msg_ack(got);
        sl_msg_unref(got);
    }
    sl_publisher_close(direct);
    sl_subscriber_close(sub);
    return status;
}

static void retry_recovers_from_transient_publish_failure(void **state)
{
    (void)state;
    retry_probe p = {0};
    char uuid[SL_UUID_LEN + 1];
    assert_int_equal(publish_through_full_bus(&p, true, uuid), 0);
    assert_int_equal(atomic_load(&p.retries), 1);
    assert_int_equal(atomic_load(&p.last_err), SL_EAGAIN);
    assert_int_equal(atomic_load(&p.attempts), 2);
    assert_int_equal(tr_failures(), 0);
}

static void retry_gives_up_after_max_retries(void **state)
{
    (void)state;
    retry_probe p = {0};
    char uuid[SL_UUID_LEN + 1];
    assert_int_equal(publish_through_full_bus(&p, false, uuid), SL_EAGAIN);
    assert_int_equal(atomic_load(&p.retries), 3);
    assert_int_equal(atomic_load(&p.attempts), 4);
    assert_int_equal(tr_failures(), 0);
}

static void retry_options_are_checked(void **state)
{
    (void)state;
    sl_transport_retry_opts ro;
    sl_transport_retry_opts_init(&ro);
    ro.multiplier = 0.5;
    sl_transport_mw mw;
    assert_int_equal(sl_transport_mw_retry(&mw, &ro), SL_EINVAL);
    assert_int_equal(sl_transport_mw_retry(NULL, NULL), SL_EINVAL);
    assert_int_equal(sl_transport_mw_logging(&mw, (sl_log_level)9), SL_EINVAL);
}

/* ---- order and logging ---- */

typedef struct trace {
    pthread_mutex_t mu;
    char seq[16];
    size_t len;
} trace;

static int mark(trace *tr, char c)
{
    pthread_mutex_lock(&tr->mu);
    if (tr->len < sizeof tr->seq - 1)
        tr->seq[tr->len++] = c;
    pthread_mutex_unlock(&tr->mu);
    return 0;
}

static int mw_a(void *ctx, sl_transport_call *call, sl_msg *msg)
{
    mark(ctx, 'a');
    int rc = sl_transport_call_next(call, msg);
    mark(ctx, 'A');
    return rc;
}

static int mw_b(void *ctx, sl_transport_call *call, sl_msg *msg)
{
    mark(ctx, 'b');
    TR_CHECK_INT(strcmp(sl_transport_call_topic(call), "t"), 0);
    int rc = sl_transport_call_next(call, msg);
    mark(ctx, 'B');
    return rc;
}

static int freed;
static void free_trace(void *ctx)
{
    (void)ctx;
    freed++;
}

static void middlewares_run_outermost_first(void **state)
{
    (void)state;
    char bus[256];
    tr_bus(bus, sizeof bus, NULL);
    trace tr = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    sl_transport_mw mws[2] = {{mw_a, &tr, free_trace}, {mw_b, &tr, free_trace}};
    sl_transport_opts opts;
    sl_transport_opts_init(&opts);
    opts.middlewares = mws;
    opts.n_middlewares = 2;
    sl_transport *t;
    freed = 0;
    assert_int_equal(sl_transport_open(&t, bus, NULL, &opts), 0);
    sl_sender *tx;
    assert_int_equal(sl_transport_send(t, "t", &tx), 0);
    sl_msg *m = tr_msg(0);
    assert_int_equal(sl_sender_put(tx, &(sl_envelope){.msg = m}), 0);
    sl_msg_unref(m);
    assert_int_equal(sl_transport_shutdown(t, -1, NULL), 0);
    assert_string_equal(tr.seq, "abBA");
    assert_int_equal(tr_failures(), 0);
    assert_int_equal(freed, 0);
    sl_transport_free(t);
    assert_int_equal(freed, 2); /* the transport owned the ctxs */

    opts.buffer_size = 0; /* a failed open frees them at once */
    assert_int_equal(sl_transport_open(&t, bus, NULL, &opts), SL_EBADOPT);
    assert_int_equal(freed, 4);
}

typedef struct loglines {
    _Atomic int info, warn, other;
} loglines;

static void count_log(void *ctx, sl_log_level level, const char *component, const char *line)
{
    loglines *l = ctx;
    if (strcmp(component, "transport") != 0 || !strstr(line, "'t'"))
        atomic_fetch_add(&l->other, 1);
    else if (level == SL_LOG_INFO)
        atomic_fetch_add(&l->info, 1);
    else if (level == SL_LOG_WARN)
        atomic_fetch_add(&l->warn, 1);
}

static void logging_middleware_logs_each_publish(void **state)
{
    (void)state;
    char bus[256], pub[300];
    tr_bus(bus, sizeof bus, "buffer=2");
    snprintf(pub, sizeof pub, "%s&block=false", bus);
    sl_subscriber *sub;
    sl_subscription *s;
    assert_int_equal(sl_subscriber_open(&sub, bus), 0);
    assert_int_equal(sl_subscribe(sub, "t", NULL, &s), 0);
    loglines l = {0};
    sl_log_set(count_log, &l, SL_LOG_DEBUG);
    sl_transport_mw mw;
    assert_int_equal(sl_transport_mw_logging(&mw, SL_LOG_INFO), 0);
    sl_transport_opts opts;
    sl_transport_opts_init(&opts);
    opts.middlewares = &mw;
    opts.n_middlewares = 1;
    opts.publishers = 1;
    sl_transport *t;
    assert_int_equal(sl_transport_open(&t, pub, NULL, &opts), 0);
    outcome o;
    outcome_init(&o, 3);
    put_n(t, &o); /* two fit, the third fails */
    size_t unsent = 0;
    assert_int_equal(sl_transport_shutdown(t, -1, &unsent), SL_EIO);
    sl_log_set(NULL, NULL, SL_LOG_DEBUG);
    assert_int_equal(unsent, 1);
    assert_int_equal(atomic_load(&l.info), 2);
    assert_int_equal(atomic_load(&l.warn), 1);
    sl_transport_free(t);
    outcome_free(&o);
    sl_subscriber_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failing_publish_reports_exactly_the_unsent),
        cmocka_unit_test(short_deadline_reports_exactly_the_unsent),
        cmocka_unit_test(retry_recovers_from_transient_publish_failure),
        cmocka_unit_test(retry_gives_up_after_max_retries),
        cmocka_unit_test(retry_options_are_checked),
        cmocka_unit_test(middlewares_run_outermost_first),
        cmocka_unit_test(logging_middleware_logs_each_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
