/*
 * test_router_live.c - changing a running router: handlers added while it
 * runs (from several threads at once, with their own and the router's
 * middlewares), one handler stopped while the others go on (its unacked
 * and cut-off messages go back to its group for the next handler of that
 * name), and the JSON event helper (sluice/json_event.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "sluice/json_event.h"
#include "testlib.h"

#define NADD 4

typedef struct live {
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_router *r;
    pthread_t t;
    atomic_int calls[NADD + 2];
    atomic_int router_mw, handler_mw;
} live;

static live L;

static void *run(void *r)
{
    sl_router_run(r);
    return NULL;
}

static int count_router_mw(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                           sl_msg_list *out)
{
    (void)st;
    atomic_fetch_add(&L.router_mw, 1);
    return sl_mw_next(next, ctx, in, out);
}

static int count_handler_mw(void *st, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                            sl_msg_list *out)
{
    (void)st;
    atomic_fetch_add(&L.handler_mw, 1);
    return sl_mw_next(next, ctx, in, out);
}

static int counting(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)in;
    (void)out;
    atomic_fetch_add(&L.calls[(intptr_t)user], 1);
    return 0;
}

/* Blocks until its context is cancelled (or 10 s): a call to cut off. */
static int stuck(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)in;
    (void)out;
    atomic_fetch_add(&L.calls[(intptr_t)user], 1);
    return sl_ctx_wait(ctx, 10000) ? sl_ctx_err(ctx) : 0;
}

static void live_open(const char *url)
{
    memset(&L, 0, sizeof L);
    assert_int_equal(sl_publisher_open(&L.pub, url), 0);
    assert_int_equal(sl_subscriber_open(&L.sub, url), 0);
    assert_int_equal(sl_router_new(&L.r, NULL), 0);
    sl_middleware mw = {.name = "count", .call = count_router_mw};
    assert_int_equal(sl_router_add_middleware(L.r, mw), 0);
}

static void live_start(void)
{
    assert_int_equal(pthread_create(&L.t, NULL, run, L.r), 0);
    assert_int_equal(sl_router_running(L.r, 10000), 0);
}

static void live_close(void)
{
    assert_int_equal(sl_router_close(L.r, 5000, NULL), 0);
    pthread_join(L.t, NULL);
    sl_router_free(L.r);
    sl_subscriber_close(L.sub);
    sl_publisher_close(L.pub);
}

static void add(const char *name, const char *topic, sl_handler_fn fn, intptr_t slot,
                sl_handler **out)
{
    sl_handler_opts o;
    sl_handler_opts_init(&o);
    o.name = name;
    o.sub = L.sub;
    o.topic = topic;
    o.subscribe.group = "g";
    o.fn = fn;
    o.user = (void *)slot;
    o.nack_delay_ms = 0;
    sl_middleware mw = {.name = "hcount", .call = count_handler_mw};
    o.mws = &mw;
    o.nmws = 1;
    TL_CHECK_INT(sl_router_add_handler(L.r, &o, out), 0);
}

static void publish(const char *topic, int n)
{
    for (int i = 0; i < n; i++) {
        sl_msg *m;
        TL_CHECK_INT(sl_msg_new(&m, "x", 1), 0);
        TL_CHECK_INT(sl_publish(L.pub, topic, &m, 1), 0);
        sl_msg_unref(m);
    }
}

static int wait_calls(int slot, int want)
{
    for (int64_t end = tl_now_ms() + 10000;
         atomic_load(&L.calls[slot]) < want && tl_now_ms() < end;)
        tl_sleep_ms(5);
    return atomic_load(&L.calls[slot]);
}

static void *adder(void *arg)
{
    intptr_t i = *(intptr_t *)arg;
    char name[16], topic[16];
    snprintf(name, sizeof name, "late%d", (int)i);
    snprintf(topic, sizeof topic, "late-t%d", (int)i);
    add(name, topic, counting, i, NULL);
    publish(topic, 20);
    return NULL;
}

static void handlers_join_a_running_router(void **state)
{
    (void)state;
    live_open("mem://live1?persistent=true");
    add("first", "first-t", counting, NADD, NULL);
    live_start();
    intptr_t args[NADD];
    for (int i = 0; i < NADD; i++)
        args[i] = i;
    publish("first-t", 10); /* traffic while handlers are added */
    tl_run_threads(NADD, adder, args, sizeof args[0]);
    tl_assert_threads_ok();
    for (int i = 0; i < NADD; i++)
        assert_int_equal(wait_calls(i, 20), 20);
    assert_int_equal(wait_calls(NADD, 10), 10);
    assert_non_null(sl_router_handler(L.r, "late3"));
    /* every call went through the router's and the handler's middleware */
    assert_int_equal(atomic_load(&L.router_mw), NADD * 20 + 10);
    assert_int_equal(atomic_load(&L.handler_mw), NADD * 20 + 10);
    /* a bad late handler is refused and leaves nothing behind */
    sl_handler_opts o;
    sl_handler_opts_init(&o);
    o.name = "late0";
    o.sub = L.sub;
    o.topic = "x";
    o.fn = counting;
    assert_int_equal(sl_router_add_handler(L.r, &o, NULL), SL_EINVAL); /* name taken */
    live_close();
}

