/*
 * bench_mem.c - mem:// against ZeroMQ inproc, side by side in one run.
 *
 * Workload "mem_pubsub_64b": N messages of 64 bytes, one publisher thread ->
 * one subscriber thread (two threads on each side), every message received
 * in order; mem:// also acks every one (at-least-once; ZeroMQ has no acks,
 * so ours does more).
 *   ours: sl_msg_new + sl_publish on mem://, publishing BATCH messages per
 *         sl_publish call (default 64; SL_BENCH_BATCH); the subscriber uses a
 *         prefetch window of 1024 and receives with sl_next_batch (up to
 *         RECV_BATCH, default 64; SL_BENCH_RECV_BATCH), acks each batch with
 *         sl_msg_ack_batch and unrefs every message. SL_BENCH_RECV_BATCH=1
 *         uses sl_next + sl_msg_ack per message instead. The message ids
 *         (UUIDv7, made on first read) are not read unless SL_BENCH_UUID=1,
 *         which has the subscriber read sl_msg_uuid of every message.
 *   peer: ZeroMQ PUSH -> PULL over inproc://, one zmq_msg_send per message
 *         (its natural API; default high-water marks), the receiver does
 *         zmq_msg_recv per message.
 * Both sides create every message (payload copied in), carry a sequence number
 * in the first 8 payload bytes and the receiver checks order and size, so
 * neither side can skip work. Time runs from the first send until the last
 * message is received. Sides alternate for REPS repetitions; the median of
 * each is reported, and the run ends with exactly one line:
 *   ratio: mem_pubsub_64b ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=1.0
 * Knobs (environment): SL_BENCH_MESSAGES (default 300000), SL_BENCH_REPS
 * (default 5), SL_BENCH_BATCH (default 64), SL_BENCH_RECV_BATCH (default 64),
 * SL_BENCH_UUID=1, SL_BENCH_ONLY=ours|peer (run one side only, for
 * profiling; no ratio line then), SL_BENCH_PIN=1 (pin the sending thread to
 * CPU 0 and the receiving one to CPU 1, on both sides, for steadier numbers
 * on an idle machine).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "lib/benchlib.h"
#include "sluice/sluice.h"

#define MSG_SIZE 64
#define PREFETCH 1024
#define RECV_MAX 1024

typedef struct run {
    uint64_t n;
    unsigned batch, recv_batch;
    const char *url;
    sl_subscription *s;
    void *zpush, *zpull;
    int64_t t_start, t_end;
} run;

static bool pin_threads, read_uuid;

/* With SL_BENCH_PIN=1, put the calling thread on one CPU. */
static void pin(int cpu)
{
    if (!pin_threads)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
        bench_die("SL_BENCH_PIN: cannot pin a thread to CPU %d", cpu);
}

/* ---------- ours: mem:// ---------- */

static void *mem_pub_thread(void *arg)
{
    run *r = arg;
    pin(0);
    sl_publisher *pub;
    if (sl_publisher_open(&pub, r->url))
        bench_die("sl_publisher_open: %s", sl_errmsg());
    sl_msg **msgs = calloc(r->batch, sizeof *msgs);
    if (!msgs)
        bench_die("out of memory");
    unsigned char buf[MSG_SIZE];
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n;) {
        size_t k = 0;
        for (; k < r->batch && i < r->n; k++, i++) {
            bench_fill_seq(buf, MSG_SIZE, i);
            if (sl_msg_new(&msgs[k], buf, sizeof buf))
                bench_die("sl_msg_new: %s", sl_errmsg());
        }
        if (sl_publish(pub, "bench", msgs, k))
            bench_die("sl_publish: %s", sl_errmsg());
        for (size_t j = 0; j < k; j++)
            sl_msg_unref(msgs[j]);
    }
    free(msgs);
    sl_publisher_close(pub);
    return NULL;
}

