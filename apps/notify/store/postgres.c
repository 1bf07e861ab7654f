/*
 * postgres.c - the notification store on PostgreSQL through libpq:
 *
 *   postgres://USER:PASSWORD@HOST[:PORT]/DB[?max_open_conns=N&max_idle_conns=N
 *            &connect_timeout=5s&reconnect_timeout=10s&statement_timeout=30s
 *            &max_lifetime=0&sslmode=prefer&schema=NAME]
 *
 * Same tables and semantics as the SQLite and MySQL stores (sqlite.c,
 * mysql.c): th_notice_1..N (by uid % N + 1) with order_sn UNIQUE (storing is
 * idempotent: ON CONFLICT DO NOTHING), "user" (created on the first notice,
 * notification_count never below 0), failed_queues (retry bookkeeping).
 * Times are TIMESTAMP(0) without time zone, written and read as the
 * service's local 'YYYY-MM-DD HH:MM:SS' like the other stores. schema=NAME
 * ([a-z_][a-z0-9_]*, created if missing) keeps the tables in a schema of
 * their own (every connection's search_path), e.g. beside the postgres://
 * queue's tables on one database. Tables are created at open under a
 * transaction-level advisory lock, so processes that start together (the
 * server and its consumers) do not race on CREATE TABLE IF NOT EXISTS.
 *
 * Connections: a pool sized like the mysql:// store (database/sql
 * semantics): at most max_open_conns open (0: unlimited), at most
 * max_idle_conns kept idle, none reused past max_lifetime (0: no limit).
 * Each connection prepares its statements on first use (nothing but the
 * shard number of a table name is formatted into SQL; every value is a
 * parameter). Every store operation is one transaction (BEGIN ... COMMIT,
 * READ COMMITTED, rollback on error); statement_timeout bounds each
 * statement on the server (0: none).
 *
 * Failures (postgres_conn.c): an operation whose connection was lost (the
 * server restarted: SQLSTATE 08xxx, 57P0x, a closed socket) runs once more
 * on a fresh connection, made with backoff (50 ms doubling to 1 s) for up
 * to reconnect_timeout while the server is away; a deadlock or
 * serialization failure reruns it up to 3 times. Every operation is safe
 * to rerun: a commit lost in flight makes the rerun find the notice already
 * stored (no second count) or already read. Errors: SL_EIO (database),
 * SL_EBUSY (deadlock, lock or statement timeout), as the other stores.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../log.h"
#include "postgres_int.h"
#include "sluice/error.h"
#include "sluice/log.h"
#include "sluice/url.h"
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

#define TS(col) "to_char(" col ",'YYYY-MM-DD HH24:MI:SS')"

static const char *const shard_sql[Q_NSHARD] = {
    [Q_INSERT] = "INSERT INTO th_notice_%d(order_sn,uid,type,data,status,create_time,created_at,"
                 "updated_at) VALUES($1,$2::bigint,$3::int,$4,0,$5::timestamp,$6::timestamp,"
                 "$6::timestamp) ON CONFLICT(order_sn) DO NOTHING",
    [Q_MARK] =
        "UPDATE th_notice_%d SET status=1, updated_at=$1::timestamp WHERE uid=$2::bigint AND "
        "status=0 AND ($3::int=0 OR type=$3::int) AND ($4::bigint=0 OR id=$4::bigint)",
    [Q_UNREAD] = "SELECT COUNT(*) FROM th_notice_%d WHERE uid=$1::bigint AND status=0 AND "
                 "($2::int=0 OR type=$2::int)",
    [Q_LIST] =
        "SELECT id,order_sn,uid,type,data,status," TS("create_time") "," TS("created_at") "," TS(
            "updated_at") " FROM th_notice_%d WHERE uid=$1::bigint AND "
                          "($2::int=0 OR type=$2::int) AND ($3::bigint=0 OR id<$3::bigint) "
                          "ORDER BY id DESC LIMIT $4::bigint OFFSET $5::bigint",
};

static const char *const global_sql[G_NGLOBAL] = {
    [G_USER_INC] =
        "INSERT INTO \"user\"(uid,nick,notification_count,created_at,updated_at) "
        "VALUES($1::bigint,'user'||$1::bigint,1,$2::timestamp,$2::timestamp) "
        "ON CONFLICT(uid) DO UPDATE SET notification_count=\"user\".notification_count+1, "
        "updated_at=EXCLUDED.updated_at",
    [G_USER_DEC] =
        "UPDATE \"user\" SET notification_count=GREATEST(notification_count-$1::bigint,0), "
        "updated_at=$2::timestamp WHERE uid=$3::bigint",
    [G_USER_GET] = "SELECT nick, notification_count FROM \"user\" WHERE uid=$1::bigint",
    [G_F_BUMP] = "INSERT INTO failed_queues(order_sn,data,type,failed_count,created_at,updated_at) "
                 "VALUES($1,$2,$3,1,$4::timestamp,$4::timestamp) ON CONFLICT(order_sn) DO UPDATE "
                 "SET failed_count=failed_queues.failed_count+1, updated_at=EXCLUDED.updated_at "
                 "RETURNING failed_count",
    [G_F_GET] = "SELECT failed_count FROM failed_queues WHERE order_sn=$1",
    [G_F_CLEAR] = "DELETE FROM failed_queues WHERE order_sn=$1",
    [G_F_LIST] = "SELECT id,order_sn,type,data,failed_count," TS("created_at") "," TS(
        "updated_at") " FROM failed_queues WHERE failed_count>=$1::int ORDER BY id",
    [G_F_RESET] = "UPDATE failed_queues SET failed_count=$3::int, updated_at=$2::timestamp WHERE "
                  "id=$1::bigint AND failed_count=$4::int",
    [G_PING] = "SELECT 1",
    [G_L_SET] =
        "INSERT INTO nf_listeners(instance, until_ms) VALUES($1,$2::bigint) ON CONFLICT(instance) "
        "DO UPDATE SET until_ms=EXCLUDED.until_ms",
    /* an instance's own row, and any that expired (an instance that died) */
    [G_L_DEL] = "DELETE FROM nf_listeners WHERE instance=$1 OR until_ms<$2::bigint",
    [G_L_ANY] =
        "SELECT count(*) FROM (SELECT 1 FROM nf_listeners WHERE until_ms>$1::bigint LIMIT 1) l",
};

