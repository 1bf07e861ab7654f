/*
 * pg_tx.c - sl_pg_publish_tx: publish on the caller's connection, inside
 * the caller's transaction (the outbox pattern). Inside a transaction it
 * runs under a SAVEPOINT, so a failure leaves the caller's transaction as
 * it was; outside one it runs in a transaction of its own.
 */
#include <stdio.h>
#include <string.h>

#include "backends/postgres/pg.h"
#include "sluice/postgres.h"

static int simple(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        sli_err(PQstatus(c) == CONNECTION_OK ? SL_EIO : SL_ECONN, "postgres: %s: %s", sql,
                PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : PQstatus(c) == CONNECTION_OK ? SL_EIO : SL_ECONN;
}

int sl_pg_publish_tx(PGconn *conn, const char *topic, sl_msg *const *msgs, size_t n)
{
    if (!conn || !msgs || n == 0)
        return sli_err(SL_EINVAL, "sl_pg_publish_tx: NULL argument or no messages");
    int rc = sli_check_topic(topic);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i])
            return sli_err(SL_EINVAL, "sl_pg_publish_tx: message %zu is NULL", i);
    if (PQstatus(conn) != CONNECTION_OK)
        return sli_err(SL_ECONN, "sl_pg_publish_tx: the connection is not open");
    PGTransactionStatusType ts = PQtransactionStatus(conn);
    if (ts != PQTRANS_IDLE && ts != PQTRANS_INTRANS)
        return sli_err(SL_EINVAL, "sl_pg_publish_tx: the connection is busy or its transaction "
                                  "already failed");
    char err[PG_ERRLEN];
    if (ts == PQTRANS_IDLE && (rc = sli_pg_schema(conn, err, sizeof err)) != 0)
        return sli_err(rc, "%s", err);
    bool own = ts == PQTRANS_IDLE;
    if ((rc = simple(conn, own ? "BEGIN" : "SAVEPOINT sluice_publish")) != 0)
        return rc;
    int failed;
    rc = sli_pg_insert_msgs(conn, topic, msgs, n, err, sizeof err, &failed);
    if (!rc)
        return simple(conn, own ? "COMMIT" : "RELEASE SAVEPOINT sluice_publish");
    if (PQstatus(conn) == CONNECTION_OK) {
        if (own)
            PQclear(PQexec(conn, "ROLLBACK"));
        else
            PQclear(PQexec(conn, "ROLLBACK TO SAVEPOINT sluice_publish; RELEASE SAVEPOINT "
                                 "sluice_publish"));
    }
    return sli_err(rc, "%s", err);
}
