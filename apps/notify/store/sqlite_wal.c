/*
 * sqlite_wal.c - the SQLite notify store's checkpoints (see sqlite.c's
 * header for why): SQLite's automatic checkpoint on the store's connection
 * is replaced by a WAL hook that counts the WAL's pages; once it holds
 * CHECKPOINT_PAGES, a PASSIVE checkpoint is due on a thread and a
 * connection of its own, so neither the writer nor the readers wait for the
 * copy and its fsync.
 */
#include <stdio.h>

#include "sqlite_wal.h"

#define CHECKPOINT_PAGES                                                                           \
    4096 /* WAL pages between checkpoints (SQLite's automatic ones: 1000).                         \
            Against 2048, in alternating pairs under bench_notify's load: mem://                   \
            req/s +6%, durable +4-6% (a hot page is copied once per checkpoint),                   \
            the POSTs' p99 on the durable queue 10 -> 14 ms (a checkpoint's fsync                  \
            holds up the queue's commits longer); 8192 took the e2e delay's p99                    \
            from ~11 to ~25-30 ms */
#define WAL_MAX_PAGES                                                                              \
    (4 * CHECKPOINT_PAGES) /* the writer waits for a checkpoint beyond this                        \
                 (64 MiB of 4 KiB pages, what the WAL file is kept at).                            \
                 At 1.5 x CHECKPOINT_PAGES a batch of ~2000 notices, ~3000                         \
                 pages, made every commit wait for a whole checkpoint: on a                        \
                 mem:// queue the consumer then stored ~63k notices/s, with                        \
                 this bound ~85k */

/* sqlite3_wal_hook: after every commit on the main connection (its mutex
 * held), with the number of pages the WAL now holds. Replaces SQLite's
 * automatic checkpoint on that connection. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db, (void)name;
    atomic_store_explicit(&((nf_sqlite_wal *)arg)->pages, pages, memory_order_relaxed);
    return SQLITE_OK;
}

/* One checkpoint: copy the WAL into the database (PASSIVE: as far as no
 * reader still needs, without waiting for anyone) on the checkpoint
 * connection. If that connection cannot be opened, the main one does it,
 * as SQLite's automatic checkpoint would. On the checkpoint thread. */
static void checkpoint(nf_sqlite_wal *w)
{
    if (!w->ck_db &&
        sqlite3_open_v2(w->path, &w->ck_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK) {
        sqlite3_close(w->ck_db);
        w->ck_db = NULL;
    }
    if (w->ck_db && !w->ck_ready) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA synchronous=%s;", w->sync);
        w->ck_ready = sqlite3_exec(w->ck_db, pragma, NULL, NULL, NULL) == SQLITE_OK;
    }
    if (w->ck_db && w->ck_ready) {
        sqlite3_wal_checkpoint_v2(w->ck_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else {
        pthread_mutex_lock(w->db_mu);
        sqlite3_wal_checkpoint_v2(w->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_unlock(w->db_mu);
    }
}

/* The checkpoint thread: runs a checkpoint whenever one is due, so that
 * neither the writer (the notify consumer) nor its readers wait for the
 * copy and its fsync; a store shared by several processes checkpoints in
 * each of them. Writes that come meanwhile only make the next one due. */
static void *checkpoint_main(void *arg)
{
    nf_sqlite_wal *w = arg;
    pthread_setname_np(pthread_self(), "nf-checkpoint");
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        if (!w->due) {
            pthread_cond_wait(&w->cond, &w->mu);
            continue;
        }
        w->due = false;
        uint64_t n = ++w->begun;
        pthread_mutex_unlock(&w->mu);
        checkpoint(w);
        pthread_mutex_lock(&w->mu);
        w->ended = n;
        pthread_cond_broadcast(&w->end);
    }
    w->ended = UINT64_MAX; /* nobody waits for a checkpoint any more */
    pthread_cond_broadcast(&w->end);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* After a write, without the store's mutex: once the WAL holds
 * CHECKPOINT_PAGES, a checkpoint is due on the checkpoint thread (or runs
 * here when that thread could not be started). The WAL restarts at the
 * first write after a checkpoint that copied all of it; should writes
 * outrun the checkpoints (the WAL past WAL_MAX_PAGES), the writer waits
 * for one that began after its own commit, so that the WAL stays bounded. */
void nf_sqlite_wal_after_write(nf_sqlite_wal *w)
{
    int pages = atomic_load_explicit(&w->pages, memory_order_relaxed);
    if (pages < CHECKPOINT_PAGES)
        return;
    pthread_mutex_lock(&w->mu);
    if (!w->started) {
        atomic_store_explicit(&w->pages, 0, memory_order_relaxed);
        checkpoint(w);
    } else {
        uint64_t want = w->begun + 1; /* the next one to begin: after this commit */
        w->due = true;
        pthread_cond_signal(&w->cond);
        while (pages >= WAL_MAX_PAGES && w->ended < want)
            pthread_cond_wait(&w->end, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
}

void nf_sqlite_wal_init(nf_sqlite_wal *w)
{
    *w = (nf_sqlite_wal){0};
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_cond_init(&w->end, NULL);
}

void nf_sqlite_wal_start(nf_sqlite_wal *w, sqlite3 *db, pthread_mutex_t *db_mu, const char *path,
                         const char *sync)
{
    w->db = db;
    w->db_mu = db_mu;
    w->path = path;
    w->sync = sync;
    sqlite3_wal_hook(db, wal_hook, w);
    w->started = pthread_create(&w->thread, NULL, checkpoint_main, w) == 0;
}

void nf_sqlite_wal_stop(nf_sqlite_wal *w)
{
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        w->started = false;
    }
    sqlite3_close(w->ck_db);
    w->ck_db = NULL;
    pthread_cond_destroy(&w->end);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
}
