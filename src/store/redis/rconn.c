/*
 * rconn.c - a mutex-guarded hiredis connection with reconnect, shared by the
 * store and sync redis:// backends (see rconn.h).
 */
#ifdef SL_HAVE_REDIS
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "store/redis/rconn.h"

struct sli_rconn {
    pthread_mutex_t mu;
    redisContext *ctx;
    char host[256];
    int port, db;
    char *user, *password;
    int64_t timeout_ms;
    char what[16];
};

void sli_rcmd_arg(sli_rcmd *c, const void *p, size_t len)
{
    if (c->argc >= SLI_RCMD_MAXARGS)
        return;
    c->argv[c->argc] = p;
    c->len[c->argc] = len == (size_t)-1 ? strlen(p) : len;
    c->argc++;
}

static int simple(redisContext *ctx, const char *what, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    int rc = r && r->type != REDIS_REPLY_ERROR ? 0 : SL_ECONN;
    if (rc < 0)
        sli_err(SL_ECONN, "%s: redis %s failed: %s", what, argv[0], r ? r->str : ctx->errstr);
    if (r)
        freeReplyObject(r);
    return rc;
}

static int reconnect(sli_rconn *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    struct timeval tv = {.tv_sec = c->timeout_ms / 1000, .tv_usec = (c->timeout_ms % 1000) * 1000};
    c->ctx = redisConnectWithTimeout(c->host, c->port, tv);
    if (!c->ctx || c->ctx->err) {
        int rc = sli_err(SL_ECONN, "%s: cannot connect to redis %s:%d: %s", c->what, c->host,
                         c->port, c->ctx ? c->ctx->errstr : "out of memory");
        if (c->ctx)
            redisFree(c->ctx);
        c->ctx = NULL;
        return rc;
    }
    redisSetTimeout(c->ctx, tv);
    char dbs[16];
    snprintf(dbs, sizeof dbs, "%d", c->db);
    int rc = 0;
    if (c->password) {
        const char *a[3] = {"AUTH", c->user ? c->user : c->password, c->password};
        rc = simple(c->ctx, c->what, c->user ? 3 : 2, a);
    }
    if (rc == 0 && c->db) {
        const char *a[2] = {"SELECT", dbs};
        rc = simple(c->ctx, c->what, 2, a);
    }
    if (rc < 0) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    return rc;
}

void sli_rconn_close(sli_rconn *c)
{
    if (!c)
        return;
    if (c->ctx)
        redisFree(c->ctx);
    free(c->user);
    free(c->password);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int sli_rconn_open(sli_rconn **out, sli_url *u, const char *what)
{
    int64_t timeout;
    int rc = sli_url_opt_ms(u, "timeout", 5000, &timeout);
    if (rc < 0)
        return rc;
    if (timeout < 100)
        return sli_err(SL_EBADOPT, "%s: option timeout must be at least 100ms", what);
    sli_rconn *c = calloc(1, sizeof *c);
    if (!c)
        return sli_err(SL_ENOMEM, "%s: out of memory", what);
    pthread_mutex_init(&c->mu, NULL);
    snprintf(c->what, sizeof c->what, "%s", what);
    c->timeout_ms = timeout;
    if (strlen(u->host) >= sizeof c->host) {
        sli_rconn_close(c);
        return sli_err(SL_EINVAL, "%s: redis host name too long", what);
    }
    snprintf(c->host, sizeof c->host, "%s", u->host[0] ? u->host : "127.0.0.1");
    c->port = u->port ? u->port : 6379;
    if (u->path[0] && strcmp(u->path, "/") != 0) {
        char *end;
        long db = strtol(u->path + 1, &end, 10);
        if (*end || end == u->path + 1 || db < 0 || db > 1000000) {
            sli_rconn_close(c);
            return sli_err(SL_EINVAL, "%s: redis path must be /DB (a number), got '%s'", what,
                           u->path);
        }
        c->db = (int)db;
    }
    if ((u->user && u->user[0] && !(c->user = strdup(u->user))) ||
        (u->password && !(c->password = strdup(u->password)))) {
        sli_rconn_close(c);
        return sli_err(SL_ENOMEM, "%s: out of memory", what);
    }
    if ((rc = reconnect(c)) < 0) {
        sli_rconn_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void sli_rconn_free(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i]) {
            freeReplyObject(r[i]);
            r[i] = NULL;
        }
}

static int run_once(sli_rconn *c, const sli_rcmd *cmds, size_t n, redisReply **out)
{
    for (size_t i = 0; i < n; i++)
        if (redisAppendCommandArgv(c->ctx, cmds[i].argc, (const char **)(uintptr_t)cmds[i].argv,
                                   cmds[i].len) != REDIS_OK)
            return SL_ECONN;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c->ctx, &r) != REDIS_OK || !r) {
            sli_rconn_free(out, i);
            return SL_ECONN;
        }
        out[i] = r;
    }
    return 0;
}

int sli_rconn_run(sli_rconn *c, const sli_rcmd *cmds, size_t n, redisReply **out)
{
    memset(out, 0, n * sizeof *out);
    pthread_mutex_lock(&c->mu);
    int rc = SL_ECONN;
    for (int attempt = 0; attempt < 2 && rc < 0; attempt++) {
        if ((!c->ctx || c->ctx->err) && reconnect(c) < 0)
            continue;
        rc = run_once(c, cmds, n, out);
        if (rc < 0) {
            sli_err(SL_ECONN, "%s: redis %s:%d: %s", c->what, c->host, c->port,
                    c->ctx->errstr[0] ? c->ctx->errstr : "connection lost");
            redisFree(c->ctx);
            c->ctx = NULL;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int sli_rconn_check(const redisReply *r, const char *what)
{
    if (!r)
        return sli_err(SL_EIO, "%s: no reply from redis", what);
    if (r->type == REDIS_REPLY_ERROR)
        return sli_err(SL_EIO, "%s: redis error: %s", what, r->str);
    return 0;
}
#endif
