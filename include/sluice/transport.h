/*
 * sluice/transport.h - channel-style transports (the goevents model).
 *
 * A transport sits on a publisher and/or a subscriber (opened by URL, or
 * borrowed handles) and turns them into something that feels like Go
 * channels:
 *
 *   sl_transport *t;  sl_transport_open(&t, "mem://bus", "mem://bus", NULL);
 *   sl_receiver *in;  sl_transport_receive(t, "wishlist", NULL, &in);
 *   sl_sender *out;   sl_transport_send(t, "recommendations", &out);
 *   sl_msg *m;        sl_receiver_next(in, &m, -1);
 *   sl_future *f;     sl_future_new(&f);
 *   sl_envelope e = { .msg = derived, .future = f };
 *   sl_sender_put(out, &e);                  -- enqueue, returns at once
 *   int status;       sl_future_wait(f, -1, &status);
 *   sl_receiver_settle(in, m, status);        -- 0 acks, an error nacks
 *   sl_transport_shutdown(t, 5000, &unsent);  -- flush what is buffered
 *
 * Sending: sl_sender_put enqueues an envelope (a message plus an optional
 * result: a callback and/or a future) into ONE bounded buffer per transport
 * (default 1024 envelopes, shared by all its senders), drained by a pool of
 * publisher threads (default 16). Each envelope is published on its own
 * through the middleware chain; its outcome is reported exactly once, to its
 * callback and its future: 0 means the backend has the message (at-least-once
 * for producers); an error means it was not sent. Envelopes without a result
 * are fire-and-forget. With several publisher threads the order of publishes
 * is not the order of puts; use publishers = 1 where order matters.
 * Batching (opts.batch_max > 1, no middlewares): a publisher thread that
 * finds several envelopes of one topic waiting at the head of the buffer
 * publishes up to batch_max of them with ONE sl_publish call (one
 * transaction / one confirm round on durable backends), and reports that
 * call's outcome to each of them. Nothing waits to fill a batch: a batch is
 * what piled up while the previous publish ran, so under light load every
 * envelope still goes out on its own, at once. A failed batch reports the
 * error to all its envelopes even if the backend took a prefix of them
 * (at-least-once: a sender that retries may publish those twice).
 * A publish that is not sent (after every middleware, e.g. retry, gave up, or
 * cut off by the shutdown deadline) also reaches opts.on_unsent and is
 * counted in the stats and in sl_transport_shutdown's *unsent.
 *
 * Receiving: sl_receiver_next hands out messages (one reference each) whose
 * result the consumer must set with sl_receiver_settle: 0 acks, a negative
 * error nacks (the backend redelivers it, after opts.nack_delay_ms where it
 * can). A message never settled is redelivered when its receiver closes.
 *
 * Shutdown: sl_transport_shutdown stops intake, flushes every buffered
 * envelope until a deadline, reports those it could not publish, stops the
 * publisher threads and closes the receivers. The transport handle stays
 * valid (for stats) until sl_transport_free.
 *
 * Threads: every function may be called from any thread, except that
 * sl_transport_free must not race with other calls on the same transport.
 * Result callbacks, on_unsent and middlewares run on publisher threads (or,
 * for envelopes cut off at shutdown, on the thread calling shutdown); they
 * must not block on the transport's own buffer (use sl_sender_try_put there).
 */
#ifndef SLUICE_TRANSPORT_H
#define SLUICE_TRANSPORT_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "msg.h"
#include "pubsub.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_transport sl_transport;
typedef struct sl_sender sl_sender;
typedef struct sl_receiver sl_receiver;
typedef struct sl_future sl_future;
typedef struct sl_transport_call sl_transport_call;

#define SL_TRANSPORT_DEFAULT_BUFFER 1024
#define SL_TRANSPORT_DEFAULT_PUBLISHERS 16

/* ---- futures: a publish outcome one thread can wait for ---- */

/* Create a pending future (the caller owns one reference; free it with
 * sl_future_free whenever it likes, before or after it completes).
 * Errors: SL_EINVAL, SL_ENOMEM. */
SL_API int sl_future_new(sl_future **out);

/* Wait until the future completes or timeout_ms passes (< 0 forever, 0
 * polls). On 0, *status (optional) is the outcome: 0 sent, or the negative
 * SL_E* code of the failure. Errors: SL_ETIMEDOUT, SL_EINVAL. */
SL_API int sl_future_wait(sl_future *f, int timeout_ms, int *status);

/* True once the future has an outcome. Never blocks. */
SL_API bool sl_future_done(const sl_future *f);

/* Drop the caller's reference. A transport holding the future keeps its own
 * reference until it completes it. NULL is a no-op. */
SL_API void sl_future_free(sl_future *f);

/* ---- options ---- */

/* Called once with the outcome of every envelope that asked for one:
 * status 0 = the backend has msg; negative SL_E* = it was not sent.
 * msg is borrowed for the duration of the call. */
