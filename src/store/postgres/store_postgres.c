/*
 * store_postgres.c - the postgres:// store: one table
 *   sl_store(db TEXT, tbl TEXT, key BYTEA, value BYTEA, meta BYTEA,
 *            expiry BIGINT, PRIMARY KEY(db, tbl, key))
 * (created if missing). Keys are BYTEA so they compare byte by byte (the
 * store's order, whatever the database's collation) and may hold any bytes
 * the store accepts; a prefix read is a range scan on the primary key.
 * Writes are upserts (INSERT ... ON CONFLICT DO UPDATE), committed before
 * the call returns. Expired rows are filtered by every read and deleted by
 * a sweep every 1024 writes of the handle.
 *
 * One connection (libpq) per handle, its prepared statements reused under
 * a mutex. A call that finds the connection broken (server restarted)
 * resets it, prepares again and retries once; a server that stays away is
 * SL_ECONN.
 *
 * URL: postgres://[user[:password]@]HOST[:PORT]/DBNAME, options
 * ?sql_table=sl_store (the SQL table; ?table= is the store's own option),
 * ?timeout=5s (connect timeout) and
 * ?sslmode=disable|allow|prefer|require|verify-ca|verify-full.
 */
#ifdef SL_HAVE_STORE_POSTGRES
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

enum { ST_PUT, ST_GET, ST_RANGE, ST_KEYS, ST_DEL, ST_SWEEP, ST_N };

/* %1$s is the table. Results are binary (bytea raw, int8 big-endian). */
static const char *const sql_fmt[ST_N] = {
    [ST_PUT] = "INSERT INTO %1$s(db,tbl,key,value,meta,expiry) VALUES($1,$2,$3,$4,$5,$6)"
               " ON CONFLICT (db,tbl,key) DO UPDATE SET value=EXCLUDED.value,"
               " meta=EXCLUDED.meta, expiry=EXCLUDED.expiry",
    [ST_GET] = "SELECT key,value,meta,expiry FROM %1$s WHERE db=$1 AND tbl=$2 AND key=$3"
               " AND (expiry=0 OR expiry>$4)",
    [ST_RANGE] = "SELECT key,value,meta,expiry FROM %1$s WHERE db=$1 AND tbl=$2 AND key>=$3"
                 " AND ($5::bytea IS NULL OR key<$5) AND (expiry=0 OR expiry>$4) ORDER BY key"
                 " LIMIT $6 OFFSET $7",
    [ST_KEYS] = "SELECT key,NULL::bytea,NULL::bytea,expiry FROM %1$s WHERE db=$1 AND tbl=$2"
                " AND key>=$3 AND ($5::bytea IS NULL OR key<$5) AND (expiry=0 OR expiry>$4)"
                " ORDER BY key LIMIT $6 OFFSET $7",
    [ST_DEL] = "DELETE FROM %1$s WHERE db=$1 AND tbl=$2 AND key=$3",
    [ST_SWEEP] = "DELETE FROM %1$s WHERE expiry>0 AND expiry<=$1",
};

typedef struct pgstore {
    pthread_mutex_t mu;
    PGconn *c;
    char table[64];
    char where[128]; /* host:port/db, for messages */
    unsigned writes;
} pgstore;

static int pg_fail(pgstore *s, PGresult *r, const char *what)
{
    const char *m = r ? PQresultErrorMessage(r) : "";
    if (!m || !*m)
        m = PQerrorMessage(s->c);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", m);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = 0;
    int rc = PQstatus(s->c) == CONNECTION_BAD ? SL_ECONN : SL_EIO;
    return sli_err(rc, "store: postgres %s: %s: %s", s->where, what, msg);
}

