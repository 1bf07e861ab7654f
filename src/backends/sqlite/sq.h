/*
 * sq.h - internals of the sqlite:// backend, shared by its files:
 *
 *   sq_open.c  one shared database per file per process: open and validate
 *   sq_db.c    the request queue: group commit, leader/follower, the writer
 *              thread, change polling
 *   sq_ops.c   the SQL of every request, run by the writer inside a batch
 *   sq_claim.c claims as leases: claim, redeliver, ack, nack
 *   sq_upgrade.c  older file formats to the current one
 *   sq_tx.c    sl_sqlite_publish_tx (publish in the caller's transaction)
 *   sqlite.c   the backend ops table: publishers, subscriptions, delivery
 *
 * Every write goes through the queue of its sq_db: callers queue a request
 * and (mostly) wait for it. Whoever holds the connection (the "leader": a
 * waiting caller, or the background writer thread) takes everything queued,
 * runs it in ONE immediate transaction and commits once, so concurrent
 * publishes, claims and acks share a commit (and an fsync with sync=full).
 *
 * Schema (application_id 'SLIC', sl_meta.format = "sluice-sqlite-4"):
 *   sl_topics(id, name, seq)                 topics, never deleted; the next
 *                                            message number is one past the
 *                                            larger of seq and the topic's
 *                                            newest message's number (a
 *                                            publish writes the message only:
 *                                            one page fewer per commit), and
 *                                            seq is raised only before a
 *                                            deletion takes the newest message
 *   sl_msgs(id, tid, uuid, meta, payload, created)
 *                                            the log: id = tid << 40 | number,
 *                                            so a topic's messages are one
 *                                            rowid range in commit order (no
 *                                            index to maintain; reading on and
 *                                            retention are range scans)
 *   sl_groups(id, tid, name, private, pos, holder, alive)
 *                                            a consumer group reads its topic's
 *                                            log past pos; private = one
 *                                            group-less subscription, kept
 *                                            alive by its process' heartbeat
 *   sl_claims(id, gid, first, owner, deadline, deliveries, ids)
 *                                            leases: messages a group took
 *                                            from the log together and has not
 *                                            acked yet (ids: sorted message
 *                                            ids, 8 bytes little-endian each;
 *                                            first = the lowest): owner != 0 =
 *                                            in flight until deadline (wall
 *                                            ms), owner 0 = ready at deadline
 * Format 1 had one sl_claims row per message, formats 1 and 2 one global
 * AUTOINCREMENT id with an index on (tid, id), format 3 advanced seq with
 * every publish; sq_upgrade.c upgrades them all (an older binary refuses a
 * format-4 file: it would number from seq alone and reuse numbers).
 */
#ifndef SQ_H
#define SQ_H

#include <sqlite3.h>

#include "core/backend.h"

#define SQ_FORMAT "sluice-sqlite-4"
#define SQ_FORMAT_V1 "sluice-sqlite-1"
#define SQ_FORMAT_V2 "sluice-sqlite-2"
#define SQ_FORMAT_V3 "sluice-sqlite-3"
/* Message ids: topic id in the high bits, the topic's message number in the
 * low SQ_SEQ_BITS. */
#define SQ_SEQ_BITS 40
#define SQ_SEQ_MAX (((int64_t)1 << SQ_SEQ_BITS) - 1)
#define SQ_TOPIC_MAX (((int64_t)1 << (62 - SQ_SEQ_BITS)) - 1)
#define SQ_ID(tid, seq) ((int64_t)(tid) << SQ_SEQ_BITS | (int64_t)(seq))
/* The last message number given out in topic ?1 (its id range ?2 = SQ_ID(tid,
 * 0) .. ?3 = SQ_ID(tid, SQ_SEQ_MAX)): the larger of its seq and its newest
 * message's number. */
