/*
 * main.c - watermill's CQRS example, the hotel, on sluice:
 *   BookRoom (command) -> RoomBooked (event) -> OrderBeer (command)
 *   -> BeerOrdered (event), plus a financial report that sums every booking.
 *
 *   example_cqrs URL [BOOKINGS]      e.g. mem://hotel or sqlite://./hotel.db
 *
 * Handlers are at-least-once: the BookRoom handler fails once for every
 * fifth booking AFTER publishing its event, and the report fails once for
 * every seventh event, so messages are redelivered and RoomBooked events
 * arrive twice. The report counts each reservation once (its id is the
 * BookRoom command's UUID, the same on every redelivery). Exits 0 when the
 * report's total equals the sum of the booked prices, every booking was
 * counted exactly once and every beer was ordered; 1 otherwise.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sluice/cqrs.h>
#include <sluice/sluice.h>

typedef struct hotel {
    sl_command_bus *commands;
    sl_event_bus *events;
    pthread_mutex_t mu;
    /* the financial report */
    char **seen;
    size_t nseen;
    long long total;
    int beers;
    int failed_bookings[1000], failed_reports[1000];
} hotel;

static int book_room(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx;
    hotel *h = user;
    json_t *cmd = value;
    json_int_t n = json_integer_value(json_object_get(cmd, "n"));
    json_t *ev =
        json_pack("{s:s, s:O, s:O, s:O, s:I}", "reservation_id", sl_msg_uuid(msg), "room_id",
                  json_object_get(cmd, "room_id"), "guest", json_object_get(cmd, "guest"), "price",
                  json_object_get(cmd, "price"), "n", n);
    int rc = sl_event_publish_from(h->events, msg, "RoomBooked", ev);
    json_decref(ev);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&h->mu);
    bool fail = n % 5 == 0 && n < 1000 && !h->failed_bookings[n]++;
    pthread_mutex_unlock(&h->mu);
    return fail ? sl_handler_fail(SL_EIO, "booking %lld: simulated failure after the event",
                                  (long long)n)
                : 0;
}

static int order_beer_on_room_booked(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx;
    hotel *h = user;
    json_t *cmd = json_pack("{s:O, s:i}", "room_id", json_object_get(value, "room_id"), "count", 1);
    int rc = sl_command_send_from(h->commands, msg, "OrderBeer", cmd);
    json_decref(cmd);
    return rc;
}

static int order_beer(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx;
    hotel *h = user;
    json_t *ev = json_pack("{s:O, s:O}", "room_id", json_object_get(value, "room_id"), "count",
                           json_object_get(value, "count"));
    int rc = sl_event_publish_from(h->events, msg, "BeerOrdered", ev);
    json_decref(ev);
    return rc;
}

