/*
 * fanin.c - fan-in (sluice/fanin.h): one router handler over every source
 * topic whose function turns each message into a copy for the target topic
 * (same UUID, payload, metadata + the source topic). The router publishes
 * the copy before it acks the source message, which gives at-least-once.
 */
#include <string.h>

#include "core/internal.h"
#include "sluice/fanin.h"

void sl_fanin_opts_init(sl_fanin_opts *o)
{
    memset(o, 0, sizeof *o);
    o->group = "fanin";
    o->workers = 1;
}

static int fanin_fn(sl_ctx *ctx, sl_msg *in, sl_msg_list *out, void *user)
{
    (void)ctx;
    (void)user;
    sl_msg *c;
    int rc = sl_msg_copy(in, &c);
    if (rc != 0)
        return rc;
    const char *src = sl_msg_topic(in);
    if ((src && (rc = sl_msg_meta_set(c, SL_FANIN_META_SOURCE, src)) != 0) ||
        (rc = sl_msg_list_push(out, c)) != 0) {
        sl_msg_unref(c);
        return rc;
    }
    return 0;
}

int sl_fanin_add(sl_router *r, const char *name, const sl_fanin_opts *o)
{
    if (!r || !name || !o || !o->sub || !o->pub || !o->topics || !o->ntopics || !o->target)
        return sli_err(SL_EINVAL, "fanin: needs a router, a name, sub, pub, source topics and a "
                                  "target");
    int rc = sli_check_topic(o->target);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < o->ntopics; i++) {
        if (!o->topics[i] || (rc = sli_check_topic(o->topics[i])) != 0)
            return rc ? rc : sli_err(SL_EINVAL, "fanin '%s': source topic %zu is NULL", name, i);
        if (strcmp(o->topics[i], o->target) == 0)
            return sli_err(SL_EINVAL, "fanin '%s': source '%s' is the target (a loop)", name,
                           o->target);
    }
    sl_handler_opts ho;
    sl_handler_opts_init(&ho);
    ho.name = name;
    ho.sub = o->sub;
    ho.topics = o->topics;
    ho.ntopics = o->ntopics;
    ho.subscribe.group = o->group && *o->group ? o->group : "fanin";
    ho.subscribe.start = SL_START_EARLIEST;
    ho.pub = o->pub;
    ho.pub_topic = o->target;
    ho.fn = fanin_fn;
    ho.workers = o->workers ? o->workers : 1;
    return sl_router_add_handler(r, &ho, NULL);
}
