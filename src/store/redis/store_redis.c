/*
 * store_redis.c - the redis:// store. A record is one string key
 *   sl:store:<db>:<table>:k:<key> = u64le expiry, u32le meta length, meta,
 *                                   value
 * written with SET ... PXAT <expiry> (so Redis expires it), plus its key in
 * a sorted set sl:store:<db>:<table>:idx (all scores 0), which gives
 * prefix reads and listings in byte order by ZRANGEBYLEX. Both commands go
 * in one pipeline. Index entries whose record expired are found by the
 * reads (their GET is nil), left out and removed (ZREM). Limit and offset
 * are applied after that filtering, by the generic layer.
 *
 * URL: redis://[user:password@]host:port/DB, option ?timeout=5s.
 */
#ifdef SL_HAVE_REDIS
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/redis/rconn.h"
#include "store/store_int.h"

#define HDR 12

typedef struct rstore {
    sli_rconn *c;
} rstore;

static int r_open(void **impl, sli_url *u)
{
    rstore *r = calloc(1, sizeof *r);
    if (!r)
        return sli_err(SL_ENOMEM, "store: out of memory");
    int rc = sli_rconn_open(&r->c, u, "store");
    if (rc < 0) {
        free(r);
        return rc;
    }
    *impl = r;
    return 0;
}

static void r_close(void *impl)
{
    rstore *r = impl;
    if (!r)
        return;
    sli_rconn_close(r->c);
    free(r);
}

/* "sl:store:<db>:<tbl>:" + what (+ key). */
static char *rkey(const char *db, const char *tbl, const char *what, const char *key, size_t *len)
{
    size_t n = strlen(db) + strlen(tbl) + strlen(what) + strlen(key) + 12;
    char *s = malloc(n);
    if (!s)
        return NULL;
    int l = snprintf(s, n, "sl:store:%s:%s:%s%s", db, tbl, what, key);
    *len = (size_t)l;
    return s;
}

static int r_write(void *impl, const char *db, const char *tbl, const char *key, const void *val,
                   size_t vlen, const void *meta, size_t mlen, int64_t exp)
{
    rstore *r = impl;
    size_t kl, il;
    char *k = rkey(db, tbl, "k:", key, &kl), *idx = rkey(db, tbl, "idx", "", &il);
    unsigned char *blob = malloc(HDR + mlen + vlen);
    int rc;
    if (!k || !idx || !blob) {
        rc = sli_err(SL_ENOMEM, "store: out of memory");
        goto out;
    }
    for (int i = 0; i < 8; i++)
        blob[i] = (unsigned char)((uint64_t)exp >> (8 * i));
    for (int i = 0; i < 4; i++)
        blob[8 + i] = (unsigned char)((uint64_t)mlen >> (8 * i));
    if (mlen)
        memcpy(blob + HDR, meta, mlen);
    if (vlen)
        memcpy(blob + HDR + mlen, val, vlen);
    char exps[24];
    snprintf(exps, sizeof exps, "%lld", (long long)exp);
    sli_rcmd cmd[2] = {0};
    sli_rcmd_arg(&cmd[0], "SET", 3);
    sli_rcmd_arg(&cmd[0], k, kl);
    sli_rcmd_arg(&cmd[0], blob, HDR + mlen + vlen);
    if (exp > 0) {
        sli_rcmd_arg(&cmd[0], "PXAT", 4);
        sli_rcmd_arg(&cmd[0], exps, (size_t)-1);
    }
    sli_rcmd_arg(&cmd[1], "ZADD", 4);
    sli_rcmd_arg(&cmd[1], idx, il);
    sli_rcmd_arg(&cmd[1], "0", 1);
    sli_rcmd_arg(&cmd[1], key, (size_t)-1);
    redisReply *rep[2];
    if ((rc = sli_rconn_run(r->c, cmd, 2, rep)) == 0) {
        if ((rc = sli_rconn_check(rep[0], "store: SET")) == 0)
            rc = sli_rconn_check(rep[1], "store: ZADD");
        sli_rconn_free(rep, 2);
    }
out:
    free(k);
    free(idx);
    free(blob);
    return rc;
}

