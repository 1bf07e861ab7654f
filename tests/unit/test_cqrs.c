/*
 * test_cqrs.c - command/event buses and processors on mem://: routing by
 * type name, one handler per command, every event handler gets every event
 * (groups compete), bad input parked by the poison middleware without
 * stopping good messages, commands that wait for their handler, topic
 * functions, metadata carried from cause to effect, and a handler's panic
 * (caught by a recoverer) freeing the value it was given.
 */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "sluice/cqrs.h"
#include "testlib.h"

typedef struct env {
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_router *r;
    pthread_t t;
    sl_marshaler m;
} env;

static void *run(void *r)
{
    sl_router_run(r);
    return NULL;
}

static void env_open(env *e, const char *url)
{
    memset(e, 0, sizeof *e);
    assert_int_equal(sl_publisher_open(&e->pub, url), 0);
    assert_int_equal(sl_subscriber_open(&e->sub, url), 0);
    assert_int_equal(sl_router_new(&e->r, NULL), 0);
    sl_marshaler_json(&e->m);
}

static void env_start(env *e)
{
    pthread_create(&e->t, NULL, run, e->r);
    assert_int_equal(sl_router_running(e->r, 10000), 0);
}

static void env_close(env *e)
{
    sl_router_close(e->r, 5000, NULL);
    pthread_join(e->t, NULL);
    sl_router_free(e->r);
    sl_subscriber_close(e->sub);
    sl_publisher_close(e->pub);
}

static int wait_for(atomic_int *n, int want)
{
    int64_t end = tl_now_ms() + 10000;
    while (atomic_load(n) < want && tl_now_ms() < end)
        tl_sleep_ms(5);
    tl_sleep_ms(100); /* and nothing more arrives */
    return atomic_load(n);
}

typedef struct counter {
    atomic_int n;
    atomic_int sum;
    char trace[64];
} counter;

static int count_cmd(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx;
    counter *c = user;
    const char *t = sl_msg_meta_get(msg, "trace");
    if (t)
        snprintf(c->trace, sizeof c->trace, "%s", t);
    atomic_fetch_add(&c->sum, (int)json_integer_value(json_object_get(value, "v")));
    atomic_fetch_add(&c->n, 1);
    return 0;
}

static void commands_reach_their_one_handler_and_events_every_handler(void **state)
{
    (void)state;
    env e;
    env_open(&e, "mem://cqrs-a?persistent=true");
    sl_command_bus *cb;
    sl_event_bus *eb;
    assert_int_equal(sl_command_bus_new(&cb, e.pub, &e.m, NULL), 0);
    assert_int_equal(sl_event_bus_new(&eb, e.pub, &e.m, NULL), 0);
    sl_command_processor *cp;
    sl_event_processor *ep;
    assert_int_equal(sl_command_processor_new(&cp, e.r, e.sub, &e.m, NULL), 0);
    assert_int_equal(sl_event_processor_new(&ep, e.r, e.sub, &e.m, NULL), 0);
    counter a = {0}, b = {0}, h1 = {0}, h2 = {0}, g1 = {0}, g2 = {0};
    assert_int_equal(sl_command_processor_add(cp, "Add", count_cmd, &a), 0);
    assert_int_equal(sl_command_processor_add(cp, "Add", count_cmd, &b), SL_EEXIST);
    assert_int_equal(sl_command_processor_add(cp, "bad name", count_cmd, &b), SL_EINVAL);
    assert_int_equal(sl_event_processor_add(ep, "h1", "Added", count_cmd, &h1, NULL), 0);
    assert_int_equal(sl_event_processor_add(ep, "h2", "Added", count_cmd, &h2, NULL), 0);
    assert_int_equal(sl_event_processor_add(ep, "g1", "Added", count_cmd, &g1, "shared"), 0);
    assert_int_equal(sl_event_processor_add(ep, "g2", "Added", count_cmd, &g2, "shared"), 0);
    env_start(&e);
    sl_msg *cause;
    assert_int_equal(sl_msg_new(&cause, "", 0), 0);
    assert_int_equal(sl_msg_meta_set(cause, "trace", "t-1"), 0);
    for (int i = 1; i <= 20; i++) {
        json_t *v = json_pack("{s:i}", "v", i);
        assert_int_equal(sl_command_send_from(cb, cause, "Add", v), 0);
        assert_int_equal(sl_event_publish(eb, "Added", v), 0);
        json_decref(v);
    }
    sl_msg_unref(cause);
    assert_int_equal(wait_for(&a.n, 20), 20);
    assert_int_equal(atomic_load(&a.sum), 210);
    assert_string_equal(a.trace, "t-1"); /* metadata from cause to effect */
    assert_int_equal(wait_for(&h1.n, 20), 20);
    assert_int_equal(wait_for(&h2.n, 20), 20);
    /* g1 and g2 compete in one group: together they see each event once */
    wait_for(&g1.n, 1);
    assert_int_equal(atomic_load(&g1.n) + atomic_load(&g2.n), 20);
    assert_int_equal(atomic_load(&g1.sum) + atomic_load(&g2.sum), 210);
    json_t *empty = json_object();
    assert_int_equal(sl_command_send(cb, "has space", empty), SL_EINVAL);
    json_decref(empty);
    env_close(&e);
    sl_command_processor_free(cp);
    sl_event_processor_free(ep);
    sl_command_bus_free(cb);
    sl_event_bus_free(eb);
}

