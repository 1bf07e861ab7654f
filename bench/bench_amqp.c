/*
 * bench_amqp.c - amqp:// against raw librabbitmq, side by side in one run,
 * on a real RabbitMQ started (when not already running) with
 * scripts/services.sh and stopped again at the end.
 *
 * Workload "amqp_pubsub_64b": N messages of 64 bytes, one publisher thread
 * -> one consumer thread, through a topic exchange into the consumer's
 * exclusive queue.
 *   ours: sl_publish of BATCH messages per call on amqp:// (persistent,
 *         message_id = UUID, publisher confirms: the call returns when the
 *         broker confirmed the batch); a subscription without a group and a
 *         prefetch of PREFETCH does sl_next + sl_msg_ack + sl_msg_unref per
 *         message.
 *   peer: raw librabbitmq doing the same work: a confirm-mode channel,
 *         BATCH amqp_basic_publish calls with the same properties
 *         (delivery_mode 2, a UUID message_id), then reading frames until
 *         the batch is confirmed; the consumer has its own connection, an
 *         exclusive auto-delete queue bound to the exchange, basic.qos
 *         PREFETCH, amqp_consume_message + amqp_basic_ack per message.
 * Both carry a sequence number in the first 8 payload bytes and the receiver
 * checks order and size. Time runs from the first publish until the last
 * message is received. Sides alternate for REPS repetitions; medians are
 * reported, and the run ends with exactly one line:
 *   ratio: amqp_pubsub_64b ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=0.8
 * Knobs (environment): SL_BENCH_MESSAGES (default 10000), SL_BENCH_REPS
 * (default 3), SL_BENCH_BATCH (default 100), SL_BENCH_PREFETCH (default
 * 256), SL_AMQP_URL (use this broker; services.sh is not touched),
 * SL_SERVICES_SH (path of services.sh; default: found above the binary).
 */
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "lib/benchlib.h"
#include "sluice/sluice.h"

#define MSG_SIZE 64

typedef struct run {
    uint64_t n;
    unsigned batch, prefetch;
    const char *url, *topic;
    int64_t t_start, t_end;
    /* peer */
    char host[256];
    int port;
    amqp_connection_state_t pc, cc;
} run;

/* ---------- the broker ---------- */

static bench_service broker;

static const char *broker_url(void)
{
    const char *env = getenv("SL_AMQP_URL");
    if (env && *env)
        return env;
    const char *url = bench_service_url(&broker, "rabbitmq", "amqp://");
    if (!url)
        bench_die("no RabbitMQ: scripts/services.sh not found above the binary (set "
                  "SL_SERVICES_SH) or services.sh start rabbitmq failed");
    return url;
}

/* host and port of an amqp://user:pass@host:port/ URL (guest/guest, "/"). */
static void parse_hostport(run *r)
{
    const char *p = strstr(r->url, "://");
    p = p ? p + 3 : r->url;
    const char *at = strchr(p, '@');
    if (at)
        p = at + 1;
    size_t hl = strcspn(p, ":/?");
    snprintf(r->host, sizeof r->host, "%.*s", (int)hl, p);
    r->port = p[hl] == ':' ? atoi(p + hl + 1) : 5672;
}

/* ---------- ours: amqp:// ---------- */