#define SQ_TOPIC_SEQ_SQL                                                                           \
    "SELECT max(seq, coalesce((SELECT id FROM sl_msgs WHERE id>=?2 AND id<=?3 ORDER BY id DESC "   \
    "LIMIT 1) - ?2, 0)) FROM sl_topics WHERE id=?1"
#define SQ_CLAIMS_SQL                                                                              \
    "CREATE TABLE IF NOT EXISTS sl_claims(id INTEGER PRIMARY KEY, gid INTEGER NOT NULL, first "    \
    "INTEGER NOT NULL, owner INTEGER NOT NULL, deadline INTEGER NOT NULL, deliveries INTEGER NOT " \
    "NULL, ids BLOB NOT NULL);"                                                                    \
    "CREATE INDEX IF NOT EXISTS sl_claims_gid ON sl_claims(gid, first, deadline);"
#define SQ_MSGS_SQL(name)                                                                          \
    "CREATE TABLE IF NOT EXISTS " name "(id INTEGER PRIMARY KEY, tid INTEGER NOT NULL, uuid TEXT " \
    "NOT NULL, meta BLOB, payload BLOB NOT NULL, created INTEGER NOT NULL);"
#define SQ_VFS_NAME "sluice" /* sq_vfs.c: the unix VFS, WAL writes combined */
#define SQ_LEASE_MAX 256     /* messages in one lease (and one claim) */
#define SQ_APP_ID 0x534C4943 /* 'SLIC' */
#define SQ_ERRLEN 300
#define SQ_WAKE_SLOTS 64
#define SQ_WAKE_SLOT(tid) ((unsigned)((uint64_t)(tid) % SQ_WAKE_SLOTS))

typedef struct sq_db sq_db;
typedef struct sq_req sq_req;

enum { SQ_WAITING, SQ_DONE };

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
    int64_t lease; /* sl_claims.id */
    unsigned deliveries;
} sq_claimed;

struct sq_req {
    sq_kind kind;
    sq_req *next;
    bool async;            /* heap-allocated; the writer frees it, nobody waits */
    unsigned slot;         /* its caller sleeps on d->wslot[slot] */
    _Atomic uint32_t done; /* SQ_WAITING, SQ_DONE */
    bool taken;            /* in a batch (under mu): maybe one flushing after its commit */
    int rc;
    char err[SQ_ERRLEN];
    /* PUBLISH */
    bool nosync; /* SL_PUBLISH_NO_SYNC: needs no fsync of its own */
    const char *topic;
    sl_msg *const *msgs;
    size_t n;
    /* group operations */
    int64_t gid, tid, msg_id, lease;
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
    int sync;                                         /* 0 full, 1 normal, 2 off */
    int64_t retention_ms;                             /* 0: delete once every group acked */
    int64_t busy_ms;                                  /* give up on a locked file after this long */
    int64_t poll_ms;                                  /* slowest cross-process change poll */
    bool sync_set, retention_set, busy_set, poll_set; /* given in the URL */
} sq_dbopts;