static void bad_messages_are_poisoned_and_good_ones_flow(void **state)
{
    (void)state;
    env e;
    env_open(&e, "mem://cqrs-b?persistent=true");
    sl_poison_opts po = {.pub = e.pub, .topic = "poison"};
    sl_middleware mw;
    assert_int_equal(sl_mw_poison(&mw, &po), 0);
    assert_int_equal(sl_router_add_middleware(e.r, mw), 0);
    sl_command_processor *cp;
    assert_int_equal(sl_command_processor_new(&cp, e.r, e.sub, &e.m, NULL), 0);
    counter a = {0};
    assert_int_equal(sl_command_processor_add(cp, "Add", count_cmd, &a), 0);
    sl_subscription *ps;
    sl_subscribe_opts so;
    sl_subscribe_opts_init(&so);
    assert_int_equal(sl_subscribe(e.sub, "poison", &so, &ps), 0);
    env_start(&e);
    /* wrong type name on the command's topic; payload that is not JSON */
    sl_msg *m1, *m2, *m3;
    assert_int_equal(sl_msg_new(&m1, "{\"v\":1}", 7), 0);
    assert_int_equal(sl_msg_meta_set(m1, SL_CQRS_META_NAME, "Other"), 0);
    assert_int_equal(sl_msg_new(&m2, "{not json", 9), 0);
    assert_int_equal(sl_msg_meta_set(m2, SL_CQRS_META_NAME, "Add"), 0);
    assert_int_equal(sl_msg_new(&m3, "{\"v\":5}", 7), 0);
    assert_int_equal(sl_msg_meta_set(m3, SL_CQRS_META_NAME, "Add"), 0);
    sl_msg *all[] = {m1, m2, m3};
    assert_int_equal(sl_publish(e.pub, "commands.Add", all, 3), 0);
    assert_int_equal(wait_for(&a.n, 1), 1);
    assert_int_equal(atomic_load(&a.sum), 5);
    for (int i = 0; i < 2; i++) {
        sl_msg *got;
        assert_int_equal(sl_next(ps, &got, 10000), 0);
        const char *uuid = sl_msg_uuid(got);
        assert_true(strcmp(uuid, sl_msg_uuid(m1)) == 0 || strcmp(uuid, sl_msg_uuid(m2)) == 0);
        assert_non_null(sl_msg_meta_get(got, SL_POISON_REASON_KEY));
        sl_msg_ack(got);
        sl_msg_unref(got);
    }
    sl_msg_unref(m1);
    sl_msg_unref(m2);
    sl_msg_unref(m3);
    env_close(&e);
    sl_command_processor_free(cp);
}

static int my_topic(const char *name, char *buf, size_t cap, void *ctx)
{
    snprintf(buf, cap, "%s/%s", (const char *)ctx, name);
    return 0;
}

static int one_topic(const char *name, char *buf, size_t cap, void *ctx)
{
    (void)name;
    snprintf(buf, cap, "%s", (const char *)ctx);
    return 0;
}

/* Every event type on one topic (a topic function giving "all-events"):
 * each handler, in its own group, handles its type once and leaves the
 * others alone (it failed them: redelivered for ever, or poisoned). Two
 * command types on one topic share the processor's group: refused. */
static void event_types_may_share_a_topic_and_command_types_may_not(void **state)
{
    (void)state;
    env e;
    env_open(&e, "mem://cqrs-d?persistent=true");
    sl_poison_opts po = {.pub = e.pub, .topic = "poison"};
    sl_middleware mw;
    assert_int_equal(sl_mw_poison(&mw, &po), 0);
    assert_int_equal(sl_router_add_middleware(e.r, mw), 0);
    sl_cqrs_opts o;
    sl_cqrs_opts_init(&o);
    o.topic = one_topic;
    o.topic_ctx = "all-events";
    sl_event_bus *eb;
    sl_event_processor *ep;
    sl_command_processor *cp;
    assert_int_equal(sl_event_bus_new(&eb, e.pub, &e.m, &o), 0);
    assert_int_equal(sl_event_processor_new(&ep, e.r, e.sub, &e.m, &o), 0);
    sl_cqrs_opts oc = o;
    oc.topic_ctx = "all-commands";
    assert_int_equal(sl_command_processor_new(&cp, e.r, e.sub, &e.m, &oc), 0);
    counter a = {0}, b = {0};
    assert_int_equal(sl_event_processor_add(ep, "on-a", "A", count_cmd, &a, NULL), 0);
    assert_int_equal(sl_event_processor_add(ep, "on-b", "B", count_cmd, &b, NULL), 0);
    /* the same topic and group for two types: they would compete */
    assert_int_equal(sl_event_processor_add(ep, "on-c", "C", count_cmd, &b, "on-a"), SL_EINVAL);
    assert_int_equal(sl_command_processor_add(cp, "Do", count_cmd, &a), 0);
    assert_int_equal(sl_command_processor_add(cp, "Undo", count_cmd, &a), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(), "share topic"));
    sl_subscription *ps;
    assert_int_equal(sl_subscribe(e.sub, "poison", NULL, &ps), 0);
    env_start(&e);
    json_t *v = json_pack("{s:i}", "v", 3);
    assert_int_equal(sl_event_publish(eb, "A", v), 0);
    assert_int_equal(sl_event_publish(eb, "B", v), 0);
    json_decref(v);
    assert_int_equal(wait_for(&a.n, 1), 1);
    assert_int_equal(wait_for(&b.n, 1), 1);
    sl_msg *none = NULL;
    assert_int_equal(sl_next(ps, &none, 300), SL_ETIMEDOUT); /* nothing poisoned */
    env_close(&e);
    sl_command_processor_free(cp);
    sl_event_processor_free(ep);
    sl_event_bus_free(eb);
}

