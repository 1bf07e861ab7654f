/*
 * sync_redis.c - the redis:// sync backend. Lock name N lives in two keys:
 *   sl:lock:N        the holder's token, SET with PX ttl (Redis expires it)
 *   sl:lock:N:fence  the last token issued for N
 * Each operation is one Lua script, so it is atomic on the server:
 *   take:    only if sl:lock:N does not exist (SET NX semantics), a new
 *            token = max(fence + 1, server TIME in microseconds), stored
 *            in both keys. The clock floor keeps tokens growing even when
 *            the server lost the fence key (restart without persistence).
 *   refresh: PEXPIRE only if the value is still our token;
 *   release: DEL only if the value is still our token.
 * Tokens travel as decimal strings (string.format %d: Lua numbers print
 * with 14 digits otherwise). Commands survive a server restart: the
 * connection reconnects and retries once (see store/redis/rconn.c).
 *
 * URL: redis://[user:pass@]HOST:PORT/DB, ?timeout=5s.
 */
#ifdef SL_HAVE_REDIS
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/redis/rconn.h"
#include "sync/sync_int.h"

static const char take_lua[] = "if redis.call('exists', KEYS[1]) == 1 then return 0 end "
                               "local t = tonumber(redis.call('get', KEYS[2]) or '0') + 1 "
                               "local now = redis.call('time') "
                               "local floor = tonumber(now[1]) * 1000000 + tonumber(now[2]) "
                               "if t < floor then t = floor end "
                               "local s = string.format('%d', t) "
                               "redis.call('set', KEYS[2], s) "
                               "redis.call('set', KEYS[1], s, 'PX', ARGV[1]) "
                               "return s";
static const char refresh_lua[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                  "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0";
static const char release_lua[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                  "return redis.call('del', KEYS[1]) end return 0";

static int y_open(void **impl, sli_url *u)
{
    return sli_rconn_open((sli_rconn **)impl, u, "sync");
}

static void y_close(void *impl)
{
    sli_rconn_close(impl);
}

/* EVAL script with keys "sl:lock:N" [and its fence key] and args. */
static int eval(sli_rconn *c, const char *script, const char *name, bool fence, const char *a1,
                const char *a2, redisReply **out)
{
    char k1[320], k2[330];
    snprintf(k1, sizeof k1, "sl:lock:%s", name);
    snprintf(k2, sizeof k2, "sl:lock:%s:fence", name);
    sli_rcmd cmd = {0};
    sli_rcmd_arg(&cmd, "EVAL", 4);
    sli_rcmd_arg(&cmd, script, (size_t)-1);
    sli_rcmd_arg(&cmd, fence ? "2" : "1", 1);
    sli_rcmd_arg(&cmd, k1, (size_t)-1);
    if (fence)
        sli_rcmd_arg(&cmd, k2, (size_t)-1);
    sli_rcmd_arg(&cmd, a1, (size_t)-1);
    if (a2)
        sli_rcmd_arg(&cmd, a2, (size_t)-1);
    int rc = sli_rconn_run(c, &cmd, 1, out);
    if (rc == 0 && (rc = sli_rconn_check(*out, "sync: EVAL")) < 0)
        sli_rconn_free(out, 1);
    return rc;
}

static int y_try(void *impl, const char *name, int64_t ttl, uint64_t *token)
{
    char ttls[24];
    snprintf(ttls, sizeof ttls, "%lld", (long long)ttl);
    redisReply *r;
    int rc = eval(impl, take_lua, name, true, ttls, NULL, &r);
    if (rc < 0)
        return rc;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        rc = SL_EBUSY;
    else if (r->type == REDIS_REPLY_STRING) {
        char *end;
        unsigned long long t = strtoull(r->str, &end, 10);
        if (*end || t == 0)
            rc = sli_err(SL_EPROTO, "sync: bad token '%s' from redis", r->str);
        else
            *token = t;
    } else
        rc = sli_err(SL_EPROTO, "sync: unexpected reply type %d to take", r->type);
    freeReplyObject(r);
    return rc;
}

static int owned(void *impl, const char *script, const char *name, uint64_t token, int64_t ttl)
{
    char tok[24], ttls[24];
    snprintf(tok, sizeof tok, "%llu", (unsigned long long)token);
    snprintf(ttls, sizeof ttls, "%lld", (long long)ttl);
    redisReply *r;
    int rc = eval(impl, script, name, false, tok, script == refresh_lua ? ttls : NULL, &r);
    if (rc < 0)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = sli_err(SL_EPROTO, "sync: unexpected reply type %d", r->type);
    else if (r->integer == 0)
        rc = sli_err(SL_ESTATE, "sync: lock '%s' is no longer held by token %s", name, tok);
    freeReplyObject(r);
    return rc;
}

static int y_refresh(void *impl, const char *name, uint64_t token, int64_t ttl)
{
    return owned(impl, refresh_lua, name, token, ttl);
}

static int y_unlock(void *impl, const char *name, uint64_t token)
{
    return owned(impl, release_lua, name, token, 0);
}

const sli_sync_ops sli_sync_redis = {
    .scheme = "redis",
    .open = y_open,
    .try_lock = y_try,
    .refresh = y_refresh,
    .unlock = y_unlock,
    .close = y_close,
};
#endif
