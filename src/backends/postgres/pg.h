/*
 * pg.h - internals of the postgres:// backend, shared by its files:
 *
 *   pg_conn.c   URL -> connection (with a deadline), error mapping
 *   pg_schema.c the tables and the server-side functions of claims, acks
 *               and nacks (range leases), upgrade of older formats
 *   pg_ops.c    the SQL of publish, subscribe, claim, ack/nack, hand-back,
 *               retention (housekeeping)
 *   pg_listen.c one LISTEN connection per subscriber: wake-ups, heartbeat
 *   pg_tx.c     sl_pg_publish_tx (publish in the caller's transaction)
 *   postgres.c  the ops table: publishers, and the subscriber engine of
 *               sqlcommon (sqlc_sub.c) over pg_ops.c
 *
 * Table design (one set of tables per database, shared by every process;
 * the same model as sqlite://: a log per topic, groups with a cursor, claims
 * as leases):
 *
 *   sluice_meta(key, value)          format = "sluice-pg-3" (1: a claim
 *                                    row per message; 2: the topic's text
 *                                    in the log; both upgraded in place)
 *   sluice_topics(id, name)          a topic's integer id, given on first
 *                                    use (function sluice_topic(name))
 *   sluice_msgs(topic, tx, id, uuid, meta, payload, created)
 *       The log: one table, topic = the topic's id (an int: the key of
 *       every row and index entry stays short whatever the topic's name).
 *       tx = the publishing
 *       transaction's id (xid8, pg_current_xact_id()), id = a bigserial.
 *       PRIMARY KEY(topic, tx, id): a topic's messages are one index range
 *       in (tx, id) order. Ids are not handed out in commit order, so a
 *       reader never reads past a transaction that may still commit: it
 *       only takes rows with tx < pg_snapshot_xmin(pg_current_snapshot())
 *       (every older transaction has ended). Publishers never wait for
 *       each other; a long transaction (a caller's sl_pg_publish_tx) holds
 *       readers back until it ends, not other writers.
 *       meta: "key\0value\0" pairs (sqlcommon), payload: bytea, created: ms.
 *   sluice_groups(id, topic, name, private, pos_tx, pos_id, holder, alive,
 *                 tid)
 *       A consumer group reads its topic's log (topic's name, tid its id)
 *       past (pos_tx, pos_id).
 *       private = a group-less subscription (name NULL), kept alive by its
 *       subscriber's heartbeat (holder, alive): dropped a minute after its
 *       process died.
 *   sluice_claims(gid, lo_tx, lo_id, hi_tx, hi_id, owner, deadline,
 *                 deliveries)
 *       A lease on every message of the group's topic from (lo_tx, lo_id)
 *       to (hi_tx, hi_id), in log order, that the group took and has not
 *       acked: owner != 0 = in flight until deadline (wall ms), owner 0 =
 *       ready at deadline (nacked with a delay, or handed back). A
 *       consumer that died leaves ranges whose deadline passes: they come
 *       back. A group's ranges never overlap.
 *
 * Claim (one call of the function sluice_claim, one transaction): settle
 * batched acks, take due ranges of the group with FOR UPDATE SKIP LOCKED
 * (competing consumers never wait for each other's rows), then lock the
 * group row and read on from its cursor, inserting ONE range for what it
 * took. Acks cut their messages out of their owner's ranges, matching
 * (owner, deliveries) so a late ack of a delivery handed to someone else
 * since is ignored; acking a whole claim deletes its row (pg_schema.c).
 *
 * Wake-ups: publish runs NOTIFY sluice, '<topic>' in its transaction; each
 * subscriber LISTENs on its own connection and wakes its waiting next()
 * calls. A lost notification (e.g. during a reconnect) costs at most the
 * poll interval (poll=DUR, default 1s): next() claims again on it anyway.
 * A claim that came back short (the subscription caught up) makes the
 * next one wait linger=DUR (default 5ms, sqlc_sub.c): a steady stream is
 * then taken in fuller claims, fewer statements and commits per message
 * on the server its publishers share.
 */
#ifndef PG_H
#define PG_H

#include <libpq-fe.h>
#include <pthread.h>

#include "backends/sqlcommon/sqlc.h"
#include "core/backend.h"

#define PG_FORMAT "sluice-pg-3"
/* Version of the server-side functions (pg_schema.c) within the format:
 * bump it when their bodies change (same length: compared as text). */
#define PG_FUNCS "0007"
#define PG_CHANNEL "sluice"
#define PG_ERRLEN 400
#define PG_PRIVATE_EXPIRY_MS 60000
#define PG_HEARTBEAT_MS 10000
#define PG_LINGER_DEFAULT_MS 5 /* linger=: see "Wake-ups" above */

/* Options every handle accepts (one URL serves publishers and subscribers):
 * sqlcommon's (poll=DUR: the fallback when no NOTIFY came, 1s) and
 * sync=full|off (synchronous_commit of the session). */
typedef struct pg_opts {
    sqlc_opts c;
    bool sync_off;
} pg_opts;