static void a_command_waits_for_its_handler_on_a_custom_topic(void **state)
{
    (void)state;
    env e;
    env_open(&e, "mem://cqrs-c?persistent=true");
    sl_cqrs_opts o;
    sl_cqrs_opts_init(&o);
    o.topic = my_topic;
    o.topic_ctx = "app";
    sl_command_bus *cb;
    assert_int_equal(sl_command_bus_new(&cb, e.pub, &e.m, &o), 0);
    json_t *v = json_pack("{s:i}", "v", 7);
    assert_int_equal(sl_command_send(cb, "Late", v), 0); /* no handler yet: it waits */
    json_decref(v);
    sl_command_processor *cp;
    assert_int_equal(sl_command_processor_new(&cp, e.r, e.sub, &e.m, &o), 0);
    counter a = {0};
    assert_int_equal(sl_command_processor_add(cp, "Late", count_cmd, &a), 0);
    env_start(&e);
    assert_int_equal(wait_for(&a.n, 1), 1);
    assert_int_equal(atomic_load(&a.sum), 7);
    env_close(&e);
    sl_command_processor_free(cp);
    sl_command_bus_free(cb);
}

/* A JSON marshaler that counts the values it decodes and frees. */
static atomic_int decoded, freed;
static sl_marshaler json_m;

static int counting_unmarshal(void *ctx, const sl_msg *m, void **value)
{
    int rc = json_m.unmarshal(ctx, m, value);
    if (rc == 0)
        atomic_fetch_add(&decoded, 1);
    return rc;
}

static void counting_free(void *ctx, void *value)
{
    atomic_fetch_add(&freed, 1);
    json_m.free_value(ctx, value);
}

static int panic_once(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    counter *c = user;
    if (atomic_fetch_add(&c->n, 1) == 0)
        sl_handler_panic("first delivery of %s", sl_msg_uuid(msg));
    return count_cmd(ctx, msg, value, &((counter *)user)[1]);
}

static void a_handler_panic_frees_the_decoded_value(void **state)
{
    (void)state;
    env e;
    env_open(&e, "mem://cqrs-panic?persistent=true");
    sl_marshaler_json(&json_m);
    e.m.unmarshal = counting_unmarshal;
    e.m.free_value = counting_free;
    sl_middleware mw;
    assert_int_equal(sl_mw_recoverer(&mw, false), 0);
    assert_int_equal(sl_router_add_middleware(e.r, mw), 0);
    sl_command_bus *cb;
    assert_int_equal(sl_command_bus_new(&cb, e.pub, &e.m, NULL), 0);
    sl_command_processor *cp;
    assert_int_equal(sl_command_processor_new(&cp, e.r, e.sub, &e.m, NULL), 0);
    counter c[2] = {0}; /* c[0]: calls, c[1]: the ones that returned */
    assert_int_equal(sl_command_processor_add(cp, "Boom", panic_once, c), 0);
    env_start(&e);
    json_t *v = json_pack("{s:i}", "v", 3);
    assert_int_equal(sl_command_send(cb, "Boom", v), 0);
    json_decref(v);
    assert_int_equal(wait_for(&c[1].n, 1), 1); /* the panic nacked it; the redelivery ran */
    assert_int_equal(atomic_load(&c[0].n), 2);
    assert_int_equal(atomic_load(&c[1].sum), 3);
    assert_int_equal(atomic_load(&decoded), 2);
    assert_int_equal(atomic_load(&freed), 2); /* the panicking call's value too */
    env_close(&e);
    sl_command_processor_free(cp);
    sl_command_bus_free(cb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commands_reach_their_one_handler_and_events_every_handler),
        cmocka_unit_test(bad_messages_are_poisoned_and_good_ones_flow),
        cmocka_unit_test(a_command_waits_for_its_handler_on_a_custom_topic),
        cmocka_unit_test(event_types_may_share_a_topic_and_command_types_may_not),
        cmocka_unit_test(a_handler_panic_frees_the_decoded_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