static void *mem_sub_thread(void *arg)
{
    run *r = arg;
    pin(1);
    if (r->recv_batch > 1) {
        sl_msg *got[RECV_MAX];
        for (uint64_t i = 0; i < r->n;) {
            size_t k;
            int rc = sl_next_batch(r->s, got, r->recv_batch, &k, 10000);
            if (rc)
                bench_die("sl_next_batch after %llu messages: %s", (unsigned long long)i,
                          sl_strerror(rc));
            for (size_t j = 0; j < k; j++, i++) {
                size_t len;
                const void *p = sl_msg_payload(got[j], &len);
                bench_check_seq(p, len, MSG_SIZE, i);
                if (read_uuid && !sl_msg_uuid(got[j]))
                    bench_die("message %llu has no uuid", (unsigned long long)i);
            }
            if (sl_msg_ack_batch(got, k))
                bench_die("sl_msg_ack_batch: %s", sl_errmsg());
            for (size_t j = 0; j < k; j++)
                sl_msg_unref(got[j]);
        }
        r->t_end = bench_now_ns();
        return NULL;
    }
    for (uint64_t i = 0; i < r->n; i++) {
        sl_msg *m;
        int rc = sl_next(r->s, &m, 10000);
        if (rc)
            bench_die("sl_next after %llu messages: %s", (unsigned long long)i, sl_strerror(rc));
        size_t len;
        const void *p = sl_msg_payload(m, &len);
        bench_check_seq(p, len, MSG_SIZE, i);
        if (read_uuid && !sl_msg_uuid(m))
            bench_die("message %llu has no uuid", (unsigned long long)i);
        if (sl_msg_ack(m))
            bench_die("sl_msg_ack: %s", sl_errmsg());
        sl_msg_unref(m);
    }
    r->t_end = bench_now_ns();
    return NULL;
}

static double run_mem(uint64_t n, unsigned batch, unsigned recv_batch, int rep)
{
    char url[64];
    snprintf(url, sizeof url, "mem://bench-%d", rep);
    run r = {.n = n, .batch = batch, .recv_batch = recv_batch, .url = url};
    sl_subscriber *sub;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.prefetch = PREFETCH;
    if (sl_subscriber_open(&sub, url) || sl_subscribe(sub, "bench", &o, &r.s))
        bench_die("subscribe: %s", sl_errmsg());
    pthread_t tp, ts;
    pthread_create(&ts, NULL, mem_sub_thread, &r);
    pthread_create(&tp, NULL, mem_pub_thread, &r);
    pthread_join(tp, NULL);
    pthread_join(ts, NULL);
    sl_subscriber_close(sub);
    return (double)n * 1e9 / (double)(r.t_end - r.t_start);
}

/* ---------- peer: ZeroMQ inproc PUSH/PULL ---------- */

static void *zmq_push_thread(void *arg)
{
    run *r = arg;
    pin(0);
    unsigned char buf[MSG_SIZE];
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n; i++) {
        zmq_msg_t m;
        bench_fill_seq(buf, MSG_SIZE, i);
        if (zmq_msg_init_size(&m, MSG_SIZE))
            bench_die("zmq_msg_init_size: %s", zmq_strerror(zmq_errno()));
        memcpy(zmq_msg_data(&m), buf, MSG_SIZE);
        if (zmq_msg_send(&m, r->zpush, 0) != MSG_SIZE)
            bench_die("zmq_msg_send: %s", zmq_strerror(zmq_errno()));
    }
    return NULL;
}

