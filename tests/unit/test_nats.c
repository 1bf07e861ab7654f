/*
 * test_nats.c - nats:// beyond the conformance suite, against the real
 * nats-server -js of the ctest fixture (SL_NATS_URL):
 *  - interop with a foreign client: a bare nats.c program (no sluice code)
 *    reads what sluice published (payload, Nats-Msg-Id = uuid, headers) and
 *    publishes with headers what sluice reads; Debian 12 packages no other
 *    NATS client (no `nats` CLI, no python3-nats), see README;
 *  - start_seq / start_time, max_deliver, ack_deadline redelivery;
 *  - bad URLs, options and topics are refused with a clear error.
 * Without SL_NATS_URL (run outside ctest) the tests fail: they are not
 * skipped.
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testlib.h"

static const char *base(void)
{
    const char *u = getenv("SL_NATS_URL");
    if (!u)
        fail_msg("SL_NATS_URL is not set (run through ctest: sl_require_service nats)");
    return u;
}

static char url_buf[1024];
static const char *url(const char *query)
{
    snprintf(url_buf, sizeof url_buf, "%s%s%s", base(), query && *query ? "?" : "",
             query ? query : "");
    return url_buf;
}

static natsConnection *bare_connect(jsCtx **js)
{
    char u[600];
    snprintf(u, sizeof u, "%s", base());
    natsConnection *nc = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, u), NATS_OK);
    assert_int_equal(natsConnection_JetStream(js, nc, NULL), NATS_OK);
    return nc;
}

static void bare_close(natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy(js);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

static sl_msg *next_or_fail(sl_subscription *s, int ms)
{
    sl_msg *m = NULL;
    int rc = sl_next(s, &m, ms);
    if (rc)
        fail_msg("sl_next: %s: %s", sl_strerror(rc), sl_errmsg());
    return m;
}

/* sluice publishes; a bare nats.c JetStream consumer reads it. */
static void sluice_to_foreign(void **state)
{
    (void)state;
    const char *topic = tl_unique("interop-out");
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, url(NULL)), 0);
    static const unsigned char payload[] = {0, 1, 2, 0xff, 'x', 0};
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, payload, sizeof payload), 0);
    assert_int_equal(sl_msg_meta_set(m, "trace-id", "abc-123"), 0);
    assert_int_equal(sl_msg_meta_set(m, "utf8", "gr\xc3\xbc\xc3\x9f"), 0);
    assert_int_equal(sl_msg_meta_set(m, "with space", " edge "), 0);
    assert_int_equal(sl_publish(pub, topic, &m, 1), 0);

    jsCtx *js;
    natsConnection *nc = bare_connect(&js);
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.DeliverPolicy = js_DeliverAll;
    assert_int_equal(js_PullSubscribe(&sub, js, topic, NULL, NULL, &so, NULL), NATS_OK);
    natsMsgList list = {0};
    assert_int_equal(natsSubscription_Fetch(&list, sub, 1, 5000, NULL), NATS_OK);
    assert_int_equal(list.Count, 1);
    natsMsg *nm = list.Msgs[0];
    assert_int_equal(natsMsg_GetDataLength(nm), sizeof payload);
    assert_memory_equal(natsMsg_GetData(nm), payload, sizeof payload);
    const char *v = NULL;
    assert_int_equal(natsMsgHeader_Get(nm, "Nats-Msg-Id", &v), NATS_OK);
    assert_string_equal(v, sl_msg_uuid(m));
    assert_int_equal(natsMsgHeader_Get(nm, "trace-id", &v), NATS_OK);
    assert_string_equal(v, "abc-123");
    assert_int_equal(natsMsgHeader_Get(nm, "utf8", &v), NATS_OK);
    assert_string_equal(v, "gr\xc3\xbc\xc3\x9f");
    assert_int_equal(natsMsgHeader_Get(nm, "Sl-Meta", &v), NATS_OK); /* the odd pair, encoded */
    assert_string_equal(v, "with%20space=%20edge%20");
    assert_int_equal(natsMsg_Ack(nm, NULL), NATS_OK);
    natsMsgList_Destroy(&list);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    bare_close(nc, js);
    sl_msg_unref(m);
    sl_publisher_close(pub);
}

/* A bare nats.c publisher (headers, with and without Nats-Msg-Id); sluice
 * reads payload, uuid and metadata. */
