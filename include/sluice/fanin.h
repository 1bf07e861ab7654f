/*
 * sluice/fanin.h - fan-in (watermill's fanin component): merge many topics
 * into one, on any backend.
 *
 *   const char *src[] = {"orders.eu", "orders.us", "orders.asia"};
 *   sl_fanin_opts o; sl_fanin_opts_init(&o);
 *   o.sub = sub; o.topics = src; o.ntopics = 3; o.pub = pub; o.target = "orders";
 *   sl_fanin_add(router, "orders-fanin", &o);
 *   sl_router_run(router);
 *
 * A fan-in is a router handler (so router middlewares apply): each source
 * topic is read by its own worker(s) in consumer group `group`, and every
 * message is published to `target` as a copy with the same UUID, payload
 * and metadata plus SL_FANIN_META_SOURCE (the topic it came from) before it
 * is acked - at least once, in order per source topic with one worker.
 * Source and target may be different backends (sub and pub are borrowed
 * and must outlive the router).
 */
#ifndef SLUICE_FANIN_H
#define SLUICE_FANIN_H

#include <stddef.h>

#include "error.h"
#include "export.h"
#include "pubsub.h"
#include "router.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The metadata key naming the source topic of a merged message. */
#define SL_FANIN_META_SOURCE "fanin_source"

typedef struct sl_fanin_opts {
    sl_subscriber *sub;        /* required: where the source topics live */
    const char *const *topics; /* required: ntopics source topics */
    size_t ntopics;
    sl_publisher *pub;  /* required: where the target topic lives */
    const char *target; /* required: the merged topic (not one of the sources) */
    const char *group;  /* consumer group on the sources (default "fanin") */
    unsigned workers;   /* per source topic (default 1: keeps order per source) */
} sl_fanin_opts;

SL_API void sl_fanin_opts_init(sl_fanin_opts *o);

/* Add fan-in handler `name` (unique in the router) to a router that has not
 * started. The topics are copied. Errors: SL_EINVAL (missing field, a
 * source equal to the target, bad topic), SL_ESTATE (router running),
 * those of sl_router_add_handler. */
SL_API int sl_fanin_add(sl_router *r, const char *name, const sl_fanin_opts *o);

#ifdef __cplusplus
}
#endif
#endif
