/*
 * sluice/requeue.h - delayed messages on every backend (watermill's delay
 * and requeuer components).
 *
 * A message is due at SL_META_DELIVER_AT (wall-clock ms since the epoch,
 * sluice/msg.h). Backends with SL_FEAT_DELAYED_PUBLISH honour it natively;
 * for the others, sl_publish_delayed parks such a message on a delay topic
 * (with SL_REQUEUE_META_TOPIC naming its real topic), and a requeuer that
 * reads the delay topic publishes it to its topic once it is due:
 *
 *   sl_requeuer *rq; sl_requeuer_new(&rq, sub, pub, NULL);   // one per delay topic
 *   sl_requeuer_start(rq);                                   // a thread
 *   sl_msg_meta_set(m, SL_META_DELIVER_AT, "1767225600000");
 *   sl_publish_delayed(pub, "reminders", &m, 1, NULL);       // any backend
 *   ...
 *   sl_requeuer_close(rq);
 *
 * Failed messages come back later with the requeue middleware: instead of
 * a nack, the router acks the failed message after publishing a copy due
 * delay_ms later (growing per requeue) to its own topic, through
 * sl_publish_delayed. Unlike a nack with backoff it frees the consumer at
 * once and works on backends without delayed nacks.
 *
 * At least once: the requeuer acks a parked message only after its copy is
 * published (same UUID, payload and metadata less the delay keys); a
 * requeuer that dies leaves it parked for the next one. Messages due at the
 * same time keep their order; a requeuer holds up to max_held parked
 * messages in memory and, where the backend nacks with a delay, hands far
 * ones back to the backend until they are nearly due.
 */
#ifndef SLUICE_REQUEUE_H
#define SLUICE_REQUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "export.h"
#include "pubsub.h"
#include "router.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The metadata key naming the topic a parked message goes back to. */
#define SL_REQUEUE_META_TOPIC "requeue_topic"
/* How many times the requeue middleware requeued a message. */
#define SL_REQUEUE_META_COUNT "requeue_count"
/* The default delay topic. */
#define SL_REQUEUE_DEFAULT_TOPIC "sluice.delay"

typedef struct sl_delay_opts {
    const char *delay_topic; /* NULL: SL_REQUEUE_DEFAULT_TOPIC */
    bool via_topic;          /* park delayed messages even where the backend
                                could delay them itself (default false) */
} sl_delay_opts;

SL_API void sl_delay_opts_init(sl_delay_opts *o);

/* Publish n messages to topic like sl_publish, except that a message whose
 * SL_META_DELIVER_AT is in the future goes to the delay topic (when pub
 * lacks SL_FEAT_DELAYED_PUBLISH, or o->via_topic) - a requeuer on that
 * backend and delay topic must run. The messages are borrowed. o may be
 * NULL. Errors: SL_EINVAL (bad SL_META_DELIVER_AT, bad topic: nothing is
 * published), those of sl_publish (messages before the failing one may
 * have been published). Any thread. */
SL_API int sl_publish_delayed(sl_publisher *pub, const char *topic, sl_msg *const *msgs, size_t n,
                              const sl_delay_opts *o);

/* ---- the requeuer ---- */

typedef struct sl_requeuer sl_requeuer;

typedef struct sl_requeuer_opts {
    const char *delay_topic; /* NULL: SL_REQUEUE_DEFAULT_TOPIC */
    const char *group;       /* consumer group on the delay topic (default "requeuer") */
    unsigned max_held;       /* parked messages held in memory (default 256) */
    int retry_ms;            /* pause after a failed publish (default 500) */
} sl_requeuer_opts;

SL_API void sl_requeuer_opts_init(sl_requeuer_opts *o);

/* sub reads the delay topic, pub publishes the due messages (borrowed, they
 * outlive the requeuer; they may be different backends). Subscribes at
 * once. Parked messages without a valid SL_REQUEUE_META_TOPIC or deliver
 * time go to "<delay_topic>.poison" (logged), never dropped or retried
 * forever. Errors: SL_EINVAL, those of sl_subscribe. */
SL_API int sl_requeuer_new(sl_requeuer **out, sl_subscriber *sub, sl_publisher *pub,
                           const sl_requeuer_opts *o);
/* Run the requeuer on a thread of its own. SL_ESTATE when started twice. */
SL_API int sl_requeuer_start(sl_requeuer *rq);
/* Messages requeued so far (published to their topic). Any thread. */
SL_API unsigned long long sl_requeuer_count(const sl_requeuer *rq);
/* Stop the thread (within ~100 ms), hand back held messages (nack: the next
 * requeuer gets them), unsubscribe and free. NULL is a no-op. */
SL_API void sl_requeuer_close(sl_requeuer *rq);

/* ---- the requeue middleware ---- */

typedef struct sl_requeue_opts {
    sl_publisher *pub;     /* required: publishes the delayed copy (borrowed) */
    sl_delay_opts delay;   /* where it is parked (see sl_publish_delayed) */
    unsigned delay_ms;     /* first delay (default 1000) */
    double multiplier;     /* delay_ms * multiplier^requeues (default 2.0) */
    unsigned max_delay_ms; /* default 60000 */
    unsigned max_requeues; /* then the failure stands (nack / outer poison); 0: no limit */
} sl_requeue_opts;

SL_API void sl_requeue_opts_init(sl_requeue_opts *o);

/* On failure, publish a copy of the input (same UUID, payload, metadata,
 * SL_REQUEUE_META_COUNT + 1) due later to the input's topic, and succeed
 * (the input is acked). If that publish fails, the original error stands
 * (nack). Flagged SL_MW_POISON: the router refuses it inside a retry
 * middleware (put it outside, so retries run first). */
SL_API int sl_mw_requeue(sl_middleware *out, const sl_requeue_opts *o);

#ifdef __cplusplus
}
#endif
#endif