static void foreign_to_sluice(void **state)
{
    (void)state;
    const char *topic = tl_unique("interop-in");
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, url(NULL)), 0);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "interop";
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, topic, &o, &s), 0); /* creates the stream */

    jsCtx *js;
    natsConnection *nc = bare_connect(&js);
    natsMsg *nm;
    assert_int_equal(natsMsg_Create(&nm, topic, NULL, "hello", 5), NATS_OK);
    natsMsgHeader_Set(nm, "Nats-Msg-Id", "order-42");
    natsMsgHeader_Set(nm, "customer", "ada");
    natsMsgHeader_Set(nm, "Sl-Meta", "a%3Db=c%25d");
    jsPubAck *pa = NULL;
    assert_int_equal(js_PublishMsg(&pa, js, nm, NULL, NULL), NATS_OK);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(nm);
    assert_int_equal(natsMsg_Create(&nm, topic, NULL, "", 0), NATS_OK);
    natsMsgHeader_Set(nm, "x-plain", "1");
    assert_int_equal(js_PublishMsg(&pa, js, nm, NULL, NULL), NATS_OK);
    char want[300];
    snprintf(want, sizeof want, "nats:%s:%llu", pa->Stream, (unsigned long long)pa->Sequence);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(nm);
    bare_close(nc, js);

    sl_msg *m = next_or_fail(s, 10000);
    size_t len;
    const void *p = sl_msg_payload(m, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "hello", 5);
    assert_string_equal(sl_msg_uuid(m), "order-42");
    assert_string_equal(sl_msg_meta_get(m, "customer"), "ada");
    assert_string_equal(sl_msg_meta_get(m, "a=b"), "c%d");
    assert_int_equal(sl_msg_meta_count(m), 2);
    assert_string_equal(sl_msg_topic(m), topic);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    m = next_or_fail(s, 10000);
    assert_string_equal(sl_msg_uuid(m), want);
    assert_string_equal(sl_msg_meta_get(m, "x-plain"), "1");
    sl_msg_payload(m, &len);
    assert_int_equal(len, 0);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    sl_subscriber_close(sub);
}

static void publish_n(const char *u, const char *topic, int first, int n)
{
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, u), 0);
    for (int i = first; i < first + n; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        sl_msg *m;
        assert_int_equal(sl_msg_new(&m, v, strlen(v)), 0);
        assert_int_equal(sl_publish(pub, topic, &m, 1), 0);
        sl_msg_unref(m);
    }
    sl_publisher_close(pub);
}

static int payload_int(sl_msg *m)
{
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    char buf[16] = {0};
    memcpy(buf, p, len < 15 ? len : 15);
    return atoi(buf);
}

/* Consuming from an offset: start_seq=N and start_time=T. */
static void start_seq_and_time(void **state)
{
    (void)state;
    const char *topic = tl_unique("offsets");
    publish_n(url(NULL), topic, 0, 5); /* stream sequences 1..5 */
    /* 300 ms each side of the start time: with 30 ms, the start_time
     * consumer found nothing in about one run of ten on a loaded machine
     * (the server's message timestamps are not ours to the millisecond) */
    tl_sleep_ms(300);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* start_time is wall-clock */
    int64_t t = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    tl_sleep_ms(300);
    publish_n(url(NULL), topic, 5, 2);
    for (int round = 0; round < 2; round++) {
        char q[64];
        if (round == 0)
            snprintf(q, sizeof q, "start_seq=3");
        else
            snprintf(q, sizeof q, "start_time=%lld", (long long)t);
        sl_subscriber *sub;
        assert_int_equal(sl_subscriber_open(&sub, url(q)), 0);
        sl_subscription *s;
        assert_int_equal(sl_subscribe(sub, topic, NULL, &s), 0);
        for (int want = round == 0 ? 2 : 5; want < 7; want++) {
            print_message("%s: waiting for message %d\n", q, want);
            sl_msg *m = next_or_fail(s, 10000);
            assert_int_equal(payload_int(m), want);
            sl_msg_ack(m);
            sl_msg_unref(m);
        }
        sl_msg *none = NULL;
        assert_int_equal(sl_next(s, &none, 200), SL_ETIMEDOUT);
        sl_subscriber_close(sub);
    }
}

/* A start time keeps its milliseconds when they have a leading zero
 * (nats.c writes 12.046 s as "12.46": the consumer began 414 ms late). */
static void start_time_keeps_its_milliseconds(void **state)
{
    (void)state;
    const char *topic = tl_unique("starttime");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long t = ((long long)ts.tv_sec - 10) * 1000 + 46; /* x.046 s, in the past */
    char q[64];
    snprintf(q, sizeof q, "start_time=%lld", t);
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, url(q)), 0);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.group = "at-time";
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, topic, &o, &s), 0);
    jsCtx *js;
    natsConnection *nc = bare_connect(&js);
    jsConsumerInfo *ci = NULL;
    assert_int_equal(js_GetConsumerInfo(&ci, js, topic, "at-time", NULL, NULL), NATS_OK);
    assert_int_equal(ci->Config->DeliverPolicy, js_DeliverByStartTime);
    assert_int_equal(ci->Config->OptStartTime, (int64_t)t * 1000000);
    jsConsumerInfo_Destroy(ci);
    bare_close(nc, js);
    sl_subscriber_close(sub);
}

