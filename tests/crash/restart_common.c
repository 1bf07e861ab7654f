/*
 * restart_common.c - the broker-restart driver shared by crash_amqp and
 * crash_redis (see restart_common.h). Bookkeeping is per message index:
 * confirmed[i] is set when a publish of i returned success, acked[i] counts
 * its deliveries (the first is "stored", later ones are deduplicated by UUID
 * and counted as redeliveries or re-published copies).
 */
#include "restart_common.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define NPUB 4
#define NCONS 2
#define RT_BATCH 50

static const rt_config *cfg;
static const char *services, *url;

typedef struct run {
    const char *topic, *group;
    size_t n;
    atomic_uchar *confirmed; /* [n] publish returned success */
    atomic_uint *acked;      /* [n] deliveries acked */
    char (*uuids)[SL_UUID_LEN + 1];
    atomic_size_t nconfirmed, nonce, redeliveries, copies, published;
    atomic_bool pub_done, restarting; /* paced publishers wait half-way until restarting */
    atomic_int failures, next_errors;
} run;

typedef struct pjob {
    run *r;
    size_t first, count;
} pjob;

typedef struct cjob {
    run *r;
    sl_subscription *s;
} cjob;

/* Publishes msgs [i, i+n) with one sl_publish, opening *pub when needed. */
static int publish_batch(run *r, sl_publisher **pub, size_t i, size_t n)
{
    sl_msg *ms[RT_BATCH];
    for (size_t k = 0; k < n; k++) {
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", i + k);
        TL_CHECK_INT(sl_msg_new_with_uuid(&ms[k], r->uuids[i + k], idx, strlen(idx)), 0);
        sl_msg_meta_set(ms[k], "idx", idx);
    }
    int rc = *pub ? 0 : sl_publisher_open(pub, url);
    if (rc == 0)
        rc = sl_publish(*pub, r->topic, ms, n);
    for (size_t k = 0; k < n; k++)
        sl_msg_unref(ms[k]);
    return rc;
}

static void *publisher(void *arg)
{
    pjob *j = arg;
    run *r = j->r;
    sl_publisher *pub = NULL;
    int64_t deadline = tl_now_ms() + 240000;
    size_t end = j->first + j->count;
    for (size_t i = j->first; i < end && tl_now_ms() < deadline;) {
        if (cfg->pace_across_restart && i - j->first >= j->count / 2) {
            while (!atomic_load(&r->restarting))
                tl_sleep_ms(1);
            tl_sleep_ms(30);
        }
        size_t n = end - i < RT_BATCH ? end - i : RT_BATCH;
        int rc = publish_batch(r, &pub, i, n);
        if (cfg->pace_across_restart || rc == 0)
            atomic_fetch_add(&r->published, n);
        if (rc == 0) {
            for (size_t k = 0; k < n; k++)
                atomic_store(&r->confirmed[i + k], 1);
            atomic_fetch_add(&r->nconfirmed, n);
            i += n;
            continue;
        }
        atomic_fetch_add(&r->failures, 1); /* retry the same batch */
        if (pub)
            sl_publisher_close(pub);
        pub = NULL;
        tl_sleep_ms(100);
    }
    if (pub)
        sl_publisher_close(pub);
    return NULL;
}

static bool all_acked(run *r)
{
    if (!atomic_load(&r->pub_done))
        return false;
    for (size_t i = 0; i < r->n; i++)
        if (atomic_load(&r->confirmed[i]) && !atomic_load(&r->acked[i]))
            return false;
    return true;
}

static void record_delivery(run *r, sl_msg *m)
{
    const char *idx = sl_msg_meta_get(m, "idx");
    size_t i = idx ? strtoull(idx, NULL, 10) : r->n;
    if (i >= r->n || strcmp(sl_msg_uuid(m), r->uuids[i]) != 0)
        tl_check_fail(__FILE__, __LINE__, "foreign or corrupt message %s", sl_msg_uuid(m));
    else if (atomic_fetch_add(&r->acked[i], 1) == 0)
        atomic_fetch_add(&r->nonce, 1); /* the store keeps the first copy */
    else if (sl_msg_deliveries(m) > 1)
        atomic_fetch_add(&r->redeliveries, 1);
    else
        atomic_fetch_add(&r->copies, 1);
}

