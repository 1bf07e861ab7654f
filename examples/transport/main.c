/*
 * examples/transport/main.c - the goevents usage example on sl_transport:
 * receive "added-wishlist-items", send a recommendation derived from each
 * to "recommendations", and acknowledge the received item with the result
 * of that send (so an item whose recommendation could not be published is
 * nacked and comes back).
 *
 * To be self-contained it also produces the wishlist items (fire-and-forget
 * sends) and prints the recommendations (a second receiver). Any URL
 * works; the default is the in-process bus.
 *
 *   example_transport [URL] [COUNT]        e.g. example_transport mem://shop 5
 *
 * The Go original, for comparison:
 *   for received := range wishlistItems {
 *       sendResult := make(chan error, 1)
 *       recommendations <- goevents.EventEnvelop{Result: sendResult, Event: ...}
 *       received.Result <- <-sendResult
 *   }
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/sluice.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "example_transport: %s: %s (%s)\n", what, sl_strerror(rc), sl_errmsg());
    return 1;
}

/* The business logic: a recommendation for a wishlist item. */
static int recommend(const sl_msg *item, sl_msg **out)
{
    size_t len;
    const char *p = sl_msg_payload(item, &len);
    char text[256];
    int n = snprintf(text, sizeof text, "customers who wished for %.*s also liked: a bookmark",
                     (int)(len < 128 ? len : 128), p);
    int rc = sl_msg_new(out, text, (size_t)n);
    if (rc == 0)
        rc = sl_msg_meta_set(*out, "correlation_id", sl_msg_uuid(item));
    return rc;
}

/* Producer: COUNT items, fire-and-forget. */
static int produce(sl_transport *t, int count)
{
    static const char *items[] = {"a red bicycle", "a tea pot", "a chess set", "hiking boots"};
    sl_sender *tx;
    int rc = sl_transport_send(t, "added-wishlist-items", &tx);
    for (int i = 0; rc == 0 && i < count; i++) {
        sl_msg *m;
        const char *s = items[i % 4];
        if ((rc = sl_msg_new(&m, s, strlen(s))) == 0) {
            rc = sl_sender_put(tx, &(sl_envelope){.msg = m});
            sl_msg_unref(m);
        }
    }
    return rc;
}

/* The goevents loop: receive, send the derived event, ack with its result. */
static int process(sl_transport *t, sl_receiver *wishlist, int count)
{
    sl_sender *recommendations;
    int rc = sl_transport_send(t, "recommendations", &recommendations);
    for (int done = 0; rc == 0 && done < count; done++) {
        sl_msg *received, *rec;
        if ((rc = sl_receiver_next(wishlist, &received, 5000)) != 0)
            return fail("receive wishlist item", rc);
        sl_future *send_result;
        if ((rc = recommend(received, &rec)) != 0 || (rc = sl_future_new(&send_result)) != 0) {
            sl_receiver_settle(wishlist, received, rc);
            break;
        }
        rc = sl_sender_put(recommendations, &(sl_envelope){.msg = rec, .future = send_result});
        int status = rc;
        if (rc == 0)
            rc = sl_future_wait(send_result, -1, &status);        /* <-sendResult */
        sl_receiver_settle(wishlist, received, rc ? rc : status); /* received.Result <- ... */
        sl_future_free(send_result);
        sl_msg_unref(rec);
        if (rc == 0 && status != 0)
            fprintf(stderr, "recommendation not sent (%s): item will come back\n",
                    sl_strerror(status));
    }
    return rc ? fail("process", rc) : 0;
}

/* Printer: show each recommendation and ack it. */
static int print_recommendations(sl_receiver *rx, int count)
{
    for (int i = 0; i < count; i++) {
        sl_msg *m;
        int rc = sl_receiver_next(rx, &m, 5000);
        if (rc)
            return fail("receive recommendation", rc);
        size_t len;
        const char *p = sl_msg_payload(m, &len);
        const char *cid = sl_msg_meta_get(m, "correlation_id");
        cid = cid && strlen(cid) > 12 ? cid + strlen(cid) - 12 : "?";
        printf("recommendation %d (item ...%s): %.*s\n", i + 1, cid, (int)len, p);
        sl_receiver_settle(rx, m, 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "mem://wishlist";
    int count = argc > 2 ? atoi(argv[2]) : 5;
    if (count <= 0 || argc > 3 || (argc > 1 && strcmp(argv[1], "--help") == 0)) {
        fprintf(stderr, "usage: example_transport [URL] [COUNT]\n");
        return 2;
    }
    sl_transport_mw retry;
    sl_transport_retry_opts ro;
    sl_transport_retry_opts_init(&ro);
    int rc = sl_transport_mw_retry(&retry, &ro);
    if (rc)
        return fail("retry middleware", rc);
    sl_transport_opts opts;
    sl_transport_opts_init(&opts);
    opts.middlewares = &retry;
    opts.n_middlewares = 1;
    sl_transport *t;
    if ((rc = sl_transport_open(&t, url, url, &opts)) != 0)
        return fail(url, rc);

    sl_receiver *wishlist, *recs;
    if ((rc = sl_transport_receive(t, "added-wishlist-items", NULL, &wishlist)) != 0 ||
        (rc = sl_transport_receive(t, "recommendations", NULL, &recs)) != 0) {
        sl_transport_free(t);
        return fail("receive", rc);
    }
    int bad = 0;
    if ((rc = produce(t, count)) != 0)
        bad = fail("produce", rc);
    if (!bad)
        bad = process(t, wishlist, count);
    if (!bad)
        bad = print_recommendations(recs, count);

    size_t unsent = 0;
    rc = sl_transport_shutdown(t, 5000, &unsent);
    printf("shutdown: %s, %zu envelope(s) not sent\n", rc ? sl_strerror(rc) : "everything flushed",
           unsent);
    sl_transport_free(t);
    return bad || rc ? 1 : 0;
}
