/*
 * test_service.c - sl_service and sl_client on loopback, without a registry
 * (calls by address) except where the registry is the point.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service/svc_int.h"
#include "sluice/client.h"
#include "sluice/service.h"
#include "sluice/service_json.h"
#include "testlib.h"

static atomic_int g_closed_seen;

static int echo(sl_call *c, void *user)
{
    (void)user;
    size_t n;
    const void *b = sl_call_body(c, &n);
    return sl_call_reply(c, b, n);
}

static int fails(sl_call *c, void *user)
{
    (void)c, (void)user;
    return SL_EDENIED;
}

static int slow(sl_call *c, void *user)
{
    (void)user;
    tl_sleep_ms(600);
    return sl_call_reply_json(c, json_pack("{s:b}", "slept", 1));
}

static int meta(sl_call *c, void *user)
{
    (void)user;
    const char *who = sl_call_meta(c, "X-User");
    return sl_call_reply_json(
        c, json_pack("{s:s?, s:I}", "user", who, "left", (json_int_t)sl_call_remaining_ms(c)));
}

static int trace_of(sl_call *c, void *user)
{
    (void)user;
    return sl_call_reply_json(c, json_pack("{s:s?}", "trace", sl_call_meta(c, "Micro-Trace-Id")));
}

static int endless(sl_call *c, void *user)
{
    (void)user;
    for (int i = 0; i < 1000000; i++) {
        int rc = sl_call_send_json(c, json_pack("{s:i}", "i", i));
        if (rc == SL_ECLOSED) {
            atomic_fetch_add(&g_closed_seen, 1);
            return rc;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int wrap_a(sl_call *c, void *user)
{
    (void)user;
    sl_call_set_meta(c, "X-Order-A", "1");
    int rc = sl_call_next(c);
    sl_call_set_meta(c, "X-After-A", sl_call_status(c) == 200 ? "ok" : "err");
    return rc;
}

static int wrap_b(sl_call *c, void *user)
{
    (void)user;
    /* runs after wrap_a: sees its header already set on the response */
    sl_call_set_meta(c, "X-Order-B", "2");
    return sl_call_next(c);
}

static sl_service *start_service(void)
{
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "svc-test";
    o.address = "127.0.0.1:0";
    o.registry = "none";
    o.max_body = 1000;
    o.drain_timeout_ms = 5000;
    sl_service *s;
    assert_int_equal(sl_service_new(&s, &o), 0);
    assert_int_equal(sl_service_handle(s, "T.Echo", echo, NULL), 0);
    assert_int_equal(sl_service_handle(s, "T.Fail", fails, NULL), 0);
    assert_int_equal(sl_service_handle(s, "T.Slow", slow, NULL), 0);
    assert_int_equal(sl_service_handle(s, "T.Meta", meta, NULL), 0);
    assert_int_equal(sl_service_handle_stream(s, "T.Endless", endless, NULL), 0);
    assert_int_equal(sl_service_handle(s, "T.Echo", echo, NULL), SL_EEXIST);
    assert_int_equal(sl_service_handle(s, "NoDot", echo, NULL), SL_EINVAL);
    assert_int_equal(sl_service_handle(s, "A.B.C", echo, NULL), SL_EINVAL);
    assert_int_equal(sl_service_wrap(s, wrap_a, NULL), 0);
    assert_int_equal(sl_service_wrap(s, wrap_b, NULL), 0);
    assert_int_equal(sl_service_start(s), 0);
    assert_int_equal(sl_service_handle(s, "T.Late", echo, NULL), SL_ESTATE);
    return s;
}

static sl_client *client(void)
{
    sl_client_opts o;
    sl_client_opts_init(&o);
    o.registry = "sqlite:///nonexistent-dir-for-tests/registry.db"; /* never used: by address */
    o.retries = 0;
    sl_client *c;
    assert_int_equal(sl_client_new(&c, &o), 0);
    return c;
}

static int call(sl_client *c, sl_service *s, const char *ep, const char *body, int64_t timeout,
                sl_response **r)
{
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(s);
    co.timeout_ms = timeout;
    return sl_client_call(c, "svc-test", ep, body, strlen(body), &co, r);
}

