/*
 * bench_cqrs.c - commands per second through the CQRS command bus and a
 * command processor on mem:// (JSON marshaling and unmarshaling included)
 * against a bare sl_publish + sl_subscribe/sl_next loop doing the same JSON
 * encode and decode, in the same run:
 *   ratio: cqrs_mem ours=<cmd/s> peer=<msg/s> ratio=<r> target=0.7
 * Knobs: SL_BENCH_MESSAGES (default 100000), SL_BENCH_REPS (3, best of).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/benchlib.h"
#include "sluice/cqrs.h"
#include "sluice/sluice.h"

static uint64_t g_n;
static atomic_uint_fast64_t g_done;

static json_t *command(uint64_t i)
{
    return json_pack("{s:s, s:I, s:s}", "room_id", "101", "n", (json_int_t)i, "guest",
                     "Ada Lovelace");
}

static int handle(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx, (void)msg, (void)user;
    if (!json_is_object((json_t *)value))
        return SL_EPROTO;
    atomic_fetch_add(&g_done, 1);
    return 0;
}

static void *run_router(void *r)
{
    sl_router_run(r);
    return NULL;
}

static double ours(int rep)
{
    char url[64];
    snprintf(url, sizeof url, "mem://bench-cqrs-%d", rep);
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_router *r;
    if (sl_publisher_open(&pub, url) || sl_subscriber_open(&sub, url) || sl_router_new(&r, NULL))
        bench_die("ours: %s", sl_errmsg());
    sl_marshaler m;
    sl_marshaler_json(&m);
    sl_command_bus *cb;
    sl_command_processor *cp;
    if (sl_command_bus_new(&cb, pub, &m, NULL) || sl_command_processor_new(&cp, r, sub, &m, NULL) ||
        sl_command_processor_add(cp, "BookRoom", handle, NULL))
        bench_die("ours: %s", sl_errmsg());
    pthread_t t;
    pthread_create(&t, NULL, run_router, r);
    if (sl_router_running(r, 10000))
        bench_die("ours: router did not start");
    atomic_store(&g_done, 0);
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < g_n; i++) {
        json_t *c = command(i);
        if (sl_command_send(cb, "BookRoom", c))
            bench_die("ours: send: %s", sl_errmsg());
        json_decref(c);
    }
    while (atomic_load(&g_done) < g_n)
        usleep(100);
    double rate = (double)g_n / ((double)(bench_now_ns() - t0) / 1e9);
    sl_router_close(r, 5000, NULL);
    pthread_join(t, NULL);
    sl_router_free(r);
    sl_command_processor_free(cp);
    sl_command_bus_free(cb);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
    return rate;
}

static void *peer_consumer(void *arg)
{
    sl_subscription *s = arg;
    for (uint64_t i = 0; i < g_n; i++) {
        sl_msg *m;
        if (sl_next(s, &m, 10000))
            bench_die("peer: next: %s", sl_errmsg());
        size_t len;
        const char *p = sl_msg_payload(m, &len);
        json_t *v = json_loadb(p, len, 0, NULL);
        if (!json_is_object(v))
            bench_die("peer: bad JSON");
        json_decref(v);
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    return NULL;
}

static double peer(int rep)
{
    char url[64];
    snprintf(url, sizeof url, "mem://bench-cqrs-peer-%d", rep);
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "commands";
    if (sl_publisher_open(&pub, url) || sl_subscriber_open(&sub, url) ||
        sl_subscribe(sub, "commands.BookRoom", &o, &s))
        bench_die("peer: %s", sl_errmsg());
    pthread_t t;
    int64_t t0 = bench_now_ns();
    pthread_create(&t, NULL, peer_consumer, s);
    for (uint64_t i = 0; i < g_n; i++) {
        json_t *c = command(i);
        char *txt = json_dumps(c, JSON_COMPACT);
        json_decref(c);
        sl_msg *m;
        if (sl_msg_new(&m, txt, strlen(txt)) || sl_msg_meta_set(m, "name", "BookRoom") ||
            sl_publish(pub, "commands.BookRoom", &m, 1))
            bench_die("peer: publish: %s", sl_errmsg());
        sl_msg_unref(m);
        free(txt);
    }
    pthread_join(t, NULL);
    double rate = (double)g_n / ((double)(bench_now_ns() - t0) / 1e9);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
    return rate;
}

int main(void)
{
    g_n = bench_env_u64("SL_BENCH_MESSAGES", 100000);
    uint64_t reps = bench_env_u64("SL_BENCH_REPS", 3);
    double best_ours = 0, best_peer = 0;
    for (uint64_t r = 0; r < reps; r++) {
        double x = ours((int)r);
        if (x > best_ours)
            best_ours = x;
        x = peer((int)r);
        if (x > best_peer)
            best_peer = x;
    }
    printf("cqrs_mem: %llu commands, JSON, command bus -> processor vs sl_publish -> sl_next\n",
           (unsigned long long)g_n);
    bench_ratio_line("cqrs_mem", best_ours, best_peer, 0.7);
    return 0;
}
