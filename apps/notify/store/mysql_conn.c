/*
 * mysql_conn.c - the mysql:// store's connections (see mysql.c for the
 * design): connecting with our session settings, the pool (max_open_conns
 * open at most, callers past it wait; max_idle_conns kept idle), error
 * classification (lost connection, deadlock, lock timeout), prepared
 * statement caching per connection, binding helpers, and nf_my_run, which
 * makes one store operation one transaction and reruns it after a lost
 * connection (once, on a fresh connection) or a deadlock (up to 3 times).
 */
#include <errmsg.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../log.h"
#include "mysql_int.h"
#include "sluice/error.h"
#include "sluice/log.h"
#include "sluice/ctx.h"

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

static void nf_my_lib_init_once(void)
{
    lib_rc = mysql_library_init(0, NULL, NULL); /* not thread-safe: once per process */
}

/* Past max_lifetime: close instead of reusing. */
static bool expired(const my_store *s, const my_conn *c)
{
    return s->max_lifetime_ms > 0 && sl_ctx_now_ms() - c->born_ms >= s->max_lifetime_ms;
}

void nf_my_now(char out[24])
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%d %H:%M:%S", &tm);
}

/* ---- errors ---- */

static bool lost_errno(unsigned e)
{
    return e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST || e == CR_SERVER_LOST_EXTENDED ||
           e == ER_CONNECTION_KILLED || e == ER_SERVER_SHUTDOWN || e == CR_CONNECTION_ERROR ||
           e == CR_CONN_HOST_ERROR || e == CR_COMMANDS_OUT_OF_SYNC;
}

/* Classify error e of c; returns the SL_E* code for it. */
int nf_my_fail(my_conn *c, unsigned e, const char *what, const char *msg)
{
    c->lost = c->lost || lost_errno(e);
    c->deadlock = e == ER_LOCK_DEADLOCK;
    nf_log(c->lost || c->deadlock ? SL_LOG_WARN : SL_LOG_ERROR, "mysql store: %s: %u %s", what, e,
           msg ? msg : "");
    return e == ER_LOCK_WAIT_TIMEOUT || e == ER_LOCK_DEADLOCK ? SL_EBUSY : SL_EIO;
}

int nf_my_st_fail(my_conn *c, MYSQL_STMT *st)
{
    return nf_my_fail(c, mysql_stmt_errno(st), "statement", mysql_stmt_error(st));
}

/* ---- connections and the pool ---- */

void nf_my_conn_drop(my_store *s, my_conn *c)
{
    for (int i = 0; c->st && i < NF_MY_G_NGLOBAL + s->shards * NF_MY_Q_NSHARD; i++)
        if (c->st[i]) {
            mysql_stmt_close(c->st[i]);
            c->st[i] = NULL;
        }
    if (c->db)
        mysql_close(c->db);
    c->db = NULL;
}

void nf_my_conn_free(my_store *s, my_conn *c)
{
    if (!c)
        return;
    nf_my_conn_drop(s, c);
    free(c->st);
    free(c);
}

