/*
 * mysql.c - mysql://user:pass@host:port/db: MariaDB (10.6+) or MySQL (8+)
 * as a durable, multi-process queue (the ops table; tables, claims and
 * polling: see my.h, options: my_conn.c).
 *
 * A publisher owns one connection; concurrent publishes on it take turns
 * (sqlcommon's publisher, sqlc_pub.c, over sli_my_publish).
 * A subscriber owns one connection for claims and acks, shared by its
 * subscriptions (the subscriber engine of sqlcommon, sqlc_sub.c, runs
 * them), and a housekeeping thread with a second one (my_keep.c).
 *
 * Connection loss: calls fail with SL_ECONN while the server is away and
 * reconnect with backoff (50ms doubling to 2s) on later calls; a publish
 * that finds its connection dead tries once more on a new one; next()
 * keeps trying until its timeout. Nothing acked is lost; what was in
 * flight comes back after its ack deadline.
 */
#include <stdlib.h>
#include <string.h>

#include "backends/mysql/my.h"

#define MY_POLL_DEFAULT_MS 250
#define MY_LINGER_DEFAULT_MS 10 /* see my.h, "Wake-ups" */

/* ---------- the database side of sqlcommon's publisher and subscriber ---------- */

static int db_ready(sqlc_db *db, char *err, size_t errlen)
{
    return sli_my_conn_ready(&db->l, err, errlen);
}

static void db_retry_now(sqlc_db *db)
{
    db->l.retry_at = 0;
}

static void db_close(sqlc_db *db)
{
    sli_my_keeper_stop(db->keeper);
    sli_my_conn_fini(&db->l);
    free(db);
}

static const sqlc_db_ops my_db_ops = {
    .name = "mysql",
    .ready = db_ready,
    .retry_now = db_retry_now,
    .publish = sli_my_publish,
    .subscribe = sli_my_subscribe,
    .claim = sli_my_claim,
    .settle = sli_my_settle,
    .unsubscribe = sli_my_unsubscribe,
    .close = db_close,
};

/* Options of u, and a connection ready to use (tables checked). */
static int db_open(sqlc_db **out, sli_url *u, sqlc_opts *o)
{
    char err[MY_ERRLEN];
    int rc = sli_sqlc_opts_read(u, "mysql", MY_POLL_DEFAULT_MS, MY_LINGER_DEFAULT_MS, o);
    if (rc)
        return rc;
    sqlc_db *d = calloc(1, sizeof *d);
    if (!d)
        return sli_err(SL_ENOMEM, "out of memory");
    if ((rc = sli_my_conn_init(&d->l, u, o)) != 0) {
        free(d);
        return rc;
    }
    if ((rc = sli_my_conn_ready(&d->l, err, sizeof err)) != 0) {
        db_close(d);
        return sli_err(rc, "%s", err);
    }
    *out = d;
    return 0;
}

static int my_pub_open(void **impl, sli_url *u, unsigned *features)
{
    sqlc_opts o;
    sqlc_db *d;
    int rc = db_open(&d, u, &o);
    if (rc)
        return rc;
    sli_sqlc_late_feature(&o, features);
    return sli_sqlc_pub_new(impl, &my_db_ops, d);
}

static int my_sub_open(void **impl, sli_url *u, unsigned *features)
{
    sqlc_opts o;
    sqlc_db *d;
    int rc = db_open(&d, u, &o);
    if (rc)
        return rc;
    sqlc_cfg cfg = {.ack_deadline = o.ack_deadline,
                    .connect_timeout_ms = o.connect_timeout_ms,
                    .poll_min_ms = MY_POLL_MIN_MS,
                    .poll_max_ms = o.poll_ms,
                    .linger_ms = o.linger_ms,
                    .holder = (int64_t)(sli_rand64() >> 2) + 1,
                    .ack_batch = o.ack_batch};
    if ((rc = sli_my_keeper_start(&d->keeper, u, &o, cfg.holder)) != 0) {
        db_close(d);
        return rc;
    }
    sqlc_subr *r;
    if ((rc = sli_sqlc_subr_new(&r, &my_db_ops, d, &cfg)) != 0)
        return rc;
    sli_sqlc_late_feature(&o, features);
    *impl = r;
    return 0;
}

const sli_backend sli_mysql_backend = {
    .scheme = "mysql",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_ORDERED |
                SL_FEAT_LATE_SUBSCRIBERS | SL_FEAT_DELAYED_NACK,
    .pub_open = my_pub_open,
    .publish = sli_sqlc_publish,
    .pub_close = sli_sqlc_pub_close,
    .sub_open = my_sub_open,
    .subscribe = sli_sqlc_subscribe,
    .next = sli_sqlc_next,
    .unsubscribe = sli_sqlc_unsubscribe,
    .sub_close = sli_sqlc_sub_close,
};
