/*
 * conf_restart.c - reconnect_after_restart: with SL_CONF_RESTART_CMD set
 * (e.g. "scripts/services.sh restart redis"), run it in the middle of a
 * stream of publishes and check that every message whose publish returned
 * success is received afterwards. Errors while the server is down are
 * expected and retried; nothing confirmed may be lost.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

typedef struct restart_job {
    const char *topic, *cmd;
    uint64_t seed;
    size_t n;
    unsigned char *confirmed;
    atomic_size_t nconfirmed;
    atomic_int finished;
} restart_job;

static void *publish_through_restart(void *arg)
{
    restart_job *j = arg;
    sl_publisher *pub = NULL;
    int64_t deadline = tl_now_ms() + 120000;
    for (size_t i = 0; i < j->n && tl_now_ms() < deadline; i++) {
        if (i == j->n / 2) {
            int st = system(j->cmd);
            if (st != 0)
                tl_check_fail(__FILE__, __LINE__, "restart command failed (%d): %s", st, j->cmd);
        }
        sl_msg *m = conf_msg(j->seed, i);
        while (tl_now_ms() < deadline) {
            if (!pub && sl_publisher_open(&pub, conf_url()) != 0) {
                tl_sleep_ms(100);
                continue;
            }
            if (sl_publish(pub, j->topic, &m, 1) == 0) {
                j->confirmed[i] = 1;
                atomic_fetch_add(&j->nconfirmed, 1);
                break;
            }
            sl_publisher_close(pub); /* reopen: the connection may be gone */
            pub = NULL;
            tl_sleep_ms(50);
        }
        sl_msg_unref(m);
    }
    if (pub)
        sl_publisher_close(pub);
    atomic_store(&j->finished, 1);
    return NULL;
}

CONF_TEST(reconnect_after_restart)
{
    const char *cmd = getenv("SL_CONF_RESTART_CMD");
    if (!cmd || !*cmd)
        conf_skip("set SL_CONF_RESTART_CMD to the command that restarts the server");
    /* a server that keeps nothing (core NATS) cannot promise anything across a restart */
    conf_require(SL_FEAT_PERSISTENT, "messages survive a restart only on persistent backends");
    size_t n = tl_scaled(2000, 100);
    const char *group = (conf_features() & SL_FEAT_CONSUMER_GROUPS) ? conf_name("g") : NULL;
    restart_job j = {.topic = conf_name("restart"), .cmd = cmd, .seed = conf_seed(), .n = n};
    j.confirmed = calloc(n, 1);
    unsigned char *got = calloc(n, 1);
    assert_true(j.confirmed && got);
    sl_subscriber *sub = conf_sub();
    sl_subscription *s = conf_subscribe(sub, j.topic, group, 16);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, publish_through_restart, &j), 0);
    size_t ngot = 0;
    int64_t deadline = tl_now_ms() + 180000, quiet_since = -1;
    while (tl_now_ms() < deadline) {
        bool fin = atomic_load(&j.finished);
        if (fin && ngot >= atomic_load(&j.nconfirmed)) {
            bool all = true;
            for (size_t i = 0; i < n && all; i++)
                all = !j.confirmed[i] || got[i];
            if (all)
                break;
        }
        sl_msg *m = NULL;
        int rc = s ? sl_next(s, &m, 200) : SL_ECONN;
        if (rc == 0) {
            long i = conf_msg_verify(m, j.seed);
            if (i >= 0 && (size_t)i < n && !got[i]) {
                got[i] = 1;
                ngot++;
            }
            sl_msg_ack(m);
            sl_msg_unref(m);
            quiet_since = -1;
        } else if (rc == SL_ETIMEDOUT) {
            if (fin && quiet_since < 0)
                quiet_since = tl_now_ms();
            if (fin && tl_now_ms() - quiet_since > 20000)
                break; /* nothing more is coming */
        } else {       /* connection lost: reopen and go on */
            sl_subscriber_close(sub);
            tl_sleep_ms(100);
            s = NULL;
            if (sl_subscriber_open(&sub, conf_url()) == 0) {
                sl_subscribe_opts o;
                sl_subscribe_opts_init(&o);
                o.group = group;
                o.prefetch = 16;
                if (sl_subscribe(sub, j.topic, &o, &s) != 0)
                    s = NULL;
            } else {
                sub = NULL;
            }
        }
    }
    pthread_join(t, NULL);
    tl_assert_threads_ok();
    size_t lost = 0;
    for (size_t i = 0; i < n; i++)
        lost += j.confirmed[i] && !got[i];
    printf("restart: %zu of %zu confirmed, %zu received, %zu lost\n", atomic_load(&j.nconfirmed), n,
           ngot, lost);
    assert_int_equal(lost, 0);
    assert_true(atomic_load(&j.nconfirmed) > 0);
    if (sub)
        sl_subscriber_close(sub);
    free(j.confirmed);
    free(got);
}
