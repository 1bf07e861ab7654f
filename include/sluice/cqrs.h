/*
 * sluice/cqrs.h - CQRS on the router (watermill's cqrs component): command
 * and event buses that marshal values into messages, and processors that
 * route messages back to handlers by the value's type name.
 *
 *   sl_marshaler m; sl_marshaler_json(&m);           // values are json_t *
 *   sl_command_bus *cb; sl_command_bus_new(&cb, pub, &m, NULL);
 *   json_t *v = json_pack("{s:s}", "room", "101");
 *   sl_command_send(cb, "BookRoom", v);               // borrows v
 *   json_decref(v);
 *
 *   sl_command_processor *cp; sl_command_processor_new(&cp, router, sub, &m, NULL);
 *   sl_command_processor_add(cp, "BookRoom", book_room, ctx);   // exactly one handler
 *   sl_event_processor *ep; sl_event_processor_new(&ep, router, sub, &m, NULL);
 *   sl_event_processor_add(ep, "report", "RoomBooked", on_booked, ctx, NULL);
 *   sl_router_run(router);
 *
 * The type name travels in the message metadata under SL_CQRS_META_NAME
 * ("name"). Topics come from the type name: commands go to "commands.<Name>",
 * events to "events.<Name>" unless a topic function is given. Commands have
 * exactly one handler: every command processor of an application competes
 * in one consumer group ("commands" unless set). Each event handler gets
 * every event: its consumer group is its handler name (instances of the
 * same handler compete), or the group given.
 *
 * A topic function may give several event types one topic (say "events"):
 * each event handler, in its own group, then leaves the other types' events
 * to their handlers. Two command types on one topic, or two event types on
 * one topic in one group, would compete for its messages: adding the second
 * handler fails with SL_EINVAL.
 *
 * A command whose type is unknown to the processor, a message without a
 * type, or one whose payload does not unmarshal, fails its handler with
 * SL_EPROTO: add sl_mw_poison to the router to park such messages; without
 * it they are redelivered with the handler's nack backoff (never a hot
 * loop). Handlers run on router workers:
 * every router middleware (retry, poison, timeout, ...) applies. Free a
 * processor after its router (sl_router_free): its handlers point into it.
 */
#ifndef SLUICE_CQRS_H
#define SLUICE_CQRS_H

#include <stddef.h>

#include "error.h"
#include "export.h"
#include "pubsub.h"
#include "router.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_CQRS_META_NAME "name"

/* How values become messages and back. */
typedef struct sl_marshaler {
    /* Make a message carrying value of type name (set SL_CQRS_META_NAME). */
    int (*marshal)(void *ctx, const char *name, const void *value, sl_msg **out);
    /* Decode m's payload into a value for a handler (freed with free_value). */
    int (*unmarshal)(void *ctx, const sl_msg *m, void **value);
    void (*free_value)(void *ctx, void *value);
    void *ctx;
} sl_marshaler;

/* JSON (jansson): values are json_t *; marshal borrows the value. */
SL_API void sl_marshaler_json(sl_marshaler *m);

/* Topic of a type name (write it into buf, at most cap bytes with the NUL). */
typedef int (*sl_cqrs_topic_fn)(const char *name, char *buf, size_t cap, void *ctx);

typedef struct sl_cqrs_opts {
    sl_cqrs_topic_fn topic; /* NULL: "commands.<name>" / "events.<name>" */
    void *topic_ctx;
    const char *group;       /* processors: consumer group (see above); NULL = default */
    unsigned workers;        /* processors: worker threads per handler (default 1) */
    sl_publisher *reply_pub; /* command processors: answers requests (sl_request) whose
                                handler did not sl_reply: an empty reply with the
                                handler's result (a failed request is answered with its
                                error and not redelivered). NULL: no automatic reply */
} sl_cqrs_opts;

SL_API void sl_cqrs_opts_init(sl_cqrs_opts *o);

/* ---- buses ---- */
typedef struct sl_command_bus sl_command_bus;
typedef struct sl_event_bus sl_event_bus;

/* pub is borrowed (outlives the bus); m is copied; opts may be NULL. */
SL_API int sl_command_bus_new(sl_command_bus **out, sl_publisher *pub, const sl_marshaler *m,
                              const sl_cqrs_opts *opts);