static void *consumer(void *arg)
{
    cjob *c = arg;
    run *r = c->r;
    int64_t deadline = tl_now_ms() + 300000;
    while (tl_now_ms() < deadline) {
        sl_msg *m = NULL;
        int rc = sl_next(c->s, &m, 200);
        if (rc == SL_ECONN && cfg->next_may_lose_conn) {
            atomic_fetch_add(&r->next_errors, 1); /* the server is away: go on */
            continue;
        }
        if (rc == SL_ETIMEDOUT) {
            if (atomic_load(&r->nonce) >= atomic_load(&r->nconfirmed) && all_acked(r))
                break;
            continue;
        }
        if (rc) {
            tl_check_fail(__FILE__, __LINE__, "sl_next: %s: %s", sl_strerror(rc), sl_errmsg());
            break;
        }
        record_delivery(r, m);
        TL_CHECK_INT(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    return NULL;
}

static void start_threads(run *r, cjob cj[NCONS], pthread_t ct[NCONS], pthread_t pt[NPUB],
                          pjob pj[NPUB])
{
    for (int i = 0; i < NCONS; i++)
        assert_int_equal(pthread_create(&ct[i], NULL, consumer, &cj[i]), 0);
    size_t per = r->n / NPUB;
    for (int i = 0; i < NPUB; i++) {
        pj[i] = (pjob){r, (size_t)i * per, i == NPUB - 1 ? r->n - (size_t)i * per : per};
        assert_int_equal(pthread_create(&pt[i], NULL, publisher, &pj[i]), 0);
    }
}

static void restart_server(run *r)
{
    while (atomic_load(&r->published) < r->n / 2)
        tl_sleep_ms(5);
    atomic_store(&r->restarting, true); /* publishing goes on while the server goes away */
    char cmd[1200];
    const char *env = getenv("SL_CONF_RESTART_CMD");
    if (env && *env)
        snprintf(cmd, sizeof cmd, "%s >/dev/null", env);
    else
        snprintf(cmd, sizeof cmd, "%s restart %s >/dev/null", services, cfg->service);
    size_t before = atomic_load(&r->nconfirmed);
    int64_t t0 = tl_now_ms();
    int st = system(cmd);
    printf("restart: '%s' took %lld ms (status %d); %zu confirmed before it, %zu when it "
           "returned\n",
           cmd, (long long)(tl_now_ms() - t0), st, before, atomic_load(&r->nconfirmed));
    assert_int_equal(st, 0);
}

/* A fresh member of the group gets nothing but late copies of acked messages. */
static void check_group_empty(run *r, sl_subscriber *sub, const sl_subscribe_opts *o)
{
    sl_subscription *last = NULL;
    assert_int_equal(sl_subscribe(sub, r->topic, o, &last), 0);
    sl_msg *m = NULL;
    int rc;
    while ((rc = sl_next(last, &m, 1000)) == 0) {
        const char *idx = sl_msg_meta_get(m, "idx");
        size_t i = idx ? strtoull(idx, NULL, 10) : r->n;
        if (i >= r->n || !atomic_load(&r->acked[i]))
            fail_msg("message %s (idx %s, delivery %u) was left in the group", sl_msg_uuid(m),
                     idx ? idx : "?", sl_msg_deliveries(m));
        sl_msg_ack(m);
        sl_msg_unref(m);
        if (!cfg->drain_group)
            return;
    }
    if (cfg->drain_group)
        assert_int_equal(rc, SL_ETIMEDOUT);
}

static void report(run *r)
{
    size_t lost = 0;
    for (size_t i = 0; i < r->n; i++)
        lost += atomic_load(&r->confirmed[i]) && !atomic_load(&r->acked[i]);
    printf("restart: %zu of %zu confirmed, %zu delivered+acked once, %zu redeliveries, "
           "%zu re-published copies (deduplicated by UUID), %d failed publish calls retried, "
           "%d sl_next calls saw the server away, %zu lost\n",
           atomic_load(&r->nconfirmed), r->n, atomic_load(&r->nonce), atomic_load(&r->redeliveries),
           atomic_load(&r->copies), atomic_load(&r->failures), atomic_load(&r->next_errors), lost);
    assert_int_equal(lost, 0);
    assert_int_equal(atomic_load(&r->nconfirmed), r->n); /* every batch got through in the end */
}

static void restart_mid_run(void **state)
{
    (void)state;
    run r = {.topic = tl_unique(cfg->topic), .group = tl_unique("g"), .n = tl_scaled(20000, 2000)};
    r.confirmed = calloc(r.n, sizeof *r.confirmed);
    r.acked = calloc(r.n, sizeof *r.acked);
    r.uuids = calloc(r.n, sizeof *r.uuids);
    assert_true(r.confirmed && r.acked && r.uuids);
    for (size_t i = 0; i < r.n; i++)
        sl_uuid_v7(r.uuids[i]);
    sl_subscriber *sub = NULL;
    int rc = sl_subscriber_open(&sub, url);
    if (rc)
        fail_msg("%s at %s is not reachable (%s: %s); start it with services.sh start %s",
                 cfg->server, url, sl_strerror(rc), sl_errmsg(), cfg->service);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = r.group;
    o.prefetch = 64;
    cjob cj[NCONS] = {{&r, NULL}, {&r, NULL}};
    for (int i = 0; i < NCONS; i++)
        assert_int_equal(sl_subscribe(sub, r.topic, &o, &cj[i].s), 0);
    pthread_t ct[NCONS], pt[NPUB];
    pjob pj[NPUB];
    start_threads(&r, cj, ct, pt, pj);
    restart_server(&r);
    for (int i = 0; i < NPUB; i++)
        pthread_join(pt[i], NULL);
    atomic_store(&r.pub_done, true);
    for (int i = 0; i < NCONS; i++)
        pthread_join(ct[i], NULL);
    tl_assert_threads_ok();
    report(&r);
    for (int i = 0; i < NCONS; i++)
        assert_int_equal(sl_subscription_close(cj[i].s), 0);
    check_group_empty(&r, sub, &o);
    sl_subscriber_close(sub);
    free(r.confirmed);
    free(r.acked);
    free(r.uuids);
}

int rt_main(int argc, char **argv, const rt_config *config)
{
    cfg = config;
    if (argc < (cfg->url_env ? 2 : 3)) {
        fprintf(stderr, "usage: %s SERVICES_SH %s\n", cfg->prog, cfg->url_env ? "[URL]" : "URL");
        return 2;
    }
    services = argv[1];
    url = argc > 2 ? argv[2] : getenv(cfg->url_env);
    if (!url || !*url)
        url = cfg->default_url;
    const struct CMUnitTest tests[] = {cmocka_unit_test(restart_mid_run)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
