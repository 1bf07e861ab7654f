/*
 * http_int.h - the http:// backend (an HTTP broker in the style of
 * go-micro's default broker and watermill's HTTP pub/sub).
 *
 * One URL names both sides: http://HOST:PORT[/PREFIX]. A publisher POSTs
 * each message to http://HOST:PORT/PREFIX/<topic> (libcurl); a subscriber
 * listens on HOST:PORT (or on listen=HOST:PORT) with libmicrohttpd and
 * serves POST /PREFIX/<topic>. The wire format (headers) is in http_wire.c,
 * the publisher in http_pub.c, the listener and its queues in http_sub.c.
 */
#ifndef SLI_HTTP_INT_H
#define SLI_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"

/* Header names of the wire format. */
#define HTTPB_H_UUID "Sluice-Uuid"
#define HTTPB_H_META "Sluice-Meta-"
#define HTTPB_H_ATTEMPT "Sluice-Attempt"
#define HTTPB_H_WAIT_ACK "Sluice-Wait-Ack"
#define HTTPB_H_TIMEOUT "Sluice-Timeout"
#define HTTPB_WAIT_MAX_MS 300000 /* the longest Sluice-Timeout a listener takes */

/* Options shared by both sides (each side reads all of them, so one URL
 * serves publishers and subscribers alike). */
typedef struct httpb_opts {
    char target[320]; /* "http://HOST:PORT/PREFIX" for publishers (no trailing '/') */
    char prefix[256]; /* "/PREFIX" or "" */
    char listen_host[256];
    int listen_port;
    int64_t timeout_ms; /* publisher: give up on a message after this long */
    int64_t backoff_ms; /* publisher: first retry delay (doubles, at most 1 s) */
    bool wait_ack;      /* publisher: every publish waits for the handler's ack */
    uint64_t max_body;  /* subscriber: larger bodies get 413 */
    uint64_t queue;     /* subscriber: messages one group may hold before 503 */
} httpb_opts;

int httpb_opts_parse(sli_url *u, httpb_opts *o);

/* Percent-encoding of header text: bytes outside keep[] (and '%') become
 * %XX. Returns the length written (NUL-terminated) or -1 when cap is short. */
long httpb_encode(const char *in, bool is_name, char *out, size_t cap);
/* Decode %XX in place; SL_EINVAL on a malformed escape or a NUL byte. */
int httpb_decode(char *s);

int httpb_pub_open(void **impl, sli_url *u, unsigned *features);
int httpb_publish(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                  const sl_publish_opts *opts);
int httpb_pub_close(void *impl);

#endif
