/*
 * my_keep.c - a mysql:// subscriber's caretaker: one thread with its own
 * connection that every MY_HK_MS keeps the subscriber's private groups
 * alive (heartbeat) and, in one process at a time (a named lock per
 * database), expires the private groups of dead processes and applies
 * retention:
 *   retention=acked  per topic with groups: delete what every group has
 *                    read past (lowest cursor) and nobody holds a claim on
 *   retention=DUR    per topic: delete messages created more than DUR ago
 *                    (ids are in time order per topic, so the expired ones
 *                    are a prefix: found without a secondary index)
 * Deletes go in slices of MY_HK_SLICE rows, each its own transaction, so
 * no lock is held long.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/mysql/my.h"

#define MY_HK_SLICE 20000

struct my_keeper {
    my_link l;
    int64_t holder, retention_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
};

static int one(my_link *l, const my_sql *q, MYSQL_RES **res, char *err, size_t errlen,
               const char *what)
{
    return sli_my_run(l, q, res, res ? 1 : 0, err, errlen, what);
}

/* Delete the slice of topic's log below (or at) a bound. */
static int delete_below(my_link *l, const char *topic, size_t tlen, const char *cond, char *err,
                        size_t errlen)
{
    my_sql q;
    sli_my_sql_init(&q);
    sli_my_sql_add(&q, "DELETE FROM sluice_msgs WHERE topic=");
    sli_my_sql_bin(&q, topic, tlen);
    sli_my_sql_add(&q, " AND ");
    sli_my_sql_add(&q, "%s", cond);
    sli_my_sql_add(&q, " ORDER BY id LIMIT %d;COMMIT", MY_HK_SLICE);
    int rc = one(l, &q, NULL, err, errlen, "retention");
    sli_my_sql_free(&q);
    return rc;
}

/* retention=acked */
static int sweep_acked(my_link *l, char *err, size_t errlen)
{
    static const char lows[] =
        "SELECT g.topic, min(g.pos), (SELECT min(c.msg_id) FROM sluice_claims c JOIN "
        "sluice_groups g2 ON g2.id=c.gid WHERE g2.topic=g.topic) FROM sluice_groups g GROUP BY "
        "g.topic;COMMIT";
    my_sql q = {.p = (char *)lows, .len = sizeof lows - 1};
    MYSQL_RES *res;
    int rc = one(l, &q, &res, err, errlen, "retention");
    if (rc)
        return rc;
    MYSQL_ROW row;
    while (!rc && (row = mysql_fetch_row(res)) != NULL) {
        unsigned long *len = mysql_fetch_lengths(res);
        char topic[256];
        snprintf(topic, sizeof topic, "%.*s", (int)len[0], row[0]);
        int64_t pos = sli_my_i64(row[1]);
        int64_t claim = row[2] ? sli_my_i64(row[2]) : INT64_MAX;
        char cond[80];
        snprintf(cond, sizeof cond, "id<=%lld AND id<%lld", (long long)pos, (long long)claim);
        rc = delete_below(l, topic, len[0], cond, err, errlen);
    }
    mysql_free_result(res);
    return rc;
}

/* retention=DUR */
static int sweep_old(my_link *l, int64_t cut, char *err, size_t errlen)
{
    static const char topics[] = "SELECT topic FROM sluice_topics;COMMIT";
    my_sql q = {.p = (char *)topics, .len = sizeof topics - 1};
    MYSQL_RES *res;
    int rc = one(l, &q, &res, err, errlen, "retention");
    if (rc)
        return rc;
    MYSQL_ROW row;
    while (!rc && (row = mysql_fetch_row(res)) != NULL) {
        unsigned long *len = mysql_fetch_lengths(res);
        char topic[256];
        snprintf(topic, sizeof topic, "%.*s", (int)len[0], row[0]);
        /* the first message young enough to keep; everything before it goes */
        my_sql f;
        sli_my_sql_init(&f);
        sli_my_sql_add(&f, "SELECT (SELECT id FROM sluice_msgs WHERE topic=");
        sli_my_sql_bin(&f, topic, len[0]);
        sli_my_sql_add(&f, " AND created>=%lld ORDER BY id LIMIT 1);COMMIT", (long long)cut);
        MYSQL_RES *r1;
        rc = one(l, &f, &r1, err, errlen, "retention");
        sli_my_sql_free(&f);
        if (rc)
            break;
        MYSQL_ROW k = mysql_fetch_row(r1);
        bool keep = k && k[0];
        int64_t first = keep ? sli_my_i64(k[0]) : 0;
        mysql_free_result(r1);
        char cond[80];
        if (keep)
            snprintf(cond, sizeof cond, "id<%lld", (long long)first);
        else
            snprintf(cond, sizeof cond, "created<%lld", (long long)cut);
        rc = delete_below(l, topic, len[0], cond, err, errlen);
    }
    mysql_free_result(res);
    return rc;
}