struct sq_db {
    char *path;            /* registry key (real path) */
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
    bool busy;            /* somebody (a leader or the writer) holds the connection */
    bool writer_wants;    /* the writer waits for the connection (housekeeping...) */
    bool lingering;       /* a sync=full leader waits for more publishes; the
                             caller whose publish fills the batch leads instead */
    unsigned linger_id;   /* which lingering: a lingerer taken over knows */
    _Atomic bool offer;   /* busy is offered to any waiting caller */
    unsigned take_gen;    /* batches taken so far (the parity picks wslot) */
    int64_t writer_until; /* mono ms the sleeping writer wakes up, 0 while awake */
    int64_t async_last;   /* mono ms the last async request came */
    pthread_t writer;
    /* callers waiting for their requests sleep on the slot of the batch they
     * expect to be in: a batch done wakes its callers with one call */
    struct sq_wslot {
        _Atomic uint32_t word, sleepers;
    } wslot[2];
    /* consumer wakeups, by topic: a slot (tid % SQ_WAKE_SLOTS) is bumped
     * when a batch changed what its topics' consumers may be waiting for
     * (publish, ack, nack, hand-back), so a publish to one topic does not
     * wake the consumers of every other; changes by other connections bump
     * them all. waiters: sleepers of all slots (the writer polls for other
     * connections' changes only while somebody sleeps). */
    struct sq_wake {
        _Atomic uint32_t seq, waiters;
    } wake[SQ_WAKE_SLOTS];
    _Atomic uint32_t waiters;
    uint64_t wake_bits; /* slots the running batch touched (holder only) */
    /* state of whoever holds the connection (busy) */
    int64_t busy_start;
    int64_t commit_ema_us;
    size_t pub_target;  /* publishes a sync=full batch waits for (group commit) */
    size_t run_pubs;    /* waited-for publishes in the batch running */
    size_t pub_seen;    /* most waited-for publishes queued + running since the
                           last batch was taken */
    unsigned wake_mask; /* slots of requests completed and not yet woken */
    int64_t dv_last;    /* PRAGMA data_version */
    bool acked_since_sweep;
    int64_t swept_ms; /* mono ms of the last retention sweep inside a batch */
    bool synced_full; /* current PRAGMA synchronous is FULL */
    /* Flush after commit (sync=full; sq_db.c, "flush"): a batch that must
     * reach the disk commits without a sync, gives the connection up and
     * its callers wait for an fdatasync of the WAL file that began after
     * the commit; one flush serves every batch committed before it. */
    int wal_fd;                 /* the WAL file, opened when first needed; -1 */
    _Atomic uint64_t committed; /* batches committed that wait for a flush */
    pthread_mutex_t fmu;        /* guards wal_fd's change and what follows */
    pthread_cond_t fcond;       /* a flush ended */
    uint64_t flushed;           /* committed batches a flush covered */
    bool flushing;
    int flush_err;                     /* errno of the last flush that failed ... */
    uint64_t failed_from, failed_upto; /* ... for the batches (from, upto] */
    sq_db *next;
};

/* sq_open.c */
int sq_db_acquire(sli_url *u, sq_db **out);
void sq_db_ref(sq_db *d);
void sq_db_unref(sq_db *d); /* drops a handle's or a delivery's reference */

/* sq_db.c */
void *sq_writer_main(void *arg);
int sq_busy_cb(void *arg, int count); /* sqlite3_busy_handler */
int sq_exec(sq_db *d, const char *sql, char *err, size_t errlen);
/* PRAGMA journal_mode=WAL on db (the file at path), tried again while the
 * file is locked, for up to busy_ms: the switch needs the file to itself
 * and SQLite does not wait for that in the busy handler. */
int sq_wal_on(sqlite3 *db, const char *path, int64_t busy_ms, char *err, size_t errlen);
void sq_rollback(sq_db *d);     /* roll back an open transaction, forget cached topic ids */
bool sq_poll_changes(sq_db *d); /* PRAGMA data_version changed since last time */
/* Queue r; wait for it unless r->async. Returns r->rc (error detail set). */
int sq_submit(sq_db *d, sq_req *r);
void sq_wake(sq_db *d, int64_t tid); /* wake the consumers of topic tid */
/* Sleep until the wake slot of tid moves past seen, or deadline_ms (mono,
 * < 0 never). seen: sq_wake_seq(d, tid), read before looking for work. */
uint32_t sq_wake_seq(sq_db *d, int64_t tid);
void sq_wake_wait(sq_db *d, int64_t tid, uint32_t seen, int64_t deadline_ms);
/* sqlite error code -> SL_E*, with text into buf. */
int sq_map(sqlite3 *db, int src, char *buf, size_t len, const char *what);

