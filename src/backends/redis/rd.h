/*
 * rd.h - redis://host:port/db: the Redis Streams backend (hiredis).
 *
 * The picture:
 *  - a topic is a stream key (prefix + topic); a message is one entry with
 *    the fields "uuid", "m:<key>" per metadata pair (in order) and
 *    "payload", all sent as binary-safe arguments;
 *  - every subscription reads through a consumer group: a named group is
 *    shared (competing consumers); a subscription without a group gets a
 *    private group "sl.priv.<uuid>" (so it sees every message and gets
 *    redelivery from the pending list), destroyed when it closes (a process
 *    that dies leaves its "sl.priv.*" groups behind: harmless, they only
 *    hold a pending list; XGROUP DESTROY cleans them up);
 *  - each subscription has its own connection for its blocking reads
 *    (XREADGROUP BLOCK <block>, short, so a close is prompt); acks and
 *    nacks from any thread are queued and sent by the reading thread before
 *    its next read (ack=batch) or sent at once on a second connection
 *    (ack=sync);
 *  - a nack re-marks the entry idle (XCLAIM ... IDLE) so that XAUTOCLAIM,
 *    run by every member of the group, takes it back at once (or after the
 *    nack delay); the same XAUTOCLAIM with min-idle = ack_deadline reclaims
 *    what dead consumers held; a closing subscription hands its pending
 *    entries to the group the same way and deletes its consumer;
 *  - connections drop on any I/O error and reconnect with backoff (50 ms
 *    doubling to 2 s); a publish retries unconfirmed entries on a new
 *    connection for up to `reconnect` (a retried XADD whose reply was lost
 *    may store a message twice: at-least-once, same UUID).
 *
 * Files: rd_conn.c (options, connections, replies -> messages), redis.c
 * (publisher, subscriber, ops table), rd_sub.c (subscriptions).
 */
#ifndef SLI_RD_H
#define SLI_RD_H

#include <hiredis/hiredis.h>

#include "core/backend.h"

typedef struct rd_opts {
    char host[256];
    int port;
    char user[128], password[256];
    int db;
    char prefix[128];
    uint64_t maxlen;      /* XADD MAXLEN (0: none) */
    int64_t max_age;      /* XADD MINID now-max_age (0: none) */
    bool exact;           /* exact trimming instead of "~" */
    int64_t ack_deadline; /* ms */
    int64_t block;        /* ms, one blocking read */
    int64_t timeout;      /* ms, connect and I/O */
    int64_t reconnect;    /* ms, how long a publish keeps retrying */
    bool ack_sync;
} rd_opts;

int rd_opts_parse(sli_url *u, rd_opts *o);

typedef struct rd_conn {
    redisContext *c;
    const rd_opts *o;
    int64_t backoff, next_try; /* mono ms */
    int64_t down_since;        /* mono ms of the last loss (0: never connected/up) */
    char why[160];             /* why the last connection was lost or refused */
} rd_conn;

/* Connect (AUTH, SELECT) unless connected. With a deadline (mono ms, < 0:
 * one attempt) retries with backoff until it; stop (optional) cuts waits
 * short. Errors: SL_ECONN, SL_ECLOSED (stop set). */
int rd_conn_ensure(rd_conn *k, int64_t deadline, _Atomic bool *stop);
void rd_conn_drop(rd_conn *k);
/* Pipelining: rd_append queues one command, rd_read reads the next reply.
 * On an I/O error the connection is dropped and SL_ECONN returned. */
int rd_append(rd_conn *k, int argc, const char **argv, const size_t *lens);
int rd_read(rd_conn *k, redisReply **rep);
/* One command; *rep is the reply (free it). A server error reply is
 * returned as SL_EIO with the text in sl_errmsg() (*rep still set). */
int rd_cmd(rd_conn *k, redisReply **rep, int argc, const char **argv, const size_t *lens);
/* A server error reply meaning "not now" (LOADING, BUSY, TRYAGAIN,
 * MASTERDOWN): drops the connection (backoff) and returns SL_ECONN, so the
 * caller retries as after a lost connection; 0 for anything else. */
int rd_transient(rd_conn *k, const redisReply *r);
/* rd_cmd with NUL-terminated arguments, reply discarded (errors as above). */
int rd_cmdv(rd_conn *k, int argc, const char **argv);

/* The stream key of topic (malloc'd). */
char *rd_key(const rd_opts *o, const char *topic, size_t *len);

/* One stream entry [id, [field, value, ...]] -> a new message. */
int rd_entry_msg(const redisReply *e, sl_msg **out, char *id, size_t idlen);

/* Append the XADD command for m to k's output buffer. */
int rd_append_xadd(rd_conn *k, const char *key, size_t keylen, const sl_msg *m);

extern const sli_backend sli_redis_backend;

/* rd_sub.c */
int rd_subscribe(const rd_opts *o, const char *topic, const sl_subscribe_opts *so, void **out);
int rd_next(void *sub, sl_msg **out, int timeout_ms);
int rd_unsubscribe(void *sub);

#endif
