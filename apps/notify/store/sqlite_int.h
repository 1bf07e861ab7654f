/*
 * sqlite_int.h - what the SQLite notify store's files share: the store
 * itself (sqlite.c: open, notices, users), its failed-queue rows
 * (sqlite_failed.c) and its checkpoints (sqlite_wal.h). Internal to them.
 */
#ifndef NF_STORE_SQLITE_INT_H
#define NF_STORE_SQLITE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlite_wal.h"
#include "store.h"

/* The statements every shard shares, prepared once (nf_sq_global_stmt). */
enum {
    G_USER_DEC,
    G_USER_GET,
    G_F_BUMP,
    G_F_GET,
    G_F_CLEAR,
    G_F_LIST,
    G_F_RESET,
    G_BEGIN,
    G_COMMIT,
    G_ROLLBACK,
    G_PING,
    G_L_SET,
    G_L_DEL,
    G_L_ANY,
    G_NGLOBAL
};

typedef struct sq_store {
    nf_store base;
    pthread_mutex_t mu;
    sqlite3 *db;
    int shards;
    sqlite3_stmt **shard_st; /* [shards * Q_NSHARD] */
    sqlite3_stmt **multi_st; /* [(shards + 1) * M_NSIZES]: multi-row writes (multi_stmt) */
    sqlite3_stmt *global_st[G_NGLOBAL];
    int64_t *scratch;   /* notice_add_many's arrays (under mu), kept: see scratch_get */
    size_t scratch_len; /* int64_t's */
    char *path;
    nf_sqlite_wal wal; /* the checkpoints (sqlite_wal.c) */
} sq_store;

/* Local time as "YYYY-MM-DD HH:MM:SS" (the original's DATETIME columns). */
void nf_sq_now_text(char out[24]);
/* SL_EBUSY for SQLite's busy and locked codes, else SL_EIO. */
int nf_sq_db_err(int rc);
/* Global statement q, prepared on first use, reset and unbound; NULL when
 * it cannot be prepared. Under s->mu. */
sqlite3_stmt *nf_sq_global_stmt(sq_store *s, int q);
/* Run a statement that returns no rows (st NULL: SL_EIO). */
int nf_sq_step_done(sqlite3_stmt *st);
/* G_BEGIN, G_COMMIT or G_ROLLBACK. */
int nf_sq_tx(sq_store *s, int which);
/* Column i's text into out ("" for NULL). */
void nf_sq_col_text(sqlite3_stmt *st, int i, char *out, size_t len);

/* The failed-queue operations of nf_store_ops (sqlite_failed.c). */
int nf_sq_failed_bump(nf_store *base, const char *order_sn, const char *type, const char *data,
                      int *count);
int nf_sq_failed_clear(nf_store *base, const char *order_sn);
int nf_sq_failed_count(nf_store *base, const char *order_sn, int *count);
int nf_sq_failed_list(nf_store *base, int min_count, nf_failed **out, size_t *n);
int nf_sq_failed_reset(nf_store *base, int64_t id, int from, int to);

#endif
