/*
 * mysql.c - the notification store on MySQL/MariaDB through MariaDB
 * Connector/C (libmariadb):
 *
 *   mysql://USER:PASSWORD@HOST[:PORT]/DB[?max_open_conns=N&max_idle_conns=N
 *            &connect_timeout=5s&read_timeout=30s&write_timeout=30s
 *            &max_lifetime=0&collation=utf8mb4_...]
 *
 * Same tables and semantics as the SQLite store (sqlite.c): th_notice_1..N
 * with order_sn UNIQUE (storing is idempotent), user (created on the first
 * notice, notification_count never below 0), failed_queues.
 *
 * Connections: a pool sized like the seed's xorm settings (database/sql
 * semantics): at most max_open_conns open (0: unlimited), at most
 * max_idle_conns kept idle; callers past the limit wait for a free one; a
 * connection older than max_lifetime (0: no limit) is closed instead of
 * reused, like database/sql's SetConnMaxLifetime. collation sets the
 * session's utf8mb4 collation (SET NAMES utf8mb4 COLLATE ...).
 * Each connection caches its prepared statements (nothing but the shard
 * number of a table name is ever formatted into SQL; every value is bound).
 * Connections run with autocommit off and READ COMMITTED; every store
 * operation is one transaction ended by commit (rollback on error).
 *
 * Failures: an operation whose connection was lost (server restarted:
 * CR_SERVER_GONE_ERROR, CR_SERVER_LOST, ...) is run once more on a fresh
 * connection; one that hit a deadlock is rerun up to 3 times (mysql_conn.c
 * holds connections, the pool and the rerun logic). Every
 * operation is safe to rerun: a commit lost in flight makes the rerun find
 * the notice already stored (no second count) or already read.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../log.h"
#include "sluice/error.h"
#include "sluice/log.h"
#include "sluice/url.h"
#include "mysql_int.h"
#include "store.h"

enum { Q_INSERT, Q_MARK, Q_UNREAD, Q_LIST, Q_NSHARD };
enum {
    G_USER_INC,
    G_USER_DEC,
    G_USER_GET,
    G_F_BUMP,
    G_F_GET,
    G_F_CLEAR,
    G_F_LIST,
    G_F_RESET,
    G_PING,
    G_L_SET,
    G_L_DEL,
    G_L_ANY,
    G_NGLOBAL
};
_Static_assert((int)Q_NSHARD == (int)NF_MY_Q_NSHARD && (int)G_NGLOBAL == (int)NF_MY_G_NGLOBAL,
               "mysql_int.h slots");

#define TS(col) "DATE_FORMAT(" col ",'%%Y-%%m-%%d %%H:%%i:%%s')"

static const char *const shard_sql[Q_NSHARD] = {
    [Q_INSERT] = "INSERT INTO th_notice_%d(order_sn,uid,type,data,status,create_time,created_at,"
                 "updated_at) VALUES(?,?,?,?,0,?,?,?) ON DUPLICATE KEY UPDATE id=id",
    [Q_MARK] = "UPDATE th_notice_%d SET status=1, updated_at=? WHERE uid=? AND status=0 AND "
               "(?=0 OR type=?) AND (?=0 OR id=?)",
    [Q_UNREAD] = "SELECT COUNT(*) FROM th_notice_%d WHERE uid=? AND status=0 AND (?=0 OR type=?)",
    [Q_LIST] = "SELECT id,order_sn,uid,type,data,status," TS("create_time") "," TS(
        "created_at") "," TS("updated_at") " FROM th_notice_%d WHERE uid=? AND (?=0 OR type=?) AND "
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
    [G_F_RESET] =
        "UPDATE failed_queues SET failed_count=?, updated_at=? WHERE id=? AND failed_count=?",
    [G_PING] = "SELECT 1",
    [G_L_SET] = "INSERT INTO nf_listeners(instance, until_ms) VALUES(?,?) ON DUPLICATE KEY UPDATE "
                "until_ms=VALUES(until_ms)",
    /* an instance's own row, and any that expired (an instance that died) */
    [G_L_DEL] = "DELETE FROM nf_listeners WHERE instance=? OR until_ms<?",
    [G_L_ANY] = "SELECT EXISTS(SELECT 1 FROM nf_listeners WHERE until_ms>?)",
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
    "CREATE TABLE IF NOT EXISTS nf_listeners(instance VARCHAR(64) NOT NULL PRIMARY KEY, "
    "until_ms BIGINT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
};

