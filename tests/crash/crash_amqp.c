/*
 * crash_amqp.c - broker-restart test of amqp:// (one ctest):
 *
 *   restart   4 publisher threads send 20,000 messages (batches of 50) to a
 *             topic whose consumer group has 2 competing subscriptions;
 *             half-way through, RabbitMQ is restarted (services.sh restart
 *             rabbitmq). A publish that fails is retried, as an application
 *             would. In the end every message whose publish returned success
 *             has been delivered and stored exactly once (the store dedupes
 *             by UUID, counting duplicates), and the group queue is empty.
 *
 * usage: crash_amqp SERVICES_SH [URL]
 * URL defaults to $SL_AMQP_URL, then services.sh's default RabbitMQ URL.
 * SL_TEST_SCALE scales the message count.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define NPUB 4
#define BATCH 50

static const char *services, *url;

typedef struct run {
    const char *topic, *group;
    size_t n;
    atomic_uchar *confirmed; /* [n] publish returned success */
    atomic_uint *stored;     /* [n] deliveries seen (store keeps the first) */
    char (*uuids)[SL_UUID_LEN + 1];
    atomic_size_t nconfirmed, nstored, dups;
    atomic_size_t published; /* messages attempted, to time the restart */
    atomic_bool pub_done;
    atomic_int failures; /* publish calls that failed (then retried) */
} run;

typedef struct pjob {
    run *r;
    size_t first, count;
} pjob;

