/*
 * test_amqp.c - amqp:// specifics the conformance suite does not cover:
 * option checking, failing early on a wrong address or login, what goes on
 * the wire (exchange, persistence, message_id, headers) as a raw
 * librabbitmq client sees it and the other way round, the connection pool
 * under many threads, durable group queues, mandatory publishing.
 *
 * Needs a real RabbitMQ: $SL_AMQP_URL, else services.sh's default
 * amqp://guest:guest@127.0.0.1:15682/ (scripts/services.sh start rabbitmq).
 * An unreachable broker fails the tests; it never skips them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "testlib.h"

static const char *base_url(void)
{
    const char *u = getenv("SL_AMQP_URL");
    return u && *u ? u : "amqp://guest:guest@127.0.0.1:15682/";
}

/* base_url() with query appended ("" for none). */
static const char *url_with(const char *query)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s%s%s", base_url(), *query ? "?" : "", query);
    return b;
}

static sl_publisher *pub_open(const char *url)
{
    sl_publisher *p = NULL;
    int rc = sl_publisher_open(&p, url);
    if (rc)
        fail_msg("sl_publisher_open(%s): %s: %s (is RabbitMQ running? scripts/services.sh start "
                 "rabbitmq)",
                 url, sl_strerror(rc), sl_errmsg());
    return p;
}

static sl_subscription *subscribe(sl_subscriber **sub, const char *topic, const char *group,
                                  unsigned prefetch)
{
    int rc = sl_subscriber_open(sub, base_url());
    if (rc)
        fail_msg("sl_subscriber_open(%s): %s: %s", base_url(), sl_strerror(rc), sl_errmsg());
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = group;
    o.prefetch = prefetch;
    sl_subscription *s = NULL;
    assert_int_equal(sl_subscribe(*sub, topic, &o, &s), 0);
    return s;
}

static void host_port(char host[256], int *port)
{
    const char *p = strstr(base_url(), "://") + 3, *at = strchr(p, '@');
    if (at)
        p = at + 1;
    size_t hl = strcspn(p, ":/?");
    snprintf(host, 256, "%.*s", (int)hl, p);
    *port = p[hl] == ':' ? atoi(p + hl + 1) : 5672;
}

static amqp_connection_state_t raw_connect(void)
{
    char host[256];
    int port;
    host_port(host, &port);
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    assert_non_null(s);
    assert_int_equal(amqp_socket_open(s, host, port), AMQP_STATUS_OK);
    amqp_rpc_reply_t r = amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
    amqp_channel_open(c, 1);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    return c;
}

static void raw_close(amqp_connection_state_t c)
{
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

static void bad_options_are_rejected(void **state)
{
    (void)state;
    const char *bad[] = {
        "nosuch=1",        "connection_num=0", "channel_num=x",  "exchange_type=headers",
        "mandatory=maybe", "heartbeat=-1",     "reconnect_max=0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_publisher *p = NULL;
        sl_subscriber *s = NULL;
        assert_int_equal(sl_publisher_open(&p, url_with(bad[i])), SL_EBADOPT);
        assert_null(p);
        assert_int_equal(sl_subscriber_open(&s, url_with(bad[i])), SL_EBADOPT);
        assert_null(s);
    }
    sl_publisher *p = pub_open(url_with("connection_num=2&channel_num=3&exchange_type=fanout&"
                                        "heartbeat=5s&connect_timeout=2s&publish_timeout=10s&"
                                        "reconnect_max=500ms&mandatory=false&frame_max=65536&"
                                        "exchange_prefix=t.&queue_prefix=q."));
    assert_int_equal(sl_publisher_close(p), 0);
}

static void unreachable_or_wrong_login_fails_at_open(void **state)
{
    (void)state;
    sl_publisher *p = NULL;
    sl_subscriber *s = NULL;
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_publisher_open(&p, "amqp://guest:guest@127.0.0.1:1/?connect_timeout=2s"),
                     SL_ECONN);
    assert_int_equal(sl_subscriber_open(&s, "amqp://guest:guest@127.0.0.1:1/"), SL_ECONN);
    assert_true(tl_now_ms() - t0 < 15000);
    char host[256], url[600];
    int port;
    host_port(host, &port);
    snprintf(url, sizeof url, "amqp://guest:wrong@%s:%d/", host, port);
    assert_int_not_equal(sl_publisher_open(&p, url), 0);
    assert_null(p);
    snprintf(url, sizeof url, "amqp://guest:guest@%s:%d/no-such-vhost", host, port);
    assert_int_not_equal(sl_subscriber_open(&s, url), 0);
    assert_null(s);
}

