/*
 * bench_nats.c - nats:// (JetStream) against bare nats.c, side by side in one
 * run, on the same nats-server -js.
 *
 * Workload "nats_js_pubsub": N messages of 64 bytes, one publisher thread ->
 * one consumer (the main thread) on a durable pull consumer; every message
 * received, checked (size, sequence number in the first 8 bytes, in order)
 * and acked.
 *   ours: sl_msg_new + sl_publish of BATCH messages per call (async
 *         JetStream publishes, returns once the server acked all of them);
 *         the consumer subscribes with a group and a prefetch of PREFETCH
 *         and does sl_next + sl_msg_ack + sl_msg_unref per message.
 *   peer: nats.c by hand: the publisher makes a UUIDv7 per message, sends
 *         BATCH js_PublishMsgAsync with it as Nats-Msg-Id, then
 *         js_PublishAsyncComplete; the consumer js_PullSubscribe's a durable
 *         and loops natsSubscription_Fetch(PREFETCH) + natsMsg_Ack.
 * Each repetition uses fresh streams (deleted afterwards). Time runs from the
 * first publish until the last message is received. Sides alternate for REPS
 * repetitions; the medians are reported, and the run ends with one line:
 *   ratio: nats_js_pubsub ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=0.8
 *
 * The server: SL_NATS_URL if set; otherwise scripts/services.sh starts a
 * private nats-server (SL_SERVICES_DIR, SL_NATS_PORT) and stops it at the end
 * if it started it. Without a server the bench prints "bench_nats: skipped:
 * ..." and exits 0. Knobs: SL_BENCH_MESSAGES (20000), SL_BENCH_REPS (5),
 * SL_BENCH_BATCH (64), SL_BENCH_PREFETCH (256), SL_BENCH_ONLY=ours|peer.
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/benchlib.h"
#include "sluice/sluice.h"

#define MSG_SIZE 64

typedef struct run {
    uint64_t n;
    unsigned batch, prefetch;
    char topic[96];
    int64_t t_start, t_end;
} run;

static const char *g_url;
static bench_service server;

/* ---------- ours ---------- */

