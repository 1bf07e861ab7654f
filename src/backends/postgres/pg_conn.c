/*
 * pg_conn.c - connections of the postgres:// backend: options, URL ->
 * libpq parameters, connecting within a deadline (non-blocking connect, so
 * a server that does not answer costs connect_timeout, not libpq's
 * whole-second rounding), reconnecting with backoff, and libpq errors ->
 * SL_E* (the tables: pg_schema.c).
 *
 * URL: postgres://user:password@host:port/dbname?options (postgresql://
 * is not a second scheme: one scheme per backend). Options (sqlcommon's,
 * read the same way as mysql://, and sslmode, sync):
 *   connect_timeout=DUR  (5s)   ack_deadline=DUR (30s)   poll=DUR (1s)
 *   retention=acked|DUR  (acked) ack=sync|batch (sync)   linger=DUR (5ms)
 *   sslmode=disable|allow|prefer|require|verify-ca|verify-full (prefer)
 *   sync=full|off        full (default): a publish or ack returns once it
 *                        is flushed to the server's WAL; off: the server
 *                        acknowledges before (synchronous_commit=off), so a
 *                        server crash (not a client's) may lose the last
 *                        few hundred ms of publishes and acks
 *   schema=NAME          keep sluice's tables in this schema (created if
 *                        missing; [a-z_][a-z0-9_]*), e.g. one per app
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/postgres/pg.h"

int sli_pg_opts_read(sli_url *u, pg_opts *o)
{
    int sync, rc = sli_sqlc_opts_read(u, "postgres", 1000, PG_LINGER_DEFAULT_MS, &o->c);
    if (rc || (rc = sli_url_opt_enum(u, "sync", "full|off", 0, &sync)) != 0)
        return rc;
    o->sync_off = sync == 1;
    return 0;
}

static int kv_add(pg_link *pc, int *k, const char *key, const char *val)
{
    if (!val)
        return 0;
    if (!(pc->keys[*k] = strdup(key)) || !(pc->vals[*k] = strdup(val)))
        return sli_err(SL_ENOMEM, "out of memory");
    (*k)++;
    return 0;
}

int sli_pg_conn_init(pg_link *pc, sli_url *u, const pg_opts *o)
{
    memset(pc, 0, sizeof *pc);
    pc->what = "postgres";
    pc->timeout_ms = o->c.connect_timeout_ms;
    pc->sync_off = o->sync_off;
    memcpy(pc->schema, o->c.schema, sizeof pc->schema);
    int rc, k = 0, ssl;
    char port[16];
    snprintf(port, sizeof port, "%d", u->port ? u->port : 5432);
    const char *db = u->path[0] == '/' ? u->path + 1 : u->path;
    if (!*u->host)
        return sli_err(SL_EINVAL, "postgres: the URL needs a host (postgres://host/dbname)");
    if (!*db || strchr(db, '/'))
        return sli_err(SL_EINVAL, "postgres: the URL path must be one database name, not '%s'",
                       u->path);
    if ((rc = sli_url_opt_enum(u, "sslmode", "prefer|disable|allow|require|verify-ca|verify-full",
                               0, &ssl)) != 0)
        return rc;
    static const char *const modes[] = {"prefer",  "disable",   "allow",
                                        "require", "verify-ca", "verify-full"};
    if ((rc = kv_add(pc, &k, "host", u->host)) || (rc = kv_add(pc, &k, "port", port)) ||
        (rc = kv_add(pc, &k, "dbname", db)) || (rc = kv_add(pc, &k, "user", u->user)) ||
        (rc = kv_add(pc, &k, "password", u->password)) ||
        (rc = kv_add(pc, &k, "sslmode", modes[ssl])) ||
        (rc = kv_add(pc, &k, "application_name", "sluice"))) {
        sli_pg_conn_fini(pc);
        return rc;
    }
    return 0;
}

void sli_pg_conn_fini(pg_link *pc)
{
    if (pc->c)
        PQfinish(pc->c);
    pc->c = NULL;
    for (int i = 0; i < 8; i++) {
        free(pc->keys[i]);
        free(pc->vals[i]);
        pc->keys[i] = pc->vals[i] = NULL;
    }
}

void sli_pg_oneline(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
}

/* The server's NOTICEs (e.g. "schema ... already exists, skipping"): the
 * library never prints; libpq's default would write them to stderr. */
static void notice(void *arg, const char *msg)
{
    (void)arg;
    sli_log(SL_LOG_DEBUG, "postgres", "%s", msg);
}

