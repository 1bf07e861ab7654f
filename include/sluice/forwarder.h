/*
 * sluice/forwarder.h - the transactional outbox's other half (watermill's
 * forwarder): messages written to an outbox topic inside the application's
 * own database transaction (sl_sqlite_publish_tx on sqlite://, and the SQL
 * backends' twins) are moved to their real destination on any backend.
 *
 *   sl_msg *m; sl_msg_new(&m, body, len);
 *   sl_forward_to(m, "orders.paid");                  // where it really goes
 *   BEGIN; UPDATE orders ...; sl_sqlite_publish_tx(db, "outbox", &m, 1); COMMIT;
 *
 *   sluice forward sqlite://./app.db amqp://guest:guest@host/   (or the API below)
 *
 * At least once, in order per destination topic: the forwarder takes one
 * message at a time from the outbox (one consumer group), publishes a copy
 * with the same UUID, metadata (less the routing key) and payload to its
 * destination, and only then acks it. A forwarder killed between the two
 * redelivers that message: a duplicate with the same UUID, never a loss.
 * Order holds while a forwarder runs; a forwarder killed with a message in
 * flight leaves that one message to come back when the outbox's ack
 * deadline expires, possibly after later ones (tests/crash/crash_forwarder.c
 * kills it ten times mid-stream and checks all three promises).
 */
#ifndef SLUICE_FORWARDER_H
#define SLUICE_FORWARDER_H

#include "error.h"
#include "export.h"
#include "msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The metadata key naming a message's destination topic. */
#define SL_FORWARD_META_TOPIC "forward_to"

/* Mark m for the forwarder: its destination is topic. */
SL_API int sl_forward_to(sl_msg *m, const char *topic);

typedef struct sl_forwarder sl_forwarder;

typedef struct sl_forwarder_opts {
    const char *outbox_topic; /* default "outbox" */
    const char *group;        /* default "forwarder" */
    int retry_ms;             /* pause after a failed publish (default 500) */
} sl_forwarder_opts;

SL_API void sl_forwarder_opts_init(sl_forwarder_opts *o);
SL_API int sl_forwarder_new(sl_forwarder **out, const char *from_url, const char *to_url,
                            const sl_forwarder_opts *opts);
/* Forward until sl_forwarder_stop (from another thread or a signal
 * handler's thread). Messages without a valid destination are logged and
 * acked to the outbox's "<outbox>.poison" topic, never retried forever. */
SL_API int sl_forwarder_run(sl_forwarder *f);
SL_API int sl_forwarder_stop(sl_forwarder *f);
/* Messages forwarded so far. */
SL_API unsigned long long sl_forwarder_count(const sl_forwarder *f);
SL_API void sl_forwarder_free(sl_forwarder *f);

#ifdef __cplusplus
}
#endif
#endif
