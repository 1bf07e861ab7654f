/*
 * test_requeue.c - delayed messages on backends without native delay
 * (sluice/requeue.h), on mem:// (forced through the delay topic) and
 * sqlite:// (no native delayed publish): delayed messages arrive no sooner
 * than due and in due order; a failing handler's message comes back after
 * a growing delay through the requeue middleware and, past max_requeues,
 * reaches the poison queue; bad parked messages are poisoned without
 * stopping the requeuer; a closed requeuer's held messages are delivered
 * by the next one; bad SL_META_DELIVER_AT publishes nothing.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/requeue.h"
#include "testlib.h"

typedef struct env {
    char dir[64], url[200];
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_delay_opts d;
    char delay_topic[80];
} env;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void env_open(env *e, bool sqlite)
{
    memset(e, 0, sizeof *e);
    if (sqlite) {
        snprintf(e->dir, sizeof e->dir, "/tmp/sl-requeue-XXXXXX");
        assert_non_null(mkdtemp(e->dir));
        snprintf(e->url, sizeof e->url, "sqlite://%s/q.db?sync=normal", e->dir);
    } else
        snprintf(e->url, sizeof e->url, "mem://%s?persistent=true", tl_unique("rq"));
    assert_int_equal(sl_publisher_open(&e->pub, e->url), 0);
    assert_int_equal(sl_subscriber_open(&e->sub, e->url), 0);
    sl_delay_opts_init(&e->d);
    snprintf(e->delay_topic, sizeof e->delay_topic, "%s", tl_unique("delay"));
    e->d.delay_topic = e->delay_topic;
    e->d.via_topic = !sqlite; /* mem:// could delay natively: force the requeuer */
    if (sqlite)
        assert_false(sl_publisher_features(e->pub) & SL_FEAT_DELAYED_PUBLISH);
}

static void env_close(env *e)
{
    assert_int_equal(sl_subscriber_close(e->sub), 0);
    assert_int_equal(sl_publisher_close(e->pub), 0);
    if (e->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
        assert_int_equal(system(cmd), 0);
    }
}

static sl_requeuer *requeuer(env *e)
{
    sl_requeuer_opts o;
    sl_requeuer_opts_init(&o);
    o.delay_topic = e->delay_topic;
    sl_requeuer *rq;
    assert_int_equal(sl_requeuer_new(&rq, e->sub, e->pub, &o), 0);
    assert_int_equal(sl_requeuer_start(rq), 0);
    return rq;
}

static sl_msg *due_msg(const char *body, int64_t due)
{
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, body, strlen(body)), 0);
    if (due) {
        char at[32];
        snprintf(at, sizeof at, "%lld", (long long)due);
        assert_int_equal(sl_msg_meta_set(m, SL_META_DELIVER_AT, at), 0);
    }
    return m;
}

static sl_subscription *listen(env *e, const char *topic)
{
    sl_subscription *s;
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    so.group = "check";
    so.start = SL_START_EARLIEST;
    assert_int_equal(sl_subscribe(e->sub, topic, &so, &s), 0);
    return s;
}

/* ---- delayed publish ---- */

static void delayed_in_due_order(bool sqlite)
{
    env e;
    env_open(&e, sqlite);
    sl_requeuer *rq = requeuer(&e);
    const char *topic = tl_unique("reminders");
    sl_subscription *s = listen(&e, topic);
    int64_t now = wall_ms();
    int64_t due[3] = {now + 600, now + 250, 0};
    sl_msg *m[3] = {due_msg("late", due[0]), due_msg("soon", due[1]), due_msg("now", 0)};
    assert_int_equal(sl_publish_delayed(e.pub, topic, m, 3, &e.d), 0);
    const int want[3] = {2, 1, 0}; /* now, soon, late */
    for (int k = 0; k < 3; k++) {
        sl_msg *got;
        assert_int_equal(sl_next(s, &got, 10000), 0);
        int64_t t = wall_ms();
        int i = want[k];
        assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(m[i]));
        if (due[i] && t < due[i])
            fail_msg("message %d arrived %lld ms before it was due", i, (long long)(due[i] - t));
        assert_null(sl_msg_meta_get(got, SL_REQUEUE_META_TOPIC));
        assert_null(sl_msg_meta_get(got, SL_META_DELIVER_AT));
        assert_true(sl_msg_equal(got, m[i]) || due[i]); /* only the delay keys differ */
        assert_int_equal(sl_msg_ack(got), 0);
        sl_msg_unref(got);
    }
    sl_msg *extra;
    assert_int_equal(sl_next(s, &extra, 200), SL_ETIMEDOUT);
    for (int64_t end = tl_now_ms() + 5000; sl_requeuer_count(rq) < 2 && tl_now_ms() < end;)
        tl_sleep_ms(5); /* counted just after the publish we saw */
    assert_int_equal(sl_requeuer_count(rq), 2);
    for (int i = 0; i < 3; i++)
        sl_msg_unref(m[i]);
    sl_requeuer_close(rq);
    env_close(&e);
}