static int prepare_all(pgstore *s)
{
    char name[8], sql[1024];
    for (int i = 0; i < ST_N; i++) {
        snprintf(name, sizeof name, "sl%d", i);
        snprintf(sql, sizeof sql, sql_fmt[i], s->table);
        PGresult *r = PQprepare(s->c, name, sql, 0, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        int rc = ok ? 0 : pg_fail(s, r, "prepare");
        PQclear(r);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int setup_schema(pgstore *s)
{
    char sql[512];
    snprintf(
        sql, sizeof sql,
        "CREATE TABLE IF NOT EXISTS %s(db TEXT NOT NULL, tbl TEXT NOT NULL, key BYTEA NOT NULL,"
        " value BYTEA NOT NULL, meta BYTEA, expiry BIGINT NOT NULL,"
        " PRIMARY KEY(db, tbl, key))",
        s->table);
    for (int attempt = 0;; attempt++) {
        PGresult *r = PQexec(s->c, sql);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        /* two processes creating it at once: one loses with a unique
         * violation on the catalog; the table is there then */
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        bool race = state && strcmp(state, "23505") == 0;
        int rc = ok ? 0 : pg_fail(s, r, "schema");
        PQclear(r);
        if (ok || !race || attempt > 0)
            return rc == 0 ? prepare_all(s) : rc;
    }
}

static void p_close(void *impl)
{
    pgstore *s = impl;
    if (!s)
        return;
    PQfinish(s->c);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static bool name_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 63 || (t[0] >= '0' && t[0] <= '9'))
        return false;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9') || *t == '_'))
            return false;
    return true;
}

static int p_open(void **impl, sli_url *u)
{
    int64_t timeout;
    int rc, ssl = 2;
    if ((rc = sli_url_opt_ms(u, "timeout", 5000, &timeout)) < 0 ||
        (rc = sli_url_opt_enum(u, "sslmode", "disable|allow|prefer|require|verify-ca|verify-full",
                               2, &ssl)) < 0)
        return rc;
    static const char *const sslmodes[] = {"disable", "allow",     "prefer",
                                           "require", "verify-ca", "verify-full"};
    const char *table = sli_url_opt(u, "sql_table");
    if (!table)
        table = "sl_store";
    if (!name_ok(table))
        return sli_err(SL_EBADOPT, "store: postgres sql_table '%s' must be 1..63 of [a-z0-9_]",
                       table);
    if (!u->host[0])
        return sli_err(SL_EINVAL, "store: postgres:// needs a host ('%s')", u->raw);
    const char *dbname = u->path[0] == '/' ? u->path + 1 : "";
    if (!*dbname || strchr(dbname, '/'))
        return sli_err(SL_EINVAL, "store: postgres:// needs a database name as its path ('%s')",
                       u->raw);
    pgstore *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "store: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    snprintf(s->table, sizeof s->table, "%s", table);
    char port[16], tmo[24];
    snprintf(port, sizeof port, "%d", u->port ? u->port : 5432);
    snprintf(tmo, sizeof tmo, "%lld", (long long)(timeout < 1000 ? 1 : (timeout + 999) / 1000));
    snprintf(s->where, sizeof s->where, "%s:%s/%s", u->host, port, dbname);
    const char *keys[] = {"host",     "port",    "dbname",          "user",
                          "password", "sslmode", "connect_timeout", "application_name",
                          NULL};
    const char *vals[] = {u->host,
                          port,
                          dbname,
                          u->user ? u->user : "",
                          u->password ? u->password : "",
                          sslmodes[ssl],
                          tmo,
                          "sluice",
                          NULL};
    s->c = PQconnectdbParams(keys, vals, 0);
    if (!s->c) {
        p_close(s);
        return sli_err(SL_ENOMEM, "store: out of memory");
    }
    if (PQstatus(s->c) != CONNECTION_OK)
        rc = pg_fail(s, NULL, "connect");
    else
        rc = setup_schema(s);
    if (rc < 0) {
        p_close(s);
        return rc;
    }
    *impl = s;
    return 0;
}

/* Run prepared statement i; on a broken connection reset, prepare again
 * and retry once. *out the result (PQclear it) when rc == 0. */
static int run(pgstore *s, int i, int n, const char *const *vals, const int *lens, const int *fmts,
               const char *what, PGresult **out)
{
    char name[8];
    snprintf(name, sizeof name, "sl%d", i);
    for (int attempt = 0;; attempt++) {
        PGresult *r = PQexecPrepared(s->c, name, n, vals, lens, fmts, 1);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            *out = r;
            return 0;
        }
        if (PQstatus(s->c) != CONNECTION_BAD || attempt > 0) {
            int rc = pg_fail(s, r, what);
            PQclear(r);
            return rc;
        }
        PQclear(r);
        PQreset(s->c);
        int rc = PQstatus(s->c) == CONNECTION_OK ? prepare_all(s) : pg_fail(s, NULL, "reconnect");
        if (rc < 0)
            return rc;
        sli_log(SL_LOG_INFO, "store", "postgres %s: reconnected", s->where);
    }
}

static int exec_done(pgstore *s, int i, int n, const char *const *vals, const int *lens,
                     const int *fmts, const char *what)
{
    PGresult *r;
    int rc = run(s, i, n, vals, lens, fmts, what, &r);
    if (rc == 0)
        PQclear(r);
    return rc;
}

static int p_write(void *impl, const char *db, const char *tbl, const char *key, const void *val,
                   size_t vlen, const void *meta, size_t mlen, int64_t exp)
{
    pgstore *s = impl;
    if (vlen > 0x7fffffff || mlen > 0x7fffffff)
        return sli_err(SL_ETOOBIG, "store: postgres values are limited to 2 GiB");
    char exps[24], now[24];
    snprintf(exps, sizeof exps, "%lld", (long long)exp);
    const char *vals[6] = {db, tbl, key, val ? val : "", mlen ? meta : NULL, exps};
    int lens[6] = {0, 0, (int)strlen(key), (int)vlen, (int)mlen, 0};
    int fmts[6] = {0, 0, 1, 1, 1, 0};
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (++s->writes % 1024 == 0) {
        snprintf(now, sizeof now, "%lld", (long long)sli_wall_ms());
        const char *sv[1] = {now};
        rc = exec_done(s, ST_SWEEP, 1, sv, NULL, NULL, "sweep");
    }
    if (rc == 0)
        rc = exec_done(s, ST_PUT, 6, vals, lens, fmts, "write");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int64_t be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (unsigned char)p[i];
    return (int64_t)v;
}

static int p_query(void *impl, const sli_store_q *q, sli_store_rows *rows)
{
    pgstore *s = impl;
    char *end = NULL;
    if (!q->exact && sli_store_prefix_end(q->key, &end) < 0)
        return SL_ENOMEM;
    char now[24], lim[24], off[24];
    snprintf(now, sizeof now, "%lld", (long long)q->now_ms);
    if (q->limit)
        snprintf(lim, sizeof lim, "%zu", q->limit);
    snprintf(off, sizeof off, "%zu", q->offset);
    const char *vals[7] = {q->db, q->tbl, q->key, now, end, q->limit ? lim : NULL, off};
    int lens[7] = {0, 0, (int)strlen(q->key), 0, end ? (int)strlen(end) : 0, 0, 0};
    int fmts[7] = {0, 0, 1, 0, 1, 0, 0};
    pthread_mutex_lock(&s->mu);
    PGresult *r;
    int rc = run(s,
                 q->exact       ? ST_GET
                 : q->keys_only ? ST_KEYS
                                : ST_RANGE,
                 q->exact ? 4 : 7, vals, lens, fmts, "read", &r);
    pthread_mutex_unlock(&s->mu);
    free(end);
    if (rc < 0)
        return rc;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        if (PQgetlength(r, i, 3) != 8) {
            rc = sli_err(SL_EPROTO, "store: postgres answered a malformed expiry");
            break;
        }
        rc = sli_store_rows_add(rows, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0),
                                PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1),
                                PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2),
                                be64(PQgetvalue(r, i, 3)));
    }
    PQclear(r);
    rows->paged = true;
    return rc;
}

static int p_del(void *impl, const char *db, const char *tbl, const char *key)
{
    pgstore *s = impl;
    const char *vals[3] = {db, tbl, key};
    int lens[3] = {0, 0, (int)strlen(key)};
    int fmts[3] = {0, 0, 1};
    pthread_mutex_lock(&s->mu);
    int rc = exec_done(s, ST_DEL, 3, vals, lens, fmts, "delete");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

const sli_store_ops sli_store_postgres = {
    .scheme = "postgres",
    .open = p_open,
    .write = p_write,
    .query = p_query,
    .del = p_del,
    .close = p_close,
};
#endif
