/*
 * store_sqlite.c - the sqlite:// store (the default): one table
 *   sl_store(db, tbl, key, value, meta, expiry, PRIMARY KEY(db, tbl, key))
 * WITHOUT ROWID in a WAL-mode file, so any number of processes can share it
 * (busy_timeout waits out the others' writes). One connection per handle,
 * its prepared statements reused under a mutex. Keys compare with SQLite's
 * BINARY collation (byte order); a prefix read is a range scan on the
 * primary key. Expired rows are filtered by every read and deleted by a
 * sweep every 1024 writes of the handle.
 *
 * URL: sqlite:///abs/path.db or sqlite://./rel/path.db, options
 * ?sync=off|normal|full (default normal) and ?busy_timeout=5s.
 */
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

enum { ST_PUT, ST_GET, ST_RANGE, ST_KEYS, ST_DEL, ST_SWEEP, ST_N };

static const char *const sql_text[ST_N] = {
    [ST_PUT] =
        "INSERT OR REPLACE INTO sl_store(db,tbl,key,value,meta,expiry) VALUES(?1,?2,?3,?4,?5,?6)",
    [ST_GET] = "SELECT key,value,meta,expiry FROM sl_store WHERE db=?1 AND tbl=?2 AND key=?3"
               " AND (expiry=0 OR expiry>?4)",
    [ST_RANGE] = "SELECT key,value,meta,expiry FROM sl_store WHERE db=?1 AND tbl=?2 AND key>=?3"
                 " AND (?5 IS NULL OR key<?5) AND (expiry=0 OR expiry>?4) ORDER BY key"
                 " LIMIT ?6 OFFSET ?7",
    [ST_KEYS] = "SELECT key,NULL,NULL,expiry FROM sl_store WHERE db=?1 AND tbl=?2 AND key>=?3"
                " AND (?5 IS NULL OR key<?5) AND (expiry=0 OR expiry>?4) ORDER BY key"
                " LIMIT ?6 OFFSET ?7",
    [ST_DEL] = "DELETE FROM sl_store WHERE db=?1 AND tbl=?2 AND key=?3",
    [ST_SWEEP] = "DELETE FROM sl_store WHERE expiry>0 AND expiry<=?1",
};

typedef struct sqstore {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *st[ST_N];
    char *path;
    unsigned writes;
} sqstore;

