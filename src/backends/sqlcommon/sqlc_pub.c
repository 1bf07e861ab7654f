/*
 * sqlc_pub.c - the publisher side of the server SQL backends (postgres://,
 * mysql://), the same whatever the database: one connection per
 * publisher, concurrent publishes on it take turns, a connection found
 * dead on use is replaced once at once (without waiting out the reconnect
 * backoff), a close waits for the publish in progress. The SQL comes
 * through the backend's sqlc_db_ops (sqlc.h), the same table its
 * subscribers use.
 */
#include <stdlib.h>

#include "backends/sqlcommon/sqlc.h"

#define SQLC_ERRLEN 400

typedef struct sqlc_pub {
    const sqlc_db_ops *ops;
    sqlc_db *db;
    pthread_mutex_t mu; /* one publish at a time on db */
    _Atomic bool closing;
} sqlc_pub;

int sli_sqlc_pub_new(void **out, const sqlc_db_ops *ops, sqlc_db *db)
{
    sqlc_pub *p = calloc(1, sizeof *p);
    if (!p) {
        ops->close(db);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    p->ops = ops;
    p->db = db;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return 0;
}

int sli_sqlc_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                     const sl_publish_opts *opts)
{
    sqlc_pub *p = impl;
    char err[SQLC_ERRLEN];
    if (atomic_load(&p->closing))
        return sli_err(SL_ECLOSED, "%s publisher is closed", p->ops->name);
    pthread_mutex_lock(&p->mu);
    int rc = p->ops->ready(p->db, err, sizeof err);
    if (!rc)
        rc = p->ops->publish(p->db, topic, msgs, n, err, sizeof err);
    if (rc == SL_ECONN) { /* a connection found dead on use: once more, on a new one */
        p->ops->retry_now(p->db);
        rc = p->ops->ready(p->db, err, sizeof err);
        if (!rc)
            rc = p->ops->publish(p->db, topic, msgs, n, err, sizeof err);
    }
    pthread_mutex_unlock(&p->mu);
    if (rc && opts && opts->published)
        *opts->published = 0;
    return rc ? sli_err(rc, "%s", err) : 0;
}

int sli_sqlc_pub_close(void *impl)
{
    sqlc_pub *p = impl;
    atomic_store(&p->closing, true);
    pthread_mutex_lock(&p->mu); /* a publish in progress finishes first */
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    p->ops->close(p->db);
    free(p);
    return 0;
}

void sli_sqlc_late_feature(const sqlc_opts *o, unsigned *features)
{
    if (o->retention_ms <= 0)
        *features &= ~(unsigned)SL_FEAT_LATE_SUBSCRIBERS;
}