static const char *const schema_sql[] = {
    "CREATE TABLE IF NOT EXISTS \"user\"(uid BIGINT NOT NULL PRIMARY KEY, "
    "nick VARCHAR(64) NOT NULL DEFAULT '', notification_count BIGINT NOT NULL DEFAULT 0 "
    "CHECK(notification_count >= 0), created_at TIMESTAMP(0) NOT NULL, "
    "updated_at TIMESTAMP(0) NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failed_queues(id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY "
    "KEY, "
    "order_sn VARCHAR(128) NOT NULL UNIQUE, data TEXT NOT NULL, type VARCHAR(16) NOT NULL, "
    "failed_count INT NOT NULL DEFAULT 0, created_at TIMESTAMP(0) NOT NULL, "
    "updated_at TIMESTAMP(0) NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nf_listeners(instance VARCHAR(64) NOT NULL PRIMARY KEY, "
    "until_ms BIGINT NOT NULL)",
};

static const char *const shard_schema_sql[] = {
    "CREATE TABLE IF NOT EXISTS th_notice_%1$d(id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY "
    "KEY, "
    "order_sn VARCHAR(128) NOT NULL UNIQUE, uid BIGINT NOT NULL, type INT NOT NULL, data TEXT NOT "
    "NULL, "
    "status SMALLINT NOT NULL DEFAULT 0, create_time TIMESTAMP(0) NOT NULL, "
    "created_at TIMESTAMP(0) NOT NULL, updated_at TIMESTAMP(0) NOT NULL)",
    "CREATE INDEX IF NOT EXISTS th_notice_%1$d_uid_id ON th_notice_%1$d(uid, id)",
    "CREATE INDEX IF NOT EXISTS th_notice_%1$d_unread ON th_notice_%1$d(uid, status, type)",
};

static PGresult *global_exec(pq_store *s, pq_conn *c, int q, const pq_args *a, int *rc)
{
    return nf_pq_exec(s, c, q, global_sql[q], a, rc);
}

static PGresult *shard_exec(pq_store *s, pq_conn *c, int64_t uid, int q, const pq_args *a, int *rc)
{
    int shard = (int)(uid % s->shards); /* uid >= 0 */
    char sql[1024];
    snprintf(sql, sizeof sql, shard_sql[q], shard + 1);
    return nf_pq_exec(s, c, G_NGLOBAL + shard * Q_NSHARD + q, sql, a, rc);
}

/* Run a statement for its effect; *changed (optional) gets its row count. */
static int global_run(pq_store *s, pq_conn *c, int q, const pq_args *a, int64_t *changed)
{
    int rc = 0;
    PGresult *r = global_exec(s, c, q, a, &rc);
    if (r && changed)
        *changed = nf_pq_changed(r);
    PQclear(r);
    return rc;
}