static void one_handler_stops_while_the_others_go_on(void **state)
{
    (void)state;
    live_open("mem://live2?persistent=true");
    sl_handler *a, *b;
    add("a", "a-t", counting, 0, &a);
    add("b", "b-t", counting, 1, &b);
    live_start();
    publish("a-t", 5);
    assert_int_equal(wait_calls(0, 5), 5);
    unsigned cut = 99;
    assert_int_equal(sl_handler_stop(a, 5000, &cut), 0);
    assert_int_equal(cut, 0);
    assert_true(sl_handler_stopped(a));
    assert_false(sl_handler_stopped(b));
    assert_null(sl_router_handler(L.r, "a"));
    assert_int_equal(sl_handler_stop(a, 0, NULL), 0); /* again: nothing to do */
    publish("a-t", 7);
    publish("b-t", 9);
    assert_int_equal(wait_calls(1, 9), 9); /* b goes on */
    tl_sleep_ms(150);
    assert_int_equal(atomic_load(&L.calls[0]), 5); /* a took nothing more */
    /* a new "a" in the same group gets what the stopped one left */
    sl_handler *a2;
    add("a", "a-t", stuck, 2, &a2);
    tl_assert_threads_ok();
    assert_int_equal(wait_calls(2, 1), 1);
    /* stuck in a call: the stop cuts it off by its context after 50 ms */
    assert_int_equal(sl_handler_stop(a2, 50, &cut), SL_ETIMEDOUT);
    assert_int_equal(cut, 1);
    /* the cut-off message and the six never taken come back to the next "a" */
    add("a", "a-t", counting, 3, NULL);
    tl_assert_threads_ok();
    assert_int_equal(wait_calls(3, 7), 7);
    tl_sleep_ms(100);
    assert_int_equal(atomic_load(&L.calls[3]), 7);
    live_close();
    /* a stopped handler of a closed router: SL_ESTATE is not returned for
     * handlers already stopped, and a never-run router refuses stops */
    live_open("mem://live3");
    sl_handler *c;
    add("c", "c-t", counting, 0, &c);
    tl_assert_threads_ok();
    assert_int_equal(sl_handler_stop(c, 0, NULL), SL_ESTATE);
    assert_int_equal(sl_handler_stop(NULL, 0, NULL), SL_EINVAL);
    sl_router_free(L.r);
    sl_subscriber_close(L.sub);
    sl_publisher_close(L.pub);
}

/* ---- JSON events ---- */

typedef struct booking {
    const char *room;
    int nights;
} booking;

static int booking_json(const void *v, json_t **out)
{
    const booking *b = v;
    if (b->nights <= 0)
        return SL_EINVAL;
    *out = json_pack("{s:s, s:i}", "room", b->room, "nights", b->nights);
    return *out ? 0 : SL_ENOMEM;
}

static void json_events_round_trip_and_refuse_bad_input(void **state)
{
    (void)state;
    booking bk = {"101", 3};
    sl_msg *m;
    assert_int_equal(sl_json_event_from(&m, "RoomBooked", &bk, booking_json), 0);
    assert_string_equal(sl_msg_meta_get(m, "name"), "RoomBooked");
    assert_string_equal(sl_msg_meta_get(m, "content_type"), "application/json");
    size_t len;
    const char *p = sl_msg_payload(m, &len);
    assert_int_equal(len, strlen("{\"room\":\"101\",\"nights\":3}"));
    assert_memory_equal(p, "{\"room\":\"101\",\"nights\":3}", len);
    const char *type;
    json_t *v;
    assert_int_equal(sl_json_event_parse(m, &type, &v), 0);
    assert_string_equal(type, "RoomBooked");
    assert_int_equal(json_integer_value(json_object_get(v, "nights")), 3);
    json_decref(v);
    sl_msg_unref(m);

    bk.nights = 0;
    assert_int_equal(sl_json_event_from(&m, "RoomBooked", &bk, booking_json), SL_EINVAL);
    bk.nights = 1;
    assert_int_equal(sl_json_event_from(&m, "Room Booked", &bk, booking_json), SL_EINVAL);
    assert_int_equal(sl_json_event_from(&m, "", &bk, booking_json), SL_EINVAL);
    assert_int_equal(sl_json_event_from(&m, "X", &bk, NULL), SL_EINVAL);
    assert_int_equal(sl_json_event_new(&m, "X", NULL), SL_EINVAL);
    json_t *arr = json_array();
    assert_int_equal(sl_json_event_new(&m, "List", arr), 0); /* any JSON value */
    json_decref(arr);
    assert_int_equal(sl_json_event_parse(m, &type, &v), 0);
    assert_true(json_is_array(v));
    json_decref(v);
    sl_msg_unref(m);

    assert_int_equal(sl_msg_new(&m, "{not json", 9), 0);
    assert_int_equal(sl_json_event_parse(m, &type, &v), SL_EPROTO); /* no type */
    assert_int_equal(sl_msg_meta_set(m, "name", "Bad"), 0);
    assert_int_equal(sl_json_event_parse(m, &type, &v), SL_EPROTO); /* not JSON */
    assert_int_equal(sl_json_event_parse(NULL, &type, &v), SL_EINVAL);
    sl_msg_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handlers_join_a_running_router),
        cmocka_unit_test(one_handler_stops_while_the_others_go_on),
        cmocka_unit_test(json_events_round_trip_and_refuse_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
