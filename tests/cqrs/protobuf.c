/*
 * protobuf.c - the CQRS protobuf marshaler (sluice/cqrs_protobuf.h) on
 * mem://, with messages generated from hotel.proto by protoc-c at build
 * time: a BookRoom command reaches its handler field for field, its
 * RoomBooked event (published from the command) reaches the event handler;
 * a name outside the table, bytes that do not unpack and a value of the
 * wrong type are refused (poisoned, never a crash); bad tables are refused.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "hotel.pb-c.h"
#include "sluice/cqrs_protobuf.h"
#include "testlib.h"

static const sl_protobuf_type hotel[] = {
    {"BookRoom", &hotel__book_room__descriptor},
    {"RoomBooked", &hotel__room_booked__descriptor},
    {NULL, NULL},
};

typedef struct world {
    sl_event_bus *events;
    atomic_int booked, seen;
    atomic_llong total;
    char guest[64], extras[64];
} world;

static int book_room(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx;
    world *w = user;
    const Hotel__BookRoom *cmd = value;
    snprintf(w->guest, sizeof w->guest, "%s", cmd->guest_name);
    if (cmd->n_extras == 2)
        snprintf(w->extras, sizeof w->extras, "%s+%s", cmd->extras[0], cmd->extras[1]);
    Hotel__RoomBooked ev = HOTEL__ROOM_BOOKED__INIT;
    ev.reservation_id = (char *)sl_msg_uuid(msg);
    ev.room_id = cmd->room_id;
    ev.price = cmd->price;
    atomic_fetch_add(&w->booked, 1);
    return sl_event_publish_from(w->events, msg, "RoomBooked", &ev);
}

static int on_booked(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx;
    (void)msg;
    world *w = user;
    const Hotel__RoomBooked *ev = value;
    atomic_fetch_add(&w->total, ev->price);
    atomic_fetch_add(&w->seen, 1);
    return 0;
}

static void *run(void *r)
{
    sl_router_run(r);
    return NULL;
}

static void protobuf_commands_and_events_flow_and_bad_input_is_poisoned(void **state)
{
    (void)state;
    static world w;
    memset(&w, 0, sizeof w);
    const char *url = "mem://cqrs-pb?persistent=true";
    sl_publisher *pub;
    sl_subscriber *sub;
    sl_router *r;
    assert_int_equal(sl_publisher_open(&pub, url), 0);
    assert_int_equal(sl_subscriber_open(&sub, url), 0);
    assert_int_equal(sl_router_new(&r, NULL), 0);
    sl_poison_opts po = {.pub = pub, .topic = "poison"};
    sl_middleware mw;
    assert_int_equal(sl_mw_poison(&mw, &po), 0);
    assert_int_equal(sl_router_add_middleware(r, mw), 0);
    sl_subscription *ps;
    assert_int_equal(sl_subscribe(sub, "poison", NULL, &ps), 0);

    sl_marshaler m;
    assert_int_equal(sl_marshaler_protobuf(&m, hotel), 0);
    sl_command_bus *cb;
    assert_int_equal(sl_command_bus_new(&cb, pub, &m, NULL), 0);
    assert_int_equal(sl_event_bus_new(&w.events, pub, &m, NULL), 0);
    sl_command_processor *cp;
    sl_event_processor *ep;
    assert_int_equal(sl_command_processor_new(&cp, r, sub, &m, NULL), 0);
    assert_int_equal(sl_command_processor_add(cp, "BookRoom", book_room, &w), 0);
    assert_int_equal(sl_event_processor_new(&ep, r, sub, &m, NULL), 0);
    assert_int_equal(sl_event_processor_add(ep, "report", "RoomBooked", on_booked, &w, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run, r), 0);
    assert_int_equal(sl_router_running(r, 10000), 0);

    int n = (int)tl_scaled(50, 5);
    long long want = 0;
    char *extras[] = {"breakfast", "late checkout"};
    for (int i = 0; i < n; i++) {
        Hotel__BookRoom cmd = HOTEL__BOOK_ROOM__INIT;
        char room[16];
        snprintf(room, sizeof room, "%d", 100 + i);
        cmd.room_id = room;
        cmd.guest_name = "Ada Lovelace";
        cmd.price = 1000 + i;
        cmd.n_extras = 2;
        cmd.extras = extras;
        want += cmd.price;
        assert_int_equal(sl_command_send(cb, "BookRoom", &cmd), 0);
    }
    /* the wrong value for a name, and a name outside the table: refused */
    Hotel__RoomBooked wrong = HOTEL__ROOM_BOOKED__INIT;
    assert_int_equal(sl_command_send(cb, "BookRoom", &wrong), SL_EINVAL);
    assert_int_equal(sl_command_send(cb, "CancelRoom", &wrong), SL_EINVAL);
    /* bytes that are not a BookRoom, and a foreign name, on the command topic */
    sl_msg *bad[2];
    assert_int_equal(sl_msg_new(&bad[0], "\xff\xff\xff\xff\x0f", 5), 0);
    assert_int_equal(sl_msg_meta_set(bad[0], "name", "BookRoom"), 0);
    assert_int_equal(sl_msg_new(&bad[1], "", 0), 0);
    assert_int_equal(sl_msg_meta_set(bad[1], "name", "Nope"), 0);
    assert_int_equal(sl_publish(pub, "commands.BookRoom", bad, 2), 0);

    for (int64_t end = tl_now_ms() + 10000; atomic_load(&w.seen) < n && tl_now_ms() < end;)
        tl_sleep_ms(5);
    for (int i = 0; i < 2; i++) {
        sl_msg *got;
        assert_int_equal(sl_next(ps, &got, 10000), 0);
        assert_string_equal(sl_msg_uuid(got), sl_msg_uuid(bad[i]));
        assert_non_null(strstr(sl_msg_meta_get(got, SL_POISON_REASON_KEY),
                               i ? "has type 'Nope'" : "not a valid"));
        sl_msg_ack(got);
        sl_msg_unref(got);
        sl_msg_unref(bad[i]);
    }
    assert_int_equal(sl_router_close(r, 5000, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&w.booked), n);
    assert_int_equal(atomic_load(&w.seen), n);
    assert_int_equal(atomic_load(&w.total), want);
    assert_string_equal(w.guest, "Ada Lovelace");
    assert_string_equal(w.extras, "breakfast+late checkout");
    sl_router_free(r);
    sl_command_processor_free(cp);
    sl_event_processor_free(ep);
    sl_command_bus_free(cb);
    sl_event_bus_free(w.events);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
}

