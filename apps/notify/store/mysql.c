/*
 * mysql.c - the notification store on MySQL/MariaDB through MariaDB
 * Connector/C (libmariadb):
 *
 *   mysql://USER:PASSWORD@HOST[:PORT]/DB[?max_open_conns=N&max_idle_conns=N
 *            &connect_timeout=5s&read_timeout=30s&write_timeout=30s]
 *
 * Same tables and semantics as the SQLite store (sqlite.c): th_notice_1..N
 * with order_sn UNIQUE (storing is idempotent), user (created on the first
 * notice, notification_count never below 0), failed_queues.
 *
 * Connections: a pool sized like the seed's xorm settings (database/sql
 * semantics): at most max_open_conns open (0: unlimited), at most
 * max_idle_conns kept idle; callers past the limit wait for a free one.
 * Each connection caches its prepared statements (nothing but the shard
 * number of a table name is ever formatted into SQL; every value is bound).
 * Connections run with autocommit off and READ COMMITTED; every store
 * operation is one transaction ended by commit (rollback on error).
 *
 * Failures: an operation whose connection was lost (server restarted:
 * CR_SERVER_GONE_ERROR, CR_SERVER_LOST, ...) is run once more on a fresh
 * connection; one that hit a deadlock is rerun up to 3 times. Every
 * operation is safe to rerun: a commit lost in flight makes the rerun find
 * the notice already stored (no second count) or already read.
 */
#include <errmsg.h>
#include <limits.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../log.h"
#include "core/url.h"
#include "sluice/error.h"
#include "sluice/log.h"
#include "store.h"

enum { Q_INSERT, Q_MARK, Q_UNREAD, Q_LIST, Q_NSHARD };
enum { G_USER_INC, G_USER_DEC, G_USER_GET, G_F_BUMP, G_F_GET, G_F_CLEAR, G_F_LIST, G_F_RESET,
       G_F_EXISTS, G_PING, G_NGLOBAL };

#define TS(col) "DATE_FORMAT(" col ",'%%Y-%%m-%%d %%H:%%i:%%s')"

static const char *const shard_sql[Q_NSHARD] = {
    [Q_INSERT] = "INSERT INTO th_notice_%d(order_sn,uid,type,data,status,create_time,created_at,"
                 "updated_at) VALUES(?,?,?,?,0,?,?,?) ON DUPLICATE KEY UPDATE id=id",
    [Q_MARK] = "UPDATE th_notice_%d SET status=1, updated_at=? WHERE uid=? AND status=0 AND "
               "(?=0 OR type=?) AND (?=0 OR id=?)",
    [Q_UNREAD] = "SELECT COUNT(*) FROM th_notice_%d WHERE uid=? AND status=0 AND (?=0 OR type=?)",
    [Q_LIST] = "SELECT id,order_sn,uid,type,data,status," TS("create_time") "," TS("created_at")
               "," TS("updated_at") " FROM th_notice_%d WHERE uid=? AND (?=0 OR type=?) AND "
               "(?=0 OR id<?) ORDER BY id DESC LIMIT ? OFFSET ?",
};

static const char *const global_sql[G_NGLOBAL] = {
    [G_USER_INC] = "INSERT INTO `user`(uid,nick,notification_count,created_at,updated_at) "
                   "VALUES(?,CONCAT('user',?),1,?,?) ON DUPLICATE KEY UPDATE "
                   "notification_count=notification_count+1, updated_at=VALUES(updated_at)",
    [G_USER_DEC] = "UPDATE `user` SET notification_count=GREATEST(notification_count-?,0), "
                   "updated_at=? WHERE uid=?",
    [G_USER_GET] = "SELECT nick, notification_count FROM `user` WHERE uid=?",
    [G_F_BUMP] = "INSERT INTO failed_queues(order_sn,data,type,failed_count,created_at,updated_at) "
                 "VALUES(?,?,?,1,?,?) ON DUPLICATE KEY UPDATE failed_count=failed_count+1, "
                 "updated_at=VALUES(updated_at)",
    [G_F_GET] = "SELECT failed_count FROM failed_queues WHERE order_sn=?",
    [G_F_CLEAR] = "DELETE FROM failed_queues WHERE order_sn=?",
    [G_F_LIST] = "SELECT id,order_sn,type,data,failed_count,DATE_FORMAT(created_at,"
                 "'%Y-%m-%d %H:%i:%s'),DATE_FORMAT(updated_at,'%Y-%m-%d %H:%i:%s') FROM "
                 "failed_queues WHERE failed_count>=? ORDER BY id",
    [G_F_RESET] = "UPDATE failed_queues SET failed_count=0, updated_at=? WHERE id=?",
    [G_F_EXISTS] = "SELECT COUNT(*) FROM failed_queues WHERE id=?",
    [G_PING] = "SELECT 1",
};

