/*
 * rd_conn.c - the redis:// plumbing shared by publishers and subscriptions:
 * URL options, connections with reconnect backoff, pipelined commands, and
 * the mapping between messages and stream entries (see rd.h).
 *
 * Options (publishers and subscribers accept all of them, so one URL serves
 * both):
 *   prefix=STR          stream key = prefix + topic (default "")
 *   maxlen=N            XADD MAXLEN ~ N (keep about N entries per stream)
 *   max_age=DUR         XADD MINID ~ now-DUR (drop entries older than DUR)
 *   exact_trim=bool     trim exactly ("=") instead of "~" (slower)
 *   ack_deadline=DUR    a delivery not acked within it is reclaimed by the
 *                       group (XAUTOCLAIM), default 30s; nack delays longer
 *                       than it are cut to it
 *   block=DUR           one blocking read (default 100ms; bounds close time)
 *   timeout=DUR         connect and I/O timeout (default 10s)
 *   reconnect=DUR       how long a publish retries while the server is
 *                       unreachable (default 15s); sl_next reports SL_ECONN
 *                       only once the server was away that long (before,
 *                       SL_ETIMEDOUT: the subscription keeps reconnecting)
 *   ack=batch|sync      batch (default): acks are sent by the subscription's
 *                       reading thread before its next read (or at close);
 *                       sync: sl_msg_ack returns after the XACK reply
 * user:password@ in the URL authenticate (AUTH); the path /N selects db N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "backends/redis/rd.h"

int rd_opts_parse(sli_url *u, rd_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->host, sizeof o->host, "%s", u->host[0] ? u->host : "127.0.0.1");
    o->port = u->port ? u->port : 6379;
    if (u->user && strlen(u->user) >= sizeof o->user)
        return sli_err(SL_EINVAL, "redis: user name too long");
    if (u->password && strlen(u->password) >= sizeof o->password)
        return sli_err(SL_EINVAL, "redis: password too long");
    snprintf(o->user, sizeof o->user, "%s", u->user ? u->user : "");
    snprintf(o->password, sizeof o->password, "%s", u->password ? u->password : "");
    if (u->path[0] && strcmp(u->path, "/") != 0) {
        char *end;
        long db = strtol(u->path + 1, &end, 10);
        if (*end || db < 0 || db > 1000000)
            return sli_err(SL_EINVAL, "redis: path must be /DB (a number), got '%s'", u->path);
        o->db = (int)db;
    }
    const char *prefix = sli_url_opt(u, "prefix");
    if (prefix && strlen(prefix) >= sizeof o->prefix)
        return sli_err(SL_EBADOPT, "option prefix: too long");
    snprintf(o->prefix, sizeof o->prefix, "%s", prefix ? prefix : "");
    int rc, ack = 0;
    if ((rc = sli_url_opt_u64(u, "maxlen", 0, UINT64_MAX / 2, 0, &o->maxlen)) ||
        (rc = sli_url_opt_ms(u, "max_age", 0, &o->max_age)) ||
        (rc = sli_url_opt_bool(u, "exact_trim", false, &o->exact)) ||
        (rc = sli_url_opt_ms(u, "ack_deadline", 30000, &o->ack_deadline)) ||
        (rc = sli_url_opt_ms(u, "block", 100, &o->block)) ||
        (rc = sli_url_opt_ms(u, "timeout", 10000, &o->timeout)) ||
        (rc = sli_url_opt_ms(u, "reconnect", 15000, &o->reconnect)) ||
        (rc = sli_url_opt_enum(u, "ack", "batch|sync", 0, &ack)))
        return rc;
    if (o->maxlen && o->max_age)
        return sli_err(SL_EBADOPT, "options maxlen and max_age exclude each other");
    if (o->ack_deadline < 10)
        return sli_err(SL_EBADOPT, "option ack_deadline must be at least 10ms");
    if (o->timeout < 100)
        return sli_err(SL_EBADOPT, "option timeout must be at least 100ms");
    if (o->block < 1 || o->block >= o->timeout)
        return sli_err(SL_EBADOPT, "option block must be at least 1ms and below timeout");
    o->ack_sync = ack == 1;
    return 0;
}

/* ---------- connections ---------- */

void rd_conn_drop(rd_conn *k)
{
    if (k->c) {
        redisFree(k->c);
        k->down_since = sli_mono_ms();
    }
    k->c = NULL;
}

static int handshake(rd_conn *k)
{
    const rd_opts *o = k->o;
    int rc = 0;
    if (o->password[0]) {
        const char *a[] = {"AUTH", o->user, o->password};
        rc = o->user[0] ? rd_cmdv(k, 3, a) : rd_cmdv(k, 2, (const char *[]){"AUTH", o->password});
    }
    if (!rc && o->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", o->db);
        rc = rd_cmdv(k, 2, (const char *[]){"SELECT", db});
    }
    return rc;
}