/* Add one GET reply (nil: expired/missing -> *stale). */
static int add_reply(sli_store_rows *rows, const char *key, const redisReply *v, bool keys_only,
                     bool *stale)
{
    *stale = false;
    if (v->type == REDIS_REPLY_NIL || (v->type == REDIS_REPLY_INTEGER && v->integer == 0)) {
        *stale = true;
        return 0;
    }
    if (keys_only && v->type == REDIS_REPLY_INTEGER)
        return sli_store_rows_add(rows, key, strlen(key), NULL, 0, NULL, 0, 0);
    if (v->type != REDIS_REPLY_STRING || v->len < HDR)
        return sli_err(SL_ECORRUPT, "store: redis value of '%s' is not a sluice record", key);
    const unsigned char *b = (const unsigned char *)v->str;
    uint64_t exp = 0, mlen = 0;
    for (int i = 0; i < 8; i++)
        exp |= (uint64_t)b[i] << (8 * i);
    for (int i = 0; i < 4; i++)
        mlen |= (uint64_t)b[8 + i] << (8 * i);
    if (mlen > v->len - HDR)
        return sli_err(SL_ECORRUPT, "store: redis value of '%s' is not a sluice record", key);
    if (exp > 0 && (int64_t)exp <= rows->now_ms) {
        *stale = true; /* expiring right now: Redis has not dropped it yet */
        return 0;
    }
    return sli_store_rows_add(rows, key, strlen(key), b + HDR + mlen, v->len - HDR - mlen, b + HDR,
                              mlen, (int64_t)exp);
}

/* Index entries from..to (ZRANGEBYLEX) of q. */
static int index_range(rstore *r, const sli_store_q *q, const char *idx, size_t il,
                       redisReply **out)
{
    char *end = NULL;
    if (sli_store_prefix_end(q->key, &end) < 0)
        return SL_ENOMEM;
    size_t kl = strlen(q->key);
    char *lo = malloc(kl + 2), *hi = malloc(end ? strlen(end) + 2 : 2);
    int rc = SL_ENOMEM;
    if (lo && hi) {
        sprintf(lo, "[%s", q->key);
        if (end)
            sprintf(hi, "(%s", end);
        else
            strcpy(hi, "+");
        sli_rcmd cmd = {0};
        sli_rcmd_arg(&cmd, "ZRANGEBYLEX", (size_t)-1);
        sli_rcmd_arg(&cmd, idx, il);
        sli_rcmd_arg(&cmd, lo, (size_t)-1);
        sli_rcmd_arg(&cmd, hi, (size_t)-1);
        if ((rc = sli_rconn_run(r->c, &cmd, 1, out)) == 0 &&
            (rc = sli_rconn_check(*out, "store: ZRANGEBYLEX")) == 0 &&
            (*out)->type != REDIS_REPLY_ARRAY)
            rc = sli_err(SL_EPROTO, "store: ZRANGEBYLEX did not answer an array");
        if (rc < 0)
            sli_rconn_free(out, 1);
    } else {
        sli_err(SL_ENOMEM, "store: out of memory");
    }
    free(lo);
    free(hi);
    free(end);
    return rc;
}

/* GET (or EXISTS) every key in names[0..n), add the live ones, ZREM the
 * stale ones. */
