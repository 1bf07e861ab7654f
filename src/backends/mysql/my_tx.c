/*
 * my_tx.c - sl_mysql_publish_tx: publish on the caller's connection, inside
 * the caller's transaction (the outbox pattern). Inside a transaction it
 * runs under a SAVEPOINT, so a failure leaves the caller's transaction as
 * it was; with autocommit on and no transaction open, it runs in one of
 * its own. It never creates tables inside a transaction (DDL would commit
 * the caller's work): the first call outside one, or any mysql:// handle
 * opened on the database, creates them.
 */
#include <mysqld_error.h>
#include <stdio.h>
#include <string.h>

#include "backends/mysql/my.h"
#include "sluice/mysql.h"

static int simple(MYSQL *c, const char *sql, char *err, size_t errlen)
{
    if (mysql_real_query(c, sql, (unsigned long)strlen(sql)) == 0)
        return 0;
    bool lost;
    return sli_my_classify(c, sql, err, errlen, &lost);
}

static int check_args(MYSQL *conn, const char *topic, sl_msg *const *msgs, size_t n)
{
    if (!conn || !msgs || n == 0)
        return sli_err(SL_EINVAL, "sl_mysql_publish_tx: NULL argument or no messages");
    int rc = sli_check_topic(topic);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i])
            return sli_err(SL_EINVAL, "sl_mysql_publish_tx: message %zu is NULL", i);
    return 0;
}

/* The server's max_allowed_packet, asked only for a batch that may need it
 * (the statements are split to fit it). */
static int packet_limit(my_link *l, sl_msg *const *msgs, size_t n, char *err, size_t errlen)
{
    size_t total = 0, len;
    for (size_t i = 0; i < n; i++) {
        sl_msg_payload(msgs[i], &len);
        total += 2 * len + 600 + 64 * sl_msg_meta_count(msgs[i]);
    }
    l->max_packet = 1 << 20; /* the smallest a server allows */
    if (total < (1 << 19))
        return 0;
    static const char q[] = "SELECT @@max_allowed_packet";
    my_sql s = {.p = (char *)q, .len = sizeof q - 1};
    MYSQL_RES *res;
    int rc = sli_my_run(l, &s, &res, 1, err, errlen, "max_allowed_packet");
    if (rc)
        return rc;
    MYSQL_ROW row = mysql_fetch_row(res);
    if (row && row[0] && sli_my_i64(row[0]) >= (1 << 20))
        l->max_packet = (size_t)sli_my_i64(row[0]);
    mysql_free_result(res);
    return 0;
}

int sl_mysql_publish_tx(MYSQL *conn, const char *topic, sl_msg *const *msgs, size_t n)
{
    int rc = check_args(conn, topic, msgs, n);
    if (rc)
        return rc;
    char err[MY_ERRLEN];
    unsigned status = 0;
    if (mariadb_get_infov(conn, MARIADB_CONNECTION_SERVER_STATUS, &status) != 0 ||
        mysql_get_socket(conn) < 0)
        return sli_err(SL_ECONN, "sl_mysql_publish_tx: the connection is not open");
    bool own = (status & SERVER_STATUS_AUTOCOMMIT) && !(status & SERVER_STATUS_IN_TRANS);
    if (own && (rc = sli_my_schema(conn, err, sizeof err)) != 0)
        return sli_err(rc, "%s", err);
    if ((rc = simple(conn, own ? "START TRANSACTION" : "SAVEPOINT sluice_publish", err,
                     sizeof err)) != 0)
        return sli_err(rc, "%s", err);
    my_link l = {.c = conn, .borrowed = true, .ready = true};
    if ((rc = packet_limit(&l, msgs, n, err, sizeof err)) == 0)
        rc = sli_my_insert(&l, topic, msgs, n, false, err, sizeof err);
    bool deadlock = rc && mysql_errno(conn) == ER_LOCK_DEADLOCK;
    if (!rc) {
        if ((rc = simple(conn, own ? "COMMIT" : "RELEASE SAVEPOINT sluice_publish", err,
                         sizeof err)) != 0)
            return sli_err(rc, "%s", err);
        return 0;
    }
    char e2[MY_ERRLEN];
    if (rc != SL_ECONN) {
        if (own)
            mysql_rollback(conn);
        else if (!deadlock) /* a deadlock rolled the caller's transaction back whole */
            simple(conn, "ROLLBACK TO SAVEPOINT sluice_publish", e2, sizeof e2);
    }
    if (deadlock && !own)
        return sli_err(rc, "%s (the server rolled back the whole transaction)", err);
    return sli_err(rc, "%s", err);
}
