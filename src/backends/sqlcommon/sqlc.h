/*
 * sqlc.h - internals shared by the SQL backends (sqlite://, postgres://,
 * mysql://): what is the same logic whatever the database.
 *
 *   sqlc_meta.c  message metadata as one blob
 *   sqlc_opts.c  the options every server backend reads the same way
 *   sqlc_pub.c   the publisher side: one connection, publishes take
 *                turns, a dead connection replaced once
 *   sqlc_sub.c   the subscriber side of a claim-based SQL queue: local
 *                buffer of claimed messages, ack/nack hooks (sync or
 *                batched with the next claim), next() with wake-ups and
 *                polling with backoff, hand-back at unsubscribe.
 * The database part of both comes through one sqlc_db_ops per backend.
 */
#ifndef SQLC_H
#define SQLC_H

#include <pthread.h>
#include <stddef.h>

#include "core/backend.h"
#include "core/internal.h"

/* Message metadata as one blob of "key\0value\0" pairs in insertion order
 * (sqlc_meta.c). encode: *out = NULL, *len = 0 when m has none; the caller
 * frees *out. decode: SL_ECORRUPT on a malformed blob. */
int sli_sqlc_meta_encode(const sl_msg *m, unsigned char **out, size_t *len);
int sli_sqlc_meta_decode(sl_msg *m, const unsigned char *p, size_t len);

/* ---------- options (sqlc_opts.c) ---------- */

/* What every server SQL backend reads from its URL query:
 *   connect_timeout=DUR (5s)  ack_deadline=DUR (30s)  poll=DUR (def_poll)
 *   ack=sync|batch (sync)     retention=acked|DUR (acked)
 *   linger=DUR (def_linger)   after a claim that came back with fewer
 *                             messages than there was room for, the next
 *                             claim of that subscription waits this long
 *                             (fewer, fuller claims: fewer round trips and
 *                             commits when the stream is steady; 0 = claim
 *                             again at once). Buffered messages are handed
 *                             out meanwhile; an idle subscription polls.
 *   schema=NAME ([a-z_][a-z0-9_]*, at most 63 bytes; "" when absent)
 * what names the backend in error messages. */
typedef struct sqlc_opts {
    int64_t connect_timeout_ms, ack_deadline, poll_ms, retention_ms, linger_ms;
    bool ack_batch;
    char schema[64];
} sqlc_opts;
int sli_sqlc_opts_read(sli_url *u, const char *what, int64_t def_poll_ms, int64_t def_linger_ms,
                       sqlc_opts *o);

/* SL_FEAT_LATE_SUBSCRIBERS promises that a subscription opened later gets
 * every earlier message, even those other groups acked: with the default
 * retention=acked they are deleted, so only retention=DURATION declares it
 * (as sqlite:// does). Clears the flag in *features otherwise. */
void sli_sqlc_late_feature(const sqlc_opts *o, unsigned *features);

/* ---------- the subscriber engine (sqlc_sub.c) ---------- */

#define SQLC_CLAIM_MAX 256 /* messages in one claim */

/* msg_tx: where the message sits in its log besides msg_id, for a backend
 * whose log is not in msg_id order (postgres://: the publishing
 * transaction's id); 0 elsewhere. Handed back unchanged in its settle. */
typedef struct sqlc_claimed {
    sl_msg *m;
    int64_t msg_id, msg_tx;
    unsigned deliveries;
} sqlc_claimed;

/* An ack (nack false) or nack of delivery `deliveries` of msg_id by owner. */
typedef struct sqlc_settle {
    int64_t msg_id, msg_tx, owner;
    unsigned deliveries;
    bool nack;
    int64_t delay_ms;
} sqlc_settle;

/* A change counter with a condition variable: next() reads it before it
 * looks for work and sleeps until it moves (a local ack, a notification)
 * or a deadline. */
