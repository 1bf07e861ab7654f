/*
 * nt.h - nats://host:port: the NATS backend (nats.c), JetStream by default.
 *
 * The picture (JetStream, the default):
 *  - topic T is the subject subject_prefix+T. It lives in a stream: by
 *    default one stream per topic, named stream_prefix + T with every byte
 *    outside [A-Za-z0-9-] written as _XX (hex; "orders.eu" -> "orders_2Eeu"),
 *    capturing exactly that subject; with `stream=NAME` one stream NAME
 *    captures subject_prefix+">" (subject_prefix must then end in '.') and
 *    every topic is a subject in it. A missing stream is created (file
 *    storage, limits retention) by the first publish or subscribe; an
 *    existing one is used as it is.
 *  - a message is a NATS message: payload = data, uuid = header
 *    Nats-Msg-Id (so JetStream drops a re-sent copy within dupe_window),
 *    each metadata pair a header "key: value" when the key is a printable
 *    token and the value is non-empty without CR/LF or edge blanks and the key does not
 *    start with "Nats-" or equal "Sl-Meta"; any other pair travels
 *    percent-encoded as one "Sl-Meta: key=value" header value. A foreign
 *    message without Nats-Msg-Id gets the uuid "nats:<stream>:<seq>".
 *  - publish sends the batch with js_PublishMsgAsync (at most `window` acks
 *    outstanding) and returns once the server acked every message (stored);
 *    when an ack fails or the connection drops, the whole batch is sent
 *    again (same Nats-Msg-Id: deduplicated) until `reconnect` runs out.
 *  - a group is a durable pull consumer named after the group (escaped as
 *    stream names are); a subscription without a group gets a private
 *    durable "sl-<uuid>" deleted when it closes (InactiveThreshold 1h
 *    removes one left by a dead process). Explicit ack, AckWait =
 *    ack_deadline, MaxDeliver = max_deliver, nack = -NAK (with a delay
 *    for sl_msg_nack_delay), start = deliver policy of a NEW consumer:
 *    earliest (all), latest (new), `start_seq=N` or `start_time=T`.
 *  - a subscription fetches at most prefetch - held messages per pull
 *    request, in slices of `block` so a close is prompt; a message freed
 *    without ack/nack and every unacked one at close are nacked (they go
 *    back to the group at once).
 *  - the client reconnects forever (nats.c); sl_next reports SL_ECONN only
 *    when the server was away longer than `reconnect`.
 *
 * `jetstream=false`: core NATS. Publish = PUB + flush (the server got the
 * messages; nothing is stored), a subscription is a plain SUB, a nack
 * redelivers from the subscription's own memory; no groups, no
 * persistence, no late subscribers (the feature flags say so).
 *
 * Files: nt_conn.c (options, connections, names, message mapping),
 * nats.c (publisher, ops table), nt_sub.c (subscriptions).
 */
#ifndef SLI_NT_H
#define SLI_NT_H

#include <nats/nats.h>

#include "core/backend.h"

typedef struct nt_opts {
    char url[600]; /* nats://host:port for nats.c */
    char user[128], password[256];
    bool js;          /* jetstream */
    char stream[128]; /* one stream for all topics ("" = per topic) */
    char subject_prefix[128];
    char stream_prefix[64];
    bool memory;          /* storage=memory */
    int64_t max_age;      /* ms, 0 none */
    uint64_t max_msgs;    /* 0 none */
    int64_t dupe_window;  /* ms */
    int64_t ack_deadline; /* ms */
    uint64_t max_deliver; /* 0 unlimited */
    uint64_t max_ack_pending;
    uint64_t start_seq; /* 0 none */
    int64_t start_time; /* wall ms, 0 none */
    int64_t timeout;    /* ms: connect and JetStream API */
    int64_t reconnect;  /* ms */
    int64_t block;      /* ms */
    uint64_t window;    /* async publishes in flight */
} nt_opts;

int nt_opts_parse(sli_url *u, nt_opts *o);

/* A connection shared (refcounted) by a handle, its subscriptions and the
 * messages they delivered. */
typedef struct nt_conn {
    _Atomic uint32_t refs;
    natsConnection *nc;
    jsCtx *js;                  /* NULL for core NATS */
    _Atomic int64_t down_since; /* mono ms of the last disconnect, 0 while up */
    pthread_mutex_t close_mu;   /* closed: set by nats.c's closed callback, its last one */
    pthread_cond_t close_cv;
    bool closed;
    /* async publish results (one publish at a time per publisher) */
    _Atomic uint64_t acked, failed;
    _Atomic int last_status, last_code; /* natsStatus / jsErrCode of the last failure */
} nt_conn;

int nt_conn_open(const nt_opts *o, nt_conn **out);
nt_conn *nt_conn_ref(nt_conn *c);
void nt_conn_unref(nt_conn *c);
/* Map a nats.c status to SL_E* with detail. */
int nt_status_err(natsStatus s, const char *what);

/* Names: subject of topic, stream of topic, escaped consumer name.
 * Errors: SL_EINVAL naming what is wrong. */
int nt_subject(const nt_opts *o, const char *topic, char *out, size_t cap);
int nt_stream(const nt_opts *o, const char *topic, char *out, size_t cap);
int nt_escape(const char *prefix, const char *s, char *out, size_t cap);
/* Create the stream of topic unless it exists. */
int nt_stream_ensure(nt_conn *c, const nt_opts *o, const char *topic);

/* Message mapping. */
int nt_msg_to_nats(const sl_msg *m, const char *subject, natsMsg **out);
/* A new sl_msg from nm; fallback_uuid is used when nm has no Nats-Msg-Id
 * (NULL: a fresh one). */
int nt_msg_from_nats(natsMsg *nm, const char *fallback_uuid, sl_msg **out);
/* A JetStream delivery as a message: nt_msg_from_nats with the uuid
 * nats:<stream>:<sequence> from the reply subject's metadata when there
 * is no Nats-Msg-Id (stream: the subscription's, when the reply subject
 * says nothing), *deliveries its delivery count (1 when unknown). */
int nt_msg_from_js(natsMsg *nm, const char *stream, sl_msg **out, unsigned *deliveries);

extern const sli_backend sli_nats_backend;

/* nt_sub.c */
int nt_subscribe(nt_conn *c, const nt_opts *o, const char *topic, const sl_subscribe_opts *so,
                 void **out);
int nt_next(void *sub, sl_msg **out, int timeout_ms);
int nt_unsubscribe(void *sub);

#endif
