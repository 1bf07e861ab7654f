/*
 * bench_kafka.c - kafka:// against bare librdkafka, side by side in one run,
 * on the same cluster: librdkafka's mock cluster (3 brokers, real Kafka
 * protocol over loopback TCP), created in this process - there is no Kafka
 * broker in Debian.
 *
 * Workload "kafka_pubsub": N messages of 64 bytes, one publisher thread ->
 * one consumer (the main thread); every message received, size-checked and
 * acked. Each repetition uses a fresh topic.
 *   ours: sl_msg_new + sl_publish of BATCH messages per call (idempotent
 *         producer, acks=all; returns when all are delivered); the consumer
 *         subscribes (start latest) with a prefetch of PREFETCH and does
 *         sl_next + sl_msg_ack + sl_msg_unref per message (acked offsets are
 *         committed by the subscription).
 *   peer: librdkafka by hand: an idempotent acks=all producer produces BATCH
 *         records (a UUIDv7 header each) then waits for their delivery
 *         reports (rd_kafka_flush); a consumer assigned every partition at
 *         its end offset polls them and commits asynchronously every BATCH.
 * Time runs from the first publish until the last message is received. Sides
 * alternate for REPS repetitions; medians are reported, then
 *   ratio: kafka_pubsub ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=0.8
 * Knobs: SL_BENCH_MESSAGES (default 20000), SL_BENCH_REPS (5), SL_BENCH_BATCH
 * (256), SL_BENCH_PREFETCH (256), SL_BENCH_ONLY=ours|peer.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
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
    char topic[96];
    int64_t t_start;
} run;

static char g_bootstrap[1024], g_url[1200];

static rd_kafka_conf_t *conf(const char *group)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char err[256];
    const char *kv[][2] = {{"bootstrap.servers", g_bootstrap},
                           {"enable.idempotence", "true"},
                           {"acks", "all"},
                           {"linger.ms", "0"},
                           {"group.id", group},
                           {"enable.auto.commit", "false"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(c, kv[i][0], kv[i][1], err, sizeof err))
            bench_die("conf %s: %s", kv[i][0], err);
    return c;
}

/* ---------- ours ---------- */

static void *ours_pub(void *arg)
{
    run *r = arg;
    sl_publisher *p;
    if (sl_publisher_open(&p, g_url))
        bench_die("sl_publisher_open: %s", sl_errmsg());
    sl_msg **ms = calloc(r->batch, sizeof *ms);
    unsigned char buf[MSG_SIZE];
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n;) {
        unsigned k = r->n - i < r->batch ? (unsigned)(r->n - i) : r->batch;
        for (unsigned j = 0; j < k; j++) {
            bench_fill_seq(buf, MSG_SIZE, i + j);
            if (sl_msg_new(&ms[j], buf, MSG_SIZE))
                bench_die("sl_msg_new");
        }
        if (sl_publish(p, r->topic, ms, k))
            bench_die("sl_publish: %s", sl_errmsg());
        for (unsigned j = 0; j < k; j++)
            sl_msg_unref(ms[j]);
        i += k;
    }
    free(ms);
    sl_publisher_close(p);
    return NULL;
}

static double run_ours(run *r)
{
    sl_subscriber *sub;
    sl_subscription *s;
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.prefetch = r->prefetch;
    o.start = SL_START_LATEST;
    if (sl_subscriber_open(&sub, g_url) || sl_subscribe(sub, r->topic, &o, &s))
        bench_die("subscribe: %s", sl_errmsg());
    pthread_t t;
    pthread_create(&t, NULL, ours_pub, r);
    for (uint64_t got = 0; got < r->n; got++) {
        sl_msg *m;
        if (sl_next(s, &m, 30000))
            bench_die("sl_next after %llu: %s", (unsigned long long)got, sl_errmsg());
        size_t len;
        sl_msg_payload(m, &len);
        if (len != MSG_SIZE)
            bench_die("bad size %zu", len);
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    int64_t t_end = bench_now_ns();
    pthread_join(t, NULL);
    sl_subscriber_close(sub);
    return (double)r->n / ((double)(t_end - r->t_start) / 1e9);
}

/* ---------- peer: bare librdkafka ---------- */

static void *peer_pub(void *arg)
{
    run *r = arg;
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf("unused"), err, sizeof err);
    if (!rk)
        bench_die("producer: %s", err);
    unsigned char buf[MSG_SIZE];
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n;) {
        unsigned k = r->n - i < r->batch ? (unsigned)(r->n - i) : r->batch;
        for (unsigned j = 0; j < k; j++) {
            char u[SL_UUID_LEN + 1];
            sl_uuid_v7(u);
            bench_fill_seq(buf, MSG_SIZE, i + j);
            rd_kafka_headers_t *h = rd_kafka_headers_new(1);
            rd_kafka_header_add(h, "uuid", -1, u, -1);
            while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(r->topic),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_VALUE(buf, MSG_SIZE), RD_KAFKA_V_HEADERS(h),
                                     RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 1);
        }
        if (rd_kafka_flush(rk, 30000))
            bench_die("flush timed out");
        i += k;
    }
    rd_kafka_destroy(rk);
    return NULL;
}

