/*
 * bench_redis.c - redis:// against a raw hiredis peer, side by side in one run,
 * on the same Redis server.
 *
 * Workload "redis_pubsub_64b": N messages of 64 bytes, one publisher thread ->
 * one consumer (the main thread) in a consumer group; every message received,
 * checked (size, sequence number in the first 8 bytes, in order) and acked.
 *   ours: sl_msg_new + sl_publish of BATCH messages per call on redis:// (one
 *         pipelined round of XADDs, returns after the replies); the consumer
 *         subscribes with a group and a prefetch window of PREFETCH and does
 *         sl_next + sl_msg_ack + sl_msg_unref per message (acks go out with
 *         the next read, ack=batch).
 *   peer: hiredis doing the same work by hand: the publisher makes a UUIDv7
 *         and pipelines BATCH "XADD key * uuid U payload P" then reads the
 *         replies; the consumer pipelines "XACK key group <ids of the last
 *         read>" with "XREADGROUP GROUP g c COUNT PREFETCH BLOCK 100 STREAMS
 *         key >" and parses the entries.
 * Each repetition uses a fresh stream (deleted afterwards). Time runs from the
 * first publish until the last message is received. Sides alternate for REPS
 * repetitions; the medians are reported, and the run ends with one line:
 *   ratio: redis_pubsub_64b ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=0.8
 *
 * The server: SL_REDIS_URL if set (then nothing is started); otherwise
 * scripts/services.sh (SL_SERVICES_SH, or found above the binary) starts a
 * private Redis (SL_SERVICES_DIR default /tmp/sluice-bench-services,
 * SL_REDIS_PORT default 16479) and stops it at the end if it started it.
 * When no server can be had the bench prints "bench_redis: skipped: ..." and
 * exits 0 without a ratio line.
 * Knobs: SL_BENCH_MESSAGES (default 20000), SL_BENCH_REPS (5), SL_BENCH_BATCH
 * (64), SL_BENCH_PREFETCH (256), SL_BENCH_ONLY=ours|peer.
 */
#include <hiredis/hiredis.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/benchlib.h"
#include "sluice/sluice.h"

#define MSG_SIZE 64

typedef struct run {
    uint64_t n;
    unsigned batch, prefetch;
    char key[96];
    char host[128];
    int port;
    int64_t t_start, t_end;
} run;

static const char *g_url;

/* ---------- the server ---------- */

static bench_service server;

static const char *server_url(void)
{
    const char *env = getenv("SL_REDIS_URL");
    if (env && *env)
        return env;
    setenv("SL_SERVICES_DIR", "/tmp/sluice-bench-services", 0);
    setenv("SL_REDIS_PORT", "16479", 0);
    return bench_service_url(&server, "redis", "redis://");
}

static redisContext *peer_connect(const run *r)
{
    redisContext *c = redisConnect(r->host, r->port);
    if (!c || c->err)
        bench_die("hiredis: cannot connect to %s:%d: %s", r->host, r->port,
                  c ? c->errstr : "out of memory");
    return c;
}

static void peer_cmd(redisContext *c, const char *cmd)
{
    redisReply *rep = redisCommand(c, cmd);
    if (!rep)
        bench_die("hiredis: %s: %s", cmd, c->errstr);
    freeReplyObject(rep);
}

/* ---------- ours ---------- */

static void *ours_publisher(void *arg)
{
    run *r = arg;
    sl_publisher *pub;
    if (sl_publisher_open(&pub, g_url) != 0)
        bench_die("sl_publisher_open(%s): %s", g_url, sl_errmsg());
    sl_msg **ms = calloc(r->batch, sizeof *ms);
    unsigned char buf[MSG_SIZE] = {0};
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n; i += r->batch) {
        size_t k = r->n - i < r->batch ? (size_t)(r->n - i) : r->batch;
        for (size_t j = 0; j < k; j++) {
            uint64_t seq = i + j;
            memcpy(buf, &seq, sizeof seq);
            if (sl_msg_new(&ms[j], buf, sizeof buf) != 0)
                bench_die("sl_msg_new failed");
        }
        if (sl_publish(pub, r->key, ms, k) != 0)
            bench_die("sl_publish: %s", sl_errmsg());
        for (size_t j = 0; j < k; j++)
            sl_msg_unref(ms[j]);
    }
    free(ms);
    sl_publisher_close(pub);
    return NULL;
}

