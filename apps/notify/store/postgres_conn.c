/*
 * postgres_conn.c - the postgres:// store's connections (see postgres.c for
 * the design): connecting within connect_timeout (non-blocking, so the
 * limit is in milliseconds, not libpq's whole seconds), the pool
 * (max_open_conns open at most, callers past it wait; max_idle_conns kept
 * idle; an idle connection the server closed meanwhile is noticed before
 * reuse), error classification (lost connection, deadlock or serialization
 * failure, lock or statement timeout), prepared statements per connection,
 * and nf_pq_run, which makes one store operation one transaction and reruns
 * it after a lost connection (once, on a fresh connection made with backoff
 * for up to reconnect_timeout while the server is away) or a deadlock (up
 * to 3 times).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../log.h"
#include "postgres_int.h"
#include "sluice/error.h"
#include "sluice/log.h"
#include "sluice/ctx.h"

enum { BACKOFF_MIN_MS = 50, BACKOFF_MAX_MS = 1000 };

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void nf_pq_now(char out[24])
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%d %H:%M:%S", &tm);
}

void nf_pq_arg_i64(pq_args *a, int64_t x)
{
    snprintf(a->buf[a->n], sizeof a->buf[a->n], "%lld", (long long)x);
    a->v[a->n] = a->buf[a->n];
    a->n++;
}

void nf_pq_arg_str(pq_args *a, const char *s)
{
    a->v[a->n++] = s;
}

int64_t nf_pq_changed(PGresult *r)
{
    return strtoll(PQcmdTuples(r), NULL, 10);
}

int64_t nf_pq_i64(PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* ---- errors ---- */

/* A message on one line (libpq's end with a newline, some span several). */
static void oneline(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
}

/* Classify the failure of c (r: its result, may be NULL); log it and
 * return the SL_E* code for it. */
static int pq_fail(pq_conn *c, PGresult *r, const char *what)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char msg[512];
    snprintf(msg, sizeof msg, "%s",
             r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(c->db));
    oneline(msg);
    /* 08: connection exception; 57P01..03: the server shuts down or starts */
    c->lost = c->lost || PQstatus(c->db) != CONNECTION_OK ||
              (st && (!strncmp(st, "08", 2) || !strncmp(st, "57P", 3)));
    /* 40P01 deadlock_detected, 40001 serialization_failure: the transaction
     * was rolled back and may simply be run again */
    c->retry = st && (!strcmp(st, "40P01") || !strcmp(st, "40001"));
    /* 55P03 lock_not_available, 57014 query_canceled (statement_timeout) */
    bool busy = c->retry || (st && (!strcmp(st, "55P03") || !strcmp(st, "57014")));
    nf_log(c->lost || c->retry ? SL_LOG_WARN : SL_LOG_ERROR, "postgres store: %s: %s%s%s", what,
           st ? st : "", st ? " " : "", msg);
    return busy ? SL_EBUSY : SL_EIO;
}

/* ---- statements ---- */