int nf_my_conn_connect(my_store *s, my_conn *c)
{
    c->lost = c->deadlock = false;
    c->db = mysql_init(NULL);
    if (!c->db)
        return SL_ENOMEM;
    my_bool off = 0;
    mysql_options(c->db, MYSQL_OPT_CONNECT_TIMEOUT, &s->connect_timeout);
    mysql_options(c->db, MYSQL_OPT_READ_TIMEOUT, &s->read_timeout);
    mysql_options(c->db, MYSQL_OPT_WRITE_TIMEOUT, &s->write_timeout);
    mysql_options(c->db, MYSQL_OPT_RECONNECT, &off); /* we reconnect and re-prepare ourselves */
    mysql_options(c->db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_options(c->db, MYSQL_INIT_COMMAND,
                  "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    char names[96];
    if (s->collation[0]) { /* checked to be utf8mb4_[A-Za-z0-9_]+ by the URL parser */
        snprintf(names, sizeof names, "SET NAMES utf8mb4 COLLATE %s", s->collation);
        mysql_options(c->db, MYSQL_INIT_COMMAND, names);
    }
    c->born_ms = sl_ctx_now_ms();
    if (!mysql_real_connect(c->db, s->host, s->user, s->pass, s->dbname, s->port, NULL, 0) ||
        mysql_autocommit(c->db, 0)) {
        nf_my_fail(c, mysql_errno(c->db), "connect", mysql_error(c->db));
        nf_my_conn_drop(s, c);
        return SL_EIO;
    }
    return 0;
}

int nf_my_pool_get(my_store *s, my_conn **out)
{
    pthread_mutex_lock(&s->mu);
    my_conn *c;
    for (;;) {
        while (!s->idle && s->nopen >= s->max_open)
            pthread_cond_wait(&s->cv, &s->mu);
        c = s->idle;
        if (!c || !expired(s, c))
            break;
        s->idle = c->next; /* too old: close it (outside the lock) and look again */
        s->nidle--;
        s->nopen--;
        pthread_mutex_unlock(&s->mu);
        nf_my_conn_free(s, c);
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
    if (c && (c->st = calloc((size_t)(NF_MY_G_NGLOBAL + s->shards * NF_MY_Q_NSHARD),
                             sizeof *c->st)) != NULL)
        rc = nf_my_conn_connect(s, c);
    if (rc) {
        nf_my_conn_free(s, c);
        pthread_mutex_lock(&s->mu);
        s->nopen--;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    *out = c;
    return 0;
}

/* Return c to the pool; a dead connection or one past max_idle is closed. */
void nf_my_pool_put(my_store *s, my_conn *c)
{
    pthread_mutex_lock(&s->mu);
    if (c->db && !c->lost && s->nidle < s->max_idle && !expired(s, c)) {
        c->next = s->idle;
        s->idle = c;
        s->nidle++;
        c = NULL;
    } else {
        s->nopen--;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    nf_my_conn_free(s, c);
}

/* ---- statements ---- */

/* The cached statement for slot (prepared on first use); NULL on error (*rc set). */
MYSQL_STMT *nf_my_stmt_at(my_conn *c, int slot, const char *sql, int *rc)
{
    MYSQL_STMT **p = &c->st[slot];
    if (*p)
        return *p;
    MYSQL_STMT *st = mysql_stmt_init(c->db);
    if (!st) {
        *rc = nf_my_fail(c, mysql_errno(c->db), "stmt_init", mysql_error(c->db));
        return NULL;
    }
    if (mysql_stmt_prepare(st, sql, strlen(sql))) {
        *rc = nf_my_fail(c, mysql_stmt_errno(st), "prepare", mysql_stmt_error(st));
        mysql_stmt_close(st);
        return NULL;
    }
    return *p = st;
}

void nf_my_b_i64(MYSQL_BIND *b, const int64_t *v)
{
    memset(b, 0, sizeof *b);
    b->buffer_type = MYSQL_TYPE_LONGLONG;
    b->buffer = (void *)(uintptr_t)v;
}

void nf_my_b_str(MYSQL_BIND *b, const char *v, unsigned long *len)
{
    memset(b, 0, sizeof *b);
    *len = (unsigned long)strlen(v);
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = (void *)(uintptr_t)v;
    b->buffer_length = *len;
    b->length = len;
}

/* An output string column into buf[size] (truncated, always terminated). */
void nf_my_o_str(MYSQL_BIND *b, char *buf, size_t size, unsigned long *len)
{
    memset(b, 0, sizeof *b);
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = buf;
    b->buffer_length = (unsigned long)size;
    b->length = len;
}

void nf_my_o_term(char *buf, size_t size, unsigned long len)
{
    buf[len < size ? len : size - 1] = '\0';
}

/* Bind in (may be NULL), execute; for a SELECT also bind out and buffer the result. */
int nf_my_st_run(my_conn *c, MYSQL_STMT *st, MYSQL_BIND *in, MYSQL_BIND *out)
{
    if ((in && mysql_stmt_bind_param(st, in)) || mysql_stmt_execute(st))
        return nf_my_st_fail(c, st);
    if (out && (mysql_stmt_bind_result(st, out) || mysql_stmt_store_result(st)))
        return nf_my_st_fail(c, st);
    return 0;
}

/* Fetch the next row: 1 row, 0 end, <0 error. */
int nf_my_st_fetch(my_conn *c, MYSQL_STMT *st)
{
    int f = mysql_stmt_fetch(st);
    if (f == 0 || f == MYSQL_DATA_TRUNCATED)
        return 1;
    if (f == MYSQL_NO_DATA)
        return 0;
    return nf_my_st_fail(c, st);
}

/* A whole text column of the current row as a malloc'd string. */
char *nf_my_fetch_text(MYSQL_STMT *st, unsigned col, unsigned long len)
{
    char *p = malloc(len + 1);
    if (!p)
        return NULL;
    if (len > 0) {
        MYSQL_BIND b;
        unsigned long got = 0;
        nf_my_o_str(&b, p, len + 1, &got);
        if (mysql_stmt_fetch_column(st, &b, col, 0)) {
            free(p);
            return NULL;
        }
    }
    p[len] = '\0';
    return p;
}

/* A single-row single-integer query (COUNT(*) ...): *v = 0 when no row. */
int nf_my_query_i64(my_conn *c, MYSQL_STMT *st, MYSQL_BIND *in, int64_t *v)
{
    MYSQL_BIND out;
    *v = 0;
    nf_my_b_i64(&out, v);
    int rc = nf_my_st_run(c, st, in, &out);
    if (!rc && (rc = nf_my_st_fetch(c, st)) > 0)
        rc = 0;
    mysql_stmt_free_result(st);
    return rc;
}

/* ---- running an operation: one transaction, rerun after a lost connection ---- */

int nf_my_run(my_store *s, nf_my_op_fn fn, void *arg)
{
    my_conn *c;
    int rc = nf_my_pool_get(s, &c);
    if (rc)
        return rc;
    bool reconnected = false;
    for (int deadlocks = 0;;) {
        c->lost = c->deadlock = false;
        rc = fn(s, c, arg);
        if (rc == 0 && mysql_commit(c->db))
            rc = nf_my_fail(c, mysql_errno(c->db), "commit", mysql_error(c->db));
        if (rc && !c->lost)
            mysql_rollback(c->db);
        if (rc && c->lost && !reconnected) {
            reconnected = true;
            nf_log(SL_LOG_WARN, "mysql store: connection lost, reconnecting to %s:%u", s->host,
                   s->port);
            nf_my_conn_drop(s, c);
            if ((rc = nf_my_conn_connect(s, c)) != 0)
                break;
            continue;
        }
        if (rc && c->deadlock && ++deadlocks <= 3)
            continue;
        break;
    }
    nf_my_pool_put(s, c);
    return rc;
}

int nf_my_lib_init(void)
{
    pthread_once(&lib_once, nf_my_lib_init_once);
    return lib_rc ? SL_EIO : 0;
}