/* A single-row single-integer query: *v = 0 when it returns no row. */
static int query_i64(PGresult *r, int rc, int64_t *v)
{
    *v = r && PQntuples(r) > 0 ? nf_pq_i64(r, 0, 0) : 0;
    PQclear(r);
    return rc;
}

static void copy_col(char *dst, size_t size, PGresult *r, int row, int col)
{
    snprintf(dst, size, "%s", PQgetvalue(r, row, col));
}

/* ---- notices ---- */

static int op_notice_add(pq_store *s, pq_conn *c, const nf_notice *n, bool *added)
{
    char now[24];
    nf_pq_now(now);
    pq_args a = {0};
    nf_pq_arg_str(&a, n->order_sn);
    nf_pq_arg_i64(&a, n->uid);
    nf_pq_arg_i64(&a, n->type);
    nf_pq_arg_str(&a, n->data ? n->data : "");
    nf_pq_arg_str(&a, n->create_time[0] ? n->create_time : now);
    nf_pq_arg_str(&a, now);
    int rc = 0;
    *added = false;
    PGresult *r = shard_exec(s, c, n->uid, Q_INSERT, &a, &rc);
    if (!r)
        return rc;
    int64_t inserted = nf_pq_changed(r);
    PQclear(r);
    if (inserted != 1)
        return 0; /* already stored */
    pq_args u = {0};
    nf_pq_arg_i64(&u, n->uid);
    nf_pq_arg_str(&u, now);
    if ((rc = global_run(s, c, G_USER_INC, &u, NULL)) == 0)
        *added = true;
    return rc;
}

typedef struct add_many_arg {
    const nf_notice *v;
    size_t n;
    bool *inserted;
} add_many_arg;

static int op_notice_add_many(pq_store *s, pq_conn *c, void *p)
{
    add_many_arg *a = p;
    int rc = 0;
    for (size_t i = 0; i < a->n && !rc; i++)
        rc = op_notice_add(s, c, &a->v[i], &a->inserted[i]);
    return rc;
}

static int pq_notice_add_many(nf_store *base, const nf_notice *v, size_t n, bool *inserted)
{
    add_many_arg a = {v, n, inserted};
    int rc = nf_pq_run((pq_store *)base, op_notice_add_many, &a); /* one transaction */
    for (size_t i = 0; rc && i < n; i++)
        inserted[i] = false;
    return rc;
}

typedef struct mark_arg {
    int64_t uid, type, id, changed;
} mark_arg;

static int op_mark_read(pq_store *s, pq_conn *c, void *p)
{
    mark_arg *m = p;
    char now[24];
    nf_pq_now(now);
    m->changed = 0;
    pq_args a = {0};
    nf_pq_arg_str(&a, now);
    nf_pq_arg_i64(&a, m->uid);
    nf_pq_arg_i64(&a, m->type);
    nf_pq_arg_i64(&a, m->id);
    int rc = 0;
    PGresult *r = shard_exec(s, c, m->uid, Q_MARK, &a, &rc);
    if (!r)
        return rc;
    int64_t n = nf_pq_changed(r);
    PQclear(r);
    if (n <= 0)
        return 0;
    pq_args u = {0};
    nf_pq_arg_i64(&u, n);
    nf_pq_arg_str(&u, now);
    nf_pq_arg_i64(&u, m->uid);
    if ((rc = global_run(s, c, G_USER_DEC, &u, NULL)) == 0)
        m->changed = n;
    return rc;
}

static int pq_mark_read(nf_store *base, int64_t uid, int type, int64_t id, int64_t *changed)
{
    if (uid < 0)
        return SL_EINVAL;
    mark_arg m = {.uid = uid, .type = id > 0 ? 0 : type, .id = id > 0 ? id : 0};
    int rc = nf_pq_run((pq_store *)base, op_mark_read, &m);
    if (changed)
        *changed = rc ? 0 : m.changed;
    return rc;
}

typedef struct list_arg {
    const nf_list_query *q;
    nf_notice *v;
    size_t n;
    int64_t unread;
    bool want_unread;
} list_arg;

enum { L_ID, L_SN, L_UID, L_TYPE, L_DATA, L_STATUS, L_CT, L_CA, L_UA };