static void delayed_messages_wait_until_due_on_mem(void **st)
{
    (void)st;
    delayed_in_due_order(false);
}
static void delayed_messages_wait_until_due_on_sqlite(void **st)
{
    (void)st;
    delayed_in_due_order(true);
}

/* ---- the requeue middleware ---- */

typedef struct calls {
    atomic_int n;
    int64_t at[8];
    int fail_until; /* fail while requeue_count < this */
} calls;

static int flaky(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)out;
    calls *c = user;
    int k = atomic_load(&c->n);
    if (k < 8)
        c->at[k] = wall_ms();
    atomic_fetch_add(&c->n, 1);
    const char *cs = sl_msg_meta_get(in, SL_REQUEUE_META_COUNT);
    int count = cs ? atoi(cs) : 0;
    if (count < c->fail_until)
        return sl_handler_fail(SL_EHANDLER, "not yet (%d)", count);
    return 0;
}

static void *run(void *r)
{
    sl_router_run(r);
    return NULL;
}

static void failed_messages_come_back(bool sqlite)
{
    env e;
    env_open(&e, sqlite);
    sl_requeuer *rq = requeuer(&e);
    const char *topic = tl_unique("jobs"), *poison = tl_unique("poison");
    sl_subscription *ps = listen(&e, poison);
    sl_router *r;
    assert_int_equal(sl_router_new(&r, NULL), 0);
    calls ok = {.fail_until = 2}, never = {.fail_until = 1000};
    sl_handler_opts ho;
    sl_handler_opts_init(&ho);
    ho.sub = e.sub;
    ho.topic = topic;
    ho.fn = flaky;
    ho.user = &ok;
    ho.name = "flaky";
    sl_handler *h1, *h2;
    assert_int_equal(sl_router_add_handler(r, &ho, &h1), 0);
    const char *topic2 = tl_unique("jobs2");
    ho.name = "never";
    ho.topic = topic2;
    ho.user = &never;
    assert_int_equal(sl_router_add_handler(r, &ho, &h2), 0);
    sl_poison_opts po = {.pub = e.pub, .topic = poison};
    sl_middleware mw;
    assert_int_equal(sl_mw_poison(&mw, &po), 0);
    assert_int_equal(sl_router_add_middleware(r, mw), 0); /* outermost */
    sl_requeue_opts qo;
    sl_requeue_opts_init(&qo);
    qo.pub = e.pub;
    qo.delay = e.d;
    qo.delay_ms = 150;
    qo.multiplier = 2.0;
    qo.max_requeues = 2;
    assert_int_equal(sl_mw_requeue(&mw, &qo), 0);
    assert_int_equal(sl_handler_add_middleware(h1, mw), 0);
    assert_int_equal(sl_mw_requeue(&mw, &qo), 0);
    assert_int_equal(sl_handler_add_middleware(h2, mw), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run, r), 0);
    assert_int_equal(sl_router_running(r, 10000), 0);

    sl_msg *a = due_msg("a", 0), *b = due_msg("b", 0);
    assert_int_equal(sl_publish(e.pub, topic, &a, 1), 0);
    assert_int_equal(sl_publish(e.pub, topic2, &b, 1), 0);
    /* "never" gives up after two requeues: the poison queue gets it */
    sl_msg *got;
    assert_int_equal(sl_next(ps, &got, 15000), 0);
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(b));
    assert_string_equal(sl_msg_meta_get(got, SL_REQUEUE_META_COUNT), "2");
    assert_non_null(strstr(sl_msg_meta_get(got, SL_POISON_REASON_KEY), "not yet (2)"));
    assert_int_equal(sl_msg_ack(got), 0);
    sl_msg_unref(got);
    for (int64_t end = tl_now_ms() + 10000; atomic_load(&ok.n) < 3 && tl_now_ms() < end;)
        tl_sleep_ms(5);
    assert_int_equal(sl_router_close(r, 5000, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&ok.n), 3); /* failed, failed, succeeded: no more */
    assert_int_equal(atomic_load(&never.n), 3);
    assert_true(ok.at[1] - ok.at[0] >= 150); /* delays grow: 150, 300 */
    assert_true(ok.at[2] - ok.at[1] >= 300);
    for (int64_t end = tl_now_ms() + 5000; sl_requeuer_count(rq) < 4 && tl_now_ms() < end;)
        tl_sleep_ms(5);
    assert_int_equal(sl_requeuer_count(rq), 4);
    assert_int_equal(sl_next(ps, &got, 100), SL_ETIMEDOUT);
    sl_router_free(r);
    sl_msg_unref(a);
    sl_msg_unref(b);
    sl_requeuer_close(rq);
    env_close(&e);
}