static void bad_type_tables_are_refused(void **state)
{
    (void)state;
    sl_marshaler m;
    const sl_protobuf_type empty[] = {{NULL, NULL}};
    const sl_protobuf_type twice[] = {
        {"A", &hotel__book_room__descriptor}, {"A", &hotel__room_booked__descriptor}, {NULL, NULL}};
    const sl_protobuf_type spaced[] = {{"Book Room", &hotel__book_room__descriptor}, {NULL, NULL}};
    const sl_protobuf_type nodesc[] = {{"A", NULL}, {NULL, NULL}};
    assert_int_equal(sl_marshaler_protobuf(&m, NULL), SL_EINVAL);
    assert_int_equal(sl_marshaler_protobuf(&m, empty), SL_EINVAL);
    assert_int_equal(sl_marshaler_protobuf(&m, twice), SL_EINVAL);
    assert_int_equal(sl_marshaler_protobuf(&m, spaced), SL_EINVAL);
    assert_int_equal(sl_marshaler_protobuf(&m, nodesc), SL_EINVAL);
    /* round trip through the marshaler alone, field for field */
    assert_int_equal(sl_marshaler_protobuf(&m, hotel), 0);
    Hotel__RoomBooked ev = HOTEL__ROOM_BOOKED__INIT;
    ev.reservation_id = "r-1";
    ev.room_id = "7";
    ev.price = -42;
    sl_msg *msg;
    assert_int_equal(m.marshal(m.ctx, "RoomBooked", &ev, &msg), 0);
    assert_string_equal(sl_msg_meta_get(msg, "content_type"), "application/x-protobuf");
    void *v;
    assert_int_equal(m.unmarshal(m.ctx, msg, &v), 0);
    Hotel__RoomBooked *back = v;
    assert_string_equal(back->reservation_id, "r-1");
    assert_string_equal(back->room_id, "7");
    assert_int_equal(back->price, -42);
    m.free_value(m.ctx, v);
    sl_msg_unref(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(protobuf_commands_and_events_flow_and_bad_input_is_poisoned),
        cmocka_unit_test(bad_type_tables_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
