/*
 * my_conn.c - connections of the mysql:// backend: URL -> libmariadb
 * parameters, connecting within connect_timeout (libmariadb counts it in
 * whole seconds: rounded up), session settings (READ COMMITTED,
 * autocommit off, utf8mb4, multi-statements), reconnecting with backoff,
 * running statements, errors -> SL_E*, and the tables.
 *
 * URL: mysql://user:password@host:port/dbname?options (host "localhost"
 * means libmariadb's default Unix socket, as for the mariadb client).
 * Options (sqlcommon's, read the same way as postgres://):
 *   connect_timeout=DUR (5s)  ack_deadline=DUR (30s)  poll=DUR (250ms: the
 *   longest sleep between two polls of an idle subscription)
 *   retention=acked|DUR (acked)  ack=sync|batch (sync)
 *   schema=NAME  keep sluice's tables in database NAME (created if
 *                missing; [a-z_][a-z0-9_]*), e.g. one per app
 * Durability is the server's (innodb_flush_log_at_trx_commit): a publish
 * or an ack returns once its COMMIT returned.
 *
 * Statements are text with every value a literal (integers, X'hex' for
 * bytes), several per round trip (CLIENT_MULTI_STATEMENTS).
 */
#include <errmsg.h>
#include <mysqld_error.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/mysql/my.h"

/* ---------- SQL text ---------- */

void sli_my_sql_init(my_sql *q)
{
    memset(q, 0, sizeof *q);
}

void sli_my_sql_free(my_sql *q)
{
    free(q->p);
    memset(q, 0, sizeof *q);
}

static bool grow(my_sql *q, size_t more)
{
    if (q->oom)
        return false;
    if (q->len + more + 1 <= q->cap)
        return true;
    size_t cap = q->cap ? q->cap : 256;
    while (cap < q->len + more + 1)
        cap *= 2;
    char *p = realloc(q->p, cap);
    if (!p) {
        q->oom = true;
        return false;
    }
    q->p = p;
    q->cap = cap;
    return true;
}

