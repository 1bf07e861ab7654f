/*
 * store.h - the notification store: a small ops table behind a URL scheme, so
 * SQL servers (mysql://, postgres://) drop in beside sqlite://.
 *
 * Tables: th_notice_1..N (sharded by uid % N + 1; order_sn UNIQUE is the
 * message UUID, so storing is idempotent), user (uid, nick,
 * notification_count = unread notices, never negative) and failed_queues
 * (retry bookkeeping of queue messages that failed to apply).
 *
 * Threads: a store handle may be used from any number of threads at once.
 * Errors: 0 or a negative SL_E* code (SL_EIO for database failures,
 * SL_EBUSY when the database stayed locked past the busy timeout).
 */
#ifndef NF_STORE_H
#define NF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nf_notice {
    int64_t id;
    char order_sn[128];
    int64_t uid;
    int type;
    char *data; /* owned; freed by nf_notices_free */
    int status; /* 0 unread, 1 read */
    char create_time[24], created_at[24], updated_at[24];
} nf_notice;

typedef struct nf_failed {
    int64_t id;
    char order_sn[128];
    char type[16]; /* "notify" | "read" */
    char *data;    /* owned: the queue payload */
    int failed_count;
    char created_at[24], updated_at[24];
} nf_failed;

typedef struct nf_list_query {
    int64_t uid;
    int type;       /* 0: every type */
    int page, size; /* page from 1 */
    int64_t cursor; /* > 0: ids below cursor (page ignored) */
} nf_list_query;

typedef struct nf_store nf_store;

typedef struct nf_store_ops {
    const char *scheme;
    /* err[errlen] gets a sentence for the operator when open fails with a
     * reason worth more than the code (a shard count mismatch). */
    int (*open)(nf_store **out, const char *url, int shards, char *err, size_t errlen);
    void (*close)(nf_store *s);
    /* v[0..n) in one transaction (n > 0, every uid >= 0) */
    int (*notice_add_many)(nf_store *s, const nf_notice *v, size_t n, bool *inserted);
    int (*mark_read)(nf_store *s, int64_t uid, int type, int64_t id, int64_t *changed);
    int (*list)(nf_store *s, const nf_list_query *q, nf_notice **out, size_t *n, int64_t *unread);
    int (*user_get)(nf_store *s, int64_t uid, char *nick, size_t nlen, int64_t *count);
    /* optional (NULL: user_get per uid): counts[i] of uids[i], 0 for no row */
    int (*user_counts)(nf_store *s, const int64_t *uids, size_t n, int64_t *counts);
    int (*failed_bump)(nf_store *s, const char *order_sn, const char *type, const char *data,
                       int *count);
    int (*failed_clear)(nf_store *s, const char *order_sn);
    int (*failed_count)(nf_store *s, const char *order_sn, int *count);
    int (*failed_list)(nf_store *s, int min_count, nf_failed **out, size_t *n);
    int (*failed_reset)(nf_store *s, int64_t id, int from, int to);
    int (*ping)(nf_store *s);
    /* optional (NULL: SL_ENOTSUP): see nf_store_listener_set */
    int (*listener_set)(nf_store *s, const char *instance, int64_t until_ms, int64_t now_ms);
    int (*listener_any)(nf_store *s, int64_t now_ms, bool *any);
} nf_store_ops;

struct nf_store {
    const nf_store_ops *ops;
};

/* Open the store named by url ("sqlite://PATH", "mysql://...",
 * "postgres://..."), creating
 * tables as needed. Errors: SL_ENOTSUP (unknown scheme), SL_EINVAL,
 * SL_EBADOPT (unknown or bad URL option), SL_EIO, and SL_ECORRUPT when the
 * store was created with another shard count than `shards`.
 *
 * The shard count is recorded in the store (table nf_meta, name "shards")
 * the first time it is opened; a store from before that record is taken to
 * have as many shards as its highest th_notice_N table. Opening with another
 * count would file every uid under another table and hide the notices
 * stored before, so it is refused: err[errlen] (optional) then says what
 * the store holds and what was asked. */
int nf_store_open(nf_store **out, const char *url, int shards, char *err, size_t errlen);

/* For the implementations: compare the recorded (or inferred) shard count
 * with the asked one; 0 when they agree, else SL_ECORRUPT and err filled. */
