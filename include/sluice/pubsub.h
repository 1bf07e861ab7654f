/*
 * sluice/pubsub.h - publishers and subscribers, opened by URL.
 *
 * Every backend lives behind a URL scheme ("mem://", "sqlite://", ...).
 * Options travel in the query string ("mem://bus?persistent=true"); an
 * unknown scheme or option is an error that names it (sl_errmsg()).
 *
 *   sl_publisher *pub;  sl_publisher_open(&pub, "mem://demo");
 *   sl_subscriber *sub; sl_subscriber_open(&sub, "mem://demo");
 *   sl_subscription *s; sl_subscribe(sub, "orders", NULL, &s);
 *   sl_publish(pub, "orders", &msg, 1);
 *   sl_next(s, &got, 1000); ... sl_msg_ack(got); sl_msg_unref(got);
 *
 * Delivery is at-least-once: a message that is nacked, or not acked when its
 * subscription closes, is delivered again (to the same group). A delivery
 * whose last reference goes (sl_msg_unref) without an ack or a nack is
 * nacked then: it comes back, and its room in the prefetch window is free.
 *
 * Threads: every function may be called from any thread. A close may run
 * while other threads are blocked in calls on the same handle; those calls
 * return SL_ECLOSED. No call on a handle may *start* after its close began.
 */
#ifndef SLUICE_PUBSUB_H
#define SLUICE_PUBSUB_H

#include "export.h"

#include <stddef.h>

#include "msg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_publisher sl_publisher;
typedef struct sl_subscriber sl_subscriber;
typedef struct sl_subscription sl_subscription;

/* Backend feature flags. */
enum {
    SL_FEAT_CONSUMER_GROUPS = 1u << 0,  /* subscriptions sharing a group compete */
    SL_FEAT_PERSISTENT = 1u << 1,       /* messages survive the process */
    SL_FEAT_ORDERED = 1u << 2,          /* one consumer sees a topic in publish order */
    SL_FEAT_LATE_SUBSCRIBERS = 1u << 3, /* new subscriptions may receive old messages */
    SL_FEAT_EXACTLY_ONCE = 1u << 4,
    SL_FEAT_DELAYED_NACK = 1u << 5,    /* sl_msg_nack_delay is honoured */
    SL_FEAT_WAIT_ACK = 1u << 6,        /* SL_PUBLISH_WAIT_ACK is honoured */
    SL_FEAT_DELAYED_PUBLISH = 1u << 7, /* SL_META_DELIVER_AT is honoured */
};

/* Features of a scheme ("mem") without opening anything; SL_ENOTSUP if unknown.
 * Features may depend on URL options, so prefer the handle's own flags. */
SL_API int sl_scheme_features(const char *scheme, unsigned *features);

/* ---- publisher ---- */

/* Open a publisher. Errors: SL_EINVAL (NULL / malformed URL), SL_ENOTSUP
 * (unknown scheme), SL_EBADOPT (unknown or bad option), backend errors. */
SL_API int sl_publisher_open(sl_publisher **out, const char *url);

enum {
    SL_PUBLISH_NONBLOCK = 1u << 0, /* fail with SL_EAGAIN instead of waiting for room */
    SL_PUBLISH_WAIT_ACK = 1u << 1, /* return only when every receiving group acked */
    /* Best-effort messages (live updates, telemetry): a power cut or OS crash
     * may lose them, so a backend that syncs every commit to disk need not
     * do so for a publish of only such messages (sqlite:// sync=full: its
     * commit alone skips the fsync; the next synced commit covers it). A
     * process crash loses nothing taken. Backends without syncs ignore it. */
    SL_PUBLISH_NO_SYNC = 1u << 2,
};

typedef struct sl_publish_opts {
    unsigned flags; /* SL_PUBLISH_* */
    int timeout_ms; /* for WAIT_ACK and blocking on backpressure; < 0 forever */
    /* Optional out: how many of the n messages (a prefix) the backend took:
     * n on success; on failure what the backend can tell (mem:// counts
     * exactly, sqlite:// is all-or-nothing: 0), else 0. Lets a caller that
     * retries after SL_ETIMEDOUT resume after the taken prefix. */
    size_t *published;
} sl_publish_opts;

SL_API void sl_publish_opts_init(sl_publish_opts *o);

/* Publish n messages to topic, in order. The messages are borrowed: the
 * caller keeps its references and may free them once this returns. Returns 0
 * only when the backend has taken all n (durably, for persistent backends).
 * On failure none or a prefix may have been taken; the error says which
 * where the backend can tell. Blocks while buffers are full (backpressure). */
SL_API int sl_publish(sl_publisher *p, const char *topic, sl_msg *const *msgs, size_t n);
SL_API int sl_publish_ex(sl_publisher *p, const char *topic, sl_msg *const *msgs, size_t n,
                         const sl_publish_opts *opts);

SL_API unsigned sl_publisher_features(const sl_publisher *p);
/* Flush anything buffered, wake blocked publishers (SL_ECLOSED) and free. */
SL_API int sl_publisher_close(sl_publisher *p);

/* ---- subscriber ---- */

SL_API int sl_subscriber_open(sl_subscriber **out, const char *url);

typedef enum sl_start {
    SL_START_DEFAULT = 0, /* backend's default (mem: earliest when persistent) */
    SL_START_EARLIEST,    /* a new group starts at the oldest kept message */
    SL_START_LATEST,      /* a new group starts with the next published message */
} sl_start;

typedef struct sl_subscribe_opts {
    const char *group; /* NULL or "": this subscription alone gets every message */
    sl_start start;    /* where a new group starts */
    unsigned prefetch; /* unacked messages one subscription may hold (default 1) */
} sl_subscribe_opts;

SL_API void sl_subscribe_opts_init(sl_subscribe_opts *o);

/* Subscribe to a topic. opts may be NULL for defaults. The subscription is
 * established when this returns: messages published afterwards reach it. */
SL_API int sl_subscribe(sl_subscriber *sub, const char *topic, const sl_subscribe_opts *opts,
                        sl_subscription **out);

/* Take the next message (the caller owns one reference and must ack or nack
 * it, then unref it). timeout_ms < 0 waits forever, 0 polls.
 * Errors: SL_ETIMEDOUT, SL_ECLOSED, backend errors. */
SL_API int sl_next(sl_subscription *s, sl_msg **out, int timeout_ms);

/* Take up to max messages at once: waits like sl_next (timeout_ms < 0
 * forever, 0 polls) for the first one, then adds those that are ready without
 * waiting. On 0, out[0..*got) hold one reference each (1 <= *got <= max), in
 * the order sl_next would have returned them; ack (sl_msg_ack_batch) and unref
 * each. The subscription's prefetch still bounds the unacked messages it
 * holds, so a batch is at most prefetch minus those already held: raise
 * prefetch to receive batches. Every backend offers it (mem:// takes its lock
 * once per batch; others may loop sl_next). Same threads and errors as
 * sl_next, plus SL_EINVAL (NULL out or got, max 0); on error *got is 0. */
SL_API int sl_next_batch(sl_subscription *s, sl_msg **out, size_t max, size_t *got, int timeout_ms);
/* Close a subscription: messages it took but did not ack go back to its group
 * (redelivered), never lost. */
SL_API int sl_subscription_close(sl_subscription *s);

SL_API unsigned sl_subscriber_features(const sl_subscriber *sub);
/* Close every subscription still open on sub, then sub itself. */
SL_API int sl_subscriber_close(sl_subscriber *sub);

#ifdef __cplusplus
}
#endif
#endif
