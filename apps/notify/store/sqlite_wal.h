/*
 * sqlite_wal.h - the SQLite notify store's WAL checkpoints, on a thread and
 * a connection of their own (sqlite_wal.c). Internal to sqlite.c.
 */
#ifndef NF_STORE_SQLITE_WAL_H
#define NF_STORE_SQLITE_WAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct nf_sqlite_wal {
    sqlite3 *db; /* the store's connection (guarded by *db_mu) */
    pthread_mutex_t *db_mu;
    const char *path;    /* the database file (the store's string) */
    const char *sync;    /* the synchronous pragma's value, for ck_db too */
    _Atomic int pages;   /* pages in the WAL after the last commit (the WAL hook) */
    pthread_mutex_t mu;  /* guards due, stop, begun, ended; ck_db is the thread's */
    pthread_cond_t cond; /* to the thread: a checkpoint is due, or the store closes */
    pthread_cond_t end;  /* from the thread: a checkpoint ended */
    bool due, stop, started;
    uint64_t begun, ended; /* checkpoints begun and ended so far */
    pthread_t thread;
    sqlite3 *ck_db; /* the checkpoints' connection, opened when first needed */
    bool ck_ready;  /* ck_db has its pragmas */
} nf_sqlite_wal;

/* Before anything else (nf_sqlite_wal_stop may follow at once). */
void nf_sqlite_wal_init(nf_sqlite_wal *w);
/* Watch db's WAL (its automatic checkpoint is replaced) and start the
 * checkpoint thread. path and sync must outlive w. */
void nf_sqlite_wal_start(nf_sqlite_wal *w, sqlite3 *db, pthread_mutex_t *db_mu, const char *path,
                         const char *sync);
/* After a write, without *db_mu: a checkpoint is due once the WAL is
 * large enough; waits only when the writes outrun the checkpoints. */
void nf_sqlite_wal_after_write(nf_sqlite_wal *w);
/* Stop the thread and close its connection, before the store's closes. */
void nf_sqlite_wal_stop(nf_sqlite_wal *w);

#endif