/* max_deliver=2: after two nacks the server stops delivering. ack_deadline:
 * a message held past it comes again. */
static void max_deliver_and_ack_deadline(void **state)
{
    (void)state;
    const char *topic = tl_unique("maxdel");
    sl_subscriber *sub;
    assert_int_equal(sl_subscriber_open(&sub, url("max_deliver=2&ack_deadline=500ms")), 0);
    sl_subscribe_opts o;
    sl_subscribe_opts_init(&o);
    o.prefetch = 2;
    sl_subscription *s;
    assert_int_equal(sl_subscribe(sub, topic, &o, &s), 0);
    publish_n(url(NULL), topic, 0, 1);
    sl_msg *m = next_or_fail(s, 10000);
    assert_int_equal(sl_msg_deliveries(m), 1);
    assert_int_equal(sl_msg_nack(m), 0);
    sl_msg_unref(m);
    m = next_or_fail(s, 10000);
    assert_int_equal(sl_msg_deliveries(m), 2);
    assert_int_equal(sl_msg_nack(m), 0);
    sl_msg_unref(m);
    sl_msg *none = NULL;
    assert_int_equal(sl_next(s, &none, 800), SL_ETIMEDOUT); /* MaxDeliver reached */

    publish_n(url(NULL), topic, 1, 1);
    sl_msg *held = next_or_fail(s, 10000); /* kept unacked past ack_deadline */
    int64_t t0 = tl_now_ms();
    m = next_or_fail(s, 10000);
    assert_true(tl_now_ms() - t0 >= 300);
    assert_string_equal(sl_msg_uuid(m), sl_msg_uuid(held));
    assert_int_equal(sl_msg_deliveries(m), 2);
    assert_int_equal(sl_msg_ack(m), 0);
    sl_msg_unref(m);
    sl_msg_unref(held);
    sl_subscriber_close(sub);
}

static void bad_input_is_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "bogus=1",
        "start_seq=3&start_time=1000",
        "start_time=yesterday",
        "stream=ALL",                   /* needs subject_prefix */
        "stream=a.b&subject_prefix=x.", /* not a stream name */
        "subject_prefix=a..b",
        "jetstream=false&start_seq=1",
        "storage=tape",
        "ack_deadline=1ms",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sl_subscriber *sub = NULL;
        int rc = sl_subscriber_open(&sub, url(bad[i]));
        if (rc != SL_EBADOPT)
            fail_msg("'%s': want SL_EBADOPT, got %d (%s)", bad[i], rc, sl_errmsg());
    }
    sl_publisher *pub;
    assert_int_equal(sl_publisher_open(&pub, "nats://127.0.0.1:1/path"), SL_EINVAL);
    assert_int_equal(sl_publisher_open(&pub, "nats://127.0.0.1:1"), SL_ECONN);
    assert_int_equal(sl_publisher_open(&pub, url(NULL)), 0);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "x", 1), 0);
    static const char *topics[] = {"a b", "a..b", "a.*", ">", "a."};
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++) {
        int rc = sl_publish(pub, topics[i], &m, 1);
        if (rc != SL_EINVAL)
            fail_msg("topic '%s': want SL_EINVAL, got %d (%s)", topics[i], rc, sl_errmsg());
    }
    sl_msg_unref(m);
    sl_publisher_close(pub);
}

/* stream=NAME: every topic is a subject of one stream. */
static void one_stream_for_all_topics(void **state)
{
    (void)state;
    char q[300];
    const char *name = tl_unique("ALL");
    char stream[100];
    size_t j = 0;
    for (const char *p = name; *p && j < sizeof stream - 1; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
            stream[j++] = *p;
    stream[j] = 0;
    snprintf(q, sizeof q, "stream=%s&subject_prefix=%s.", stream, stream);
    char u[1024];
    snprintf(u, sizeof u, "%s", url(q));
    publish_n(u, "orders.eu", 0, 1);
    publish_n(u, "orders.us", 1, 1);
    jsCtx *js;
    natsConnection *nc = bare_connect(&js);
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, js, stream, NULL, NULL), NATS_OK);
    assert_int_equal(si->State.Msgs, 2);
    jsStreamInfo_Destroy(si);
    js_DeleteStream(js, stream, NULL, NULL);
    bare_close(nc, js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sluice_to_foreign),
        cmocka_unit_test(foreign_to_sluice),
        cmocka_unit_test(start_seq_and_time),
        cmocka_unit_test(start_time_keeps_its_milliseconds),
        cmocka_unit_test(max_deliver_and_ack_deadline),
        cmocka_unit_test(bad_input_is_refused),
        cmocka_unit_test(one_stream_for_all_topics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