/* What a plain AMQP client sees of a sluice message: a durable exchange
 * named after the topic, delivery_mode 2, message_id = UUID, metadata as
 * longstr headers, the payload as body. */
static void wire_format_seen_by_raw_client(void **state)
{
    (void)state;
    const char *topic = tl_unique("wire");
    char ex[300];
    snprintf(ex, sizeof ex, "sluice.%s", topic);
    sl_publisher *pub = pub_open(base_url());
    sl_msg *m;
    const unsigned char body[] = {0, 1, 2, 255, 0, 'x'};
    assert_int_equal(sl_msg_new(&m, body, sizeof body), 0);
    assert_int_equal(sl_msg_meta_set(m, "k\xc3\xa9y", "v\xe2\x9c\x93 a=b&c"), 0);
    assert_int_equal(sl_msg_meta_set(m, "empty", ""), 0);
    assert_int_equal(sl_publish(pub, topic, &m, 1), 0); /* declares the exchange */
    amqp_connection_state_t c = raw_connect();
    amqp_exchange_declare(c, 1, amqp_cstring_bytes(ex), amqp_cstring_bytes("topic"),
                          1 /* passive */, 1, 0, 0, amqp_empty_table);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    amqp_queue_declare_ok_t *q =
        amqp_queue_declare(c, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    assert_non_null(q);
    amqp_bytes_t qn = amqp_bytes_malloc_dup(q->queue);
    amqp_queue_bind(c, 1, qn, amqp_cstring_bytes(ex), amqp_cstring_bytes("#"), amqp_empty_table);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    assert_int_equal(sl_publish(pub, topic, &m, 1), 0);
    amqp_basic_consume(c, 1, qn, amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    amqp_envelope_t env;
    struct timeval tv = {10, 0};
    assert_int_equal(amqp_consume_message(c, &env, &tv, 0).reply_type, AMQP_RESPONSE_NORMAL);
    assert_int_equal(env.routing_key.len, strlen(topic));
    assert_memory_equal(env.routing_key.bytes, topic, strlen(topic));
    amqp_basic_properties_t *pr = &env.message.properties;
    assert_true(pr->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
    assert_int_equal(pr->delivery_mode, 2);
    assert_int_equal(pr->message_id.len, SL_UUID_LEN);
    assert_memory_equal(pr->message_id.bytes, sl_msg_uuid(m), SL_UUID_LEN);
    assert_int_equal(env.message.body.len, sizeof body);
    assert_memory_equal(env.message.body.bytes, body, sizeof body);
    assert_int_equal(pr->headers.num_entries, 2);
    amqp_table_entry_t *h = pr->headers.entries;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(h[i].value.kind, AMQP_FIELD_KIND_UTF8);
        char k[64], v[64];
        snprintf(k, sizeof k, "%.*s", (int)h[i].key.len, (char *)h[i].key.bytes);
        snprintf(v, sizeof v, "%.*s", (int)h[i].value.value.bytes.len,
                 (char *)h[i].value.value.bytes.bytes);
        assert_string_equal(v, sl_msg_meta_get(m, k));
    }
    amqp_destroy_envelope(&env);
    amqp_bytes_free(qn);
    raw_close(c);
    sl_msg_unref(m);
    sl_publisher_close(pub);
}

/* A message from a plain AMQP client: typed headers become text, nested
 * ones are left out, a missing message_id gets a fresh UUID. */
static void raw_client_message_is_received(void **state)
{
    (void)state;
    const char *topic = tl_unique("raw");
    sl_subscriber *sub;
    sl_subscription *s = subscribe(&sub, topic, NULL, 4);
    amqp_connection_state_t c = raw_connect();
    char ex[300];
    snprintf(ex, sizeof ex, "sluice.%s", topic);
    amqp_table_entry_t e[3];
    e[0].key = amqp_cstring_bytes("n");
    e[0].value.kind = AMQP_FIELD_KIND_I32;
    e[0].value.value.i32 = -7;
    e[1].key = amqp_cstring_bytes("b");
    e[1].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    e[1].value.value.boolean = 1;
    e[2].key = amqp_cstring_bytes("t");
    e[2].value.kind = AMQP_FIELD_KIND_TABLE;
    e[2].value.value.table = amqp_empty_table;
    amqp_basic_properties_t pr = {._flags = AMQP_BASIC_HEADERS_FLAG,
                                  .headers = {.num_entries = 3, .entries = e}};
    assert_int_equal(amqp_basic_publish(c, 1, amqp_cstring_bytes(ex), amqp_cstring_bytes(topic), 0,
                                        0, &pr, amqp_cstring_bytes("hello")),
                     AMQP_STATUS_OK);
    sl_msg *m = NULL;
    assert_int_equal(sl_next(s, &m, 10000), 0);
    size_t len;
    const void *p = sl_msg_payload(m, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "hello", 5);
    assert_int_equal(strlen(sl_msg_uuid(m)), SL_UUID_LEN);
    assert_string_equal(sl_msg_meta_get(m, "n"), "-7");
    assert_string_equal(sl_msg_meta_get(m, "b"), "true");
    assert_null(sl_msg_meta_get(m, "t"));
    assert_int_equal(sl_msg_deliveries(m), 1);
    assert_string_equal(sl_msg_topic(m), topic);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    raw_close(c);
    sl_subscriber_close(sub);
}

static void long_metadata_key_is_rejected(void **state)
{
    (void)state;
    sl_publisher *pub = pub_open(base_url());
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    char key[300];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = 0;
    assert_int_equal(sl_msg_meta_set(m, key, "v"), 0);
    assert_int_equal(sl_publish(pub, tl_unique("longkey"), &m, 1), SL_EINVAL);
    /* the publisher still works afterwards */
    assert_int_equal(sl_msg_meta_del(m, key), 0);
    assert_int_equal(sl_publish(pub, tl_unique("longkey"), &m, 1), 0);
    sl_msg_unref(m);
    sl_publisher_close(pub);
}

static void mandatory_publish_to_nobody_fails(void **state)
{
    (void)state;
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    sl_publisher *dflt = pub_open(base_url());
    assert_int_equal(sl_publish(dflt, tl_unique("nobody"), &m, 1), 0); /* dropped, like mem:// */
    sl_publisher *mand = pub_open(url_with("mandatory=true"));
    const char *topic = tl_unique("nobody");
    assert_int_equal(sl_publish(mand, topic, &m, 1), SL_EIO);
    assert_non_null(strstr(sl_errmsg(), "returned"));
    sl_subscriber *sub;
    sl_subscription *s = subscribe(&sub, topic, NULL, 1);
    assert_int_equal(sl_publish(mand, topic, &m, 1), 0); /* now a queue takes it */
    sl_msg *got = NULL;
    assert_int_equal(sl_next(s, &got, 10000), 0);
    assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(m));
    sl_msg_ack(got);
    sl_msg_unref(got);
    sl_subscriber_close(sub);
    sl_publisher_close(dflt);
    sl_publisher_close(mand);
    sl_msg_unref(m);
}

/* A refusal of the broker (the exchange exists with another type: 406) is
 * reported at once as such, not retried for publish_timeout as a lost
 * connection; the publisher goes on working for other topics. */
static void broker_refusal_fails_at_once(void **state)
{
    (void)state;
    const char *topic = tl_unique("refused");
    sl_publisher *fan = pub_open(url_with("exchange_type=fanout"));
    sl_publisher *dflt = pub_open(url_with("publish_timeout=20s"));
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    assert_int_equal(sl_publish(fan, topic, &m, 1), 0); /* declares a fanout exchange */
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_publish(dflt, topic, &m, 1), SL_EIO);
    assert_true(tl_now_ms() - t0 < 5000);
    assert_non_null(strstr(sl_errmsg(), "406"));
    assert_int_equal(sl_publish(dflt, tl_unique("other"), &m, 1), 0);
    sl_msg_unref(m);
    sl_publisher_close(fan);
    sl_publisher_close(dflt);
}