static void *publisher(void *arg)
{
    pjob *j = arg;
    run *r = j->r;
    sl_publisher *pub = NULL;
    int64_t deadline = tl_now_ms() + 240000;
    for (size_t i = j->first; i < j->first + j->count && tl_now_ms() < deadline;) {
        size_t n = j->first + j->count - i < BATCH ? j->first + j->count - i : BATCH;
        sl_msg *ms[BATCH];
        for (size_t k = 0; k < n; k++) {
            char idx[32];
            snprintf(idx, sizeof idx, "%zu", i + k);
            TL_CHECK_INT(sl_msg_new_with_uuid(&ms[k], r->uuids[i + k], idx, strlen(idx)), 0);
            sl_msg_meta_set(ms[k], "idx", idx);
        }
        int rc = pub ? 0 : sl_publisher_open(&pub, url);
        if (rc == 0)
            rc = sl_publish(pub, r->topic, ms, n);
        for (size_t k = 0; k < n; k++)
            sl_msg_unref(ms[k]);
        if (rc == 0) {
            for (size_t k = 0; k < n; k++)
                atomic_store(&r->confirmed[i + k], 1);
            atomic_fetch_add(&r->nconfirmed, n);
            atomic_fetch_add(&r->published, n);
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

typedef struct cjob {
    run *r;
    sl_subscription *s;
} cjob;

static bool all_stored(run *r)
{
    if (!atomic_load(&r->pub_done))
        return false;
    for (size_t i = 0; i < r->n; i++)
        if (atomic_load(&r->confirmed[i]) && !atomic_load(&r->stored[i]))
            return false;
    return true;
}

static void *consumer(void *arg)
{
    cjob *c = arg;
    run *r = c->r;
    int64_t deadline = tl_now_ms() + 300000;
    while (tl_now_ms() < deadline) {
        sl_msg *m = NULL;
        int rc = sl_next(c->s, &m, 200);
        if (rc == SL_ETIMEDOUT) {
            if (atomic_load(&r->nstored) >= atomic_load(&r->nconfirmed) && all_stored(r))
                break;
            continue;
        }
        if (rc) {
            tl_check_fail(__FILE__, __LINE__, "sl_next: %s: %s", sl_strerror(rc), sl_errmsg());
            break;
        }
        const char *idx = sl_msg_meta_get(m, "idx");
        size_t i = idx ? strtoull(idx, NULL, 10) : r->n;
        if (i >= r->n || strcmp(sl_msg_uuid(m), r->uuids[i]) != 0) {
            tl_check_fail(__FILE__, __LINE__, "foreign or corrupt message %s", sl_msg_uuid(m));
        } else if (atomic_fetch_add(&r->stored[i], 1) == 0) {
            atomic_fetch_add(&r->nstored, 1); /* the store keeps the first copy */
        } else {
            atomic_fetch_add(&r->dups, 1); /* deduplicated by UUID */
        }
        TL_CHECK_INT(sl_msg_ack(m), 0);
        sl_msg_unref(m);
    }
    return NULL;
}

static void restart_mid_run(void **state)
{
    (void)state;
    run r = {.topic = tl_unique("crash-amqp"), .group = tl_unique("g"),
             .n = tl_scaled(20000, 2000)};
    r.confirmed = calloc(r.n, sizeof *r.confirmed);
    r.stored = calloc(r.n, sizeof *r.stored);
    r.uuids = calloc(r.n, sizeof *r.uuids);
    assert_true(r.confirmed && r.stored && r.uuids);
    for (size_t i = 0; i < r.n; i++)
        sl_uuid_v7(r.uuids[i]);

    sl_subscriber *sub = NULL;
    int rc = sl_subscriber_open(&sub, url);
    if (rc)
        fail_msg("RabbitMQ at %s is not reachable (%s: %s); start it with services.sh start "
                 "rabbitmq", url, sl_strerror(rc), sl_errmsg());
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = r.group;
    o.prefetch = 64;
    cjob cj[2] = {{&r, NULL}, {&r, NULL}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(sl_subscribe(sub, r.topic, &o, &cj[i].s), 0);
    pthread_t ct[2], pt[NPUB];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&ct[i], NULL, consumer, &cj[i]), 0);
    pjob pj[NPUB];
    size_t per = r.n / NPUB;
    for (int i = 0; i < NPUB; i++) {
        pj[i] = (pjob){&r, (size_t)i * per, i == NPUB - 1 ? r.n - (size_t)i * per : per};
        assert_int_equal(pthread_create(&pt[i], NULL, publisher, &pj[i]), 0);
    }
    while (atomic_load(&r.published) < r.n / 2)
        tl_sleep_ms(5);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s restart rabbitmq >/dev/null", services);
    int64_t t0 = tl_now_ms();
    int st = system(cmd);
    printf("restart: '%s' took %lld ms (status %d) after %zu published\n", cmd,
           (long long)(tl_now_ms() - t0), st, atomic_load(&r.published));
    assert_int_equal(st, 0);
    for (int i = 0; i < NPUB; i++)
        pthread_join(pt[i], NULL);
    atomic_store(&r.pub_done, true);
    for (int i = 0; i < 2; i++)
        pthread_join(ct[i], NULL);
    tl_assert_threads_ok();

    size_t lost = 0;
    for (size_t i = 0; i < r.n; i++)
        lost += atomic_load(&r.confirmed[i]) && !atomic_load(&r.stored[i]);
    printf("restart: %zu of %zu confirmed, %zu stored once, %zu duplicates deduplicated, "
           "%d failed publish calls retried, %zu lost\n",
           atomic_load(&r.nconfirmed), r.n, atomic_load(&r.nstored), atomic_load(&r.dups),
           atomic_load(&r.failures), lost);
    assert_int_equal(lost, 0);
    assert_int_equal(atomic_load(&r.nconfirmed), r.n); /* every batch got through in the end */
    /* nothing is left in the group: a fresh member gets no message */
    for (int i = 0; i < 2; i++)
        assert_int_equal(sl_subscription_close(cj[i].s), 0);
    sl_subscription *last = NULL;
    assert_int_equal(sl_subscribe(sub, r.topic, &o, &last), 0);
    sl_msg *m = NULL;
    rc = sl_next(last, &m, 1000);
    if (rc == 0) {
        /* only a late duplicate of a stored message may remain */
        const char *idx = sl_msg_meta_get(m, "idx");
        size_t i = idx ? strtoull(idx, NULL, 10) : r.n;
        assert_true(i < r.n && atomic_load(&r.stored[i]) > 0);
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    sl_subscriber_close(sub);
    free(r.confirmed);
    free(r.stored);
    free(r.uuids);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: crash_amqp SERVICES_SH [URL]\n");
        return 2;
    }
    services = argv[1];
    url = argc > 2 ? argv[2] : getenv("SL_AMQP_URL");
    if (!url || !*url)
        url = "amqp://guest:guest@127.0.0.1:15682/";
    const struct CMUnitTest tests[] = {cmocka_unit_test(restart_mid_run)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
