/*
 * requeue.c - the requeue middleware (sluice/requeue.h): a failed message is
 * not nacked but published again, as a copy due later (SL_META_DELIVER_AT),
 * to its own topic through sl_publish_delayed - natively delayed where the
 * backend can, else parked on the delay topic for a requeuer. The input is
 * then acked. The delay grows with SL_REQUEUE_META_COUNT; past max_requeues
 * the failure stands. Flagged SL_MW_POISON (it turns failures into success).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "router/router_int.h"
#include "sluice/requeue.h"

typedef struct requeue {
    sl_requeue_opts o;
    char *delay_topic;
} requeue;

void sl_requeue_opts_init(sl_requeue_opts *o)
{
    memset(o, 0, sizeof *o);
    sl_delay_opts_init(&o->delay);
    o->delay_ms = 1000;
    o->multiplier = 2.0;
    o->max_delay_ms = 60000;
}

static int requeue_call(void *state, const sl_mw_call *next, sl_ctx *ctx, sl_msg *in,
                        sl_msg_list *out)
{
    requeue *q = state;
    size_t keep = out->n;
    int err = sl_mw_next(next, ctx, in, out);
    if (err == 0)
        return 0;
    sl_msg_list_truncate(out, keep);
    const char *cs = sl_msg_meta_get(in, SL_REQUEUE_META_COUNT);
    unsigned long count = cs ? strtoul(cs, NULL, 10) : 0;
    const char *topic = sl_msg_topic(in);
    if (!topic || (q->o.max_requeues && count >= q->o.max_requeues))
        return err;
    char keep_err[512];
    snprintf(keep_err, sizeof keep_err, "%s", sl_errmsg());
    double delay = sli_backoff(q->o.delay_ms, q->o.multiplier, q->o.max_delay_ms, (unsigned)count);
    char at[32], n[24];
    snprintf(at, sizeof at, "%lld", (long long)(sli_wall_ms() + (int64_t)delay));
    snprintf(n, sizeof n, "%lu", count + 1);
    sl_msg *c = NULL; /* unreffed below even when the copy fails */
    int rc = sl_msg_copy(in, &c);
    if (rc == 0 && (rc = sl_msg_meta_set(c, SL_META_DELIVER_AT, at)) == 0 &&
        (rc = sl_msg_meta_set(c, SL_REQUEUE_META_COUNT, n)) == 0)
        rc = sl_publish_delayed(q->o.pub, topic, &c, 1, &q->o.delay);
    sl_msg_unref(c);
    if (rc != 0) {
        sli_log(SL_LOG_WARN, "requeue", "message %s: cannot requeue: %s", sl_msg_uuid(in),
                sl_errmsg());
        return sli_err(err, "%s", keep_err);
    }
    sli_log(SL_LOG_INFO, "requeue", "message %s failed (%s): requeued to %s in %u ms (#%lu)",
            sl_msg_uuid(in), keep_err, topic, (unsigned)delay, count + 1);
    return 0;
}

static void requeue_free(void *state)
{
    requeue *q = state;
    free(q->delay_topic);
    free(q);
}

int sl_mw_requeue(sl_middleware *out, const sl_requeue_opts *o)
{
    if (!out || !o || !o->pub)
        return sli_err(SL_EINVAL, "sl_mw_requeue: needs a publisher");
    if (o->multiplier < 1.0 || o->max_delay_ms < o->delay_ms)
        return sli_err(SL_EINVAL, "sl_mw_requeue: multiplier must be >= 1, max_delay_ms >= "
                                  "delay_ms");
    const char *dt = o->delay.delay_topic ? o->delay.delay_topic : SL_REQUEUE_DEFAULT_TOPIC;
    int rc = sli_check_topic(dt);
    if (rc != 0)
        return rc;
    requeue *q = calloc(1, sizeof *q);
    if (!q || !(q->delay_topic = strdup(dt))) {
        free(q);
        return sli_err(SL_ENOMEM, "out of memory");
    }
    q->o = *o;
    q->o.delay.delay_topic = q->delay_topic;
    *out = (sl_middleware){.name = "requeue",
                           .flags = SL_MW_POISON,
                           .call = requeue_call,
                           .free = requeue_free,
                           .state = q};
    return 0;
}