int nf_pq_simple(pq_conn *c, const char *sql)
{
    PGresult *r = PQexec(c->db, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : pq_fail(c, r, sql);
    PQclear(r);
    return rc;
}

int nf_pq_simple_i64(pq_conn *c, const char *sql, const char *param, int64_t *v)
{
    PGresult *r = PQexecParams(c->db, sql, 1, NULL, &param, NULL, NULL, 0);
    int rc = 0;
    *v = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = pq_fail(c, r, "query");
    else if (PQntuples(r) > 0)
        *v = nf_pq_i64(r, 0, 0);
    PQclear(r);
    return rc;
}

PGresult *nf_pq_exec(pq_store *s, pq_conn *c, int slot, const char *sql, const pq_args *a, int *rc)
{
    char name[16];
    snprintf(name, sizeof name, "s%d", slot);
    if (slot < 0 || slot >= s->nslots) {
        *rc = SL_EINVAL;
        return NULL;
    }
    PGresult *r;
    if (!c->prepared[slot]) { /* session-level: survives the transaction's end */
        r = PQprepare(c->db, name, sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            *rc = pq_fail(c, r, "prepare");
            PQclear(r);
            return NULL;
        }
        PQclear(r);
        c->prepared[slot] = true;
    }
    r = PQexecPrepared(c->db, name, a ? a->n : 0, a ? a->v : NULL, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        *rc = pq_fail(c, r, "statement");
        PQclear(r);
        return NULL;
    }
    return r;
}

/* ---- connections ---- */

/* The server's NOTICEs ("relation ... already exists, skipping"): libpq's
 * default would print them to stderr. */
static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void conn_drop(pq_conn *c)
{
    if (c->db)
        PQfinish(c->db);
    c->db = NULL;
}

static void conn_free(pq_conn *c)
{
    if (!c)
        return;
    conn_drop(c);
    free(c->prepared);
    free(c);
}

/* Connect c within connect_timeout; logs why not (quietly: as a warning,
 * once the store is open and the caller retries). */
static int conn_connect(pq_store *s, pq_conn *c, int64_t limit_ms)
{
    const char *keys[] = {"host",
                          "port",
                          "user",
                          "password",
                          "dbname",
                          "sslmode",
                          "application_name",
                          "client_encoding",
                          "options",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          NULL};
    const char *vals[] = {s->host,
                          s->port,
                          s->user,
                          s->pass[0] ? s->pass : NULL,
                          s->dbname,
                          s->sslmode,
                          "sluice-notify",
                          "UTF8",
                          s->options,
                          "10",
                          "5",
                          "3",
                          NULL};
    c->lost = c->retry = false;
    memset(c->prepared, 0, (size_t)s->nslots * sizeof *c->prepared);
    c->db = PQconnectStartParams(keys, vals, 0);
    if (!c->db)
        return SL_ENOMEM;
    int64_t deadline = sl_ctx_now_ms() + limit_ms;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(c->db) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
           st != PGRES_POLLING_FAILED) {
        int64_t left = deadline - sl_ctx_now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = PQsocket(c->db),
                           .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        int n = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (n > 0 || (n < 0 && errno == EINTR))
            st = PQconnectPoll(c->db);
    }
    if (PQstatus(c->db) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s",
                 st == PGRES_POLLING_FAILED || PQstatus(c->db) == CONNECTION_BAD
                     ? PQerrorMessage(c->db)
                     : "no answer in time");
        oneline(msg);
        nf_log(s->opened ? SL_LOG_WARN : SL_LOG_ERROR,
               "postgres store: cannot connect to %s:%s/%s within %lldms: %s", s->host, s->port,
               s->dbname, (long long)limit_ms, msg);
        conn_drop(c);
        return SL_EIO;
    }
    PQsetNoticeProcessor(c->db, quiet, NULL);
    c->born_ms = sl_ctx_now_ms();
    pthread_mutex_lock(&s->mu);
    c->epoch = s->epoch;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Connect c; once the store is open, keep trying with backoff (50 ms
 * doubling to 1 s) for up to reconnect_timeout: a restarting server is
 * waited for, not reported at the first refused connect. */