static double run_ours(run *r)
{
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "bench";
    o.start = SL_START_EARLIEST;
    o.prefetch = r->prefetch;
    if (sl_subscriber_open(&sub, g_url) != 0 || sl_subscribe(sub, r->key, &o, &s) != 0)
        bench_die("subscribe on %s: %s", g_url, sl_errmsg());
    pthread_t t;
    pthread_create(&t, NULL, ours_publisher, r);
    for (uint64_t got = 0; got < r->n; got++) {
        sl_msg *m;
        int rc = sl_next(s, &m, 30000);
        if (rc)
            bench_die("sl_next after %llu: %s: %s", (unsigned long long)got, sl_strerror(rc),
                      sl_errmsg());
        size_t len;
        const void *p = sl_msg_payload(m, &len);
        bench_check_seq(p, len, MSG_SIZE, got);
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    r->t_end = bench_now_ns();
    pthread_join(t, NULL);
    sl_subscriber_close(sub);
    return (double)r->n * 1e9 / (double)(r->t_end - r->t_start);
}

/* ---------- peer: raw hiredis ---------- */

static void *peer_publisher(void *arg)
{
    run *r = arg;
    redisContext *c = peer_connect(r);
    unsigned char buf[MSG_SIZE] = {0};
    char uuid[SL_UUID_LEN + 1];
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n; i += r->batch) {
        size_t k = r->n - i < r->batch ? (size_t)(r->n - i) : r->batch;
        for (size_t j = 0; j < k; j++) {
            uint64_t seq = i + j;
            memcpy(buf, &seq, sizeof seq);
            sl_uuid_v7(uuid);
            const char *argv[] = {"XADD", r->key, "*", "uuid", uuid, "payload", (char *)buf};
            size_t lens[] = {4, strlen(r->key), 1, 4, SL_UUID_LEN, 7, MSG_SIZE};
            redisAppendCommandArgv(c, 7, argv, lens);
        }
        for (size_t j = 0; j < k; j++) {
            void *rep;
            if (redisGetReply(c, &rep) != REDIS_OK)
                bench_die("hiredis XADD: %s", c->errstr);
            if (((redisReply *)rep)->type == REDIS_REPLY_ERROR)
                bench_die("XADD: %s", ((redisReply *)rep)->str);
            freeReplyObject(rep);
        }
    }
    redisFree(c);
    return NULL;
}

/* Take the entries of an XREADGROUP reply: check them, keep their ids. */
static size_t peer_take(redisReply *rep, uint64_t *got, char (*ids)[48])
{
    size_t n = 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0)
        return 0;
    redisReply *entries = rep->element[0]->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
        redisReply *e = entries->element[i], *f = e->element[1];
        snprintf(ids[n++], 48, "%s", e->element[0]->str);
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, "payload") == 0)
                bench_check_seq(f->element[j + 1]->str, f->element[j + 1]->len, MSG_SIZE, *got);
        (*got)++;
    }
    return n;
}

