/*
 * my.h - internals of the mysql:// backend (MariaDB 10.6+ / MySQL 8, with
 * libmariadb), shared by its files:
 *
 *   my_conn.c  URL -> connection (timeouts, session settings), reconnect
 *              with backoff, SQL text building, running statements, errors
 *              -> SL_E*, the tables
 *   my_ops.c   the SQL of publish, subscribe, hand-back
 *   my_claim.c the SQL of claims, acks and nacks (leases on id ranges)
 *   my_keep.c  a subscriber's housekeeping thread: heartbeat of private
 *              groups, expiry of dead ones, retention
 *   my_tx.c    sl_mysql_publish_tx (publish in the caller's transaction)
 *   mysql.c    the ops table: publishers, and the subscriber engine of
 *              sqlcommon (sqlc_sub.c) over my_ops.c
 *
 * Table design (one set of tables per database, shared by every process;
 * the model of postgres:// and sqlite://: a log per topic, groups with a
 * cursor, claims as leases). InnoDB, every session in READ COMMITTED with
 * autocommit off (each operation ends with its own COMMIT):
 *
 *   sluice_meta(k, v)               format = "sluice-my-2" (1: a claim row
 *                                   per message; upgraded in place)
 *   sluice_topics(topic, seq)
 *       The newest message id of each topic. A publish takes the topic's
 *       row (INSERT ... ON DUPLICATE KEY UPDATE seq=seq+n) and numbers its
 *       messages seq+1..seq+n; the row stays locked until the publishing
 *       transaction ends, so ids of a topic become visible in id order:
 *       every id below a committed one is committed too. MySQL has no
 *       snapshot horizon to read behind (postgres:// uses
 *       pg_snapshot_xmin); this lock is what lets a reader's cursor never
 *       skip a message that commits late. Cost: publishers of ONE topic
 *       take turns (each holds the row for its insert and commit), and a
 *       caller's sl_mysql_publish_tx holds it until the caller commits.
 *       Readers never wait for it.
 *   sluice_msgs(topic, id, uuid, meta, payload, created)
 *       The log, PRIMARY KEY(topic, id). meta: "key\0value\0" pairs
 *       (sqlcommon), created: wall ms.
 *   sluice_groups(id, topic, name, private, pos, holder, alive)
 *       A consumer group reads its topic's log past pos. private = a
 *       group-less subscription (name NULL), kept alive by its
 *       subscriber's heartbeat (holder, alive), dropped a minute after its
 *       process died.
 *   sluice_claims(gid, msg_id, hi, owner, deadline, deliveries)
 *       A lease on the ids msg_id..hi of the group's topic: owner != 0 =
 *       in flight until deadline (wall ms), owner 0 = ready at deadline
 *       (nacked with a delay, or handed back). A claim of a batch inserts
 *       one row; acks and nacks cut ids out of their owner's ranges
 *       (my_claim.c). Only the primary key: a group's ranges are few (in
 *       flight, delayed), so finding the due ones reads them all.
 *
 * Claim (one transaction, one round trip when nothing is due): settle
 * batched acks, take due ranges of the group with SELECT ... FOR UPDATE
 * SKIP LOCKED (competing consumers never wait for each other's rows), then
 * lock the group row and read on from its cursor, inserting one range for
 * what it took. Acks match (owner, deliveries), so a late ack of a
 * delivery handed to someone else since is ignored.
 *
 * Wake-ups: MySQL has no LISTEN/NOTIFY, so subscribers poll: a next()
 * that finds nothing sleeps poll_min (2ms), then twice as long each time
 * up to poll=DUR (default 250ms); any message found resets it. Local acks,
 * nacks and closes wake waiting next() calls at once; a nack with a delay
 * is looked at again when it is due. A claim that came back short (the
 * subscription caught up) makes the next one wait linger=DUR (default
 * 10ms, sqlc_sub.c): a steady stream is then taken in fuller claims, whose
 * round trips and commits no longer slow its publishers down on the
 * server (measured: half the claims, bench_mysql).
 */
#ifndef MY_H
#define MY_H

#include <mysql.h>
#include <pthread.h>

#include "backends/sqlcommon/sqlc.h"
#include "core/backend.h"

#define MY_FORMAT "sluice-my-2"
#define MY_ERRLEN 400
#define MY_PRIVATE_EXPIRY_MS 60000
#define MY_HK_MS 2000
#define MY_POLL_MIN_MS 2

