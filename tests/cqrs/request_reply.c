/*
 * request_reply.c - request-reply over the backend given as argument:
 * replies with a body, replies with only the handler's result (success or
 * its error code), a request nobody answers (timeout), and concurrent
 * requests each getting their own reply.
 * usage: cqrs_request_reply URL
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "sluice/cqrs.h"
#include "testlib.h"

static const char *g_url;
static sl_publisher *g_pub;

static int ping(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx, (void)user;
    char body[64];
    int n = snprintf(body, sizeof body, "pong:%lld",
                     (long long)json_integer_value(json_object_get(value, "v")));
    return sl_reply(g_pub, msg, body, (size_t)n, 0);
}

static int check(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)msg, (void)user;
    /* a request carries the requester's deadline: the context ends with the wait */
    int64_t left = sl_ctx_remaining_ms(ctx);
    if (left < 0 || left > 20000)
        return sl_handler_fail(SL_EPROTO, "request without its deadline (%lld ms left)",
                               (long long)left);
    return json_integer_value(json_object_get(value, "v")) < 0
               ? sl_handler_fail(SL_EDENIED, "negative values are refused")
               : 0;
}

typedef struct rq {
    sl_requester *r;
    int base;
} rq;

static void *many(void *arg)
{
    rq *q = arg;
    for (int i = 0; i < 10; i++) {
        int v = q->base + i;
        json_t *cmd = json_pack("{s:i}", "v", v);
        sl_msg *reply;
        int rc = sl_request(q->r, "Ping", cmd, 20000, &reply);
        json_decref(cmd);
        TL_CHECK_INT(rc, 0);
        if (rc == 0) {
            char want[32];
            int n = snprintf(want, sizeof want, "pong:%d", v);
            size_t len;
            const char *p = sl_msg_payload(reply, &len);
            TL_CHECK(len == (size_t)n && memcmp(p, want, len) == 0);
            sl_msg_unref(reply);
        }
    }
    return NULL;
}

static void *run_router(void *r)
{
    sl_router_run(r);
    return NULL;
}

static int run_topic(const char *name, char *buf, size_t cap, void *ctx)
{
    snprintf(buf, cap, "%s.%s", (const char *)ctx, name);
    return 0;
}

static void request_reply_works_over_the_backend(void **state)
{
    (void)state;
    sl_subscriber *sub;
    sl_router *r;
    assert_int_equal(sl_publisher_open(&g_pub, g_url), 0);
    assert_int_equal(sl_subscriber_open(&sub, g_url), 0);
    assert_int_equal(sl_router_new(&r, NULL), 0);
    sl_marshaler m;
    sl_marshaler_json(&m);
    sl_cqrs_opts o;
    sl_cqrs_opts_init(&o);
    o.reply_pub = g_pub;
    /* fresh topics per run: persistent backends keep old commands */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s", tl_unique("rr"));
    o.topic = run_topic;
    o.topic_ctx = prefix;
    sl_command_bus *cb;
    assert_int_equal(sl_command_bus_new(&cb, g_pub, &m, &o), 0);
    sl_command_processor *cp;
    assert_int_equal(sl_command_processor_new(&cp, r, sub, &m, &o), 0);
    assert_int_equal(sl_command_processor_add(cp, "Ping", ping, NULL), 0);
    assert_int_equal(sl_command_processor_add(cp, "Check", check, NULL), 0);
    pthread_t t;
    pthread_create(&t, NULL, run_router, r);
    assert_int_equal(sl_router_running(r, 30000), 0);
    sl_requester *req;
    assert_int_equal(sl_requester_new(&req, cb, sub), 0);
    tl_sleep_ms(200); /* broker-side subscriptions settle */

    /* 1. a reply with a body */
    json_t *cmd = json_pack("{s:i}", "v", 41);
    sl_msg *reply;
    assert_int_equal(sl_request(req, "Ping", cmd, 20000, &reply), 0);
    size_t len;
    const char *p = sl_msg_payload(reply, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(p, "pong:41", 7);
    sl_msg_unref(reply);
    json_decref(cmd);

    /* 2. only the result: success, then the handler's own error code */
    cmd = json_pack("{s:i}", "v", 1);
    assert_int_equal(sl_request(req, "Check", cmd, 20000, NULL), 0);
    json_decref(cmd);
    cmd = json_pack("{s:i}", "v", -1);
    assert_int_equal(sl_request(req, "Check", cmd, 20000, NULL), SL_EDENIED);
    assert_non_null(strstr(sl_errmsg(), "negative values are refused"));
    json_decref(cmd);

    /* 3. nobody handles it: a timeout, on time */
    cmd = json_pack("{s:i}", "v", 1);
    int64_t t0 = tl_now_ms();
    assert_int_equal(sl_request(req, "Nobody", cmd, 700, NULL), SL_ETIMEDOUT);
    assert_true(tl_now_ms() - t0 >= 650 && tl_now_ms() - t0 < 5000);
    json_decref(cmd);

    /* 4. concurrent requests each get their own reply */
    rq qs[4];
    for (int i = 0; i < 4; i++)
        qs[i] = (rq){req, i * 1000};
    tl_run_threads(4, many, qs, sizeof qs[0]);
    tl_assert_threads_ok();

    sl_requester_free(req);
    sl_router_close(r, 10000, NULL);
    pthread_join(t, NULL);
    sl_router_free(r);
    sl_command_processor_free(cp);
    sl_command_bus_free(cb);
    sl_subscriber_close(sub);
    sl_publisher_close(g_pub);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cqrs_request_reply URL\n");
        return 2;
    }
    g_url = argv[1];
    const struct CMUnitTest tests[] = {cmocka_unit_test(request_reply_works_over_the_backend)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
