/*
 * postgres.c - postgres://user:pass@host:port/db: PostgreSQL as a durable,
 * multi-process queue (the ops table; tables and claims: see pg.h, options:
 * pg_conn.c).
 *
 * A publisher owns one connection; concurrent publishes on it take turns
 * (sqlcommon's publisher, sqlc_pub.c, over sli_pg_publish).
 * A subscriber owns one connection for claims and acks, shared by its
 * subscriptions, which the subscriber engine of sqlcommon (sqlc_sub.c)
 * runs as it does mysql://'s: prefetch buffer, ack=sync|batch, hand-back.
 * Its listener (pg_listen.c, a second connection) bumps the engine's wake
 * counter on every NOTIFY, so idle subscriptions sleep; they poll only
 * every poll=DUR (1s, no backoff) for a notification lost in a reconnect.
 *
 * Connection loss: calls fail with SL_ECONN while the server is away and
 * reconnect with backoff (50ms doubling to 2s) on later calls; next()
 * keeps trying until its timeout. Nothing acked is lost; what was in
 * flight comes back after its ack deadline.
 */
#include <stdlib.h>
#include <string.h>

#include "backends/postgres/pg.h"

/* ---------- the database side of sqlcommon's publisher and subscriber ---------- */

static int db_ready(sqlc_db *db, char *err, size_t errlen)
{
    return sli_pg_conn_ready(&db->pc, err, errlen);
}

static void db_retry_now(sqlc_db *db)
{
    db->pc.retry_at = 0;
}

static void db_close(sqlc_db *db)
{
    sli_pg_listener_stop(db->listener);
    sli_pg_conn_fini(&db->pc);
    free(db);
}

static const sqlc_db_ops pg_db_ops = {
    .name = "postgres",
    .ready = db_ready,
    .retry_now = db_retry_now,
    .publish = sli_pg_publish,
    .subscribe = sli_pg_subscribe,
    .claim = sli_pg_claim,
    .settle = sli_pg_settle,
    .unsubscribe = sli_pg_unsubscribe,
    .close = db_close,
};

/* Options of u, and a connection ready to use (tables checked). */
static int db_open(sqlc_db **out, sli_url *u, pg_opts *o)
{
    char err[PG_ERRLEN];
    int rc = sli_pg_opts_read(u, o);
    if (rc)
        return rc;
    sqlc_db *d = calloc(1, sizeof *d);
    if (!d)
        return sli_err(SL_ENOMEM, "out of memory");
    if ((rc = sli_pg_conn_init(&d->pc, u, o)) != 0) {
        free(d);
        return rc;
    }
    if ((rc = sli_pg_conn_ready(&d->pc, err, sizeof err)) != 0) {
        db_close(d);
        return sli_err(rc, "%s", err);
    }
    *out = d;
    return 0;
}

static int pg_pub_open(void **impl, sli_url *u, unsigned *features)
{
    pg_opts o;
    sqlc_db *d;
    int rc = db_open(&d, u, &o);
    if (rc)
        return rc;
    sli_sqlc_late_feature(&o.c, features);
    return sli_sqlc_pub_new(impl, &pg_db_ops, d);
}

static int pg_sub_open(void **impl, sli_url *u, unsigned *features)
{
    pg_opts o;
    sqlc_db *d;
    int rc = db_open(&d, u, &o);
    if (rc)
        return rc;
    /* notifications wake next(); poll= is only the fallback, so no backoff */
    sqlc_cfg cfg = {.ack_deadline = o.c.ack_deadline,
                    .connect_timeout_ms = o.c.connect_timeout_ms,
                    .poll_min_ms = o.c.poll_ms,
                    .poll_max_ms = o.c.poll_ms,
                    .linger_ms = o.c.linger_ms,
                    .holder = (int64_t)(sli_rand64() >> 2) + 1,
                    .ack_batch = o.c.ack_batch};
    sqlc_subr *r;
    if ((rc = sli_sqlc_subr_new(&r, &pg_db_ops, d, &cfg)) != 0)
        return rc;
    if ((rc = sli_pg_listener_start(&d->listener, u, &o, cfg.holder, sli_sqlc_subr_wake(r))) != 0) {
        int keep = rc;
        sli_sqlc_sub_close(r); /* closes d */
        return keep;
    }
    sli_sqlc_late_feature(&o.c, features);
    *impl = r;
    return 0;
}

const sli_backend sli_postgres_backend = {
    .scheme = "postgres",
    .features = SL_FEAT_CONSUMER_GROUPS | SL_FEAT_PERSISTENT | SL_FEAT_ORDERED |
                SL_FEAT_LATE_SUBSCRIBERS | SL_FEAT_DELAYED_NACK,
    .pub_open = pg_pub_open,
    .publish = sli_sqlc_publish,
    .pub_close = sli_sqlc_pub_close,
    .sub_open = pg_sub_open,
    .subscribe = sli_sqlc_subscribe,
    .next = sli_sqlc_next,
    .unsubscribe = sli_sqlc_unsubscribe,
    .sub_close = sli_sqlc_sub_close,
};