static void *ours_pub(void *arg)
{
    run *r = arg;
    sl_publisher *pub;
    if (sl_publisher_open(&pub, r->url) != 0)
        bench_die("sl_publisher_open: %s", sl_errmsg());
    sl_msg **ms = calloc(r->batch, sizeof *ms);
    unsigned char buf[MSG_SIZE];
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n;) {
        unsigned k = 0;
        for (; k < r->batch && i + k < r->n; k++) {
            bench_fill_seq(buf, MSG_SIZE, i + k);
            if (sl_msg_new(&ms[k], buf, MSG_SIZE) != 0)
                bench_die("sl_msg_new");
        }
        if (sl_publish(pub, r->topic, ms, k) != 0)
            bench_die("sl_publish: %s", sl_errmsg());
        for (unsigned j = 0; j < k; j++)
            sl_msg_unref(ms[j]);
        i += k;
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
    o.prefetch = r->prefetch;
    if (sl_subscriber_open(&sub, r->url) != 0 || sl_subscribe(sub, r->topic, &o, &s) != 0)
        bench_die("subscribe: %s", sl_errmsg());
    pthread_t t;
    pthread_create(&t, NULL, ours_pub, r);
    for (uint64_t i = 0; i < r->n; i++) {
        sl_msg *m;
        int rc = sl_next(s, &m, 30000);
        if (rc)
            bench_die("sl_next after %llu: %s", (unsigned long long)i, sl_errmsg());
        size_t len;
        const void *p = sl_msg_payload(m, &len);
        bench_check_seq(p, len, MSG_SIZE, i);
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    r->t_end = bench_now_ns();
    pthread_join(t, NULL);
    sl_subscriber_close(sub);
    return (double)r->n * 1e9 / (double)(r->t_end - r->t_start);
}

/* ---------- peer: raw librabbitmq ---------- */

static void die_reply(amqp_connection_state_t c, const char *what)
{
    amqp_rpc_reply_t rr = amqp_get_rpc_reply(c);
    if (rr.reply_type != AMQP_RESPONSE_NORMAL)
        bench_die("peer: %s failed (reply type %d)", what, rr.reply_type);
}

static amqp_connection_state_t peer_connect(run *r)
{
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (!s || amqp_socket_open(s, r->host, r->port) != AMQP_STATUS_OK)
        bench_die("peer: cannot connect to %s:%d", r->host, r->port);
    amqp_rpc_reply_t rr =
        amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    if (rr.reply_type != AMQP_RESPONSE_NORMAL)
        bench_die("peer: login failed");
    amqp_channel_open(c, 1);
    die_reply(c, "channel.open");
    return c;
}

static void *peer_pub(void *arg)
{
    run *r = arg;
    amqp_connection_state_t c = r->pc;
    char ex[300];
    snprintf(ex, sizeof ex, "sluice.%s", r->topic);
    unsigned char buf[MSG_SIZE];
    uint64_t tag = 0;
    r->t_start = bench_now_ns();
    for (uint64_t i = 0; i < r->n;) {
        unsigned k = 0;
        for (; k < r->batch && i + k < r->n; k++) {
            char id[SL_UUID_LEN + 1];
            sl_uuid_v7(id);
            bench_fill_seq(buf, MSG_SIZE, i + k);
            amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
                                                       AMQP_BASIC_MESSAGE_ID_FLAG,
                                             .delivery_mode = 2,
                                             .message_id = amqp_cstring_bytes(id)};
            amqp_bytes_t body = {.len = MSG_SIZE, .bytes = buf};
            if (amqp_basic_publish(c, 1, amqp_cstring_bytes(ex), amqp_cstring_bytes(r->topic), 0, 0,
                                   &props, body) != AMQP_STATUS_OK)
                bench_die("peer: basic.publish");
        }
        i += k;
        tag += k;
        for (uint64_t confirmed = tag - k; confirmed < tag;) {
            amqp_frame_t f;
            if (amqp_simple_wait_frame(c, &f) != AMQP_STATUS_OK)
                bench_die("peer: waiting for confirms");
            if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
                amqp_basic_ack_t *a = f.payload.method.decoded;
                if (a->delivery_tag > confirmed) /* RabbitMQ confirms in order */
                    confirmed = a->delivery_tag;
            } else if (f.frame_type == AMQP_FRAME_METHOD) {
                bench_die("peer: unexpected method 0x%08x", (unsigned)f.payload.method.id);
            }
        }
        amqp_maybe_release_buffers(c);
    }
    return NULL;
}