static void calls_answer_errors_and_wrappers_run_in_order(void **state)
{
    (void)state;
    sl_service *s = start_service();
    sl_client *c = client();
    sl_response *r;
    assert_int_equal(call(c, s, "T.Echo", "{\"a\":[1,2]}", 0, &r), 0);
    size_t n;
    const char *b = sl_response_body(r, &n);
    assert_int_equal(n, 11);
    assert_memory_equal(b, "{\"a\":[1,2]}", 11);
    assert_string_equal(sl_response_meta(r, "X-Order-A"), "1");
    assert_string_equal(sl_response_meta(r, "X-Order-B"), "2");
    assert_string_equal(sl_response_meta(r, "X-After-A"), "ok");
    sl_response_free(r);

    /* A handler's error code maps to its status, with go-micro's JSON. */
    assert_int_equal(call(c, s, "T.Fail", "{}", 0, &r), SL_EDENIED);
    assert_non_null(r);
    assert_int_equal(sl_response_status(r), 403);
    assert_non_null(strstr(sl_response_body(r, NULL), "\"id\":\"svc-test\""));
    assert_string_equal(sl_response_meta(r, "X-After-A"), "err");
    sl_response_free(r);

    assert_int_equal(call(c, s, "T.Nope", "{}", 0, &r), SL_ENOENT);
    sl_response_free(r);
    assert_int_equal(call(c, s, "T.Echo", "{bad json", 0, &r), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "malformed JSON"));
    sl_response_free(r);
    char big[2000];
    memset(big, ' ', sizeof big - 1);
    big[0] = '"', big[sizeof big - 2] = '"', big[sizeof big - 1] = 0;
    assert_int_equal(call(c, s, "T.Echo", big, 0, &r), SL_ETOOBIG);
    sl_response_free(r);
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(s);
    co.content_type = "text/plain";
    assert_int_equal(sl_client_call(c, "svc-test", "T.Echo", "x", 1, &co, &r), SL_ENOTSUP);
    sl_response_free(r);
    /* protobuf bytes pass through untouched */
    co.content_type = "application/protobuf";
    const char pb[] = {0x08, 0x96, 0x01, 0x00, 0x12};
    assert_int_equal(sl_client_call(c, "svc-test", "T.Echo", pb, sizeof pb, &co, &r), 0);
    b = sl_response_body(r, &n);
    assert_int_equal(n, sizeof pb);
    assert_memory_equal(b, pb, sizeof pb);
    assert_string_equal(sl_response_meta(r, "Content-Type"), "application/protobuf");
    sl_response_free(r);
    /* bad metadata never reaches the wire */
    sl_reg_meta bad = {"X Bad", "v"};
    co.content_type = NULL;
    co.metadata = &bad;
    co.n_metadata = 1;
    assert_int_equal(sl_client_call(c, "svc-test", "T.Echo", "{}", 2, &co, &r), SL_EINVAL);
    assert_null(r);
    sl_client_free(c);
    sl_service_free(s);
}

static void metadata_and_deadline_reach_the_handler(void **state)
{
    (void)state;
    sl_service *s = start_service();
    sl_client *c = client();
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(s);
    co.timeout_ms = 4000;
    sl_reg_meta m = {"X-User", "bob"};
    co.metadata = &m;
    co.n_metadata = 1;
    sl_response *r;
    assert_int_equal(sl_client_call(c, "svc-test", "T.Meta", "{}", 2, &co, &r), 0);
    json_t *j = json_loads(sl_response_body(r, NULL), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "user")), "bob");
    json_int_t left = json_integer_value(json_object_get(j, "left"));
    assert_in_range(left, 1, 4000);
    json_decref(j);
    sl_response_free(r);

    /* A handler slower than the caller's timeout: SL_ETIMEDOUT, in time. */
    int64_t t0 = tl_now_ms();
    assert_int_equal(call(c, s, "T.Slow", "{}", 200, &r), SL_ETIMEDOUT);
    assert_true(tl_now_ms() - t0 < 550);
    assert_null(r);
    sl_client_free(c);
    sl_service_free(s);
}

/* Micro-Timeout as go-micro sends it: bare nanoseconds or a Go duration.
 * Only decimal numbers: strtod's "nan" (cast to an integer: undefined,
 * found by fuzz_rpc_http), "inf", hex and signs are refused. */