/* A connection with what it was opened from, so it can be opened again. */
typedef struct my_link {
    MYSQL *c;
    char *host, *user, *pass, *db;
    unsigned port;
    int64_t timeout_ms;
    int64_t backoff_ms, retry_at; /* reconnect backoff (mono ms) */
    bool ready;                   /* session set, tables checked */
    bool borrowed;                /* c is a caller's: never closed nor rolled back */
    char schema[64];
    size_t max_packet; /* the server's max_allowed_packet */
} my_link;

/* Growable SQL text (my_conn.c); an allocation failure is remembered and
 * reported by sli_my_run. */
typedef struct my_sql {
    char *p;
    size_t len, cap;
    bool oom;
} my_sql;
void sli_my_sql_init(my_sql *q);
void sli_my_sql_free(my_sql *q);
void sli_my_sql_add(my_sql *q, const char *fmt, ...) SLI_PRINTF(2, 3);
/* A binary literal: X'hex' (any bytes, no charset or sql_mode involved). */
void sli_my_sql_bin(my_sql *q, const void *p, size_t n);
/* The same, or NULL when p is NULL. */
void sli_my_sql_bin_or_null(my_sql *q, const void *p, size_t n);

/* my_conn.c */
int sli_my_conn_init(my_link *l, sli_url *u, const sqlc_opts *o);
void sli_my_conn_fini(my_link *l);
/* Ready to run statements: (re)connect with backoff when the connection
 * is down (SL_ECONN until it comes back), session settings, tables. */
int sli_my_conn_ready(my_link *l, char *err, size_t errlen);
/* Run the statements of q (';'-separated: one round trip). The first nres
 * result sets are stored in res[] (the caller frees them with
 * mysql_free_result), others dropped. On error: SL_E* with detail, no
 * result kept, the transaction rolled back (if the connection is alive). */
int sli_my_run(my_link *l, const my_sql *q, MYSQL_RES **res, int nres, char *err, size_t errlen,
               const char *what);
/* Classify the last error of c (SL_E*), text into err; what names the
 * operation. Sets *lost when the connection is gone. */
int sli_my_classify(MYSQL *c, const char *what, char *err, size_t errlen, bool *lost);
/* The tables: create what is missing (idempotent), check the format. */
int sli_my_schema(MYSQL *c, char *err, size_t errlen);
/* Integer of a text result field (0 for NULL). */
int64_t sli_my_i64(const char *s);

/* my_ops.c (on a link its caller holds alone, ready) */
/* Insert msgs[0..n) into topic's log, numbered after the topic's sequence
 * (which stays locked until the transaction ends); as few round trips as
 * max_packet allows; COMMIT in the last one when commit. SL_ETOOBIG for a
 * message the server cannot take in one packet. */
int sli_my_insert(my_link *l, const char *topic, sl_msg *const *msgs, size_t n, bool commit,
                  char *err, size_t errlen);
int sli_my_publish(sqlc_db *db, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                   size_t errlen);
int sli_my_subscribe(sqlc_db *db, const char *topic, const char *group, bool priv, sl_start start,
                     int64_t holder, int64_t *gid, char *err, size_t errlen);
int sli_my_claim(sqlc_db *db, int64_t gid, const char *topic, int64_t owner, unsigned max,
                 int64_t ack_deadline, const sqlc_settle *acks, unsigned nacks, sqlc_claimed *out,
                 unsigned *nout, int64_t *due, char *err, size_t errlen);
int sli_my_settle(sqlc_db *db, int64_t gid, const sqlc_settle *s, char *err, size_t errlen);
int sli_my_unsubscribe(sqlc_db *db, int64_t gid, int64_t owner, bool priv, char *err,
                       size_t errlen);
/* Heartbeat of holder's private groups; expire dead ones; retention (one
 * process at a time does the expensive part, under a named lock). */
int sli_my_housekeep(my_link *l, int64_t holder, int64_t retention_ms, char *err, size_t errlen);

/* my_keep.c: a subscriber's housekeeping thread, on its own connection. */
typedef struct my_keeper my_keeper;
int sli_my_keeper_start(my_keeper **out, sli_url *u, const sqlc_opts *o, int64_t holder);
void sli_my_keeper_stop(my_keeper *k);

/* The connection of a publisher or a subscriber: sqlcommon's sqlc_db, the
 * first argument of the operations above that its engines call. */
struct sqlc_db {
    my_link l;
    my_keeper *keeper; /* a subscriber's (publishers: none) */
};

#endif
