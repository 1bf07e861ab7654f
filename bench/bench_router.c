/*
 * bench_router.c - what the router costs on top of a bare consumer loop,
 * both on mem:// in the same run, 64-byte messages.
 *
 *   peer: sl_subscribe + loop { sl_next; sl_msg_ack; sl_msg_unref }
 *   ours: sl_router with one handler (1 worker, no middleware, no outputs)
 *
 * Each round pre-publishes N messages into a named group (so both sides
 * only consume), then times consuming all of them. Rounds alternate between
 * the two sides; the median of each side is reported as
 *   ratio: router_mem ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=0.8
 * Knobs: SL_BENCH_N (messages per round, default 500000), SL_BENCH_ROUNDS
 * (default 5), SL_BENCH_PREFETCH (both sides, default 64).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/benchlib.h"
#include "sluice/sluice.h"

static uint64_t n_msgs, prefetch;

static void prepublish(const char *url, const char *topic)
{
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    so.group = "g";
    if (sl_publisher_open(&pub, url) || sl_subscriber_open(&sub, url) ||
        sl_subscribe(sub, topic, &so, &s))
        bench_die("bench_router: open %s: %s", url, sl_errmsg());
    sl_subscription_close(s); /* the named group stays and collects messages */
    char payload[64];
    memset(payload, 'x', sizeof payload);
    enum { BATCH = 256 };
    sl_msg *ms[BATCH];
    for (uint64_t i = 0; i < n_msgs; i += BATCH) {
        size_t k = 0;
        for (; k < BATCH && i + k < n_msgs; k++)
            if (sl_msg_new(&ms[k], payload, sizeof payload))
                bench_die("bench_router: sl_msg_new failed");
        if (sl_publish(pub, topic, ms, k))
            bench_die("bench_router: publish: %s", sl_errmsg());
        for (size_t j = 0; j < k; j++)
            sl_msg_unref(ms[j]);
    }
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

typedef struct peer_arg {
    sl_subscriber *sub;
    double rate;
} peer_arg;

/* The bare loop runs on its own thread, like the router's worker does, so
 * both sides pay the same cross-thread costs (allocator, caches). */
static void *peer_main(void *arg)
{
    peer_arg *pa = arg;
    sl_subscriber *sub = pa->sub;
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    so.group = "g";
    so.prefetch = (unsigned)prefetch;
    sl_subscription *s;
    if (sl_subscribe(sub, "t", &so, &s))
        bench_die("bench_router: subscribe: %s", sl_errmsg());
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < n_msgs; i++) {
        sl_msg *m;
        if (sl_next(s, &m, 5000))
            bench_die("bench_router: peer next: %s", sl_errmsg());
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    sl_subscription_close(s);
    pa->rate = (double)n_msgs / secs;
    return NULL;
}

static double run_peer(sl_subscriber *sub)
{
    peer_arg pa = {sub, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, peer_main, &pa))
        bench_die("bench_router: pthread_create");
    pthread_join(t, NULL);
    return pa.rate;
}

static _Atomic uint64_t handled;
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static bool done;

static int h_noop(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    (void)user;
    if (atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed) + 1 == n_msgs) {
        pthread_mutex_lock(&done_mu);
        done = true;
        pthread_cond_signal(&done_cond);
        pthread_mutex_unlock(&done_mu);
    }
    return 0;
}

static void *run_router_main(void *arg)
{
    sl_router_run(arg);
    return NULL;
}

static double run_ours(sl_subscriber *sub)
{
    sl_router *r;
    if (sl_router_new(&r, NULL))
        bench_die("bench_router: router: %s", sl_errmsg());
    sl_handler_opts o;
    sl_handler_opts_init(&o);
    o.name = "noop";
    o.sub = sub;
    o.topic = "t";
    o.subscribe.group = "g";
    o.subscribe.prefetch = (unsigned)prefetch;
    o.fn = h_noop;
    if (sl_router_add_handler(r, &o, NULL))
        bench_die("bench_router: add handler: %s", sl_errmsg());
    atomic_store(&handled, 0);
    done = false;
    pthread_t t;
    int64_t t0 = bench_now_ns();
    if (pthread_create(&t, NULL, run_router_main, r))
        bench_die("bench_router: pthread_create");
    pthread_mutex_lock(&done_mu);
    while (!done)
        pthread_cond_wait(&done_cond, &done_mu);
    pthread_mutex_unlock(&done_mu);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    sl_router_close(r, 5000, NULL);
    pthread_join(t, NULL);
    sl_router_free(r);
    return (double)n_msgs / secs;
}

int main(void)
{
    n_msgs = bench_env_u64("SL_BENCH_N", 500000);
    prefetch = bench_env_u64("SL_BENCH_PREFETCH", 64);
    uint64_t rounds = bench_env_u64("SL_BENCH_ROUNDS", 5);
    if (rounds > 15)
        rounds = 15;
    char url[128];
    snprintf(url, sizeof url, "mem://bench-router?buffer=%llu", (unsigned long long)n_msgs + 1);
    sl_subscriber *sub;
    if (sl_subscriber_open(&sub, url))
        bench_die("bench_router: open %s: %s", url, sl_errmsg());
    double ours[15], peer[15];
    for (uint64_t i = 0; i < rounds; i++) {
        prepublish(url, "t");
        peer[i] = run_peer(sub);
        prepublish(url, "t");
        ours[i] = run_ours(sub);
        printf("round %llu: router %.0f msg/s, bare loop %.0f msg/s\n", (unsigned long long)i + 1,
               ours[i], peer[i]);
    }
    double o = bench_median(ours, rounds), p = bench_median(peer, rounds);
    sl_subscriber_close(sub);
    bench_ratio_line("router_mem", o, p, 0.8);
    return 0;
}