static void failed_messages_come_back_after_a_delay_on_mem(void **st)
{
    (void)st;
    failed_messages_come_back(false);
}
static void failed_messages_come_back_after_a_delay_on_sqlite(void **st)
{
    (void)st;
    failed_messages_come_back(true);
}

/* ---- bad input, hand-over ---- */

static void bad_parked_messages_are_poisoned(void **st)
{
    (void)st;
    env e;
    env_open(&e, true);
    char ptopic[120];
    snprintf(ptopic, sizeof ptopic, "%s.poison", e.delay_topic);
    sl_subscription *ps = listen(&e, ptopic);
    sl_requeuer *rq = requeuer(&e);
    sl_msg *no_topic = due_msg("x", wall_ms() + 10), *bad_at = due_msg("y", 0),
           *good = due_msg("z", wall_ms() + 50);
    assert_int_equal(sl_msg_meta_set(bad_at, SL_REQUEUE_META_TOPIC, "t"), 0);
    assert_int_equal(sl_msg_meta_set(bad_at, SL_META_DELIVER_AT, "soon"), 0);
    assert_int_equal(sl_msg_meta_set(good, SL_REQUEUE_META_TOPIC, "t-good"), 0);
    sl_subscription *gs = listen(&e, "t-good");
    sl_msg *all[3] = {no_topic, bad_at, good};
    /* sl_publish refuses a bad deliver_at on no backend but mem://: park raw */
    assert_int_equal(sl_publish(e.pub, e.delay_topic, all, 3), 0);
    for (int i = 0; i < 2; i++) {
        sl_msg *got;
        assert_int_equal(sl_next(ps, &got, 10000), 0);
        assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(all[i]));
        assert_non_null(sl_msg_meta_get(got, "reason_poisoned"));
        sl_msg_ack(got);
        sl_msg_unref(got);
    }
    sl_msg *got;
    assert_int_equal(sl_next(gs, &got, 10000), 0);
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(good));
    sl_msg_ack(got);
    sl_msg_unref(got);
    /* a bad deliver_at given to sl_publish_delayed publishes nothing */
    sl_msg *ok = due_msg("ok", 0), *bad = due_msg("bad", 0);
    assert_int_equal(sl_msg_meta_set(bad, SL_META_DELIVER_AT, "12x"), 0);
    sl_msg *pair[2] = {ok, bad};
    assert_int_equal(sl_publish_delayed(e.pub, "t-good", pair, 2, &e.d), SL_EINVAL);
    assert_int_equal(sl_next(gs, &got, 200), SL_ETIMEDOUT);
    assert_int_equal(sl_publish_delayed(e.pub, e.delay_topic, pair, 1, &e.d), SL_EINVAL);
    assert_int_equal(sl_publish_delayed(NULL, "t", pair, 1, NULL), SL_EINVAL);
    for (int i = 0; i < 3; i++)
        sl_msg_unref(all[i]);
    sl_msg_unref(ok);
    sl_msg_unref(bad);
    sl_requeuer_close(rq);
    env_close(&e);
}

static void a_closed_requeuers_messages_go_to_the_next(void **st)
{
    (void)st;
    env e;
    env_open(&e, true);
    const char *topic = tl_unique("handover");
    sl_subscription *s = listen(&e, topic);
    sl_requeuer *rq = requeuer(&e);
    int64_t due = wall_ms() + 800;
    sl_msg *m = due_msg("later", due);
    assert_int_equal(sl_publish_delayed(e.pub, topic, &m, 1, &e.d), 0);
    tl_sleep_ms(200); /* the first requeuer holds it */
    sl_requeuer_close(rq);
    assert_int_equal(sl_requeuer_count(rq = requeuer(&e)), 0);
    sl_msg *got;
    assert_int_equal(sl_next(s, &got, 10000), 0);
    assert_true(wall_ms() >= due);
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(m));
    sl_msg_ack(got);
    sl_msg_unref(got);
    /* it counts once its ack of the parked copy is done, just after publishing */
    for (int64_t end = tl_now_ms() + 5000; sl_requeuer_count(rq) < 1 && tl_now_ms() < end;)
        tl_sleep_ms(5);
    assert_int_equal(sl_requeuer_count(rq), 1);
    sl_msg_unref(m);
    sl_requeuer_close(rq);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delayed_messages_wait_until_due_on_mem),
        cmocka_unit_test(delayed_messages_wait_until_due_on_sqlite),
        cmocka_unit_test(failed_messages_come_back_after_a_delay_on_mem),
        cmocka_unit_test(failed_messages_come_back_after_a_delay_on_sqlite),
        cmocka_unit_test(bad_parked_messages_are_poisoned),
        cmocka_unit_test(a_closed_requeuers_messages_go_to_the_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