static const char *const schema_sql[] = {
    "CREATE TABLE IF NOT EXISTS `user`(uid BIGINT NOT NULL PRIMARY KEY, "
    "nick VARCHAR(64) NOT NULL DEFAULT '', notification_count BIGINT NOT NULL DEFAULT 0 "
    "CHECK(notification_count >= 0), created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL) "
    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS failed_queues(id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "order_sn VARCHAR(128) NOT NULL, data MEDIUMTEXT NOT NULL, type VARCHAR(16) NOT NULL, "
    "failed_count INT NOT NULL DEFAULT 0, created_at DATETIME NOT NULL, updated_at DATETIME NOT "
    "NULL, UNIQUE KEY uk_order_sn(order_sn)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
};

static const char shard_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS th_notice_%d(id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "order_sn VARCHAR(128) NOT NULL, uid BIGINT NOT NULL, type INT NOT NULL, data TEXT NOT NULL, "
    "status TINYINT NOT NULL DEFAULT 0, create_time DATETIME NOT NULL, created_at DATETIME NOT "
    "NULL, updated_at DATETIME NOT NULL, UNIQUE KEY uk_order_sn(order_sn), KEY idx_uid_id(uid,id), "
    "KEY idx_unread(uid,status,type)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

typedef struct my_conn {
    struct my_conn *next; /* idle list */
    MYSQL *db;
    MYSQL_STMT **st; /* [G_NGLOBAL + shards * Q_NSHARD], prepared on first use */
    bool lost;       /* the last error was a lost connection */
    bool deadlock;   /* the last error was a deadlock (transaction rolled back) */
} my_conn;

typedef struct my_store {
    nf_store base;
    char *host, *user, *pass, *dbname;
    unsigned port, connect_timeout, read_timeout, write_timeout; /* seconds */
    int shards, max_open, max_idle;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    my_conn *idle;
    int nidle, nopen;
} my_store;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

static void lib_init(void)
{
    lib_rc = mysql_library_init(0, NULL, NULL); /* not thread-safe: once per process */
}

static void now_text(char out[24])
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
static int fail(my_conn *c, unsigned e, const char *what, const char *msg)
{
    c->lost = c->lost || lost_errno(e);
    c->deadlock = e == ER_LOCK_DEADLOCK;
    nf_log(c->lost || c->deadlock ? SL_LOG_WARN : SL_LOG_ERROR, "mysql store: %s: %u %s", what, e,
           msg ? msg : "");
    return e == ER_LOCK_WAIT_TIMEOUT || e == ER_LOCK_DEADLOCK ? SL_EBUSY : SL_EIO;
}

static int st_fail(my_conn *c, MYSQL_STMT *st)
{
    return fail(c, mysql_stmt_errno(st), "statement", mysql_stmt_error(st));
}

/* ---- connections and the pool ---- */

static void conn_drop(my_store *s, my_conn *c)
{
    for (int i = 0; c->st && i < G_NGLOBAL + s->shards * Q_NSHARD; i++)
        if (c->st[i]) {
            mysql_stmt_close(c->st[i]);
            c->st[i] = NULL;
        }
    if (c->db)
        mysql_close(c->db);
    c->db = NULL;
}

static void conn_free(my_store *s, my_conn *c)
{
    if (!c)
        return;
    conn_drop(s, c);
    free(c->st);
    free(c);
}

static int conn_connect(my_store *s, my_conn *c)
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
    mysql_options(c->db, MYSQL_INIT_COMMAND, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    if (!mysql_real_connect(c->db, s->host, s->user, s->pass, s->dbname, s->port, NULL, 0) ||
        mysql_autocommit(c->db, 0)) {
        fail(c, mysql_errno(c->db), "connect", mysql_error(c->db));
        conn_drop(s, c);
        return SL_EIO;
    }
    return 0;
}

static int pool_get(my_store *s, my_conn **out)
{
    pthread_mutex_lock(&s->mu);
    while (!s->idle && s->nopen >= s->max_open)
        pthread_cond_wait(&s->cv, &s->mu);
    my_conn *c = s->idle;
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
    if (c && (c->st = calloc((size_t)(G_NGLOBAL + s->shards * Q_NSHARD), sizeof *c->st)) != NULL)
        rc = conn_connect(s, c);
    if (rc) {
        conn_free(s, c);
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
static void pool_put(my_store *s, my_conn *c)
{
    pthread_mutex_lock(&s->mu);
    if (c->db && !c->lost && s->nidle < s->max_idle) {
        c->next = s->idle;
        s->idle = c;
        s->nidle++;
        c = NULL;
    } else {
        s->nopen--;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    conn_free(s, c);
}

/* ---- statements ---- */

/* The cached statement for slot (prepared on first use); NULL on error (*rc set). */
static MYSQL_STMT *stmt_at(my_conn *c, int slot, const char *sql, int *rc)
{
    MYSQL_STMT **p = &c->st[slot];
    if (*p)
        return *p;
    MYSQL_STMT *st = mysql_stmt_init(c->db);
    if (!st) {
        *rc = fail(c, mysql_errno(c->db), "stmt_init", mysql_error(c->db));
        return NULL;
    }
    if (mysql_stmt_prepare(st, sql, strlen(sql))) {
        *rc = fail(c, mysql_stmt_errno(st), "prepare", mysql_stmt_error(st));
        mysql_stmt_close(st);
        return NULL;
    }
    return *p = st;
}

static MYSQL_STMT *global_stmt(my_store *s, my_conn *c, int q, int *rc)
{
    (void)s;
    return stmt_at(c, q, global_sql[q], rc);
}

static MYSQL_STMT *shard_stmt(my_store *s, my_conn *c, int64_t uid, int q, int *rc)
{
    int shard = (int)(uid % s->shards); /* uid >= 0 */
    char sql[1024];
    snprintf(sql, sizeof sql, shard_sql[q], shard + 1);
    return stmt_at(c, G_NGLOBAL + shard * Q_NSHARD + q, sql, rc);
}

static void b_i64(MYSQL_BIND *b, const int64_t *v)
{
    memset(b, 0, sizeof *b);
    b->buffer_type = MYSQL_TYPE_LONGLONG;
    b->buffer = (void *)(uintptr_t)v;
}

static void b_str(MYSQL_BIND *b, const char *v, unsigned long *len)
{
    memset(b, 0, sizeof *b);
    *len = (unsigned long)strlen(v);
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = (void *)(uintptr_t)v;
    b->buffer_length = *len;
    b->length = len;
}

/* An output string column into buf[size] (truncated, always terminated). */
static void o_str(MYSQL_BIND *b, char *buf, size_t size, unsigned long *len)
{
    memset(b, 0, sizeof *b);
    b->buffer_type = MYSQL_TYPE_STRING;
    b->buffer = buf;
    b->buffer_length = (unsigned long)size;
    b->length = len;
}

static void o_term(char *buf, size_t size, unsigned long len)
{
    buf[len < size ? len : size - 1] = '\0';
}

/* Bind in (may be NULL), execute; for a SELECT also bind out and buffer the result. */
static int st_run(my_conn *c, MYSQL_STMT *st, MYSQL_BIND *in, MYSQL_BIND *out)
{
    if ((in && mysql_stmt_bind_param(st, in)) || mysql_stmt_execute(st))
        return st_fail(c, st);
    if (out && (mysql_stmt_bind_result(st, out) || mysql_stmt_store_result(st)))
        return st_fail(c, st);
    return 0;
}

/* Fetch the next row: 1 row, 0 end, <0 error. */
static int st_fetch(my_conn *c, MYSQL_STMT *st)
{
    int f = mysql_stmt_fetch(st);
    if (f == 0 || f == MYSQL_DATA_TRUNCATED)
        return 1;
    if (f == MYSQL_NO_DATA)
        return 0;
    return st_fail(c, st);
}

/* A whole text column of the current row as a malloc'd string. */
static char *fetch_text(MYSQL_STMT *st, unsigned col, unsigned long len)
{
    char *p = malloc(len + 1);
    if (!p)
        return NULL;
    if (len > 0) {
        MYSQL_BIND b;
        unsigned long got = 0;
        o_str(&b, p, len + 1, &got);
        if (mysql_stmt_fetch_column(st, &b, col, 0)) {
            free(p);
            return NULL;
        }
    }
    p[len] = '\0';
    return p;
}

/* A single-row single-integer query (COUNT(*) ...): *v = 0 when no row. */
static int query_i64(my_conn *c, MYSQL_STMT *st, MYSQL_BIND *in, int64_t *v)
{
    MYSQL_BIND out;
    *v = 0;
    b_i64(&out, v);
    int rc = st_run(c, st, in, &out);
    if (!rc && (rc = st_fetch(c, st)) > 0)
        rc = 0;
    mysql_stmt_free_result(st);
    return rc;
}

/* ---- running an operation: one transaction, rerun after a lost connection ---- */

typedef int (*op_fn)(my_store *s, my_conn *c, void *arg);

static int run(my_store *s, op_fn fn, void *arg)
{
    my_conn *c;
    int rc = pool_get(s, &c);
    if (rc)
        return rc;
    bool reconnected = false;
    for (int deadlocks = 0;;) {
        c->lost = c->deadlock = false;
        rc = fn(s, c, arg);
        if (rc == 0 && mysql_commit(c->db))
            rc = fail(c, mysql_errno(c->db), "commit", mysql_error(c->db));
        if (rc && !c->lost)
            mysql_rollback(c->db);
        if (rc && c->lost && !reconnected) {
            reconnected = true;
            nf_log(SL_LOG_WARN, "mysql store: connection lost, reconnecting to %s:%u", s->host,
                   s->port);
            conn_drop(s, c);
            if ((rc = conn_connect(s, c)) != 0)
                break;
            continue;
        }
        if (rc && c->deadlock && ++deadlocks <= 3)
            continue;
        break;
    }
    pool_put(s, c);
    return rc;
}

/* ---- operations ---- */

typedef struct add_arg {
    const nf_notice *n;
    bool added;
} add_arg;

static int op_notice_add(my_store *s, my_conn *c, void *p)
{
    add_arg *a = p;
    const nf_notice *n = a->n;
    char now[24];
    now_text(now);
    int64_t uid = n->uid, type = n->type;
    unsigned long l_sn, l_data, l_ct, l_now;
    int rc = 0;
    a->added = false;
    MYSQL_STMT *st = shard_stmt(s, c, uid, Q_INSERT, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[7];
    b_str(&in[0], n->order_sn, &l_sn);
    b_i64(&in[1], &uid);
    b_i64(&in[2], &type);
    b_str(&in[3], n->data ? n->data : "", &l_data);
    b_str(&in[4], n->create_time[0] ? n->create_time : now, &l_ct);
    b_str(&in[5], now, &l_now);
    in[6] = in[5];
    if ((rc = st_run(c, st, in, NULL)) != 0)
        return rc;
    if (mysql_stmt_affected_rows(st) != 1)
        return 0; /* already stored */
    if (!(st = global_stmt(s, c, G_USER_INC, &rc)))
        return rc;
    b_i64(&in[0], &uid);
    in[1] = in[0];
    b_str(&in[2], now, &l_now);
    in[3] = in[2];
    if ((rc = st_run(c, st, in, NULL)) == 0)
        a->added = true;
    return rc;
}

static int my_notice_add(nf_store *base, const nf_notice *n, bool *inserted)
{
    if (n->uid < 0)
        return SL_EINVAL;
    add_arg a = {.n = n};
    int rc = run((my_store *)base, op_notice_add, &a);
    if (inserted)
        *inserted = !rc && a.added;
    return rc;
}

typedef struct mark_arg {
    int64_t uid, type, id, changed;
} mark_arg;

static int op_mark_read(my_store *s, my_conn *c, void *p)
{
    mark_arg *a = p;
    char now[24];
    now_text(now);
    unsigned long l_now;
    int rc = 0;
    a->changed = 0;
    MYSQL_STMT *st = shard_stmt(s, c, a->uid, Q_MARK, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[6];
    b_str(&in[0], now, &l_now);
    b_i64(&in[1], &a->uid);
    b_i64(&in[2], &a->type);
    in[3] = in[2];
    b_i64(&in[4], &a->id);
    in[5] = in[4];
    if ((rc = st_run(c, st, in, NULL)) != 0)
        return rc;
    int64_t n = (int64_t)mysql_stmt_affected_rows(st);
    if (n <= 0)
        return 0;
    if (!(st = global_stmt(s, c, G_USER_DEC, &rc)))
        return rc;
    b_i64(&in[0], &n);
    b_str(&in[1], now, &l_now);
    b_i64(&in[2], &a->uid);
    if ((rc = st_run(c, st, in, NULL)) == 0)
        a->changed = n;
    return rc;
}

static int my_mark_read(nf_store *base, int64_t uid, int type, int64_t id, int64_t *changed)
{
    if (uid < 0)
        return SL_EINVAL;
    mark_arg a = {.uid = uid, .type = id > 0 ? 0 : type, .id = id > 0 ? id : 0};
    int rc = run((my_store *)base, op_mark_read, &a);
    if (changed)
        *changed = rc ? 0 : a.changed;
    return rc;
}

typedef struct list_arg {
    const nf_list_query *q;
    nf_notice *v;
    size_t n;
    int64_t unread;
    bool want_unread;
} list_arg;

enum { L_ID, L_SN, L_UID, L_TYPE, L_DATA, L_STATUS, L_CT, L_CA, L_UA, L_NCOL };

static int read_notices(my_conn *c, MYSQL_STMT *st, MYSQL_BIND *in, list_arg *a)
{
    nf_notice row;
    int64_t type = 0, status = 0;
    unsigned long len[L_NCOL] = {0};
    MYSQL_BIND out[L_NCOL];
    memset(&row, 0, sizeof row);
    b_i64(&out[L_ID], &row.id);
    o_str(&out[L_SN], row.order_sn, sizeof row.order_sn, &len[L_SN]);
    b_i64(&out[L_UID], &row.uid);
    b_i64(&out[L_TYPE], &type);
    o_str(&out[L_DATA], NULL, 0, &len[L_DATA]);
    b_i64(&out[L_STATUS], &status);
    o_str(&out[L_CT], row.create_time, sizeof row.create_time, &len[L_CT]);
    o_str(&out[L_CA], row.created_at, sizeof row.created_at, &len[L_CA]);
    o_str(&out[L_UA], row.updated_at, sizeof row.updated_at, &len[L_UA]);
    int rc = st_run(c, st, in, out);
    size_t cap = (size_t)a->q->size;
    a->v = rc ? NULL : calloc(cap, sizeof *a->v);
    if (!rc && !a->v)
        rc = SL_ENOMEM;
    while (!rc && a->n < cap && (rc = st_fetch(c, st)) > 0) {
        rc = 0;
        o_term(row.order_sn, sizeof row.order_sn, len[L_SN]);
        o_term(row.create_time, sizeof row.create_time, len[L_CT]);
        o_term(row.created_at, sizeof row.created_at, len[L_CA]);
        o_term(row.updated_at, sizeof row.updated_at, len[L_UA]);
        row.type = (int)type;
        row.status = (int)status;
        row.data = fetch_text(st, L_DATA, len[L_DATA]);
        if (!row.data)
            rc = SL_ENOMEM;
        else
            a->v[a->n++] = row;
        row.data = NULL;
    }
    mysql_stmt_free_result(st);
    return rc;
}

static int op_list(my_store *s, my_conn *c, void *p)
{
    list_arg *a = p;
    const nf_list_query *q = a->q;
    nf_notices_free(a->v, a->n); /* a rerun starts over */
    a->v = NULL;
    a->n = 0;
    int64_t uid = q->uid, type = q->type, cursor = q->cursor > 0 ? q->cursor : 0, size = q->size;
    int64_t offset = q->cursor > 0 ? 0 : (int64_t)(q->page > 1 ? q->page - 1 : 0) * q->size;
    int rc = 0;
    MYSQL_STMT *st = shard_stmt(s, c, uid, Q_LIST, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[7];
    b_i64(&in[0], &uid);
    b_i64(&in[1], &type);
    in[2] = in[1];
    b_i64(&in[3], &cursor);
    in[4] = in[3];
    b_i64(&in[5], &size);
    b_i64(&in[6], &offset);
    if ((rc = read_notices(c, st, in, a)) != 0 || !a->want_unread)
        return rc;
    if (!(st = shard_stmt(s, c, uid, Q_UNREAD, &rc)))
        return rc;
    b_i64(&in[0], &uid);
    b_i64(&in[1], &type);
    in[2] = in[1];
    return query_i64(c, st, in, &a->unread);
}

static int my_list(nf_store *base, const nf_list_query *q, nf_notice **out, size_t *n, int64_t *unread)
{
    if (q->uid < 0 || q->size < 1)
        return SL_EINVAL;
    list_arg a = {.q = q, .want_unread = unread != NULL};
    int rc = run((my_store *)base, op_list, &a);
    if (rc) {
        nf_notices_free(a.v, a.n);
        return rc;
    }
    *out = a.v;
    *n = a.n;
    if (unread)
        *unread = a.unread;
    return 0;
}

typedef struct user_arg {
    int64_t uid, count;
    char nick[128];
} user_arg;

static int op_user_get(my_store *s, my_conn *c, void *p)
{
    user_arg *a = p;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_USER_GET, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[1], out[2];
    unsigned long nlen = 0;
    b_i64(&in[0], &a->uid);
    o_str(&out[0], a->nick, sizeof a->nick, &nlen);
    b_i64(&out[1], &a->count);
    rc = st_run(c, st, in, out);
    if (!rc) {
        rc = st_fetch(c, st);
        rc = rc > 0 ? 0 : rc == 0 ? SL_ENOENT : rc;
        o_term(a->nick, sizeof a->nick, nlen);
    }
    mysql_stmt_free_result(st);
    return rc;
}

static int my_user_get(nf_store *base, int64_t uid, char *nick, size_t nlen, int64_t *count)
{
    user_arg a = {.uid = uid};
    int rc = run((my_store *)base, op_user_get, &a);
    if (!rc && nick)
        snprintf(nick, nlen, "%s", a.nick);
    if (!rc && count)
        *count = a.count;
    return rc;
}

typedef struct failed_arg {
    const char *order_sn, *type, *data;
    int64_t id, count, min_count;
    nf_failed *v;
    size_t n;
} failed_arg;

static int op_failed_get(my_store *s, my_conn *c, void *p)
{
    failed_arg *a = p;
    int rc = 0;
    unsigned long l_sn;
    MYSQL_STMT *st = global_stmt(s, c, G_F_GET, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[1];
    b_str(&in[0], a->order_sn, &l_sn);
    return query_i64(c, st, in, &a->count);
}

static int op_failed_bump(my_store *s, my_conn *c, void *p)
{
    failed_arg *a = p;
    char now[24];
    now_text(now);
    unsigned long l_sn, l_data, l_type, l_now;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_F_BUMP, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[5];
    b_str(&in[0], a->order_sn, &l_sn);
    b_str(&in[1], a->data ? a->data : "", &l_data);
    b_str(&in[2], a->type, &l_type);
    b_str(&in[3], now, &l_now);
    in[4] = in[3];
    if ((rc = st_run(c, st, in, NULL)) != 0)
        return rc;
    return op_failed_get(s, c, p);
}

static int my_failed_bump(nf_store *base, const char *order_sn, const char *type, const char *data,
                          int *count)
{
    failed_arg a = {.order_sn = order_sn, .type = type, .data = data};
    int rc = run((my_store *)base, op_failed_bump, &a);
    if (!rc && count)
        *count = (int)a.count;
    return rc;
}

static int op_failed_clear(my_store *s, my_conn *c, void *p)
{
    failed_arg *a = p;
    int rc = 0;
    unsigned long l_sn;
    MYSQL_STMT *st = global_stmt(s, c, G_F_CLEAR, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[1];
    b_str(&in[0], a->order_sn, &l_sn);
    return st_run(c, st, in, NULL);
}

static int my_failed_clear(nf_store *base, const char *order_sn)
{
    failed_arg a = {.order_sn = order_sn};
    return run((my_store *)base, op_failed_clear, &a);
}

static int my_failed_count(nf_store *base, const char *order_sn, int *count)
{
    failed_arg a = {.order_sn = order_sn};
    *count = 0;
    int rc = run((my_store *)base, op_failed_get, &a);
    if (!rc)
        *count = (int)a.count;
    return rc;
}

enum { F_ID, F_SN, F_TYPE, F_DATA, F_COUNT, F_CA, F_UA, F_NCOL };

static int op_failed_list(my_store *s, my_conn *c, void *p)
{
    failed_arg *a = p;
    nf_failed_free(a->v, a->n); /* a rerun starts over */
    a->v = NULL;
    a->n = 0;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_F_LIST, &rc);
    if (!st)
        return rc;
    nf_failed row;
    int64_t count = 0;
    unsigned long len[F_NCOL] = {0};
    MYSQL_BIND in[1], out[F_NCOL];
    memset(&row, 0, sizeof row);
    b_i64(&in[0], &a->min_count);
    b_i64(&out[F_ID], &row.id);
    o_str(&out[F_SN], row.order_sn, sizeof row.order_sn, &len[F_SN]);
    o_str(&out[F_TYPE], row.type, sizeof row.type, &len[F_TYPE]);
    o_str(&out[F_DATA], NULL, 0, &len[F_DATA]);
    b_i64(&out[F_COUNT], &count);
    o_str(&out[F_CA], row.created_at, sizeof row.created_at, &len[F_CA]);
    o_str(&out[F_UA], row.updated_at, sizeof row.updated_at, &len[F_UA]);
    rc = st_run(c, st, in, out);
    size_t cap = 0;
    while (!rc && (rc = st_fetch(c, st)) > 0) {
        rc = 0;
        if (a->n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            nf_failed *nv = realloc(a->v, ncap * sizeof *nv);
            if (!nv) {
                rc = SL_ENOMEM;
                break;
            }
            a->v = nv;
            cap = ncap;
        }
        o_term(row.order_sn, sizeof row.order_sn, len[F_SN]);
        o_term(row.type, sizeof row.type, len[F_TYPE]);
        o_term(row.created_at, sizeof row.created_at, len[F_CA]);
        o_term(row.updated_at, sizeof row.updated_at, len[F_UA]);
        row.failed_count = (int)count;
        row.data = fetch_text(st, F_DATA, len[F_DATA]);
        if (!row.data) {
            rc = SL_ENOMEM;
            break;
        }
        a->v[a->n++] = row;
        row.data = NULL;
    }
    mysql_stmt_free_result(st);
    return rc;
}

static int my_failed_list(nf_store *base, int min_count, nf_failed **out, size_t *n)
{
    failed_arg a = {.min_count = min_count};
    int rc = run((my_store *)base, op_failed_list, &a);
    if (rc) {
        nf_failed_free(a.v, a.n);
        return rc;
    }
    if (!a.v && !(a.v = calloc(1, sizeof *a.v)))
        return SL_ENOMEM;
    *out = a.v;
    *n = a.n;
    return 0;
}

static int op_failed_reset(my_store *s, my_conn *c, void *p)
{
    failed_arg *a = p;
    char now[24];
    now_text(now);
    unsigned long l_now;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_F_RESET, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[2];
    b_str(&in[0], now, &l_now);
    b_i64(&in[1], &a->id);
    if ((rc = st_run(c, st, in, NULL)) != 0)
        return rc;
    if (mysql_stmt_affected_rows(st) > 0)
        return 0;
    /* 0 changed rows may still be a match (already 0 in the same second). */
    if (!(st = global_stmt(s, c, G_F_EXISTS, &rc)))
        return rc;
    int64_t found = 0;
    if ((rc = query_i64(c, st, &in[1], &found)) != 0)
        return rc;
    return found ? 0 : SL_ENOENT;
}

static int my_failed_reset(nf_store *base, int64_t id)
{
    failed_arg a = {.id = id};
    return run((my_store *)base, op_failed_reset, &a);
}

static int op_ping(my_store *s, my_conn *c, void *p)
{
    (void)p;
    int64_t one = 0;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_PING, &rc);
    return st ? query_i64(c, st, NULL, &one) : rc;
}

static int my_ping(nf_store *base)
{
    return run((my_store *)base, op_ping, NULL);
}

/* ---- open / close ---- */

/* DDL through one-off prepared statements. */
static int op_schema(my_store *s, my_conn *c, void *p)
{
    (void)p;
    char sql[1024];
    int n = (int)(sizeof schema_sql / sizeof schema_sql[0]);
    for (int i = 0; i < n + s->shards; i++) {
        if (i < n)
            snprintf(sql, sizeof sql, "%s", schema_sql[i]);
        else
            snprintf(sql, sizeof sql, shard_schema_sql, i - n + 1);
        MYSQL_STMT *st = mysql_stmt_init(c->db);
        if (!st)
            return fail(c, mysql_errno(c->db), "stmt_init", mysql_error(c->db));
        int rc = 0;
        if (mysql_stmt_prepare(st, sql, strlen(sql)) || mysql_stmt_execute(st))
            rc = st_fail(c, st);
        mysql_stmt_close(st);
        if (rc)
            return rc;
    }
    return 0;
}

static void my_close(nf_store *base)
{
    my_store *s = (my_store *)base;
    while (s->idle) {
        my_conn *c = s->idle;
        s->idle = c->next;
        conn_free(s, c);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->host);
    free(s->user);
    free(s->pass);
    free(s->dbname);
    free(s);
}

static int opt_secs(sli_url *u, const char *key, int64_t def_ms, unsigned *out)
{
    int64_t ms;
    int rc = sli_url_opt_ms(u, key, def_ms, &ms);
    if (!rc && (ms < 1000 || ms > 86400000))
        rc = SL_EBADOPT;
    *out = (unsigned)(ms / 1000);
    return rc;
}

static int parse_url(my_store *s, const char *url)
{
    sli_url *u;
    int rc = sli_url_parse(url, &u);
    if (rc)
        return rc;
    uint64_t open, idle;
    if (!u->host[0] || strlen(u->path) < 2 || strchr(u->path + 1, '/'))
        rc = SL_EINVAL;
    if (!rc)
        rc = sli_url_opt_u64(u, "max_open_conns", 0, 1 << 20, 64, &open);
    if (!rc)
        rc = sli_url_opt_u64(u, "max_idle_conns", 0, 1 << 20, 16, &idle);
    if (!rc)
        rc = opt_secs(u, "connect_timeout", 5000, &s->connect_timeout);
    if (!rc)
        rc = opt_secs(u, "read_timeout", 30000, &s->read_timeout);
    if (!rc)
        rc = opt_secs(u, "write_timeout", 30000, &s->write_timeout);
    if (!rc)
        rc = sli_url_check_unused(u);
    if (!rc) {
        s->max_open = open ? (int)open : INT_MAX; /* 0: unlimited, like database/sql */
        s->max_idle = (int)idle;
        s->port = u->port ? (unsigned)u->port : 3306;
        s->host = strdup(u->host);
        s->user = strdup(u->user ? u->user : "");
        s->pass = strdup(u->password ? u->password : "");
        s->dbname = strdup(u->path + 1);
        if (!s->host || !s->user || !s->pass || !s->dbname)
            rc = SL_ENOMEM;
    }
    sli_url_free(u);
    return rc;
}

static int my_open(nf_store **out, const char *url, int shards)
{
    pthread_once(&lib_once, lib_init);
    if (lib_rc)
        return SL_EIO;
    my_store *s = calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    s->base.ops = &nf_store_mysql_ops;
    s->shards = shards;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = parse_url(s, url);
    if (!rc)
        rc = run(s, op_schema, NULL);
    if (rc) {
        my_close(&s->base);
        return rc;
    }
    nf_log(SL_LOG_INFO, "mysql store: %s:%u/%s, %d shards, pool max_open_conns %d max_idle_conns %d",
           s->host, s->port, s->dbname, shards, s->max_open == INT_MAX ? 0 : s->max_open, s->max_idle);
    *out = &s->base;
    return 0;
}

const nf_store_ops nf_store_mysql_ops = {
    .scheme = "mysql",
    .open = my_open,
    .close = my_close,
    .notice_add = my_notice_add,
    .mark_read = my_mark_read,
    .list = my_list,
    .user_get = my_user_get,
    .failed_bump = my_failed_bump,
    .failed_clear = my_failed_clear,
    .failed_count = my_failed_count,
    .failed_list = my_failed_list,
    .failed_reset = my_failed_reset,
    .ping = my_ping,
};
