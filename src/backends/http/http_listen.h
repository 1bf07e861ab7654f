/*
 * http_listen.h - the state behind an http:// subscriber: one listener per
 * listen address in the process (shared by every subscriber handle on it),
 * its topics, groups and queued messages. Used by http_sub.c (the
 * subscriptions) and http_serve.c (the libmicrohttpd request handler).
 *
 * Everything below a listener is guarded by its mutex mu. A topic accepts
 * POSTs while it has a live subscription. Each subscription is a member of
 * one group: a named group (opts.group) whose members compete, or an
 * anonymous group of its own. A message POSTed to a topic is queued once
 * per group; named groups keep their queue while no member is connected,
 * for as long as the listener lives (no persistence: nothing survives the
 * process or the last subscriber handle on the address).
 */
#ifndef SLI_HTTP_LISTEN_H
#define SLI_HTTP_LISTEN_H

#include <pthread.h>

#include "backends/http/http_int.h"

typedef struct hl_listener hl_listener;
typedef struct hl_topic hl_topic;
typedef struct hl_group hl_group;
typedef struct hl_sub hl_sub;
typedef struct hl_entry hl_entry;

/* A publisher waiting for acks (Sluice-Wait-Ack) holds a receipt; each
 * queued copy of its message points to it. */
enum { HL_WAITING = 0, HL_ACKED, HL_NACKED, HL_DROPPED };
typedef struct hl_receipt {
    int refs;    /* the waiting request + one per entry */
    int pending; /* groups that have not acked yet */
    int result;  /* HL_* */
} hl_receipt;

struct hl_entry {
    hl_entry *prev, *next; /* in the group's queue or in-flight list */
    hl_listener *L;
    hl_group *g; /* NULL once retired */
    void *body;  /* message body (sli_msg_body_ref) */
    unsigned deliveries;
    hl_receipt *rcpt;  /* NULL unless the sender waits for the ack */
    hl_sub *owner;     /* the subscription holding it, when in flight */
    sl_msg *delivered; /* that delivery's message object */
    int refs;          /* 1 while in a group + 1 per live delivered message */
};

struct hl_group {
    char *name; /* NULL: anonymous (one subscription) */
    hl_topic *t;
    hl_sub *members;
    hl_entry *qh, *qt; /* ready messages, oldest first */
    size_t qlen;
    hl_entry *ifl; /* in flight (any member) */
    pthread_cond_t cond;
    bool lossy; /* a browser stream's (at most once): misses what does not fit, holds nobody */
    hl_group *next;
};

struct hl_topic {
    char *name;
    sli_rcstr *rname;
    int live; /* open subscriptions */
    hl_group *groups;
    hl_topic *next;
};

struct hl_sub {
    hl_listener *L;
    hl_group *g;
    unsigned prefetch, inflight;
    int inside; /* threads in next */
    bool closed;
    hl_sub *next; /* group members */
};

struct hl_listener {
    char key[300]; /* "host:port" */
    hl_listener *next;
    int users;        /* subscriber handles (under the registry lock) */
    _Atomic int refs; /* users + delivered messages alive */
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* room in a queue, receipts settled, stopping */
    bool stopping;
    hl_topic *topics;
    char prefix[256];
    size_t max_body, queue;
};

/* The listener of host:port in this process, NULL when none (the fuzz
 * target hands it requests with hl_handle(); valid while a subscriber
 * handle on it is open). */
hl_listener *sli_httpb_listener(const char *host, int port);

/* One request as the daemon read it: http_serve.c builds it from the
 * libmicrohttpd connection (which did the HTTP parsing); the fuzz target
 * tests/fuzz/fuzz_http_sub.c builds it from raw bytes. Borrowed strings. */
typedef struct hl_header {
    const char *key, *value;
} hl_header;
typedef struct hl_request {
    const char *method, *url; /* url: the path, without the query string */
    const hl_header *headers; /* in the order received */
    size_t n_headers;
    const char *body; /* the payload (NULL when len is 0) */
    size_t len;
    bool too_big; /* the body was over max_body (and was not kept) */
} hl_request;

/* What the subscriber answers: status and a one-line why; sse when the
 * request is GET /PREFIX/<topic>/events (status 0, topic set: the caller
 * starts the stream). */
typedef struct hl_answer {
    unsigned status;
    bool sse;
    char topic[256];
    char why[200];
} hl_answer;

/* Handle one whole request (http_serve.c, the daemon's only entry): check
 * method and path, decode the Sluice-* headers (uuid, metadata, attempt,
 * wait-ack, timeout) and the body into a message, deliver it to every
 * group of the topic (waiting for room or acks as asked), and choose the
 * answer. Blocks for at most the request's Sluice-Timeout. */
void hl_handle(hl_listener *L, const hl_request *q, hl_answer *a);

/* Start / stop serving L (http_serve.c). */
int hl_serve_start(hl_listener *L, const httpb_opts *o);
void hl_serve_stop(hl_listener *L);

/* Under L->mu: the topic named name (NULL when absent; create makes it). */
hl_topic *hl_topic_find(hl_listener *L, const char *name, bool create);
/* Under L->mu: queue a copy of body on every group of t (the caller has
 * checked there is room); rcpt may be NULL. */
int hl_enqueue(hl_listener *L, hl_topic *t, void *body, unsigned deliveries, hl_receipt *rcpt);
/* Under L->mu: whether every group of t has room for one more message. */
bool hl_has_room(hl_listener *L, hl_topic *t);
void hl_receipt_unref(hl_receipt *r);

/* The subscription ops (http_sub.c), also used by the SSE stream. */
int httpb_subscribe(void *impl, const char *topic, const sl_subscribe_opts *opts, void **out);
int httpb_next(void *impl, sl_msg **out, int timeout_ms);
int httpb_unsubscribe(void *impl);

/* Answer GET /PREFIX/<topic>/events with a Server-Sent Events stream
 * (http_sse.c). */
struct MHD_Connection;
int hl_sse_start(hl_listener *L, struct MHD_Connection *conn, const char *topic);
/* Make the group of subscription sub (httpb_subscribe) lossy (see hl_group). */
void hl_sub_lossy(void *sub);

#endif
