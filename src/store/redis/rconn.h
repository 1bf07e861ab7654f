/*
 * rconn.h - one hiredis connection for the framework's redis:// backends
 * (store, sync): URL parsing (host, port, /DB, user:password@, ?timeout=),
 * a mutex so a handle serves many threads, pipelined command batches, and
 * one reconnect-and-retry when the server went away (every command the
 * backends send is idempotent or a script that checks its own state).
 */
#ifndef SLI_RCONN_H
#define SLI_RCONN_H

#include <hiredis/hiredis.h>

#include "core/internal.h"
#include "core/url.h"

#define SLI_RCMD_MAXARGS 10

typedef struct sli_rcmd {
    int argc;
    const char *argv[SLI_RCMD_MAXARGS];
    size_t len[SLI_RCMD_MAXARGS];
} sli_rcmd;

/* Append one argument (len (size_t)-1: strlen). */
void sli_rcmd_arg(sli_rcmd *c, const void *p, size_t len);

typedef struct sli_rconn sli_rconn;

/* Parse u (reads option "timeout", default 5s) and connect. what names the
 * caller in errors ("store", "sync"). SL_ECONN when unreachable. */
int sli_rconn_open(sli_rconn **out, sli_url *u, const char *what);
void sli_rconn_close(sli_rconn *c);

/* Send n commands in one pipeline and read their n replies into out
 * (free each with freeReplyObject, or all with sli_rconn_free). On an I/O
 * failure reconnects once and resends the whole batch. Returns 0 (replies
 * may still be error replies: see sli_rconn_check) or SL_ECONN. */
int sli_rconn_run(sli_rconn *c, const sli_rcmd *cmds, size_t n, redisReply **out);
void sli_rconn_free(redisReply **r, size_t n);

/* 0, or SL_EIO naming what when r is an error reply (or NULL). */
int sli_rconn_check(const redisReply *r, const char *what);

#endif