static int beer_ordered(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx, (void)msg, (void)value;
    hotel *h = user;
    pthread_mutex_lock(&h->mu);
    h->beers++;
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static int financial_report(sl_ctx *ctx, const sl_msg *msg, void *value, void *user)
{
    (void)ctx, (void)msg;
    hotel *h = user;
    const char *id = json_string_value(json_object_get(value, "reservation_id"));
    json_int_t price = json_integer_value(json_object_get(value, "price"));
    json_int_t n = json_integer_value(json_object_get(value, "n"));
    if (!id)
        return sl_handler_fail(SL_EPROTO, "RoomBooked without a reservation id");
    pthread_mutex_lock(&h->mu);
    int rc = 0;
    bool dup = false;
    for (size_t i = 0; i < h->nseen && !dup; i++)
        dup = strcmp(h->seen[i], id) == 0;
    if (!dup && n % 7 == 3 && n < 1000 && !h->failed_reports[n]++) {
        rc = sl_handler_fail(SL_EIO, "report: simulated failure before counting %s", id);
    } else if (!dup) {
        char **s = realloc(h->seen, (h->nseen + 1) * sizeof *s);
        if (s) {
            h->seen = s;
            s[h->nseen++] = strdup(id);
            h->total += price;
        } else {
            rc = SL_ENOMEM;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static void *run_router(void *r)
{
    sl_router_run(r);
    return NULL;
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ != 0) {                                                                            \
            fprintf(stderr, "example_cqrs: %s: %s (%s)\n", #x, sl_strerror(rc_), sl_errmsg());     \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: example_cqrs URL [BOOKINGS]\n");
        return 2;
    }
    int bookings = argc > 2 ? atoi(argv[2]) : 50;
    if (bookings < 1 || bookings > 999) {
        fprintf(stderr, "example_cqrs: BOOKINGS in 1..999\n");
        return 2;
    }
    hotel h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.mu, NULL);
    sl_publisher *pub;
    sl_subscriber *sub;
    CHECK(sl_publisher_open(&pub, argv[1]));
    CHECK(sl_subscriber_open(&sub, argv[1]));
    sl_marshaler m;
    sl_marshaler_json(&m);
    CHECK(sl_command_bus_new(&h.commands, pub, &m, NULL));
    CHECK(sl_event_bus_new(&h.events, pub, &m, NULL));

    sl_router *r;
    CHECK(sl_router_new(&r, NULL));
    sl_middleware corr;
    CHECK(sl_mw_correlation(&corr));
    CHECK(sl_router_add_middleware(r, corr));
    sl_command_processor *cp;
    sl_event_processor *ep;
    CHECK(sl_command_processor_new(&cp, r, sub, &m, NULL));
    CHECK(sl_event_processor_new(&ep, r, sub, &m, NULL));
    CHECK(sl_command_processor_add(cp, "BookRoom", book_room, &h));
    CHECK(sl_command_processor_add(cp, "OrderBeer", order_beer, &h));
    CHECK(sl_event_processor_add(ep, "OrderBeerOnRoomBooked", "RoomBooked",
                                 order_beer_on_room_booked, &h, NULL));
    CHECK(sl_event_processor_add(ep, "FinancialReport", "RoomBooked", financial_report, &h, NULL));
    CHECK(sl_event_processor_add(ep, "BeerOrdered", "BeerOrdered", beer_ordered, &h, NULL));
    pthread_t t;
    pthread_create(&t, NULL, run_router, r);
    CHECK(sl_router_running(r, 30000));

    srand((unsigned)time(NULL));
    long long expected = 0;
    for (int i = 0; i < bookings; i++) {
        int price = 50 + rand() % 450;
        expected += price;
        char room[16];
        snprintf(room, sizeof room, "%d", 100 + i);
        json_t *cmd = json_pack("{s:s, s:s, s:i, s:i}", "room_id", room, "guest", "Ada", "price",
                                price, "n", i);
        CHECK(sl_command_send(h.commands, "BookRoom", cmd));
        json_decref(cmd);
    }
    /* RoomBooked carries n too, for the report's simulated failures */
    for (int waited = 0; waited < 600; waited++) {
        pthread_mutex_lock(&h.mu);
        bool done = (int)h.nseen >= bookings && h.beers >= bookings;
        pthread_mutex_unlock(&h.mu);
        if (done)
            break;
        usleep(100000);
    }
    usleep(300000); /* let redeliveries in flight land: nothing may be counted twice */
    sl_router_close(r, 10000, NULL);
    pthread_join(t, NULL);
    pthread_mutex_lock(&h.mu);
    printf("bookings=%d counted=%zu total=%lld expected=%lld beers=%d\n", bookings, h.nseen,
           h.total, expected, h.beers);
    int ok = (int)h.nseen == bookings && h.total == expected && h.beers >= bookings;
    pthread_mutex_unlock(&h.mu);
    sl_router_free(r);
    sl_command_processor_free(cp);
    sl_event_processor_free(ep);
    sl_command_bus_free(h.commands);
    sl_event_bus_free(h.events);
    for (size_t i = 0; i < h.nseen; i++)
        free(h.seen[i]);
    free(h.seen);
    sl_subscriber_close(sub);
    sl_publisher_close(pub);
    return ok ? 0 : 1;
}