static void call_timeouts_parse_as_go_durations(void **state)
{
    (void)state;
    int64_t ms = -1;
    assert_int_equal(sli_svc_parse_timeout("5000000000", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(sli_svc_parse_timeout("1m30s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(sli_svc_parse_timeout("1.5s", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(sli_svc_parse_timeout(".5ms250us", &ms), 0);
    assert_int_equal(ms, 0);
    static const char *const bad[] = {"5555snans", "nans",  "infs",      "1e400s", "-1s",
                                      "+1s",       "0x10s", "1..5s",     "10x",    "s",
                                      "",          "1s ",   "300000000h"};
    assert_int_equal(sli_svc_parse_timeout("1", &ms), 0); /* bare: nanoseconds */
    assert_int_equal(ms, 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (sli_svc_parse_timeout(bad[i], &ms) != SL_EINVAL)
            fail_msg("accepted Micro-Timeout '%s'", bad[i]);
}

typedef struct slow_call {
    sl_service *s;
    int rc;
} slow_call;

static void *do_slow(void *arg)
{
    slow_call *sc = arg;
    sl_client *c;
    sl_client_opts o;
    sl_client_opts_init(&o);
    o.retries = 0;
    if (sl_client_new(&c, &o) != 0)
        return NULL;
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(sc->s);
    sl_response *r;
    sc->rc = sl_client_call(c, "svc-test", "T.Slow", "{}", 2, &co, &r);
    sl_response_free(r);
    sl_client_free(c);
    return NULL;
}

static void *free_service(void *s)
{
    sl_service_free(s);
    return NULL;
}

static void stop_drains_calls_in_flight(void **state)
{
    (void)state;
    sl_service *s = start_service();
    slow_call sc = {s, -999};
    pthread_t t;
    pthread_create(&t, NULL, do_slow, &sc);
    tl_sleep_ms(200); /* the call is inside the handler */
    char addr[300];
    snprintf(addr, sizeof addr, "%s", sl_service_address(s));
    pthread_t f;
    pthread_create(&f, NULL, free_service, s); /* graceful: waits for the call */
    tl_sleep_ms(100);
    /* while it drains, the service takes no new connection */
    sl_client *c = client();
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = addr;
    co.timeout_ms = 2000;
    sl_response *r = NULL;
    int rc = sl_client_call(c, "svc-test", "T.Echo", "{}", 2, &co, &r);
    sl_response_free(r);
    sl_client_free(c);
    pthread_join(f, NULL);
    pthread_join(t, NULL);
    assert_int_equal(sc.rc, 0);
    assert_int_not_equal(rc, 0);
}

static void streams_end_and_a_leaving_caller_stops_the_handler(void **state)
{
    (void)state;
    atomic_store(&g_closed_seen, 0);
    sl_service *s = start_service();
    sl_client *c = client();
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(s);
    sl_stream *st;
    assert_int_equal(sl_client_stream(c, "svc-test", "T.Endless", "{}", 2, &co, &st), 0);
    for (int i = 0; i < 5; i++) {
        char *m;
        size_t n;
        assert_int_equal(sl_stream_next(st, &m, &n, 5000), 0);
        char want[32];
        snprintf(want, sizeof want, "{\"i\":%d}", i);
        assert_string_equal(m, want);
        free(m);
    }
    sl_stream_close(st);
    int64_t end = tl_now_ms() + 10000;
    while (atomic_load(&g_closed_seen) == 0 && tl_now_ms() < end)
        tl_sleep_ms(20);
    assert_int_equal(atomic_load(&g_closed_seen), 1);
    sl_client_free(c);
    sl_service_free(s);
}

static void bad_options_are_refused(void **state)
{
    (void)state;
    sl_service_opts o;
    sl_service_opts_init(&o);
    sl_service *s;
    assert_int_equal(sl_service_new(&s, &o), SL_EINVAL); /* no name */
    o.name = "bad name";
    assert_int_equal(sl_service_new(&s, &o), SL_EINVAL);
    o.name = "ok";
    o.register_interval_ms = o.register_ttl_ms;
    assert_int_equal(sl_service_new(&s, &o), SL_EINVAL);
    sl_service_opts_init(&o);
    o.name = "ok";
    o.address = "127.0.0.1:notaport";
    o.registry = "none";
    assert_int_equal(sl_service_new(&s, &o), 0);
    assert_int_equal(sl_service_start(s), SL_EINVAL);
    sl_service_free(s);
    sl_client_opts co;
    sl_client_opts_init(&co);
    co.timeout_ms = 0;
    sl_client *c;
    assert_int_equal(sl_client_new(&c, &co), SL_EINVAL);
}

static void registry_down_at_start_the_service_serves_and_says_so(void **state)
{
    (void)state;
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "lonely";
    o.address = "127.0.0.1:0";
    o.registry = "sqlite:///nonexistent-dir-for-tests/registry.db";
    sl_service *s;
    assert_int_equal(sl_service_new(&s, &o), 0);
    assert_int_equal(sl_service_handle(s, "T.Echo", echo, NULL), 0);
    assert_int_equal(sl_service_start(s), 0);
    sl_client *c = client();
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(s);
    sl_response *r;
    assert_int_equal(sl_client_call(c, "lonely", "T.Echo", "{}", 2, &co, &r), 0);
    sl_response_free(r);
    /* discovery through that registry fails clearly */
    assert_int_equal(sl_client_call(c, "lonely", "T.Echo", "{}", 2, NULL, &r), SL_EIO);
    sl_client_free(c);
    sl_service_free(s);
}

static int wrap_count(sl_client_req *r, void *user)
{
    atomic_fetch_add((atomic_int *)user, 1);
    int rc = sl_client_req_next(r);
    const sl_response *resp = sl_client_req_response(r);
    if (rc == 0 && (!resp || sl_response_status(resp) != 200))
        return SL_EPROTO;
    return rc;
}

static void client_wrappers_carry_a_trace_id_both_ways(void **state)
{
    (void)state;
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "traced";
    o.address = "127.0.0.1:0";
    o.registry = "none";
    sl_service *s;
    assert_int_equal(sl_service_new(&s, &o), 0);
    assert_int_equal(sl_service_handle(s, "T.Meta", meta, NULL), 0);
    assert_int_equal(sl_service_handle(s, "T.Trace", trace_of, NULL), 0);
    assert_int_equal(sl_service_wrap(s, sl_wrap_trace, NULL), 0);
    assert_int_equal(sl_service_start(s), 0);
    sl_client *c = client();
    atomic_int count = 0;
    assert_int_equal(sl_client_wrap(c, wrap_count, &count), 0);
    assert_int_equal(sl_client_wrap(c, sl_client_wrap_trace, NULL), 0);
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.address = sl_service_address(s);
    sl_response *r;
    assert_int_equal(sl_client_call(c, "traced", "T.Meta", "{}", 2, &co, &r), 0);
    const char *id = sl_response_meta(r, "Micro-Trace-Id");
    assert_non_null(id);
    assert_int_equal(strlen(id), 36);
    sl_response_free(r);
    /* a caller's own trace id is kept end to end */
    sl_reg_meta m = {"Micro-Trace-Id", "trace-42"};
    co.metadata = &m;
    co.n_metadata = 1;
    assert_int_equal(sl_client_call(c, "traced", "T.Meta", "{}", 2, &co, &r), 0);
    assert_string_equal(sl_response_meta(r, "Micro-Trace-Id"), "trace-42");
    sl_response_free(r);
    /* one over 128 bytes is replaced by a new one, the same for the handler and the caller */
    char longid[201];
    memset(longid, 'x', 200);
    longid[200] = 0;
    m.value = longid;
    assert_int_equal(sl_client_call(c, "traced", "T.Trace", "{}", 2, &co, &r), 0);
    id = sl_response_meta(r, "Micro-Trace-Id");
    assert_non_null(id);
    assert_int_equal(strlen(id), 36);
    json_t *j = json_loads(sl_response_body(r, NULL), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "trace")), id);
    json_decref(j);
    sl_response_free(r);
    assert_int_equal(atomic_load(&count), 3);
    assert_int_equal(sl_client_wrap(c, wrap_count, &count), SL_ESTATE); /* after the first call */
    sl_client_free(c);
    sl_service_free(s);
}

static void metrics_hold_long_service_and_endpoint_names(void **state)
{
    (void)state;
    char name[201], ep[201];
    memset(name, 'n', 200);
    name[200] = 0;
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = name; /* the longest names allowed */
    o.registry = "none";
    sl_service *s;
    assert_int_equal(sl_service_new(&s, &o), 0);
    memset(ep, 'e', 200);
    ep[100] = '.';
    ep[200] = 0;
    for (char k = 'a'; k <= 'j'; k++) {
        ep[0] = k;
        assert_int_equal(sl_service_handle(s, ep, echo, NULL), 0);
    }
    size_t len;
    char *text = sli_svc_metrics_text(s, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    char want[600];
    snprintf(want, sizeof want,
             "sluice_service_latency_seconds_count{service=\"%s\",endpoint=\"%s\"} 0\n", name, ep);
    assert_non_null(strstr(text, want)); /* the last endpoint's last line */
    free(text);
    sl_service_free(s);
}

typedef struct got {
    atomic_int n;
    char first[64];
} got;

static int on_event(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx, (void)out;
    got *g = user;
    size_t len;
    const char *p = sl_msg_payload(in, &len);
    if (atomic_fetch_add(&g->n, 1) == 0)
        snprintf(g->first, sizeof g->first, "%.*s", (int)len, p);
    return 0;
}

static void a_service_subscribes_and_publishes_through_a_backend(void **state)
{
    (void)state;
    const char *url = "mem://svc-pubsub?persistent=true";
    got g = {0};
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "events";
    o.address = "127.0.0.1:0";
    o.registry = "none";
    sl_service *s;
    assert_int_equal(sl_service_new(&s, &o), 0);
    assert_null(sl_service_router(s));
    assert_int_equal(sl_service_subscribe(s, url, "user.created", NULL, on_event, &g), 0);
    assert_non_null(sl_service_router(s));
    assert_int_equal(sl_service_subscribe(s, "nope://x", "t", NULL, on_event, &g), SL_ENOTSUP);
    assert_int_equal(sl_service_start(s), 0);
    assert_int_equal(sl_service_subscribe(s, url, "late", NULL, on_event, &g), SL_ESTATE);
    for (int i = 0; i < 10; i++) {
        sl_msg *m;
        char p[16];
        snprintf(p, sizeof p, "user-%d", i);
        assert_int_equal(sl_msg_new(&m, p, strlen(p)), 0);
        assert_int_equal(sl_service_publish(s, url, "user.created", m), 0);
        sl_msg_unref(m);
    }
    int64_t end = tl_now_ms() + 10000;
    while (atomic_load(&g.n) < 10 && tl_now_ms() < end)
        tl_sleep_ms(10);
    assert_int_equal(atomic_load(&g.n), 10);
    assert_string_equal(g.first, "user-0");
    sl_service_free(s);
}

/* A gRPC-only service found through a registry: sl_client_call speaks gRPC
 * to it (metadata both ways, errors as the HTTP client reports them, the
 * deadline), and calls go on when one of two nodes stops. */
static sl_service *start_grpc(const char *reg)
{
    sl_service_opts o;
    sl_service_opts_init(&o);
    o.name = "svc-grpc";
    o.grpc_address = "127.0.0.1:0";
    o.grpc_only = true;
    o.registry = reg;
    o.max_body = 1000;
    sl_service *s;
    assert_int_equal(sl_service_new(&s, &o), 0);
    assert_int_equal(sl_service_handle(s, "T.Echo", echo, NULL), 0);
    assert_int_equal(sl_service_handle(s, "T.Fail", fails, NULL), 0);
    assert_int_equal(sl_service_handle(s, "T.Meta", meta, NULL), 0);
    assert_int_equal(sl_service_handle(s, "T.Slow", slow, NULL), 0);
    assert_int_equal(sl_service_start(s), 0);
    assert_null(sl_service_address(s)); /* no HTTP listener */
    assert_non_null(sl_service_grpc_address(s));
    return s;
}

static void grpc_services_are_found_and_called(void **state)
{
    (void)state;
    char dir[] = "/tmp/sl-test-grpc-XXXXXX", reg[128];
    assert_non_null(mkdtemp(dir));
    snprintf(reg, sizeof reg, "sqlite://%s/registry.db", dir);
    sl_service *a = start_grpc(reg), *b = start_grpc(reg);
    sl_registry *r;
    assert_int_equal(sl_registry_open(&r, reg), 0);
    sl_reg_service *found = NULL;
    size_t n = 0;
    for (int i = 0; i < 200; i++) { /* registration runs in the background */
        if (sl_registry_lookup(r, "svc-grpc", &found, &n) == 0 && n == 1 && found[0].n_nodes == 2)
            break;
        sl_reg_services_free(found, n); /* one node so far: free what the lookup gave */
        found = NULL;
        n = 0;
        tl_sleep_ms(20);
    }
    assert_int_equal(n, 1);
    assert_int_equal(found[0].n_nodes, 2);
    const sl_reg_node *nd = &found[0].nodes[0];
    bool grpc = false;
    for (size_t k = 0; k < nd->n_metadata; k++)
        grpc |= !strcmp(nd->metadata[k].key, "transport") && !strcmp(nd->metadata[k].value, "grpc");
    assert_true(grpc);
    sl_reg_services_free(found, n);
    sl_registry_close(r);

    sl_client_opts o;
    sl_client_opts_init(&o);
    o.registry = reg;
    o.retries = 2;
    sl_client *c;
    assert_int_equal(sl_client_new(&c, &o), 0);
    sl_call_opts co;
    sl_call_opts_init(&co);
    co.timeout_ms = 4000;
    sl_reg_meta m = {"X-User", "carol"};
    co.metadata = &m;
    co.n_metadata = 1;
    sl_response *resp;
    int crc = sl_client_call(c, "svc-grpc", "T.Meta", "{}", 2, &co, &resp);
    if (crc)
        fprintf(stderr, "call: %s\n", sl_errmsg());
    assert_int_equal(crc, 0);
    json_t *j = json_loads(sl_response_body(resp, NULL), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "user")), "carol");
    json_int_t left = json_integer_value(json_object_get(j, "left"));
    /* gRPC's grpc-timeout header carries 1-10 s in units of 10 ms, rounded
     * up, from a clock it caches per call batch: the handler saw 4008 ms of
     * a 4000 ms call now and then; 20 ms over is rounding, more is not */
    assert_in_range(left, 1, 4020);
    json_decref(j);
    assert_int_equal(sl_response_status(resp), 200);
    sl_response_free(resp);
    /* a handler's error: the same code and go-micro error body as over HTTP */
    assert_int_equal(sl_client_call(c, "svc-grpc", "T.Fail", "{}", 2, &co, &resp), SL_EDENIED);
    assert_non_null(resp);
    assert_int_equal(sl_response_status(resp), 403);
    j = json_loads(sl_response_body(resp, NULL), 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 403);
    json_decref(j);
    sl_response_free(resp);
    assert_int_equal(sl_client_call(c, "svc-grpc", "T.Nope", "{}", 2, &co, &resp), SL_ENOENT);
    sl_response_free(resp);
    /* the caller's timeout reaches the server as the gRPC deadline */
    co.timeout_ms = 200; /* the handler sleeps 600 ms: only the deadline makes this time out */
    assert_int_equal(sl_client_call(c, "svc-grpc", "T.Slow", "{}", 2, &co, &resp), SL_ETIMEDOUT);
    sl_response_free(resp);
    co.timeout_ms = 4000;
    /* one node stops: every call still succeeds (the client skips the dead node, or
     * its cache already dropped it) */
    sl_service_free(a);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sl_client_call(c, "svc-grpc", "T.Echo", "{\"i\":1}", 7, &co, &resp), 0);
        size_t len;
        const char *body = sl_response_body(resp, &len);
        assert_int_equal(len, 7);
        assert_memory_equal(body, "{\"i\":1}", 7);
        sl_response_free(resp);
    }
    sl_client_free(c);
    sl_service_free(b);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calls_answer_errors_and_wrappers_run_in_order),
        cmocka_unit_test(metadata_and_deadline_reach_the_handler),
        cmocka_unit_test(call_timeouts_parse_as_go_durations),
        cmocka_unit_test(stop_drains_calls_in_flight),
        cmocka_unit_test(streams_end_and_a_leaving_caller_stops_the_handler),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(registry_down_at_start_the_service_serves_and_says_so),
        cmocka_unit_test(client_wrappers_carry_a_trace_id_both_ways),
        cmocka_unit_test(metrics_hold_long_service_and_endpoint_names),
        cmocka_unit_test(a_service_subscribes_and_publishes_through_a_backend),
        cmocka_unit_test(grpc_services_are_found_and_called),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