static int fetch(rstore *r, const sli_store_q *q, char **names, size_t n, const char *idx,
                 size_t il, sli_store_rows *rows)
{
    sli_rcmd *cmd = calloc(n ? n : 1, sizeof *cmd);
    char **keys = calloc(n ? n : 1, sizeof *keys);
    redisReply **rep = calloc(n ? n : 1, sizeof *rep);
    int rc = 0;
    if (!cmd || !keys || !rep)
        rc = sli_err(SL_ENOMEM, "store: out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t kl;
        if (!(keys[i] = rkey(q->db, q->tbl, "k:", names[i], &kl))) {
            rc = sli_err(SL_ENOMEM, "store: out of memory");
            break;
        }
        sli_rcmd_arg(&cmd[i], q->keys_only ? "EXISTS" : "GET", (size_t)-1);
        sli_rcmd_arg(&cmd[i], keys[i], kl);
    }
    if (rc == 0 && n)
        rc = sli_rconn_run(r->c, cmd, n, rep);
    size_t nstale = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bool stale;
        if ((rc = sli_rconn_check(rep[i], "store: GET")) == 0 &&
            (rc = add_reply(rows, names[i], rep[i], q->keys_only, &stale)) == 0 && stale) {
            memset(&cmd[nstale], 0, sizeof cmd[nstale]);
            sli_rcmd_arg(&cmd[nstale], "ZREM", 4);
            sli_rcmd_arg(&cmd[nstale], idx, il);
            sli_rcmd_arg(&cmd[nstale], names[i], (size_t)-1);
            nstale++;
        }
    }
    if (rep)
        sli_rconn_free(rep, n);
    if (rc == 0 && nstale && sli_rconn_run(r->c, cmd, nstale, rep) == 0)
        sli_rconn_free(rep, nstale); /* best effort: the next read retries */
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
    free(cmd);
    free(rep);
    return rc;
}

static int r_query(void *impl, const sli_store_q *q, sli_store_rows *rows)
{
    rstore *r = impl;
    size_t il;
    char *idx = rkey(q->db, q->tbl, "idx", "", &il);
    if (!idx)
        return sli_err(SL_ENOMEM, "store: out of memory");
    int rc;
    if (q->exact) {
        char *one = (char *)q->key;
        rc = fetch(r, q, &one, 1, idx, il, rows);
    } else {
        redisReply *range = NULL;
        if ((rc = index_range(r, q, idx, il, &range)) == 0) {
            char **names = calloc(range->elements ? range->elements : 1, sizeof *names);
            if (!names)
                rc = sli_err(SL_ENOMEM, "store: out of memory");
            for (size_t i = 0; rc == 0 && i < range->elements; i++) {
                if (range->element[i]->type != REDIS_REPLY_STRING)
                    rc = sli_err(SL_EPROTO, "store: index entry is not a string");
                else
                    names[i] = range->element[i]->str;
            }
            if (rc == 0)
                rc = fetch(r, q, names, range->elements, idx, il, rows);
            free(names);
            freeReplyObject(range);
        }
    }
    free(idx);
    return rc;
}

static int r_del(void *impl, const char *db, const char *tbl, const char *key)
{
    rstore *r = impl;
    size_t kl, il;
    char *k = rkey(db, tbl, "k:", key, &kl), *idx = rkey(db, tbl, "idx", "", &il);
    int rc;
    if (!k || !idx) {
        rc = sli_err(SL_ENOMEM, "store: out of memory");
    } else {
        sli_rcmd cmd[2] = {0};
        sli_rcmd_arg(&cmd[0], "DEL", 3);
        sli_rcmd_arg(&cmd[0], k, kl);
        sli_rcmd_arg(&cmd[1], "ZREM", 4);
        sli_rcmd_arg(&cmd[1], idx, il);
        sli_rcmd_arg(&cmd[1], key, (size_t)-1);
        redisReply *rep[2];
        if ((rc = sli_rconn_run(r->c, cmd, 2, rep)) == 0) {
            if ((rc = sli_rconn_check(rep[0], "store: DEL")) == 0)
                rc = sli_rconn_check(rep[1], "store: ZREM");
            sli_rconn_free(rep, 2);
        }
    }
    free(k);
    free(idx);
    return rc;
}

const sli_store_ops sli_store_redis = {
    .scheme = "redis",
    .open = r_open,
    .write = r_write,
    .query = r_query,
    .del = r_del,
    .close = r_close,
};
#endif