static double run_peer(run *r)
{
    char ex[300];
    snprintf(ex, sizeof ex, "sluice.%s", r->topic);
    r->pc = peer_connect(r);
    r->cc = peer_connect(r);
    amqp_exchange_declare(r->pc, 1, amqp_cstring_bytes(ex), amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                          amqp_empty_table);
    die_reply(r->pc, "exchange.declare");
    amqp_confirm_select(r->pc, 1);
    die_reply(r->pc, "confirm.select");
    amqp_connection_state_t c = r->cc;
    amqp_queue_declare_ok_t *q =
        amqp_queue_declare(c, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    die_reply(c, "queue.declare");
    amqp_bytes_t qn = amqp_bytes_malloc_dup(q->queue);
    amqp_queue_bind(c, 1, qn, amqp_cstring_bytes(ex), amqp_cstring_bytes("#"), amqp_empty_table);
    die_reply(c, "queue.bind");
    amqp_basic_qos(c, 1, 0, (uint16_t)r->prefetch, 0);
    die_reply(c, "basic.qos");
    amqp_basic_consume(c, 1, qn, amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    die_reply(c, "basic.consume");
    pthread_t t;
    pthread_create(&t, NULL, peer_pub, r);
    for (uint64_t i = 0; i < r->n; i++) {
        amqp_envelope_t env;
        amqp_maybe_release_buffers(c);
        amqp_rpc_reply_t rr = amqp_consume_message(c, &env, NULL, 0);
        if (rr.reply_type != AMQP_RESPONSE_NORMAL)
            bench_die("peer: consume after %llu", (unsigned long long)i);
        bench_check_seq(env.message.body.bytes, env.message.body.len, MSG_SIZE, i);
        if (amqp_basic_ack(c, 1, env.delivery_tag, 0) != AMQP_STATUS_OK)
            bench_die("peer: basic.ack");
        amqp_destroy_envelope(&env);
    }
    r->t_end = bench_now_ns();
    pthread_join(t, NULL);
    amqp_bytes_free(qn);
    for (int i = 0; i < 2; i++) {
        amqp_connection_state_t x = i ? r->cc : r->pc;
        amqp_connection_close(x, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(x);
    }
    return (double)r->n * 1e9 / (double)(r->t_end - r->t_start);
}

int main(void)
{
    run r = {.n = bench_env_u64("SL_BENCH_MESSAGES", 10000),
             .batch = (unsigned)bench_env_u64("SL_BENCH_BATCH", 100),
             .prefetch = (unsigned)bench_env_u64("SL_BENCH_PREFETCH", 256)};
    unsigned reps = (unsigned)bench_env_u64("SL_BENCH_REPS", 3);
    if (r.prefetch > 65535)
        bench_die("SL_BENCH_PREFETCH must be at most 65535");
    r.url = broker_url();
    parse_hostport(&r);
    printf("amqp_pubsub_64b: %llu messages, batch %u, prefetch %u, %u reps, broker %s\n",
           (unsigned long long)r.n, r.batch, r.prefetch, reps, r.url);
    double *ours = calloc(reps, sizeof *ours), *peer = calloc(reps, sizeof *peer);
    char topic[64];
    for (unsigned i = 0; i < reps; i++) {
        char id[SL_UUID_LEN + 1];
        sl_uuid_v7(id);
        snprintf(topic, sizeof topic, "bench-%s", id);
        r.topic = topic;
        peer[i] = run_peer(&r);
        ours[i] = run_ours(&r);
        printf("  rep %u: ours %.0f msg/s, peer %.0f msg/s\n", i + 1, ours[i], peer[i]);
        fflush(stdout);
    }
    double o = bench_median(ours, reps), p = bench_median(peer, reps);
    free(ours);
    free(peer);
    bench_service_stop(&broker);
    bench_ratio_line("amqp_pubsub_64b", o, p, 0.8);
    return 0;
}