static double run_peer(run *r)
{
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf(r->topic), err, sizeof err);
    if (!rk)
        bench_die("consumer: %s", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, r->topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    for (int i = 0; i < 100; i++) { /* the topic is created on first metadata request */
        if (!rd_kafka_metadata(rk, 0, t, &md, 5000) && md->topics[0].partition_cnt)
            break;
        if (md)
            rd_kafka_metadata_destroy(md);
        md = NULL;
    }
    if (!md)
        bench_die("no metadata for %s", r->topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        int64_t lo, hi;
        int32_t p = md->topics[0].partitions[i].id;
        if (rd_kafka_query_watermark_offsets(rk, r->topic, p, &lo, &hi, 5000))
            bench_die("watermarks");
        rd_kafka_topic_partition_list_add(l, r->topic, p)->offset = hi;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    pthread_t th;
    pthread_create(&th, NULL, peer_pub, r);
    for (uint64_t got = 0; got < r->n;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 30000);
        if (!m)
            bench_die("peer: nothing after %llu", (unsigned long long)got);
        if (!m->err) {
            if (m->len != MSG_SIZE)
                bench_die("bad size");
            got++;
            if (got % r->batch == 0 || got == r->n) {
                rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(c, r->topic, m->partition)->offset =
                    m->offset + 1;
                rd_kafka_commit(rk, c, 1);
                rd_kafka_topic_partition_list_destroy(c);
            }
        }
        rd_kafka_message_destroy(m);
    }
    int64_t t_end = bench_now_ns();
    pthread_join(th, NULL);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return (double)r->n / ((double)(t_end - r->t_start) / 1e9);
}

int main(void)
{
    uint64_t n = bench_env_u64("SL_BENCH_MESSAGES", 20000);
    unsigned reps = (unsigned)bench_env_u64("SL_BENCH_REPS", 5);
    unsigned batch = (unsigned)bench_env_u64("SL_BENCH_BATCH", 256);
    unsigned prefetch = (unsigned)bench_env_u64("SL_BENCH_PREFETCH", 256);
    const char *only = getenv("SL_BENCH_ONLY");
    char err[256];
    rd_kafka_conf_t *mc_conf = rd_kafka_conf_new();
    rd_kafka_conf_set(mc_conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, mc_conf, err, sizeof err);
    rd_kafka_mock_cluster_t *mc = mrk ? rd_kafka_mock_cluster_new(mrk, 3) : NULL;
    if (!mc) {
        printf("bench_kafka: skipped: cannot create librdkafka's mock cluster\n");
        return 0;
    }
    snprintf(g_bootstrap, sizeof g_bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(mc));
    char *comma = strchr(g_bootstrap, ',');
    if (comma)
        snprintf(g_url, sizeof g_url, "kafka://%.*s/?bootstrap=%s", (int)(comma - g_bootstrap),
                 g_bootstrap, comma + 1);
    else
        snprintf(g_url, sizeof g_url, "kafka://%s/", g_bootstrap);
    double *o = calloc(reps, sizeof *o), *p = calloc(reps, sizeof *p);
    for (unsigned i = 0; i < reps; i++) {
        run r = {.n = n, .batch = batch, .prefetch = prefetch};
        if (!only || !strcmp(only, "ours")) {
            snprintf(r.topic, sizeof r.topic, "bench-ours-%u-%d", i, (int)getpid());
            o[i] = run_ours(&r);
        }
        if (!only || !strcmp(only, "peer")) {
            snprintf(r.topic, sizeof r.topic, "bench-peer-%u-%d", i, (int)getpid());
            p[i] = run_peer(&r);
        }
        printf("rep %u: ours=%.0f msg/s peer=%.0f msg/s\n", i, o[i], p[i]);
        fflush(stdout);
    }
    double om = bench_median(o, reps), pm = bench_median(p, reps);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mrk);
    free(o);
    free(p);
    if (only)
        return 0;
    bench_ratio_line("kafka_pubsub", om, pm, 0.8);
    return 0;
}
