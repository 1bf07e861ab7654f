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

/* ---------- publisher (sqlcommon's, sqlc_pub.c, over this SQL) ---------- */

static int pub_ready(void *db, char *err, size_t errlen)
{
    return sli_my_conn_ready(db, err, errlen);
}

static void pub_retry_now(void *db)
{
    ((my_link *)db)->retry_at = 0;
}

static int pub_publish(void *db, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                       size_t errlen)
{
    return sli_my_publish(db, topic, msgs, n, err, errlen);
}

static void pub_close(void *db)
{
    sli_my_conn_fini(db);
    free(db);
}

static const sqlc_pub_ops my_pub_ops = {
    .name = "mysql",
    .ready = pub_ready,
    .retry_now = pub_retry_now,
    .publish = pub_publish,
    .close = pub_close,
};

static int my_pub_open(void **impl, sli_url *u, unsigned *features)
{
    sqlc_opts o;
    char err[MY_ERRLEN];
    int rc = sli_sqlc_opts_read(u, "mysql", MY_POLL_DEFAULT_MS, MY_LINGER_DEFAULT_MS, &o);
    if (rc)
        return rc;
    my_link *l = calloc(1, sizeof *l);
    if (!l)
        return sli_err(SL_ENOMEM, "out of memory");
    if ((rc = sli_my_conn_init(l, u, &o)) != 0) {
        free(l);
        return rc;
    }
    if ((rc = sli_my_conn_ready(l, err, sizeof err)) != 0) {
        pub_close(l);
        return sli_err(rc, "%s", err);
    }
    sli_sqlc_late_feature(&o, features);
    return sli_sqlc_pub_new(impl, &my_pub_ops, l);
}

/* ---------- subscriber: the engine's database side ---------- */

typedef struct my_subdb {
    my_link l;
    my_keeper *keeper;
} my_subdb;

static int db_ready(void *db, char *err, size_t errlen)
{
    return sli_my_conn_ready(&((my_subdb *)db)->l, err, errlen);
}

static int db_subscribe(void *db, const char *topic, const char *group, bool priv, sl_start start,
                        int64_t holder, int64_t *gid, char *err, size_t errlen)
{
    return sli_my_subscribe(&((my_subdb *)db)->l, topic, group, priv, start, holder, gid, err,
                            errlen);
}

static int db_claim(void *db, int64_t gid, const char *topic, int64_t owner, unsigned max,
                    int64_t ack_deadline, const sqlc_settle *acks, unsigned nacks,
                    sqlc_claimed *out, unsigned *nout, int64_t *due, char *err, size_t errlen)
{
    return sli_my_claim(&((my_subdb *)db)->l, gid, topic, owner, max, ack_deadline, acks, nacks,
                        out, nout, due, err, errlen);
}

static int db_settle(void *db, int64_t gid, const sqlc_settle *s, char *err, size_t errlen)
{
    return sli_my_settle(&((my_subdb *)db)->l, gid, s, err, errlen);
}

static int db_unsubscribe(void *db, int64_t gid, int64_t owner, bool priv, char *err, size_t errlen)
{
    return sli_my_unsubscribe(&((my_subdb *)db)->l, gid, owner, priv, err, errlen);
}

static void db_close(void *db)
{
    my_subdb *d = db;
    sli_my_keeper_stop(d->keeper);
    sli_my_conn_fini(&d->l);
    free(d);
}

static const sqlc_db_ops my_db_ops = {
    .name = "mysql",
    .ready = db_ready,
    .subscribe = db_subscribe,
    .claim = db_claim,
    .settle = db_settle,
    .unsubscribe = db_unsubscribe,
    .close = db_close,
};

static int my_sub_open(void **impl, sli_url *u, unsigned *features)
{
    char err[MY_ERRLEN];
    sqlc_opts o;
    int rc = sli_sqlc_opts_read(u, "mysql", MY_POLL_DEFAULT_MS, MY_LINGER_DEFAULT_MS, &o);
    if (rc)
        return rc;
    my_subdb *d = calloc(1, sizeof *d);
    if (!d)
        return sli_err(SL_ENOMEM, "out of memory");
    if ((rc = sli_my_conn_init(&d->l, u, &o)) != 0) {
        free(d);
        return rc;
    }
    if ((rc = sli_my_conn_ready(&d->l, err, sizeof err)) != 0) {
        sli_my_conn_fini(&d->l);
        free(d);
        return sli_err(rc, "%s", err);
    }
    sqlc_cfg cfg = {.ack_deadline = o.ack_deadline,
                    .connect_timeout_ms = o.connect_timeout_ms,
                    .poll_min_ms = MY_POLL_MIN_MS,
                    .poll_max_ms = o.poll_ms,
                    .linger_ms = o.linger_ms,
                    .holder = (int64_t)(sli_rand64() >> 2) + 1,
                    .ack_batch = o.ack_batch};
    if ((rc = sli_my_keeper_start(&d->keeper, u, &o, cfg.holder)) != 0) {
        sli_my_conn_fini(&d->l);
        free(d);
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