/* Prepared statements (sq_ops.c prepares them, d->st[S_...]). */
enum {
    S_TOPIC_INS,
    S_TOPIC_GET,
    S_MSG_INS,
    S_GROUP_INS,
    S_GROUP_GET,
    S_TOPIC_SEQ,
    S_TOPIC_SEQ_KEEP,
    S_TOPIC_ALL,
    S_POS_GET,
    S_POS_SET,
    S_REDO_SEL,
    S_LEASE_UPD,
    S_LEASE_DEL,
    S_MSG_GET,
    S_NEW_SEL,
    S_NEXT_DUE,
    S_LEASE_GET,
    S_LEASE_IDS,
    S_HANDBACK,
    S_GROUP_CLAIMS_DEL,
    S_GROUP_DEL,
    S_HEARTBEAT,
    S_EXPIRE_CLAIMS,
    S_EXPIRE_GROUPS,
    S_SWEEP_TIDS,
    S_SWEEP_LOW,
    S_SWEEP_DEL,
    S_AGE_YOUNG,
    S_AGE_DEL_BELOW,
    S_BEGIN,
    S_COMMIT,
    S_LEASE_INS,
    S_MSG_INS4, /* generated: publish of 4, 16 or 64 rows in one statement */
    S_MSG_INS16,
    S_MSG_INS64,
    S_COUNT
};

/* sq_ops.c (whoever holds the connection) */
int sq_ops_prepare(sq_db *d, char *err, size_t errlen);
void sq_ops_finalize(sq_db *d);
/* Run the requests of batch in order (consecutive acks together); sets each
 * one's rc and returns the first that failed (its err filled), or NULL. */
sq_req *sq_ops_run_all(sq_db *d, sq_req *batch);
/* BEGIN IMMEDIATE (begin) or COMMIT through prepared statements. */
int sq_ops_tx(sq_db *d, bool begin, char *err, size_t errlen);
void sq_ops_reset(sq_req *r);        /* undo in-memory results after rollback */
void sq_ops_forget_topics(sq_db *d); /* after a rollback */
int sq_ops_housekeep(sq_db *d, bool heartbeat, char *err, size_t errlen);
int sq_ops_step(sq_db *d, sqlite3_stmt *st); /* step with busy retries */
/* Step a statement whose rows are ignored, reset it; SL_E* with err set. */
int sq_run(sq_db *d, sqlite3_stmt *st, char *err, size_t errlen, const char *what);
/* First column of the first row; *found = false when none (or NULL). */
int sq_one_int(sq_db *d, sqlite3_stmt *st, int64_t *out, bool *found, char *err, size_t errlen);
/* The 16 bytes of a canonical lowercase uuid text; false for any other. */
bool sq_uuid_pack(const char *uuid, unsigned char out[16]);
/* A plain message from columns (uuid, meta, payload) starting at col. */
int sq_build_msg(sqlite3_stmt *st, int col, sl_msg **out, char *err, size_t errlen);

/* sq_claim.c (whoever holds the connection, inside the batch transaction) */
int sq_claim(sq_db *d, sq_req *r);
int sq_settle(sq_db *d, sq_req *r); /* one ack or nack */
/* Acks of reqs[0..n) together (sorts reqs); returns the request to blame
 * on failure (its err and rc set), or NULL. */
sq_req *sq_settle_acks(sq_db *d, sq_req **reqs, unsigned n);
/* Lease id lists: n ids as 8 bytes little-endian each into out; decode
 * checks the size (SL_ECORRUPT) and fills at most SQ_LEASE_MAX ids. */
void sq_ids_encode(const int64_t *ids, unsigned n, unsigned char *out);
int sq_ids_decode(const void *blob, int len, int64_t *ids, unsigned *n);

/* sq_upgrade.c: make a file of an older format the current one, inside the
 * caller's transaction; nothing to do for any other file. */
int sq_upgrade(sqlite3 *db, char *err, size_t errlen);
/* Shared with sq_tx.c: the schema (metadata encoding: sqlcommon/sqlc.h). */
extern const char sq_schema_sql[];

#endif