typedef struct pool_job {
    sl_publisher *pub;
    const char *topic;
    int id;
} pool_job;

#define POOL_THREADS 8
#define POOL_PER 150

static void *pool_publish(void *arg)
{
    pool_job *j = arg;
    for (int i = 0; i < POOL_PER;) {
        int n = 1 + (i % 5);
        if (n > POOL_PER - i)
            n = POOL_PER - i;
        sl_msg *ms[5];
        for (int k = 0; k < n; k++) {
            char v[32];
            snprintf(v, sizeof v, "%d", j->id * POOL_PER + i + k);
            sl_msg_new(&ms[k], v, strlen(v));
            sl_msg_meta_set(ms[k], "n", v);
        }
        TL_CHECK_INT(sl_publish(j->pub, j->topic, ms, (size_t)n), 0);
        for (int k = 0; k < n; k++)
            sl_msg_unref(ms[k]);
        i += n;
    }
    return NULL;
}

/* One publisher shared by 8 threads over 3 connections x 4 channels. */
static void pool_serves_many_threads(void **state)
{
    (void)state;
    const char *topic = tl_unique("pool");
    sl_subscriber *sub;
    sl_subscription *s = subscribe(&sub, topic, tl_unique("g"), 64);
    sl_publisher *pub = pub_open(url_with("connection_num=3&channel_num=4"));
    pool_job jobs[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++)
        jobs[i] = (pool_job){pub, topic, i};
    tl_run_threads(POOL_THREADS, pool_publish, jobs, sizeof jobs[0]);
    tl_assert_threads_ok();
    unsigned char seen[POOL_THREADS * POOL_PER] = {0};
    for (int got = 0; got < POOL_THREADS * POOL_PER;) {
        sl_msg *m = NULL;
        assert_int_equal(sl_next(s, &m, 10000), 0);
        int n = atoi(sl_msg_meta_get(m, "n"));
        assert_true(n >= 0 && n < POOL_THREADS * POOL_PER);
        assert_false(seen[n]);
        seen[n] = 1;
        got++;
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    sl_msg *none = NULL;
    assert_int_equal(sl_next(s, &none, 300), SL_ETIMEDOUT);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

/* A group's queue is durable: it keeps messages while no member is
 * connected; an ungrouped subscription's queue goes away with it. */
static void group_queue_outlives_its_members(void **state)
{
    (void)state;
    const char *topic = tl_unique("durable"), *group = tl_unique("g");
    sl_subscriber *sub;
    sl_subscription *s = subscribe(&sub, topic, group, 8);
    assert_int_equal(sl_subscriber_close(sub), 0);
    sl_publisher *pub = pub_open(base_url());
    sl_msg *ms[10];
    for (int i = 0; i < 10; i++)
        assert_int_equal(sl_msg_new(&ms[i], &i, sizeof i), 0);
    assert_int_equal(sl_publish(pub, topic, ms, 10), 0);
    s = subscribe(&sub, topic, group, 8);
    for (int i = 0; i < 10; i++) {
        sl_msg *m = NULL;
        assert_int_equal(sl_next(s, &m, 10000), 0);
        assert_true(sl_msg_equal(m, ms[i])); /* one publisher, one consumer: in order */
        sl_msg_ack(m);
        sl_msg_unref(m);
    }
    for (int i = 0; i < 10; i++)
        sl_msg_unref(ms[i]);
    sl_publisher_close(pub);
    sl_subscriber_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_options_are_rejected),
        cmocka_unit_test(unreachable_or_wrong_login_fails_at_open),
        cmocka_unit_test(wire_format_seen_by_raw_client),
        cmocka_unit_test(raw_client_message_is_received),
        cmocka_unit_test(long_metadata_key_is_rejected),
        cmocka_unit_test(mandatory_publish_to_nobody_fails),
        cmocka_unit_test(broker_refusal_fails_at_once),
        cmocka_unit_test(pool_serves_many_threads),
        cmocka_unit_test(group_queue_outlives_its_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