static const char shard_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS th_notice_%d(id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "order_sn VARCHAR(128) NOT NULL, uid BIGINT NOT NULL, type INT NOT NULL, data TEXT NOT NULL, "
    "status TINYINT NOT NULL DEFAULT 0, create_time DATETIME NOT NULL, created_at DATETIME NOT "
    "NULL, updated_at DATETIME NOT NULL, UNIQUE KEY uk_order_sn(order_sn), KEY idx_uid_id(uid,id), "
    "KEY idx_unread(uid,status,type)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

static MYSQL_STMT *global_stmt(my_store *s, my_conn *c, int q, int *rc)
{
    (void)s;
    return nf_my_stmt_at(c, q, global_sql[q], rc);
}

static MYSQL_STMT *shard_stmt(my_store *s, my_conn *c, int64_t uid, int q, int *rc)
{
    int shard = (int)(uid % s->shards); /* uid >= 0 */
    char sql[1024];
    snprintf(sql, sizeof sql, shard_sql[q], shard + 1);
    return nf_my_stmt_at(c, G_NGLOBAL + shard * Q_NSHARD + q, sql, rc);
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
    nf_my_now(now);
    int64_t uid = n->uid, type = n->type;
    unsigned long l_sn, l_data, l_ct, l_now;
    int rc = 0;
    a->added = false;
    MYSQL_STMT *st = shard_stmt(s, c, uid, Q_INSERT, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[7];
    nf_my_b_str(&in[0], n->order_sn, &l_sn);
    nf_my_b_i64(&in[1], &uid);
    nf_my_b_i64(&in[2], &type);
    nf_my_b_str(&in[3], n->data ? n->data : "", &l_data);
    nf_my_b_str(&in[4], n->create_time[0] ? n->create_time : now, &l_ct);
    nf_my_b_str(&in[5], now, &l_now);
    in[6] = in[5];
    if ((rc = nf_my_st_run(c, st, in, NULL)) != 0)
        return rc;
    if (mysql_stmt_affected_rows(st) != 1)
        return 0; /* already stored */
    if (!(st = global_stmt(s, c, G_USER_INC, &rc)))
        return rc;
    nf_my_b_i64(&in[0], &uid);
    in[1] = in[0];
    nf_my_b_str(&in[2], now, &l_now);
    in[3] = in[2];
    if ((rc = nf_my_st_run(c, st, in, NULL)) == 0)
        a->added = true;
    return rc;
}

typedef struct add_many_arg {
    const nf_notice *v;
    size_t n;
    bool *inserted;
} add_many_arg;

static int op_notice_add_many(my_store *s, my_conn *c, void *p)
{
    add_many_arg *a = p;
    int rc = 0;
    for (size_t i = 0; i < a->n && !rc; i++) {
        add_arg one = {.n = &a->v[i]};
        rc = op_notice_add(s, c, &one);
        a->inserted[i] = one.added;
    }
    return rc;
}

static int my_notice_add_many(nf_store *base, const nf_notice *v, size_t n, bool *inserted)
{
    add_many_arg a = {v, n, inserted};
    int rc = nf_my_run((my_store *)base, op_notice_add_many, &a); /* one transaction */
    for (size_t i = 0; rc && i < n; i++)
        inserted[i] = false;
    return rc;
}

typedef struct mark_arg {
    int64_t uid, type, id, changed;
} mark_arg;

static int op_mark_read(my_store *s, my_conn *c, void *p)
{
    mark_arg *a = p;
    char now[24];
    nf_my_now(now);
    unsigned long l_now;
    int rc = 0;
    a->changed = 0;
    MYSQL_STMT *st = shard_stmt(s, c, a->uid, Q_MARK, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[6];
    nf_my_b_str(&in[0], now, &l_now);
    nf_my_b_i64(&in[1], &a->uid);
    nf_my_b_i64(&in[2], &a->type);
    in[3] = in[2];
    nf_my_b_i64(&in[4], &a->id);
    in[5] = in[4];
    if ((rc = nf_my_st_run(c, st, in, NULL)) != 0)
        return rc;
    int64_t n = (int64_t)mysql_stmt_affected_rows(st);
    if (n <= 0)
        return 0;
    if (!(st = global_stmt(s, c, G_USER_DEC, &rc)))
        return rc;
    nf_my_b_i64(&in[0], &n);
    nf_my_b_str(&in[1], now, &l_now);
    nf_my_b_i64(&in[2], &a->uid);
    if ((rc = nf_my_st_run(c, st, in, NULL)) == 0)
        a->changed = n;
    return rc;
}

static int my_mark_read(nf_store *base, int64_t uid, int type, int64_t id, int64_t *changed)
{
    if (uid < 0)
        return SL_EINVAL;
    mark_arg a = {.uid = uid, .type = id > 0 ? 0 : type, .id = id > 0 ? id : 0};
    int rc = nf_my_run((my_store *)base, op_mark_read, &a);
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
    nf_my_b_i64(&out[L_ID], &row.id);
    nf_my_o_str(&out[L_SN], row.order_sn, sizeof row.order_sn, &len[L_SN]);
    nf_my_b_i64(&out[L_UID], &row.uid);
    nf_my_b_i64(&out[L_TYPE], &type);
    nf_my_o_str(&out[L_DATA], NULL, 0, &len[L_DATA]);
    nf_my_b_i64(&out[L_STATUS], &status);
    nf_my_o_str(&out[L_CT], row.create_time, sizeof row.create_time, &len[L_CT]);
    nf_my_o_str(&out[L_CA], row.created_at, sizeof row.created_at, &len[L_CA]);
    nf_my_o_str(&out[L_UA], row.updated_at, sizeof row.updated_at, &len[L_UA]);
    int rc = nf_my_st_run(c, st, in, out);
    size_t cap = (size_t)a->q->size;
    a->v = rc ? NULL : calloc(cap, sizeof *a->v);
    if (!rc && !a->v)
        rc = SL_ENOMEM;
    while (!rc && a->n < cap && (rc = nf_my_st_fetch(c, st)) > 0) {
        rc = 0;
        nf_my_o_term(row.order_sn, sizeof row.order_sn, len[L_SN]);
        nf_my_o_term(row.create_time, sizeof row.create_time, len[L_CT]);
        nf_my_o_term(row.created_at, sizeof row.created_at, len[L_CA]);
        nf_my_o_term(row.updated_at, sizeof row.updated_at, len[L_UA]);
        row.type = (int)type;
        row.status = (int)status;
        row.data = nf_my_fetch_text(st, L_DATA, len[L_DATA]);
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
    nf_my_b_i64(&in[0], &uid);
    nf_my_b_i64(&in[1], &type);
    in[2] = in[1];
    nf_my_b_i64(&in[3], &cursor);
    in[4] = in[3];
    nf_my_b_i64(&in[5], &size);
    nf_my_b_i64(&in[6], &offset);
    if ((rc = read_notices(c, st, in, a)) != 0 || !a->want_unread)
        return rc;
    if (!(st = shard_stmt(s, c, uid, Q_UNREAD, &rc)))
        return rc;
    nf_my_b_i64(&in[0], &uid);
    nf_my_b_i64(&in[1], &type);
    in[2] = in[1];
    return nf_my_query_i64(c, st, in, &a->unread);
}

static int my_list(nf_store *base, const nf_list_query *q, nf_notice **out, size_t *n,
                   int64_t *unread)
{
    if (q->uid < 0 || q->size < 1)
        return SL_EINVAL;
    list_arg a = {.q = q, .want_unread = unread != NULL};
    int rc = nf_my_run((my_store *)base, op_list, &a);
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
    nf_my_b_i64(&in[0], &a->uid);
    nf_my_o_str(&out[0], a->nick, sizeof a->nick, &nlen);
    nf_my_b_i64(&out[1], &a->count);
    rc = nf_my_st_run(c, st, in, out);
    if (!rc) {
        rc = nf_my_st_fetch(c, st);
        rc = rc > 0 ? 0 : rc == 0 ? SL_ENOENT : rc;
        nf_my_o_term(a->nick, sizeof a->nick, nlen);
    }
    mysql_stmt_free_result(st);
    return rc;
}

static int my_user_get(nf_store *base, int64_t uid, char *nick, size_t nlen, int64_t *count)
{
    user_arg a = {.uid = uid};
    int rc = nf_my_run((my_store *)base, op_user_get, &a);
    if (!rc && nick)
        snprintf(nick, nlen, "%s", a.nick);
    if (!rc && count)
        *count = a.count;
    return rc;
}

typedef struct failed_arg {
    const char *order_sn, *type, *data;
    int64_t id, count, min_count;
    int64_t from, to; /* failed_reset */
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
    nf_my_b_str(&in[0], a->order_sn, &l_sn);
    return nf_my_query_i64(c, st, in, &a->count);
}

static int op_failed_bump(my_store *s, my_conn *c, void *p)
{
    failed_arg *a = p;
    char now[24];
    nf_my_now(now);
    unsigned long l_sn, l_data, l_type, l_now;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_F_BUMP, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[5];
    nf_my_b_str(&in[0], a->order_sn, &l_sn);
    nf_my_b_str(&in[1], a->data ? a->data : "", &l_data);
    nf_my_b_str(&in[2], a->type, &l_type);
    nf_my_b_str(&in[3], now, &l_now);
    in[4] = in[3];
    if ((rc = nf_my_st_run(c, st, in, NULL)) != 0)
        return rc;
    return op_failed_get(s, c, p);
}

static int my_failed_bump(nf_store *base, const char *order_sn, const char *type, const char *data,
                          int *count)
{
    failed_arg a = {.order_sn = order_sn, .type = type, .data = data};
    int rc = nf_my_run((my_store *)base, op_failed_bump, &a);
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
    nf_my_b_str(&in[0], a->order_sn, &l_sn);
    return nf_my_st_run(c, st, in, NULL);
}

static int my_failed_clear(nf_store *base, const char *order_sn)
{
    failed_arg a = {.order_sn = order_sn};
    return nf_my_run((my_store *)base, op_failed_clear, &a);
}

static int my_failed_count(nf_store *base, const char *order_sn, int *count)
{
    failed_arg a = {.order_sn = order_sn};
    *count = 0;
    int rc = nf_my_run((my_store *)base, op_failed_get, &a);
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
    nf_my_b_i64(&in[0], &a->min_count);
    nf_my_b_i64(&out[F_ID], &row.id);
    nf_my_o_str(&out[F_SN], row.order_sn, sizeof row.order_sn, &len[F_SN]);
    nf_my_o_str(&out[F_TYPE], row.type, sizeof row.type, &len[F_TYPE]);
    nf_my_o_str(&out[F_DATA], NULL, 0, &len[F_DATA]);
    nf_my_b_i64(&out[F_COUNT], &count);
    nf_my_o_str(&out[F_CA], row.created_at, sizeof row.created_at, &len[F_CA]);
    nf_my_o_str(&out[F_UA], row.updated_at, sizeof row.updated_at, &len[F_UA]);
    rc = nf_my_st_run(c, st, in, out);
    size_t cap = 0;
    while (!rc && (rc = nf_my_st_fetch(c, st)) > 0) {
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
        nf_my_o_term(row.order_sn, sizeof row.order_sn, len[F_SN]);
        nf_my_o_term(row.type, sizeof row.type, len[F_TYPE]);
        nf_my_o_term(row.created_at, sizeof row.created_at, len[F_CA]);
        nf_my_o_term(row.updated_at, sizeof row.updated_at, len[F_UA]);
        row.failed_count = (int)count;
        row.data = nf_my_fetch_text(st, F_DATA, len[F_DATA]);
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
    int rc = nf_my_run((my_store *)base, op_failed_list, &a);
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
    nf_my_now(now);
    unsigned long l_now;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_F_RESET, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[4];
    nf_my_b_i64(&in[0], &a->to);
    nf_my_b_str(&in[1], now, &l_now);
    nf_my_b_i64(&in[2], &a->id);
    nf_my_b_i64(&in[3], &a->from);
    if ((rc = nf_my_st_run(c, st, in, NULL)) != 0)
        return rc;
    /* from != to (nf_app_failed_retry): a matching row is always changed */
    return mysql_stmt_affected_rows(st) > 0 ? 0 : SL_ENOENT;
}

static int my_failed_reset(nf_store *base, int64_t id, int from, int to)
{
    failed_arg a = {.id = id, .from = from, .to = to};
    return nf_my_run((my_store *)base, op_failed_reset, &a);
}

static int op_ping(my_store *s, my_conn *c, void *p)
{
    (void)p;
    int64_t one = 0;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_PING, &rc);
    return st ? nf_my_query_i64(c, st, NULL, &one) : rc;
}

static int my_ping(nf_store *base)
{
    return nf_my_run((my_store *)base, op_ping, NULL);
}

typedef struct listener_arg {
    const char *instance;
    int64_t until_ms, now_ms;
    int64_t any;
} listener_arg;

static int op_listener_set(my_store *s, my_conn *c, void *p)
{
    listener_arg *a = p;
    int rc = 0;
    unsigned long l_inst;
    MYSQL_STMT *st = global_stmt(s, c, a->until_ms ? G_L_SET : G_L_DEL, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[2];
    nf_my_b_str(&in[0], a->instance, &l_inst);
    nf_my_b_i64(&in[1], a->until_ms ? &a->until_ms : &a->now_ms);
    return nf_my_st_run(c, st, in, NULL);
}

static int my_listener_set(nf_store *base, const char *instance, int64_t until_ms, int64_t now_ms)
{
    listener_arg a = {.instance = instance, .until_ms = until_ms, .now_ms = now_ms};
    return nf_my_run((my_store *)base, op_listener_set, &a);
}

static int op_listener_any(my_store *s, my_conn *c, void *p)
{
    listener_arg *a = p;
    int rc = 0;
    MYSQL_STMT *st = global_stmt(s, c, G_L_ANY, &rc);
    if (!st)
        return rc;
    MYSQL_BIND in[1];
    nf_my_b_i64(&in[0], &a->now_ms);
    return nf_my_query_i64(c, st, in, &a->any);
}

static int my_listener_any(nf_store *base, int64_t now_ms, bool *any)
{
    listener_arg a = {.now_ms = now_ms};
    int rc = nf_my_run((my_store *)base, op_listener_any, &a);
    if (!rc)
        *any = a.any != 0;
    return rc;
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
            return nf_my_fail(c, mysql_errno(c->db), "stmt_init", mysql_error(c->db));
        int rc = 0;
        if (mysql_stmt_prepare(st, sql, strlen(sql)) || mysql_stmt_execute(st))
            rc = nf_my_st_fail(c, st);
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
        nf_my_conn_free(s, c);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->host);
    free(s->user);
    free(s->pass);
    free(s->dbname);
    free(s);
}

static int opt_secs(sl_url *u, const char *key, int64_t def_ms, unsigned *out)
{
    int64_t ms;
    int rc = sl_url_opt_ms(u, key, def_ms, &ms);
    if (!rc && (ms < 1000 || ms > 86400000))
        rc = SL_EBADOPT;
    *out = (unsigned)(ms / 1000);
    return rc;
}

/* collation=utf8mb4_<letters, digits, _>: never formatted into SQL unchecked. */
static int parse_collation(sl_url *u, char *out, size_t len)
{
    const char *v = sl_url_opt(u, "collation");
    out[0] = '\0';
    if (!v)
        return 0;
    size_t n = strlen(v);
    if (n >= len || strncmp(v, "utf8mb4_", 8) || n == 8)
        return SL_EBADOPT;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] == '_' || (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
              (v[i] >= '0' && v[i] <= '9')))
            return SL_EBADOPT;
    memcpy(out, v, n + 1);
    return 0;
}

static int parse_url(my_store *s, const char *url)
{
    sl_url *u;
    int rc = sl_url_parse(url, &u);
    if (rc)
        return rc;
    uint64_t open, idle;
    const char *host = sl_url_host(u), *path = sl_url_path(u);
    const char *user = sl_url_user(u), *pass = sl_url_password(u);
    if (!host[0] || strlen(path) < 2 || strchr(path + 1, '/'))
        rc = SL_EINVAL;
    if (!rc)
        rc = sl_url_opt_u64(u, "max_open_conns", 0, 1 << 20, 64, &open);
    if (!rc)
        rc = sl_url_opt_u64(u, "max_idle_conns", 0, 1 << 20, 16, &idle);
    if (!rc)
        rc = opt_secs(u, "connect_timeout", 5000, &s->connect_timeout);
    if (!rc)
        rc = opt_secs(u, "read_timeout", 30000, &s->read_timeout);
    if (!rc)
        rc = opt_secs(u, "write_timeout", 30000, &s->write_timeout);
    if (!rc)
        rc = sl_url_opt_ms(u, "max_lifetime", 0, &s->max_lifetime_ms);
    if (!rc && s->max_lifetime_ms < 0)
        rc = SL_EBADOPT;
    if (!rc)
        rc = parse_collation(u, s->collation, sizeof s->collation);
    if (!rc)
        rc = sl_url_check_unused(u);
    if (!rc) {
        s->max_open = open ? (int)open : INT_MAX; /* 0: unlimited, like database/sql */
        s->max_idle = (int)idle;
        s->port = sl_url_port(u) ? (unsigned)sl_url_port(u) : 3306;
        s->host = strdup(host);
        s->user = strdup(user ? user : "");
        s->pass = strdup(pass ? pass : "");
        s->dbname = strdup(path + 1);
        if (!s->host || !s->user || !s->pass || !s->dbname)
            rc = SL_ENOMEM;
    }
    sl_url_free(u);
    return rc;
}

static int my_open(nf_store **out, const char *url, int shards, char *err, size_t errlen)
{
    if (nf_my_lib_init())
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
        rc = nf_my_check_shards(s, err, errlen);
    if (!rc)
        rc = nf_my_run(s, op_schema, NULL);
    if (rc) {
        my_close(&s->base);
        return rc;
    }
    nf_log(SL_LOG_INFO,
           "mysql store: %s:%u/%s, %d shards, pool max_open_conns %d max_idle_conns %d "
           "max_lifetime %llds%s%s",
           s->host, s->port, s->dbname, shards, s->max_open == INT_MAX ? 0 : s->max_open,
           s->max_idle, (long long)(s->max_lifetime_ms / 1000),
           s->collation[0] ? ", collation " : "", s->collation);
    *out = &s->base;
    return 0;
}

const nf_store_ops nf_store_mysql_ops = {
    .scheme = "mysql",
    .open = my_open,
    .close = my_close,
    .notice_add_many = my_notice_add_many,
    .mark_read = my_mark_read,
    .list = my_list,
    .user_get = my_user_get,
    .failed_bump = my_failed_bump,
    .failed_clear = my_failed_clear,
    .failed_count = my_failed_count,
    .failed_list = my_failed_list,
    .failed_reset = my_failed_reset,
    .ping = my_ping,
    .listener_set = my_listener_set,
    .listener_any = my_listener_any,
};