typedef void (*sl_result_fn)(void *ctx, sl_msg *msg, int status);

/* Called once for every envelope that was not sent (with or without a
 * result); topic and msg are borrowed for the duration of the call. */
typedef void (*sl_unsent_fn)(void *ctx, const char *topic, sl_msg *msg, int err);

/* A middleware wraps each publish. fn receives the message and a call
 * handle; it calls sl_transport_call_next(call, msg) (zero, one or several
 * times) to run the rest of the chain and returns the outcome.
 * free_ctx (optional) releases ctx when the transport is freed. */
typedef int (*sl_transport_mw_fn)(void *ctx, sl_transport_call *call, sl_msg *msg);
typedef struct sl_transport_mw {
    sl_transport_mw_fn fn;
    void *ctx;
    void (*free_ctx)(void *ctx);
} sl_transport_mw;

typedef struct sl_transport_opts {
    size_t buffer_size;  /* envelopes buffered before put blocks (1024) */
    unsigned publishers; /* publisher threads (16) */
    /* Middlewares, outermost first. The array is copied; the transport
     * takes over every ctx (free_ctx runs at sl_transport_free, or at once
     * if the open fails). */
    const sl_transport_mw *middlewares;
    size_t n_middlewares;
    sl_unsent_fn on_unsent; /* optional */
    void *unsent_ctx;
    /* Most envelopes one publish call carries (0 or 1: no batching, the
     * default; at most 4096). > 1 needs n_middlewares == 0 (middlewares see one
     * message at a time), else SL_EBADOPT. */
    unsigned batch_max;
} sl_transport_opts;

/* Fill o with the defaults above (no middlewares, no on_unsent, batch_max 1). */
SL_API void sl_transport_opts_init(sl_transport_opts *o);

/* ---- transport ---- */

/* Open a transport on new handles: pub_url and/or sub_url (either may be
 * NULL for a send-only or receive-only transport, not both). The transport
 * owns and closes them. opts may be NULL for defaults. Starts the publisher
 * threads. Errors: SL_EINVAL, SL_ENOMEM, SL_EBADOPT (buffer_size or
 * publishers 0), and any error of sl_publisher_open/sl_subscriber_open. */
SL_API int sl_transport_open(sl_transport **out, const char *pub_url, const char *sub_url,
                             const sl_transport_opts *opts);

/* The same over borrowed handles (either may be NULL, not both): they must
 * outlive the transport (close them after sl_transport_free). */
SL_API int sl_transport_new(sl_transport **out, sl_publisher *pub, sl_subscriber *sub,
                            const sl_transport_opts *opts);

/* A sender for topic. Senders belong to the transport (freed with it); asking
 * twice for one topic returns the same sender. Never blocks.
 * Errors: SL_EINVAL (bad topic), SL_ENOTSUP (no publisher), SL_ECLOSED
 * (shutdown began), SL_ENOMEM. */
SL_API int sl_transport_send(sl_transport *t, const char *topic, sl_sender **out);

/* ---- sending ---- */

typedef struct sl_envelope {
    sl_msg *msg;            /* required; the transport takes its own reference */
    sl_result_fn on_result; /* optional */
    void *ctx;              /* for on_result */
    sl_future *future;      /* optional; completed with the same status */
} sl_envelope;

/* Enqueue env. The transport takes its own references to env->msg and
 * env->future; the caller keeps (and later drops) its own, and must not
 * change the message afterwards. Blocks while the buffer is full.
 * Errors: SL_EINVAL, SL_ECLOSED (shutdown began; nothing was enqueued and
 * no result will be reported). */
SL_API int sl_sender_put(sl_sender *s, const sl_envelope *env);

/* The same without blocking: SL_EAGAIN when the buffer is full. */
SL_API int sl_sender_try_put(sl_sender *s, const sl_envelope *env);

/* The same waiting at most timeout_ms for room (< 0 forever, 0 polls:
 * SL_EAGAIN); SL_ETIMEDOUT when no room came in time. */
SL_API int sl_sender_put_timeout(sl_sender *s, const sl_envelope *env, int timeout_ms);

/* The topic this sender publishes to (borrowed, lives as long as t). */
SL_API const char *sl_sender_topic(const sl_sender *s);

/* ---- receiving ---- */

typedef struct sl_receive_opts {
    sl_subscribe_opts sub;  /* group, start, prefetch (sl_subscribe_opts_init) */
    unsigned nack_delay_ms; /* redelivery delay asked on error (0: at once) */
} sl_receive_opts;

SL_API void sl_receive_opts_init(sl_receive_opts *o);

/* Subscribe to topic and return a receiver (owned by the transport, freed
 * with it; sl_receiver_close closes it early). Messages published after this
 * returns reach it. Errors: SL_EINVAL, SL_ENOTSUP (no subscriber),
 * SL_ECLOSED, and any error of sl_subscribe. */