static int connect_once(rd_conn *k)
{
    const rd_opts *o = k->o;
    struct timeval tv = {.tv_sec = o->timeout / 1000, .tv_usec = (o->timeout % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(o->host, o->port, tv);
    if (!c)
        return sli_err(SL_ENOMEM, "redis: out of memory");
    if (c->err) {
        int rc = sli_err(SL_ECONN, "redis %s:%d: %s", o->host, o->port, c->errstr);
        redisFree(c);
        return rc;
    }
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    k->c = c;
    int rc = handshake(k);
    if (rc) {
        rd_conn_drop(k);
        return rc == SL_ECONN ? rc
                              : sli_err(SL_ECONN, "redis %s:%d: %s", o->host, o->port, sl_errmsg());
    }
    return 0;
}

int rd_conn_ensure(rd_conn *k, int64_t deadline, _Atomic bool *stop)
{
    while (!k->c) {
        if (stop && atomic_load(stop))
            return sli_err(SL_ECLOSED, "redis: closed");
        int64_t now = sli_mono_ms();
        if (now < k->next_try) {
            if (deadline < 0 || now >= deadline)
                return sli_err(SL_ECONN, "redis %s:%d: unreachable (retrying in %lld ms): %s",
                               k->o->host, k->o->port, (long long)(k->next_try - now), k->why);
            /* nap until the next attempt or the deadline, whichever is first */
            int64_t nap = (k->next_try < deadline ? k->next_try : deadline) - now;
            usleep((useconds_t)(nap > 50 ? 50 : nap) * 1000);
            continue;
        }
        int rc = connect_once(k);
        if (rc)
            snprintf(k->why, sizeof k->why, "%s", sl_errmsg());
        if (rc == 0) {
            k->backoff = 0;
            k->down_since = 0;
            break;
        }
        k->backoff = k->backoff ? (k->backoff * 2 > 2000 ? 2000 : k->backoff * 2) : 50;
        k->next_try = sli_mono_ms() + k->backoff;
        if (deadline < 0 || sli_mono_ms() >= deadline)
            return rc;
    }
    return 0;
}

int rd_append(rd_conn *k, int argc, const char **argv, const size_t *lens)
{
    if (!k->c)
        return sli_err(SL_ECONN, "redis: not connected");
    if (redisAppendCommandArgv(k->c, argc, argv, lens) != REDIS_OK)
        return sli_err(SL_ENOMEM, "redis: cannot queue a command");
    return 0;
}

int rd_read(rd_conn *k, redisReply **rep)
{
    *rep = NULL;
    if (!k->c)
        return sli_err(SL_ECONN, "redis: not connected");
    void *r = NULL;
    if (redisGetReply(k->c, &r) != REDIS_OK || !r) {
        int rc = sli_err(SL_ECONN, "redis %s:%d: connection lost: %s", k->o->host, k->o->port,
                         k->c->errstr[0] ? k->c->errstr : "no reply");
        snprintf(k->why, sizeof k->why, "%s", sl_errmsg());
        sli_log(SL_LOG_WARN, "redis", "%s; reconnecting", k->why);
        rd_conn_drop(k);
        return rc;
    }
    *rep = r;
    return 0;
}

int rd_transient(rd_conn *k, const redisReply *r)
{
    static const char *const codes[] = {"LOADING", "BUSY ", "TRYAGAIN", "MASTERDOWN"};
    if (!r || r->type != REDIS_REPLY_ERROR)
        return 0;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (strncmp(r->str, codes[i], strlen(codes[i])) == 0) {
            int rc = sli_err(SL_ECONN, "redis %s:%d: not ready: %.*s", k->o->host, k->o->port,
                             (int)r->len, r->str);
            snprintf(k->why, sizeof k->why, "%s", sl_errmsg());
            rd_conn_drop(k); /* pending replies are unknown: start over, with backoff */
            k->backoff = k->backoff ? k->backoff : 50;
            k->next_try = sli_mono_ms() + k->backoff;
            return rc;
        }
    }
    return 0;
}

int rd_cmd(rd_conn *k, redisReply **rep, int argc, const char **argv, const size_t *lens)
{
    *rep = NULL;
    int rc = rd_append(k, argc, argv, lens);
    if (!rc)
        rc = rd_read(k, rep);
    if (!rc && (*rep)->type == REDIS_REPLY_ERROR && !(rc = rd_transient(k, *rep)))
        rc = sli_err(SL_EIO, "redis: %s: %.*s", argv[0], (int)(*rep)->len, (*rep)->str);
    return rc;
}

int rd_cmdv(rd_conn *k, int argc, const char **argv)
{
    redisReply *r;
    int rc = rd_cmd(k, &r, argc, argv, NULL);
    if (r)
        freeReplyObject(r);
    return rc;
}

/* ---------- messages <-> entries ---------- */

char *rd_key(const rd_opts *o, const char *topic, size_t *len)
{
    size_t lp = strlen(o->prefix), lt = strlen(topic);
    char *k = malloc(lp + lt + 1);
    if (!k)
        return NULL;
    memcpy(k, o->prefix, lp);
    memcpy(k + lp, topic, lt + 1);
    *len = lp + lt;
    return k;
}

int rd_append_xadd(rd_conn *k, const char *key, size_t keylen, const sl_msg *m)
{
    const rd_opts *o = k->o;
    size_t nmeta = sl_msg_meta_count(m), argc = 0;
    size_t cap = 10 + 2 * nmeta;
    const char **argv = malloc(cap * sizeof *argv);
    size_t *lens = malloc(cap * sizeof *lens);
    char **mk = calloc(nmeta ? nmeta : 1, sizeof *mk);
    int rc = 0;
    if (!argv || !lens || !mk) {
        rc = sli_err(SL_ENOMEM, "out of memory");
        goto out;
    }
#define ARG(s, l) (argv[argc] = (s), lens[argc++] = (l))
    ARG("XADD", 4);
    ARG(key, keylen);
    char num[32];
    if (o->maxlen || o->max_age) {
        if (o->maxlen) {
            ARG("MAXLEN", 6);
            snprintf(num, sizeof num, "%llu", (unsigned long long)o->maxlen);
        } else {
            ARG("MINID", 5);
            int64_t t = sli_wall_ms() - o->max_age;
            snprintf(num, sizeof num, "%lld", (long long)(t > 0 ? t : 0));
        }
        ARG(o->exact ? "=" : "~", 1);
        ARG(num, strlen(num));
    }
    ARG("*", 1);
    const char *uuid = sl_msg_uuid(m);
    ARG("uuid", 4);
    ARG(uuid, strlen(uuid));
    for (size_t i = 0; i < nmeta; i++) {
        const char *mkey, *mval;
        sl_msg_meta_at(m, i, &mkey, &mval);
        size_t kl = strlen(mkey);
        if (!(mk[i] = malloc(kl + 3))) {
            rc = sli_err(SL_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(mk[i], "m:", 2);
        memcpy(mk[i] + 2, mkey, kl + 1);
        ARG(mk[i], kl + 2);
        ARG(mval, strlen(mval));
    }
    size_t plen = 0;
    const void *p = sl_msg_payload(m, &plen);
    ARG("payload", 7);
    ARG(plen ? p : "", plen);
#undef ARG
    rc = rd_append(k, (int)argc, argv, lens);
out:
    if (mk)
        for (size_t i = 0; i < nmeta; i++)
            free(mk[i]);
    free(mk);
    free(argv);
    free(lens);
    return rc;
}

static bool is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

int rd_entry_msg(const redisReply *e, sl_msg **out, char *id, size_t idlen)
{
    *out = NULL;
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !is_str(e->element[0]) ||
        e->element[0]->len >= idlen)
        return sli_err(SL_EPROTO, "redis: malformed stream entry");
    memcpy(id, e->element[0]->str, e->element[0]->len);
    id[e->element[0]->len] = 0;
    const redisReply *f = e->element[1];
    if (!f || f->type != REDIS_REPLY_ARRAY || f->elements % 2)
        return sli_err(SL_EPROTO, "redis: entry %s has no fields (deleted?)", id);
    const char *uuid = id;
    const redisReply *payload = NULL;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (!is_str(k) || !is_str(v))
            return sli_err(SL_EPROTO, "redis: entry %s: malformed field", id);
        if (k->len == 4 && memcmp(k->str, "uuid", 4) == 0 && v->len > 0)
            uuid = v->str;
        else if (k->len == 7 && memcmp(k->str, "payload", 7) == 0)
            payload = v;
    }
    sl_msg *m;
    int rc =
        sl_msg_new_with_uuid(&m, uuid, payload ? payload->str : NULL, payload ? payload->len : 0);
    if (rc)
        return rc;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->len > 2 && memcmp(k->str, "m:", 2) == 0 &&
            (rc = sl_msg_meta_set(m, k->str + 2, v->str)) != 0) {
            sl_msg_unref(m);
            return rc;
        }
    }
    *out = m;
    return 0;
}