static double run_peer(run *r)
{
    redisContext *c = peer_connect(r);
    char cmd[256], cnt[16];
    snprintf(cmd, sizeof cmd, "XGROUP CREATE %s bench 0 MKSTREAM", r->key);
    peer_cmd(c, cmd);
    snprintf(cnt, sizeof cnt, "%u", r->prefetch);
    char(*ids)[48] = calloc(r->prefetch, sizeof *ids);
    const char **ack = calloc(r->prefetch + 3, sizeof *ack);
    size_t nids = 0;
    pthread_t t;
    pthread_create(&t, NULL, peer_publisher, r);
    for (uint64_t got = 0; got < r->n;) {
        if (nids) {
            ack[0] = "XACK", ack[1] = r->key, ack[2] = "bench";
            for (size_t i = 0; i < nids; i++)
                ack[3 + i] = ids[i];
            redisAppendCommandArgv(c, (int)(3 + nids), ack, NULL);
        }
        const char *rd[] = {"XREADGROUP", "GROUP", "bench",   "c1",   "COUNT", cnt,
                            "BLOCK",      "100",   "STREAMS", r->key, ">"};
        redisAppendCommandArgv(c, 11, rd, NULL);
        void *rep;
        if (nids) {
            if (redisGetReply(c, &rep) != REDIS_OK)
                bench_die("hiredis XACK: %s", c->errstr);
            freeReplyObject(rep);
        }
        if (redisGetReply(c, &rep) != REDIS_OK)
            bench_die("hiredis XREADGROUP: %s", c->errstr);
        nids = peer_take(rep, &got, ids);
        freeReplyObject(rep);
    }
    r->t_end = bench_now_ns();
    if (nids) {
        for (size_t i = 0; i < nids; i++)
            ack[3 + i] = ids[i];
        redisCommandArgv(c, (int)(3 + nids), ack, NULL);
    }
    pthread_join(t, NULL);
    free(ids);
    free(ack);
    redisFree(c);
    return (double)r->n * 1e9 / (double)(r->t_end - r->t_start);
}

/* ---------- main ---------- */

static void drop_stream(const run *r)
{
    redisContext *c = peer_connect(r);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "DEL %s", r->key);
    peer_cmd(c, cmd);
    redisFree(c);
}

int main(void)
{
    run base = {.n = bench_env_u64("SL_BENCH_MESSAGES", 20000),
                .batch = (unsigned)bench_env_u64("SL_BENCH_BATCH", 64),
                .prefetch = (unsigned)bench_env_u64("SL_BENCH_PREFETCH", 256)};
    unsigned reps = (unsigned)bench_env_u64("SL_BENCH_REPS", 5);
    const char *only = getenv("SL_BENCH_ONLY");
    g_url = server_url();
    if (!g_url) {
        printf("bench_redis: skipped: no Redis (set SL_REDIS_URL, or make scripts/services.sh "
               "start redis work)\n");
        return 0;
    }
    if (sscanf(g_url, "redis://%127[^:/]:%d", base.host, &base.port) != 2)
        bench_die("cannot read host:port from %s", g_url);
    printf("redis_pubsub_64b: %llu messages of %d bytes, batch %u, prefetch %u, %u reps, %s\n",
           (unsigned long long)base.n, MSG_SIZE, base.batch, base.prefetch, reps, g_url);
    double *ours = calloc(reps, sizeof *ours), *peer = calloc(reps, sizeof *peer);
    for (unsigned i = 0; i < reps; i++) {
        run r = base;
        char id[SL_UUID_LEN + 1];
        sl_uuid_v7(id);
        if (!only || strcmp(only, "ours") == 0) {
            snprintf(r.key, sizeof r.key, "bench:ours:%s", id);
            ours[i] = run_ours(&r);
            drop_stream(&r);
            printf("  rep %u ours: %.0f msg/s\n", i + 1, ours[i]);
        }
        if (!only || strcmp(only, "peer") == 0) {
            snprintf(r.key, sizeof r.key, "bench:peer:%s", id);
            peer[i] = run_peer(&r);
            drop_stream(&r);
            printf("  rep %u peer: %.0f msg/s\n", i + 1, peer[i]);
        }
        fflush(stdout);
    }
    bench_service_stop(&server);
    double o = bench_median(ours, reps), p = bench_median(peer, reps);
    if (!only)
        bench_ratio_line("redis_pubsub_64b", o, p, 0.8);
    free(ours);
    free(peer);
    return 0;
}
