/*
 * sq.h - internals of the sqlite:// backend, shared by its files:
 *
 *   sq_db.c    one shared database per file per process: open and validate
 *              the file, the writer thread (group commit), change polling
 *   sq_ops.c   the SQL of every request, run by the writer inside a batch
 *   sq_tx.c    sl_sqlite_publish_tx (publish in the caller's transaction)
 *   sqlite.c   the backend ops table: publishers, subscriptions, delivery
 *
 * Every write goes through the queue of its sq_db: callers queue a request
 * and (mostly) wait for it. Whoever holds the connection (the "leader": a
 * waiting caller, or the background writer thread) takes everything queued,
 * runs it in ONE immediate transaction and commits once, so concurrent
 * publishes, claims and acks share a commit (and an fsync with sync=full).
 *
 * Schema (application_id 'SLIC', sl_meta.format = "sluice-sqlite-1"):
 *   sl_topics(id, name)                      topics, never deleted
 *   sl_msgs(id AUTOINCREMENT, tid, uuid, meta, payload, created)
 *                                            the log; ids grow in commit order
 *   sl_groups(id, tid, name, private, pos, holder, alive)
 *                                            a consumer group reads its topic's
 *                                            log past pos; private = one
 *                                            group-less subscription, kept
 *                                            alive by its process' heartbeat
 *   sl_claims(gid, msg_id, owner, deadline, deliveries)
 *                                            messages a group took from the
 *                                            log and has not acked: owner != 0
 *                                            = in flight until deadline (wall
 *                                            ms), owner 0 = ready at deadline
 */
#ifndef SQ_H
#define SQ_H

#include <sqlite3.h>

#include "core/backend.h"

#define SQ_FORMAT "sluice-sqlite-1"
#define SQ_APP_ID 0x534C4943 /* 'SLIC' */
#define SQ_ERRLEN 300

typedef struct sq_db sq_db;
typedef struct sq_req sq_req;

enum { SQ_WAITING, SQ_DONE, SQ_LEAD };

typedef enum sq_kind {
    SQ_PUBLISH,
    SQ_CLAIM,
    SQ_ACK,
    SQ_NACK,
    SQ_SUBSCRIBE,
    SQ_UNSUBSCRIBE,
} sq_kind;

/* One message taken by a claim. */
typedef struct sq_claimed {
    sl_msg *m; /* plain message (not yet a delivery) */
    int64_t msg_id;
    unsigned deliveries;
} sq_claimed;

struct sq_req {
    sq_kind kind;
    sq_req *next;
    bool async; /* heap-allocated; the writer frees it, nobody waits */
    _Atomic uint32_t done; /* SQ_WAITING, SQ_DONE, or SQ_LEAD (run the queue) */
    int rc;
    char err[SQ_ERRLEN];
    /* PUBLISH */
    const char *topic;
    sl_msg *const *msgs;
    size_t n;
    /* group operations */
    int64_t gid, tid, msg_id;
    int64_t owner;
    unsigned deliveries;
    int64_t delay_ms; /* NACK */
    /* CLAIM: up to max messages into out[], in flight for ack_deadline ms */
    unsigned max, nout;
    sq_claimed *out;
    int64_t ack_deadline;
    int64_t next_due; /* wall ms of the group's next redelivery, or -1 */
    /* SUBSCRIBE (in: topic, group, start, priv; out: gid, tid) */
    const char *group;
    sl_start start;
    bool priv;
};

/* Database-wide options: fixed by the first opener of a file in a process. */
typedef struct sq_dbopts {
    int sync;             /* 0 full, 1 normal, 2 off */
    int64_t retention_ms; /* 0: delete once every group acked */
    int64_t busy_ms;      /* give up on a locked file after this long */
    int64_t poll_ms;      /* slowest cross-process change poll */
    bool sync_set, retention_set;
} sq_dbopts;

struct sq_db {
    char *path; /* registry key (real path) */
    _Atomic uint32_t refs; /* handles + live deliveries */
    sq_dbopts o;
    int64_t holder; /* this process' token for private groups */
    sqlite3 *db;    /* the writer's connection (writer thread only after open) */
    sqlite3_stmt **st;
    void *topics; /* writer's topic-id cache */
    /* queue */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    sq_req *qhead, *qtail;
    size_t qlen;
    size_t qsync;        /* queued requests somebody waits for */
    size_t qpubs;        /* ... of which publishes */
    int64_t async_since; /* mono ms the oldest queued async request came */
    bool stop;
    bool busy;           /* somebody (a leader or the writer) holds the connection */
    bool writer_wants;   /* the writer waits for the connection (housekeeping...) */
    bool lingering;      /* a sync=full leader waits on lcond for more publishes */
    int64_t writer_until; /* mono ms the sleeping writer wakes up, 0 while awake */
    pthread_cond_t lcond;
    pthread_t writer;
    /* wakeups: bumped on every change a consumer may be waiting for */
    _Atomic uint32_t seq;
    _Atomic uint32_t waiters;
    /* state of whoever holds the connection (busy) */
    int64_t busy_start;
    int64_t commit_ema_us;
    size_t pub_target; /* publishes a sync=full batch waits for (group commit) */
    int64_t dv_last; /* PRAGMA data_version */
    bool acked_since_sweep;
    bool synced_full; /* current PRAGMA synchronous is FULL */
    sq_db *next;
};

/* sq_db.c */
int sq_db_acquire(sli_url *u, sq_db **out);
void sq_db_ref(sq_db *d);
void sq_db_unref(sq_db *d); /* drops a handle's or a delivery's reference */
/* Queue r; wait for it unless r->async. Returns r->rc (error detail set). */
int sq_submit(sq_db *d, sq_req *r);
void sq_wake(sq_db *d);
/* sqlite error code -> SL_E*, with text into buf. */
int sq_map(sqlite3 *db, int src, char *buf, size_t len, const char *what);

/* sq_ops.c (writer thread) */
int sq_ops_prepare(sq_db *d, char *err, size_t errlen);
void sq_ops_finalize(sq_db *d);
/* Run the requests of batch in order (consecutive acks together); sets each
 * one's rc and returns the first that failed (its err filled), or NULL. */
sq_req *sq_ops_run_all(sq_db *d, sq_req *batch);
/* BEGIN IMMEDIATE (begin) or COMMIT through prepared statements. */
int sq_ops_tx(sq_db *d, bool begin, char *err, size_t errlen);
void sq_ops_reset(sq_req *r);         /* undo in-memory results after rollback */
void sq_ops_forget_topics(sq_db *d);  /* after a rollback */
int sq_ops_housekeep(sq_db *d, bool heartbeat, char *err, size_t errlen);
int sq_ops_step(sq_db *d, sqlite3_stmt *st); /* step with busy retries */
/* Shared with sq_tx.c: schema and message encoding. */
extern const char sq_schema_sql[];
int sq_meta_encode(const sl_msg *m, unsigned char **out, size_t *len);
int sq_meta_decode(sl_msg *m, const unsigned char *p, size_t len);

#endif
