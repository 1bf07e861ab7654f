/*
 * sqlite_failed.c - the SQLite notify store's failed queue (failed_queues):
 * how often each notice failed, and the list and reset behind the admin
 * API. Every operation holds the store's mutex like the rest of sqlite.c.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/error.h"
#include "sqlite_int.h"

/* failed_count of order_sn's row (0 when absent), under s->mu. */
static int failed_count_locked(sq_store *s, const char *order_sn, int *count)
{
    *count = 0;
    sqlite3_stmt *st = nf_sq_global_stmt(s, G_F_GET);
    if (!st)
        return SL_EIO;
    sqlite3_bind_text(st, 1, order_sn, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        *count = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : SL_EIO;
}

int nf_sq_failed_bump(nf_store *base, const char *order_sn, const char *type, const char *data,
                      int *count)
{
    sq_store *s = (sq_store *)base;
    char now[24];
    nf_sq_now_text(now);
    pthread_mutex_lock(&s->mu);
    int rc = nf_sq_tx(s, G_BEGIN);
    if (!rc) {
        sqlite3_stmt *st = nf_sq_global_stmt(s, G_F_BUMP);
        if (st) {
            sqlite3_bind_text(st, 1, order_sn, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, data ? data : "", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
        }
        rc = nf_sq_step_done(st);
        int got = 0;
        if (!rc && failed_count_locked(s, order_sn, &got) == 0 && count)
            *count = got;
        if (!rc)
            rc = nf_sq_tx(s, G_COMMIT);
        if (rc)
            nf_sq_tx(s, G_ROLLBACK);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int nf_sq_failed_clear(nf_store *base, const char *order_sn)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = nf_sq_global_stmt(s, G_F_CLEAR);
    if (st)
        sqlite3_bind_text(st, 1, order_sn, -1, SQLITE_STATIC);
    int rc = nf_sq_step_done(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int nf_sq_failed_count(nf_store *base, const char *order_sn, int *count)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    int rc = failed_count_locked(s, order_sn, count);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int nf_sq_failed_list(nf_store *base, int min_count, nf_failed **out, size_t *n)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->mu);
    int rc = SL_EIO;
    size_t k = 0, cap = 16;
    nf_failed *v = calloc(cap, sizeof *v);
    sqlite3_stmt *st = v ? nf_sq_global_stmt(s, G_F_LIST) : NULL;
    if (st) {
        sqlite3_bind_int(st, 1, min_count);
        int r;
        rc = 0;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            if (k == cap) {
                nf_failed *nv = realloc(v, cap * 2 * sizeof *v);
                if (!nv) {
                    rc = SL_ENOMEM;
                    break;
                }
                v = nv;
                cap *= 2;
            }
            nf_failed *f = &v[k++];
            memset(f, 0, sizeof *f);
            f->id = sqlite3_column_int64(st, 0);
            nf_sq_col_text(st, 1, f->order_sn, sizeof f->order_sn);
            nf_sq_col_text(st, 2, f->type, sizeof f->type);
            const unsigned char *d = sqlite3_column_text(st, 3);
            f->data = strdup(d ? (const char *)d : "");
            f->failed_count = sqlite3_column_int(st, 4);
            nf_sq_col_text(st, 5, f->created_at, sizeof f->created_at);
            nf_sq_col_text(st, 6, f->updated_at, sizeof f->updated_at);
        }
        if (!rc && r != SQLITE_DONE)
            rc = nf_sq_db_err(r);
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        nf_failed_free(v, k);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

int nf_sq_failed_reset(nf_store *base, int64_t id, int from, int to)
{
    sq_store *s = (sq_store *)base;
    char now[24];
    nf_sq_now_text(now);
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = nf_sq_global_stmt(s, G_F_RESET);
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, to);
        sqlite3_bind_int(st, 4, from);
    }
    int rc = nf_sq_step_done(st);
    if (!rc && sqlite3_changes(s->db) == 0)
        rc = SL_ENOENT;
    pthread_mutex_unlock(&s->mu);
    return rc;
}