/* Send a command (value borrowed): published durably before returning. */
SL_API int sl_command_send(sl_command_bus *b, const char *name, const void *value);
/* The same carrying the metadata of a message being handled (correlation,
 * trace, deadline, and the application's own keys), to keep a chain of
 * messages traceable. Keys about the cause's own routing are not carried:
 * name, content_type, deliver_at, reply_to, reply_error, forward_to,
 * requeue_*, fanin_source and the poison keys. */
SL_API int sl_command_send_from(sl_command_bus *b, const sl_msg *cause, const char *name,
                                const void *value);
SL_API void sl_command_bus_free(sl_command_bus *b);

SL_API int sl_event_bus_new(sl_event_bus **out, sl_publisher *pub, const sl_marshaler *m,
                            const sl_cqrs_opts *opts);
SL_API int sl_event_publish(sl_event_bus *b, const char *name, const void *value);
SL_API int sl_event_publish_from(sl_event_bus *b, const sl_msg *cause, const char *name,
                                 const void *value);
SL_API void sl_event_bus_free(sl_event_bus *b);

/* ---- processors ---- */

/* A handler gets the decoded value (borrowed for the call) and the message
 * (for metadata). Return 0 to ack, a negative SL_E* to nack (redelivery). */
typedef int (*sl_cqrs_handler_fn)(sl_ctx *ctx, const sl_msg *msg, void *value, void *user);

typedef struct sl_command_processor sl_command_processor;
typedef struct sl_event_processor sl_event_processor;

/* router and sub are borrowed; add handlers before the router runs. */
SL_API int sl_command_processor_new(sl_command_processor **out, sl_router *r, sl_subscriber *sub,
                                    const sl_marshaler *m, const sl_cqrs_opts *opts);
/* The one handler of command `name`. SL_EEXIST when it has one already. */
SL_API int sl_command_processor_add(sl_command_processor *p, const char *name,
                                    sl_cqrs_handler_fn fn, void *user);
SL_API void sl_command_processor_free(sl_command_processor *p);

SL_API int sl_event_processor_new(sl_event_processor **out, sl_router *r, sl_subscriber *sub,
                                  const sl_marshaler *m, const sl_cqrs_opts *opts);
/* Handler `handler` (unique name) of event `name`; group NULL = the
 * handler's name (it gets every event), or a group to compete in. */
SL_API int sl_event_processor_add(sl_event_processor *p, const char *handler, const char *name,
                                  sl_cqrs_handler_fn fn, void *user, const char *group);
SL_API void sl_event_processor_free(sl_event_processor *p);

/* ---- request-reply (watermill's requestreply) ----
 * A requester sends a command carrying SL_CQRS_META_REPLY_TO (its own reply
 * topic) and SL_CQRS_META_CORRELATION (the command's UUID), then waits for
 * the reply with that correlation id. The handler side answers with
 * sl_reply (a body, or an error), or lets a command processor with
 * opts.reply_pub answer its result. Works over any backend. */
#define SL_CQRS_META_REPLY_TO "reply_to"
#define SL_CQRS_META_CORRELATION "correlation_id"
#define SL_CQRS_META_REPLY_ERROR "reply_error"

typedef struct sl_requester sl_requester;

/* bus and sub are borrowed. Replies come on "replies.<uuid>" (private to
 * this requester), read by a thread of the requester. */
SL_API int sl_requester_new(sl_requester **out, sl_command_bus *bus, sl_subscriber *sub);
/* Send command `name` and wait up to timeout_ms for its reply. Returns the
 * handler's result: 0, or the negative code it replied with (detail in
 * sl_errmsg()), SL_ETIMEDOUT when no reply came. *reply (optional) gets the
 * reply message (free with sl_msg_unref). With timeout_ms >= 0 the command
 * carries SL_META_DEADLINE (now + timeout_ms): its handler's context is
 * done when the requester stops waiting. Any thread. */
SL_API int sl_request(sl_requester *r, const char *name, const void *value, int timeout_ms,
                      sl_msg **reply);
SL_API void sl_requester_free(sl_requester *r);

/* Answer `request` (from inside its handler) with body, or with err < 0
 * and body as the error's detail. SL_EINVAL when request asked no reply. */
SL_API int sl_reply(sl_publisher *pub, const sl_msg *request, const void *body, size_t len,
                    int err);

#ifdef __cplusplus
}
#endif
#endif