static int conn_connect_backoff(pq_store *s, pq_conn *c)
{
    if (!s->opened)
        return conn_connect(s, c, s->connect_timeout_ms);
    int64_t deadline = sl_ctx_now_ms() + s->reconnect_timeout_ms, backoff = BACKOFF_MIN_MS;
    for (int tries = 1;; tries++) {
        int64_t left = deadline - sl_ctx_now_ms();
        int rc = conn_connect(
            s, c, left < s->connect_timeout_ms && left > 0 ? left : s->connect_timeout_ms);
        if (rc != SL_EIO)
            return rc;
        left = deadline - sl_ctx_now_ms();
        if (left <= 0) {
            nf_log(SL_LOG_ERROR, "postgres store: %s:%s/%s unreachable after %d tries in %lldms",
                   s->host, s->port, s->dbname, tries, (long long)s->reconnect_timeout_ms);
            return rc;
        }
        sleep_ms(backoff < left ? backoff : left);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
}

/* ---- the pool ---- */

/* Past max_lifetime, from before the last lost connection, or closed by the
 * server while idle (a shutdown sends its reason and closes the socket: the
 * other idle connections are then dropped unchecked). Called with s->mu. */
static bool stale(pq_store *s, pq_conn *c)
{
    if (c->epoch != s->epoch ||
        (s->max_lifetime_ms > 0 && sl_ctx_now_ms() - c->born_ms >= s->max_lifetime_ms))
        return true;
    struct pollfd p = {.fd = PQsocket(c->db), .events = POLLIN};
    if (p.fd >= 0 &&
        !(poll(&p, 1, 0) > 0 && (!PQconsumeInput(c->db) || PQstatus(c->db) != CONNECTION_OK)))
        return false;
    s->epoch++;
    nf_log(SL_LOG_WARN, "postgres store: connection lost while idle, reconnecting to %s:%s",
           s->host, s->port);
    return true;
}

static int pool_get(pq_store *s, pq_conn **out)
{
    pthread_mutex_lock(&s->mu);
    pq_conn *c;
    for (;;) {
        while (!s->idle && s->nopen >= s->max_open)
            pthread_cond_wait(&s->cv, &s->mu);
        c = s->idle;
        if (!c || !stale(s, c))
            break;
        s->idle = c->next; /* stale: close it (outside the lock) and look again */
        s->nidle--;
        s->nopen--;
        pthread_mutex_unlock(&s->mu);
        conn_free(c);
        pthread_mutex_lock(&s->mu);
    }
    if (c) {
        s->idle = c->next;
        s->nidle--;
        pthread_mutex_unlock(&s->mu);
        c->next = NULL;
        *out = c;
        return 0;
    }
    s->nopen++;
    pthread_mutex_unlock(&s->mu);
    int rc = SL_ENOMEM;
    c = calloc(1, sizeof *c);
    if (c && (c->prepared = calloc((size_t)s->nslots, sizeof *c->prepared)) != NULL)
        rc = conn_connect_backoff(s, c);
    if (rc) {
        conn_free(c);
        pthread_mutex_lock(&s->mu);
        s->nopen--;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    *out = c;
    return 0;
}

/* Return c to the pool; a dead, stale or surplus connection is closed. */
static void pool_put(pq_store *s, pq_conn *c)
{
    pthread_mutex_lock(&s->mu);
    if (c->db && !c->lost && PQstatus(c->db) == CONNECTION_OK && s->nidle < s->max_idle &&
        c->epoch == s->epoch &&
        !(s->max_lifetime_ms > 0 && sl_ctx_now_ms() - c->born_ms >= s->max_lifetime_ms)) {
        c->next = s->idle;
        s->idle = c;
        s->nidle++;
        c = NULL;
    } else {
        s->nopen--;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    conn_free(c);
}

void nf_pq_close_all(pq_store *s)
{
    while (s->idle) {
        pq_conn *c = s->idle;
        s->idle = c->next;
        conn_free(c);
    }
    s->nidle = 0;
}

/* ---- running an operation: one transaction, rerun after a lost connection ---- */

int nf_pq_run(pq_store *s, nf_pq_op_fn fn, void *arg)
{
    pq_conn *c;
    int rc = pool_get(s, &c);
    if (rc)
        return rc;
    bool reconnected = false;
    for (int retries = 0;;) {
        c->lost = c->retry = false;
        rc = nf_pq_simple(c, "BEGIN");
        if (!rc)
            rc = fn(s, c, arg);
        if (!rc)
            rc = nf_pq_simple(c, "COMMIT");
        if (rc && !c->lost)
            PQclear(PQexec(c->db, "ROLLBACK")); /* a failure here shows at the next use */
        if (rc && c->lost && !reconnected) {
            reconnected = true;
            pthread_mutex_lock(&s->mu);
            if (c->epoch == s->epoch)
                s->epoch++; /* the idle connections of before are likely dead too */
            pthread_mutex_unlock(&s->mu);
            nf_log(SL_LOG_WARN, "postgres store: connection lost, reconnecting to %s:%s", s->host,
                   s->port);
            conn_drop(c);
            if ((rc = conn_connect_backoff(s, c)) != 0)
                break;
            continue;
        }
        if (rc && c->retry && ++retries <= 3)
            continue;
        break;
    }
    pool_put(s, c);
    return rc;
}