static void *zmq_pull_thread(void *arg)
{
    run *r = arg;
    pin(1);
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (uint64_t i = 0; i < r->n; i++) {
        if (zmq_msg_recv(&m, r->zpull, 0) < 0)
            bench_die("zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
        bench_check_seq(zmq_msg_data(&m), zmq_msg_size(&m), MSG_SIZE, i);
    }
    zmq_msg_close(&m);
    r->t_end = bench_now_ns();
    return NULL;
}

static double run_zmq(uint64_t n, int rep)
{
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://bench-%d", rep);
    run r = {.n = n};
    void *ctx = zmq_ctx_new();
    if (!ctx || !(r.zpull = zmq_socket(ctx, ZMQ_PULL)) || !(r.zpush = zmq_socket(ctx, ZMQ_PUSH)))
        bench_die("zmq setup: %s", zmq_strerror(zmq_errno()));
    if (zmq_bind(r.zpull, ep) || zmq_connect(r.zpush, ep))
        bench_die("zmq bind/connect %s: %s", ep, zmq_strerror(zmq_errno()));
    pthread_t tp, ts;
    pthread_create(&ts, NULL, zmq_pull_thread, &r);
    pthread_create(&tp, NULL, zmq_push_thread, &r);
    pthread_join(tp, NULL);
    pthread_join(ts, NULL);
    int linger = 0;
    zmq_setsockopt(r.zpush, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(r.zpush);
    zmq_close(r.zpull);
    zmq_ctx_term(ctx);
    return (double)n * 1e9 / (double)(r.t_end - r.t_start);
}

int main(void)
{
    uint64_t n = bench_env_u64("SL_BENCH_MESSAGES", 300000);
    uint64_t reps = bench_env_u64("SL_BENCH_REPS", 5);
    uint64_t batch = bench_env_u64("SL_BENCH_BATCH", 64);
    uint64_t recv_batch = bench_env_u64("SL_BENCH_RECV_BATCH", 64);
    if (reps > 100 || batch > 1u << 20 || recv_batch == 0 || recv_batch > RECV_MAX)
        bench_die("SL_BENCH_REPS must be <= 100, SL_BENCH_BATCH <= 1048576 and "
                  "SL_BENCH_RECV_BATCH 1..%d",
                  RECV_MAX);
    const char *pe = getenv("SL_BENCH_PIN");
    if (pe && *pe && strcmp(pe, "0") != 0 && strcmp(pe, "1") != 0)
        bench_die("SL_BENCH_PIN must be 0 or 1, got '%s'", pe);
    pin_threads = pe && strcmp(pe, "1") == 0;
    const char *ue = getenv("SL_BENCH_UUID");
    if (ue && *ue && strcmp(ue, "0") != 0 && strcmp(ue, "1") != 0)
        bench_die("SL_BENCH_UUID must be 0 or 1, got '%s'", ue);
    read_uuid = ue && strcmp(ue, "1") == 0;
    printf("mem_pubsub_64b: %llu messages x %d bytes, 1 publisher -> 1 subscriber, "
           "mem:// publish batch %llu, prefetch %d, %s%s vs ZeroMQ inproc PUSH/PULL, %llu reps\n",
           (unsigned long long)n, MSG_SIZE, (unsigned long long)batch, PREFETCH,
           recv_batch > 1 ? "sl_next_batch + sl_msg_ack_batch" : "sl_next + sl_msg_ack",
           read_uuid ? ", uuid read" : "", (unsigned long long)reps);
    const char *only = getenv("SL_BENCH_ONLY");
    bool do_ours = !only || !strcmp(only, "ours"), do_peer = !only || !strcmp(only, "peer");
    if (!do_ours && !do_peer)
        bench_die("SL_BENCH_ONLY must be 'ours' or 'peer', got '%s'", only);
    double ours[100] = {0}, peer[100] = {0};
    for (uint64_t i = 0; i < reps; i++) {
        if (do_ours)
            ours[i] = run_mem(n, (unsigned)batch, (unsigned)recv_batch, (int)i);
        if (do_peer)
            peer[i] = run_zmq(n, (int)i);
        printf("  rep %llu:", (unsigned long long)i + 1);
        if (do_ours)
            printf(" mem %.0f msg/s", ours[i]);
        if (do_peer)
            printf(" zmq %.0f msg/s", peer[i]);
        putchar('\n');
        fflush(stdout);
    }
    double o = bench_median(ours, reps), p = bench_median(peer, reps);
    if (only) {
        printf("median: %s %.0f msg/s\n", only, do_ours ? o : p);
        return 0;
    }
    bench_ratio_line("mem_pubsub_64b", o, p, 1.0);
    return 0;
}