void sli_my_sql_add(my_sql *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || !grow(q, (size_t)n))
        return;
    if ((size_t)n < sizeof tmp) {
        memcpy(q->p + q->len, tmp, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(q->p + q->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    q->len += (size_t)n;
}

void sli_my_sql_bin(my_sql *q, const void *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!grow(q, 2 * n + 3))
        return;
    char *o = q->p + q->len;
    const unsigned char *b = p;
    *o++ = 'X';
    *o++ = '\'';
    for (size_t i = 0; i < n; i++) {
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o++ = '\'';
    *o = '\0';
    q->len = (size_t)(o - q->p);
}

void sli_my_sql_bin_or_null(my_sql *q, const void *p, size_t n)
{
    if (p)
        sli_my_sql_bin(q, p, n);
    else
        sli_my_sql_add(q, "NULL");
}

int64_t sli_my_i64(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

/* ---------- errors ---------- */

static bool lost_errno(unsigned e)
{
    return e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST || e == CR_SERVER_LOST_EXTENDED ||
           e == ER_CONNECTION_KILLED || e == ER_SERVER_SHUTDOWN || e == CR_CONNECTION_ERROR ||
           e == CR_CONN_HOST_ERROR || e == CR_COMMANDS_OUT_OF_SYNC ||
           e == CR_NET_PACKET_TOO_LARGE || e == ER_NET_PACKET_TOO_LARGE || e == ER_NET_READ_ERROR ||
           e == ER_NET_READ_INTERRUPTED || e == ER_NET_ERROR_ON_WRITE || e == CR_UNKNOWN_ERROR;
}

int sli_my_classify(MYSQL *c, const char *what, char *err, size_t errlen, bool *lost)
{
    unsigned e = mysql_errno(c);
    *lost = lost_errno(e);
    int code = SL_EIO;
    const char *hint = "";
    if (e == ER_NET_PACKET_TOO_LARGE || e == CR_NET_PACKET_TOO_LARGE) {
        code = SL_ETOOBIG;
        hint = " (over the server's max_allowed_packet)";
    } else if (*lost) {
        code = SL_ECONN;
    } else if (e == ER_NO_SUCH_TABLE || e == ER_BAD_FIELD_ERROR || e == ER_BAD_TABLE_ERROR) {
        code = SL_ECORRUPT;
        hint = " (sluice's tables are gone: dropped under us?)";
    } else if (e == ER_LOCK_DEADLOCK || e == ER_LOCK_WAIT_TIMEOUT) {
        code = SL_EBUSY;
    } else if (e == ER_ACCESS_DENIED_ERROR) {
        code = SL_EUNAUTH;
    } else if (e == ER_DBACCESS_DENIED_ERROR || e == ER_TABLEACCESS_DENIED_ERROR ||
               e == ER_COLUMNACCESS_DENIED_ERROR || e == ER_SPECIFIC_ACCESS_DENIED_ERROR) {
        code = SL_EDENIED;
    } else if (e == ER_BAD_DB_ERROR) {
        code = SL_ENOENT;
    }
    snprintf(err, errlen, "mysql: %s: %u %s%s", what, e, mysql_error(c), hint);
    return code;
}

/* ---------- connections ---------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int sli_my_conn_init(my_link *l, sli_url *u, const sqlc_opts *o)
{
    memset(l, 0, sizeof *l);
    const char *db = u->path[0] == '/' ? u->path + 1 : u->path;
    if (!*u->host)
        return sli_err(SL_EINVAL, "mysql: the URL needs a host (mysql://user:pass@host/dbname)");
    if (!*db || strchr(db, '/'))
        return sli_err(SL_EINVAL, "mysql: the URL path must be one database name, not '%s'",
                       u->path);
    if (u->port < 0 || u->port > 65535)
        return sli_err(SL_EINVAL, "mysql: bad port %d", u->port);
    l->timeout_ms = o->connect_timeout_ms;
    l->port = u->port ? (unsigned)u->port : 3306;
    memcpy(l->schema, o->schema, sizeof l->schema);
    l->host = strdup(u->host);
    l->db = strdup(db);
    l->user = dup_or_null(u->user);
    l->pass = dup_or_null(u->password);
    if (!l->host || !l->db || (u->user && !l->user) || (u->password && !l->pass)) {
        sli_my_conn_fini(l);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    return 0;
}

void sli_my_conn_fini(my_link *l)
{
    if (l->c)
        mysql_close(l->c);
    free(l->host);
    free(l->db);
    free(l->user);
    free(l->pass);
    memset(l, 0, sizeof *l);
}

static void drop(my_link *l)
{
    l->ready = false;
    if (l->borrowed)
        return; /* the caller's connection: theirs to close */
    if (l->c)
        mysql_close(l->c);
    l->c = NULL;
}

/* Connect, then the session settings; 0 or SL_E* with detail. */
static int conn_open(my_link *l, char *err, size_t errlen)
{
    drop(l);
    MYSQL *c = mysql_init(NULL);
    if (!c) {
        snprintf(err, errlen, "mysql: out of memory");
        return SL_ENOMEM;
    }
    unsigned secs = (unsigned)((l->timeout_ms + 999) / 1000);
    unsigned io = secs > 60 ? secs : 60; /* a statement may wait for a lock (50s) */
    my_bool off = 0;
    mysql_optionsv(c, MYSQL_OPT_CONNECT_TIMEOUT, &secs);
    mysql_optionsv(c, MYSQL_OPT_READ_TIMEOUT, &io);
    mysql_optionsv(c, MYSQL_OPT_WRITE_TIMEOUT, &io);
    mysql_optionsv(c, MYSQL_OPT_RECONNECT, &off);
    mysql_optionsv(c, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_optionsv(c, MYSQL_OPT_LOCAL_INFILE, &off);
    if (!mysql_real_connect(c, l->host, l->user, l->pass, l->db, l->port, NULL,
                            CLIENT_MULTI_STATEMENTS | CLIENT_FOUND_ROWS)) {
        bool lost;
        char what[300];
        snprintf(what, sizeof what, "cannot connect to %s:%u", l->host, l->port);
        int rc = sli_my_classify(c, what, err, errlen, &lost);
        mysql_close(c);
        return rc == SL_EIO ? SL_ECONN : rc;
    }
    l->c = c;
    my_sql q;
    sli_my_sql_init(&q);
    if (l->schema[0])
        sli_my_sql_add(&q, "CREATE DATABASE IF NOT EXISTS `%s`;USE `%s`;", l->schema, l->schema);
    sli_my_sql_add(&q, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;SET autocommit=0;"
                       "SELECT @@max_allowed_packet");
    MYSQL_RES *res = NULL;
    int rc = sli_my_run(l, &q, &res, 1, err, errlen, "session settings");
    sli_my_sql_free(&q);
    if (!rc) {
        MYSQL_ROW row = mysql_fetch_row(res);
        l->max_packet = row && row[0] ? (size_t)sli_my_i64(row[0]) : 0;
        if (l->max_packet < 1024)
            l->max_packet = 1 << 20;
    }
    if (res)
        mysql_free_result(res);
    if (!rc)
        rc = sli_my_schema(l->c, err, errlen);
    if (rc)
        drop(l);
    return rc;
}

#define MY_BACKOFF_MIN 50
#define MY_BACKOFF_MAX 2000

int sli_my_conn_ready(my_link *l, char *err, size_t errlen)
{
    if (l->c && l->ready)
        return 0;
    int64_t now = sli_mono_ms();
    if (now < l->retry_at) {
        snprintf(err, errlen, "mysql: connection to %s:%u lost; retrying in %lldms", l->host,
                 l->port, (long long)(l->retry_at - now));
        return SL_ECONN;
    }
    int rc = conn_open(l, err, errlen);
    if (rc == SL_ECONN) {
        l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : MY_BACKOFF_MIN;
        if (l->backoff_ms > MY_BACKOFF_MAX)
            l->backoff_ms = MY_BACKOFF_MAX;
        l->retry_at = sli_mono_ms() + l->backoff_ms;
        return rc;
    }
    l->backoff_ms = 0;
    l->ready = rc == 0;
    return rc;
}

/* Drop every result of a failed multi-statement so the connection can be
 * used again (the server stops at the failed statement). */
static void fail_cleanup(my_link *l, bool lost)
{
    if (lost || l->borrowed) { /* a caller's transaction is the caller's to end */
        drop(l);
        return;
    }
    if (mysql_rollback(l->c)) /* the rollback failing means the connection is gone */
        drop(l);
}

/* Send one query (several statements when the session allows) and store
 * the result sets from res[*k] on; 0, or nonzero with the error on c. */
static int send_one(MYSQL *c, const char *sql, size_t len, MYSQL_RES **res, int nres, int *k)
{
    int st = mysql_real_query(c, sql, (unsigned long)len) ? 1 : 0;
    while (st == 0) {
        MYSQL_RES *r = mysql_store_result(c);
        if (r && *k < nres)
            res[(*k)++] = r;
        else if (r)
            mysql_free_result(r);
        else if (mysql_field_count(c) != 0)
            return 1; /* a result that could not be read */
        st = mysql_next_result(c);
    }
    return st > 0;
}

int sli_my_run(my_link *l, const my_sql *q, MYSQL_RES **res, int nres, char *err, size_t errlen,
               const char *what)
{
    for (int i = 0; i < nres; i++)
        res[i] = NULL;
    if (q->oom) {
        snprintf(err, errlen, "mysql: %s: out of memory", what);
        return SL_ENOMEM;
    }
    if (!l->c) {
        snprintf(err, errlen, "mysql: %s: not connected", what);
        return SL_ECONN;
    }
    int k = 0, bad = 0;
    if (!l->borrowed) {
        bad = send_one(l->c, q->p, q->len, res, nres, &k);
    } else {
        /* a caller's connection may not allow several statements per query:
         * one at a time (no ';' ever appears inside our statements: every
         * value is a number or X'hex') */
        for (const char *p = q->p, *end = q->p + q->len; p < end && !bad;) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            size_t n = semi ? (size_t)(semi - p) : (size_t)(end - p);
            if (n)
                bad = send_one(l->c, p, n, res, nres, &k);
            p += n + 1;
        }
    }
    if (!bad)
        return 0;
    for (int i = 0; i < k; i++) {
        mysql_free_result(res[i]);
        res[i] = NULL;
    }
    bool lost;
    int rc = sli_my_classify(l->c, what, err, errlen, &lost);
    if (rc == SL_ECORRUPT)
        l->ready = false; /* check the tables again on the next use */
    fail_cleanup(l, lost);
    return rc;
}

/* ---------- the tables ---------- */

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS sluice_meta(k VARCHAR(64) NOT NULL PRIMARY KEY, v VARCHAR(255) "
    "NOT NULL) ENGINE=InnoDB;"
    "INSERT IGNORE INTO sluice_meta VALUES('format','" MY_FORMAT "');"
    "CREATE TABLE IF NOT EXISTS sluice_topics(topic VARBINARY(255) NOT NULL PRIMARY KEY, seq "
    "BIGINT NOT NULL) ENGINE=InnoDB;"
    "CREATE TABLE IF NOT EXISTS sluice_msgs(topic VARBINARY(255) NOT NULL, id BIGINT NOT NULL, "
    "uuid VARBINARY(255) NOT NULL, meta MEDIUMBLOB, payload LONGBLOB NOT NULL, created BIGINT "
    "NOT NULL, PRIMARY KEY(topic, id)) ENGINE=InnoDB;"
    "CREATE TABLE IF NOT EXISTS sluice_groups(id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "topic VARBINARY(255) NOT NULL, name VARBINARY(255), private BOOL NOT NULL, pos BIGINT NOT "
    "NULL, holder BIGINT NOT NULL, alive BIGINT NOT NULL, UNIQUE KEY(topic, name), "
    "KEY(holder)) ENGINE=InnoDB;"
    "CREATE TABLE IF NOT EXISTS sluice_claims(gid BIGINT NOT NULL, msg_id BIGINT NOT NULL, "
    "hi BIGINT NOT NULL, owner BIGINT NOT NULL, deadline BIGINT NOT NULL, deliveries INT NOT NULL, "
    "PRIMARY KEY(gid, "
    "msg_id)) ENGINE=InnoDB;"
    "COMMIT";

/* The five tables present, and the format; one round trip. */
static const char check_sql[] =
    "SELECT (SELECT count(*) FROM information_schema.tables WHERE table_schema=DATABASE() AND "
    "table_name IN ('sluice_meta','sluice_topics','sluice_msgs','sluice_groups',"
    "'sluice_claims'));"
    "SELECT (SELECT v FROM sluice_meta WHERE k='format');COMMIT";

/* Runs on c directly (also a caller's connection, from my_tx.c): 0 with
 * *tables = how many of the five exist, *format = the format or "". */
static int check(MYSQL *c, int *tables, char *format, size_t flen, char *err, size_t errlen)
{
    my_link tmp = {.c = c, .borrowed = true};
    my_sql q = {.p = (char *)check_sql, .len = sizeof check_sql - 1};
    MYSQL_RES *res[2];
    *tables = 0;
    format[0] = '\0';
    int rc = sli_my_run(&tmp, &q, res, 2, err, errlen, "check sluice's tables");
    if (rc == SL_ECORRUPT) { /* no sluice_meta: count the others */
        my_sql q1 = {.p = (char *)check_sql, .len = (size_t)(strchr(check_sql, ';') - check_sql)};
        if ((rc = sli_my_run(&tmp, &q1, res, 1, err, errlen, "check sluice's tables")) != 0)
            return rc;
        MYSQL_ROW row = mysql_fetch_row(res[0]);
        *tables = row && row[0] ? atoi(row[0]) : 0;
        mysql_free_result(res[0]);
        return 0;
    }
    if (rc)
        return rc;
    MYSQL_ROW row = mysql_fetch_row(res[0]);
    *tables = row && row[0] ? atoi(row[0]) : 0;
    row = mysql_fetch_row(res[1]);
    snprintf(format, flen, "%s", row && row[0] ? row[0] : "");
    mysql_free_result(res[0]);
    mysql_free_result(res[1]);
    return 0;
}

/* sluice-my-1 -> 2: a claim covers a range of ids (my_claim.c); the rows of
 * format 1 are one-id ranges. One process at a time (a named lock); the
 * processes of the old version must be stopped first. */
static const char upgrade_sql[] = "SELECT GET_LOCK(concat('sluice-upgrade-', DATABASE()), 30);"
                                  "SELECT v FROM sluice_meta WHERE k='format' FOR UPDATE";
static const char upgrade1_sql[] =
    "ALTER TABLE sluice_claims ADD COLUMN hi BIGINT NOT NULL DEFAULT 0 AFTER msg_id;"
    "UPDATE sluice_claims SET hi=msg_id;"
    "UPDATE sluice_meta SET v='" MY_FORMAT "' WHERE k='format';COMMIT";

static int upgrade(MYSQL *c, char *err, size_t errlen)
{
    my_link tmp = {.c = c, .borrowed = true};
    my_sql q = {.p = (char *)upgrade_sql, .len = sizeof upgrade_sql - 1};
    MYSQL_RES *res[2];
    int rc = sli_my_run(&tmp, &q, res, 2, err, errlen, "upgrade sluice's tables");
    if (rc)
        return rc;
    MYSQL_ROW row = mysql_fetch_row(res[1]);
    bool old = row && row[0] && strcmp(row[0], "sluice-my-1") == 0;
    mysql_free_result(res[0]);
    mysql_free_result(res[1]);
    my_sql u = {.p = (char *)upgrade1_sql, .len = sizeof upgrade1_sql - 1};
    rc = old ? sli_my_run(&tmp, &u, NULL, 0, err, errlen, "upgrade sluice's tables") : 0;
    mysql_rollback(c); /* a format already upgraded: end the locking read */
    static const char rel[] = "SELECT RELEASE_LOCK(concat('sluice-upgrade-', DATABASE()))";
    my_sql r = {.p = (char *)rel, .len = sizeof rel - 1};
    char e2[MY_ERRLEN];
    sli_my_run(&tmp, &r, NULL, 0, e2, sizeof e2, "upgrade sluice's tables");
    return rc;
}

int sli_my_schema(MYSQL *c, char *err, size_t errlen)
{
    int tables, rc;
    char format[64];
    if ((rc = check(c, &tables, format, sizeof format, err, errlen)) != 0)
        return rc;
    if (tables < 5 || !format[0]) {
        my_link tmp = {.c = c, .borrowed = true};
        my_sql q = {.p = (char *)schema_sql, .len = sizeof schema_sql - 1};
        if ((rc = sli_my_run(&tmp, &q, NULL, 0, err, errlen, "create sluice's tables")) != 0)
            return rc;
        if ((rc = check(c, &tables, format, sizeof format, err, errlen)) != 0)
            return rc;
    }
    if (strcmp(format, "sluice-my-1") == 0 &&
        ((rc = upgrade(c, err, errlen)) != 0 ||
         (rc = check(c, &tables, format, sizeof format, err, errlen)) != 0))
        return rc;
    if (strcmp(format, MY_FORMAT) != 0) {
        snprintf(err, errlen, "mysql: unsupported sluice format '%s' in sluice_meta (expected %s)",
                 format, MY_FORMAT);
        return SL_ECORRUPT;
    }
    return 0;
}