SL_API int sl_transport_receive(sl_transport *t, const char *topic, const sl_receive_opts *opts,
                                sl_receiver **out);

/* Take the next message (the caller owns one reference and must pass it to
 * sl_receiver_settle). timeout_ms < 0 waits forever, 0 polls. Blocks; wakes
 * within about 50 ms with SL_ECLOSED when the receiver closes.
 * Errors: SL_ETIMEDOUT, SL_ECLOSED, backend errors. */
SL_API int sl_receiver_next(sl_receiver *r, sl_msg **out, int timeout_ms);

/* Set the result of a received message and drop the caller's reference:
 * result 0 acks it; any other result (an SL_E* error) nacks it, so it is
 * delivered again.
 * Settling after the receiver closed is harmless (the message comes back).
 * Returns the ack/nack outcome (SL_ESTATE if m was already settled the
 * other way), SL_EINVAL. */
SL_API int sl_receiver_settle(sl_receiver *r, sl_msg *m, int result);

/* Close the receiver: wakes threads blocked in sl_receiver_next (SL_ECLOSED)
 * and hands unsettled messages back for redelivery. Idempotent. */
SL_API int sl_receiver_close(sl_receiver *r);

/* ---- shutdown and stats ---- */

/* Stop intake (puts and new senders/receivers fail with SL_ECLOSED; blocked
 * puts wake with SL_ECLOSED), publish every buffered envelope, waiting at
 * most deadline_ms (< 0: as long as it takes), then stop the publisher
 * threads and close the receivers. Envelopes still buffered at the
 * deadline, and publishes in flight that cannot finish by it, are reported
 * not sent (status SL_ETIMEDOUT) to their result and on_unsent.
 * *unsent (optional) = envelopes not sent over the transport's whole life
 * (failed publishes included). Blocks. A second call waits for the first and
 * returns the same.
 * Returns 0 when everything was sent, SL_ETIMEDOUT when the deadline cut
 * envelopes off, SL_EIO when only publishes failed. */
SL_API int sl_transport_shutdown(sl_transport *t, int deadline_ms, size_t *unsent);

typedef struct sl_transport_stats {
    uint64_t enqueued;  /* envelopes accepted by put */
    uint64_t sent;      /* published successfully */
    uint64_t unsent;    /* failed or cut off */
    uint64_t buffered;  /* waiting in the buffer now */
    uint64_t in_flight; /* being published now */
    uint64_t publishes; /* publish calls made (< sent + unsent when batching) */
} sl_transport_stats;

/* A consistent snapshot of the counters. Never blocks for long. */
SL_API int sl_transport_stats_get(sl_transport *t, sl_transport_stats *out);

/* Shut down (with no deadline) if that was not done, close owned handles,
 * free every sender, receiver and middleware ctx, and t. NULL is a no-op. */
SL_API void sl_transport_free(sl_transport *t);

/* ---- writing middlewares ---- */

/* Run the rest of the chain (the next middleware, or the publish itself)
 * for msg, and return its outcome. May be called several times. */
SL_API int sl_transport_call_next(sl_transport_call *call, sl_msg *msg);

/* The topic being published to (borrowed, valid during the call). */
SL_API const char *sl_transport_call_topic(const sl_transport_call *call);

/* Sleep ms, cut short by the shutdown deadline: 0 after the full sleep,
 * SL_ETIMEDOUT if the deadline came first (give up then). */
SL_API int sl_transport_call_sleep(sl_transport_call *call, unsigned ms);

/* Logging middleware: one sl_log line per publish (component "transport"):
 * successes at `level`, failures at SL_LOG_WARN, with topic, UUID, outcome
 * and duration. Errors: SL_EINVAL, SL_ENOMEM. */
SL_API int sl_transport_mw_logging(sl_transport_mw *out, sl_log_level level);

typedef struct sl_transport_retry_opts {
    unsigned max_retries;     /* retries after the first attempt (3) */
    unsigned initial_ms;      /* first backoff (100) */
    double multiplier;        /* backoff growth (2.0) */
    unsigned max_interval_ms; /* backoff cap (5000; 0: no cap) */
    unsigned max_elapsed_ms;  /* stop retrying after this long (0: no limit) */
    /* Called before each retry (attempt = 1 for the first retry). */
    void (*on_retry)(void *ctx, sl_msg *msg, unsigned attempt, int err);
    void *on_retry_ctx;
} sl_transport_retry_opts;

SL_API void sl_transport_retry_opts_init(sl_transport_retry_opts *o);

/* Retry middleware: repeats a failed publish with exponential backoff.
 * Never retries SL_EINVAL, SL_ECLOSED or SL_ENOTSUP, and stops at the
 * shutdown deadline. opts is copied. Errors: SL_EINVAL, SL_ENOMEM. */
SL_API int sl_transport_mw_retry(sl_transport_mw *out, const sl_transport_retry_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