/* A connection with what it was opened from, so it can be opened again. */
typedef struct pg_link {
    PGconn *c;
    char *keys[8], *vals[8]; /* PQconnectdbParams arguments (NULL-ended) */
    int64_t timeout_ms;
    int64_t backoff_ms, retry_at; /* reconnect backoff (mono ms) */
    bool prepared;
    bool sync_off; /* SET synchronous_commit TO off on every (re)connect */
    char schema[64];
    const char *what; /* "postgres" */
} pg_link;

/* pg_conn.c */
int sli_pg_opts_read(sli_url *u, pg_opts *o);
/* Parameters from u (host, port, user, password, dbname from the path). */
int sli_pg_conn_init(pg_link *pc, sli_url *u, const pg_opts *o);
void sli_pg_conn_fini(pg_link *pc);
/* Connect (or reconnect) within pc->timeout_ms; SL_ECONN with detail. */
int sli_pg_conn_open(pg_link *pc, char *err, size_t errlen);
/* Ready to run statements: reconnect with backoff when the connection is
 * down (SL_ECONN until it comes back), prepare statements, check schema. */
int sli_pg_conn_ready(pg_link *pc, char *err, size_t errlen);
/* A failed result (or NULL) -> SL_E*, text into err; marks the connection
 * for a reconnect when it is gone. Clears res. */
int sli_pg_fail(pg_link *pc, PGresult *res, char *err, size_t errlen, const char *what);
/* Error text on one line (libpq's end with a newline). */
void sli_pg_oneline(char *s);

/* pg_schema.c: create the tables and functions if missing, upgrade an
 * older format in place (idempotent, safe against concurrent openers) and
 * check the format. On c, outside a transaction. */
int sli_pg_schema(PGconn *c, char *err, size_t errlen);
/* Statement text "BEGIN" etc.; 0 or SL_E*. */
int sli_pg_exec(pg_link *pc, const char *sql, char *err, size_t errlen);
/* Big-endian binary integer (int4 or int8) of a binary result field. */
int64_t sli_pg_get_i64(const PGresult *r, int row, int col);

/* pg_ops.c (claims and settles: sqlcommon's types) */

int sli_pg_prepare(pg_link *pc, char *err, size_t errlen);
/* Insert msgs[0..n) into the log and NOTIFY, on c inside the caller's
 * transaction (no BEGIN/COMMIT here). */
int sli_pg_insert_msgs(PGconn *c, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                       size_t errlen, int *sqlstate_class);
int sli_pg_publish(sqlc_db *db, const char *topic, sl_msg *const *msgs, size_t n, char *err,
                   size_t errlen);
/* Join (or create) group `group` of topic (a private one when priv), with
 * its cursor at start when new; *gid its id. */
int sli_pg_subscribe(sqlc_db *db, const char *topic, const char *group, bool priv, sl_start start,
                     int64_t holder, int64_t *gid, char *err, size_t errlen);
/* Settle acks[0..nacks) (group gid), then claim up to max messages into
 * out; *next_due = wall ms of the group's next ready claim when none, or -1.
 * Settling goes first, in the same transaction (ack=batch). */
int sli_pg_claim(sqlc_db *db, int64_t gid, const char *topic, int64_t owner, unsigned max,
                 int64_t ack_deadline, const sqlc_settle *acks, unsigned nacks, sqlc_claimed *out,
                 unsigned *nout, int64_t *next_due, char *err, size_t errlen);
/* The rows of a claim (columns msg_id, deliveries, uuid, metadata,
 * payload, r_due, tx; binary format) into out[*nout..max): a row without
 * msg_id carries only r_due (-> *due). What the server sends back is
 * checked: SL_EPROTO/SL_ECORRUPT with err on a malformed row; the messages
 * taken before it stay in out for the caller to unref. Also the fuzz
 * target's entry (tests/fuzz/fuzz_postgres_row.c). */
int sli_pg_take_rows(PGresult *r, sqlc_claimed *out, unsigned max, unsigned *nout, int64_t *due,
                     char *err, size_t errlen);
/* One ack or nack, committed before it returns. */
int sli_pg_settle(sqlc_db *db, int64_t gid, const sqlc_settle *s, char *err, size_t errlen);
/* Unsubscribe: hand back what owner holds (a group), or drop the group
 * (private). */
int sli_pg_unsubscribe(sqlc_db *db, int64_t gid, int64_t owner, bool priv, char *err,
                       size_t errlen);
/* Heartbeat of holder's private groups; expire dead ones; retention. Only
 * one process at a time (an advisory lock) does the expensive part. */
int sli_pg_housekeep(pg_link *pc, int64_t holder, int64_t retention_ms, char *err, size_t errlen);

/* pg_listen.c: a subscriber's wake-up source. Every notification (and a
 * reconnect, which may have lost some) bumps w, the subscriber engine's
 * change counter (sqlc_sub.c), which must outlive the listener. */
typedef struct pg_listener pg_listener;
int sli_pg_listener_start(pg_listener **out, sli_url *u, const pg_opts *o, int64_t holder,
                          sqlc_wake *w);
void sli_pg_listener_stop(pg_listener *l);

/* The connection of a publisher or a subscriber: sqlcommon's sqlc_db, the
 * first argument of the operations above that its engines call. */
struct sqlc_db {
    pg_link pc;
    pg_listener *listener; /* a subscriber's, NULL until started (publishers: none) */
};

#endif