static int sq_fail(sqstore *s, const char *what)
{
    int code = sqlite3_extended_errcode(s->db) & 0xff;
    int rc = code == SQLITE_BUSY || code == SQLITE_LOCKED      ? SL_EBUSY
             : code == SQLITE_READONLY                         ? SL_EREADONLY
             : code == SQLITE_CORRUPT || code == SQLITE_NOTADB ? SL_ECORRUPT
                                                               : SL_EIO;
    return sli_err(rc, "store: sqlite %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static void s_close(void *impl)
{
    sqstore *s = impl;
    if (!s)
        return;
    for (int i = 0; i < ST_N; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

static int s_setup(sqstore *s, int sync, int64_t busy_ms)
{
    static const char *const syncs[] = {"OFF", "NORMAL", "FULL"};
    char sql[512];
    sqlite3_busy_timeout(s->db, busy_ms > INT_MAX ? INT_MAX : (int)busy_ms);
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
             "CREATE TABLE IF NOT EXISTS sl_store(db TEXT NOT NULL, tbl TEXT NOT NULL,"
             " key TEXT NOT NULL, value BLOB NOT NULL, meta BLOB, expiry INTEGER NOT NULL,"
             " PRIMARY KEY(db, tbl, key)) WITHOUT ROWID;",
             syncs[sync]);
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sq_fail(s, "schema");
    for (int i = 0; i < ST_N; i++)
        if (sqlite3_prepare_v3(s->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK)
            return sq_fail(s, "prepare");
    return 0;
}

static int s_open(void **impl, sli_url *u)
{
    int sync = 1, rc;
    int64_t busy = 5000;
    if ((rc = sli_url_opt_enum(u, "sync", "off|normal|full", 1, &sync)) < 0 ||
        (rc = sli_url_opt_ms(u, "busy_timeout", 5000, &busy)) < 0)
        return rc;
    if (u->host[0] && strcmp(u->host, ".") != 0)
        return sli_err(SL_EINVAL,
                       "store: sqlite:// wants sqlite:///abs/path.db or sqlite://./rel/path.db, "
                       "got host '%s'",
                       u->host);
    if (!u->path[0] || strcmp(u->path, "/") == 0)
        return sli_err(SL_EINVAL, "store: sqlite:// needs a file path ('%s')", u->raw);
    sqstore *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "store: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    size_t l = strlen(u->path) + 2;
    if (!(s->path = malloc(l))) {
        s_close(s);
        return sli_err(SL_ENOMEM, "store: out of memory");
    }
    snprintf(s->path, l, "%s%s", u->host[0] ? "." : "", u->path);
    if (sqlite3_open_v2(s->path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = s->db ? sq_fail(s, "open") : sli_err(SL_ENOMEM, "store: out of memory");
        s_close(s);
        return rc;
    }
    if ((rc = s_setup(s, sync, busy)) < 0) {
        s_close(s);
        return rc;
    }
    *impl = s;
    return 0;
}

static int step_done(sqstore *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int res = rc == SQLITE_DONE ? 0 : sq_fail(s, what);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

static int s_write(void *impl, const char *db, const char *tbl, const char *key, const void *val,
                   size_t vlen, const void *meta, size_t mlen, int64_t exp)
{
    sqstore *s = impl;
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (++s->writes % 1024 == 0) {
        sqlite3_bind_int64(s->st[ST_SWEEP], 1, sli_wall_ms());
        rc = step_done(s, s->st[ST_SWEEP], "sweep");
    }
    sqlite3_stmt *st = s->st[ST_PUT];
    sqlite3_bind_text(st, 1, db, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tbl, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 4, val, vlen, SQLITE_STATIC);
    if (mlen)
        sqlite3_bind_blob64(st, 5, meta, mlen, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_int64(st, 6, exp);
    if (rc == 0)
        rc = step_done(s, st, "write");
    else
        sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int s_query(void *impl, const sli_store_q *q, sli_store_rows *rows)
{
    sqstore *s = impl;
    char *end = NULL;
    if (!q->exact && sli_store_prefix_end(q->key, &end) < 0)
        return SL_ENOMEM;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->st[q->exact ? ST_GET : q->keys_only ? ST_KEYS : ST_RANGE];
    sqlite3_bind_text(st, 1, q->db, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, q->tbl, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, q->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, q->now_ms);
    if (!q->exact) {
        if (end)
            sqlite3_bind_text(st, 5, end, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, q->limit ? (sqlite3_int64)q->limit : -1);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)q->offset);
    }
    int rc = 0, step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = sli_store_rows_add(rows, (const char *)sqlite3_column_text(st, 0),
                                (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_blob(st, 1),
                                (size_t)sqlite3_column_bytes(st, 1), sqlite3_column_blob(st, 2),
                                (size_t)sqlite3_column_bytes(st, 2), sqlite3_column_int64(st, 3));
    if (rc == 0 && step != SQLITE_DONE)
        rc = sq_fail(s, "read");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->mu);
    rows->paged = true;
    free(end);
    return rc;
}

static int s_del(void *impl, const char *db, const char *tbl, const char *key)
{
    sqstore *s = impl;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->st[ST_DEL];
    sqlite3_bind_text(st, 1, db, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tbl, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    int rc = step_done(s, st, "delete");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

const sli_store_ops sli_store_sqlite = {
    .scheme = "sqlite",
    .open = s_open,
    .write = s_write,
    .query = s_query,
    .del = s_del,
    .close = s_close,
};
