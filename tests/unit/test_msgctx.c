/*
 * test_msgctx.c - message context: the correlation id, trace id and
 * deadline of a message travel to the messages its handler publishes
 * (router outputs and CQRS buses), the handler's context is done at the
 * message's deadline, routing keys (reply_to, requeue counts...) do not
 * travel, and bad deadlines are refused or ignored, never trusted.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "sluice/cqrs.h"
#include "testlib.h"

typedef struct seen {
    atomic_int n;
    char corr[64], trace[64], deadline[32], reply_to[64], custom[32];
    int64_t ctx_deadline; /* sl_ctx_deadline of the handler's context */
    bool done_at_start;
} seen;

static void note(seen *s, sl_ctx *ctx, const sl_msg *m)
{
    const char *v;
#define KEEP(field, key)                                                                           \
    snprintf(s->field, sizeof s->field, "%s", (v = sl_msg_meta_get(m, key)) ? v : "")
    KEEP(corr, SL_META_CORRELATION_ID);
    KEEP(trace, SL_META_TRACE_ID);
    KEEP(deadline, SL_META_DEADLINE);
    KEEP(reply_to, SL_CQRS_META_REPLY_TO);
    KEEP(custom, "tenant");
#undef KEEP
    s->ctx_deadline = sl_ctx_deadline(ctx);
    s->done_at_start = sl_ctx_done(ctx);
    atomic_fetch_add(&s->n, 1);
}

typedef struct chain {
    sl_command_bus *bus;
    seen first, last;
} chain;

/* "in" -> router output to "mid" (a fresh message: the router carries the context) */
static int stage1(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    chain *c = user;
    note(&c->first, ctx, in);
    sl_msg *m;
    if (sl_msg_new(&m, "next", 4) || sl_msg_list_push(out, m))
        return SL_ENOMEM;
    return 0;
}

/* "mid" -> command Ship through the bus, from the cause */
static int stage2(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)out;
    chain *c = user;
    json_t *v = json_pack("{s:i}", "n", 1);
    int rc = sl_command_send_from(c->bus, in, "Ship", v);
    json_decref(v);
    return rc;
}

static int ship(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)value;
    chain *c = user;
    note(&c->last, ctx, msg);
    return 0;
}

static void *run(void *r)
{
    sl_router_run(r);
    return NULL;
}

static void run_chain(chain *c, sl_msg *first, const char *url)
{
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_router *r;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_router_new(&r, NULL), 0);
    sl_marshaler jm;
    sl_marshaler_json(&jm);
    assert_int_equal(sl_command_bus_new(&c->bus, pub, &jm, NULL), 0);
    sl_command_processor *cp;
    assert_int_equal(sl_command_processor_new(&cp, r, sub, &jm, NULL), 0);
    assert_int_equal(sl_command_processor_add(cp, "Ship", ship, c), 0);
    sl_handler_opts o;
    sl_handler_opts_init(&o);
    o.name = "stage1";
    o.sub = sub;
    o.topic = "in";
    o.pub = pub;
    o.pub_topic = "mid";
    o.fn = stage1;
    o.user = c;
    assert_int_equal(sl_router_add_handler(r, &o, NULL), 0);
    o.name = "stage2";
    o.topic = "mid";
    o.pub = NULL;
    o.fn = stage2;
    assert_int_equal(sl_router_add_handler(r, &o, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run, r), 0);
    assert_int_equal(sl_router_running(r, 10000), 0);
    assert_int_equal(sl_publish(pub, "in", &first, 1), 0);
    for (int64_t end = tl_now_ms() + 10000; atomic_load(&c->last.n) < 1 && tl_now_ms() < end;)
        tl_sleep_ms(5);
    assert_int_equal(sl_router_close(r, 5000, NULL), 0);
    pthread_join(t, NULL);
    sl_router_free(r);
    sl_command_processor_free(cp);
    sl_command_bus_free(c->bus);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
    assert_int_equal(atomic_load(&c->first.n), 1);
    assert_int_equal(atomic_load(&c->last.n), 1);
}

