/*
 * backend.h - what a backend implements: one ops table per URL scheme, in
 * the style of nng's transports. The generic layer (pubsub.c) validates
 * arguments, parses the URL, rejects unused options and keeps the list of
 * open subscriptions; the backend does the rest.
 *
 * Contract for every backend:
 *  - pub_open/sub_open read their options with sli_url_opt_*() and may set
 *    *features (pre-filled with the table's features) to what this handle
 *    really offers. Errors go through sli_err().
 *  - publish returns 0 only when the backend has all n messages (durably, if
 *    it is persistent); it must not keep references to msgs past the call
 *    (copy or share with sli_msg_share()).
 *  - next hands out a message carrying one reference for the caller, made
 *    with sli_msg_set_delivery() so ack/nack/free reach the backend.
 *  - unsubscribe wakes any thread blocked in next on it (which returns
 *    SL_ECLOSED), waits until none is inside, hands unacked messages back to
 *    the group and frees the subscription. Acks of those messages arriving
 *    later must be harmless.
 *  - pub_close/sub_close likewise wake blocked callers and free; sub_close
 *    runs after every subscription of the subscriber was unsubscribed.
 */
#ifndef SLI_BACKEND_H
#define SLI_BACKEND_H

#include "core/internal.h"
#include "core/url.h"

typedef struct sli_backend {
    const char *scheme;
    unsigned features;
    int (*pub_open)(void **impl, sli_url *url, unsigned *features);
    int (*publish)(void *impl, const char *topic, sl_msg *const *msgs, size_t n,
                   const sl_publish_opts *opts);
    int (*pub_close)(void *impl);
    int (*sub_open)(void **impl, sli_url *url, unsigned *features);
    int (*subscribe)(void *impl, const char *topic, const sl_subscribe_opts *opts, void **sub);
    int (*next)(void *sub, sl_msg **out, int timeout_ms);
    /* Optional (NULL: pubsub.c loops next): like next, then up to max - 1
     * more that are at hand without waiting; *got >= 1 when it returns 0. */
    int (*next_batch)(void *sub, sl_msg **out, size_t max, size_t *got, int timeout_ms);
    int (*unsubscribe)(void *sub);
    int (*sub_close)(void *impl);
} sli_backend;

/* The registry (registry.c) is the one place that lists every backend. */
const sli_backend *sli_backend_find(const char *scheme);
/* Comma-separated list of known schemes, for error messages. */
const char *sli_backend_schemes(void);

#endif