typedef struct sqlc_wake {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint32_t seq;
    bool stop;
} sqlc_wake;
void sli_sqlc_wake_init(sqlc_wake *w);
void sli_sqlc_wake_fini(sqlc_wake *w);
void sli_sqlc_wake_bump(sqlc_wake *w);
uint32_t sli_sqlc_wake_seq(sqlc_wake *w);
/* Wait until the counter differs from seen, or deadline_ms (mono, < 0 never). */
void sli_sqlc_wake_wait(sqlc_wake *w, uint32_t seen, int64_t deadline_ms);

/* A backend's connection state, defined by the backend (pg.h, my.h). */
typedef struct sqlc_db sqlc_db;

/* The database side, on the one connection `db` of a subscriber or a
 * publisher. The engine calls ready() and then one operation under its
 * lock; errors: SL_E* with the detail in err. SL_ECONN means the
 * connection is gone (ready() reconnects with backoff), SL_EBUSY a
 * transient conflict (retried). */
typedef struct sqlc_db_ops {
    const char *name; /* "mysql": log component and error prefix */
    int (*ready)(sqlc_db *db, char *err, size_t errlen);
    /* Forget the reconnect backoff: the next ready() connects at once. */
    void (*retry_now)(sqlc_db *db);
    /* Insert msgs[0..n) into topic's log, committed when it returns. */
    int (*publish)(sqlc_db *db, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                   size_t errlen);
    /* Join (or create) group `group` of topic (a private one when priv)
     * with its cursor at start when new; *gid its id. */
    int (*subscribe)(sqlc_db *db, const char *topic, const char *group, bool priv, sl_start start,
                     int64_t holder, int64_t *gid, char *err, size_t errlen);
    /* Settle acks[0..nacks) first (same transaction), then claim up to max
     * messages for owner into out (max 0: settle only); *due = wall ms of
     * the group's next ready claim when none came, else -1. */
    int (*claim)(sqlc_db *db, int64_t gid, const char *topic, int64_t owner, unsigned max,
                 int64_t ack_deadline, const sqlc_settle *acks, unsigned nacks, sqlc_claimed *out,
                 unsigned *nout, int64_t *due, char *err, size_t errlen);
    /* One ack or nack, committed before it returns. */
    int (*settle)(sqlc_db *db, int64_t gid, const sqlc_settle *s, char *err, size_t errlen);
    /* Hand back what owner holds (a group), or drop the group (private). */
    int (*unsubscribe)(sqlc_db *db, int64_t gid, int64_t owner, bool priv, char *err,
                       size_t errlen);
    /* The last reference is gone: stop the backend's threads, close db. */
    void (*close)(sqlc_db *db);
} sqlc_db_ops;

/* ---------- the publisher (sqlc_pub.c) ---------- */

/* A publisher over db (owned from here on: ops->close(db) at the end, also
 * when this fails); *out is the sli_backend impl of the entries below,
 * which use ops->ready, retry_now, publish and close. */
int sli_sqlc_pub_new(void **out, const sqlc_db_ops *ops, sqlc_db *db);
int sli_sqlc_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                     const sl_publish_opts *opts);
int sli_sqlc_pub_close(void *impl);

typedef struct sqlc_cfg {
    int64_t ack_deadline, connect_timeout_ms;
    int64_t poll_min_ms, poll_max_ms; /* idle polls back off from min to max */
    int64_t holder;                   /* token of the subscriber's private groups */
    int64_t linger_ms;                /* linger= (sqlc_opts) */
    bool ack_batch;
} sqlc_cfg;

typedef struct sqlc_subr sqlc_subr;
/* A subscriber over db (owned from here on: ops->close(db) at the end,
 * also when this fails). */
int sli_sqlc_subr_new(sqlc_subr **out, const sqlc_db_ops *ops, sqlc_db *db, const sqlc_cfg *cfg);
sqlc_wake *sli_sqlc_subr_wake(sqlc_subr *r);
/* The sli_backend entries (impl = the sqlc_subr, sub = a subscription). */
int sli_sqlc_subscribe(void *impl, const char *topic, const sl_subscribe_opts *o, void **out);
int sli_sqlc_next(void *sub, sl_msg **out, int timeout_ms);
int sli_sqlc_unsubscribe(void *sub);
int sli_sqlc_sub_close(void *impl);

#endif
