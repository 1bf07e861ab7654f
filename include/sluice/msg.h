/*
 * sluice/msg.h - the message.
 *
 * A message is a UUID (time-ordered UUIDv7, 36-char text), metadata (an
 * ordered string->string map, UTF-8), a binary-safe payload, and an ack state
 * that moves exactly once: PENDING -> ACKED or PENDING -> NACKED.
 *
 * Ownership: messages are reference counted. sl_msg_new* returns a message
 * with one reference; sl_msg_ref adds one; sl_msg_unref drops one and frees on
 * the last. Copies share the (immutable) body until one side changes it.
 *
 * Threads: ack/nack/wait/state may be called from any thread at any time.
 * Reading and writing metadata or payload of one message from several threads
 * at once is not supported (like any plain object); distinct messages, and
 * copies, are independent.
 */
#ifndef SLUICE_MSG_H
#define SLUICE_MSG_H

#include "export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_msg sl_msg;

typedef enum sl_ack_state {
    SL_MSG_PENDING = 0,
    SL_MSG_ACKED = 1,
    SL_MSG_NACKED = 2,
} sl_ack_state;

#define SL_UUID_LEN 36 /* text length, without the terminating NUL */

/* Create a message with a fresh UUIDv7 and a copy of payload[0..len).
 * payload may be NULL only when len is 0. Errors: SL_EINVAL, SL_ENOMEM.
 * The UUID is made the first time it is read (sl_msg_uuid, sl_msg_equal, a
 * backend that stores or sends it), so its time field is that moment, never
 * earlier than the creation; once read it never changes, and copies sharing
 * the body read the same one. Messages that nobody identifies (mem:// between
 * threads) skip the clock read. */
SL_API int sl_msg_new(sl_msg **out, const void *payload, size_t len);

/* Same with a given id (any non-empty UTF-8 text up to 255 bytes, no NUL). */
SL_API int sl_msg_new_with_uuid(sl_msg **out, const char *uuid, const void *payload, size_t len);

SL_API sl_msg *sl_msg_ref(sl_msg *m);
SL_API void sl_msg_unref(sl_msg *m); /* NULL is a no-op */

/* Borrowed pointers: valid while the caller holds a reference and does not
 * change the message. */
SL_API const char *sl_msg_uuid(const sl_msg *m);
SL_API const void *sl_msg_payload(const sl_msg *m, size_t *len);
/* The topic a received message came from; NULL on messages never delivered. */
SL_API const char *sl_msg_topic(const sl_msg *m);
/* How many times this message has been delivered (1 on first delivery,
 * 0 on a message that was never delivered). */
SL_API unsigned sl_msg_deliveries(const sl_msg *m);

/* Replace the payload with a copy of data[0..len). */
SL_API int sl_msg_set_payload(sl_msg *m, const void *data, size_t len);

/* Metadata. Keys are non-empty; keys and values are NUL-terminated text.
 * set replaces an existing key. get returns NULL when absent. */
SL_API int sl_msg_meta_set(sl_msg *m, const char *key, const char *value);
SL_API const char *sl_msg_meta_get(const sl_msg *m, const char *key);
SL_API int sl_msg_meta_del(sl_msg *m, const char *key); /* SL_ENOENT when absent */
SL_API size_t sl_msg_meta_count(const sl_msg *m);
/* i-th entry in insertion order; SL_ENOENT past the end. */
SL_API int sl_msg_meta_at(const sl_msg *m, size_t i, const char **key, const char **value);

/* A new message with the same uuid, metadata and payload and a fresh
 * PENDING ack state (not delivered, no topic). *out is NULL on failure. */
SL_API int sl_msg_copy(const sl_msg *m, sl_msg **out);

/* True when uuid, metadata (same pairs, any order) and payload are equal.
 * Ack state and topic are not compared. */
SL_API bool sl_msg_equal(const sl_msg *a, const sl_msg *b);

/* Acknowledge / negatively acknowledge. Idempotent: acking twice is 0.
 * Errors: SL_ESTATE for ack after nack and nack after ack, SL_EINVAL. */
SL_API int sl_msg_ack(sl_msg *m);
SL_API int sl_msg_nack(sl_msg *m);
/* Acknowledge msgs[0..n) in one call: the same as sl_msg_ack on each, in
 * order, but a backend may settle them together (mem:// takes its lock once
 * per batch instead of once per message). Messages may come from different
 * subscriptions and backends. Every message that can be acked is, even when
 * one fails; the first failure is returned: SL_ESTATE (one was nacked
 * already), SL_EINVAL (msgs NULL with n > 0, or a NULL element: then nothing
 * is acked). Does not drop references: unref each message afterwards.
 * Threads: any thread; never blocks (apart from the backend's own locks). */
SL_API int sl_msg_ack_batch(sl_msg *const *msgs, size_t n);
/* Nack and ask the backend to redeliver no sooner than delay_ms from now. */
SL_API int sl_msg_nack_delay(sl_msg *m, unsigned delay_ms);

SL_API sl_ack_state sl_msg_state(const sl_msg *m);

/* Block until the message is acked or nacked, or timeout_ms passes
 * (timeout_ms < 0 waits forever, 0 polls). On success *state (optional) is
 * the final state. Errors: SL_ETIMEDOUT, SL_EINVAL. */
SL_API int sl_msg_wait(sl_msg *m, int timeout_ms, sl_ack_state *state);

/* Delayed publishing: a message whose metadata holds SL_META_DELIVER_AT, a
 * decimal count of milliseconds since the Unix epoch, is not delivered before
 * that time by backends with SL_FEAT_DELAYED_PUBLISH. A value that is not such
 * a number makes sl_publish fail with SL_EINVAL (nothing is published). */
#define SL_META_DELIVER_AT "deliver_at"

/* Message context: what a chain of messages shares. A handler's outputs
 * (router outputs, sl_command_send_from, sl_event_publish_from) carry the
 * cause's correlation id, trace id and deadline unless they set their own.
 * SL_META_DEADLINE is a decimal count of milliseconds since the Unix epoch
 * by which the work must be done: the router hands the handler a context
 * (sl_ctx) that is done then. */
#define SL_META_CORRELATION_ID "correlation_id"
#define SL_META_TRACE_ID "trace_id"
#define SL_META_DEADLINE "deadline"

/* Copy the context keys of cause that effect lacks to effect. A deadline
 * that is not such a number is not copied. Errors: SL_EINVAL, SL_ENOMEM. */
SL_API int sl_msg_carry_context(const sl_msg *cause, sl_msg *effect);

/* Set SL_META_DEADLINE to timeout_ms from now (wall clock). */
SL_API int sl_msg_set_deadline_in(sl_msg *m, int64_t timeout_ms);

/* The deadline of m in ms since the epoch: 0 and *wall_ms set, SL_ENOENT
 * when it has none, SL_EINVAL (with detail) when the value is not a number. */
SL_API int sl_msg_deadline(const sl_msg *m, int64_t *wall_ms);

/* Fill out[SL_UUID_LEN + 1] with a fresh UUIDv7 text. */
SL_API void sl_uuid_v7(char out[SL_UUID_LEN + 1]);

#ifdef __cplusplus
}
#endif
#endif