static void *ours_publisher(void *arg)
{
    run *r = arg;
    sl_publisher *pub;
    if (sl_publisher_open(&pub, g_url) != 0)
        bench_die("sl_publisher_open(%s): %s", g_url, sl_errmsg());
    sl_msg **ms = calloc(r->batch, sizeof *ms);
    unsigned char buf[MSG_SIZE];
    for (uint64_t i = 0; i < r->n;) {
        unsigned k = 0;
        for (; k < r->batch && i < r->n; k++, i++) {
            bench_fill_seq(buf, MSG_SIZE, i);
            if (sl_msg_new(&ms[k], buf, MSG_SIZE) != 0)
                bench_die("sl_msg_new failed");
        }
        if (sl_publish(pub, r->topic, ms, k) != 0)
            bench_die("sl_publish: %s", sl_errmsg());
        for (unsigned j = 0; j < k; j++)
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
    o.prefetch = r->prefetch;
    if (sl_subscriber_open(&sub, g_url) != 0 || sl_subscribe(sub, r->topic, &o, &s) != 0)
        bench_die("subscribe on %s: %s", g_url, sl_errmsg());
    pthread_t t;
    r->t_start = bench_now_ns();
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

/* ---------- peer: bare nats.c ---------- */

static natsConnection *peer_connect(jsCtx **js)
{
    natsConnection *nc;
    if (natsConnection_ConnectTo(&nc, g_url) != NATS_OK ||
        natsConnection_JetStream(js, nc, NULL) != NATS_OK)
        bench_die("nats.c: cannot connect to %s", g_url);
    return nc;
}

static void peer_close(natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy(js);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

static void *peer_publisher(void *arg)
{
    run *r = arg;
    jsCtx *js;
    natsConnection *nc = peer_connect(&js);
    unsigned char buf[MSG_SIZE];
    char id[SL_UUID_LEN + 1];
    for (uint64_t i = 0; i < r->n;) {
        for (unsigned k = 0; k < r->batch && i < r->n; k++, i++) {
            bench_fill_seq(buf, MSG_SIZE, i);
            sl_uuid_v7(id);
            natsMsg *m;
            natsMsg_Create(&m, r->topic, NULL, (const char *)buf, MSG_SIZE);
            natsMsgHeader_Set(m, "Nats-Msg-Id", id);
            if (js_PublishMsgAsync(js, &m, NULL) != NATS_OK)
                bench_die("js_PublishMsgAsync failed");
            natsMsg_Destroy(m);
        }
        if (js_PublishAsyncComplete(js, NULL) != NATS_OK)
            bench_die("js_PublishAsyncComplete failed");
    }
    peer_close(nc, js);
    return NULL;
}

static void make_stream(jsCtx *js, const char *name)
{
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subj[1] = {name};
    sc.Name = name;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    if (js_AddStream(NULL, js, &sc, NULL, NULL) != NATS_OK)
        bench_die("nats.c: cannot create stream %s", name);
}

static double run_peer(run *r)
{
    jsCtx *js;
    natsConnection *nc = peer_connect(&js);
    make_stream(js, r->topic);
    natsSubscription *sub;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = 20000;
    if (js_PullSubscribe(&sub, js, r->topic, "bench", NULL, &so, NULL) != NATS_OK)
        bench_die("nats.c: js_PullSubscribe failed");
    pthread_t t;
    r->t_start = bench_now_ns();
    pthread_create(&t, NULL, peer_publisher, r);
    uint64_t got = 0;
    while (got < r->n) {
        natsMsgList list = {0};
        uint64_t want = r->n - got < r->prefetch ? r->n - got : r->prefetch;
        natsStatus st = natsSubscription_Fetch(&list, sub, (int)want, 30000, NULL);
        if (st != NATS_OK)
            bench_die("nats.c: fetch after %llu: %s", (unsigned long long)got,
                      natsStatus_GetText(st));
        for (int i = 0; i < list.Count; i++, got++) {
            bench_check_seq(natsMsg_GetData(list.Msgs[i]),
                            (size_t)natsMsg_GetDataLength(list.Msgs[i]), MSG_SIZE, got);
            natsMsg_Ack(list.Msgs[i], NULL);
        }
        natsMsgList_Destroy(&list);
    }
    r->t_end = bench_now_ns();
    pthread_join(t, NULL);
    natsSubscription_Destroy(sub);
    js_DeleteStream(js, r->topic, NULL, NULL);
    peer_close(nc, js);
    return (double)r->n * 1e9 / (double)(r->t_end - r->t_start);
}

static void drop_stream(const char *name)
{
    jsCtx *js;
    natsConnection *nc = peer_connect(&js);
    js_DeleteStream(js, name, NULL, NULL);
    peer_close(nc, js);
}

int main(void)
{
    run base = {.n = bench_env_u64("SL_BENCH_MESSAGES", 20000),
                .batch = (unsigned)bench_env_u64("SL_BENCH_BATCH", 64),
                .prefetch = (unsigned)bench_env_u64("SL_BENCH_PREFETCH", 256)};
    unsigned reps = (unsigned)bench_env_u64("SL_BENCH_REPS", 5);
    const char *only = getenv("SL_BENCH_ONLY");
    g_url = getenv("SL_NATS_URL");
    if (!g_url)
        g_url = bench_service_url(&server, "nats", "nats://");
    if (!g_url) {
        printf("bench_nats: skipped: no nats-server (set SL_NATS_URL, or make "
               "scripts/services.sh start nats work)\n");
        return 0;
    }
    printf("nats_js_pubsub: %llu messages of %d bytes, batch %u, prefetch %u, %u reps, %s\n",
           (unsigned long long)base.n, MSG_SIZE, base.batch, base.prefetch, reps, g_url);
    double *ours = calloc(reps, sizeof *ours), *peer = calloc(reps, sizeof *peer);
    for (unsigned i = 0; i < reps; i++) {
        run r = base;
        char id[SL_UUID_LEN + 1];
        sl_uuid_v7(id);
        if (!only || strcmp(only, "ours") == 0) {
            snprintf(r.topic, sizeof r.topic, "bench-ours-%s", id);
            ours[i] = run_ours(&r);
            drop_stream(r.topic); /* per-topic stream: its name is the topic here */
            printf("  rep %u ours: %.0f msg/s\n", i + 1, ours[i]);
        }
        if (!only || strcmp(only, "peer") == 0) {
            snprintf(r.topic, sizeof r.topic, "bench-peer-%s", id);
            peer[i] = run_peer(&r);
            printf("  rep %u peer: %.0f msg/s\n", i + 1, peer[i]);
        }
        fflush(stdout);
    }
    bench_service_stop(&server);
    double o = bench_median(ours, reps), p = bench_median(peer, reps);
    if (!only)
        bench_ratio_line("nats_js_pubsub", o, p, 0.8);
    free(ours);
    free(peer);
    return 0;
}