static int read_notices(PGresult *r, list_arg *a)
{
    int rows = PQntuples(r);
    size_t cap = (size_t)a->q->size;
    if (!(a->v = calloc(cap, sizeof *a->v)))
        return SL_ENOMEM;
    for (int i = 0; i < rows && a->n < cap; i++) {
        nf_notice *n = &a->v[a->n];
        n->id = nf_pq_i64(r, i, L_ID);
        copy_col(n->order_sn, sizeof n->order_sn, r, i, L_SN);
        n->uid = nf_pq_i64(r, i, L_UID);
        n->type = (int)nf_pq_i64(r, i, L_TYPE);
        n->status = (int)nf_pq_i64(r, i, L_STATUS);
        copy_col(n->create_time, sizeof n->create_time, r, i, L_CT);
        copy_col(n->created_at, sizeof n->created_at, r, i, L_CA);
        copy_col(n->updated_at, sizeof n->updated_at, r, i, L_UA);
        if (!(n->data = strdup(PQgetvalue(r, i, L_DATA))))
            return SL_ENOMEM;
        a->n++;
    }
    return 0;
}

static int op_list(pq_store *s, pq_conn *c, void *p)
{
    list_arg *l = p;
    const nf_list_query *q = l->q;
    nf_notices_free(l->v, l->n); /* a rerun starts over */
    l->v = NULL;
    l->n = 0;
    pq_args a = {0};
    nf_pq_arg_i64(&a, q->uid);
    nf_pq_arg_i64(&a, q->type);
    nf_pq_arg_i64(&a, q->cursor > 0 ? q->cursor : 0);
    nf_pq_arg_i64(&a, q->size);
    nf_pq_arg_i64(&a, q->cursor > 0 ? 0 : (int64_t)(q->page > 1 ? q->page - 1 : 0) * q->size);
    int rc = 0;
    PGresult *r = shard_exec(s, c, q->uid, Q_LIST, &a, &rc);
    if (!r)
        return rc;
    rc = read_notices(r, l);
    PQclear(r);
    if (rc || !l->want_unread)
        return rc;
    a.n = 2; /* uid, type */
    r = shard_exec(s, c, q->uid, Q_UNREAD, &a, &rc);
    return query_i64(r, rc, &l->unread);
}

