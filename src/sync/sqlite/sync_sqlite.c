/*
 * sync_sqlite.c - the sqlite:// sync backend: locks for the processes of
 * one host, in a table
 *   sl_locks(name PRIMARY KEY, fence, holder, expires)
 * of a WAL-mode file. fence is the last token issued for name (it only
 * grows: rows are never deleted, a release sets holder to 0); holder is the
 * token holding it (0: free); expires is wall-clock ms. Taking a lock is
 * one BEGIN IMMEDIATE transaction (read, decide, write), so two processes
 * can never both see it free. synchronous=FULL: a token once handed out is
 * never handed out again, even after a power cut.
 *
 * URL: sqlite:///abs/path.db or sqlite://./rel.db, ?busy_timeout=10s.
 */
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/sync_int.h"

enum { Q_BEGIN, Q_GET, Q_PUT, Q_COMMIT, Q_ROLLBACK, Q_REFRESH, Q_FREE, Q_N };

static const char *const sqls[Q_N] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_GET] = "SELECT fence, holder, expires FROM sl_locks WHERE name=?1",
    [Q_PUT] = "INSERT INTO sl_locks(name,fence,holder,expires) VALUES(?1,?2,?2,?3)"
              " ON CONFLICT(name) DO UPDATE SET fence=?2, holder=?2, expires=?3",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_REFRESH] = "UPDATE sl_locks SET expires=?3 WHERE name=?1 AND holder=?2 AND expires>?4",
    /* a lock past its TTL was lost even if nobody took it since: SL_ESTATE,
       as on redis:// and etcd:// */
    [Q_FREE] = "UPDATE sl_locks SET holder=0 WHERE name=?1 AND holder=?2 AND expires>?3",
};

typedef struct sqsync {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *q[Q_N];
    char *path;
} sqsync;

static int fail(sqsync *s, const char *what)
{
    int code = sqlite3_extended_errcode(s->db) & 0xff;
    return sli_err(code == SQLITE_BUSY ? SL_EBUSY : SL_EIO, "sync: sqlite %s: %s: %s", s->path,
                   what, sqlite3_errmsg(s->db));
}

static void q_close(void *impl)
{
    sqsync *s = impl;
    if (!s)
        return;
    for (int i = 0; i < Q_N; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

static int q_open(void **impl, sli_url *u)
{
    int64_t busy;
    int rc = sli_url_opt_ms(u, "busy_timeout", 10000, &busy);
    if (rc < 0)
        return rc;
    if (u->host[0] && strcmp(u->host, ".") != 0)
        return sli_err(SL_EINVAL,
                       "sync: sqlite:// wants sqlite:///abs/path.db or "
                       "sqlite://./rel/path.db, got host '%s'",
                       u->host);
    if (!u->path[0] || strcmp(u->path, "/") == 0)
        return sli_err(SL_EINVAL, "sync: sqlite:// needs a file path ('%s')", u->raw);
    sqsync *s = calloc(1, sizeof *s);
    if (!s || !(s->path = malloc(strlen(u->path) + 2))) {
        free(s);
        return sli_err(SL_ENOMEM, "sync: out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    sprintf(s->path, "%s%s", u->host[0] ? "." : "", u->path);
    if (sqlite3_open_v2(s->path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = s->db ? fail(s, "open") : sli_err(SL_ENOMEM, "sync: out of memory");
        q_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, busy > INT_MAX ? INT_MAX : (int)busy);
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS sl_locks(name TEXT PRIMARY KEY,"
                     " fence INTEGER NOT NULL, holder INTEGER NOT NULL, expires INTEGER NOT NULL)",
                     NULL, NULL, NULL) != SQLITE_OK) {
        rc = fail(s, "schema");
        q_close(s);
        return rc;
    }
    for (int i = 0; i < Q_N; i++)
        if (sqlite3_prepare_v2(s->db, sqls[i], -1, &s->q[i], NULL) != SQLITE_OK) {
            rc = fail(s, "prepare");
            q_close(s);
            return rc;
        }
    *impl = s;
    return 0;
}

/* Step a statement that returns no row. */
static int run(sqsync *s, int q, const char *what)
{
    int rc = sqlite3_step(s->q[q]) == SQLITE_DONE ? 0 : fail(s, what);
    sqlite3_reset(s->q[q]);
    return rc;
}

static int take(sqsync *s, const char *name, int64_t ttl, uint64_t *token)
{
    int64_t now = sli_wall_ms();
    sqlite3_stmt *g = s->q[Q_GET];
    sqlite3_bind_text(g, 1, name, -1, SQLITE_STATIC);
    int step = sqlite3_step(g);
    int64_t fence = 0, holder = 0, expires = 0;
    if (step == SQLITE_ROW) {
        fence = sqlite3_column_int64(g, 0);
        holder = sqlite3_column_int64(g, 1);
        expires = sqlite3_column_int64(g, 2);
    }
    sqlite3_reset(g);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return fail(s, "read lock");
    if (holder != 0 && expires > now)
        return SL_EBUSY;
    sqlite3_stmt *p = s->q[Q_PUT];
    sqlite3_bind_text(p, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(p, 2, fence + 1);
    sqlite3_bind_int64(p, 3, now + ttl);
    int rc = run(s, Q_PUT, "take lock");
    if (rc == 0)
        *token = (uint64_t)(fence + 1);
    return rc;
}

static int q_try(void *impl, const char *name, int64_t ttl, uint64_t *token)
{
    sqsync *s = impl;
    pthread_mutex_lock(&s->mu);
    int rc = run(s, Q_BEGIN, "begin");
    if (rc == 0) {
        rc = take(s, name, ttl, token);
        if (rc == 0)
            rc = run(s, Q_COMMIT, "commit");
        if (rc < 0)
            sqlite3_step(s->q[Q_ROLLBACK]), sqlite3_reset(s->q[Q_ROLLBACK]);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int update(sqsync *s, int q, const char *name, uint64_t token, int64_t ttl)
{
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->q[q];
    int64_t now = sli_wall_ms();
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)token);
    if (q == Q_REFRESH) {
        sqlite3_bind_int64(st, 3, now + ttl);
        sqlite3_bind_int64(st, 4, now);
    } else {
        sqlite3_bind_int64(st, 3, now);
    }
    int rc = run(s, q, q == Q_REFRESH ? "refresh" : "release");
    if (rc == 0 && sqlite3_changes(s->db) == 0)
        rc = sli_err(SL_ESTATE, "sync: lock '%s' is no longer held by token %llu", name,
                     (unsigned long long)token);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int q_refresh(void *impl, const char *name, uint64_t token, int64_t ttl)
{
    return update(impl, Q_REFRESH, name, token, ttl);
}

static int q_unlock(void *impl, const char *name, uint64_t token)
{
    return update(impl, Q_FREE, name, token, 0);
}

const sli_sync_ops sli_sync_sqlite = {
    .scheme = "sqlite",
    .open = q_open,
    .try_lock = q_try,
    .refresh = q_refresh,
    .unlock = q_unlock,
    .close = q_close,
};
