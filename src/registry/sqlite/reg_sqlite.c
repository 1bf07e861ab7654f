/*
 * reg_sqlite.c - the sqlite:// registry: the zero-set-up default.
 *
 *   sqlite:///abs/registry.db  or  sqlite://./rel/registry.db
 *   options: watch_interval=250ms  busy_timeout=5s
 *
 * One table, one row per node: (service, node_id) -> record JSON and an
 * expiry in wall-clock ms, so every process on the host that opens the file
 * sees the same nodes (WAL mode, busy timeout for concurrent writers). Rows
 * past their expiry are invisible at once and deleted by the next register.
 * `changed` (for watches): a change counter (epoch) goes up when another
 * connection wrote to the file (PRAGMA data_version), when this one did, or
 * when a row's expiry passed; each watch keeps the epoch it last looked at,
 * so every watch of one handle sees each change (one shared "changed
 * since the last call" flag went to whichever watch asked first).
 */
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/reg_int.h"

typedef struct regsq {
    sqlite3 *db;
    pthread_mutex_t mu;
    int64_t data_version;
    uint64_t epoch;      /* changes seen so far (see above) */
    int64_t next_expiry; /* wall ms of the earliest expiry read; 0 = none */
} regsq;

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS sl_registry_nodes("
    " service TEXT NOT NULL, node_id TEXT NOT NULL, record TEXT NOT NULL,"
    " expires_at INTEGER NOT NULL, PRIMARY KEY(service, node_id)) WITHOUT ROWID;";

static int sq_fail(regsq *s, int rc, const char *what)
{
    return sli_err(rc == SQLITE_BUSY ? SL_EBUSY : SL_EIO, "registry sqlite: %s: %s", what,
                   s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

static int rs_open(void **impl, sli_url *u)
{
    if (u->host[0] && strcmp(u->host, ".") != 0)
        return sli_err(SL_EINVAL,
                       "registry: sqlite:// wants sqlite:///abs/path.db or "
                       "sqlite://./rel/path.db, got host '%s'",
                       u->host);
    if (strlen(u->path) < 2)
        return sli_err(SL_EINVAL, "registry: sqlite:// needs a file path");
    int64_t busy;
    int rc = sli_url_opt_ms(u, "busy_timeout", 5000, &busy);
    if (rc != 0)
        return rc;
    char path[4096];
    snprintf(path, sizeof path, "%s%s", u->host[0] ? "." : "", u->path);
    regsq *s = calloc(1, sizeof *s);
    if (!s)
        return sli_err(SL_ENOMEM, "registry: out of memory");
    s->epoch = 1; /* a watch starts at 0: its first look reads */
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(s->db, busy > INT_MAX ? INT_MAX : (int)busy);
        rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                          NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, schema, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = sli_err(SL_EIO, "registry sqlite: cannot open %s: %s", path,
                     s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        sqlite3_close(s->db);
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->mu, NULL);
    *impl = s;
    return 0;
}

static void rs_close(void *impl)
{
    regsq *s = impl;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Run one statement with text/int binds; "t" = text, "i" = int64. */
static int exec1(regsq *s, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(s, rc, "prepare");
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't')
            sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
    }
    va_end(ap);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sq_fail(s, rc, "write");
    s->epoch++;
    return 0;
}

static int rs_put(void *impl, const char *service, const char *node_id, const char *json,
                  int64_t ttl_ms)
{
    regsq *s = impl;
    int64_t now = sli_wall_ms();
    pthread_mutex_lock(&s->mu);
    int rc =
        exec1(s,
              "INSERT INTO sl_registry_nodes(service, node_id, record, expires_at) VALUES(?,?,?,?)"
              " ON CONFLICT(service, node_id) DO UPDATE SET record=excluded.record,"
              " expires_at=excluded.expires_at",
              "ttti", service, node_id, json, now + ttl_ms);
    if (rc == 0)
        rc = exec1(s, "DELETE FROM sl_registry_nodes WHERE expires_at < ?", "i", now - 1000);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int rs_del(void *impl, const char *service, const char *node_id)
{
    regsq *s = impl;
    pthread_mutex_lock(&s->mu);
    int rc = exec1(s, "DELETE FROM sl_registry_nodes WHERE service=? AND node_id=?", "tt", service,
                   node_id);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int rs_get(void *impl, const char *service, sli_reg_rec **out, size_t *n)
{
    regsq *s = impl;
    *out = NULL;
    *n = 0;
    int64_t now = sli_wall_ms();
    sqlite3_stmt *st;
    pthread_mutex_lock(&s->mu);
    int rc = sqlite3_prepare_v2(
        s->db,
        service ? "SELECT service, node_id, record, expires_at FROM sl_registry_nodes"
                  " WHERE service=?1 AND expires_at > ?2 ORDER BY node_id"
                : "SELECT service, node_id, record, expires_at FROM sl_registry_nodes"
                  " WHERE expires_at > ?2 ORDER BY service, node_id",
        -1, &st, NULL);
    if (rc != SQLITE_OK) {
        rc = sq_fail(s, rc, "prepare");
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    if (service)
        sqlite3_bind_text(st, 1, service, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sli_reg_rec *recs = NULL;
    size_t cnt = 0, cap = 0;
    int64_t next = 0;
    int err = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            sli_reg_rec *nr = realloc(recs, cap * sizeof *nr);
            if (!nr) {
                err = SL_ENOMEM;
                break;
            }
            recs = nr;
        }
        sli_reg_rec *r = &recs[cnt++];
        r->service = strdup((const char *)sqlite3_column_text(st, 0));
        r->node_id = strdup((const char *)sqlite3_column_text(st, 1));
        r->json = strdup((const char *)sqlite3_column_text(st, 2));
        int64_t exp = sqlite3_column_int64(st, 3);
        if (!next || exp < next)
            next = exp;
        if (!r->service || !r->node_id || !r->json) {
            err = SL_ENOMEM;
            break;
        }
    }
    if (!err && rc != SQLITE_DONE)
        err = sq_fail(s, rc, "read");
    else if (err)
        err = sli_err(err, "registry: out of memory");
    sqlite3_finalize(st);
    /* a read of one service keeps an earlier expiry of the others */
    if (!service || !s->next_expiry || (next && next < s->next_expiry))
        s->next_expiry = next;
    pthread_mutex_unlock(&s->mu);
    if (err) {
        sli_reg_recs_free(recs, cnt);
        return err;
    }
    *out = recs;
    *n = cnt;
    return 0;
}

static bool rs_changed(void *impl, uint64_t *seen)
{
    regsq *s = impl;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            int64_t v = sqlite3_column_int64(st, 0);
            if (v != s->data_version)
                s->epoch++;
            s->data_version = v;
        } else {
            s->epoch++; /* cannot tell: look */
        }
        sqlite3_finalize(st);
    } else {
        s->epoch++;
    }
    if (s->next_expiry && sli_wall_ms() >= s->next_expiry) {
        s->epoch++;
        s->next_expiry = 0; /* the watches' reads find the next one */
    }
    bool changed = s->epoch != *seen;
    *seen = s->epoch;
    pthread_mutex_unlock(&s->mu);
    return changed;
}

const sli_reg_backend sli_reg_sqlite_backend = {
    .scheme = "sqlite",
    .open = rs_open,
    .close = rs_close,
    .put = rs_put,
    .del = rs_del,
    .get = rs_get,
    .changed = rs_changed,
    .watch_interval_ms = 200,
};