static int pq_list(nf_store *base, const nf_list_query *q, nf_notice **out, size_t *n,
                   int64_t *unread)
{
    if (q->uid < 0 || q->size < 1)
        return SL_EINVAL;
    list_arg l = {.q = q, .want_unread = unread != NULL};
    int rc = nf_pq_run((pq_store *)base, op_list, &l);
    if (rc) {
        nf_notices_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    if (unread)
        *unread = l.unread;
    return 0;
}

typedef struct user_arg {
    int64_t uid, count;
    char nick[128];
} user_arg;

static int op_user_get(pq_store *s, pq_conn *c, void *p)
{
    user_arg *u = p;
    pq_args a = {0};
    nf_pq_arg_i64(&a, u->uid);
    int rc = 0;
    PGresult *r = global_exec(s, c, G_USER_GET, &a, &rc);
    if (!r)
        return rc;
    if (PQntuples(r) > 0) {
        copy_col(u->nick, sizeof u->nick, r, 0, 0);
        u->count = nf_pq_i64(r, 0, 1);
    } else {
        rc = SL_ENOENT;
    }
    PQclear(r);
    return rc;
}

static int pq_user_get(nf_store *base, int64_t uid, char *nick, size_t nlen, int64_t *count)
{
    user_arg u = {.uid = uid};
    int rc = nf_pq_run((pq_store *)base, op_user_get, &u);
    if (!rc && nick)
        snprintf(nick, nlen, "%s", u.nick);
    if (!rc && count)
        *count = u.count;
    return rc;
}

/* ---- failed_queues ---- */

typedef struct failed_arg {
    const char *order_sn, *type, *data;
    int64_t id, count, min_count;
    int64_t from, to; /* failed_reset */
    nf_failed *v;
    size_t n;
} failed_arg;

static int op_failed_get(pq_store *s, pq_conn *c, void *p)
{
    failed_arg *f = p;
    pq_args a = {0};
    nf_pq_arg_str(&a, f->order_sn);
    int rc = 0;
    PGresult *r = global_exec(s, c, G_F_GET, &a, &rc);
    return query_i64(r, rc, &f->count);
}

static int op_failed_bump(pq_store *s, pq_conn *c, void *p)
{
    failed_arg *f = p;
    char now[24];
    nf_pq_now(now);
    pq_args a = {0};
    nf_pq_arg_str(&a, f->order_sn);
    nf_pq_arg_str(&a, f->data ? f->data : "");
    nf_pq_arg_str(&a, f->type);
    nf_pq_arg_str(&a, now);
    int rc = 0;
    PGresult *r = global_exec(s, c, G_F_BUMP, &a, &rc); /* RETURNING failed_count */
    return query_i64(r, rc, &f->count);
}

static int pq_failed_bump(nf_store *base, const char *order_sn, const char *type, const char *data,
                          int *count)
{
    failed_arg f = {.order_sn = order_sn, .type = type, .data = data};
    int rc = nf_pq_run((pq_store *)base, op_failed_bump, &f);
    if (!rc && count)
        *count = (int)f.count;
    return rc;
}

static int op_failed_clear(pq_store *s, pq_conn *c, void *p)
{
    failed_arg *f = p;
    pq_args a = {0};
    nf_pq_arg_str(&a, f->order_sn);
    return global_run(s, c, G_F_CLEAR, &a, NULL);
}

static int pq_failed_clear(nf_store *base, const char *order_sn)
{
    failed_arg f = {.order_sn = order_sn};
    return nf_pq_run((pq_store *)base, op_failed_clear, &f);
}

static int pq_failed_count(nf_store *base, const char *order_sn, int *count)
{
    failed_arg f = {.order_sn = order_sn};
    *count = 0;
    int rc = nf_pq_run((pq_store *)base, op_failed_get, &f);
    if (!rc)
        *count = (int)f.count;
    return rc;
}

enum { F_ID, F_SN, F_TYPE, F_DATA, F_COUNT, F_CA, F_UA };

static int op_failed_list(pq_store *s, pq_conn *c, void *p)
{
    failed_arg *f = p;
    nf_failed_free(f->v, f->n); /* a rerun starts over */
    f->v = NULL;
    f->n = 0;
    pq_args a = {0};
    nf_pq_arg_i64(&a, f->min_count);
    int rc = 0;
    PGresult *r = global_exec(s, c, G_F_LIST, &a, &rc);
    if (!r)
        return rc;
    int rows = PQntuples(r);
    if (!(f->v = calloc(rows > 0 ? (size_t)rows : 1, sizeof *f->v)))
        rc = SL_ENOMEM;
    for (int i = 0; !rc && i < rows; i++) {
        nf_failed *row = &f->v[f->n];
        row->id = nf_pq_i64(r, i, F_ID);
        copy_col(row->order_sn, sizeof row->order_sn, r, i, F_SN);
        copy_col(row->type, sizeof row->type, r, i, F_TYPE);
        row->failed_count = (int)nf_pq_i64(r, i, F_COUNT);
        copy_col(row->created_at, sizeof row->created_at, r, i, F_CA);
        copy_col(row->updated_at, sizeof row->updated_at, r, i, F_UA);
        if (!(row->data = strdup(PQgetvalue(r, i, F_DATA))))
            rc = SL_ENOMEM;
        else
            f->n++;
    }
    PQclear(r);
    return rc;
}

static int pq_failed_list(nf_store *base, int min_count, nf_failed **out, size_t *n)
{
    failed_arg f = {.min_count = min_count};
    int rc = nf_pq_run((pq_store *)base, op_failed_list, &f);
    if (rc) {
        nf_failed_free(f.v, f.n);
        return rc;
    }
    *out = f.v;
    *n = f.n;
    return 0;
}

static int op_failed_reset(pq_store *s, pq_conn *c, void *p)
{
    failed_arg *f = p;
    char now[24];
    nf_pq_now(now);
    pq_args a = {0};
    nf_pq_arg_i64(&a, f->id);
    nf_pq_arg_str(&a, now);
    nf_pq_arg_i64(&a, f->to);
    nf_pq_arg_i64(&a, f->from);
    int64_t matched = 0; /* PostgreSQL counts matched rows, changed or not */
    int rc = global_run(s, c, G_F_RESET, &a, &matched);
    return rc ? rc : matched > 0 ? 0 : SL_ENOENT;
}

static int pq_failed_reset(nf_store *base, int64_t id, int from, int to)
{
    failed_arg f = {.id = id, .from = from, .to = to};
    return nf_pq_run((pq_store *)base, op_failed_reset, &f);
}

static int op_ping(pq_store *s, pq_conn *c, void *p)
{
    (void)p;
    return global_run(s, c, G_PING, NULL, NULL);
}

static int pq_ping(nf_store *base)
{
    return nf_pq_run((pq_store *)base, op_ping, NULL);
}

typedef struct listener_arg {
    const char *instance;
    int64_t until_ms, now_ms;
    int64_t any;
} listener_arg;

static int op_listener_set(pq_store *s, pq_conn *c, void *p)
{
    listener_arg *l = p;
    pq_args a = {0};
    nf_pq_arg_str(&a, l->instance);
    nf_pq_arg_i64(&a, l->until_ms ? l->until_ms : l->now_ms);
    return global_run(s, c, l->until_ms ? G_L_SET : G_L_DEL, &a, NULL);
}

static int pq_listener_set(nf_store *base, const char *instance, int64_t until_ms, int64_t now_ms)
{
    listener_arg l = {.instance = instance, .until_ms = until_ms, .now_ms = now_ms};
    return nf_pq_run((pq_store *)base, op_listener_set, &l);
}

static int op_listener_any(pq_store *s, pq_conn *c, void *p)
{
    listener_arg *l = p;
    pq_args a = {0};
    nf_pq_arg_i64(&a, l->now_ms);
    int rc = 0;
    PGresult *r = global_exec(s, c, G_L_ANY, &a, &rc);
    return query_i64(r, rc, &l->any);
}

static int pq_listener_any(nf_store *base, int64_t now_ms, bool *any)
{
    listener_arg l = {.now_ms = now_ms};
    int rc = nf_pq_run((pq_store *)base, op_listener_any, &l);
    if (!rc)
        *any = l.any != 0;
    return rc;
}

/* ---- open / close ---- */

/* Do all the tables and indexes exist already (in the schema that
 * search_path makes current)? Then a start takes no lock on them: CREATE
 * INDEX IF NOT EXISTS would wait for every running transaction on its table. */
static int schema_present(pq_store *s, pq_conn *c, bool *present)
{
    size_t len = 64 + (size_t)s->shards * 80, n = 0;
    char *names = malloc(len);
    if (!names)
        return SL_ENOMEM;
    n += (size_t)snprintf(names, len, "user,failed_queues,nf_listeners");
    for (int k = 1; k <= s->shards; k++)
        n += (size_t)snprintf(names + n, len - n,
                              ",th_notice_%d,th_notice_%d_uid_id,th_notice_%d_unread", k, k, k);
    int64_t found = 0;
    int rc = nf_pq_simple_i64(c,
                              "SELECT count(*) FROM pg_class WHERE relnamespace = "
                              "(SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
                              "AND relname = ANY(string_to_array($1, ','))",
                              names, &found);
    free(names);
    *present = !rc && found == 3 + 3 * (int64_t)s->shards;
    return rc;
}

/* The tables, under an advisory lock held to the end of the transaction:
 * concurrent CREATE TABLE IF NOT EXISTS of one name can fail on the
 * catalog's unique index. All the DDL goes in one round trip. */
static int op_schema(pq_store *s, pq_conn *c, void *p)
{
    (void)p;
    bool present = false;
    int rc = schema_present(s, c, &present);
    if (rc || present)
        return rc;
    size_t len = 4096 + (size_t)s->shards * 1024, n = 0;
    char *sql = malloc(len);
    if (!sql)
        return SL_ENOMEM;
    n += (size_t)snprintf(sql, len,
                          "SELECT pg_advisory_xact_lock(7306086750142215023);"); /* "eventsno" */
    if (s->schema[0]) /* [a-z_][a-z0-9_]* */
        n += (size_t)snprintf(sql + n, len - n, "CREATE SCHEMA IF NOT EXISTS %s;", s->schema);
    for (size_t i = 0; i < sizeof schema_sql / sizeof schema_sql[0]; i++)
        n += (size_t)snprintf(sql + n, len - n, "%s;", schema_sql[i]);
    for (int k = 1; k <= s->shards; k++)
        for (size_t i = 0; i < sizeof shard_schema_sql / sizeof shard_schema_sql[0]; i++) {
            n += (size_t)snprintf(sql + n, len - n, shard_schema_sql[i], k);
            n += (size_t)snprintf(sql + n, len - n, ";");
        }
    rc = n < len ? nf_pq_simple(c, sql) : SL_EINVAL;
    free(sql);
    return rc;
}

/*
 * The shard count is part of the data (uid % shards picks th_notice_N): it
 * is recorded in nf_meta on the first open and another count is refused
 * later (nf_store_shards_check); a database from before the record is
 * taken to have as many shards as its highest th_notice_N table. Run
 * before op_schema, which would create the tables of the asked count.
 * The first statement creates the table under the schema lock (one
 * implicit transaction); concurrent first opens with different counts
 * both insert with ON CONFLICT DO NOTHING, read the winner back, and the
 * loser refuses.
 */
typedef struct shards_arg {
    int64_t recorded;
    bool inferred;
} shards_arg;

static int op_shards(pq_store *s, pq_conn *c, void *p)
{
    shards_arg *a = p;
    char sql[512], want[24];
    int n = snprintf(sql, sizeof sql,
                     "SELECT pg_advisory_xact_lock(7306086750142215023);"); /* op_schema's */
    if (s->schema[0])                                                       /* [a-z_][a-z0-9_]* */
        n +=
            snprintf(sql + n, sizeof sql - (size_t)n, "CREATE SCHEMA IF NOT EXISTS %s;", s->schema);
    snprintf(sql + n, sizeof sql - (size_t)n,
             "CREATE TABLE IF NOT EXISTS nf_meta(name VARCHAR(64) PRIMARY KEY, value VARCHAR(255) "
             "NOT NULL)");
    int rc = nf_pq_simple(c, sql);
    static const char get[] = "SELECT CAST(value AS BIGINT) FROM nf_meta WHERE name = $1";
    a->inferred = false;
    if (!rc)
        rc = nf_pq_simple_i64(c, get, "shards", &a->recorded);
    if (rc || a->recorded != 0)
        return rc;
    /* th_notice_ is 10 characters: the number starts at 11 */
    rc = nf_pq_simple_i64(
        c,
        "SELECT COALESCE(MAX(CAST(substr(relname, 11) AS BIGINT)), 0) FROM pg_class "
        "WHERE relkind = 'r' AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = "
        "current_schema()) AND relname ~ $1",
        "^th_notice_[0-9]+$", &a->recorded);
    a->inferred = a->recorded > 0;
    snprintf(want, sizeof want, "%d", s->shards);
    int64_t none;
    if (!rc && (a->recorded == 0 || a->recorded == s->shards))
        rc = nf_pq_simple_i64(c,
                              "WITH i AS (INSERT INTO nf_meta(name, value) VALUES('shards', $1) "
                              "ON CONFLICT (name) DO NOTHING RETURNING 1) SELECT count(*) FROM i",
                              want, &none);
    if (!rc && !a->inferred) /* a concurrent first open may have won */
        rc = nf_pq_simple_i64(c, get, "shards", &a->recorded);
    return rc;
}

static void pq_close(nf_store *base)
{
    pq_store *s = (pq_store *)base;
    nf_pq_close_all(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->host);
    free(s->port);
    free(s->user);
    free(s->pass);
    free(s->dbname);
    free(s->options);
    free(s);
}

/* A duration option of at least min_ms (0 allowed when zero_ok). */
static int opt_dur(sl_url *u, const char *key, int64_t def, int64_t min_ms, bool zero_ok,
                   int64_t *out)
{
    int rc = sl_url_opt_ms(u, key, def, out);
    if (!rc && (*out < 0 || (*out < min_ms && !(zero_ok && *out == 0))))
        rc = SL_EBADOPT;
    if (rc)
        nf_log(SL_LOG_ERROR, "postgres store: option %s must be a duration of at least %lldms%s",
               key, (long long)min_ms, zero_ok ? " (or 0)" : "");
    return rc;
}

static int parse_enums(sl_url *u, pq_store *s)
{
    static const char *const modes[] = {"disable", "allow",     "prefer",
                                        "require", "verify-ca", "verify-full"};
    const char *v = sl_url_opt(u, "sslmode");
    snprintf(s->sslmode, sizeof s->sslmode, "prefer");
    if (v) {
        size_t i = 0, n = sizeof modes / sizeof modes[0];
        while (i < n && strcmp(modes[i], v))
            i++;
        if (i == n) {
            nf_log(SL_LOG_ERROR, "postgres store: sslmode must be disable, allow, prefer, require, "
                                 "verify-ca or verify-full");
            return SL_EBADOPT;
        }
        snprintf(s->sslmode, sizeof s->sslmode, "%s", modes[i]);
    }
    v = sl_url_opt(u, "schema");
    s->schema[0] = '\0';
    if (v) {
        size_t n = strlen(v);
        bool ok = n > 0 && n < sizeof s->schema && !(v[0] >= '0' && v[0] <= '9');
        for (size_t i = 0; ok && i < n; i++)
            ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '_';
        if (!ok) {
            nf_log(SL_LOG_ERROR,
                   "postgres store: schema must match [a-z_][a-z0-9_]* (at most 63 characters)");
            return SL_EBADOPT;
        }
        memcpy(s->schema, v, n + 1);
    }
    return 0;
}

static int parse_url(pq_store *s, const char *url)
{
    sl_url *u;
    int rc = sl_url_parse(url, &u);
    if (rc)
        return rc;
    uint64_t open = 0, idle = 0;
    int64_t stmt_ms = 0;
    const char *host = sl_url_host(u), *path = sl_url_path(u);
    const char *user = sl_url_user(u), *pass = sl_url_password(u);
    if (!host[0] || strlen(path) < 2 || strchr(path + 1, '/')) {
        nf_log(SL_LOG_ERROR,
               "postgres store: the URL must be postgres://USER:PASSWORD@HOST[:PORT]/DB");
        rc = SL_EINVAL;
    }
    if (!rc)
        rc = sl_url_opt_u64(u, "max_open_conns", 0, 1 << 20, 64, &open);
    if (!rc)
        rc = sl_url_opt_u64(u, "max_idle_conns", 0, 1 << 20, 16, &idle);
    if (!rc)
        rc = opt_dur(u, "connect_timeout", 5000, 1, false, &s->connect_timeout_ms);
    if (!rc)
        rc = opt_dur(u, "reconnect_timeout", 10000, 0, true, &s->reconnect_timeout_ms);
    if (!rc)
        rc = opt_dur(u, "statement_timeout", 30000, 1, true, &stmt_ms);
    if (!rc)
        rc = opt_dur(u, "max_lifetime", 0, 1000, true, &s->max_lifetime_ms);
    if (!rc)
        rc = parse_enums(u, s);
    if (!rc && (rc = sl_url_check_unused(u)) != 0)
        nf_log(SL_LOG_ERROR,
               "postgres store: unknown URL option (known: max_open_conns, max_idle_conns, "
               "connect_timeout, reconnect_timeout, statement_timeout, max_lifetime, sslmode, "
               "schema)");
    if (!rc) {
        char port[16], opts[256];
        snprintf(port, sizeof port, "%d", sl_url_port(u) ? sl_url_port(u) : 5432);
        int n =
            snprintf(opts, sizeof opts, "-c statement_timeout=%lld -c client_min_messages=warning",
                     (long long)stmt_ms);
        if (s->schema[0])
            snprintf(opts + n, sizeof opts - (size_t)n, " -c search_path=%s", s->schema);
        s->max_open = open ? (int)open : INT_MAX; /* 0: unlimited, like database/sql */
        s->max_idle = (int)idle;
        s->host = strdup(host);
        s->port = strdup(port);
        s->user = strdup(user ? user : "");
        s->pass = strdup(pass ? pass : "");
        s->dbname = strdup(path + 1);
        s->options = strdup(opts);
        if (!s->host || !s->port || !s->user || !s->pass || !s->dbname || !s->options)
            rc = SL_ENOMEM;
    }
    sl_url_free(u);
    return rc;
}

static int pq_open(nf_store **out, const char *url, int shards, char *err, size_t errlen)
{
    pq_store *s = calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    s->base.ops = &nf_store_postgres_ops;
    s->shards = shards;
    s->nslots = G_NGLOBAL + shards * Q_NSHARD;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = parse_url(s, url);
    shards_arg sa = {0};
    if (!rc)
        rc = nf_pq_run(s, op_shards, &sa); /* one attempt: a server down at open is an error */
    if (!rc)
        rc = nf_store_shards_check((int)sa.recorded, sa.inferred, shards, err, errlen);
    if (!rc)
        rc = nf_pq_run(s, op_schema, NULL);
    if (rc) {
        pq_close(&s->base);
        return rc;
    }
    s->opened = true;
    nf_log(SL_LOG_INFO,
           "postgres store: %s:%s/%s%s%s, %d shards, pool max_open_conns %d max_idle_conns %d "
           "max_lifetime %llds",
           s->host, s->port, s->dbname, s->schema[0] ? " schema " : "", s->schema, shards,
           s->max_open == INT_MAX ? 0 : s->max_open, s->max_idle,
           (long long)(s->max_lifetime_ms / 1000));
    *out = &s->base;
    return 0;
}

const nf_store_ops nf_store_postgres_ops = {
    .scheme = "postgres",
    .open = pq_open,
    .close = pq_close,
    .notice_add_many = pq_notice_add_many,
    .mark_read = pq_mark_read,
    .list = pq_list,
    .user_get = pq_user_get,
    .failed_bump = pq_failed_bump,
    .failed_clear = pq_failed_clear,
    .failed_count = pq_failed_count,
    .failed_list = pq_failed_list,
    .failed_reset = pq_failed_reset,
    .ping = pq_ping,
    .listener_set = pq_listener_set,
    .listener_any = pq_listener_any,
};