static void context_travels_through_router_outputs_and_buses(void **state)
{
    (void)state;
    chain c;
    memset(&c, 0, sizeof c);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "go", 2), 0);
    assert_int_equal(sl_msg_meta_set(m, SL_META_CORRELATION_ID, "order-42"), 0);
    assert_int_equal(sl_msg_meta_set(m, SL_META_TRACE_ID, "trace-7"), 0);
    assert_int_equal(sl_msg_meta_set(m, SL_CQRS_META_REPLY_TO, "replies.someone"), 0);
    assert_int_equal(sl_msg_set_deadline_in(m, 60000), 0);
    int64_t before = sl_ctx_now_ms();
    run_chain(&c, m, "mem://msgctx1");
    const char *dl = sl_msg_meta_get(m, SL_META_DEADLINE);
    assert_string_equal(c.first.corr, "order-42");
    assert_string_equal(c.last.corr, "order-42");
    assert_string_equal(c.last.trace, "trace-7");
    assert_string_equal(c.last.deadline, dl);
    assert_string_equal(c.last.reply_to, ""); /* a routing key: not carried */
    /* both handlers' contexts end at the message's deadline (monotonic) */
    assert_true(c.first.ctx_deadline > before + 50000 && c.first.ctx_deadline < before + 61000);
    assert_true(c.last.ctx_deadline > before + 50000 && c.last.ctx_deadline < before + 61000);
    assert_false(c.last.done_at_start);
    sl_msg_unref(m);
}

static void a_message_without_context_gets_none_and_a_past_deadline_is_done(void **state)
{
    (void)state;
    chain c;
    memset(&c, 0, sizeof c);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "go", 2), 0);
    run_chain(&c, m, "mem://msgctx2");
    assert_string_equal(c.last.corr, "");
    assert_string_equal(c.last.deadline, "");
    assert_int_equal(c.last.ctx_deadline, -1);
    sl_msg_unref(m);

    memset(&c, 0, sizeof c);
    assert_int_equal(sl_msg_new(&m, "go", 2), 0);
    assert_int_equal(sl_msg_meta_set(m, SL_META_DEADLINE, "1000"), 0); /* 1970 */
    run_chain(&c, m, "mem://msgctx3");
    assert_true(c.first.done_at_start);
    assert_true(c.last.done_at_start);
    sl_msg_unref(m);
}

static void bad_deadlines_are_not_trusted(void **state)
{
    (void)state;
    sl_msg *a, *b;
    assert_int_equal(sl_msg_new(&a, "a", 1), 0);
    assert_int_equal(sl_msg_new(&b, "b", 1), 0);
    int64_t at;
    assert_int_equal(sl_msg_deadline(a, &at), SL_ENOENT);
    assert_int_equal(sl_msg_meta_set(a, SL_META_DEADLINE, "tomorrow"), 0);
    assert_int_equal(sl_msg_deadline(a, &at), SL_EINVAL);
    assert_int_equal(sl_msg_meta_set(a, SL_META_TRACE_ID, "t"), 0);
    assert_int_equal(sl_msg_carry_context(a, b), 0);
    assert_null(sl_msg_meta_get(b, SL_META_DEADLINE));
    assert_string_equal(sl_msg_meta_get(b, SL_META_TRACE_ID), "t");
    assert_int_equal(sl_msg_meta_set(b, SL_META_TRACE_ID, "own"), 0);
    assert_int_equal(sl_msg_carry_context(a, b), 0); /* effects keep their own */
    assert_string_equal(sl_msg_meta_get(b, SL_META_TRACE_ID), "own");
    assert_int_equal(sl_msg_set_deadline_in(b, -1), SL_EINVAL);
    assert_int_equal(sl_msg_carry_context(NULL, b), SL_EINVAL);
    sl_msg_unref(a);
    sl_msg_unref(b);

    /* a handler still runs (without a deadline) for a bad one */
    chain c;
    memset(&c, 0, sizeof c);
    sl_msg *m;
    assert_int_equal(sl_msg_new(&m, "go", 2), 0);
    assert_int_equal(sl_msg_meta_set(m, SL_META_DEADLINE, "-5"), 0);
    run_chain(&c, m, "mem://msgctx4");
    assert_int_equal(c.first.ctx_deadline, -1);
    assert_string_equal(c.last.deadline, "");
    sl_msg_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(context_travels_through_router_outputs_and_buses),
        cmocka_unit_test(a_message_without_context_gets_none_and_a_past_deadline_is_done),
        cmocka_unit_test(bad_deadlines_are_not_trusted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