int nf_store_shards_check(int recorded, bool inferred, int asked, char *err, size_t errlen);
void nf_store_close(nf_store *s);

/* Store n (n->order_sn, uid, type, data, create_time) unless a notice with
 * the same order_sn is stored; a stored one also creates the user row on the
 * first notice and adds one to notification_count, in one transaction.
 * *inserted (optional) says whether it was new. */
int nf_store_notice_add(nf_store *s, const nf_notice *n, bool *inserted);
/* nf_store_notice_add for v[0..n) in ONE transaction: all are stored (or
 * found stored: inserted[i] says which were new) or, on error, none. */
int nf_store_notice_add_many(nf_store *s, const nf_notice *v, size_t n, bool *inserted);
/* Mark read: the notice id of uid when id > 0, else every unread notice of
 * uid of the type (type 0: every type). Lowers notification_count by the rows
 * changed (never below 0). *changed (optional) gets the row count. */
int nf_store_mark_read(nf_store *s, int64_t uid, int type, int64_t id, int64_t *changed);
/* Newest first. *out is an array of *n notices (free with nf_notices_free);
 * *unread is the number of unread notices of uid (of the type, if given). */
int nf_store_list(nf_store *s, const nf_list_query *q, nf_notice **out, size_t *n, int64_t *unread);
void nf_notices_free(nf_notice *v, size_t n);
/* SL_ENOENT when the user has no row. nick is copied into nick[nlen]. */
int nf_store_user_get(nf_store *s, int64_t uid, char *nick, size_t nlen, int64_t *count);
/* The notification_count of each of uids[0..n) into counts (0 for a user
 * without a row), read together (one read transaction where the store has
 * them): the live-update events of a batch need every one. */
int nf_store_user_counts(nf_store *s, const int64_t *uids, size_t n, int64_t *counts);
/* Record one more failure of order_sn (insert with 1 or increment); *count
 * gets the new failed_count. */
int nf_store_failed_bump(nf_store *s, const char *order_sn, const char *type, const char *data,
                         int *count);
/* Forget order_sn's failures (after it was applied). Absent is not an error. */
int nf_store_failed_clear(nf_store *s, const char *order_sn);
/* failed_count of the row for order_sn, 0 when there is none. */
int nf_store_failed_count(nf_store *s, const char *order_sn, int *count);
/* Rows with failed_count >= min_count, oldest first; free with nf_failed_free. */
int nf_store_failed_list(nf_store *s, int min_count, nf_failed **out, size_t *n);
void nf_failed_free(nf_failed *v, size_t n);
/* Set failed_count of row id from `from` to `to` (a retry takes the row it
 * listed back to 0 before it requeues it, and gives it back if that fails).
 * SL_ENOENT when no row has that id and count: another retry, or the
 * consumer, changed it since. */
int nf_store_failed_reset(nf_store *s, int64_t id, int from, int to);
/* Live-update listeners (table nf_listeners): a server instance with
 * streams open records itself as listening until until_ms (wall clock,
 * milliseconds; 0 removes its row, and the rows of instances that expired
 * before now_ms), and whoever makes live-update events asks whether any
 * instance listens at now_ms, so that nobody makes and queues events that
 * no stream would show. SL_ENOTSUP from a store without the table (then
 * events are always made). */
int nf_store_listener_set(nf_store *s, const char *instance, int64_t until_ms, int64_t now_ms);
int nf_store_listener_any(nf_store *s, int64_t now_ms, bool *any);
/* 0 when the database answers. */
int nf_store_ping(nf_store *s);

/* The SQLite implementation's ops (store/sqlite.c). */
extern const nf_store_ops nf_store_sqlite_ops;
/* The MySQL/MariaDB implementation's ops (store/mysql.c):
 * mysql://USER:PASS@HOST[:PORT]/DB[?max_open_conns=N&max_idle_conns=N&...]. */
extern const nf_store_ops nf_store_mysql_ops;
/* The PostgreSQL implementation's ops (store/postgres.c):
 * postgres://USER:PASS@HOST[:PORT]/DB[?max_open_conns=N&schema=NAME&...]. */
extern const nf_store_ops nf_store_postgres_ops;

#endif