int sli_my_housekeep(my_link *l, int64_t holder, int64_t retention_ms, char *err, size_t errlen)
{
    int64_t now = sli_wall_ms();
    my_sql q;
    sli_my_sql_init(&q);
    sli_my_sql_add(&q,
                   "UPDATE sluice_groups SET alive=%lld WHERE holder=%lld;COMMIT;"
                   "SELECT GET_LOCK(concat('sluice-keep-', DATABASE()), 0)",
                   (long long)now, (long long)holder);
    MYSQL_RES *res;
    int rc = one(l, &q, &res, err, errlen, "heartbeat");
    sli_my_sql_free(&q);
    if (rc)
        return rc;
    MYSQL_ROW row = mysql_fetch_row(res);
    bool mine = row && row[0] && strcmp(row[0], "1") == 0;
    mysql_free_result(res);
    if (!mine)
        return 0;
    long long cut = (long long)(now - MY_PRIVATE_EXPIRY_MS);
    sli_my_sql_init(&q);
    sli_my_sql_add(&q,
                   "DELETE c FROM sluice_claims c JOIN sluice_groups g ON g.id=c.gid WHERE "
                   "g.private AND g.alive<%lld;DELETE FROM sluice_groups WHERE private AND "
                   "alive<%lld;COMMIT",
                   cut, cut);
    rc = one(l, &q, NULL, err, errlen, "expire groups");
    sli_my_sql_free(&q);
    if (!rc)
        rc = retention_ms ? sweep_old(l, now - retention_ms, err, errlen)
                          : sweep_acked(l, err, errlen);
    if (l->c) {
        static const char rel[] = "SELECT RELEASE_LOCK(concat('sluice-keep-', DATABASE()))";
        my_sql r = {.p = (char *)rel, .len = sizeof rel - 1};
        char e2[MY_ERRLEN];
        one(l, &r, NULL, e2, sizeof e2, "housekeeping"); /* the session ends it otherwise */
    }
    return rc;
}

static void *keep_main(void *arg)
{
    my_keeper *k = arg;
    char err[MY_ERRLEN];
    bool warned = false;
    sli_thread_name("sl-my-keep");
    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        sli_cond_wait_until(&k->cond, &k->mu, sli_mono_ms() + MY_HK_MS);
        if (k->stop)
            break;
        pthread_mutex_unlock(&k->mu);
        int rc = sli_my_conn_ready(&k->l, err, sizeof err);
        if (!rc)
            rc = sli_my_housekeep(&k->l, k->holder, k->retention_ms, err, sizeof err);
        if (rc && !warned)
            sli_log(SL_LOG_WARN, "mysql", "housekeeping: %s (retrying)", err);
        warned = rc != 0;
        pthread_mutex_lock(&k->mu);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

int sli_my_keeper_start(my_keeper **out, sli_url *u, const sqlc_opts *o, int64_t holder)
{
    my_keeper *k = calloc(1, sizeof *k);
    if (!k)
        return sli_err(SL_ENOMEM, "out of memory");
    k->holder = holder;
    k->retention_ms = o->retention_ms;
    int rc = sli_my_conn_init(&k->l, u, o);
    if (rc) {
        free(k);
        return rc;
    }
    pthread_mutex_init(&k->mu, NULL);
    sli_cond_init(&k->cond);
    if (pthread_create(&k->thread, NULL, keep_main, k) != 0) {
        pthread_mutex_destroy(&k->mu);
        pthread_cond_destroy(&k->cond);
        sli_my_conn_fini(&k->l);
        free(k);
        return sli_err(SL_ENOMEM, "mysql: cannot start the housekeeping thread");
    }
    *out = k;
    return 0;
}

void sli_my_keeper_stop(my_keeper *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cond);
    sli_my_conn_fini(&k->l);
    free(k);
}