int sli_pg_conn_open(pg_link *pc, char *err, size_t errlen)
{
    if (pc->c)
        PQfinish(pc->c);
    pc->prepared = false;
    pc->c = PQconnectStartParams((const char *const *)pc->keys, (const char *const *)pc->vals, 0);
    if (!pc->c) {
        snprintf(err, errlen, "postgres: out of memory");
        return SL_ENOMEM;
    }
    int64_t deadline = sli_mono_ms() + pc->timeout_ms;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(pc->c) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
           st != PGRES_POLLING_FAILED) {
        int64_t left = deadline - sli_mono_ms();
        if (left <= 0) {
            snprintf(err, errlen, "postgres: no connection to %s:%s within %lldms", pc->vals[0],
                     pc->vals[1], (long long)pc->timeout_ms);
            PQfinish(pc->c);
            pc->c = NULL;
            return SL_ECONN;
        }
        struct pollfd p = {.fd = PQsocket(pc->c),
                           .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        int n = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (n > 0 || (n < 0 && errno == EINTR))
            st = PQconnectPoll(pc->c);
    }
    if (PQstatus(pc->c) != CONNECTION_OK) {
        char msg[PG_ERRLEN];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(pc->c));
        sli_pg_oneline(msg);
        bool auth = strstr(msg, "password") || strstr(msg, "authentication");
        snprintf(err, errlen, "postgres: cannot connect to %s:%s: %s", pc->vals[0], pc->vals[1],
                 msg);
        PQfinish(pc->c);
        pc->c = NULL;
        return auth ? SL_EUNAUTH : SL_ECONN;
    }
    PQsetNoticeProcessor(pc->c, notice, NULL);
    return 0;
}

#define PG_BACKOFF_MIN 50
#define PG_BACKOFF_MAX 2000

int sli_pg_conn_ready(pg_link *pc, char *err, size_t errlen)
{
    if (pc->c && PQstatus(pc->c) == CONNECTION_OK && pc->prepared)
        return 0;
    int64_t now = sli_mono_ms();
    if (!pc->c || PQstatus(pc->c) != CONNECTION_OK) {
        if (now < pc->retry_at) {
            snprintf(err, errlen, "postgres: connection lost; retrying in %lldms",
                     (long long)(pc->retry_at - now));
            return SL_ECONN;
        }
        int rc = sli_pg_conn_open(pc, err, errlen);
        if (rc) {
            pc->backoff_ms = pc->backoff_ms ? pc->backoff_ms * 2 : PG_BACKOFF_MIN;
            if (pc->backoff_ms > PG_BACKOFF_MAX)
                pc->backoff_ms = PG_BACKOFF_MAX;
            pc->retry_at = sli_mono_ms() + pc->backoff_ms;
            return rc;
        }
        pc->backoff_ms = 0;
    }
    int rc = 0;
    if (pc->schema[0]) {
        char sql[200];
        snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s; SET search_path TO %s",
                 pc->schema, pc->schema);
        rc = sli_pg_exec(pc, sql, err, errlen);
    }
    if (!rc)
        rc = sli_pg_schema(pc->c, err, errlen);
    if (!rc)
        rc = sli_pg_prepare(pc, err, errlen);
    if (!rc && pc->sync_off)
        rc = sli_pg_exec(pc, "SET synchronous_commit TO off", err, errlen);
    pc->prepared = rc == 0;
    return rc;
}

int sli_pg_fail(pg_link *pc, PGresult *res, char *err, size_t errlen, const char *what)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char sqlstate[8] = "", msg[PG_ERRLEN];
    snprintf(sqlstate, sizeof sqlstate, "%s", st ? st : "");
    const char *state = sqlstate[0] ? sqlstate : NULL; /* res is cleared below */
    snprintf(msg, sizeof msg, "%s",
             res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(pc->c));
    sli_pg_oneline(msg);
    PQclear(res);
    int code = SL_EIO;
    if (PQstatus(pc->c) != CONNECTION_OK || (state && strncmp(state, "08", 2) == 0) ||
        (state && strncmp(state, "57P", 3) == 0)) {
        code = SL_ECONN; /* gone: the next use reconnects */
        pc->prepared = false;
        if (PQstatus(pc->c) == CONNECTION_OK)
            PQfinish(pc->c), pc->c = NULL;
    } else if (state && (strcmp(state, "42P01") == 0 || strcmp(state, "26000") == 0 ||
                         strcmp(state, "42883") == 0)) {
        code = SL_ECORRUPT; /* a table, a function (or a prepared statement) is gone */
        pc->prepared = false;
        snprintf(err, errlen, "postgres: %s: sluice's tables are gone (dropped under us?): %s",
                 what, msg);
        return code;
    } else if (state && strcmp(state, "P0002") == 0) {
        code = SL_ENOENT; /* raised by sluice_claim: the group is gone */
    } else if (state && strncmp(state, "28", 2) == 0) {
        code = SL_EUNAUTH;
    } else if (state && strncmp(state, "42501", 5) == 0) {
        code = SL_EDENIED;
    } else if (state && strncmp(state, "22", 2) == 0) {
        code = SL_EINVAL;
    }
    snprintf(err, errlen, "postgres: %s: %s", what, msg);
    return code;
}

int sli_pg_exec(pg_link *pc, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(pc->c, sql);
    if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK) {
        PQclear(r);
        return 0;
    }
    return sli_pg_fail(pc, r, err, errlen, sql);
}

int64_t sli_pg_get_i64(const PGresult *r, int row, int col)
{
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < len && i < 8; i++)
        v = v << 8 | p[i];
    if (len == 4)
        return (int32_t)(uint32_t)v;
    return (int64_t)v;
}
